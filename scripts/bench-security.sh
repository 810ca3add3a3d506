#!/usr/bin/env bash
# What TLS and a SASL login cost: the same records produced and consumed through each listener
# of one secured broker (scripts/kafka-local.sh start --security sasl_ssl): PLAINTEXT, SSL
# (mutual TLS), SASL_PLAINTEXT and SASL_SSL (SCRAM-SHA-512). Each phase runs RUNS times per
# listener, interleaved; the median records/s is reported.
#
#   connect: factorypal admin list-topics (process start, first contact, login)
#   produce: gen-data → serve-api (no delay) → factorypal produce metrics, into a new topic
#   consume: factorypal consume --trigger available-now of that topic → Parquet
# Times are whole commands, wall clock, so they include connecting.
#
# usage: scripts/bench-security.sh [RECORDS]     (default 500000)
#   RUNS=3                  runs per listener and phase
#   FACTORYPAL_BIN=PATH     default target/release/factorypal (built here if missing)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"
records="${1:-500000}"
runs="${RUNS:-3}"
bin="${FACTORYPAL_BIN:-$repo/target/release/factorypal}"
[[ -x "$bin" ]] || cargo build --release --locked
work="$repo/target/bench/security"
rm -rf "$work"
mkdir -p "$work"
export KAFKA_DIR="$work/kafka"
log() { printf 'bench-security: %s\n' "$*" >&2; }
stop() {
  [[ -n "${api_pid:-}" ]] && kill "$api_pid" 2>/dev/null || true
  scripts/kafka-local.sh stop --clean >/dev/null 2>&1 || true
}
trap stop EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
KAFKA_PORT="$(free_port)" scripts/kafka-local.sh start --security sasl_ssl >/dev/null
"$bin" gen-data --out "$work/data" --metrics "$records" --workorders 1 >/dev/null
api_port="$(free_port)"
"$bin" serve-api --bind "127.0.0.1:$api_port" --data-dir "$work/data" --delay 0 >/dev/null 2>&1 &
api_pid=$!
sleep 1

# A config for `protocol`'s listener (the [kafka] section kafka-local.sh wrote) whose one source
# and one consumer topic are `topic`.
config_for() {
  local protocol="$1" topic="$2" file="$work/$1-$2.toml"
  {
    cat "$KAFKA_DIR/factorypal-$protocol.toml"
    printf '[producer]\napi_url = "http://127.0.0.1:%s"\n' "$api_port"
    printf '[[producer.sources]]\nname = "metrics"\npath = "/stream_data_metrics"\ntopic = "%s"\nkey = "id"\n' "$topic"
    printf '[consumer]\noutput = "%s"\nmax_offsets_per_trigger = 0\n' "$work/out-$protocol-$topic"
    printf '[consumer.topics.%s.schema]\nid = "int32"\nval = "float64"\ntime = "timestamp"\n' "$topic"
  } >"$file"
  printf '%s\n' "$file"
}

# Wall-clock seconds of one command.
timed() {
  local start end
  start="$(date +%s.%N)"
  "$@" >/dev/null 2>"$work/last.err" || { cat "$work/last.err" >&2; exit 1; }
  end="$(date +%s.%N)"
  python3 -c "print(f'{$end - $start:.3f}')"
}

protocols=(plaintext ssl sasl_plaintext sasl_ssl)
declare -A produce_s consume_s connect_s
for ((run = 1; run <= runs; run++)); do
  for protocol in "${protocols[@]}"; do
    topic="bench-$protocol-$run"
    config="$(config_for "$protocol" "$topic")"
    "$bin" --config "$config" admin create-topic "$topic" --partitions 3 --replication-factor 1 >/dev/null
    connect_s[$protocol]+="$(timed "$bin" --config "$config" admin list-topics) "
    produce_s[$protocol]+="$(timed "$bin" --config "$config" produce metrics) "
    consume_s[$protocol]+="$(timed "$bin" --config "$config" consume --trigger available-now) "
    log "run $run: $protocol done"
  done
done

median_rate() {
  python3 -c "import statistics,sys; t=statistics.median(map(float,sys.argv[2:])); print(f'{int(sys.argv[1])/t:,.0f} records/s (median of {len(sys.argv)-2}: {t:.2f} s)')" "$records" $1
}
printf '%s records, %s runs each (%s)\n' "$records" "$runs" "$("$bin" --version)"
median_s() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float,sys.argv[1:])):.2f} s')" $1; }
printf '%-16s %-10s %-44s %s\n' listener connect produce consume
for protocol in "${protocols[@]}"; do
  printf '%-16s %-10s %-44s %s\n' "$protocol" "$(median_s "${connect_s[$protocol]}")" \
    "$(median_rate "${produce_s[$protocol]}")" "$(median_rate "${consume_s[$protocol]}")"
done
