#!/usr/bin/env bash
# Writes the lock files that `make up` downloads Kafka and Apicurio Registry from: Maven resolves
# pom.xml and the registry's archive once, here, and each file's path in Maven Central's layout
# is written with its SHA-256. `make up` then only needs curl: a first start fetches the 93 jars
# side by side and checks each, instead of starting Maven twice (23 CPU-seconds, while the
# services build).
#
#   deploy/local/maven/lock.sh
#
# Run it after changing pom.xml or APICURIO_VERSION in deploy/local/stack.sh; `make up` refuses
# a lock that no longer matches either.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v mvn >/dev/null 2>&1 || { echo "Maven not found: install it (apt-get install maven)" >&2; exit 1; }
apicurio_version=$(sed -n 's/^APICURIO_VERSION=//p' "$here/../stack.sh")
[ -n "$apicurio_version" ] || { echo "no APICURIO_VERSION in deploy/local/stack.sh" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

maven() { mvn -q -B -Dstyle.color=never "$@" >"$work/maven.log" 2>&1 || { cat "$work/maven.log" >&2; exit 1; }; }

# `<sha256>  <path>` lines, sorted by path, of the files `find` names under a directory.
digests() { (cd "$1" && find . -type f "${@:2}" -printf '%P\n' | LC_ALL=C sort | xargs sha256sum); }

maven -f "$here/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
  -Dmdep.useRepositoryLayout=true -DoutputDirectory="$work/kafka"
{
  echo "# pom.xml $(sha256sum "$here/pom.xml" | cut -c1-64)"
  digests "$work/kafka" -name '*.jar'
} >"$here/kafka.lock"

registry=io/apicurio/apicurio-registry-app/$apicurio_version
maven dependency:copy -Dartifact="io.apicurio:apicurio-registry-app:$apicurio_version:tar.gz:all" \
  -DoutputDirectory="$work/registry/$registry"
digests "$work/registry" -name '*.tar.gz' >"$here/registry.lock"

echo "kafka.lock: $(grep -vc '^#' "$here/kafka.lock") files; registry.lock: Apicurio Registry $apicurio_version"
