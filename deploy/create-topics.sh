#!/bin/sh
# Creates every topic of deploy/topics.conf that does not exist yet; leaves existing ones alone.
#
#   create-topics.sh <bootstrap> <kafka-topics command...>
#
# The command is `kafka-topics.sh` in the Kafka image, or the native stack's TopicCommand. Each
# invocation starts a JVM (about a second and a half of CPU), so existing topics are listed once
# and the missing ones are created side by side, CREATE_TOPICS_PARALLEL (default 4) at a time:
# one after the other, the thirteen of a first start took 18 s. The bound keeps the JVMs' memory
# (a few hundred MB each) small enough for a Compose VM.
# Plain POSIX sh: the Kafka image has no bash.
set -eu

if [ $# -lt 2 ]; then
  echo "usage: $0 <bootstrap> <kafka-topics command...>" >&2
  exit 2
fi
bootstrap=$1
shift
topics_file=${TOPICS_FILE:-$(dirname "$0")/topics.conf}

parallel=${CREATE_TOPICS_PARALLEL:-4}
case "$parallel" in "" | *[!0-9]* | 0)
  echo "CREATE_TOPICS_PARALLEL must be a positive number, not '$parallel'" >&2
  exit 2
  ;;
esac

existing=$("$@" --bootstrap-server "$bootstrap" --list)
created=0
failed=0
pids=""
running=0
# Waits for the oldest creation still running and counts how it ended.
wait_oldest() {
  oldest=${pids%% *}
  pids=${pids#* }
  running=$((running - 1))
  if wait "$oldest"; then created=$((created + 1)); else failed=$((failed + 1)); fi
}
while read -r name partitions configs; do
  case "$name" in "" | \#*) continue ;; esac
  if printf '%s\n' "$existing" | grep -qxF "$name"; then
    continue
  fi
  config_args=""
  for pair in $(printf '%s' "${configs:-}" | tr ',' ' '); do
    config_args="$config_args --config $pair"
  done
  # shellcheck disable=SC2086 # config pairs never contain spaces; splitting is intended
  (
    "$@" --bootstrap-server "$bootstrap" --create --if-not-exists --topic "$name" \
      --partitions "$partitions" --replication-factor 1 $config_args >/dev/null
    echo "created topic $name ($partitions partitions)"
  ) &
  pids="$pids$! "
  running=$((running + 1))
  if [ "$running" -ge "$parallel" ]; then wait_oldest; fi
done <"$topics_file"
while [ "$running" -gt 0 ]; do wait_oldest; done
if [ "$failed" -gt 0 ]; then
  echo "could not create $failed topic(s); see the errors above" >&2
  exit 1
fi
echo "topics ready ($created created)"
