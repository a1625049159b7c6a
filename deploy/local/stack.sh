#!/usr/bin/env bash
# The native local stack: Apache Kafka (KRaft, single node), Apicurio Registry (Confluent-compatible
# API) and PostgreSQL, the four services and the read side (history), and Jaeger and Prometheus to
# watch them (see observability.sh), all on 127.0.0.1, without a Docker engine.
#
#   stack.sh up | down | status | logs | clean | scale <service> <replicas>
#
# Everything it downloads or writes lives under .local/ in the checkout. Kafka and the registry are
# in kafka-registry.sh, Jaeger and Prometheus in observability.sh; both are sourced here.
# `up` is idempotent: it starts only what is not running and changes nothing that runs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${SAGA_STATE_DIR:-$ROOT/.local}
LOGS=$STATE/logs

KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
REGISTRY_PORT=${REGISTRY_PORT:-8081}
REGISTRY_MANAGEMENT_PORT=${REGISTRY_MANAGEMENT_PORT:-9001}
PGPORT=${PGPORT:-5432}
ORDER_PORT=${ORDER_PORT:-8080}
PAYMENT_PORT=${PAYMENT_PORT:-8082}
INVENTORY_PORT=${INVENTORY_PORT:-8083}
SHIPPING_PORT=${SHIPPING_PORT:-8084}
HISTORY_PORT=${HISTORY_PORT:-8085}
# The four saga services, then the read side that projects their events.
SERVICES=(order payment inventory shipping history)
# Replicas per service, e.g. `payment=3,inventory=2` (see replica_count).
REPLICAS=${REPLICAS:-}
# `cargo build` profile of the service binaries; release unless told otherwise.
SERVICE_PROFILE=${SERVICE_PROFILE:-release}
# Extra cargo features of the service binaries (make test adds saga-messaging/fault-injection).
SERVICE_FEATURES=${SERVICE_FEATURES:-}

APICURIO_VERSION=3.3.3
# Apicurio's Confluent API; the registry answers on it once its storage is ready.
REGISTRY_URL=http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7
# Producers and consumers deploy independently, in both directions: a new version must read
# every earlier one and be read by it (`sagactl schemas check` is the same gate, before shipping).
REGISTRY_COMPATIBILITY=FULL_TRANSITIVE

# One database and one login role per service, plus the registry's, plus saga_test where the
# messaging crate's integration tests make a schema each. Each role can open only the database of
# the same name (pg_hba `sameuser`).
DATABASES=(orders payments inventory shipping history registry saga_test)
# The services' own databases, each with an owner and a runtime role (deploy/postgres/service-roles.sql).
SERVICE_DATABASES=(orders payments inventory shipping history)

KAFKA_DIR=$STATE/kafka
REGISTRY_DIR=$STATE/registry
PG_DIR=$STATE/postgres
# Postgres runs as the postgres OS user. As root in a checkout that user cannot reach (under
# /root, say), the cluster lives in /var/tmp instead, one directory per checkout.
if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1 && ! runuser -u postgres -- test -x "$ROOT" 2>/dev/null; then
  PG_DIR=/var/tmp/saga-postgres-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)
fi
PG_LOG=$PG_DIR/postgres.log
PG_DATA=$PG_DIR/data
PG_SOCKET_DIR=$PG_DIR/run

say() { printf '%s\n' "$*"; }
step() { printf '==> %s\n' "$*"; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() {
  local pid_file=$1
  [ -s "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

# wait_until <what> <seconds> <log file> <command...>: polls the command until it succeeds; on
# timeout shows the end of the log so that the cause is on screen.
wait_until() {
  local what=$1 seconds=$2 log=$3
  shift 3
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      say "--- last lines of $log ---" >&2
      tail -n 40 "$log" >&2 || true
      die "$what not ready after ${seconds}s (log: $log)"
    fi
    sleep 0.5
  done
}

stop_pid() {
  local name=$1 pid_file=$2 seconds=${3:-60}
  if pid_alive "$pid_file"; then
    step "stopping $name"
    local pid
    pid=$(cat "$pid_file")
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + seconds))
    while kill -0 "$pid" 2>/dev/null; do
      if ((SECONDS >= deadline)); then
        say "$name did not stop in ${seconds}s: killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.2
    done
  fi
  rm -f "$pid_file"
}

# shellcheck source=deploy/local/observability.sh
. "$ROOT/deploy/local/observability.sh"
# shellcheck source=deploy/local/kafka-registry.sh
. "$ROOT/deploy/local/kafka-registry.sh"

# ---------------------------------------------------------------------------------------------
# PostgreSQL (Debian's packages), running as the non-root `postgres` user

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$dir" ]; then
    if [ "$(id -u)" = 0 ]; then
      step "installing PostgreSQL from the OS packages" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null; } ||
        die "could not install PostgreSQL (apt-get install postgresql)"
      dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    else
      die "PostgreSQL not found: apt-get install postgresql"
    fi
  fi
  printf '%s' "$dir"
}

