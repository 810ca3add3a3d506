#!/usr/bin/env bash
# The whole test suite, from a fresh clone: builds, starts a local Apache Kafka on a free port
# (unless FACTORYPAL_TEST_BOOTSTRAP names a broker already) and, in parallel, a 3-node SASL_SSL
# cluster (unless FACTORYPAL_TEST_CLUSTER_DIR names the KAFKA_DIR of one) and an s3proxy, a local
# S3 (unless FACTORYPAL_TEST_S3_ENV names the s3.env of one), checks the independent Delta reader
# (scripts/delta-read-selftest.sh), runs `cargo test` (all of it), and stops what it started
# whatever happens. The last lines are cargo's own test summary.
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
FACTORYPAL_TEST_CHROMIUM="$(command -v chromium)"
export FACTORYPAL_TEST_CHROMIUM

# pyarrow and DuckDB read the consumer's Parquet in the tests, deltalake and DuckDB's delta
# extension its Delta tables, prometheus_client's parser reads the status server's /metrics,
# confluent_kafka (its wheel bundles a current librdkafka; Debian's kcat is too old for Kafka 4's
# SCRAM) speaks SCRAM to the cluster: independent parts, pinned in tests/requirements.txt, in a
# venv of the project's own (cached in target/pyenv).
FACTORYPAL_TEST_PYTHON="$(scripts/test-pyenv.sh | tail -n 1)"
export FACTORYPAL_TEST_PYTHON

# Build first so a compile error shows before any broker starts.
log "building"
cargo build --locked --all-targets

free_port() {
  # A free port on 127.0.0.1 that is none of the arguments.
  python3 - "$@" <<'PY'
import socket, sys
avoid = set(map(int, sys.argv[1:]))
while True:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    if port not in avoid:
        print(port)
        break
PY
}

single_dir=""
cluster_dir=""
cluster_pid=""
s3_dir=""
s3_pid=""
stop_brokers() {
  # A cluster start still under way (the single broker failed first) holds the cluster's lock
  # until its nodes are ready: end it; stop then finds the nodes it launched by their pid files.
  if [[ -n "$cluster_pid" ]] && kill -0 "$cluster_pid" 2>/dev/null; then
    kill "$cluster_pid" 2>/dev/null || true
    wait "$cluster_pid" 2>/dev/null || true
  fi
  if [[ -n "$s3_pid" ]] && kill -0 "$s3_pid" 2>/dev/null; then
    kill "$s3_pid" 2>/dev/null || true
    wait "$s3_pid" 2>/dev/null || true
  fi
  # Both at once: each takes seconds to shut down cleanly.
  if [[ -n "$single_dir" ]]; then
    KAFKA_DIR="$single_dir" scripts/kafka-local.sh stop --clean >/dev/null 2>&1 || true &
  fi
  if [[ -n "$cluster_dir" ]]; then
    KAFKA_DIR="$cluster_dir" scripts/kafka-local.sh stop --clean >/dev/null 2>&1 || true &
  fi
  if [[ -n "$s3_dir" ]]; then
    S3PROXY_DIR="$s3_dir" scripts/s3proxy-local.sh stop --clean >/dev/null 2>&1 || true &
  fi
  wait
}
trap stop_brokers EXIT
trap 'exit 130' INT TERM

