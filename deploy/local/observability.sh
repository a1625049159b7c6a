# shellcheck shell=bash
# Jaeger and Prometheus for the native local stack; sourced by stack.sh, which defines say, step,
# die, port_open, pid_alive, wait_until, stop_pid, STATE, LOGS, ROOT and the services' ports.
#
# Jaeger v2 (all-in-one, in-memory) is built on first use from its Go module with the machine's
# Go toolchain and cached under .local/jaeger; Prometheus is Debian's package. Each binds
# 127.0.0.1 only. WITH_JAEGER=0 or WITH_PROMETHEUS=0 leaves one out.

JAEGER_VERSION=v1.75.0
WITH_JAEGER=${WITH_JAEGER:-1}
WITH_PROMETHEUS=${WITH_PROMETHEUS:-1}
JAEGER_UI_PORT=16686
JAEGER_OTLP_HTTP_PORT=4318
PROMETHEUS_PORT=${PROMETHEUS_PORT:-9090}
JAEGER_DIR=$STATE/jaeger
PROMETHEUS_DIR=$STATE/prometheus
JAEGER_URL=http://127.0.0.1:$JAEGER_UI_PORT
PROMETHEUS_URL=http://127.0.0.1:$PROMETHEUS_PORT

enabled() { [ "$1" != 0 ] && [ "$1" != false ] && [ "$1" != no ]; }

# ---------------------------------------------------------------------------------------------
# Jaeger

jaeger_binary() { printf '%s' "$JAEGER_DIR/jaeger-$JAEGER_VERSION"; }

jaeger_build() {
  local binary
  binary=$(jaeger_binary)
  [ -x "$binary" ] && return
  command -v go >/dev/null 2>&1 || die "Go not found: Jaeger is built from its Go module (install Go, or set WITH_JAEGER=0)"
  step "building Jaeger $JAEGER_VERSION from the Go module proxy (once; a few minutes)"
  # A scratch module per version: `go get` never downgrades what an earlier version's build
  # already required, and Jaeger built against newer collector modules than its own fails at
  # start ("otelcol.Factories.Telemetry must not be nil").
  mkdir -p "$JAEGER_DIR/build-$JAEGER_VERSION"
  (
    cd "$JAEGER_DIR/build-$JAEGER_VERSION"
    [ -f go.mod ] || go mod init saga-local/jaeger >/dev/null 2>&1
    go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION" &&
      go build -trimpath -o "$binary.partial" github.com/jaegertracing/jaeger/cmd/jaeger &&
      mv "$binary.partial" "$binary"
  ) >"$LOGS/jaeger-build.log" 2>&1 ||
    { tail -n 30 "$LOGS/jaeger-build.log" >&2; die "could not build Jaeger (log: $LOGS/jaeger-build.log)"; }
}

jaeger_ready() { curl -fs -o /dev/null "http://127.0.0.1:13133/status"; }

# Building Jaeger takes minutes on two cores, and nothing in the stack needs it to work. So a
# first `up` does not wait for it: the stack starts without it, and the build runs afterwards in
# the background and starts Jaeger when done (`jaeger-build`). Spans until then are dropped.
JAEGER_BUILDER=$JAEGER_DIR/build.pid

jaeger_building() { pid_alive "$JAEGER_BUILDER"; }

jaeger_up() {
  enabled "$WITH_JAEGER" || return 0
  mkdir -p "$JAEGER_DIR" "$LOGS"
  if pid_alive "$JAEGER_DIR/jaeger.pid"; then
    say "jaeger     already running"
    return
  fi
  # Not built yet: `jaeger_build_later` builds and starts it once the rest is up.
  [ -x "$(jaeger_binary)" ] || return 0
  local port
  for port in 4317 "$JAEGER_OTLP_HTTP_PORT" "$JAEGER_UI_PORT" 16685 13133; do
    port_open "$port" && die "port $port (Jaeger) is taken by another process: stop it or set WITH_JAEGER=0"
  done
  step "starting Jaeger on $JAEGER_URL (OTLP on 127.0.0.1:4317 and :$JAEGER_OTLP_HTTP_PORT)"
  JAEGER_HOST=127.0.0.1 setsid nohup "$(jaeger_binary)" --config "$ROOT/deploy/observability/jaeger.yaml" \
    >>"$LOGS/jaeger.log" 2>&1 </dev/null &
  echo $! >"$JAEGER_DIR/jaeger.pid"
}