# Postgres refuses to run as root, so as root everything runs as the `postgres` OS user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_running() {
  [ -f "$PG_DATA/PG_VERSION" ] && as_pg "$(pg_bin)/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

pg_sql() {
  as_pg "$(pg_bin)/psql" -h "$PG_SOCKET_DIR" -p "$PGPORT" -U postgres -d postgres \
    -v ON_ERROR_STOP=1 -qAt "$@"
}

postgres_up() {
  local bin
  bin=$(pg_bin)
  mkdir -p "$PG_DIR" "$LOGS"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "the postgres OS user is missing (reinstall the postgresql package)"
    chown postgres: "$PG_DIR"
    as_pg test -w "$PG_DIR" ||
      die "the postgres user cannot write $PG_DIR: a parent directory is not traversable (chmod o+x it, or set SAGA_STATE_DIR)"
    [ "$PG_DIR" = "$STATE/postgres" ] || say "postgres   $ROOT is not reachable by the postgres user: its cluster lives in $PG_DIR"
  fi
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    step "initialising PostgreSQL in $PG_DATA"
    as_pg "$bin/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C \
      --auth-local=peer --auth-host=scram-sha-256 >"$LOGS/initdb.log" 2>&1 ||
      { tail -n 20 "$LOGS/initdb.log" >&2; die "initdb failed"; }
    as_pg mkdir -p "$PG_SOCKET_DIR"
    # Only loopback and the local socket, and only a role into the database of its own name.
    as_pg tee "$PG_DATA/pg_hba.conf" >/dev/null <<EOF
local   all       postgres                 peer
local   sameuser  all                      scram-sha-256
host    sameuser  all       127.0.0.1/32   scram-sha-256
EOF
    as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null <<EOF

# saga: local stack settings
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_SOCKET_DIR'
max_connections = 200
shared_buffers = 256MB
password_encryption = scram-sha-256
EOF
  fi
  # Clusters made before the services spoke over the local socket: let them in that way too.
  if ! as_pg grep -q '^local   sameuser' "$PG_DATA/pg_hba.conf"; then
    as_pg sed -i '/^local   all       postgres/a local   sameuser  all                      scram-sha-256' "$PG_DATA/pg_hba.conf"
    pg_running && as_pg "$bin/pg_ctl" reload -D "$PG_DATA" >/dev/null
  fi
  if pg_running; then
    say "postgres   already running"
  else
    port_open "$PGPORT" && die "port $PGPORT is taken by another process: stop it or set PGPORT"
    step "starting PostgreSQL on 127.0.0.1:$PGPORT"
    as_pg "$bin/pg_ctl" start -D "$PG_DATA" -w -t 60 -l "$PG_LOG" -o "-p $PGPORT" >/dev/null ||
      { tail -n 20 "$PG_LOG" >&2; die "PostgreSQL did not start"; }
  fi
  local db
  for db in "${DATABASES[@]}"; do
    # Development passwords equal the role names; every service reads its own from the environment.
    pg_sql <<EOF
SELECT 'CREATE ROLE $db LOGIN PASSWORD ''$db'''
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$db') \gexec
SELECT 'CREATE DATABASE $db OWNER $db'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$db') \gexec
REVOKE ALL ON DATABASE $db FROM PUBLIC;
EOF
  done
  # `sagactl bench` waits until autovacuum is done before it measures; it sees the workers (in
  # pg_stat_activity) only with pg_read_all_stats, which the tests' role gets, and no service's.
  pg_sql <<EOF
SELECT 'GRANT pg_read_all_stats TO saga_test'
 WHERE NOT pg_has_role('saga_test', 'pg_read_all_stats', 'MEMBER') \gexec
EOF
  # Each service connects as <db>_runtime (reads and writes its tables, nothing else) and
  # migrates as the owner <db>: deploy/postgres/service-roles.sql. pg_hba lets each runtime role
  # into its own database only.
  local reload=0
  for db in "${SERVICE_DATABASES[@]}"; do
    as_pg "$(pg_bin)/psql" -h "$PG_SOCKET_DIR" -p "$PGPORT" -U postgres -d "$db" -qAt \
      -v db="$db" -v runtime="${db}_runtime" <"$ROOT/deploy/postgres/service-roles.sql" >/dev/null
    if ! as_pg grep -q "^local   $db " "$PG_DATA/pg_hba.conf"; then
      printf 'local   %s  %s  scram-sha-256\nhost    %s  %s  127.0.0.1/32  scram-sha-256\n' \
        "$db" "${db}_runtime" "$db" "${db}_runtime" | as_pg tee -a "$PG_DATA/pg_hba.conf" >/dev/null
      reload=1
    fi
  done
  if ((reload)); then as_pg "$bin/pg_ctl" reload -D "$PG_DATA" >/dev/null; fi
}

