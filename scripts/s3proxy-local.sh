#!/usr/bin/env bash
# Run a real S3-compatible server locally: s3proxy (org.gaul:s3proxy, its jar-with-dependencies
# from Maven Central, Java 17) with the filesystem backend, without Docker. The Delta sink's S3
# tests write to it; it answers conditional writes (PUT with If-None-Match: *), which delta-rs
# 1.x needs for safe commits.
#
# usage: scripts/s3proxy-local.sh COMMAND
#
#   start [--clean]  start s3proxy on http://127.0.0.1:S3PROXY_PORT in the background, create
#                    the bucket, write S3PROXY_DIR/s3.env, and return once an authenticated
#                    request succeeds; the last line on stdout is the path of s3.env. Already
#                    running: says so and prints the path. --clean first empties the bucket
#                    store (data/) of a stopped server.
#   stop [--clean]   stop it; --clean (or S3PROXY_CLEAN=1) also deletes S3PROXY_DIR
#   status           exit 0 if it runs (and says whether it answers), 3 if not
#   selftest         against the running server, with a client independent of s3proxy
#                    (scripts/s3proxy/s3_client.py, Python stdlib SigV4): put, get, list and
#                    delete; a conditional PUT (If-None-Match: *) of an existing key is refused
#                    with 412; 8 racing conditional PUTs of a new key: one wins, seven get 412
#
# Files in S3PROXY_DIR:
#   s3.env           `export` lines for clients: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
#                    AWS_REGION, FACTORYPAL__STORAGE__ENDPOINT, FACTORYPAL__STORAGE__REGION,
#                    FACTORYPAL__STORAGE__ALLOW_HTTP, FACTORYPAL_TEST_S3_BUCKET
#   s3proxy.conf     the server's properties (rewritten on every start)
#   data/            the filesystem backend: data/BUCKET/KEY, one file per object
#   s3proxy.pid, s3proxy.port, s3proxy.out (its log)
#
# Environment (all optional):
#   S3PROXY_VERSION        s3proxy release from Maven Central (default below)
#   S3PROXY_PORT           port on 127.0.0.1 (default 19900)
#   S3PROXY_DIR            state: config, objects, log, pid (default target/s3proxy-local)
#   S3PROXY_JARS_DIR       jar cache (default target/s3proxy-jars/<version>)
#   S3PROXY_BUCKET         bucket created on start (default factorypal)
#   S3PROXY_HEAP_OPTS      default "-Xms32m -Xmx256m"
#   S3PROXY_START_TIMEOUT  seconds to wait for readiness (default 60)
#   JAVA_HOME / MVN        java and maven to use
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
CLIENT="$SCRIPT_DIR/s3proxy/s3_client.py"

# 4.1.0: the newest release, built for Java 17 (its manifest: Java-Version 17). Its filesystem
# backend evaluates If-None-Match as it writes (an exclusive create), so a conditional PUT of an
# existing key is a 412 and of two racing ones only one wins. The self-test below tells the
# releases apart: 2.5.0 and 2.6.0 ignore If-None-Match on PUT (the object is overwritten, 200);
# 2.9.0, 3.0.0 and 3.3.0 check it and then write, not atomically (of 8 racing PUTs of a new key
# 2-5 won); 4.0.0 and 4.1.0 pass. delta-rs 1.x commits a table version with such a PUT.
S3PROXY_VERSION="${S3PROXY_VERSION:-4.1.0}"
S3PROXY_PORT="${S3PROXY_PORT:-19900}"
S3PROXY_BUCKET="${S3PROXY_BUCKET:-factorypal}"
S3PROXY_HEAP_OPTS="${S3PROXY_HEAP_OPTS:--Xms32m -Xmx256m}"
S3PROXY_START_TIMEOUT="${S3PROXY_START_TIMEOUT:-60}"
S3PROXY_JARS_DIR="${S3PROXY_JARS_DIR:-$REPO_ROOT/target/s3proxy-jars/$S3PROXY_VERSION}"
MVN="${MVN:-mvn}"
if [[ -n "${JAVA_HOME:-}" ]]; then
  JAVA="$JAVA_HOME/bin/java"