# Called last by `up`: builds Jaeger in the background if it is not built, and starts it when
# done. The builder leads a process group of its own, so that `down` stops the Go toolchain too.
jaeger_build_later() {
  enabled "$WITH_JAEGER" || return 0
  [ -x "$(jaeger_binary)" ] && return 0
  if ! jaeger_building; then
    command -v go >/dev/null 2>&1 || die "Go not found: Jaeger is built from its Go module (install Go, or set WITH_JAEGER=0)"
    setsid nohup "$ROOT/deploy/local/stack.sh" jaeger-build >>"$LOGS/jaeger.log" 2>&1 </dev/null &
    echo $! >"$JAEGER_BUILDER"
  fi
  say "Jaeger is being built from its Go module (first start only, a few minutes; log:"
  say "$LOGS/jaeger-build.log). It starts by itself when built; spans until then are dropped."
  say "deploy/local/stack.sh jaeger-wait waits for it."
}

# Waits for a Jaeger that `up` started; one still building is not waited for (`jaeger-wait` is).
jaeger_wait() {
  enabled "$WITH_JAEGER" || return 0
  pid_alive "$JAEGER_DIR/jaeger.pid" || return 0
  wait_until "Jaeger" 60 "$LOGS/jaeger.log" jaeger_ready
}

# For what needs traces (the tests): waits for the background build, then for Jaeger itself.
jaeger_wait_built() {
  enabled "$WITH_JAEGER" || return 0
  if jaeger_building; then
    step "waiting for Jaeger's build (log: $LOGS/jaeger-build.log)"
    wait_until "Jaeger's build" 1200 "$LOGS/jaeger-build.log" eval '! jaeger_building'
  fi
  [ -x "$(jaeger_binary)" ] || die "Jaeger was not built (log: $LOGS/jaeger-build.log)"
  pid_alive "$JAEGER_DIR/jaeger.pid" || die "Jaeger is not running: run make up"
  wait_until "Jaeger" 60 "$LOGS/jaeger.log" jaeger_ready
}

jaeger_down() {
  if jaeger_building; then
    step "stopping Jaeger's build"
    kill -TERM -- "-$(cat "$JAEGER_BUILDER")" 2>/dev/null || true
  fi
  stop_pid "Jaeger" "$JAEGER_DIR/jaeger.pid" 20
}

# What the services are told about the collector: export only where Jaeger runs, unless the
# caller already named a collector of their own.
otel_environment() {
  if [ -n "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" ]; then
    printf 'OTEL_EXPORTER_OTLP_ENDPOINT=%s\n' "$OTEL_EXPORTER_OTLP_ENDPOINT"
  elif enabled "$WITH_JAEGER"; then
    printf 'OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:%s\n' "$JAEGER_OTLP_HTTP_PORT"
  fi
  # Spans leave a second after they end (the default is 5 s): traces show up while you look.
  printf 'OTEL_BSP_SCHEDULE_DELAY=%s\n' "${OTEL_BSP_SCHEDULE_DELAY:-1000}"
}

# ---------------------------------------------------------------------------------------------
# Prometheus

prometheus_bin() {
  if ! command -v prometheus >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      step "installing Prometheus from the OS packages" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >/dev/null; } ||
        die "could not install Prometheus (apt-get install prometheus, or set WITH_PROMETHEUS=0)"
    else
      die "Prometheus not found: apt-get install prometheus (or set WITH_PROMETHEUS=0)"
    fi
  fi
  command -v prometheus
}

# The Compose configuration, each job's static target replaced by a file of targets that
# prometheus_targets keeps current: every replica of the service, on this machine's ports.
prometheus_config() {
  mkdir -p "$PROMETHEUS_DIR"
  sed -e 's#^    static_configs:$#    file_sd_configs:#' \
    -e 's#^      - targets: \["\([a-z]*\):8080"\]$#      - files: ["targets/\1.json"]#' \
    "$ROOT/deploy/observability/prometheus.yml" >"$PROMETHEUS_DIR/prometheus.yml"
  cp "$ROOT/deploy/observability/alerts.yml" "$PROMETHEUS_DIR/alerts.yml"
  prometheus_targets
}

