#!/usr/bin/env bash
# produce benchmark: N metrics records from `serve-api --delay 0` into a 3-partition topic with
# `factorypal produce`, and, in the same run against the same broker, Kafka's own Java
# producer (org.apache.kafka.tools.ProducerPerformance) sending as many records of the same
# value size. Prints records/s and peak RSS of each.
#
# usage: scripts/bench-produce.sh [RECORDS]          (default 1000000)
#   FACTORYPAL_BENCH_BOOTSTRAP=HOST:PORT  use a running broker instead of starting one
#   BENCH_COMPRESSION=none|lz4|...        factorypal's codec (default: both none and lz4)
#   BENCH_RUNS=N                          factorypal runs per codec (default 1), each to a new topic
#   BENCH_SKIP_JAVA=1                     factorypal only
#   FACTORYPAL_BIN=PATH                   measure this binary (not built here), e.g. an older
#                                         build to compare with, interleaved by the caller
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

records="${1:-1000000}"
work="$PWD/target/bench/produce"
mkdir -p "$work"
log() { printf 'bench-produce: %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

if [[ -n "${FACTORYPAL_BIN:-}" ]]; then
  bin="$FACTORYPAL_BIN"
else
  cargo build --release --locked --bin factorypal >&2
  bin="$PWD/target/release/factorypal"
fi

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ -n "${KAFKA_DIR:-}" ]]; then scripts/kafka-local.sh stop --clean >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

if [[ -n "${FACTORYPAL_BENCH_BOOTSTRAP:-}" ]]; then
  bootstrap="$FACTORYPAL_BENCH_BOOTSTRAP"
else
  KAFKA_PORT="$(free_port)"
  KAFKA_DIR="$work/kafka-$KAFKA_PORT"
  export KAFKA_PORT KAFKA_DIR
  bootstrap="$(scripts/kafka-local.sh start | tail -n 1)"
fi
[[ "${BENCH_SKIP_JAVA:-0}" == 1 ]] || tools_cp="$(scripts/kafka-local.sh tools-classpath)"

data="$work/data-$records"
if [[ ! -f "$data/metrics.json" ]]; then
  "$bin" -q gen-data --out "$data" --metrics "$records" >&2
fi
api_port="$(free_port)"
"$bin" -q serve-api --bind "127.0.0.1:$api_port" --data-dir "$data" --delay 0 &
pids+=($!)
until curl -sf "http://127.0.0.1:$api_port/healthz" >/dev/null 2>&1; do sleep 0.1; done
# The value size the Java producer gets: the mean length of our served lines.
record_size="$(curl -s "http://127.0.0.1:$api_port/stream_data_metrics?delay=0&limit=100000" | awk '{ n++; b += length($0) } END { printf "%d", b / n + 0.5 }')"

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); broker $bootstrap; $records records of ~$record_size bytes"
run_id="$(date +%s)"

for codec in ${BENCH_COMPRESSION:-none lz4}; do
 for ((run = 1; run <= ${BENCH_RUNS:-1}; run++)); do
  topic="bench-fp-$codec-$run_id-$run"
  "$bin" -q --bootstrap "$bootstrap" admin create-topic "$topic" --partitions 3 >/dev/null
  cat >"$work/c.toml" <<TOML
[producer]
api_url = "http://127.0.0.1:$api_port"
compression = "$codec"
[[producer.sources]]
name = "metrics"
path = "/stream_data_metrics"
topic = "$topic"
key = "id"
TOML
  /usr/bin/time -f "%M" -o "$work/rss" "$bin" -q --config "$work/c.toml" --bootstrap "$bootstrap" produce metrics >"$work/summary"
  echo "factorypal produce (compression $codec): $(cat "$work/summary") | peak RSS $(( $(cat "$work/rss") / 1024 )) MB"
 done
done
[[ "${BENCH_SKIP_JAVA:-0}" == 1 ]] && exit 0

# Java twice: with its defaults, and with the batch size and codec factorypal uses.
java_run() {
  local label="$1" topic="bench-java-$2-$run_id"
  shift 2
  "$bin" -q --bootstrap "$bootstrap" admin create-topic "$topic" --partitions 3 >/dev/null
  /usr/bin/time -f "%M" -o "$work/rss" java -cp "$tools_cp" org.apache.kafka.tools.ProducerPerformance \
    --topic "$topic" --num-records "$records" --record-size "$record_size" --throughput -1 \
    --command-property "bootstrap.servers=$bootstrap" "$@" >"$work/java.out" 2>"$work/java.err" || {
    cat "$work/java.err" >&2
    exit 1
  }
  echo "Java ProducerPerformance ($label): $(tail -n 1 "$work/java.out") | peak RSS $(( $(cat "$work/rss") / 1024 )) MB"
}
java_run "defaults: acks=all, linger.ms=5, batch.size=16384, no compression" default
# (--command-property takes every key=value after it: one flag, several properties.)
java_run "batch.size=524288, compression lz4" tuned batch.size=524288 compression.type=lz4
