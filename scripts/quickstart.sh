#!/usr/bin/env bash
# From a fresh clone to Parquet in one command: builds factorypal, starts a local Apache Kafka
# (unless FACTORYPAL__KAFKA__BOOTSTRAP names one), runs `factorypal run --until-drained` on
# data_source/ with no delay (API → Kafka → Parquet in database/), writes the report (which
# machine parameters go with each product's output) to report/, and prints what it wrote.
# Running it again adds nothing: the producer resumes after what the topics hold and the
# consumer after its checkpoint.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'quickstart: %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

log "building (release)"
cargo build --release --locked
bin="$PWD/target/release/factorypal"

cleanup() {
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

# The whole pipeline in one process: the API on data_source/ (no delay, a free loopback port),
# the topics, both producers and both consumers, until everything is in Parquet.
log "running the pipeline: data_source/ → API → Kafka → database/ (Parquet)"
FACTORYPAL__API__BIND=127.0.0.1:0 "$bin" run --until-drained --delay 0

# The plant's question, answered from what the pipeline wrote (no Kafka needed for this step).
log "report: which machine parameters go with each product's output → report/"
"$bin" report --input database --out report

cat <<EOF

Done. The report: report/report.md, report/report.html (open it in a browser) and
report/correlations.csv. The Parquet files:
$(find database -name '*.parquet' -not -path '*/_*' | sort | sed 's/^/  /')

Open them with pyarrow or DuckDB, for example:
  python3 -c "import pyarrow.dataset as ds; print(ds.dataset('database/metrics').to_table())"
  python3 -c "import duckdb; duckdb.sql(\"select id, count(*), avg(val) from 'database/metrics/*.parquet' group by id order by id\").show()"
(pip install pyarrow duckdb, if they are not there yet.)
EOF