# One target per replica, labelled `replica` (`payment`, `payment-2`, …): replica 1 always, the
# others while they have a pid file (a killed replica stays, and shows as down; one scaled away
# goes). Prometheus notices the files change by itself; each is replaced whole.
prometheus_targets() {
  enabled "$WITH_PROMETHEUS" || return 0
  mkdir -p "$PROMETHEUS_DIR/targets"
  local name replica entries file
  for name in "${SERVICES[@]}"; do
    entries=""
    for replica in $( (echo "$name"; known_replicas | grep -x "$name-[0-9]" || true) | sort -u); do
      entries+="${entries:+,}{\"targets\":[\"127.0.0.1:$(replica_port "$name" "$(replica_number "$replica")")\"],\"labels\":{\"replica\":\"$replica\"}}"
    done
    file=$PROMETHEUS_DIR/targets/$name.json
    printf '[%s]\n' "$entries" >"$file.tmp"
    mv "$file.tmp" "$file"
  done
}

prometheus_ready() { curl -fs -o /dev/null "$PROMETHEUS_URL/-/ready"; }

prometheus_up() {
  enabled "$WITH_PROMETHEUS" || return 0
  mkdir -p "$PROMETHEUS_DIR" "$LOGS"
  local bin
  bin=$(prometheus_bin)
  prometheus_config
  if pid_alive "$PROMETHEUS_DIR/prometheus.pid"; then
    # A running Prometheus picks up changed rules and targets without a restart.
    kill -HUP "$(cat "$PROMETHEUS_DIR/prometheus.pid")"
    say "prometheus already running (configuration reloaded)"
    return
  fi
  port_open "$PROMETHEUS_PORT" && die "port $PROMETHEUS_PORT is taken by another process: stop it or set PROMETHEUS_PORT"
  step "starting Prometheus on $PROMETHEUS_URL"
  setsid nohup "$bin" --config.file="$PROMETHEUS_DIR/prometheus.yml" \
    --storage.tsdb.path="$PROMETHEUS_DIR/data" --storage.tsdb.retention.time=2d \
    --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" --web.enable-lifecycle \
    >>"$LOGS/prometheus.log" 2>&1 </dev/null &
  echo $! >"$PROMETHEUS_DIR/prometheus.pid"
}

prometheus_wait() {
  enabled "$WITH_PROMETHEUS" || return 0
  wait_until "Prometheus" 60 "$LOGS/prometheus.log" prometheus_ready
}

prometheus_down() { stop_pid "Prometheus" "$PROMETHEUS_DIR/prometheus.pid" 30; }

# ---------------------------------------------------------------------------------------------

observability_endpoints() {
  if enabled "$WITH_JAEGER"; then
    # The Go module's Jaeger serves its query API but only a placeholder page: the console lays
    # a trace out on each order's page instead.
    say "  Jaeger API       $JAEGER_URL/api/traces/{trace id}   (each order's trace is laid out on its console page)"
  fi
  if enabled "$WITH_PROMETHEUS"; then
    say "  Prometheus       $PROMETHEUS_URL   (targets /targets, alerts /alerts; rules deploy/observability/alerts.yml)"
  fi
}

observability_status() {
  local all=0
  if enabled "$WITH_JAEGER"; then
    if pid_alive "$JAEGER_DIR/jaeger.pid" && jaeger_ready; then
      status_line jaeger running "$JAEGER_URL (pid $(cat "$JAEGER_DIR/jaeger.pid"), OTLP http://127.0.0.1:$JAEGER_OTLP_HTTP_PORT)"
    elif jaeger_building; then
      status_line jaeger building "first start only; it starts when built (log: $LOGS/jaeger-build.log)"
      all=1
    else
      status_line jaeger stopped "-"
      all=1
    fi
  fi
  if enabled "$WITH_PROMETHEUS"; then
    if pid_alive "$PROMETHEUS_DIR/prometheus.pid" && prometheus_ready; then
      status_line prometheus running "$PROMETHEUS_URL (pid $(cat "$PROMETHEUS_DIR/prometheus.pid"))"
    else
      status_line prometheus stopped "-"
      all=1
    fi
  fi
  return $all
}
