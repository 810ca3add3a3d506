#!/usr/bin/env bash
# produce benchmark: N metrics records from `serve-api --delay 0` into a 3-partition topic with
# `factorypal produce`, and, in the same run against the same broker:
#   - kcat -P (librdkafka), the ceiling: the same key/value lines, read from a file, keyed and
#     placed like ours (-X topic.partitioner=murmur2_random), with the same codec; runs
#     interleaved with ours, medians reported;
#   - Kafka's own Java producer (org.apache.kafka.tools.ProducerPerformance) sending as many
#     records of the same value size.
# Prints records/s and peak RSS of each, and checks with kcat that every topic holds N records.
#
# usage: scripts/bench-produce.sh [RECORDS]          (default 1000000)
#   FACTORYPAL_BENCH_BOOTSTRAP=HOST:PORT  use a running broker instead of starting one
#   BENCH_COMPRESSION=none|lz4|...        codecs to measure, ours and kcat's (default: none lz4)
#   BENCH_RUNS=N                          runs per codec of factorypal and of kcat, alternately
#                                         (default 3), each to a new topic; medians reported
#   BENCH_SCALE="10000 100000 ..."        record counts to measure in turn instead of RECORDS
#                                         (the scaling table; Java is skipped)
#   BENCH_SKIP_KCAT=1                     no kcat runs
#   BENCH_SKIP_JAVA=1                     no Java runs
#   FACTORYPAL_BIN=PATH                   measure this binary (not built here), e.g. an older
#                                         build to compare with, interleaved by the caller
#
# records/s: records ÷ wall time of the whole process (start to exit) for both factorypal and
# kcat; factorypal's own figure (start of the source to its last ack) is shown too. Peak RSS:
# /usr/bin/time's maximum resident set. Generated data and kcat's input files are cached in
# target/bench/produce (10M records: ~0.6 GB each).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

