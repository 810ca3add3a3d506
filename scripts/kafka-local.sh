#!/usr/bin/env bash
# Run a real single-node Apache Kafka broker (KRaft combined mode) locally,
# without Docker: the jars come from Maven Central via scripts/kafka/pom.xml.
#
# usage: scripts/kafka-local.sh start | stop [--clean] | status | tools-classpath
#
#   start            format storage once, start the broker in the background,
#                    return when it answers a Metadata request; the last line
#                    on stdout is the bootstrap address (127.0.0.1:PORT)
#   stop [--clean]   stop this KAFKA_DIR's broker; --clean (or KAFKA_CLEAN=1)
#                    also deletes KAFKA_DIR
#   status           exit 0 if running, 3 if not
#   tools-classpath  print a classpath with org.apache.kafka:kafka-tools
#                    (e.g. org.apache.kafka.tools.ProducerPerformance)
#
# Environment (all optional):
#   KAFKA_VERSION          Kafka release from Maven Central (default below)
#   KAFKA_PORT             client port on 127.0.0.1 (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller port (default: a free port)
#   KAFKA_DIR              state: config, data, logs, pid (default target/kafka-local)
#   KAFKA_JARS_DIR         broker jar cache (default target/kafka-jars/<version>)
#   KAFKA_TOOLS_JARS_DIR   tools jar cache (default target/kafka-tools-jars/<version>)
#   KAFKA_HEAP_OPTS        default "-Xms256m -Xmx768m"
#   KAFKA_OPTS             extra JVM options
#   KAFKA_START_TIMEOUT    seconds to wait for readiness (default 120)
#   JAVA_HOME / MVN        java and maven to use
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
SUPPORT_DIR="$SCRIPT_DIR/kafka"

# 4.3.1: newest 4.x for which both kafka_2.13 and kafka-tools are on Maven
# Central (kafka_2.13 4.4.0 exists but kafka-tools 4.4.0 does not).
KAFKA_VERSION="${KAFKA_VERSION:-4.3.1}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
KAFKA_OPTS="${KAFKA_OPTS:-}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}"
KAFKA_JARS_DIR="${KAFKA_JARS_DIR:-$REPO_ROOT/target/kafka-jars/$KAFKA_VERSION}"
KAFKA_TOOLS_JARS_DIR="${KAFKA_TOOLS_JARS_DIR:-$REPO_ROOT/target/kafka-tools-jars/$KAFKA_VERSION}"
MVN="${MVN:-mvn}"
if [[ -n "${JAVA_HOME:-}" ]]; then
  JAVA="$JAVA_HOME/bin/java"
else
  JAVA="java"
fi
HOST=127.0.0.1

log() { printf 'kafka-local: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# KAFKA_DIR must be absolute: it is written into the broker's command line,
# which `stop` checks before killing anything.
init_state_paths() {
  local dir="${KAFKA_DIR:-$REPO_ROOT/target/kafka-local}"
  mkdir -p "$dir"
  KAFKA_DIR="$(cd "$dir" && pwd)"
  PROPS="$KAFKA_DIR/server.properties"
  DATA_DIR="$KAFKA_DIR/data"
  LOGS_DIR="$KAFKA_DIR/logs"
  PID_FILE="$KAFKA_DIR/kafka.pid"
  PORT_FILE="$KAFKA_DIR/kafka.port"
  OUT_FILE="$KAFKA_DIR/kafka.out"
  # Marks the directory as ours, so `stop --clean` never deletes anything else.
  touch "$KAFKA_DIR/.kafka-local"
}

# Serialise start/stop on one KAFKA_DIR (fd 9; the broker must not inherit it).
lock_state_dir() {
  exec 9>"$KAFKA_DIR/.lock"
  flock -w 180 9 || die "timed out waiting for the lock on $KAFKA_DIR"
}

# Resolve the runtime jars of a pom into a cache dir, once. A marker written
# after a complete copy means later calls never run Maven (no network).
resolve_jars() {
  local pom="$1" dest="$2" marker="$2/.complete"
  if [[ -f "$marker" ]]; then
    return 0
  fi
  mkdir -p "$(dirname "$dest")"
  # Lock in the parent dir: parallel first starts share one download.
  exec 8>"$dest.lock"
  flock -w 600 8 || die "timed out waiting for $dest.lock"
  if [[ ! -f "$marker" ]]; then
    command -v "$MVN" >/dev/null || die "maven ($MVN) not found"
    log "resolving $(basename "$pom") (Kafka $KAFKA_VERSION) from Maven Central into $dest"
    local tmp="$dest.tmp.$$"
    rm -rf "$tmp"
    # mvn -q prints its errors on stdout (and Debian's 3.8 stray colour
    # codes even with -B): keep them out of our stdout, show them on failure.
    if ! "$MVN" -q -B -Dstyle.color=never -f "$pom" -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$tmp" >"$tmp.log" 2>&1; then
      cat "$tmp.log" >&2
      rm -rf "$tmp" "$tmp.log"
      die "maven could not resolve $pom for Kafka $KAFKA_VERSION"
    fi
    rm -f "$tmp.log"
    rm -rf "$dest"
    mv "$tmp" "$dest"
    printf '%s\n' "$KAFKA_VERSION" >"$marker"
  fi
  exec 8>&-
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

port_is_free() {
  # SO_REUSEADDR as the broker sets it: connections of a killed broker linger in TIME_WAIT
  # on its port, which must not count as "in use" for a restart.
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

# Print the PID of this KAFKA_DIR's running broker, or fail. Checks the
# command line so a stale pid file never gets an unrelated process killed.
running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid cmdline
  pid="$(<"$PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *"kafka.Kafka $PROPS"* ]] || return 1
  printf '%s\n' "$pid"
}

