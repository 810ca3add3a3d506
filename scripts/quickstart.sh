#!/usr/bin/env bash
# From a fresh clone to Parquet in one command: builds factorypal, starts a local Apache Kafka
# (unless FACTORYPAL__KAFKA__BOOTSTRAP names one), serves data_source/ as the plant's API with no
# delay, produces both streams into Kafka, consumes them into database/ as Parquet, and prints
# what it wrote. Running it again adds nothing: the producer resumes after what the topics hold
# and the consumer after its checkpoint.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'quickstart: %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

log "building (release)"
cargo build --release --locked
bin="$PWD/target/release/factorypal"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ -n "${KAFKA_DIR:-}" ]]; then scripts/kafka-local.sh stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

if [[ -z "${FACTORYPAL__KAFKA__BOOTSTRAP:-}" ]]; then
  # A broker of the quickstart's own; its data stays in target/quickstart/kafka between runs.
  KAFKA_DIR="$PWD/target/quickstart/kafka"
  KAFKA_PORT="$(free_port)"
  export KAFKA_DIR KAFKA_PORT
  log "starting a local Apache Kafka (first time: its jars come from Maven Central)"
  FACTORYPAL__KAFKA__BOOTSTRAP="$(scripts/kafka-local.sh start | tail -n 1)"
  export FACTORYPAL__KAFKA__BOOTSTRAP
fi
log "Kafka at $FACTORYPAL__KAFKA__BOOTSTRAP"

api="127.0.0.1:$(free_port)"
"$bin" -q serve-api --bind "$api" --delay 0 &
pids+=($!)
until curl -sf "http://$api/healthz" >/dev/null 2>&1; do
  kill -0 "${pids[0]}" 2>/dev/null || { log "serve-api did not start"; exit 1; }
  sleep 0.1
done

log "producing data_source/ (served at http://$api) into Kafka"
"$bin" produce --all --api-url "http://$api" --create-topics --resume

log "consuming into database/ as Parquet"
"$bin" consume --sink parquet --trigger available-now --max-offsets-per-trigger 0

cat <<EOF

Done. The Parquet files:
$(find database -name '*.parquet' -not -path '*/_*' | sort | sed 's/^/  /')

Open them with pyarrow or DuckDB, for example:
  python3 -c "import pyarrow.dataset as ds; print(ds.dataset('database/metrics').to_table().to_pandas())"
  duckdb -c "select id, count(*), avg(val) from read_parquet('database/metrics/*.parquet') group by id order by id"
EOF