sizes="${BENCH_SCALE:-${1:-1000000}}"
runs="${BENCH_RUNS:-3}"
work="$PWD/target/bench/produce"
mkdir -p "$work"
log() { printf 'bench-produce: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
median() { python3 -c 'import statistics, sys; print(f"{statistics.median(float(x) for x in sys.argv[1:]):.0f}")' "$@"; }
max() { python3 -c 'import sys; print(max(int(x) for x in sys.argv[1:]))' "$@"; }

if [[ -n "${FACTORYPAL_BIN:-}" ]]; then
  bin="$FACTORYPAL_BIN"
else
  cargo build --release --locked --bin factorypal >&2
  bin="${CARGO_TARGET_DIR:-$PWD/target}/release/factorypal"
fi
[[ "${BENCH_SKIP_KCAT:-0}" == 1 ]] || command -v kcat >/dev/null || die "kcat not found (Debian: apt-get install kcat), or set BENCH_SKIP_KCAT=1"
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (Debian: apt-get install time)"

# The broker (or FACTORYPAL_BENCH_BOOTSTRAP), `pids` killed on exit, `free_port`.
source scripts/bench-common.sh
run_id="$(date +%s)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); load $(cut -d' ' -f1-3 /proc/loadavg); broker $bootstrap; $(kcat -V 2>/dev/null | grep -o 'librdkafka [0-9.]*' || true)"

# Starts serve-api on the generated data of $1 records (made once); sets api_port.
api_pid=""
serve() {
  local records="$1" data="$work/data-$1"
  if [[ ! -f "$data/metrics.json" ]]; then
    "$bin" -q gen-data --out "$data" --metrics "$records" >&2
  fi
  [[ -z "$api_pid" ]] || kill "$api_pid" 2>/dev/null || true
  api_port="$(free_port)"
  "$bin" -q serve-api --bind "127.0.0.1:$api_port" --data-dir "$data" --delay 0 &
  api_pid=$!
  pids+=("$api_pid")
  until curl -sf "http://127.0.0.1:$api_port/healthz" >/dev/null 2>&1; do sleep 0.1; done
}

# kcat's input for $1 records: each served line as `KEY<TAB>LINE`, KEY being what factorypal
# sends as the key (the `id` field as text: a string unquoted, a number as written). The value
# is the served line itself (already compact, as factorypal sends it).
kcat_input() {
  local file="$work/kcat-$1.tsv"
  if [[ ! -f "$file" ]]; then
    curl -sf "http://127.0.0.1:$api_port/stream_data_metrics?delay=0" | python3 -c '
import json, sys
out = sys.stdout
for line in sys.stdin:
    line = line.rstrip("\n")
    if not line.strip():
        continue
    raw = json.loads(line)["id"]
    key = raw if isinstance(raw, str) else json.dumps(raw)
    assert "\t" not in key and "\t" not in line
    out.write(key + "\t" + line + "\n")
' >"$file.tmp"
    mv "$file.tmp" "$file"
  fi
  local lines
  lines="$(wc -l <"$file")"
  [[ "$lines" == "$1" ]] || die "$file holds $lines lines, not $1"
  echo "$file"
}

new_topic() {
  "$bin" -q --bootstrap "$bootstrap" admin create-topic "$1" --partitions 3 >/dev/null
}

# Checks, with kcat (not our own client), that topic $1 holds exactly $2 records.
check_count() {
  local held
  held="$(kcat -b "$bootstrap" -Q -t "$1:0:-1" -t "$1:1:-1" -t "$1:2:-1" | awk '{ n += $NF } END { print n + 0 }')"
  [[ "$held" == "$2" ]] || die "topic $1 holds $held records, not $2"
}

# factorypal produce of $1 records with codec $2; sets fp_rate (whole process), fp_own
# (its own figure) and fp_rss (MB).
run_factorypal() {
  local records="$1" codec="$2" topic="bench-fp-$2-$run_id-$3"
  new_topic "$topic"
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
  local start end
  start="$EPOCHREALTIME"
  /usr/bin/time -f "%M" -o "$work/rss" "$bin" -q --config "$work/c.toml" --bootstrap "$bootstrap" produce metrics >"$work/summary"
  end="$EPOCHREALTIME"
  check_count "$topic" "$records"
  fp_rate="$(python3 -c "print(f'{$records / ($end - $start):.0f}')")"
  fp_own="$(grep -o '[0-9]* records/s' "$work/summary" | cut -d' ' -f1)"
  fp_rss="$(($(cat "$work/rss") / 1024))"
  echo "  factorypal produce ($codec): $fp_rate records/s (own figure $fp_own), peak RSS $fp_rss MB"
}

# kcat -P of file $2 ($1 records) with codec $3; sets kc_rate and kc_rss (MB).
run_kcat() {
  local records="$1" file="$2" codec="$3" topic="bench-kcat-$3-$run_id-$4"
  new_topic "$topic"
  local start end
  start="$EPOCHREALTIME"
  /usr/bin/time -f "%M" -o "$work/rss" kcat -P -b "$bootstrap" -t "$topic" -K $'\t' \
    -X topic.partitioner=murmur2_random -X compression.codec="$codec" -l "$file"
  end="$EPOCHREALTIME"
  check_count "$topic" "$records"
  kc_rate="$(python3 -c "print(f'{$records / ($end - $start):.0f}')")"
  kc_rss="$(($(cat "$work/rss") / 1024))"
  echo "  kcat -P ($codec): $kc_rate records/s, peak RSS $kc_rss MB"
}

table=()
for records in $sizes; do
  serve "$records"
  file=""
  [[ "${BENCH_SKIP_KCAT:-0}" == 1 ]] || file="$(kcat_input "$records")"
  echo "$records records (mean line $(awk -F'\t' '{ n++; b += length($2) } END { printf "%d", b / n + 0.5 }' "${file:-/dev/null}" 2>/dev/null || echo '?') bytes):"
  for codec in ${BENCH_COMPRESSION:-none lz4}; do
    fp_rates=() fp_rsss=() kc_rates=() kc_rsss=()
    for ((run = 1; run <= runs; run++)); do
      # Alternate who goes first, so neither always finds the broker busier.
      if ((run % 2 == 1)) || [[ -z "$file" ]]; then
        run_factorypal "$records" "$codec" "$records-$run"
        [[ -z "$file" ]] || run_kcat "$records" "$file" "$codec" "$records-$run"
      else
        run_kcat "$records" "$file" "$codec" "$records-$run"
        run_factorypal "$records" "$codec" "$records-$run"
      fi
      fp_rates+=("$fp_rate") fp_rsss+=("$fp_rss")
      [[ -z "$file" ]] || kc_rates+=("$kc_rate") kc_rsss+=("$kc_rss")
    done
    row="| $records | $codec | $(median "${fp_rates[@]}") | $(max "${fp_rsss[@]}") MB"
    if [[ -n "$file" ]]; then
      kc="$(median "${kc_rates[@]}")"
      row+=" | $kc | $(max "${kc_rsss[@]}") MB | $(python3 -c "print(f'{$(median "${fp_rates[@]}") / $kc:.2f}')")× |"
    else
      row+=" | | | |"
    fi
    table+=("$row")
  done
done
echo
echo "medians of $runs runs (records/s: whole process), peak RSS: the largest of the runs"
echo "| records | codec | factorypal records/s | factorypal peak RSS | kcat -P records/s | kcat peak RSS | factorypal ÷ kcat |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${table[@]}"

[[ "${BENCH_SKIP_JAVA:-0}" == 1 || -n "${BENCH_SCALE:-}" ]] && exit 0
tools_cp="$(scripts/kafka-local.sh tools-classpath)"
# The value size the Java producer gets: the mean length of our served lines.
record_size="$(curl -s "http://127.0.0.1:$api_port/stream_data_metrics?delay=0&limit=100000" | awk '{ n++; b += length($0) } END { printf "%d", b / n + 0.5 }')"

# Java twice: with its defaults, and with the batch size and codec factorypal uses.
java_run() {
  local label="$1" topic="bench-java-$2-$run_id"
  shift 2
  new_topic "$topic"
  /usr/bin/time -f "%M" -o "$work/rss" java -cp "$tools_cp" org.apache.kafka.tools.ProducerPerformance \
    --topic "$topic" --num-records "$records" --record-size "$record_size" --throughput -1 \
    --command-property "bootstrap.servers=$bootstrap" "$@" >"$work/java.out" 2>"$work/java.err" || {
    cat "$work/java.err" >&2
    exit 1
  }
  echo "Java ProducerPerformance ($label): $(tail -n 1 "$work/java.out") | peak RSS $(( $(cat "$work/rss") / 1024 )) MB"
}
java_run "defaults: acks=all, linger.ms=5, batch.size=16384, no compression, $record_size-byte values" default
# (--command-property takes every key=value after it: one flag, several properties.)
java_run "batch.size=524288, compression lz4" tuned batch.size=524288 compression.type=lz4
