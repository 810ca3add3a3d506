#!/usr/bin/env bash
# `factorypal compact` on a Delta table of many small files, the shape a day of micro-batches
# leaves (8,640 files = one per 10 s trigger): the compaction's time and peak RSS, the files
# before and after, and a DuckDB query's time (count(*) and avg over the table) before and after.
#
# The table is made by tests/delta_compact.py `bulk`: pyarrow writes the small files into one
# `date=` partition and the Python `deltalake` package's convert_to_deltalake makes them a Delta
# table in one commit (seconds, where 8,640 write_deltalake appends take ~15 minutes here; the
# files are the same either way, only the log is shorter).
#
# usage: scripts/bench-compact.sh [FILES] [ROWS_PER_FILE]      (default 8640 100)
#   FACTORYPAL_BIN=PATH            default target/release/factorypal (not built here)
#   FACTORYPAL_TEST_PYTHON=PATH    a python with deltalake, duckdb, pyarrow (default
#                                  target/pyenv/bin/python)
#   BENCH_TARGET=128MB             --target-file-size
#   BENCH_QUERY_RUNS=5             DuckDB runs per measurement; the median is reported
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"

files="${1:-8640}"
rows="${2:-100}"
bin="${FACTORYPAL_BIN:-$repo/target/release/factorypal}"
py="${FACTORYPAL_TEST_PYTHON:-$repo/target/pyenv/bin/python}"
target="${BENCH_TARGET:-128MB}"
runs="${BENCH_QUERY_RUNS:-5}"
helper="$repo/tests/delta_compact.py"
work="$repo/target/bench/compact"
table="$work/out/metrics"

[ -x "$bin" ] || { echo "no $bin: cargo build --release first (or set FACTORYPAL_BIN)" >&2; exit 2; }
rm -rf "$work" && mkdir -p "$work"
printf '[consumer]\noutput = "out"\nsink = "delta"\n[consumer.topics.metrics]\npartition_by_day = "time"\n[consumer.topics.metrics.schema]\nid = "int32"\nval = "float64"\ntime = "timestamp"\n' > "$work/c.toml"

echo "building a table of $files files x $rows rows ..."
started=$(date +%s.%N)
"$py" "$helper" bulk "$table" "$files" "$rows"
echo "  made in $(echo "$(date +%s.%N) - $started" | bc) s, $(du -sb "$table" | cut -f1) bytes on disk"

before=$("$py" "$helper" query "$table" "$runs")
echo "DuckDB before: $before"

cd "$work"
/usr/bin/time -f '%e s elapsed, %M kB peak RSS' -o "$work/time.txt" \
    "$bin" --config c.toml compact --target-file-size "$target" --vacuum-retention 0s
echo "compact: $(cat "$work/time.txt")"
cd "$repo"

after=$("$py" "$helper" query "$table" "$runs")
echo "DuckDB after:  $after"
"$py" - "$before" "$after" <<'PY'
import json, sys
b, a = json.loads(sys.argv[1]), json.loads(sys.argv[2])
assert b["count"] == a["count"] and abs(b["avg"] - a["avg"]) < 1e-9 * abs(b["avg"]), (b, a)
print(f"files {b['files']} -> {a['files']}; query {b['seconds']:.3f} s -> {a['seconds']:.3f} s "
      f"({b['seconds'] / a['seconds']:.1f}x); same count ({a['count']}) and avg")
PY
echo "on disk after vacuum: $(find "$table" -name '*.parquet' -not -path '*/_delta_log/*' | wc -l) data files"
