#!/usr/bin/env bash
# `factorypal consume` (Kafka → Parquet) against its baselines, on one broker in one run: how
# fast, and in how much memory,
#   1. kcat (librdkafka) reads a topic to the end and throws the records away — the ceiling
#      of what a Kafka consumer can do here,
#   2. factorypal consume --trigger available-now, no offsets-per-trigger limit, writes the
#      same topic to Parquet, and
#   3. the old pipeline's Spark Structured Streaming job (scripts/bench/spark_consume.py:
#      from_json → Parquet file sink, local[2]) does the same.
# The topic is filled the way the real pipeline does it: gen-data → serve-api → produce.
#
# usage: scripts/bench-consume.sh [RECORDS]       (default 1000000)
#   BENCH_FACTORYPAL_RUNS=3     factorypal consume runs; the median is reported
#   FACTORYPAL_BENCH_BOOTSTRAP=HOST:PORT  use a running broker instead of starting one
#   BENCH_TOPIC=NAME            consume this existing topic (needs FACTORYPAL_BENCH_BOOTSTRAP);
#                               RECORDS is then what the topic holds
#   BENCH_KCAT_RUNS=3           kcat is quick and noisy: run it this often, report the median
#   BENCH_SPARK_RUNS=1          Spark runs (each ~20 s); the median query time is reported
#   BENCH_SKIP_SPARK=1          kcat only
#   BENCH_STATUS=1              also factorypal with --status-bind, scraped 10 times a second
#   BENCH_DELTA=1               also factorypal consume --sink delta (a Delta table on local
#                               disk, one commit) in the same run
#   BENCH_MAX_FOREIGN_SHARE=0.05  a run during which other processes (a build, tests) used
#   BENCH_BUSY_RETRIES=3        more than this share of the cores is repeated, this often
#   SPARK_DRIVER_MEMORY=1g      heap of Spark's one JVM (driver = executor in local mode)
#   SPARK_MAX_OFFSETS_PER_TRIGGER=N   the seed job used 1000; default unset (one micro-batch)
#   FACTORYPAL_BIN=PATH         default target/release/factorypal (not built here)
#
# Caches (re-runs need no network): target/bench/spark-venv (pyspark, pyarrow),
# target/bench/spark-jars/<spark>_<scala> (Kafka connector jars via Maven),
# target/bench/consume/data-N (generated records).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"

records="${1:-1000000}"
work="$repo/target/bench/consume"
venv="$repo/target/bench/spark-venv"
reqs="$repo/scripts/bench/requirements-spark.txt"
spark_pom="$repo/scripts/bench/spark-kafka-pom.xml"
bin="${FACTORYPAL_BIN:-$repo/target/release/factorypal}"
kcat_runs="${BENCH_KCAT_RUNS:-3}"
driver_memory="${SPARK_DRIVER_MEMORY:-1g}"
mkdir -p "$work"

