# shellcheck shell=bash
# Kafka and Apicurio Registry for the native local stack, the stack's two JVMs, both from Maven
# Central; sourced by stack.sh, which defines say, step, die, port_open, pid_alive, wait_until,
# stop_pid, STATE, LOGS, ROOT, the ports and APICURIO_VERSION.
#
# Kafka runs from the jars deploy/local/maven/kafka.lock names, Apicurio Registry from the
# archive registry.lock names; both are downloaded on first use and checked against their
# digests. Kafka's own tools (kafka-topics, kafka-configs, kafka-consumer-groups) run from the
# same jars: `stack.sh kafka-topics …`.

# ---------------------------------------------------------------------------------------------
# Java

# Each probe starts a JVM (a tenth of a second, more on a loaded machine), and `up` runs on every
# restart a test makes: `up` resolves both once, into JAVA17 and JAVA21, and the tools reuse them.
java17_bin() {
  if [ -n "${JAVA17:-}" ]; then
    printf '%s' "$JAVA17"
    return
  fi
  local java=${JAVA_HOME:+$JAVA_HOME/bin/}java
  command -v "$java" >/dev/null 2>&1 || die "Java 17+ not found: install a JDK (apt-get install openjdk-17-jdk-headless) or set JAVA_HOME"
  local major
  major=$("$java" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
  [ "${major%%.*}" -ge 17 ] 2>/dev/null || die "Kafka 4 needs Java 17+, $java is $major"
  printf '%s' "$java"
}

# Apicurio Registry 3.2+ is compiled for Java 21: find a JDK that new enough.
java21_bin() {
  if [ -n "${JAVA21:-}" ]; then
    printf '%s' "$JAVA21"
    return
  fi
  local candidate major
  for candidate in ${APICURIO_JAVA_HOME:+"$APICURIO_JAVA_HOME/bin/java"} ${JAVA_HOME:+"$JAVA_HOME/bin/java"} /usr/lib/jvm/*/bin/java "$(command -v java || true)"; do
    [ -x "$candidate" ] || continue
    major=$("$candidate" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
    if [ "${major%%.*}" -ge 21 ] 2>/dev/null; then
      printf '%s' "$candidate"
      return
    fi
  done
  die "Apicurio Registry $APICURIO_VERSION needs Java 21+: none found in /usr/lib/jvm (set APICURIO_JAVA_HOME)"
}

# Kafka and Apicurio Registry come from Maven Central as the files deploy/local/maven/*.lock name
# (written by lock.sh, which resolves them with Maven): a first start needs only curl.
MAVEN_CENTRAL=${MAVEN_CENTRAL:-https://repo.maven.apache.org/maven2}

# Why the lock files no longer match what lock.sh wrote them from: pom.xml and APICURIO_VERSION
# (nothing when they match). scripts/check-locks.sh asks the same.
locks_stale() {
  local maven=$ROOT/deploy/local/maven
  [ "$(sed -n 's/^# pom.xml //p' "$maven/kafka.lock")" = "$(sha256sum "$maven/pom.xml" | cut -c1-64)" ] ||
    echo "deploy/local/maven/pom.xml changed since kafka.lock was written"
  grep -q "/apicurio-registry-app-$APICURIO_VERSION-all.tar.gz\$" "$maven/registry.lock" ||
    echo "registry.lock is not for Apicurio Registry $APICURIO_VERSION"
}

locks_current() {
  local stale
  stale=$(locks_stale)
  [ -z "$stale" ] || die "$stale: run deploy/local/maven/lock.sh"
}

# Downloads every file a lock names (lines `<sha256>  <path in Maven Central's layout>`) into
# `dir`, with one curl that keeps its connections (the 93 jars of Kafka in half a second), and
# checks each file against its digest.
fetch_locked() {
  local lock=$1 dir=$2
  mkdir -p "$dir"
  grep -v '^#' "$lock" |
    awk -v base="$MAVEN_CENTRAL" -v dir="$dir" '{ n = split($2, path, "/")
      printf "url = \"%s/%s\"\noutput = \"%s/%s\"\n", base, $2, dir, path[n] }' |
    curl --parallel --parallel-max 8 --fail --silent --no-progress-meter --show-error --location --retry 3 --config - || return 1
  grep -v '^#' "$lock" | awk '{ n = split($2, path, "/"); print $1 "  " path[n] }' |
    (cd "$dir" && sha256sum --check --quiet --strict -)
}

# ---------------------------------------------------------------------------------------------
# Kafka (from Maven Central), KRaft single node

kafka_libs() {
  local lock=$ROOT/deploy/local/maven/kafka.lock stamp
  locks_current
  stamp=$(sha256sum "$lock" | cut -c1-16)
  if [ "$(cat "$KAFKA_DIR/libs/.stamp" 2>/dev/null)" != "$stamp" ]; then
    step "downloading the Kafka broker from Maven Central"
    rm -rf "$KAFKA_DIR/libs"
    fetch_locked "$lock" "$KAFKA_DIR/libs" || die "could not download Kafka from $MAVEN_CENTRAL"
    printf '%s' "$stamp" >"$KAFKA_DIR/libs/.stamp"
  fi
}

kafka_java() {
  "$(java17_bin)" -cp "$KAFKA_DIR/libs/*" "$@"
}

# A short-lived Kafka tool: small heap, quick start. Its first run saves the classes it loaded
# (a dynamic class-data-sharing archive, one per tool, kept with the jars it was made from); the
# runs after it map them instead of loading and verifying them again, which halves a tool's CPU
# (1.6 → 0.9 CPU-seconds for a topic's creation). The archive is written under a name of its own
# and renamed, so tools that start side by side never read half of one. The JVM's own warnings
# (an archive that no longer matches its jars, say) go to stderr, never into a tool's output.
kafka_tool() {
  local archive=$KAFKA_DIR/libs/cds/$1.jsa share status=0
  if [ -f "$archive" ]; then
    share=(-XX:SharedArchiveFile="$archive")
  else
    mkdir -p "${archive%/*}"
    share=(-XX:ArchiveClassesAtExit="$archive.$BASHPID")
  fi
  "$(java17_bin)" "${share[@]}" -Xlog:disable -Xlog:all=warning,cds*=off:stderr \
    -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
    -Dlog4j2.configurationFile="$ROOT/deploy/local/log4j2-tools.properties" \
    -cp "$KAFKA_DIR/libs/*" "$@" || status=$?
  if [ -f "$archive.$BASHPID" ]; then mv -f "$archive.$BASHPID" "$archive"; fi
  return "$status"
}

topic_command() { kafka_tool org.apache.kafka.tools.TopicCommand "$@"; }

kafka_up() {
  mkdir -p "$KAFKA_DIR" "$LOGS"
  kafka_libs
  if pid_alive "$KAFKA_DIR/kafka.pid"; then
    say "kafka      already running"
    return
  fi
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another process: stop it or set KAFKA_PORT"
  port_open "$KAFKA_CONTROLLER_PORT" && die "port $KAFKA_CONTROLLER_PORT is taken: stop it or set KAFKA_CONTROLLER_PORT"
  sed -e "s#@DATA_DIR@#$KAFKA_DIR/data#" -e "s#@PORT@#$KAFKA_PORT#g" \
    -e "s#@CONTROLLER_PORT@#$KAFKA_CONTROLLER_PORT#g" \
    "$ROOT/deploy/local/kafka.properties" >"$KAFKA_DIR/server.properties"
  if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
    step "formatting Kafka storage"
    local cluster_id
    cluster_id=$(kafka_tool kafka.tools.StorageTool random-uuid)
    kafka_tool kafka.tools.StorageTool format --standalone -t "$cluster_id" \
      -c "$KAFKA_DIR/server.properties" >"$LOGS/kafka-format.log" 2>&1 ||
      { tail -n 20 "$LOGS/kafka-format.log" >&2; die "could not format Kafka storage"; }
  fi
  step "starting Kafka on 127.0.0.1:$KAFKA_PORT"
  # The broker gets a fixed, small heap: two cores and a handful of topics need no more.
  KAFKA_HEAP=${KAFKA_HEAP:-512m}
  setsid nohup "$(java17_bin)" -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" -XX:+UseG1GC \
    -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/deploy/local/log4j2-kafka.properties" \
    -cp "$KAFKA_DIR/libs/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
    >>"$LOGS/kafka.log" 2>&1 </dev/null &
  echo $! >"$KAFKA_DIR/kafka.pid"
}

kafka_wait() {
  # The broker process whose topics were last made (its pid): an `up` that finds that same
  # process running skips the topic pass, two JVM starts (about a second and a half) that a
  # test's every restart of a service would otherwise pay. A broker started since, or one that a
  # stopped `up` never finished, gets the pass.
  local made_for=$KAFKA_DIR/topics-made-for.pid
  if [ -s "$made_for" ] && [ "$(cat "$made_for")" = "$(cat "$KAFKA_DIR/kafka.pid" 2>/dev/null)" ] &&
    pid_alive "$KAFKA_DIR/kafka.pid"; then
    say "topics     already made for this broker"
    return
  fi
  wait_until "Kafka" 90 "$LOGS/kafka.log" port_open "$KAFKA_PORT"
  pid_alive "$KAFKA_DIR/kafka.pid" || { tail -n 30 "$LOGS/kafka.log" >&2; die "Kafka exited"; }
  local deadline=$((SECONDS + 90))
  until topic_command --bootstrap-server "127.0.0.1:$KAFKA_PORT" --list >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { tail -n 30 "$LOGS/kafka.log" >&2; die "Kafka does not answer on 127.0.0.1:$KAFKA_PORT"; }
    pid_alive "$KAFKA_DIR/kafka.pid" || { tail -n 30 "$LOGS/kafka.log" >&2; die "Kafka exited"; }
    sleep 1
  done
  "$ROOT/deploy/create-topics.sh" "127.0.0.1:$KAFKA_PORT" "$ROOT/deploy/local/stack.sh" kafka-topics
  cp "$KAFKA_DIR/kafka.pid" "$made_for"
}

# ---------------------------------------------------------------------------------------------
# Apicurio Registry (from Maven Central), storing in PostgreSQL so ids survive restarts

registry_dist() {
  local dist=$REGISTRY_DIR/apicurio-registry-$APICURIO_VERSION
  if [ ! -f "$dist/quarkus-run.jar" ]; then
    local lock=$ROOT/deploy/local/maven/registry.lock
    locks_current
    step "downloading Apicurio Registry $APICURIO_VERSION from Maven Central" >&2
    rm -rf "$REGISTRY_DIR/download"
    mkdir -p "$dist"
    fetch_locked "$lock" "$REGISTRY_DIR/download" >&2 || die "could not download Apicurio Registry from $MAVEN_CENTRAL"
    tar -xzf "$REGISTRY_DIR/download/apicurio-registry-app-$APICURIO_VERSION-all.tar.gz" -C "$dist"
    rm -rf "$REGISTRY_DIR/download"
  fi
  printf '%s' "$dist"
}

registry_ready() { curl -fs -o /dev/null "$REGISTRY_URL/subjects"; }

registry_up() {
  mkdir -p "$REGISTRY_DIR" "$LOGS"
  local dist java
  dist=$(registry_dist)
  java=$(java21_bin)
  if pid_alive "$REGISTRY_DIR/registry.pid"; then
    say "registry   already running"
    return
  fi
  port_open "$REGISTRY_PORT" && die "port $REGISTRY_PORT is taken by another process: stop it or set REGISTRY_PORT"
  port_open "$REGISTRY_MANAGEMENT_PORT" && die "port $REGISTRY_MANAGEMENT_PORT is taken: stop it or set REGISTRY_MANAGEMENT_PORT"
  step "starting Apicurio Registry on 127.0.0.1:$REGISTRY_PORT"
  (
    cd "$REGISTRY_DIR"
    export QUARKUS_HTTP_HOST=127.0.0.1 QUARKUS_HTTP_PORT=$REGISTRY_PORT
    export QUARKUS_MANAGEMENT_HOST=127.0.0.1 QUARKUS_MANAGEMENT_PORT=$REGISTRY_MANAGEMENT_PORT
    export APICURIO_STORAGE_KIND=sql APICURIO_STORAGE_SQL_KIND=postgresql
    export APICURIO_DATASOURCE_URL="jdbc:postgresql://127.0.0.1:$PGPORT/registry"
    export APICURIO_DATASOURCE_USERNAME=registry APICURIO_DATASOURCE_PASSWORD=registry
    # The default pool (20..100 connections) is sized for a server, not a 2-core laptop.
    export APICURIO_DATASOURCE_JDBC_INITIAL_SIZE=2 APICURIO_DATASOURCE_JDBC_MIN_SIZE=2
    export APICURIO_DATASOURCE_JDBC_MAX_SIZE=10
    setsid nohup "$java" -Xms256m -Xmx512m -XX:+UseSerialGC -Djava.awt.headless=true \
      -jar "$dist/quarkus-run.jar" >>"$LOGS/registry.log" 2>&1 </dev/null &
    echo $! >"$REGISTRY_DIR/registry.pid"
  )
}

registry_wait() {
  local deadline=$((SECONDS + 180))
  until registry_ready; do
    ((SECONDS < deadline)) || { tail -n 40 "$LOGS/registry.log" >&2; die "the registry is not ready after 180s (log: $LOGS/registry.log)"; }
    pid_alive "$REGISTRY_DIR/registry.pid" || { tail -n 40 "$LOGS/registry.log" >&2; die "the registry exited (log: $LOGS/registry.log)"; }
    sleep 0.5
  done
  local current
  current=$(curl -fsS "$REGISTRY_URL/config" 2>/dev/null | sed -n 's/.*"compatibilityLevel" *: *"\([A-Z_]*\)".*/\1/p')
  if [ "$current" != "$REGISTRY_COMPATIBILITY" ]; then
    curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
      --data "{\"compatibility\":\"$REGISTRY_COMPATIBILITY\"}" "$REGISTRY_URL/config" ||
      die "could not set the registry's global compatibility to $REGISTRY_COMPATIBILITY"
    say "registry   global compatibility set to $REGISTRY_COMPATIBILITY"
  fi
}
