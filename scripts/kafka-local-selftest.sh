#!/usr/bin/env bash
# Checks a secured cluster of scripts/kafka-local.sh with clients that are not ours: kcat
# (librdkafka) and Apache Kafka's own Java tools. Every listener answers with the files the
# script wrote, records go through each protocol and SASL mechanism, wrong credentials are
# refused, and a killed node's partitions get a new leader and come back after a restart.
#
# usage: [KAFKA_DIR=DIR] scripts/kafka-local-selftest.sh
#   With KAFKA_DIR of a running `start --brokers 3 --security ...` cluster, checks that one
#   (it creates a topic and kills and restarts one node); without, starts such a cluster in a
#   temporary directory and removes it at the end.
#
# Debian 12's kcat (librdkafka 2.0.2) cannot authenticate with SCRAM against Kafka 4 (a
# librdkafka bug fixed in 2.6.1), so kcat uses PLAIN here and the Java client checks SCRAM.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_LOCAL="$SCRIPT_DIR/kafka-local.sh"

log() { printf 'selftest: %s\n' "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

own_cluster=""
if [[ -z "${KAFKA_DIR:-}" ]]; then
  KAFKA_DIR="$(mktemp -d "${TMPDIR:-/tmp}/kafka-local-selftest.XXXXXX")"
  export KAFKA_DIR
  own_cluster=1
  trap '"$KAFKA_LOCAL" stop --clean >/dev/null 2>&1 || true' EXIT
  log "starting a 3-node sasl_ssl cluster in $KAFKA_DIR"
  start_s=$SECONDS
  "$KAFKA_LOCAL" start --brokers 3 --security sasl_ssl >/dev/null
  log "cluster ready after $((SECONDS - start_s)) s"
fi
[[ -f "$KAFKA_DIR/listeners.env" && -f "$KAFKA_DIR/sasl-password" ]] \
  || fail "$KAFKA_DIR has no listeners.env or sasl-password: not a cluster started with --security"

work="$(mktemp -d "${TMPDIR:-/tmp}/kafka-local-selftest-work.XXXXXX")"
if [[ -n "$own_cluster" ]]; then
  trap '"$KAFKA_LOCAL" stop --clean >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi

listener() { grep "^$1=" "$KAFKA_DIR/listeners.env" | cut -d= -f2-; }
PLAINTEXT="$(listener PLAINTEXT)"
brokers="$(tr ',' '\n' <<<"$PLAINTEXT" | wc -l)"
password="$(<"$KAFKA_DIR/sasl-password")"
tools_cp="$("$KAFKA_LOCAL" tools-classpath)"
topic="selftest-$$-$RANDOM"

# kcat with a client file of the script; SASL files get PLAIN (see the header).
kcat_with() {
  local protocol="$1"
  shift
  local extra=()
  [[ "$protocol" != sasl_* ]] || extra=(-X sasl.mechanism=PLAIN)
  timeout 60 kcat -F "$KAFKA_DIR/client-$protocol.properties" "${extra[@]}" "$@" 2>"$work/kcat.err"
}

# Java client config: PROTOCOL MECHANISM PASSWORD -> file path.
java_config() {
  local file="$work/java-$1-$2.properties"
  {
    printf 'security.protocol=%s\n' "${1^^}"
    if [[ "$1" == sasl_* ]]; then
      printf 'sasl.mechanism=%s\n' "$2"
      printf 'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="factorypal" password="%s";\n' "$3"
    fi
    if [[ "$1" == *ssl ]]; then
      printf 'ssl.truststore.type=PEM\nssl.truststore.location=%s\n' "$KAFKA_DIR/tls/ca.pem"
    fi
  } >"$file"
  printf '%s\n' "$file"
}

# lines PREFIX COUNT: PREFIX-1 .. PREFIX-COUNT, one a line.
lines() {
  local i
  for ((i = 1; i <= $2; i++)); do printf '%s-%s\n' "$1" "$i"; done
}

java_tool() { timeout 120 java -cp "$tools_cp" "$@"; }

leader_of_0() {
  kcat -b "$PLAINTEXT" -L -t "$topic" 2>/dev/null | sed -n 's/.*partition 0, leader \([0-9]*\),.*/\1/p'
}
isr_of_0() {
  kcat -b "$PLAINTEXT" -L -t "$topic" 2>/dev/null | sed -n 's/.*partition 0, leader .*isrs: \(.*\)$/\1/p'
}

log "1. each client-*.properties lists all $brokers brokers (kcat -F FILE -L)"
for protocol in plaintext ssl sasl_plaintext sasl_ssl; do
  out="$(kcat_with "$protocol" -L -m 10)" || fail "kcat -L over $protocol: $(tail -n 3 "$work/kcat.err")"
  grep -q "^ $brokers brokers:" <<<"$out" || fail "kcat -L over $protocol: not $brokers brokers: $out"
done

log "2. topic $topic (3 partitions, replication 3) created over PLAINTEXT with TopicCommand"
java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$PLAINTEXT" --create --topic "$topic" \
  --partitions 3 --replication-factor "$((brokers < 3 ? brokers : 3))" >/dev/null

sent=0
log "3. kcat produces over sasl_ssl (PLAIN), sasl_plaintext (PLAIN) and ssl (client certificate)"
for protocol in sasl_ssl sasl_plaintext ssl; do
  lines "kcat-$protocol" 3 | kcat_with "$protocol" -P -t "$topic" -X acks=all \
    || fail "kcat -P over $protocol: $(tail -n 3 "$work/kcat.err")"
  sent=$((sent + 3))
done

log "4. the Java client produces with SCRAM-SHA-256 and SCRAM-SHA-512 over sasl_ssl and sasl_plaintext"
for protocol in sasl_ssl sasl_plaintext; do
  for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
    lines "java-$protocol-$mechanism" 2 | java_tool org.apache.kafka.tools.ConsoleProducer \
      --bootstrap-server "$(listener "${protocol^^}")" --topic "$topic" \
      --command-config "$(java_config "$protocol" "$mechanism" "$password")" \
      --command-property acks=all 2>"$work/java.err" \
      || fail "Java producer over $protocol with $mechanism: $(tail -n 5 "$work/java.err")"
    sent=$((sent + 2))
  done
done

log "5. all $sent records read back: kcat over ssl, the Java consumer over sasl_ssl (SCRAM-SHA-512)"
got="$(kcat_with ssl -C -t "$topic" -o beginning -e -q | sort)"
[[ "$(wc -l <<<"$got")" == "$sent" ]] || fail "kcat over ssl read $(wc -l <<<"$got") of $sent records: $got"
got_java="$(java_tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$(listener SASL_SSL)" \
  --topic "$topic" --from-beginning --max-messages "$sent" --timeout-ms 30000 \
  --command-config "$(java_config sasl_ssl SCRAM-SHA-512 "$password")" 2>"$work/java.err" | sort)"