postgres_down() {
  if pg_running; then
    step "stopping PostgreSQL"
    as_pg "$(pg_bin)/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 >/dev/null
  fi
}

# ---------------------------------------------------------------------------------------------
# The services, built from this checkout

SERVICES_DIR=$STATE/services

service_port() {
  case $1 in
    order) echo "$ORDER_PORT" ;;
    payment) echo "$PAYMENT_PORT" ;;
    inventory) echo "$INVENTORY_PORT" ;;
    shipping) echo "$SHIPPING_PORT" ;;
    history) echo "$HISTORY_PORT" ;;
  esac
}

service_database() {
  case $1 in
    order) echo orders ;;
    payment) echo payments ;;
    inventory) echo inventory ;;
    shipping) echo shipping ;;
    history) echo history ;;
  esac
}

service_binary() {
  local dir=$SERVICE_PROFILE
  [ "$dir" = dev ] && dir=debug
  printf '%s' "${CARGO_TARGET_DIR:-$ROOT/target}/$dir/$1-service"
}

services_build() {
  if [ "${SAGA_SKIP_BUILD:-0}" = 1 ]; then
    return
  fi
  command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (rustup) to build the services"
  step "building the services (cargo build --profile $SERVICE_PROFILE${SERVICE_FEATURES:+ --features $SERVICE_FEATURES})"
  local packages=() name
  for name in "${SERVICES[@]}"; do packages+=(-p "$name-service"); done
  (cd "$ROOT" && cargo build --quiet --profile "$SERVICE_PROFILE" ${SERVICE_FEATURES:+--features "$SERVICE_FEATURES"} "${packages[@]}") ||
    die "building the services failed"
}

# Replicas: REPLICAS=payment=3,inventory=2 (a service not named runs once). Replica 1 of a
# service is `<service>`: its port (ORDER_PORT, …), <service>.pid, <service>.log. Replica k > 1 is
# `<service>-k`, on the service's port + 100·(k−1) (order: 8080, 8180, 8280, …; payment 8082,
# 8182, …; at most 9 replicas), with <service>-k.pid and .log. Each is a static member of its
# consumer group (CONSUMER_INSTANCE_ID=<service>-k): a replica restarted within the session
# timeout (10 s) gets its partitions back without moving any other.
MAX_REPLICAS=9

