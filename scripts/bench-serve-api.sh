#!/usr/bin/env bash
# serve-api benchmark: generate a ~1.3 GB metrics file, measure load time and peak RSS (and its
# ratio to the file's size; issue 14's floor is 1.5), then
# records/s to one client and to 50 concurrent clients with delay=0 on loopback.
# Results go to stdout; BENCHMARKS.md records them with this exact command.
#
# usage: scripts/bench-serve-api.sh [METRICS_RECORDS]   (default 25000000, about 1.3 GB)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

records="${1:-25000000}"
work="$PWD/target/bench/serve-api"
mkdir -p "$work"
cargo build --release --locked --bin factorypal --example ndjson_load >&2
bin=target/release/factorypal
load=target/release/examples/ndjson_load

if [[ ! -f "$work/data/.records-$records" ]]; then
  rm -rf "$work/data"
  echo "== gen-data --metrics $records"
  /usr/bin/time -f "gen-data: %e s, peak RSS %M KiB" "$bin" gen-data --out "$work/data" --metrics "$records"
  touch "$work/data/.records-$records"
fi
file_bytes="$(stat -c %s "$work/data/metrics.json")"
echo "metrics.json: $file_bytes bytes"

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
addr="127.0.0.1:$port"
start_ns=$(date +%s%N)
"$bin" -q serve-api --bind "$addr" --data-dir "$work/data" --delay 0 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
until curl -sf "http://$addr/healthz" >/dev/null 2>&1; do
  kill -0 "$pid" || { echo "serve-api died" >&2; exit 1; }
  sleep 0.05
done
echo "load: $(( ($(date +%s%N) - start_ns) / 1000000 )) ms until /healthz answered"
hwm_kib="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
echo "peak RSS after load: $hwm_kib kB = $(awk -v h="$hwm_kib" -v f="$file_bytes" 'BEGIN { printf "%.3f", h * 1024 / f }') x the file"

echo "== 1 client, whole stream, delay=0"
"$load" "$addr" "/stream_data_metrics?delay=0" 1
echo "== 50 clients, 1,000,000 records each, delay=0"
"$load" "$addr" "/stream_data_metrics?delay=0&limit=1000000" 50
echo "peak RSS after serving: $(awk '/VmHWM/ {print $2, $3}' "/proc/$pid/status")"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
trap - EXIT
echo "serve-api exited $status after SIGTERM"