[[ "$got_java" == "$got" ]] || fail "the Java consumer read other records than kcat: $got_java"

log "6. wrong credentials are refused"
if kcat_with sasl_ssl -L -m 5 -X sasl.password=wrong >/dev/null; then fail "kcat with a wrong PLAIN password was let in"; fi
grep -q "Authentication failed" "$work/kcat.err" || fail "kcat wrong password: $(tail -n 2 "$work/kcat.err")"
if java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$(listener SASL_SSL)" --list \
  --command-config "$(java_config sasl_ssl SCRAM-SHA-512 wrong)" >/dev/null 2>"$work/java.err"; then
  fail "the Java client with a wrong SCRAM password was let in"
fi
grep -q "SaslAuthenticationException\|Authentication failed" "$work/java.err" \
  || fail "Java wrong password: $(tail -n 3 "$work/java.err")"
if timeout 60 kcat -b "$(listener SSL)" -X security.protocol=ssl -X "ssl.ca.location=$KAFKA_DIR/tls/ca.pem" \
  -L -m 5 >/dev/null 2>&1; then
  fail "kcat without a client certificate was let into the SSL listener"
fi

log "7. failover: kill the leader of partition 0, produce, restart it"
old="$(leader_of_0)"
[[ -n "$old" ]] || fail "no leader for partition 0 of $topic"
"$KAFKA_LOCAL" kill "$old" 2>/dev/null
deadline=$((SECONDS + 60))
until new="$(leader_of_0)" && [[ -n "$new" && "$new" != "$old" ]]; do
  ((SECONDS < deadline)) || fail "partition 0 still led by killed node $old after 60 s"
  sleep 0.5
done
log "   partition 0: leader $old -> $new"
lines after-kill 3 | kcat_with sasl_ssl -P -t "$topic" -p 0 -X acks=all \
  || fail "kcat -P with node $old down: $(tail -n 3 "$work/kcat.err")"
sent=$((sent + 3))
"$KAFKA_LOCAL" restart "$old" >/dev/null 2>"$work/restart.err" \
  || fail "restart $old: $(tail -n 5 "$work/restart.err")"
deadline=$((SECONDS + 60))
until [[ "$(isr_of_0 | tr ',' '\n' | grep -c .)" == "$((brokers < 3 ? brokers : 3))" ]]; do
  ((SECONDS < deadline)) || fail "node $old not back in the ISR of partition 0 after 60 s: $(isr_of_0)"
  sleep 0.5
done
got="$(kcat_with sasl_ssl -C -t "$topic" -o beginning -e -q | wc -l)"
[[ "$got" == "$sent" ]] || fail "read $got of $sent records after the restart"

log "all checks passed ($KAFKA_DIR)"