else
  JAVA="java"
fi
HOST=127.0.0.1
# Fixed test credentials: the server is on loopback and holds only test data.
ACCESS_KEY=factorypal-test
SECRET_KEY=factorypal-test-secret
REGION=us-east-1

log() { printf 's3proxy-local: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# S3PROXY_DIR must be absolute: it is in the server's command line, which `stop` checks before
# killing anything.
init_state_paths() {
  local dir="${S3PROXY_DIR:-$REPO_ROOT/target/s3proxy-local}"
  mkdir -p "$dir"
  S3PROXY_DIR="$(cd "$dir" && pwd)"
  CONF="$S3PROXY_DIR/s3proxy.conf"
  DATA_DIR="$S3PROXY_DIR/data"
  ENV_FILE="$S3PROXY_DIR/s3.env"
  PID_FILE="$S3PROXY_DIR/s3proxy.pid"
  PORT_FILE="$S3PROXY_DIR/s3proxy.port"
  OUT_FILE="$S3PROXY_DIR/s3proxy.out"
  # Marks the directory as ours, so `stop --clean` never deletes anything else.
  touch "$S3PROXY_DIR/.s3proxy-local"
}

# Serialise start/stop on one S3PROXY_DIR (fd 9; the server must not inherit it).
lock_state_dir() {
  exec 9>"$S3PROXY_DIR/.lock"
  flock -w 120 9 || die "timed out waiting for the lock on $S3PROXY_DIR"
}

jar_path() {
  printf '%s/s3proxy-%s-jar-with-dependencies.jar\n' "$S3PROXY_JARS_DIR" "$S3PROXY_VERSION"
}

# Fetch the jar-with-dependencies into the cache dir, once. A marker written after a complete
# copy means later calls never run Maven (no network).
resolve_jar() {
  local dest="$S3PROXY_JARS_DIR" marker="$S3PROXY_JARS_DIR/.complete"
  [[ -f "$marker" ]] && return 0
  mkdir -p "$(dirname "$dest")"
  # Lock in the parent dir: parallel first starts share one download.
  exec 8>"$dest.lock"
  flock -w 600 8 || die "timed out waiting for $dest.lock"
  if [[ ! -f "$marker" ]]; then
    command -v "$MVN" >/dev/null || die "maven ($MVN) not found"
    log "fetching org.gaul:s3proxy:$S3PROXY_VERSION (jar-with-dependencies) from Maven Central into $dest"
    local tmp="$dest.tmp.$$"
    rm -rf "$tmp"
    # The plugin version is pinned so Maven 3.8's old default is not used. mvn -q prints its
    # errors on stdout: keep them out of ours, show them on failure.
    if ! "$MVN" -q -B -Dstyle.color=never \
        org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
        -Dartifact="org.gaul:s3proxy:$S3PROXY_VERSION:jar:jar-with-dependencies" \
        -DoutputDirectory="$tmp" >"$tmp.log" 2>&1; then
      cat "$tmp.log" >&2
      rm -rf "$tmp" "$tmp.log"
      die "maven could not fetch org.gaul:s3proxy:$S3PROXY_VERSION:jar-with-dependencies"
    fi
    rm -f "$tmp.log"
    rm -rf "$dest"
    mv "$tmp" "$dest"
    [[ -f "$(jar_path)" ]] || die "maven fetched no $(jar_path)"
    printf '%s\n' "$S3PROXY_VERSION" >"$marker"
  fi
  exec 8>&-
}

port_is_free() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

# Print the PID of the server of this S3PROXY_DIR, or fail. Checks the command line, so a stale
# pid file never gets an unrelated process killed.
running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid cmdline
  pid="$(<"$PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *"--properties $CONF"* ]] || return 1
  printf '%s\n' "$pid"
}

