#!/usr/bin/env bash
# End-to-end latency of `factorypal run` (issue 14): how long a record takes from the moment
# the built-in API sends it to the moment it is in a committed Parquet batch, per consumer
# trigger (default 1s, 10s and 0s = continuous), with the API at a steady rate.
#
# Method, per trigger (a fresh topic and output each time):
# - Data: BENCH_RATE × BENCH_SECONDS records {"seq": i, "id", "val", "time"}; `seq` numbers
#   every record, so a lost or duplicated one is seen.
# - `run` (daemon, no --until-drained) serves them with `api.delay = 1/BENCH_RATE`: record k
#   is due k/BENCH_RATE s after the first, so the rate is steady (src/api/server.rs), and
#   the producer reads `?stamp=sent_at`, so the API writes each record's send time (unix
#   seconds to the microsecond, taken as the record is handed to the HTTP connection) into
#   the record itself; the consumer's schema keeps it as a column.
# - Commit time of a batch: the timestamp of the consumer's `batch committed` log line
#   (--log-format json, microseconds), logged once the batch's commit file is renamed into
#   place and its directory synced, i.e. once the batch is durably committed (a hair later
#   than the commit itself: the estimate errs on the slow side). The log line names the
#   batch; Parquet files are named part-<batch>-<n>.parquet, so every row has its batch.
# - Latency of a record = commit time of its batch − its sent_at (one clock: same host).
#   p50, p99 and max over every record; the record count must equal what was sent and
#   every seq must appear exactly once (pyarrow reads the files, not factorypal).
# - The run is stopped (SIGTERM) once the checkpoint's newest commit covers every record,
#   so every record is committed by the running consumer, none by a final drain pass.
# - Also reported: the run's CPU time (user+sys from /proc, API + producer + consumer in one
#   process) and peak RSS, the batch count, and the machine's load average, since the box's
#   2 cores are shared.
# max_offsets_per_trigger is 0 (unlimited): the default 1000 per batch would cap a 10 s
# trigger at 100 records/s, below the rate.
#
# usage: scripts/bench-latency.sh [TRIGGER...]    (default: 1s 10s 0s)
#   BENCH_SECONDS=300     how long the API sends (records = BENCH_RATE × BENCH_SECONDS)
#   BENCH_RATE=1000       records per second
#   FACTORYPAL_BENCH_BOOTSTRAP=HOST:PORT  use a running broker instead of starting one
#   FACTORYPAL_BIN=PATH   default target/release/factorypal (not built here)
#   BENCH_PYTHON=PATH     a python with pyarrow (default target/pyenv/bin/python)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"

