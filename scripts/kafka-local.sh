#!/usr/bin/env bash
# Run a real Apache Kafka locally (KRaft, combined broker+controller nodes),
# without Docker: the jars come from Maven Central via scripts/kafka/pom.xml.
# By default one plaintext broker; optionally a cluster and secured listeners.
#
# usage: scripts/kafka-local.sh COMMAND
#
#   start [--brokers N] [--security PROTOCOL]
#                    format storage once, start every node in the background,
#                    return when each answers a Metadata request listing all
#                    N brokers; the last line on stdout is the bootstrap list
#                    of the client listener (127.0.0.1:P1,127.0.0.1:P2,...).
#                    --brokers N (1-9, default 1): N nodes with node.id 1..N
#                    in KAFKA_DIR/node-N/, a static quorum of N voters.
#                    --security ssl|sasl_plaintext|sasl_ssl: each node also
#                    opens SSL (mutual TLS), SASL_PLAINTEXT and SASL_SSL
#                    listeners (user factorypal, PLAIN/SCRAM-SHA-256/-512),
#                    with a throw-away CA in KAFKA_DIR/tls/; the client
#                    listener is the one named. Both are remembered in
#                    KAFKA_DIR (cluster.env) with the ports: later commands
#                    need not repeat them.
#   stop [--clean]   stop every node of this KAFKA_DIR; --clean (or
#                    KAFKA_CLEAN=1) also deletes KAFKA_DIR
#   status           one line per node; exit 0 if all run, 3 if none, 4 if some
#   kill NODE        SIGKILL node NODE (1..N, the node.id leaders are shown by)
#   restart NODE     start node NODE again on the same state, ports and config;
#                    return when it is registered again (last line: bootstrap)
#   tools-classpath  print a classpath with org.apache.kafka:kafka-tools
#                    (e.g. org.apache.kafka.tools.ProducerPerformance)
#
# Files in KAFKA_DIR besides each node's state (only with --brokers > 1 or
# --security; the default single broker writes none of them):
#   cluster.env      BROKERS=, SECURITY=, NODE<n>_<LISTENER>=<port> lines
#   listeners.env    <LISTENER>=<bootstrap list> per listener (PLAINTEXT, and
#                    with --security also SSL, SASL_PLAINTEXT, SASL_SSL)
#   client.properties, client-<protocol>.properties
#                    librdkafka settings (kcat -F FILE -L) for the client
#                    listener and for each listener
#   factorypal.toml, factorypal-<protocol>.toml
#                    a [kafka] section for factorypal, same choice
#   sasl-password    factorypal's password (no trailing newline), mode 600
#   tls/             ca.pem, client.pem, client.key (PKCS#8 PEM), the CA's
#                    and the brokers' keys and keystore
#
# Environment (all optional):
#   KAFKA_VERSION          Kafka release from Maven Central (default below)
#   KAFKA_PORT             client port on 127.0.0.1 (default 9092 for the
#                          default single plaintext broker, else a free port);
#                          for a cluster, node 1's port of the client listener
#   KAFKA_CONTROLLER_PORT  KRaft controller port of the default single broker
#                          (default: a free port)
#   KAFKA_DIR              state: config, data, logs, pid (default target/kafka-local)
#   KAFKA_JARS_DIR         broker jar cache (default target/kafka-jars/<version>)
#   KAFKA_TOOLS_JARS_DIR   tools jar cache (default target/kafka-tools-jars/<version>)
#   KAFKA_HEAP_OPTS        default "-Xms256m -Xmx768m" (one broker) or
#                          "-Xms128m -Xmx512m" (each node of a cluster)
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
KAFKA_PORT_SET="${KAFKA_PORT:+1}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_HEAP_OPTS_SET="${KAFKA_HEAP_OPTS:+1}"
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
# The SASL user every secured layout creates (SCRAM credentials and PLAIN).
SASL_USER=factorypal
SECURED_LISTENERS=(PLAINTEXT SSL SASL_PLAINTEXT SASL_SSL)

