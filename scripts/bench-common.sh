# Sourced by the benchmark scripts that need a broker (bench-consume, bench-produce,
# bench-latency), from the repository's root with `set -euo pipefail` on, after they set
# `work` (their scratch directory). Provides:
#   free_port       a free TCP port on 127.0.0.1
#   pids            background processes to kill on exit (append with pids+=("$pid"))
#   bootstrap       FACTORYPAL_BENCH_BOOTSTRAP if set, else a single broker started here under
#                   $work/kafka-PORT, stopped and removed on exit

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

pids=()
bench_cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ -n "${KAFKA_DIR:-}" ]]; then scripts/kafka-local.sh stop --clean >/dev/null 2>&1 || true; fi
}
trap bench_cleanup EXIT

if [[ -n "${FACTORYPAL_BENCH_BOOTSTRAP:-}" ]]; then
  bootstrap="$FACTORYPAL_BENCH_BOOTSTRAP"
else
  KAFKA_PORT="$(free_port)"
  KAFKA_DIR="$work/kafka-$KAFKA_PORT"
  export KAFKA_PORT KAFKA_DIR
  bootstrap="$(scripts/kafka-local.sh start | tail -n 1)"
fi
