#!/usr/bin/env bash
# The tests' Python: a venv in target/pyenv with the pinned packages of tests/requirements.txt
# (pyarrow, DuckDB and its delta/httpfs extensions, deltalake, prometheus_client,
# confluent_kafka, numpy and scipy). Installs or updates it when the requirements changed since
# its last install (a copy of them is kept in the venv), else does nothing. Prints the venv's
# python last.
#
# usage: scripts/test-pyenv.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
pyenv="$PWD/target/pyenv"
requirements="$PWD/tests/requirements.txt"
stamp="$pyenv/.factorypal-requirements"

log() { printf 'test-pyenv: %s\n' "$*" >&2; }

if ! [[ -x "$pyenv/bin/python" ]] || ! cmp -s "$requirements" "$stamp"; then
  log "installing tests/requirements.txt into $pyenv"
  # A link or a venv of another python is replaced, not patched.
  if [[ -L "$pyenv" ]] || ! "$pyenv/bin/python" -c '' >/dev/null 2>&1; then
    rm -rf "$pyenv"
  fi
  python3 -m venv "$pyenv"
  rm -f "$stamp"
  "$pyenv/bin/pip" install -q --disable-pip-version-check -r "$requirements" >&2
  cp "$requirements" "$stamp"
fi
printf '%s\n' "$pyenv/bin/python"