log() { printf 'kafka-local: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# KAFKA_DIR must be absolute: it is written into the broker's command line,
# which `stop` checks before killing anything.
init_state_paths() {
  local dir="${KAFKA_DIR:-$REPO_ROOT/target/kafka-local}"
  mkdir -p "$dir"
  KAFKA_DIR="$(cd "$dir" && pwd)"
  CLUSTER_FILE="$KAFKA_DIR/cluster.env"
  TLS_DIR="$KAFKA_DIR/tls"
  PASSWORD_FILE="$KAFKA_DIR/sasl-password"
  # Marks the directory as ours, so `stop --clean` never deletes anything else.
  touch "$KAFKA_DIR/.kafka-local"
}

# Set the paths of node $1. The single broker keeps the original layout
# (everything directly in KAFKA_DIR); cluster nodes live in KAFKA_DIR/node-N.
node_paths() {
  if ((BROKERS == 1)); then
    NODE_DIR="$KAFKA_DIR"
  else
    NODE_DIR="$KAFKA_DIR/node-$1"
  fi
  PROPS="$NODE_DIR/server.properties"
  DATA_DIR="$NODE_DIR/data"
  LOGS_DIR="$NODE_DIR/logs"
  PID_FILE="$NODE_DIR/kafka.pid"
  PORT_FILE="$NODE_DIR/kafka.port"
  OUT_FILE="$NODE_DIR/kafka.out"
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

# Print $1 distinct free ports, none equal to $2. All sockets stay bound
# until all are chosen, so the kernel cannot hand out one port twice.
free_ports() {
  python3 - "$1" "$2" <<'PY'
import socket, sys
count, avoid = int(sys.argv[1]), int(sys.argv[2])
socks, ports = [], []
while len(ports) < count:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
    port = s.getsockname()[1]
    if port != avoid:
        ports.append(port)
print(" ".join(map(str, ports)))
for s in socks:
    s.close()
PY
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

# Print the PID of the running node whose paths node_paths set, or fail.
# Checks the command line so a stale pid file never gets an unrelated
# process killed.
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

# probe PORT [BROKERS]: the broker on PORT is registered, unfenced, and its
# metadata lists at least BROKERS brokers (default 1).
probe() {
  python3 "$SUPPORT_DIR/kafka_probe.py" "$HOST" "$1" 2 --brokers "${2:-1}" >/dev/null 2>&1
}

# --- Layout: how many nodes, which listeners, which ports ------------------
#
# LEGACY=1 is the default single plaintext broker, exactly as this script
# always ran it: nothing remembered but kafka.port, a fresh controller port
# on every start. Every other layout is fixed on its first start in
# cluster.env, so restarts reuse the same ports (a static quorum names its
# voters' controller endpoints).
declare -A PORTS=()
BROKERS=1
SECURITY=plaintext
LEGACY=1

listeners() {
  if [[ "$SECURITY" == plaintext ]]; then
    LISTENERS=(PLAINTEXT)
  else
    LISTENERS=("${SECURED_LISTENERS[@]}")
  fi
}

client_listener() {
  printf '%s\n' "${SECURITY^^}"
}

# Read cluster.env into BROKERS, SECURITY and PORTS; fail if there is none.
load_layout() {
  [[ -f "$CLUSTER_FILE" ]] || return 1
  local key value n listener
  while IFS='=' read -r key value; do
    case "$key" in
      '' | '#'*) ;;
      BROKERS) BROKERS="$value" ;;
      SECURITY) SECURITY="$value" ;;
      NODE*_*)
        n="${key%%_*}"
        n="${n#NODE}"
        listener="${key#*_}"
        [[ "$n" =~ ^[1-9]$ && "$value" =~ ^[0-9]+$ ]] || die "$CLUSTER_FILE: bad line $key=$value"
        PORTS["$n:$listener"]="$value"
        ;;
      *) die "$CLUSTER_FILE: unknown key $key (written by another version of this script?)" ;;
    esac
  done <"$CLUSTER_FILE"
  [[ "$BROKERS" =~ ^[1-9]$ ]] || die "$CLUSTER_FILE: BROKERS must be 1-9, not $BROKERS"
  case "$SECURITY" in
    plaintext | ssl | sasl_plaintext | sasl_ssl) ;;
    *) die "$CLUSTER_FILE: unknown SECURITY $SECURITY" ;;
  esac
  LEGACY=0
  listeners
  local l
  for ((n = 1; n <= BROKERS; n++)); do
    for l in CONTROLLER "${LISTENERS[@]}"; do
      [[ -n "${PORTS[$n:$l]:-}" ]] || die "$CLUSTER_FILE: no NODE${n}_$l port"
    done
  done
}

# The layout of an existing KAFKA_DIR: cluster.env, else the default broker.
load_layout_or_legacy() {
  if ! load_layout; then
    BROKERS=1
    SECURITY=plaintext
    LEGACY=1
    listeners
    PORTS["1:PLAINTEXT"]="$(running_port_legacy)"
  fi
}

running_port_legacy() {
  local PORT_FILE="$KAFKA_DIR/kafka.port"
  running_port
}

