#!/usr/bin/env bash
# The whole test suite, from a fresh clone: builds, starts a local Apache Kafka on a free port
# (unless FACTORYPAL_TEST_BOOTSTRAP names a broker already), runs `cargo test` (all of it), and
# stops that broker whatever happens. The last lines are cargo's own test summary.
#
# usage: scripts/test.sh [extra cargo test args, e.g. a test name filter]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'test.sh: %s\n' "$*" >&2; }

# Debian packages the tests use as independent parts: kcat (librdkafka) reads back what we
# wrote and produces with the Java client's partitioner for comparison; Chromium renders the
# status page in a real browser.
missing=()
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if (( ${#missing[@]} )); then
  log "installing ${missing[*]} (Debian packages)"
  sudo=""
  [[ "$(id -u)" == 0 ]] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
export FACTORYPAL_TEST_CHROMIUM="$(command -v chromium)"

# pyarrow and DuckDB read the consumer's Parquet in the tests, prometheus_client's parser reads
# the status server's /metrics, confluent_kafka (its wheel bundles a current librdkafka; Debian's
# kcat is too old for Kafka 4's SCRAM) speaks SCRAM to the cluster: independent parts, in a venv
# of the project's own (cached under target/).
pyenv="$PWD/target/pyenv"
if ! "$pyenv/bin/python" -c 'import pyarrow, duckdb, prometheus_client, confluent_kafka' >/dev/null 2>&1; then
  log "installing pyarrow, duckdb, prometheus_client and confluent_kafka into $pyenv"
  python3 -m venv "$pyenv"
  "$pyenv/bin/pip" install -q --disable-pip-version-check pyarrow duckdb prometheus-client confluent-kafka >&2
fi
export FACTORYPAL_TEST_PYTHON="$pyenv/bin/python"

# Build first so a compile error shows before any broker starts.
log "building"
cargo build --locked --all-targets

if [[ -z "${FACTORYPAL_TEST_BOOTSTRAP:-}" ]]; then
  KAFKA_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  KAFKA_DIR="$PWD/target/test-kafka/$KAFKA_PORT"
  export KAFKA_PORT KAFKA_DIR
  stop_broker() { scripts/kafka-local.sh stop --clean >/dev/null 2>&1 || true; }
  trap stop_broker EXIT
  trap 'exit 130' INT TERM
  log "starting a local Apache Kafka on 127.0.0.1:$KAFKA_PORT"
  FACTORYPAL_TEST_BOOTSTRAP="$(scripts/kafka-local.sh start | tail -n 1)"
  export FACTORYPAL_TEST_BOOTSTRAP
else
  log "using the broker at $FACTORYPAL_TEST_BOOTSTRAP"
fi

log "running cargo test against $FACTORYPAL_TEST_BOOTSTRAP"
# Unit tests of the library and binary, and every integration test in tests/. (Doc-tests,
# examples and benches hold no tests; leaving them out keeps cargo's closing summary that of
# real tests.)
cargo test --locked --lib --bins --tests "$@"
