#!/usr/bin/env bash
# How long `factorypal report` takes, and how much memory it needs, on a large lake: gen-data
# writes BENCH_METRICS metric records and BENCH_WORKORDERS work orders, `run --until-drained
# --delay 0` sends them through the whole pipeline (API → Kafka → Parquet) once, and the result
# is cached under target/bench/report/ (keyed by the counts and seed), so later runs only time
# the report. The report then runs BENCH_RUNS times under /usr/bin/time -v; printed: each
# run's wall time and peak RSS, then the median seconds and the largest peak RSS.
#
# usage: scripts/bench-report.sh
#   FACTORYPAL_BENCH_BOOTSTRAP=HOST:PORT   a running broker (needed only to fill the cache)
#   BENCH_METRICS=10000000 BENCH_WORKORDERS=100000 BENCH_SEED=42 BENCH_RUNS=3
#   BENCH_MAX_LAG=3                        the report's --max-lag
#   FACTORYPAL_BIN=PATH                    default target/release/factorypal (cargo build --release)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"
bin="${FACTORYPAL_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/factorypal}"
metrics="${BENCH_METRICS:-10000000}"
workorders="${BENCH_WORKORDERS:-100000}"
seed="${BENCH_SEED:-42}"
runs="${BENCH_RUNS:-3}"
max_lag="${BENCH_MAX_LAG:-3}"
[[ -x "$bin" ]] || { echo "build first: cargo build --release (or set FACTORYPAL_BIN)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }

work="$repo/target/bench/report/m$metrics-w$workorders-s$seed"
cfg="$work/bench.toml"
mkdir -p "$work"

# The topics' names are fixed per cache entry: the report finds OUTPUT/TOPIC.
write_config() {
  local suffix="$1"
  cat >"$cfg" <<TOML
[consumer]
output = "$work/lake"
trigger = "1s"
max_offsets_per_trigger = 500000
[consumer.topics.bench-report-metrics-$suffix.schema]
id = "int32"
val = "float64"
time = "timestamp"
[consumer.topics.bench-report-workorder-$suffix.schema]
time = "timestamp"
product = "int32"
production = "float64"
[api]
bind = "127.0.0.1:0"
data_dir = "$work/data"
[[producer.sources]]
name = "metrics"
path = "/stream_data_metrics"
topic = "bench-report-metrics-$suffix"
key = "id"
[[producer.sources]]
name = "workorder"
path = "/stream_data_workorder"
topic = "bench-report-workorder-$suffix"
key = "product"
[report]
metrics_topic = "bench-report-metrics-$suffix"
workorder_topic = "bench-report-workorder-$suffix"
TOML
}

if [[ ! -f "$work/filled" ]]; then
  bootstrap="${FACTORYPAL_BENCH_BOOTSTRAP:?set FACTORYPAL_BENCH_BOOTSTRAP to a running broker (the lake is not cached yet)}"
  rm -rf "$work/data" "$work/lake"
  echo "== filling $work: gen-data --metrics $metrics --workorders $workorders --seed $seed" >&2
  "$bin" -q gen-data --out "$work/data" --metrics "$metrics" --workorders "$workorders" --seed "$seed" >&2
  write_config "$(date +%s)"
  start=$SECONDS
  "$bin" -q --config "$cfg" --bootstrap "$bootstrap" run --until-drained --delay 0 >&2
  echo "== pipeline: $((SECONDS - start)) s" >&2
  touch "$work/filled"
fi

times=()
peaks=()
for i in $(seq 1 "$runs"); do
  rm -rf "$work/report"
  log="$work/time-$i.log"
  /usr/bin/time -v "$bin" -q --config "$cfg" report --input "$work/lake" --out "$work/report" \
    --max-lag "$max_lag" 2>"$log" >/dev/null || { cat "$log" >&2; exit 1; }
  read -r secs peak < <(python3 - "$log" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
secs = 0.0
for part in wall.split(":"):
    secs = secs * 60 + float(part)
peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
print(secs, peak)
PY
  )
  echo "run $i: $secs s, peak RSS $((peak / 1024)) MiB"
  times+=("$secs")
  peaks+=("$peak")
done
python3 - "$metrics" "$workorders" "${#times[@]}" "${times[@]}" "${peaks[@]}" <<'PY'
import statistics, sys
metrics, workorders, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
times = [float(t) for t in sys.argv[4:4 + n]]
peaks = [int(p) for p in sys.argv[4 + n:]]
print(f"report over {metrics:,} metrics and {workorders:,} work orders: median {statistics.median(times):.2f} s "
      f"of {n} runs, peak RSS {max(peaks) / 1024:.0f} MiB")
PY
wc -l "$work/report/correlations.csv" | awk '{print "correlations.csv: " $1 " lines"}'