# Choose the ports of a new layout and write cluster.env.
new_layout() {
  listeners
  local per_node=$((1 + ${#LISTENERS[@]})) client n l i=0 ports
  client="$(client_listener)"
  read -r -a ports <<<"$(free_ports $((BROKERS * per_node)) "$KAFKA_PORT")"
  for ((n = 1; n <= BROKERS; n++)); do
    for l in CONTROLLER "${LISTENERS[@]}"; do
      if [[ "$n" == 1 && "$l" == "$client" && -n "$KAFKA_PORT_SET" ]]; then
        PORTS["$n:$l"]="$KAFKA_PORT"
      else
        PORTS["$n:$l"]="${ports[i]}"
      fi
      i=$((i + 1))
    done
  done
  {
    printf '# Written by scripts/kafka-local.sh on the first start; restart, stop and status read it.\n'
    printf 'BROKERS=%s\nSECURITY=%s\n' "$BROKERS" "$SECURITY"
    for ((n = 1; n <= BROKERS; n++)); do
      for l in CONTROLLER "${LISTENERS[@]}"; do
        printf 'NODE%s_%s=%s\n' "$n" "$l" "${PORTS[$n:$l]}"
      done
    done
  } >"$CLUSTER_FILE.tmp"
  mv "$CLUSTER_FILE.tmp" "$CLUSTER_FILE"
  LEGACY=0
}

# bootstrap LISTENER: 127.0.0.1:P1,127.0.0.1:P2,... over all nodes.
bootstrap() {
  local n out=""
  for ((n = 1; n <= BROKERS; n++)); do
    out+="${out:+,}$HOST:${PORTS[$n:$1]}"
  done
  printf '%s\n' "$out"
}

# --- Secrets: CA and certificates, SASL password ----------------------------

# A throw-away CA, a broker certificate for localhost/127.0.0.1 and a client
# certificate for mutual TLS, once per KAFKA_DIR (tls/.complete marks a
# complete set). RSA 2048 and SHA-256: what every TLS stack accepts.
make_tls() {
  [[ -f "$TLS_DIR/.complete" ]] && return 0
  command -v openssl >/dev/null || die "openssl is needed for --security (the test CA and certificates): apt-get install openssl"
  local tmp="$TLS_DIR.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  log "making a throw-away CA and certificates in $TLS_DIR"
  if ! (umask 077 && cd "$tmp" && make_tls_files) >"$tmp.log" 2>&1; then
    cat "$tmp.log" >&2
    rm -rf "$tmp" "$tmp.log"
    die "could not make the test certificates with openssl"
  fi
  rm -f "$tmp.log"
  rm -rf "$TLS_DIR"
  mv "$tmp" "$TLS_DIR"
  chmod 700 "$TLS_DIR"
  touch "$TLS_DIR/.complete"
}

# Runs in the (new) tls directory; see make_tls.
make_tls_files() {
  set -e
  cat >openssl.cnf <<'EOF'
# Extensions for the test certificates of scripts/kafka-local.sh.
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[broker_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
  local name
  for name in ca broker client; do
    # genpkey writes PKCS#8 ("BEGIN PRIVATE KEY"), unencrypted.
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$name.key"
  done
  openssl req -x509 -new -config openssl.cnf -extensions ca_ext -key ca.key -sha256 \
    -days 3650 -subj "/CN=factorypal test CA (kafka-local.sh)" -out ca.pem
  openssl req -new -config openssl.cnf -key broker.key -subj "/CN=localhost" -out broker.csr
  openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
    -days 3650 -sha256 -extfile openssl.cnf -extensions broker_ext -out broker.pem
  openssl req -new -config openssl.cnf -key client.key -subj "/CN=$SASL_USER" -out client.csr
  openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
    -days 3650 -sha256 -extfile openssl.cnf -extensions client_ext -out client.pem
  # The brokers' keystore: PKCS#12 (a file-based PEM keystore would need an
  # encrypted key). Its password is no secret: it sits next to it.
  openssl rand -hex 16 | tr -d '\n' >keystore-password
  openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker \
    -passout "file:keystore-password" -out broker.p12
  rm -f broker.csr client.csr
}

# factorypal's SASL password, random, once per KAFKA_DIR; no trailing newline.
make_password() {
  [[ -s "$PASSWORD_FILE" ]] && return 0
  (umask 077 && python3 -c 'import secrets, sys; sys.stdout.write(secrets.token_hex(24))' \
    >"$PASSWORD_FILE.tmp")
  mv "$PASSWORD_FILE.tmp" "$PASSWORD_FILE"
}

# --- Broker configuration -----------------------------------------------------

write_config() {
  local n="$1"
  if ((LEGACY)); then
    write_legacy_config "${PORTS[1:CONTROLLER]}"
    return 0
  fi
  local rf=$((BROKERS < 3 ? BROKERS : 3)) voters="" i l listen="" advertise="" map="CONTROLLER:PLAINTEXT"
  local min_isr=$((rf >= 3 ? 2 : 1))
  for ((i = 1; i <= BROKERS; i++)); do
    voters+="${voters:+,}$i@$HOST:${PORTS[$i:CONTROLLER]}"
  done
  for l in "${LISTENERS[@]}"; do
    listen+="$l://$HOST:${PORTS[$n:$l]},"
    advertise+="${advertise:+,}$l://$HOST:${PORTS[$n:$l]}"
    map+=",$l:$l"
  done
  listen+="CONTROLLER://$HOST:${PORTS[$n:CONTROLLER]}"
  # Holds the SASL password in the JAAS lines: owner only.
  (umask 077 && {
    cat <<EOF
# Generated by scripts/kafka-local.sh; rewritten on every start.
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=$listen
advertised.listeners=$advertise
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$map
log.dirs=$DATA_DIR
auto.create.topics.enable=false
num.partitions=3
default.replication.factor=$rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
EOF
    if ((BROKERS == 1)); then
      cat <<'EOF'
# Single voter: a restarted node waits one election timeout (default 1 s,
# randomised up to 2 s) before electing itself; nobody else can compete.
controller.quorum.election.timeout.ms=200
EOF
    else
      failover_config
    fi
    [[ "$SECURITY" == plaintext ]] || security_config
  } >"$PROPS")
}

# The default single broker's configuration, unchanged from the first
# version of this script.
write_legacy_config() {
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

# Timeouts of a multi-node cluster, shortened so that tests which kill a node
# see the cluster react within seconds, yet long enough that a loaded 2-core
# machine (GC pauses, busy CPUs) does not trigger failovers by itself.
failover_config() {
  cat <<'EOF'
# --- Quick failover for tests (defaults in parentheses) ---
# Controller quorum: a voter that has heard nothing from the active controller
# for this long starts an election (2000 ms); killing the node that holds the
# active controller costs about this much before a new one is elected.
controller.quorum.fetch.timeout.ms=1000
# A candidate waits 1-2x this (randomised) before a new election round (1000 ms).
controller.quorum.election.timeout.ms=500
# Upper bound of the backoff after a lost election (1000 ms).
controller.quorum.election.backoff.max.ms=500
# Brokers heartbeat the active controller every 500 ms (2000 ms); one silent
# for 3 s (9000 ms) is fenced: its partitions get new leaders and it leaves
# their ISR, so produce with acks=all goes on with the other two replicas.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
# A live follower that has not caught up for 10 s leaves the ISR (30000 ms).
# A killed node leaves at once when it is fenced, whatever this says.
replica.lag.time.max.ms=10000
# Leadership goes back to the preferred (first-listed) replicas when more than
# 10% (10) of a broker's partitions are led elsewhere, checked every 10 s
# (300 s): a restarted node gets its share of leaders back soon, so leaders
# stay spread out for the next test. Tests must not assume a leader stays put
# after a restart.
auto.leader.rebalance.enable=true
leader.imbalance.check.interval.seconds=10
leader.imbalance.per.broker.percentage=10
EOF
}

security_config() {
  local password l
  password="$(<"$PASSWORD_FILE")"
  cat <<EOF
# --- TLS: the broker certificate (SAN DNS:localhost, IP:127.0.0.1) signed by
# the throw-away CA in $TLS_DIR ---
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS_DIR/broker.p12
ssl.keystore.password=$(<"$TLS_DIR/keystore-password")
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.pem
# Mutual TLS on the SSL listener: a client must show a certificate of the CA
# (tls/client.pem); SASL_SSL authenticates with SASL instead.
listener.name.ssl.ssl.client.auth=required
# --- SASL: user $SASL_USER with PLAIN (password below) and SCRAM (credentials
# written into the metadata at format time) ---
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
EOF
  for l in sasl_plaintext sasl_ssl; do
    cat <<EOF
listener.name.$l.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.$l.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER="$password";
listener.name.$l.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.$l.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
  done
}

# --- Client files -------------------------------------------------------------

# A TOML basic string: backslash and double quote escaped.
toml_string() {
  local s="${1//\\/\\\\}"
  s="${s//\"/\\\"}"
  printf '"%s"' "$s"
}

# client_properties PROTOCOL: librdkafka settings for that listener.
client_properties() {
  local protocol="$1"
  printf '# librdkafka settings for the %s listener of %s (kcat -F this-file -L).\n' \
    "${protocol^^}" "$KAFKA_DIR"
  printf 'bootstrap.servers=%s\n' "$(bootstrap "${protocol^^}")"
  printf 'security.protocol=%s\n' "$protocol"
  case "$protocol" in
    sasl_plaintext | sasl_ssl)
      # PLAIN, so the kcat of this machine connects as it is: librdkafka before 2.6.1
      # (Debian 12's kcat has 2.0.2) fails SCRAM against Kafka 4.
      printf '# PLAIN: librdkafka before 2.6.1 (Debian 12 kcat: 2.0.2) fails SCRAM against Kafka 4.\n'
      printf '# The listener takes SCRAM-SHA-256 and SCRAM-SHA-512 too (newer librdkafka, Java).\n'
      printf 'sasl.mechanism=PLAIN\nsasl.username=%s\nsasl.password=%s\n' \
        "$SASL_USER" "$(<"$PASSWORD_FILE")"
      ;;
  esac
  case "$protocol" in
    ssl | sasl_ssl) printf 'ssl.ca.location=%s\n' "$TLS_DIR/ca.pem" ;;
  esac
  if [[ "$protocol" == ssl ]]; then
    printf 'ssl.certificate.location=%s\nssl.key.location=%s\n' "$TLS_DIR/client.pem" "$TLS_DIR/client.key"
  fi
}

# factorypal_toml PROTOCOL: factorypal's [kafka] section for that listener.
factorypal_toml() {
  local protocol="$1"
  printf '# factorypal settings for the %s listener of %s (scripts/kafka-local.sh).\n' \
    "${protocol^^}" "$KAFKA_DIR"
  printf '[kafka]\n'
  printf 'bootstrap = %s\n' "$(toml_string "$(bootstrap "${protocol^^}")")"
  printf 'security_protocol = %s\n' "$(toml_string "$protocol")"
  case "$protocol" in
    ssl | sasl_ssl) printf 'ssl_ca_location = %s\n' "$(toml_string "$TLS_DIR/ca.pem")" ;;
  esac
  case "$protocol" in
    ssl)
      printf 'ssl_certificate_location = %s\n' "$(toml_string "$TLS_DIR/client.pem")"
      printf 'ssl_key_location = %s\n' "$(toml_string "$TLS_DIR/client.key")"
      ;;
    sasl_plaintext | sasl_ssl)
      printf 'sasl_mechanism = "SCRAM-SHA-512"\n'
      printf 'sasl_username = %s\n' "$(toml_string "$SASL_USER")"
      printf 'sasl_password_file = %s\n' "$(toml_string "$PASSWORD_FILE")"
      ;;
  esac
}

