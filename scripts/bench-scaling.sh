#!/usr/bin/env bash
# How the consumer's cost grows with the work: scripts/bench-consume.sh (kcat and factorypal
# consume --sink parquet, available-now, one batch) at 10k, 100k, 1M and 10M records, each on
# a topic of its own filled by the real pipeline; one table of records/s and peak RSS. Cost
# should grow linearly (records/s flat once start-up is amortised) and memory stay flat.
# (The producer's scaling is scripts/bench-produce.sh with BENCH_SCALE.)
#
# usage: scripts/bench-scaling.sh [COUNTS...]        (default: 10000 100000 1000000 10000000)
#   FACTORYPAL_BENCH_BOOTSTRAP=HOST:PORT   a running broker (else bench-consume.sh starts one
#                                          per count)
#   BENCH_FACTORYPAL_RUNS=3 BENCH_KCAT_RUNS=3  runs per count (medians), as bench-consume.sh
#   FACTORYPAL_BIN=PATH                    default target/release/factorypal (not built here)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
counts=("$@")
((${#counts[@]})) || counts=(10000 100000 1000000 10000000)
out="target/bench/scaling"
mkdir -p "$out"
rows=()
for n in "${counts[@]}"; do
  echo "bench-scaling: $n records" >&2
  BENCH_SKIP_SPARK=1 scripts/bench-consume.sh "$n" >"$out/consume-$n.txt"
  # The summary lines of bench-consume.sh: kcat (both variants) and factorypal.
  python3 - "$n" "$out/consume-$n.txt" <<'PY' >>"$out/table.$$"
import re, sys
n, text = sys.argv[1], open(sys.argv[2]).read()
def rate(pattern):
    m = re.search(pattern + r".*?: (\d+) records/s.*?peak RSS (\d+) MiB", text)
    return (m.group(1), m.group(2)) if m else ("?", "?")
k = rate(r"\(defaults\)")
w = rate(r"\(no 0\.5 s end-of-partition wait\)")
f = rate(r"factorypal consume --trigger")
print(f"| {int(n):,} | {int(f[0]):,} | {f[1]} | {int(k[0]):,} | {int(w[0]):,} | {int(f[0]) / int(w[0]):.2f} |")
PY
done
echo
echo "== consume scaling, $(date -I), $(nproc) cores"
echo "| records | factorypal → Parquet, records/s | peak RSS, MiB | kcat, records/s | kcat fetch.wait.max.ms=10, records/s | factorypal ÷ kcat (no end wait) |"
echo "|---|---|---|---|---|---|"
cat "$out/table.$$"
rm -f "$out/table.$$"
