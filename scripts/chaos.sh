#!/usr/bin/env bash
# `make chaos`: the chaos soak (tests/chaos.rs) for CHAOS_SECONDS (default 600), on the stack as
# `make test` runs it: debug service builds that can inject faults, retries 200 ms apart.
# CHAOS_SEED replays the schedule of an earlier run (each run prints its seed).
set -euo pipefail
cd "$(dirname "$0")/.."
export SERVICE_PROFILE=${SERVICE_PROFILE:-dev}
export SERVICE_FEATURES=${SERVICE_FEATURES:-saga-messaging/fault-injection}
export RETRY_DELAY_MS=${RETRY_DELAY_MS:-200}
export CHAOS_SECONDS=${CHAOS_SECONDS:-600}
export KAFKA_BOOTSTRAP=${KAFKA_BOOTSTRAP:-127.0.0.1:${KAFKA_PORT:-9092}}
export SCHEMA_REGISTRY_URL=${SCHEMA_REGISTRY_URL:-http://127.0.0.1:${REGISTRY_PORT:-8081}/apis/ccompat/v7}
# Builds the services and starts what is not running; the soak restarts every service itself,
# as these builds, with its fault rules.
deploy/local/stack.sh up
# A first start builds Jaeger in the background: not while the faults run.
deploy/local/stack.sh jaeger-wait
cargo build --quiet -p sagactl
cargo test --features "$SERVICE_FEATURES" -p saga-e2e --test chaos -- --nocapture