running_port() {
  if [[ -f "$PORT_FILE" ]]; then cat "$PORT_FILE"; else printf '%s\n' "$KAFKA_PORT"; fi
}

probe() {
  python3 "$SUPPORT_DIR/kafka_probe.py" "$HOST" "$1" "${2:-2}" >/dev/null 2>&1
}

write_config() {
  local controller_port="$1"
  # Regenerated on every start: ports may change between runs. The static
  # quorum (controller.quorum.voters) keeps no endpoint in the metadata log,
  # so a different controller port on restart is fine.
  cat >"$PROPS" <<EOF
# Generated by scripts/kafka-local.sh; rewritten on every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$controller_port
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$controller_port
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA_DIR
auto.create.topics.enable=false
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Single voter: a restarted node waits one election timeout (default 1 s,
# randomised up to 2 s) before electing itself; nobody else can compete.
controller.quorum.election.timeout.ms=200
EOF
}

java_cmd() {
  # shellcheck disable=SC2206  # heap/extra options are word lists on purpose
  local heap=($KAFKA_HEAP_OPTS) extra=($KAFKA_OPTS)
  JAVA_CMD=("$JAVA" "${heap[@]}"
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$SUPPORT_DIR/log4j2.properties"
    "-Dkafka.logs.dir=$LOGS_DIR"
    "${extra[@]}"
    -cp "$KAFKA_JARS_DIR/*")
}

format_storage() {
  if [[ -f "$DATA_DIR/meta.properties" ]]; then
    return 0
  fi
  local cluster_id
  log "formatting storage in $DATA_DIR"
  cluster_id="$("${JAVA_CMD[@]}" kafka.tools.StorageTool random-uuid 2>>"$OUT_FILE" | tail -n 1)"
  [[ -n "$cluster_id" ]] || die "StorageTool random-uuid printed nothing (see $OUT_FILE)"
  "${JAVA_CMD[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$PROPS" >>"$OUT_FILE" 2>&1 \
    || { tail -n 20 "$OUT_FILE" >&2; die "storage format failed"; }
}

show_logs() {
  log "--- tail of $LOGS_DIR/server.log ---"
  tail -n 40 "$LOGS_DIR/server.log" >&2 2>/dev/null || true
  log "--- tail of $OUT_FILE ---"
  tail -n 20 "$OUT_FILE" >&2 2>/dev/null || true
}

kill_and_wait() {
  local pid="$1" waited=0
  kill -TERM "$pid" 2>/dev/null || return 0
  # Clean shutdown of a combined broker/controller takes a few seconds.
  while kill -0 "$pid" 2>/dev/null; do
    if ((waited >= 300)); then
      log "pid $pid still alive after 30 s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  # After SIGKILL the process is gone once the kernel reaps it.
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

cmd_start() {
  init_state_paths
  lock_state_dir
  local pid
  if pid="$(running_pid)"; then
    local port
    port="$(running_port)"
    log "already running (pid $pid) on $HOST:$port, state in $KAFKA_DIR"
    [[ "$port" == "$KAFKA_PORT" ]] || log "warning: KAFKA_PORT=$KAFKA_PORT but the running broker uses $port"
    printf '%s:%s\n' "$HOST" "$port"
    return 0
  fi
  rm -f "$PID_FILE"

  command -v python3 >/dev/null || die "python3 is needed (free port, readiness probe)"
  [[ "$KAFKA_PORT" =~ ^[0-9]+$ && "$KAFKA_PORT" -gt 0 ]] || die "KAFKA_PORT must be a port number > 0"
  # Fail now rather than after a 120 s wait on a broker that cannot bind.
  port_is_free "$KAFKA_PORT" || die "port $KAFKA_PORT on $HOST is already in use"

  local controller_port="${KAFKA_CONTROLLER_PORT:-}"
  if [[ -z "$controller_port" ]]; then
    controller_port="$(free_port)"
    # Never the client port (possible if the caller has not bound it yet).
    while [[ "$controller_port" == "$KAFKA_PORT" ]]; do controller_port="$(free_port)"; done
  fi

  resolve_jars "$SUPPORT_DIR/pom.xml" "$KAFKA_JARS_DIR"
  mkdir -p "$DATA_DIR" "$LOGS_DIR"
  write_config "$controller_port"
  java_cmd
  format_storage

  log "starting Kafka $KAFKA_VERSION on $HOST:$KAFKA_PORT (controller $controller_port), state in $KAFKA_DIR"
  printf '%s\n' "$KAFKA_PORT" >"$PORT_FILE"
  printf '\n=== start %s ===\n' "$(date -Is)" >>"$OUT_FILE"
  # setsid: own session, so the caller's Ctrl-C or hangup does not reach it.
  # The inner shell writes its own PID and then execs java, so the pid file
  # holds the JVM's PID. No fd of ours (stdout pipe, lock) is inherited.
  # shellcheck disable=SC2016  # $$ and $@ are for the inner shell
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' kafka-local "$PID_FILE" \
    "${JAVA_CMD[@]}" kafka.Kafka "$PROPS" </dev/null >>"$OUT_FILE" 2>&1 9>&- &
  local waited=0
  while [[ ! -s "$PID_FILE" ]]; do
    ((waited < 100)) || die "broker process did not write $PID_FILE"
    sleep 0.05
    waited=$((waited + 1))
  done
  pid="$(<"$PID_FILE")"

  # Ready = a Metadata request lists this broker (registered and unfenced).
  local start_s=$SECONDS
  until probe "$KAFKA_PORT" 2; do
    if ! kill -0 "$pid" 2>/dev/null; then
      show_logs
      rm -f "$PID_FILE"
      die "broker exited during startup"
    fi
    if ((SECONDS - start_s >= KAFKA_START_TIMEOUT)); then
      show_logs
      kill_and_wait "$pid"
      rm -f "$PID_FILE"
      die "broker not ready after ${KAFKA_START_TIMEOUT} s; killed pid $pid"
    fi
    sleep 0.25
  done
  log "ready after $((SECONDS - start_s)) s (pid $pid); log: $LOGS_DIR/server.log"
  printf '%s:%s\n' "$HOST" "$KAFKA_PORT"
}

cmd_stop() {
  local clean="${KAFKA_CLEAN:-0}"
  if [[ "${1:-}" == "--clean" ]]; then
    clean=1
  elif [[ -n "${1:-}" ]]; then
    die "unknown option for stop: $1"
  fi
  init_state_paths
  lock_state_dir
  local pid
  if pid="$(running_pid)"; then
    log "stopping broker pid $pid ($KAFKA_DIR)"
    kill_and_wait "$pid"
    log "stopped"
  else
    log "not running ($KAFKA_DIR)"
  fi
  rm -f "$PID_FILE"
  if [[ "$clean" == 1 ]]; then
    # Only a directory this script created (marker file) is ever deleted.
    if [[ -f "$KAFKA_DIR/.kafka-local" && "$KAFKA_DIR" != "/" ]]; then
      log "removing $KAFKA_DIR"
      exec 9>&-
      rm -rf "$KAFKA_DIR"
    fi
  fi
}

cmd_status() {
  # Do not create KAFKA_DIR just to say nothing runs there.
  if [[ ! -d "${KAFKA_DIR:-$REPO_ROOT/target/kafka-local}" ]]; then
    echo "not running (port $KAFKA_PORT)"
    return 3
  fi
  init_state_paths
  local pid port
  if pid="$(running_pid)"; then
    port="$(running_port)"
    if probe "$port" 2; then
      echo "running (pid $pid) on $HOST:$port"
    else
      echo "running (pid $pid) on $HOST:$port, not answering yet"
    fi
    return 0
  fi
  echo "not running (port $KAFKA_PORT)"
  return 3
}

cmd_tools_classpath() {
  resolve_jars "$SUPPORT_DIR/tools-pom.xml" "$KAFKA_TOOLS_JARS_DIR"
  # Explicit jar list rather than "dir/*": works for any caller, no globbing
  # rules to get right. tools-log/ first: its log4j2.properties keeps the
  # tools quiet (warnings on stderr).
  local cp="$SUPPORT_DIR/tools-log" jar
  for jar in "$KAFKA_TOOLS_JARS_DIR"/*.jar; do
    cp+=":$jar"
  done
  printf '%s\n' "$cp"
}

usage() {
  sed -n '5,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  status) shift; cmd_status "$@" ;;
  tools-classpath) shift; cmd_tools_classpath "$@" ;;
  *) usage ;;
esac