replica_count() {
  local name=$1 pair count=1
  for pair in ${REPLICAS//,/ }; do
    [ "${pair%%=*}" = "$name" ] && count=${pair#*=}
  done
  [[ "$count" =~ ^[1-9]$ ]] || die "REPLICAS: $name=$count is not a count from 1 to $MAX_REPLICAS"
  echo "$count"
}

# `payment` for replica 1, `payment-3` for replica 3.
replica_name() { if [ "$2" = 1 ]; then echo "$1"; else echo "$1-$2"; fi; }

# The service and replica number of a replica's name.
replica_service() { echo "${1%-[0-9]}"; }
replica_number() { if [[ "$1" =~ -([0-9])$ ]]; then echo "${BASH_REMATCH[1]}"; else echo 1; fi; }

replica_port() { echo $(($(service_port "$1") + 100 * ($2 - 1))); }

# Every replica of the services that has a pid file, running or not: `order`, `payment-2`, …
known_replicas() {
  local name file
  for name in "${SERVICES[@]}"; do
    for file in "$SERVICES_DIR/$name.pid" "$SERVICES_DIR/$name"-[0-9].pid; do
      [ -e "$file" ] && basename "$file" .pid
    done
  done
  return 0
}

replica_ready() {
  local service number
  service=$(replica_service "$1")
  number=$(replica_number "$1")
  curl -fs -o /dev/null "http://127.0.0.1:$(replica_port "$service" "$number")/readyz"
}

start_replica() {
  local name=$1 number=$2 replica port db otel
  replica=$(replica_name "$name" "$number")
  port=$(replica_port "$name" "$number")
  if pid_alive "$SERVICES_DIR/$replica.pid"; then
    say "$(printf '%-11s' "$replica") already running"
    return 1
  fi
  port_open "$port" && die "port $port ($replica) is taken by another process: stop it or set ${name^^}_PORT"
  [ -x "$(service_binary "$name")" ] || die "$(service_binary "$name") is missing: run without SAGA_SKIP_BUILD"
  step "starting $replica on 127.0.0.1:$port"
  # The services reach Postgres over its Unix socket: on one machine it costs about half
  # the kernel time of TCP loopback per round trip, and a saga makes dozens.
  db=$(service_database "$name")
  otel=$(otel_environment)
  # shellcheck disable=SC2086 # one VAR=value per word
  env $otel HTTP_ADDR="127.0.0.1:$port" KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT" \
    SCHEMA_REGISTRY_URL="$REGISTRY_URL" PGPORT="$PGPORT" CONSUMER_INSTANCE_ID="$name-$number" \
    PAYMENT_URL="http://127.0.0.1:$PAYMENT_PORT" JAEGER_URL="$JAEGER_URL" \
    DATABASE_URL="postgres://${db}_runtime:${db}_runtime@localhost/$db?host=$PG_SOCKET_DIR&port=$PGPORT" \
    MIGRATION_DATABASE_URL="postgres://$db:$db@localhost/$db?host=$PG_SOCKET_DIR&port=$PGPORT" \
    setsid nohup "$(service_binary "$name")" >>"$LOGS/$replica.log" 2>&1 </dev/null &
  echo $! >"$SERVICES_DIR/$replica.pid"
}

wait_replicas_ready() {
  local replica
  for replica in "$@"; do
    local deadline=$((SECONDS + 90))
    until replica_ready "$replica"; do
      ((SECONDS < deadline)) || { tail -n 30 "$LOGS/$replica.log" >&2; die "$replica is not ready after 90s (log: $LOGS/$replica.log)"; }
      pid_alive "$SERVICES_DIR/$replica.pid" || { tail -n 30 "$LOGS/$replica.log" >&2; die "$replica exited (log: $LOGS/$replica.log)"; }
      sleep 0.3
    done
  done
}

# Starts what is missing of each service's REPLICAS; stops nothing (see `scale`).
services_up() {
  mkdir -p "$SERVICES_DIR" "$LOGS"
  local name number started=()
  for name in "${SERVICES[@]}"; do
    for ((number = 1; number <= $(replica_count "$name"); number++)); do
      start_replica "$name" "$number" && started+=("$(replica_name "$name" "$number")")
    done
  done
  prometheus_targets
  wait_replicas_ready ${started[@]+"${started[@]}"}
}

# `scale <service> <n>`: starts replicas up to n and stops, gracefully and highest first, those
# above it (each finishes its in-flight transactions and commits before it exits).
cmd_scale() {
  local name=${1:-} count=${2:-}
  case "$name" in order | payment | inventory | shipping | history) ;; *) die "usage: $0 scale order|payment|inventory|shipping|history <replicas>" ;; esac
  [[ "$count" =~ ^[1-9]$ ]] || die "scale: $count is not a count from 1 to $MAX_REPLICAS"
  mkdir -p "$SERVICES_DIR" "$LOGS"
  local number started=()
  for ((number = MAX_REPLICAS; number > count; number--)); do
    stop_pid "$name-$number" "$SERVICES_DIR/$name-$number.pid" 40
  done
  for ((number = 1; number <= count; number++)); do
    start_replica "$name" "$number" && started+=("$(replica_name "$name" "$number")")
  done
  prometheus_targets
  wait_replicas_ready ${started[@]+"${started[@]}"}
}

services_down() {
  local replica
  for replica in $(known_replicas); do
    stop_pid "$replica" "$SERVICES_DIR/$replica.pid" 40
  done
}

# ---------------------------------------------------------------------------------------------