# listeners.env, client*.properties and factorypal*.toml for a non-default
# layout; rewritten on every start (owner only: some hold the password).
write_client_files() {
  local l protocol
  (
    umask 077
    for l in "${LISTENERS[@]}"; do
      printf '%s=%s\n' "$l" "$(bootstrap "$l")"
    done >"$KAFKA_DIR/listeners.env"
    for l in "${LISTENERS[@]}"; do
      protocol="${l,,}"
      client_properties "$protocol" >"$KAFKA_DIR/client-$protocol.properties"
      factorypal_toml "$protocol" >"$KAFKA_DIR/factorypal-$protocol.toml"
    done
    cp "$KAFKA_DIR/client-$SECURITY.properties" "$KAFKA_DIR/client.properties"
    cp "$KAFKA_DIR/factorypal-$SECURITY.toml" "$KAFKA_DIR/factorypal.toml"
  )
}

# --- Processes ------------------------------------------------------------------

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

new_cluster_id() {
  # What StorageTool random-uuid prints: 16 random bytes, URL-safe base64 without
  # padding, never starting with '-' (Kafka's Uuid.randomUuid rule).
  python3 -c '
import base64, os
while True:
    s = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    if not s.startswith("-"):
        print(s)
        break'
}

# format_storage CLUSTER_ID: format node (node_paths) once. A secured layout
# gets factorypal's SCRAM credentials into the metadata here (--add-scram),
# so they exist before the first client connects.
format_storage() {
  if [[ -f "$DATA_DIR/meta.properties" ]]; then
    return 0
  fi
  local scram=()
  if [[ "$SECURITY" != plaintext ]]; then
    local password mech
    password="$(<"$PASSWORD_FILE")"
    for mech in SCRAM-SHA-256 SCRAM-SHA-512; do
      scram+=(--add-scram "$mech=[name=$SASL_USER,password=$password]")
    done
  fi
  log "formatting storage in $DATA_DIR"
  "${JAVA_CMD[@]}" kafka.tools.StorageTool format -t "$1" -c "$PROPS" "${scram[@]}" >>"$OUT_FILE" 2>&1 \
    || { tail -n 20 "$OUT_FILE" >&2; die "storage format failed ($DATA_DIR)"; }
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

# Launch node (node_paths) in the background; sets NODE_PID.
launch_node() {
  local n="$1"
  java_cmd
  printf '\n=== start %s ===\n' "$(date -Is)" >>"$OUT_FILE"
  # setsid: own session, so the caller's Ctrl-C or hangup does not reach it.
  # The inner shell writes its own PID and then execs java, so the pid file
  # holds the JVM's PID. No fd of ours (stdout pipe, lock) is inherited.
  # shellcheck disable=SC2016  # $$ and $@ are for the inner shell
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' kafka-local "$PID_FILE" \
    "${JAVA_CMD[@]}" kafka.Kafka "$PROPS" </dev/null >>"$OUT_FILE" 2>&1 9>&- &
  local waited=0
  while [[ ! -s "$PID_FILE" ]]; do
    ((waited < 100)) || die "node $n did not write $PID_FILE"
    sleep 0.05
    waited=$((waited + 1))
  done
  NODE_PID="$(<"$PID_FILE")"
}

# wait_ready PID_BY_NODE...: wait until each listed node (n:pid) answers a
# Metadata request on its PLAINTEXT port that lists itself and, with
# $WANT_BROKERS, that many brokers. On failure show logs, kill what we started.
wait_ready() {
  local start_s=$SECONDS entry n pid pending=("$@") still
  while ((${#pending[@]})); do
    still=()
    for entry in "${pending[@]}"; do
      n="${entry%%:*}"
      pid="${entry#*:}"
      node_paths "$n"
      if probe "${PORTS[$n:PLAINTEXT]}" "$WANT_BROKERS"; then
        continue
      fi
      if ! kill -0 "$pid" 2>/dev/null; then
        show_logs
        rm -f "$PID_FILE"
        kill_started "$@"
        die "$(node_name "$n") exited during startup"
      fi
      still+=("$entry")
    done
    pending=("${still[@]}")
    ((${#pending[@]})) || break
    if ((SECONDS - start_s >= KAFKA_START_TIMEOUT)); then
      for entry in "${pending[@]}"; do
        node_paths "${entry%%:*}"
        show_logs
      done
      kill_started "$@"
      die "not ready after ${KAFKA_START_TIMEOUT} s: $(printf '%s ' "${pending[@]%%:*}")(node ids); killed what this start launched"
    fi
    sleep 0.25
  done
  READY_AFTER=$((SECONDS - start_s))
}

kill_started() {
  local entry
  for entry in "$@"; do
    node_paths "${entry%%:*}"
    kill_and_wait "${entry#*:}"
    rm -f "$PID_FILE"
  done
}

# node_ports N: "SASL_SSL 127.0.0.1:P, PLAINTEXT P2, ..., controller C" (the
# client listener first).
node_ports() {
  local client l out
  client="$(client_listener)"
  out="$client $HOST:${PORTS[$1:$client]}"
  for l in "${LISTENERS[@]}"; do
    [[ "$l" == "$client" ]] || out+=", $l ${PORTS[$1:$l]}"
  done
  printf '%s, controller %s\n' "$out" "${PORTS[$1:CONTROLLER]}"
}

node_name() {
  if ((BROKERS == 1)); then printf 'broker'; else printf 'node %s' "$1"; fi
}

# --- Commands ---------------------------------------------------------------------

cmd_start() {
  local want_brokers="" want_security=""
  while (($#)); do
    case "$1" in
      --brokers) want_brokers="${2:-}"; shift 2 || die "--brokers needs a number" ;;
      --brokers=*) want_brokers="${1#*=}"; shift ;;
      --security) want_security="${2:-}"; shift 2 || die "--security needs a protocol" ;;
      --security=*) want_security="${1#*=}"; shift ;;
      *) die "unknown option for start: $1 (see: scripts/kafka-local.sh help)" ;;
    esac
  done
  [[ -z "$want_brokers" || "$want_brokers" =~ ^[1-9]$ ]] \
    || die "--brokers must be a number from 1 to 9, not '$want_brokers'"
  want_security="${want_security,,}"
  case "$want_security" in
    '' | plaintext | ssl | sasl_plaintext | sasl_ssl) ;;
    *) die "--security must be one of ssl, sasl_plaintext, sasl_ssl (or plaintext), not '$want_security'" ;;
  esac

  init_state_paths
  lock_state_dir
  command -v python3 >/dev/null || die "python3 is needed (free port, readiness probe)"
  [[ "$KAFKA_PORT" =~ ^[0-9]+$ && "$KAFKA_PORT" -gt 0 ]] || die "KAFKA_PORT must be a port number > 0"

  if load_layout; then
    [[ -z "$want_brokers" || "$want_brokers" == "$BROKERS" ]] \
      || die "$KAFKA_DIR holds a $BROKERS-node cluster, not $want_brokers; stop --clean it or use another KAFKA_DIR"
    [[ -z "$want_security" || "$want_security" == "$SECURITY" ]] \
      || die "$KAFKA_DIR holds a $SECURITY cluster, not $want_security; stop --clean it or use another KAFKA_DIR"
    if [[ -n "$KAFKA_PORT_SET" && "$KAFKA_PORT" != "${PORTS[1:$(client_listener)]}" ]]; then
      log "warning: KAFKA_PORT=$KAFKA_PORT but $KAFKA_DIR keeps its ports: node 1's $(client_listener) port is ${PORTS[1:$(client_listener)]}"
    fi
  elif [[ "${want_brokers:-1}" == 1 && "${want_security:-plaintext}" == plaintext ]]; then
    start_legacy
    return 0
  else
    BROKERS="${want_brokers:-1}"
    SECURITY="${want_security:-plaintext}"
    [[ ! -f "$KAFKA_DIR/data/meta.properties" ]] \
      || die "$KAFKA_DIR holds the default single broker's data; stop --clean it or use another KAFKA_DIR"
    # Before cluster.env fixes it for good.
    [[ -z "$KAFKA_PORT_SET" ]] || port_is_free "$KAFKA_PORT" \
      || die "port $KAFKA_PORT on $HOST (KAFKA_PORT) is already in use"
    new_layout
  fi
  start_layout
}

# The default single plaintext broker, as this script always started it.
start_legacy() {
  node_paths 1
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

  # Fail now rather than after a 120 s wait on a broker that cannot bind.
  port_is_free "$KAFKA_PORT" || die "port $KAFKA_PORT on $HOST is already in use"

  local controller_port="${KAFKA_CONTROLLER_PORT:-}"
  if [[ -z "$controller_port" ]]; then
    controller_port="$(free_port)"
    # Never the client port (possible if the caller has not bound it yet).
    while [[ "$controller_port" == "$KAFKA_PORT" ]]; do controller_port="$(free_port)"; done
  fi
  PORTS["1:PLAINTEXT"]="$KAFKA_PORT"
  PORTS["1:CONTROLLER"]="$controller_port"

  resolve_jars "$SUPPORT_DIR/pom.xml" "$KAFKA_JARS_DIR"
  mkdir -p "$DATA_DIR" "$LOGS_DIR"
  write_config 1
  java_cmd
  format_storage "$(new_cluster_id)"

  log "starting Kafka $KAFKA_VERSION on $HOST:$KAFKA_PORT (controller $controller_port), state in $KAFKA_DIR"
  printf '%s\n' "$KAFKA_PORT" >"$PORT_FILE"
  launch_node 1
  WANT_BROKERS=1
  wait_ready "1:$NODE_PID"
  log "ready after $READY_AFTER s (pid $NODE_PID); log: $LOGS_DIR/server.log"
  printf '%s:%s\n' "$HOST" "$KAFKA_PORT"
}

# start_layout [NODE]: start every node of a cluster.env layout that is not
# running (or only NODE), wait for them, print the client bootstrap list.
start_layout() {
  local only="${1:-}" n pid l started=() to_format=() client
  client="$(client_listener)"
  resolve_jars "$SUPPORT_DIR/pom.xml" "$KAFKA_JARS_DIR"
  if [[ "$SECURITY" != plaintext ]]; then
    make_tls
    make_password
  fi
  write_client_files
  if [[ -z "$KAFKA_HEAP_OPTS_SET" ]] && ((BROKERS > 1)); then
    # Several JVMs on a small machine (2 cores, 24 GiB): a few hundred MB each.
    KAFKA_HEAP_OPTS="-Xms128m -Xmx512m"
  fi

  for ((n = 1; n <= BROKERS; n++)); do
    [[ -z "$only" || "$only" == "$n" ]] || continue
    node_paths "$n"
    if pid="$(running_pid)"; then
      log "$(node_name "$n") already running (pid $pid)"
      continue
    fi
    rm -f "$PID_FILE"
    # Fail now rather than after a 120 s wait on a node that cannot bind.
    for l in CONTROLLER "${LISTENERS[@]}"; do
      port_is_free "${PORTS[$n:$l]}" \
        || die "port ${PORTS[$n:$l]} on $HOST ($(node_name "$n")'s $l listener, fixed in $CLUSTER_FILE) is already in use"
    done
    mkdir -p "$DATA_DIR" "$LOGS_DIR"
    write_config "$n"
    [[ -f "$DATA_DIR/meta.properties" ]] || to_format+=("$n")
    started+=("$n")
  done
  format_nodes "${to_format[@]}"

  local launched=()
  for n in "${started[@]}"; do
    node_paths "$n"
    log "starting $(node_name "$n") (Kafka $KAFKA_VERSION): $(node_ports "$n"); state in $NODE_DIR"
    launch_node "$n"
    launched+=("$n:$NODE_PID")
  done
  # Ready = each started node lists all N brokers (all registered, unfenced);
  # a single restarted node only needs to see itself back.
  WANT_BROKERS="$BROKERS"
  [[ -z "$only" ]] || WANT_BROKERS=1
  if ((${#launched[@]})); then
    wait_ready "${launched[@]}"
    if ((BROKERS == 1)); then
      log "ready after $READY_AFTER s (pid $NODE_PID); log: $LOGS_DIR/server.log"
    else
      log "ready after $READY_AFTER s ($(printf '%s ' "${launched[@]}")as node:pid); logs: $KAFKA_DIR/node-*/logs/server.log"
    fi
  fi
  bootstrap "$client"
}

# Format the given nodes in parallel with one cluster id (one JVM each).
format_nodes() {
  (($#)) || return 0
  local cluster_id n pids=() failed=0
  cluster_id="$(new_cluster_id)"
  for n in "$@"; do
    node_paths "$n"
    java_cmd
    format_storage "$cluster_id" &
    pids+=("$!")
  done
  for n in "${pids[@]}"; do
    wait "$n" || failed=1
  done
  ((failed == 0)) || die "storage format failed (see the kafka.out files under $KAFKA_DIR)"
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
  load_layout_or_legacy
  local n pid stopping=() pids=()
  for ((n = 1; n <= BROKERS; n++)); do
    node_paths "$n"
    if pid="$(running_pid)"; then
      stopping+=("$n:$pid")
    fi
  done
  if ((${#stopping[@]} == 0)); then
    log "not running ($KAFKA_DIR)"
  else
    # All at once: a node waiting for the others' controlled shutdown would
    # otherwise make this take N times as long.
    local entry
    for entry in "${stopping[@]}"; do
      log "stopping $(node_name "${entry%%:*}") pid ${entry#*:} ($KAFKA_DIR)"
      kill_and_wait "${entry#*:}" &
      pids+=("$!")
    done
    wait "${pids[@]}"
    log "stopped"
  fi
  for ((n = 1; n <= BROKERS; n++)); do
    node_paths "$n"
    rm -f "$PID_FILE"
  done
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
  load_layout_or_legacy
  if ((LEGACY)); then
    node_paths 1
    local pid port
    if pid="$(running_pid)"; then
      port="$(running_port)"
      if probe "$port"; then
        echo "running (pid $pid) on $HOST:$port"
      else
        echo "running (pid $pid) on $HOST:$port, not answering yet"
      fi
      return 0
    fi
    echo "not running (port $KAFKA_PORT)"
    return 3
  fi
  local n pid running=0 where
  for ((n = 1; n <= BROKERS; n++)); do
    node_paths "$n"
    where="$(node_ports "$n")"
    if pid="$(running_pid)"; then
      running=$((running + 1))
      if probe "${PORTS[$n:PLAINTEXT]}"; then
        echo "node $n: running (pid $pid), $where"
      else
        echo "node $n: running (pid $pid), not answering yet, $where"
      fi
    else
      echo "node $n: not running, $where"
    fi
  done
  ((running == BROKERS)) && return 0
  ((running == 0)) && return 3
  return 4
}

# node_arg NODE: validate a node id against the layout of KAFKA_DIR.
node_arg() {
  [[ "${1:-}" =~ ^[1-9]$ ]] || die "expected a node id (1-$BROKERS), not '${1:-}'"
  (($1 <= BROKERS)) || die "no node $1 in $KAFKA_DIR (node ids 1-$BROKERS)"
}

cmd_kill() {
  init_state_paths
  lock_state_dir
  load_layout_or_legacy
  node_arg "${1:-}"
  node_paths "$1"
  local pid
  if ! pid="$(running_pid)"; then
    log "$(node_name "$1") is not running ($NODE_DIR)"
    return 0
  fi
  log "SIGKILL $(node_name "$1") pid $pid ($NODE_DIR)"
  kill -KILL "$pid" 2>/dev/null || true
  local waited=0
  while [[ -e "/proc/$pid" ]]; do
    ((waited < 200)) || die "pid $pid survived SIGKILL for 10 s"
    sleep 0.05
    waited=$((waited + 1))
  done
  rm -f "$PID_FILE"
}

cmd_restart() {
  init_state_paths
  lock_state_dir
  load_layout_or_legacy
  node_arg "${1:-}"
  if ((LEGACY)); then
    # The default broker: restart is start (same KAFKA_DIR, KAFKA_PORT).
    exec 9>&-
    cmd_start
    return 0
  fi
  start_layout "$1"
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
  # The header from "usage:" to the blank line before "Files in KAFKA_DIR".
  sed -n '/^# usage:/,/^# Files in KAFKA_DIR/p' "${BASH_SOURCE[0]}" | sed '$d' \
    | sed 's/^# \{0,1\}//' >&2
  exit 2
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  status) shift; cmd_status "$@" ;;
  kill) shift; cmd_kill "$@" ;;
  restart) shift; cmd_restart "$@" ;;
  tools-classpath) shift; cmd_tools_classpath "$@" ;;
  *) usage ;;
esac
