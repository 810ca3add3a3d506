#!/usr/bin/env bash
# How often the Delta sink can commit: factorypal consume --sink delta over a pre-filled topic
# for a fixed time, with a trigger of 1 s (what a plant might run) and of 10 ms (as fast as
# commits go), on local disk and, with an s3proxy env file, on S3. Reports commits (table
# versions) per second, the median and 95th percentile time of a batch (plan → commit, from
# the consumer's own log) and the rows written.
#
# usage: scripts/bench-delta.sh
#   FACTORYPAL_BENCH_BOOTSTRAP=HOST:PORT   a running broker (required)
#   BENCH_S3_ENV=PATH                      also on S3: an env file of scripts/s3proxy-local.sh
#   BENCH_SECONDS=30                       how long each variant runs
#   FACTORYPAL_BIN=PATH                    default target/release/factorypal
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"
bin="${FACTORYPAL_BIN:-$repo/target/release/factorypal}"
bootstrap="${FACTORYPAL_BENCH_BOOTSTRAP:?set FACTORYPAL_BENCH_BOOTSTRAP to a running broker}"
seconds="${BENCH_SECONDS:-30}"
py="$(scripts/test-pyenv.sh)"
work="$repo/target/bench/delta"
rm -rf "$work" && mkdir -p "$work"
[[ -x "$bin" ]] || { echo "build first: cargo build --release" >&2; exit 1; }

topic="bench-delta-$(date +%s)"
cfg="$work/bench.toml"
cat >"$cfg" <<TOML
[consumer.topics.$topic]
partition_by_day = "time"
[consumer.topics.$topic.schema]
id = "int32"
val = "float64"
time = "timestamp"
TOML
fp() { "$bin" -q --config "$cfg" --bootstrap "$bootstrap" "$@"; }
fp admin create-topic "$topic" --partitions 3 >/dev/null
# 2,000,000 records: more than any variant reads, so every trigger finds records waiting.
python3 -c '
import json
for i in range(2_000_000):
    print(json.dumps({"id": i, "val": i / 7, "time": 1624300000 + i}))' |
  kcat -b "$bootstrap" -t "$topic" -P -X linger.ms=50 -X batch.num.messages=10000

# variant NAME OUTPUT TRIGGER MAX_OFFSETS [env...]: one timed run, SIGINT after $seconds.
variant() {
  local name="$1" output="$2" trigger="$3" max="$4"
  shift 4
  local log="$work/$name.log"
  env "$@" RUST_LOG=factorypal=info "$bin" --config "$cfg" --bootstrap "$bootstrap" consume \
    --sink delta --topics "$topic" --output "$output" --trigger "$trigger" \
    --max-offsets-per-trigger "$max" 2>"$log" &
  local pid=$!
  sleep "$seconds"
  kill -INT "$pid"
  wait "$pid" || true
  env "$@" "$py" - "$log" "$output/$topic" "$name" "$seconds" <<'PY'
import json, re, statistics, sys
from deltalake import DeltaTable
log, uri, name, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
import os
opts = {}
if uri.startswith("s3://"):
    opts = {"AWS_ENDPOINT_URL": os.environ["FACTORYPAL__STORAGE__ENDPOINT"], "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": "us-east-1"}
t = DeltaTable(uri, storage_options=opts)
rows = t.to_pyarrow_table(columns=["id"]).num_rows
# The consumer logs each batch's time from plan to commit in the status report; count commits
# from the table itself: one version per batch, plus version 0 (create).
commits = t.version()
durations = [float(m) for m in re.findall(r"batch committed.*?duration_ms=(\d+(?:\.\d+)?)", open(log).read())]
q = lambda p: sorted(durations)[int(p * (len(durations) - 1))] if durations else float("nan")
print(f"{name}: {commits} commits in {seconds:.0f} s = {commits / seconds:.1f} commits/s, "
      f"{rows} rows; batch plan→commit median {q(0.5):.0f} ms, p95 {q(0.95):.0f} ms")
PY
}

echo "== Delta commits, topic $topic (3 partitions, partition_by_day), $(date -I), $(nproc) cores"
variant local-1s "$work/lake" 1s 5000
variant local-10ms "$work/lake-fast" 10ms 300
if [[ -n "${BENCH_S3_ENV:-}" ]]; then
  mapfile -t s3vars < <(sed -n 's/^export //p' "$BENCH_S3_ENV")
  bucket="$(sed -n 's/^export FACTORYPAL_TEST_S3_BUCKET=//p' "$BENCH_S3_ENV")"
  variant s3-1s "s3://$bucket/bench-$topic" 1s 5000 "${s3vars[@]}"
  variant s3-10ms "s3://$bucket/bench-fast-$topic" 10ms 300 "${s3vars[@]}"
fi