running_port() {
  if [[ -f "$PORT_FILE" ]]; then cat "$PORT_FILE"; else printf '%s\n' "$S3PROXY_PORT"; fi
}

# The client settings for the server on port $1.
write_env_file() {
  cat >"$ENV_FILE.tmp" <<EOF
# Written by scripts/s3proxy-local.sh: the settings of the s3proxy in $S3PROXY_DIR.
# Source it; then output s3://$S3PROXY_BUCKET/... reaches that server.
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=$REGION
export FACTORYPAL__STORAGE__ENDPOINT=http://$HOST:$1
export FACTORYPAL__STORAGE__REGION=$REGION
export FACTORYPAL__STORAGE__ALLOW_HTTP=true
export FACTORYPAL_TEST_S3_BUCKET=$S3PROXY_BUCKET
EOF
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

write_conf() {
  cat >"$CONF" <<EOF
# Generated by scripts/s3proxy-local.sh; rewritten on every start.
s3proxy.endpoint=http://$HOST:$S3PROXY_PORT
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$ACCESS_KEY
s3proxy.credential=$SECRET_KEY
jclouds.provider=filesystem
jclouds.filesystem.basedir=$DATA_DIR
EOF
}

# Run the independent client with the settings of s3.env.
client() {
  (
    # shellcheck disable=SC1090
    source "$ENV_FILE"
    python3 "$CLIENT" "$@"
  )
}

kill_and_wait() {
  local pid="$1" waited=0
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null; do
    if ((waited >= 100)); then
      log "pid $pid still alive after 10 s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

# Launch in the background; sets SERVER_PID.
launch() {
  # shellcheck disable=SC2206  # heap options are a word list on purpose
  local heap=($S3PROXY_HEAP_OPTS)
  printf '\n=== start %s ===\n' "$(date -Is)" >>"$OUT_FILE"
  # setsid: own session, so the caller's Ctrl-C or hangup does not reach it. The inner shell
  # writes its own PID and then execs java, so the pid file holds the JVM's PID. No fd of ours
  # (stdout pipe, lock) is inherited.
  # shellcheck disable=SC2016  # $$ and $@ are for the inner shell
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' s3proxy-local "$PID_FILE" \
    "$JAVA" "${heap[@]}" -XX:+UseSerialGC -Djava.awt.headless=true \
    -jar "$(jar_path)" --properties "$CONF" </dev/null >>"$OUT_FILE" 2>&1 9>&- &
  local waited=0
  while [[ ! -s "$PID_FILE" ]]; do
    ((waited < 100)) || die "s3proxy did not write $PID_FILE"
    sleep 0.05
    waited=$((waited + 1))
  done
  SERVER_PID="$(<"$PID_FILE")"
}

# Ready = an authenticated ListBuckets answers 200.
wait_ready() {
  local start_s=$SECONDS
  until client ready; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      tail -n 30 "$OUT_FILE" >&2 || true
      rm -f "$PID_FILE"
      die "s3proxy exited during startup (log: $OUT_FILE)"
    fi
    if ((SECONDS - start_s >= S3PROXY_START_TIMEOUT)); then
      tail -n 30 "$OUT_FILE" >&2 || true
      kill_and_wait "$SERVER_PID"
      rm -f "$PID_FILE"
      die "not ready after $S3PROXY_START_TIMEOUT s; killed it (log: $OUT_FILE)"
    fi
    sleep 0.1
  done
  READY_AFTER=$((SECONDS - start_s))
}

cmd_start() {
  local clean=0
  if [[ "${1:-}" == "--clean" ]]; then
    clean=1
  elif [[ -n "${1:-}" ]]; then
    die "unknown option for start: $1"
  fi
  init_state_paths
  lock_state_dir
  local pid
  if pid="$(running_pid)"; then
    log "already running (pid $pid) on http://$HOST:$(running_port), state in $S3PROXY_DIR"
    [[ "$clean" == 0 ]] || log "warning: --clean ignored: the server is running"
    printf '%s\n' "$ENV_FILE"
    return 0
  fi
  rm -f "$PID_FILE"
  [[ "$clean" == 0 ]] || rm -rf "$DATA_DIR"
  port_is_free "$S3PROXY_PORT" || die "port $S3PROXY_PORT on $HOST (S3PROXY_PORT) is already in use"
  command -v python3 >/dev/null || die "python3 is needed (the readiness check and bucket creation)"
  resolve_jar
  mkdir -p "$DATA_DIR"
  write_conf
  write_env_file "$S3PROXY_PORT"
  printf '%s\n' "$S3PROXY_PORT" >"$PORT_FILE"
  log "starting s3proxy $S3PROXY_VERSION on http://$HOST:$S3PROXY_PORT, objects in $DATA_DIR"
  launch
  wait_ready
  client create-bucket "$S3PROXY_BUCKET" || { kill_and_wait "$SERVER_PID"; rm -f "$PID_FILE"; die "could not create bucket $S3PROXY_BUCKET"; }
  log "ready after $READY_AFTER s (pid $SERVER_PID), bucket $S3PROXY_BUCKET; log: $OUT_FILE"
  printf '%s\n' "$ENV_FILE"
}

cmd_stop() {
  local clean="${S3PROXY_CLEAN:-0}"
  if [[ "${1:-}" == "--clean" ]]; then
    clean=1
  elif [[ -n "${1:-}" ]]; then
    die "unknown option for stop: $1"
  fi
  if [[ ! -d "${S3PROXY_DIR:-$REPO_ROOT/target/s3proxy-local}" ]]; then
    log "not running (no ${S3PROXY_DIR:-$REPO_ROOT/target/s3proxy-local})"
    return 0
  fi
  init_state_paths
  lock_state_dir
  local pid
  if pid="$(running_pid)"; then
    log "stopping pid $pid ($S3PROXY_DIR)"
    kill_and_wait "$pid"
    log "stopped"
  else
    log "not running ($S3PROXY_DIR)"
  fi
  rm -f "$PID_FILE"
  if [[ "$clean" == 1 && -f "$S3PROXY_DIR/.s3proxy-local" && "$S3PROXY_DIR" != "/" ]]; then
    log "removing $S3PROXY_DIR"
    exec 9>&-
    rm -rf "$S3PROXY_DIR"
  fi
}

cmd_status() {
  # Do not create S3PROXY_DIR just to say nothing runs there.
  if [[ ! -d "${S3PROXY_DIR:-$REPO_ROOT/target/s3proxy-local}" ]]; then
    echo "not running (port $S3PROXY_PORT)"
    return 3
  fi
  init_state_paths
  local pid port
  if pid="$(running_pid)"; then
    port="$(running_port)"
    if client ready; then
      echo "running (pid $pid) on http://$HOST:$port, settings in $ENV_FILE"
    else
      echo "running (pid $pid) on http://$HOST:$port, not answering yet"
    fi
    return 0
  fi
  echo "not running (port $S3PROXY_PORT)"
  return 3
}

cmd_selftest() {
  init_state_paths
  running_pid >/dev/null || die "not running ($S3PROXY_DIR): start it first"
  # shellcheck disable=SC1090
  FACTORYPAL_TEST_S3_BUCKET="$(source "$ENV_FILE" && printf '%s' "$FACTORYPAL_TEST_S3_BUCKET")"
  client selftest "$FACTORYPAL_TEST_S3_BUCKET"
}

usage() {
  # The header from "usage:" to the blank line before "Files in S3PROXY_DIR".
  sed -n '/^# usage:/,/^# Files in S3PROXY_DIR/p' "${BASH_SOURCE[0]}" | sed '$d' \
    | sed 's/^# \{0,1\}//' >&2
  exit 2
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  status) shift; cmd_status "$@" ;;
  selftest) shift; cmd_selftest "$@" ;;
  *) usage ;;
esac
