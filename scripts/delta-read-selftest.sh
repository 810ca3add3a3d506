#!/usr/bin/env bash
# Checks tests/delta_read.py (the independent Delta reader of the Delta sink's tests) on tables
# the Python `deltalake` package writes: on local disk and on s3proxy (tests/delta_read_selftest.py
# says what is checked). Uses the s3proxy whose s3.env FACTORYPAL_TEST_S3_ENV names, else starts
# one of its own on a free port and stops it at the end. scripts/test.sh runs it.
#
# usage: scripts/delta-read-selftest.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { printf 'delta-read-selftest: %s\n' "$*" >&2; }

python="${FACTORYPAL_TEST_PYTHON:-$(scripts/test-pyenv.sh | tail -n 1)}"
scratch="$(mktemp -d -t delta-read-selftest.XXXXXX)"
own_s3=""
cleanup() {
  if [[ -n "$own_s3" ]]; then
    S3PROXY_DIR="$own_s3" scripts/s3proxy-local.sh stop --clean >/dev/null 2>&1 || true
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "local disk"
mkdir "$scratch/tables"
"$python" tests/delta_read_selftest.py "$scratch/tables"

env_file="${FACTORYPAL_TEST_S3_ENV:-}"
if [[ -z "$env_file" ]]; then
  own_s3="$scratch/s3proxy"
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  env_file="$(S3PROXY_DIR="$own_s3" S3PROXY_PORT="$port" scripts/s3proxy-local.sh start | tail -n 1)"
fi
# shellcheck disable=SC1090
source "$env_file"
log "s3proxy at $FACTORYPAL__STORAGE__ENDPOINT"
"$python" tests/delta_read_selftest.py "s3://$FACTORYPAL_TEST_S3_BUCKET/delta-read-selftest-$$-$RANDOM"