triggers=("$@")
((${#triggers[@]})) || triggers=(1s 10s 0s)
seconds="${BENCH_SECONDS:-300}"
rate="${BENCH_RATE:-1000}"
bin="${FACTORYPAL_BIN:-$repo/target/release/factorypal}"
py="${BENCH_PYTHON:-$repo/target/pyenv/bin/python}"
work="$repo/target/bench/latency"
mkdir -p "$work"

log() { printf 'bench-latency: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -x "$bin" ]] || die "$bin not found: run 'cargo build --release' first (or set FACTORYPAL_BIN)"
"$py" -c 'import pyarrow' 2>/dev/null || die "$py has no pyarrow: run scripts/test-pyenv.sh or set BENCH_PYTHON"
records=$((rate * seconds))
((records > 0)) || die "BENCH_RATE × BENCH_SECONDS must be above 0"

# The broker (or FACTORYPAL_BENCH_BOOTSTRAP), `pids` killed on exit, `free_port`.
source scripts/bench-common.sh

# The data: seq-numbered records in `time` order (the API serves in `time` order).
data="$work/data-$records"
if [[ ! -f "$data/latency.json" ]]; then
  mkdir -p "$data"
  "$py" - "$data/latency.json.tmp" "$records" <<'PY'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    f.write("[\n")
    for i in range(n):
        sep = ",\n" if i + 1 < n else "\n"
        f.write(json.dumps({"seq": i, "id": i % 20, "val": i * 0.25, "time": 1767225600 + i / 1000}) + sep)
    f.write("]\n")
PY
  mv "$data/latency.json.tmp" "$data/latency.json"
fi

delay="$("$py" -c "print(1 / $rate)")"
results="$work/results.txt"
: >"$results"

# One trigger: run, wait until every record is committed, stop, analyse.
bench_trigger() {
  local trigger="$1"
  local stamp topic out cfg api_port pid
  stamp="$(date +%s)"
  topic="bench-latency-${trigger}-$stamp"
  out="$work/out-$trigger"
  rm -rf "$out"
  mkdir -p "$out"
  api_port="$(free_port)"
  cfg="$work/latency-$trigger.toml"
  # Only what the benchmark needs differs from the built-in defaults (not config/default.toml).
  cat >"$cfg" <<TOML
[api]
bind = "127.0.0.1:$api_port"
data_dir = "$data"
delay = $delay
[[producer.sources]]
name = "latency"
path = "/stream_data_latency?stamp=sent_at"
topic = "$topic"
key = "id"
[consumer]
output = "$out"
trigger = "$trigger"
max_offsets_per_trigger = 0
[consumer.topics.$topic.schema]
seq = "int64"
sent_at = "timestamp"
TOML
  local load_before
  load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
  log "trigger $trigger: $records records at $rate/s into $topic"
  "$bin" --log-format json --config "$cfg" --bootstrap "$bootstrap" run >"$work/run-$trigger.out" 2>"$work/run-$trigger.log" &
  pid=$!
  pids+=("$pid")
  # Every record committed: the newest commit's next offsets add up to the records (a new
  # topic starts at offset 0). Bounded: the sending time plus 3 minutes.
  local deadline=$((SECONDS + seconds + 180)) committed=0
  while ((committed < records)); do
    kill -0 "$pid" 2>/dev/null || die "run ended early: $(tail -n 5 "$work/run-$trigger.log")"
    ((SECONDS < deadline)) || die "trigger $trigger: only $committed of $records records committed in time"
    sleep 1
    committed="$("$py" - "$out/$topic/_checkpoint/all" <<'PY'
import json, os, sys
d = sys.argv[1]
commits = sorted(n for n in os.listdir(d) if n.endswith(".commit.json")) if os.path.isdir(d) else []
total = 0
for name in reversed(commits):
    try:
        with open(os.path.join(d, name)) as f:
            total = sum(json.load(f)["next_offsets"].values())
        break
    except (OSError, ValueError):
        continue  # pruned or replaced meanwhile: the one before it
print(total)
PY
)"
  done
  # The whole process's CPU time and peak memory, before it stops.
  local ticks cpu_s rss_kib
  ticks="$(getconf CLK_TCK)"
  cpu_s="$(awk -v t="$ticks" '{print ($14 + $15) / t}' "/proc/$pid/stat")"
  rss_kib="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
  kill -TERM "$pid"
  wait "$pid" || die "trigger $trigger: run exited with $? after SIGTERM: $(tail -n 5 "$work/run-$trigger.log")"
  pids=()
  local load_after
  load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
  "$py" - "$out/$topic" "$work/run-$trigger.log" "$records" "$trigger" "$cpu_s" "$rss_kib" \
    "$load_before" "$load_after" <<'PY' | tee -a "$results"
import datetime, json, os, sys
import pyarrow.parquet as pq

topic_dir, log_path, records, trigger, cpu_s, rss_kib, load_before, load_after = sys.argv[1:]
records = int(records)

# Commit time per batch: the `batch committed` log lines.
committed = {}
with open(log_path) as f:
    for line in f:
        if '"batch committed"' not in line:
            continue
        event = json.loads(line)
        ts = datetime.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
        committed[int(event["fields"]["batch"])] = ts

latencies, seqs = [], []
for name in os.listdir(topic_dir):
    if not (name.startswith("part-") and name.endswith(".parquet")):
        continue
    batch = int(name.split("-")[1])
    if batch not in committed:
        sys.exit(f"{name}: batch {batch} has no 'batch committed' log line")
    table = pq.read_table(os.path.join(topic_dir, name), columns=["seq", "sent_at"])
    commit_us = committed[batch] * 1e6
    for seq, sent in zip(table.column("seq").to_pylist(),
                         table.column("sent_at").cast("int64").to_pylist()):
        seqs.append(seq)
        latencies.append((commit_us - sent) / 1e6)

if len(seqs) != records or len(set(seqs)) != records or set(seqs) != set(range(records)):
    sys.exit(f"trigger {trigger}: {len(seqs)} rows, {len(set(seqs))} distinct seq, expected {records} once each")
# The method's own error: the log line against the commit file's mtime (written, synced and
# renamed just before), for the commits the checkpoint still keeps (its last 100).
checkpoint = os.path.join(topic_dir, "_checkpoint", "all")
gaps = sorted(committed[int(n.split(".")[0])] - os.stat(os.path.join(checkpoint, n)).st_mtime
              for n in os.listdir(checkpoint)
              if n.endswith(".commit.json") and int(n.split(".")[0]) in committed)
latencies.sort()
def pct(p):
    return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]
negative = sum(1 for x in latencies if x < 0)
if negative:
    sys.exit(f"trigger {trigger}: {negative} records committed before they were sent: clock or method error")
print(f"trigger {trigger:>4}: records {records} (each exactly once), batches {len(committed)}, "
      f"latency p50 {pct(50):.3f} s, p99 {pct(99):.3f} s, max {latencies[-1]:.3f} s, "
      f"min {latencies[0]:.3f} s; log line after commit file: median "
      f"{gaps[len(gaps) // 2] * 1000:.1f} ms, max {gaps[-1] * 1000:.1f} ms; run CPU {float(cpu_s):.1f} s, peak RSS {int(rss_kib) // 1024} MiB; "
      f"load avg before {load_before}, after {load_after}")
PY
  rm -rf "$out"
}

log "$(nproc) cores; $bin; broker $bootstrap; ${seconds}s at ${rate}/s per trigger: ${triggers[*]}"
for trigger in "${triggers[@]}"; do
  bench_trigger "$trigger"
done
log "results (also in $results):"
cat "$results" >&2
