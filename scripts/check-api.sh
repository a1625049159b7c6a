#!/usr/bin/env bash
# Schemathesis against the services' OpenAPI documents (the four and the read side's), on the stack `make up` started: every
# check (no server errors; status codes, content types, headers and bodies as documented; data
# the schema forbids rejected, data it allows accepted; auth enforced), the stateful phase linking
# POST /orders to what reads it, deterministic generation and a bounded number of examples.
#
#   scripts/check-api.sh                         what make test runs (about 40 s)
#   EXAMPLES=500 scripts/check-api.sh            a longer search (make fuzz-api)
#   EXAMPLES=2000 SEED=7 scripts/check-api.sh    random generation from a seed, reproducible
#
# Schemathesis is installed, pinned by tools/schemathesis/requirements.txt, into .local/schemathesis.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.local/schemathesis
EXAMPLES=${EXAMPLES:-25}
# Deterministic generation unless a seed asks for a (reproducible) random search.
if [ -n "${SEED:-}" ]; then generation=(--seed "$SEED"); else generation=(--generation-deterministic); fi
ADMIN_TOKEN=${INVENTORY_ADMIN_TOKEN:-dev-inventory-admin}
REVIEWER_TOKEN=${PAYMENT_REVIEWER_TOKEN:-dev-payment-reviewer}
REPORTS=.local/schemathesis/reports

stamp=$(sha256sum tools/schemathesis/requirements.txt | cut -c1-16)
if [ "$(cat "$VENV/.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "==> installing Schemathesis into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r tools/schemathesis/requirements.txt
  echo "$stamp" >"$VENV/.stamp"
fi

# The one rule a schema cannot state (a reused Idempotency-Key): see tools/schemathesis/hooks.py.
export PYTHONPATH=tools/schemathesis SCHEMATHESIS_HOOKS=hooks
mkdir -p "$REPORTS"
# One service's run; its output goes to its own log, shown whole once every run has ended.
check() {
  local service=$1 port=$2 token
  echo "==> $service (http://127.0.0.1:$port/openapi.json)"
  curl -fs "http://127.0.0.1:$port/docs/" | grep -qi swagger ||
    { echo "error: no Swagger UI at http://127.0.0.1:$port/docs/" >&2; return 1; }
  # The bearer token of the service's guarded routes (PUT /stock, review decisions); the others
  # ignore it.
  case $service in
    payment) token=$REVIEWER_TOKEN ;;
    *) token=$ADMIN_TOKEN ;;
  esac
  # The read side's documented 503 (tools/schemathesis/history.toml).
  local config=()
  [ "$service" != history ] || config=(--config-file tools/schemathesis/history.toml)
  "$VENV/bin/schemathesis" ${config[@]+"${config[@]}"} run "http://127.0.0.1:$port/openapi.json" \
    --checks all --phases examples,coverage,fuzzing,stateful \
    --max-examples "$EXAMPLES" "${generation[@]}" \
    --header "Authorization: Bearer $token" \
    --request-timeout 10 --no-color \
    --report junit --report-junit-path "$REPORTS/$service.xml"
}
# The five run side by side: each spends most of its time starting Python and waiting on its
# service, one after the other they took 80 s of which 30 s were checks.
status=0
pids=()
services=()
for target in order:8080 payment:8082 inventory:8083 shipping:8084 history:8085; do
  service=${target%%:*}
  check "$service" "${target##*:}" >"$REPORTS/$service.log" 2>&1 &
  pids+=($!)
  services+=("$service")
done
for index in "${!pids[@]}"; do
  wait "${pids[$index]}" || status=1
  cat "$REPORTS/${services[$index]}.log"
done
exit "$status"