log() { printf 'bench-consume: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
# Float arithmetic without bc (not always installed): python3 is needed anyway.
calc() { python3 -c "print($1)"; }

# No build here: the benchmark measures a given binary, and a build would compete for the
# cores with whatever else runs. Build it first: cargo build --release.
[[ -x "$bin" ]] || die "$bin not found: run 'cargo build --release' first (or set FACTORYPAL_BIN)"
command -v kcat >/dev/null || die "kcat not found (Debian: apt-get install kcat)"
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (Debian: apt-get install time)"
if [[ -n "${BENCH_TOPIC:-}" && -z "${FACTORYPAL_BENCH_BOOTSTRAP:-}" ]]; then
  # The broker this script starts is new and empty, and is deleted on exit.
  die "BENCH_TOPIC needs FACTORYPAL_BENCH_BOOTSTRAP (a broker that already has the topic)"
fi

# ---------------------------------------------------------------------------------------
# Spark's dependencies first, before any broker runs: a failed download should cost
# nothing, and no download should overlap a measurement.

# The venv is rebuilt when requirements-spark.txt changes (its copy is the marker).
if ! cmp -s "$reqs" "$venv/.requirements" 2>/dev/null && [[ "${BENCH_SKIP_SPARK:-0}" != 1 ]]; then
  log "creating $venv (pyspark is a ~320 MB download, once)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$reqs" >&2
  cp "$reqs" "$venv/.requirements"
fi
py="$venv/bin/python"
if [[ "${BENCH_SKIP_SPARK:-0}" == 1 ]]; then
  # Without Spark only pyarrow is needed (to count the rows written): the test suite's venv.
  py="$repo/target/pyenv/bin/python"
  if ! "$py" -c 'import pyarrow' >/dev/null 2>&1; then
    log "installing pyarrow into $repo/target/pyenv"
    python3 -m venv "$repo/target/pyenv"
    "$py" -m pip install -q --disable-pip-version-check pyarrow >&2
  fi
fi

spark_jars=""
if [[ "${BENCH_SKIP_SPARK:-0}" != 1 ]]; then
  spark_version="$("$py" -c 'import pyspark; print(pyspark.__version__)')"
  spark_home="$("$py" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
  # The connector's Scala must be the one pyspark was built with: read it off spark-core.
  scala_binary="$(basename "$(ls "$spark_home"/jars/spark-core_*.jar)" | sed -E 's/^spark-core_([0-9.]+)-.*/\1/')"
  jars_dir="$repo/target/bench/spark-jars/${spark_version}_$scala_binary"
  if [[ ! -f "$jars_dir/.complete" ]]; then
    log "resolving spark-sql-kafka-0-10_$scala_binary:$spark_version from Maven Central into $jars_dir"
    tmp="$jars_dir.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$(dirname "$jars_dir")"
    # mvn -q prints its errors on stdout: keep them in a log, show them on failure.
    if ! mvn -q -B -Dstyle.color=never -f "$spark_pom" -Dspark.version="$spark_version" \
        -Dscala.binary="$scala_binary" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$tmp" >"$tmp.log" 2>&1; then
      cat "$tmp.log" >&2
      rm -rf "$tmp" "$tmp.log"
      die "maven could not resolve the Kafka connector for Spark $spark_version (Scala $scala_binary)"
    fi
    rm -f "$tmp.log"
    rm -rf "$jars_dir"
    mv "$tmp" "$jars_dir"
    touch "$jars_dir/.complete"
  fi
  # Maven also copies jars pyspark already ships (hadoop-client-*, scala-library, lz4,
  # snappy, slf4j, ...), sometimes older. Leave those out so Spark runs with its own
  # versions, as it would in a real deployment; what remains is the connector,
  # kafka-clients and what only they need. Names compare without their version.
  artifact() { basename "$1" | sed -E 's/-[0-9][^/]*\.jar$//'; }
  declare -A shipped=()
  for jar in "$spark_home"/jars/*.jar; do shipped["$(artifact "$jar")"]=1; done
  for jar in "$jars_dir"/*.jar; do
    [[ -n "${shipped["$(artifact "$jar")"]:-}" ]] && continue
    spark_jars+="${spark_jars:+,}$jar"
  done
  log "spark.jars: $(tr ',' '\n' <<<"$spark_jars" | xargs -n1 basename | tr '\n' ' ')"
fi

# ---------------------------------------------------------------------------------------
# Broker, API server, topic.

# The broker (or FACTORYPAL_BENCH_BOOTSTRAP), `pids` killed on exit, `free_port`.
source scripts/bench-common.sh
kafka_version="Kafka ${KAFKA_VERSION:-4.3.1} (scripts/kafka-local.sh)"
[[ -n "${FACTORYPAL_BENCH_BOOTSTRAP:-}" ]] && kafka_version="external broker"
topic="${BENCH_TOPIC:-bench-consume-$(date +%s)}"

# Every factorypal call gets this config, never config/default.toml: the benchmark must not
# depend on (or break with) the repo's default settings, which change as the code does.
# Only the producer source differs from the built-in defaults.
api_port="$(free_port)"
cfg="$work/bench.toml"
cat >"$cfg" <<TOML
[producer]
api_url = "http://127.0.0.1:$api_port"
[[producer.sources]]
name = "metrics"
path = "/stream_data_metrics"
topic = "$topic"
key = "id"
[consumer.topics.$topic.schema]
id = "int32"
val = "float64"
time = "timestamp"
TOML
fp() { "$bin" -q --config "$cfg" --bootstrap "$bootstrap" "$@"; }

# Records in a topic = sum over partitions of (latest - earliest), from describe-topic --json.
topic_records() {
  fp admin describe-topic --json "$1" |
    python3 -c 'import json, sys; print(sum(p["latest"] - p["earliest"] for p in json.load(sys.stdin)["partitions"]))'
}

if [[ -n "${BENCH_TOPIC:-}" ]]; then
  records="$(topic_records "$topic")"
  log "using existing topic $topic: $records records"
else
  data="$work/data-$records"
  if [[ ! -f "$data/metrics.json" ]]; then
    fp gen-data --out "$data" --metrics "$records" >&2
  fi
  # "$bin" itself, not fp: a backgrounded function is a subshell, and $! would be the
  # subshell's pid, so the kill below would leave the server running.
  "$bin" -q --config "$cfg" serve-api --bind "127.0.0.1:$api_port" --data-dir "$data" --delay 0 &
  pids+=($!)
  until curl -sf "http://127.0.0.1:$api_port/healthz" >/dev/null 2>&1; do sleep 0.1; done
  fp admin create-topic "$topic" --partitions 3 >/dev/null
  log "filling $topic with $records records (factorypal produce)"
  fp produce metrics >"$work/produce.out"
  log "produce: $(cat "$work/produce.out")"
  kill "${pids[@]}" 2>/dev/null || true # the API server is not needed any more
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
  in_topic="$(topic_records "$topic")"
  [[ "$in_topic" == "$records" ]] || die "topic $topic holds $in_topic records, expected $records"
fi
((records > 0)) || die "topic $topic is empty"

# ---------------------------------------------------------------------------------------
# kcat: every partition from the beginning to the end (-e), records to /dev/null.

kcat_version="$(kcat -V 2>&1 | sed -nE 's/^Version ([^ ]+) .*(librdkafka [^ ]+).*/\1, \2/p')"
# Untimed pass first: proves kcat sees every record (and warms the page cache for the
# timed runs, as Spark's run will find it warm too).
kcat_count="$(kcat -b "$bootstrap" -C -t "$topic" -o beginning -e -q -f '%o\n' | wc -l)"
[[ "$kcat_count" == "$records" ]] || die "kcat read $kcat_count records, expected $records"
# Our broker's pid, so the samplers can tell its CPU time from that of strangers.
broker_pid=0
[[ -n "${KAFKA_DIR:-}" && -f "$KAFKA_DIR/kafka.pid" ]] && broker_pid="$(<"$KAFKA_DIR/kafka.pid")"
# Run a command under /usr/bin/time (peak RSS to $1) and rss_tree.py (tree memory and the
# CPU others took meanwhile, to $2); stdout/stderr go to $3. Sets measure_rc and measure_s.
measure() {
  local rss_out="$1" tree_out="$2" log_out="$3" t0 pid sampler
  shift 3
  t0="$(now)"
  /usr/bin/time -f %M -o "$rss_out" "$@" >"$log_out" 2>&1 &
  pid=$!
  python3 scripts/bench/rss_tree.py "$pid" "$tree_out" 0.2 "$broker_pid" &
  sampler=$!
  measure_rc=0
  wait "$pid" || measure_rc=$?
  measure_s="$(calc "$(now) - $t0")"
  # The sampler ends once every process of the tree is gone (Spark's JVM outlives python).
  wait "$sampler"
  read -r measure_foreign measure_share < <(python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
print(m["foreign_cpu_s"], m["foreign_share"])' "$tree_out")
}
# On a shared machine a build or test run can take the cores mid-measurement and skew it
# (Spark twice as slow is easy). A run in which other processes used more than
# BENCH_MAX_FOREIGN_SHARE of all cores is thrown away and repeated, BENCH_BUSY_RETRIES times
# at most; after that it is kept, and its foreign CPU shows in the summary either way.
max_foreign_share="${BENCH_MAX_FOREIGN_SHARE:-0.05}"
busy_retries="${BENCH_BUSY_RETRIES:-3}"
# (Plus 0.2 s at least: on a sub-second kcat run, 5 % is the noise of idle daemons.)
disturbed() { python3 -c "import sys; sys.exit(0 if $measure_share > $max_foreign_share and $measure_foreign > 0.2 else 1)"; }

median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# kcat_runs timed runs of one kcat command line; appends a summary line to kcat_summary.
# Two variants: kcat's defaults, and fetch.wait.max.ms=10. With -e, librdkafka learns
# that a partition is at its end only from a fetch that comes back empty, and the broker
# holds an empty fetch for fetch.wait.max.ms (default 500): every run then ends with about
# 0.5 s of idle waiting (kcat -o end -e, reading nothing, takes ~1 s). That is a fixed
# cost of end detection, not of reading records, so the second variant shows the
# throughput without it.
kcat_summary=()
kcat_medians=()
kcat_variant() {
  local label="$1" rates=() rss=() frn=() i
  shift
  for ((i = 1; i <= kcat_runs; i++)); do
    local try
    for ((try = 0; ; try++)); do
      measure "$work/kcat.rss" "$work/kcat-tree.json" /dev/null \
        kcat -b "$bootstrap" -C -t "$topic" -o beginning -e -q "$@"
      ((measure_rc == 0)) || die "kcat failed (exit $measure_rc)"
      if ! disturbed || ((try >= busy_retries)); then break; fi
      log "kcat ($label) run $i: other processes took $measure_foreign s of CPU; again"
      sleep 5
    done
    rates+=("$(calc "round($records / $measure_s)")")
    rss+=("$(cat "$work/kcat.rss")")
    frn+=("$measure_foreign")
    log "kcat ($label) run $i: $(calc "round($measure_s, 3)") s, ${rates[-1]} records/s, peak RSS ${rss[-1]} KiB, CPU taken by other processes ${frn[-1]} s"
  done
  kcat_medians+=("$(median "${rates[@]}")")
  kcat_summary+=("  kcat -C -o beginning -e -q${*:+ $*} > /dev/null ($label): $(median "${rates[@]}") records/s (median of $kcat_runs: ${rates[*]}), peak RSS $(calc "round($(printf '%s\n' "${rss[@]}" | sort -n | tail -n 1) / 1024)") MiB (per run, KiB: ${rss[*]}); CPU taken by other processes (s; ~0 = clean): ${frn[*]}")
}
kcat_variant "defaults"
kcat_variant "no 0.5 s end-of-partition wait" -X fetch.wait.max.ms=10

# ---------------------------------------------------------------------------------------
# factorypal consume: the same topic to Parquet, everything in one micro-batch (no limit),
# a fresh output and checkpoint each run; the rows written are checked with pyarrow.
fp_runs="${BENCH_FACTORYPAL_RUNS:-3}"
# fp_runs timed runs with extra consume arguments "$@"; sets fp_rate (median), fp_peak_kib,
# fp_rates, fp_rss, fp_frn and fp_rows. With $fp_watch set (a HOST:PORT), a scraper reads
# /status and /metrics there all through each run (scripts/bench/scrape_status.py).
fp_variant() {
  local label="$1" i try scraper
  shift
  fp_rates=() fp_rss=() fp_frn=()
  for ((i = 1; i <= fp_runs; i++)); do
    for ((try = 0; ; try++)); do
      rm -rf "$work/fp-out"
      scraper=""
      if [[ -n "${fp_watch:-}" ]]; then
        python3 scripts/bench/scrape_status.py "$fp_watch" 0.1 "$work/scrape-$i.json" &
        scraper=$!
      fi
      measure "$work/fp.rss" "$work/fp-tree.json" "$work/fp-$i.log" \
        "$bin" -q --config "$cfg" --bootstrap "$bootstrap" consume --sink "${fp_sink:-parquet}" --topics "$topic" \
        --output "$work/fp-out" --trigger available-now --max-offsets-per-trigger 0 "$@"
      if [[ -n "$scraper" ]]; then kill -TERM "$scraper"; wait "$scraper" || true; fi
      ((measure_rc == 0)) || { cat "$work/fp-$i.log" >&2; die "factorypal consume failed (exit $measure_rc)"; }
      if disturbed && ((try < busy_retries)); then
        log "factorypal ($label) run $i: other processes took $measure_foreign s of CPU; again"
        continue
      fi
      break
    done
    fp_rates+=("$(calc "round($records / $measure_s)")")
    fp_rss+=("$(cat "$work/fp.rss")")
    fp_frn+=("$measure_foreign")
    log "factorypal ($label) run $i: $(calc "round($measure_s, 3)") s, ${fp_rates[-1]} records/s, peak RSS ${fp_rss[-1]} KiB"
  done
  fp_rows="$("$py" scripts/bench/spark_consume.py count "$work/fp-out/$topic")"
  [[ "$fp_rows" == "$records" ]] || die "factorypal wrote $fp_rows rows, expected $records"
  fp_rate="$(median "${fp_rates[@]}")"
  fp_peak_kib="$(printf '%s\n' "${fp_rss[@]}" | sort -n | tail -n 1)"
}
fp_variant "plain"

# BENCH_STATUS=1: the same runs with the status server on and a scraper reading /status and
# /metrics ten times a second (a page reads /status every 2 s): what watching costs.
if [[ "${BENCH_STATUS:-0}" == 1 ]]; then
  plain=("$fp_rate" "$fp_peak_kib" "${fp_rates[*]}" "${fp_rss[*]}" "${fp_frn[*]}" "$fp_rows")
  fp_watch="127.0.0.1:$(free_port)"
  rm -f "$work"/scrape-*.json
  # The scraper's own CPU counts as "other processes": tolerate it.
  saved_share="$max_foreign_share"
  max_foreign_share=0.5
  fp_variant "status watched" --status-bind "$fp_watch"
  max_foreign_share="$saved_share"
  status_summary="factorypal consume ... --status-bind, scraped 10×/s: $fp_rate records/s (median of $fp_runs: ${fp_rates[*]}), peak RSS $(calc "round($fp_peak_kib / 1024)") MiB (per run, KiB: ${fp_rss[*]}); CPU taken by other processes (s): ${fp_frn[*]}"
  status_scrapes="$(python3 scripts/bench/scrape_status.py --summarize "$work"/scrape-*.json)"
  fp_watch=""
  read -r fp_rate fp_peak_kib <<<"${plain[0]} ${plain[1]}"
  read -r -a fp_rates <<<"${plain[2]}"
  read -r -a fp_rss <<<"${plain[3]}"
  read -r -a fp_frn <<<"${plain[4]}"
  fp_rows="${plain[5]}"
fi

# BENCH_DELTA=1: the same runs into a Delta table (data files + one commit); the rows are
# counted from the table's data files (pyarrow skips _delta_log/).
if [[ "${BENCH_DELTA:-0}" == 1 ]]; then
  plain=("$fp_rate" "$fp_peak_kib" "${fp_rates[*]}" "${fp_rss[*]}" "${fp_frn[*]}" "$fp_rows")
  fp_sink=delta fp_variant "delta"
  delta_summary="factorypal consume --sink delta (same flags): $fp_rate records/s (median of $fp_runs: ${fp_rates[*]}), peak RSS $(calc "round($fp_peak_kib / 1024)") MiB (per run, KiB: ${fp_rss[*]}); $fp_rows rows in the table's files; CPU taken by other processes (s): ${fp_frn[*]}"
  read -r fp_rate fp_peak_kib <<<"${plain[0]} ${plain[1]}"
  read -r -a fp_rates <<<"${plain[2]}"
  read -r -a fp_rss <<<"${plain[3]}"
  read -r -a fp_frn <<<"${plain[4]}"
  fp_rows="${plain[5]}"
fi

# ---------------------------------------------------------------------------------------
# Spark: the old job, one process tree (python driver → spark-submit JVM). Its memory is
# measured twice: /usr/bin/time's %M (the largest single process it waited for) and
# scripts/bench/rss_tree.py (RSS of the whole tree summed, every 200 ms).

spark_run() {
  local i="$1" out="$work/spark-out" ckpt="$work/spark-checkpoint" rc
  # Fresh output and checkpoint: a checkpoint from an earlier run would make the query
  # start after the offsets it already did, and read nothing.
  rm -rf "$out" "$ckpt" "$work/spark-timings.json" "$work/spark-tree.json"
  local max_offsets_args=()
  [[ -n "${SPARK_MAX_OFFSETS_PER_TRIGGER:-}" ]] && max_offsets_args=(--max-offsets-per-trigger "$SPARK_MAX_OFFSETS_PER_TRIGGER")
  # SPARK_LOCAL_IP: no hostname lookup and no "resolves to a loopback address" warning.
  # JAVA_HOME unset is fine: spark-submit then uses the java on PATH (17 here).
  SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON="$py" measure "$work/spark.rss" "$work/spark-tree.json" \
    "$work/spark-$i.log" "$py" scripts/bench/spark_consume.py run --bootstrap "$bootstrap" \
    --topic "$topic" --out "$out" --checkpoint "$ckpt" --jars "$spark_jars" \
    --driver-memory "$driver_memory" --timings "$work/spark-timings.json" "${max_offsets_args[@]}"
  rc="$measure_rc"
  if ((rc != 0)); then
    tail -n 40 "$work/spark-$i.log" >&2
    die "the Spark job failed (exit $rc); full log: $work/spark-$i.log"
  fi
  # (A flag, not a return code: a function called as a condition runs without set -e.)
  spark_again=0
  if disturbed && (($2 < busy_retries)); then
    log "Spark run $i: other processes took $measure_foreign s of CPU ($measure_share of the cores); again"
    spark_again=1
    return 0
  fi
  local rows
  rows="$("$py" scripts/bench/spark_consume.py count "$out")"
  [[ "$rows" == "$records" ]] || die "Spark wrote $rows rows to $out, expected $records"
  # One line per run: query_s total_s startup_s stop_s batches input_rows tree_kib
  # single_kib time_kib outlived parquet_rows foreign_cpu_s phases spark_version.
  python3 - "$work/spark-timings.json" "$work/spark-tree.json" "$measure_s" \
    "$(cat "$work/spark.rss")" "$rows" >>"$work/spark-runs" <<'PY'
import json, os, sys
t = json.load(open(sys.argv[1]))
m = json.load(open(sys.argv[2]))
outlived = ",".join(os.path.basename(c) for c in m["outlived_root"]) or "none"
phases = ",".join(f"{k}={v}" for k, v in sorted(t["duration_ms"].items()))
print(round(t["query_s"], 2), round(float(sys.argv[3]), 2), round(t["startup_s"], 2),
      round(t["stop_s"], 2), t["micro_batches"], t["input_rows"], m["peak_tree_kib"],
      m["peak_single_kib"], sys.argv[4], outlived, sys.argv[5], m["foreign_cpu_s"], phases,
      t["spark_version"])
PY
  log "spark run $i: $(tail -n 1 "$work/spark-runs")"
}

if [[ "${BENCH_SKIP_SPARK:-0}" != 1 ]]; then
  spark_runs="${BENCH_SPARK_RUNS:-1}"
  rm -f "$work/spark-runs"
  for ((i = 1; i <= spark_runs; i++)); do
    log "Spark run $i of $spark_runs (log: $work/spark-$i.log)"
    for ((try = 0; ; try++)); do
      spark_run "$i" "$try"
      ((spark_again)) || break
      sleep 10
    done
  done
  # The run with the median query time stands for all (all query times are listed).
  read -r query spark_total startup stop batches input_rows tree_kib single_kib time_kib \
    outlived parquet_rows _ phases spark_version_run \
    < <(sort -n "$work/spark-runs" | sed -n "$(((spark_runs + 1) / 2))p")
  spark_queries="$(cut -d ' ' -f 1 "$work/spark-runs" | tr '\n' ' ')"
  spark_trees="$(awk '{ printf "%d ", $7 / 1024 }' "$work/spark-runs")"
  spark_foreign="$(cut -d ' ' -f 12 "$work/spark-runs" | tr '\n' ' ')"
  spark_rate="$(calc "round($records / $query)")"
fi

# ---------------------------------------------------------------------------------------
mib() { calc "round($1 / 1024)"; }
echo
echo "== consume baselines: $records records (topic $topic, 3 partitions), $(date -I)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); $kafka_version on $bootstrap"
echo "kcat $kcat_version"
printf '%s\n' "${kcat_summary[@]}"
echo "factorypal consume --trigger available-now --max-offsets-per-trigger 0 (whole process, start to exit): $fp_rate records/s (median of $fp_runs: ${fp_rates[*]}), peak RSS $(mib "$fp_peak_kib") MiB (per run, KiB: ${fp_rss[*]}); $fp_rows rows in Parquet (pyarrow); CPU taken by other processes (s): ${fp_frn[*]}"
if [[ "${BENCH_SKIP_SPARK:-0}" != 1 ]]; then
  echo "Spark $spark_version_run (pyspark, Scala $scala_binary, $(java -version 2>&1 | head -n 1)), local[2], driver memory $driver_memory"
  echo "  query (start → awaitTermination, availableNow, maxOffsetsPerTrigger ${SPARK_MAX_OFFSETS_PER_TRIGGER:-unset (seed job: 1000)}; $batches micro-batch(es), $input_rows input rows): $query s = $spark_rate records/s (median of $spark_runs; query s per run: $spark_queries)"
  echo "  query phases (ms, Spark's durationMs): $phases"
  echo "  start-up (python + JVM + SparkSession): $startup s; stop: $stop s; whole process: $spark_total s"
  echo "  peak RSS, process tree summed (200 ms samples): $(mib "$tree_kib") MiB (per run, MiB: $spark_trees); largest single process: $(mib "$single_kib") MiB"
  # %M covers only processes waited for: python does not wait for its JVM, which is then
  # re-parented when python exits (listed below) and never counted by /usr/bin/time.
  echo "  peak RSS, /usr/bin/time %M: $(mib "$time_kib") MiB (outlived python, so not in %M: $outlived)"
  echo "  Parquet rows written (pyarrow): $parquet_rows"
  echo "  CPU taken by other processes during each run (s; ~0 = clean): $spark_foreign"
fi
if [[ "${BENCH_DELTA:-0}" == 1 ]]; then
  echo "$delta_summary"
fi
if [[ "${BENCH_STATUS:-0}" == 1 ]]; then
  echo "$status_summary"
  echo "  scraper: $status_scrapes"
fi
echo "ratios: factorypal ÷ kcat (defaults) = $(calc "round($fp_rate / ${kcat_medians[0]}, 2)"), factorypal ÷ kcat (no end wait) = $(calc "round($fp_rate / ${kcat_medians[1]}, 2)")"
if [[ "${BENCH_SKIP_SPARK:-0}" != 1 ]]; then
  # Spark's rate counts its query only (no start-up); factorypal's counts its whole process.
  echo "ratios: factorypal ÷ Spark records/s = $(calc "round($fp_rate / $spark_rate, 1)"), Spark ÷ factorypal peak memory = $(calc "round($tree_kib / $fp_peak_kib, 1)")"
fi
