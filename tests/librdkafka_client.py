"""An independent Kafka client for the tests: Python's confluent_kafka, whose wheel bundles a
current librdkafka (Debian's kcat has librdkafka 2.0.2, whose SCRAM Kafka 4 refuses).

usage:
  librdkafka_client.py produce BOOTSTRAP MECHANISM USERNAME PASSWORD_FILE CA_FILE TOPIC < PAYLOADS
      every line of stdin is one record's value (no key); waits until each is acknowledged
      by all in-sync replicas; prints how many were delivered
  librdkafka_client.py consume BOOTSTRAP MECHANISM USERNAME PASSWORD_FILE CA_FILE TOPIC
      every record of TOPIC from the beginning to the end of each partition, one JSON object
      per line: {"partition", "offset", "key", "value"} (key and value as UTF-8 text)

The connection is SASL_SSL with MECHANISM (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and the
brokers' certificates checked against CA_FILE. Any error exits 1 with the reason on stderr.
"""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

TIMEOUT_S = 60


def config(bootstrap, mechanism, username, password_file, ca):
    with open(password_file, encoding="utf-8") as f:
        password = f.read().rstrip("\n")
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": mechanism,
        "sasl.username": username,
        "sasl.password": password,
        "ssl.ca.location": ca,
        "error_cb": fail,
    }


FAILURES = []


def fail(error):
    # librdkafka reports transient trouble (a broker briefly away) here too; only the fatal
    # ones and authentication failures end the run (checked by `check`: an exception raised
    # in a callback would be lost).
    if error.fatal() or error.code() == KafkaError._AUTHENTICATION:
        FAILURES.append(str(error))


def check():
    if FAILURES:
        sys.exit(f"librdkafka: {FAILURES[0]}")


def produce(conf, topic):
    conf.update({"acks": "all", "enable.idempotence": True})
    producer = Producer(conf)
    errors = []

    def delivered(error, _msg):
        if error is not None:
            errors.append(str(error))

    count = 0
    for line in sys.stdin.read().splitlines():
        producer.produce(topic, value=line.encode("utf-8"), on_delivery=delivered)
        producer.poll(0)
        count += 1
    deadline = time.monotonic() + TIMEOUT_S
    left = producer.flush(1)
    while left and time.monotonic() < deadline:
        check()
        left = producer.flush(1)
    check()
    if left or errors:
        sys.exit(f"{left} records not delivered within {TIMEOUT_S}s; errors: {errors}")
    print(count)


def consume(conf, topic):
    conf.update(
        {
            "group.id": "factorypal-tests-librdkafka",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer = Consumer(conf)
    deadline = time.monotonic() + TIMEOUT_S
    metadata = None
    while metadata is None:
        consumer.poll(0.1)  # serves error_cb
        check()
        try:
            metadata = consumer.list_topics(topic, timeout=1).topics[topic]
        except KafkaException:
            if time.monotonic() > deadline:
                raise
    if metadata.error is not None:
        sys.exit(f"topic {topic}: {metadata.error}")
    partitions = sorted(metadata.partitions)
    consumer.assign([TopicPartition(topic, p, -2) for p in partitions])  # -2: beginning
    pending = set(partitions)
    records = []
    while pending:
        check()
        if time.monotonic() > deadline:
            sys.exit(f"partitions {sorted(pending)} not read to their end in {TIMEOUT_S}s")
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error() is not None:
            if msg.error().code() == KafkaError._PARTITION_EOF:
                pending.discard(msg.partition())
                continue
            sys.exit(f"reading {topic}: {msg.error()}")
        records.append(
            {
                "partition": msg.partition(),
                "offset": msg.offset(),
                "key": None if msg.key() is None else msg.key().decode("utf-8"),
                "value": None if msg.value() is None else msg.value().decode("utf-8"),
            }
        )
    consumer.close()
    for record in records:
        print(json.dumps(record))


def main():
    if len(sys.argv) != 8 or sys.argv[1] not in ("produce", "consume"):
        sys.exit(__doc__)
    command, bootstrap, mechanism, username, password_file, ca, topic = sys.argv[1:]
    conf = config(bootstrap, mechanism, username, password_file, ca)
    if command == "produce":
        produce(conf, topic)
    else:
        consume(conf, topic)


if __name__ == "__main__":
    main()