endpoints() {
  cat <<EOF

Stack is up:
  Kafka            127.0.0.1:$KAFKA_PORT
  Schema registry  $REGISTRY_URL  (compatibility $REGISTRY_COMPATIBILITY)
  PostgreSQL       127.0.0.1:$PGPORT  databases: ${DATABASES[*]}
                   e.g. postgres://orders:orders@127.0.0.1:$PGPORT/orders
  Order API        http://127.0.0.1:$ORDER_PORT   (POST /orders, GET /orders/{id}, GET /orders/{id}/timeline)
  Payment API      http://127.0.0.1:$PAYMENT_PORT   (GET /payments/{order_id}; reviews: GET /reviews?status=OPEN, POST /reviews/{order_id}/decision needs Authorization: Bearer \$PAYMENT_REVIEWER_TOKEN, default dev-payment-reviewer)
  Inventory API    http://127.0.0.1:$INVENTORY_PORT   (PUT/GET /stock/{sku}; PUT needs Authorization: Bearer \$INVENTORY_ADMIN_TOKEN, default dev-inventory-admin)
  Shipping API     http://127.0.0.1:$SHIPPING_PORT   (GET /shipments/{order_id})
  History API      http://127.0.0.1:$HISTORY_PORT   (GET /history/orders, /history/orders/{id}?as_of=, /history/stats?as_of=)
  Console          http://127.0.0.1:$HISTORY_PORT/   (orders, one saga live, stuck sagas, dead letters, reviews, the system as of a moment;
                   redrives need \$CONSOLE_OPERATOR_TOKEN, default dev-console-operator)
                   each also serves /healthz, /readyz, /metrics, /openapi.json and /docs (Swagger UI)
EOF
  local replicas
  replicas=$(known_replicas | grep -- '-[0-9]$' | while read -r replica; do
    pid_alive "$SERVICES_DIR/$replica.pid" &&
      printf '%s :%s  ' "$replica" "$(replica_port "$(replica_service "$replica")" "$(replica_number "$replica")")"
  done || true)
  [ -z "$replicas" ] || say "  Replicas         $replicas"
  observability_endpoints
  say "  Logs             $LOGS"
}

cmd_up() {
  command -v curl >/dev/null 2>&1 || die "curl not found (apt-get install curl)"
  mkdir -p "$STATE" "$LOGS"
  # Resolved here, whatever the caller's environment says; exported for the tools `up` runs.
  unset JAVA17 JAVA21
  JAVA17=$(java17_bin)
  JAVA21=$(java21_bin)
  export JAVA17 JAVA21
  # The build is the longest part of a first start: it runs beside resolving and starting the
  # rest, which mostly waits on downloads and on the JVMs.
  services_build &
  local build=$!
  postgres_up
  # Both JVMs start side by side; each is waited for with its own deadline.
  kafka_up
  registry_up
  jaeger_up
  prometheus_up
  # Kafka's topics and the registry's settings are made while the build runs: on a first start
  # the broker answers minutes before the build ends, and what waits on it after the build
  # delays the services.
  kafka_wait
  registry_wait
  wait "$build" || die "building the services failed"
  # The services export spans from their first request on.
  jaeger_wait
  services_up
  prometheus_wait
  endpoints
  jaeger_build_later
}

cmd_down() {
  services_down
  prometheus_down
  jaeger_down
  stop_pid "Apicurio Registry" "$REGISTRY_DIR/registry.pid" 60
  stop_pid "Kafka" "$KAFKA_DIR/kafka.pid" 90
  postgres_down
}

status_line() {
  local name=$1 state=$2 where=$3
  printf '%-11s %-8s %s\n' "$name" "$state" "$where"
}

cmd_status() {
  local all=0
  if pg_running; then
    status_line postgres running "127.0.0.1:$PGPORT (pid $(head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null), data $PG_DATA)"
  else
    status_line postgres stopped "-"
    all=1
  fi
  if pid_alive "$KAFKA_DIR/kafka.pid"; then status_line kafka running "127.0.0.1:$KAFKA_PORT (pid $(cat "$KAFKA_DIR/kafka.pid"))"; else status_line kafka stopped "-"; all=1; fi
  if pid_alive "$REGISTRY_DIR/registry.pid"; then
    if registry_ready; then status_line registry running "$REGISTRY_URL (pid $(cat "$REGISTRY_DIR/registry.pid"))"; else status_line registry starting "$REGISTRY_URL"; all=1; fi
  else
    status_line registry stopped "-"
    all=1
  fi
  local name replica url
  for name in "${SERVICES[@]}"; do
    # Replica 1 always has a line; further replicas once they were started.
    for replica in $( (echo "$name"; known_replicas | grep -x "$name-[0-9]") | sort -u); do
      url="http://127.0.0.1:$(replica_port "$name" "$(replica_number "$replica")")"
      if pid_alive "$SERVICES_DIR/$replica.pid"; then
        if replica_ready "$replica"; then
          status_line "$replica" running "$url (pid $(cat "$SERVICES_DIR/$replica.pid"))"
        else
          status_line "$replica" starting "$url"
          all=1
        fi
      elif [ "$replica" = "$name" ]; then
        status_line "$replica" stopped "-"
        all=1
      else
        status_line "$replica" stopped "-"
      fi
    done
  done
  observability_status || all=1
  return $all
}

