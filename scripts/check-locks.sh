#!/usr/bin/env bash
# The lock files `make up` downloads Kafka and Apicurio Registry from: they match what they were
# written from (pom.xml, APICURIO_VERSION), and the download refuses a file whose digest differs.
# The second part serves files from a temporary directory on 127.0.0.1 and points the stack's own
# `fetch_locked` at it.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "error: $*" >&2; exit 1; }

ROOT=$PWD
APICURIO_VERSION=$(sed -n 's/^APICURIO_VERSION=//p' deploy/local/stack.sh)
# shellcheck source=deploy/local/kafka-registry.sh
. deploy/local/kafka-registry.sh

stale=$(locks_stale)
[ -z "$stale" ] || fail "$stale: run deploy/local/maven/lock.sh"
echo "kafka.lock and registry.lock match pom.xml and Apicurio Registry $APICURIO_VERSION"

work=$(mktemp -d)
server=
cleanup() {
  [ -z "$server" ] || kill "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/served/org/example/a/1" "$work/served/org/example/b/1"
echo "first artifact" >"$work/served/org/example/a/1/a-1.jar"
echo "second artifact" >"$work/served/org/example/b/1/b-1.jar"
(cd "$work/served" && sha256sum org/example/a/1/a-1.jar org/example/b/1/b-1.jar) >"$work/artifacts.lock"
echo "$(sha256sum <"$work/served/org/example/a/1/a-1.jar" | cut -c1-64)  org/example/gone/1/gone-1.jar" >"$work/missing.lock"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$work/served" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

MAVEN_CENTRAL=http://127.0.0.1:$port

fetch_locked "$work/artifacts.lock" "$work/good" || fail "fetch_locked refused files that match their lock"
cmp -s "$work/good/b-1.jar" "$work/served/org/example/b/1/b-1.jar" || fail "fetch_locked wrote something else than it was served"
# The server now serves a file that differs from the one the lock was written from.
echo "changed" >>"$work/served/org/example/b/1/b-1.jar"
if fetch_locked "$work/artifacts.lock" "$work/changed" >/dev/null 2>&1; then
  fail "fetch_locked took a file whose digest differs from its lock"
fi
if fetch_locked "$work/missing.lock" "$work/missing" >/dev/null 2>&1; then
  fail "fetch_locked succeeded for a file the server does not have"
fi
echo "fetch_locked takes files that match their lock and refuses one that differs or is missing"