# A 3-node cluster with secured listeners (SSL, SASL_PLAINTEXT, SASL_SSL besides PLAINTEXT) for the
# failover and security tests, started in the background while the single broker starts. The tests
# find everything in FACTORYPAL_TEST_CLUSTER_DIR: listeners.env, tls/, sasl-password,
# factorypal-*.toml, client-*.properties (README, "A local cluster").
taken=()
if [[ -z "${FACTORYPAL_TEST_CLUSTER_DIR:-}" ]]; then
  cluster_port="$(free_port)"
  cluster_dir="$PWD/target/test-kafka/cluster-$cluster_port"
  log "starting a 3-node SASL_SSL Apache Kafka cluster in $cluster_dir (in the background)"
  cluster_start_s=$SECONDS
  KAFKA_PORT="$cluster_port" KAFKA_DIR="$cluster_dir" \
    scripts/kafka-local.sh start --brokers 3 --security sasl_ssl >/dev/null &
  cluster_pid=$!
  # Its ports are fixed in cluster.env before any of its nodes binds them: the single broker's
  # ports are chosen among the others.
  waited=0
  until [[ -f "$cluster_dir/cluster.env" ]]; do
    if ! kill -0 "$cluster_pid" 2>/dev/null || ((waited >= 600)); then
      wait "$cluster_pid" || true
      log "the cluster did not get its ports (see above)"
      exit 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  read -r -a taken <<<"$(sed -n 's/^NODE[0-9]*_[A-Z_]*=//p' "$cluster_dir/cluster.env" | tr '\n' ' ')"
  FACTORYPAL_TEST_CLUSTER_DIR="$cluster_dir"
  export FACTORYPAL_TEST_CLUSTER_DIR
else
  log "using the cluster in $FACTORYPAL_TEST_CLUSTER_DIR"
fi

# One s3proxy (a local S3, filesystem backend) for the Delta sink's tests on object storage,
# started in the background too; the tests find its settings in FACTORYPAL_TEST_S3_ENV (the
# s3.env that scripts/s3proxy-local.sh writes: endpoint, credentials, bucket).
if [[ -z "${FACTORYPAL_TEST_S3_ENV:-}" ]]; then
  s3_port="$(free_port "${taken[@]}")"
  taken+=("$s3_port")
  s3_dir="$PWD/target/test-s3proxy/$s3_port"
  log "starting an s3proxy on 127.0.0.1:$s3_port (in the background)"
  s3_start_s=$SECONDS
  S3PROXY_PORT="$s3_port" S3PROXY_DIR="$s3_dir" scripts/s3proxy-local.sh start >/dev/null &
  s3_pid=$!
  FACTORYPAL_TEST_S3_ENV="$s3_dir/s3.env"
  export FACTORYPAL_TEST_S3_ENV
else
  log "using the s3proxy of $FACTORYPAL_TEST_S3_ENV"
fi

if [[ -z "${FACTORYPAL_TEST_BOOTSTRAP:-}" ]]; then
  KAFKA_PORT="$(free_port "${taken[@]}")"
  KAFKA_DIR="$PWD/target/test-kafka/$KAFKA_PORT"
  single_dir="$KAFKA_DIR"
  export KAFKA_PORT KAFKA_DIR
  log "starting a local Apache Kafka on 127.0.0.1:$KAFKA_PORT"
  # The controller port too is none of the cluster's (only for this start: a test's own
  # brokers pick theirs).
  FACTORYPAL_TEST_BOOTSTRAP="$(KAFKA_CONTROLLER_PORT="$(free_port "${taken[@]}" "$KAFKA_PORT")" \
    scripts/kafka-local.sh start | tail -n 1)"
  export FACTORYPAL_TEST_BOOTSTRAP
else
  log "using the broker at $FACTORYPAL_TEST_BOOTSTRAP"
fi

if [[ -n "$cluster_dir" ]]; then
  wait "$cluster_pid" || { cluster_pid=""; log "the 3-node cluster did not start (see above)"; exit 1; }
  cluster_pid=""
  log "the 3-node cluster was ready $((SECONDS - cluster_start_s)) s after its start"
fi
if [[ -n "$s3_pid" ]]; then
  wait "$s3_pid" || { s3_pid=""; log "the s3proxy did not start (see above)"; exit 1; }
  s3_pid=""
  log "the s3proxy was ready $((SECONDS - s3_start_s)) s after its start"
fi

# The Delta tests' independent reader, checked on tables the deltalake package writes.
scripts/delta-read-selftest.sh >/dev/null

log "running cargo test against $FACTORYPAL_TEST_BOOTSTRAP"
# Unit tests of the library and binary, and every integration test in tests/. (Doc-tests,
# examples and benches hold no tests; leaving them out keeps cargo's closing summary that of
# real tests.)
cargo test --locked --lib --bins --tests "$@"