cmd_logs() {
  local log
  for log in "$PG_LOG" "$LOGS"/kafka.log "$LOGS"/registry.log "$LOGS"/order*.log \
    "$LOGS"/payment*.log "$LOGS"/inventory*.log "$LOGS"/shipping*.log "$LOGS"/history*.log "$LOGS"/jaeger.log \
    "$LOGS"/prometheus.log; do
    [ -f "$log" ] || continue
    printf '\n===== %s =====\n' "$log"
    tail -n "${LINES_PER_LOG:-30}" "$log"
  done
}

cmd_kill() {
  local pid_file
  case "$1" in
    postgres)
      step "stopping PostgreSQL immediately (no checkpoint: crash recovery on the next start)"
      as_pg "$(pg_bin)/pg_ctl" stop -D "$PG_DATA" -m immediate -w -t 60 >/dev/null
      return
      ;;
    kafka) pid_file=$KAFKA_DIR/kafka.pid ;;
    registry) pid_file=$REGISTRY_DIR/registry.pid ;;
    order | payment | inventory | shipping | history | order-[2-9] | payment-[2-9] | inventory-[2-9] | shipping-[2-9] | history-[2-9])
      pid_file=$SERVICES_DIR/$1.pid
      ;;
    *) die "usage: $0 kill postgres|kafka|registry|<service>[-<replica>]" ;;
  esac
  pid_alive "$pid_file" || die "$1 is not running"
  local pid
  pid=$(cat "$pid_file")
  step "killing $1 (kill -9 $pid)"
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

cmd_clean() {
  cmd_down
  step "wiping stack data (downloads are kept)"
  rm -rf "$PG_DIR" "$KAFKA_DIR/data" "$KAFKA_DIR/server.properties" "$PROMETHEUS_DIR/data" "$LOGS"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  logs) cmd_logs ;;
  clean) cmd_clean ;;
  # Kafka's kafka-topics tool from the resolved jars; create-topics.sh runs it this way too.
  kafka-topics)
    shift
    topic_command "$@"
    ;;
  # Kafka's kafka-configs tool (a topic's effective configuration; alter one).
  kafka-configs)
    shift
    kafka_tool kafka.admin.ConfigCommand "$@"
    ;;
  # Kafka's kafka-consumer-groups tool (inspect groups, reset offsets).
  kafka-consumer-groups)
    shift
    kafka_tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "$@"
    ;;
  # Builds Jaeger and starts it: what `up` runs in the background on a first start.
  jaeger-build)
    jaeger_build
    jaeger_up
    ;;
  # Waits until Jaeger runs, its first build included (the tests need its traces).
  jaeger-wait) jaeger_wait_built ;;
  # Simulates a crash of one component: kill -9 (Postgres: an immediate shutdown). `up` restarts it.
  kill)
    cmd_kill "${2:-}"
    ;;
  # Stops one service, Jaeger or Prometheus gracefully (SIGTERM); `up` starts it again.
  scale)
    services_build
    cmd_scale "${2:-}" "${3:-}"
    ;;
  stop)
    case "${2:-}" in
      order | payment | inventory | shipping | history | order-[2-9] | payment-[2-9] | inventory-[2-9] | shipping-[2-9] | history-[2-9])
        stop_pid "$2" "$SERVICES_DIR/$2.pid" 40
        prometheus_targets
        ;;
      jaeger) jaeger_down ;;
      prometheus) prometheus_down ;;
      *) die "usage: $0 stop <service>[-<replica>]|jaeger|prometheus" ;;
    esac
    ;;
  *)
    say "usage: $0 up|down|status|logs|clean|jaeger-wait|kill <component>|stop <service>[-<replica>]|scale <service> <replicas>|kafka-topics <args>|kafka-configs <args>|kafka-consumer-groups <args>" >&2
    exit 2
    ;;
esac
