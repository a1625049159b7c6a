#!/usr/bin/env bash
# `make test`: lint, validate the Compose file, the alert rules, the Kubernetes manifests and the lock
# files, bring the stack up (starting what is not running),
# then run every test: unit, integration and end-to-end. Integration tests isolate themselves with
# their own topic prefixes and subjects, so they never disturb what a running stack holds.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> [%s] %s\n' "$(date +%T)" "$*"; }
# The time each test binary starts at, before cargo's "Running" line: what shows which suite
# took a slow run's minutes. Read line by line as it comes (mawk would wait for a whole block).
stamp() {
  local line now
  while IFS= read -r line || [[ -n $line ]]; do
    if [[ $line =~ ^\ *Running\  ]]; then
      printf -v now '%(%T)T' -1
      line="[$now] $line"
    fi
    printf '%s\n' "$line"
  done
}

step "formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The fault-injection feature's code is all in saga-messaging: linting it with the feature on
# covers what the first pass could not see, without checking every crate above it again.
cargo clippy -p saga-messaging --all-targets --quiet --features fault-injection -- -D warnings

step "docker-compose.yml"
if command -v docker-compose >/dev/null 2>&1; then
  docker-compose -f docker-compose.yml config -q
  echo "docker-compose.yml is valid"
elif docker compose version >/dev/null 2>&1; then
  docker compose -f docker-compose.yml config -q
  echo "docker-compose.yml is valid"
else
  echo "error: no Compose parser to validate docker-compose.yml (apt-get install docker-compose)" >&2
  exit 1
fi

step "Prometheus configuration and alert rules"
# The alerts' unit tests: each alert fires on the series it must and stays quiet on the others.
command -v promtool >/dev/null 2>&1 || { echo "error: promtool not found (apt-get install prometheus)" >&2; exit 1; }
promtool check config deploy/observability/prometheus.yml
promtool test rules deploy/observability/alerts.test.yml

step "Kubernetes manifests"
# Renders every overlay and validates it offline (core kinds, the operators' CRDs, the saga's
# own rules); downloads are cached under .local/.
scripts/check-k8s.sh

step "lock files"
# Kafka's and the registry's lock files match what they were written from, and `make up`'s
# download refuses a file that differs from its lock.
scripts/check-locks.sh

step "stack"
# Debug service binaries share every compiled dependency with the test build; `make up` on its
# own builds release binaries.
export SERVICE_PROFILE=${SERVICE_PROFILE:-dev}
# The fault tests make handlers fail on purpose; only these test builds can.
export SERVICE_FEATURES=${SERVICE_FEATURES:-saga-messaging/fault-injection}
export RETRY_DELAY_MS=${RETRY_DELAY_MS:-200}
# The console's browser test redrives a dead letter: Shipping fails these SKUs' StockReserved as
# often as it tries, once each, so that the letter lands and its redrive succeeds.
export FAULT_INJECTION=${FAULT_INJECTION:-shipping:sku=e2e-console-dead-:3:StockReserved}
deploy/local/stack.sh up
# Integration tests make topics of their own (it-…, mt-…, at-…); clear what earlier runs left.
deploy/local/stack.sh kafka-topics --bootstrap-server "127.0.0.1:${KAFKA_PORT:-9092}" \
  --delete --if-exists --topic 'it-.*|mt-.*|at-.*' || true

step "tests"
export KAFKA_BOOTSTRAP=${KAFKA_BOOTSTRAP:-127.0.0.1:${KAFKA_PORT:-9092}}
export SCHEMA_REGISTRY_URL=${SCHEMA_REGISTRY_URL:-http://127.0.0.1:${REGISTRY_PORT:-8081}/apis/ccompat/v7}
# cargo prints one result line per test binary; the total at the end is the run's verdict.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# The fault tests drive sagactl as a person would.
cargo build --quiet -p sagactl
# The compatibility gate: every version of every event against every earlier one, both
# directions, and against the running registry.
target/debug/sagactl schemas check
# The event catalogue (docs/asyncapi.json, docs/events.md): fresh, and valid AsyncAPI 3.
scripts/check-asyncapi.sh
# The HTTP contract: Schemathesis against each service's OpenAPI document, every check.
step "the HTTP contract"
scripts/check-api.sh
# One build of every test binary, then two streams side by side: the crates' own tests (topics
# and schemas of their own, nothing shared) beside the end-to-end tests that place orders and
# restart services. The end-to-end tests that stop the broker, Postgres or the registry, or the
# whole stack, run last, alone: cargo runs the binaries of one invocation one after another.
features=(--features "$SERVICE_FEATURES")
step "building the tests"
cargo test --workspace --no-run --quiet "${features[@]}"
# On a first start Jaeger was building beside the tests' build; the traces' tests need it.
deploy/local/stack.sh jaeger-wait
step "the tests, in two streams"
isolated_log=$(mktemp)
trap 'rm -f "$log" "$isolated_log"' EXIT
(cargo test --workspace --exclude saga-e2e --no-fail-fast "${features[@]}" 2>&1 | stamp >"$isolated_log") &
isolated=$!
alone=(faults chaos stack_lifecycle)
side_by_side=()
for target in tests/*.rs; do
  name=$(basename "$target" .rs)
  [[ " ${alone[*]} " == *" $name "* ]] || side_by_side+=(--test "$name")
done
cargo test -p saga-e2e --no-fail-fast "${features[@]}" "${side_by_side[@]}" 2>&1 | stamp | tee "$log" || status=$?
wait "$isolated" || status=$?
printf '\n==> %s\n' "the crates' own tests (they ran beside the end-to-end tests above)"
tee -a "$log" <"$isolated_log"
step "the tests that stop shared processes, alone"
alone_tests=()
for name in "${alone[@]}"; do alone_tests+=(--test "$name"); done
cargo test -p saga-e2e --no-fail-fast "${features[@]}" "${alone_tests[@]}" 2>&1 | stamp | tee -a "$log" || status=$?
# After everything above (sagas, faults, poison, adversarial input): the read side rebuilt from
# offset 0 must equal the live one, table by table, at one checkpoint vector.
step "the read side rebuilt from the topics and checked equal to the live one"
deploy/local/stack.sh up >/dev/null
target/debug/sagactl history rebuild || status=1
awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
     END { printf "\ntests: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' "$log"
exit "$status"
