#!/usr/bin/env bash
# Creates every topic of deploy/topics.conf that does not exist yet; leaves existing ones alone.
#
#   create-topics.sh <bootstrap> <kafka-topics command...>
#
# The command is `kafka-topics.sh` in the Kafka image, or `java -cp ... org.apache.kafka.tools.TopicCommand`
# natively. Each invocation starts a JVM, so existing topics are listed once and only the missing
# ones are created.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 <bootstrap> <kafka-topics command...>" >&2
  exit 2
fi
bootstrap=$1
shift
topics_file=${TOPICS_FILE:-$(dirname "$0")/topics.conf}

existing=$("$@" --bootstrap-server "$bootstrap" --list)
created=0
while read -r name partitions configs; do
  case "$name" in ""|\#*) continue ;; esac
  if grep -qxF "$name" <<<"$existing"; then
    continue
  fi
  args=(--bootstrap-server "$bootstrap" --create --if-not-exists --topic "$name"
        --partitions "$partitions" --replication-factor 1)
  IFS=, read -ra pairs <<<"${configs:-}"
  for pair in "${pairs[@]}"; do
    args+=(--config "$pair")
  done
  "$@" "${args[@]}" >/dev/null
  echo "created topic $name ($partitions partitions)"
  created=$((created + 1))
done <"$topics_file"
echo "topics ready ($created created)"
