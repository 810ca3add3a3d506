"""Record batches written by other clients, and what a consumer must make of them, for
tests/record_batches.rs: factorypal reads Kafka's record batches itself (src/kafka/records.rs),
so these come from librdkafka (confluent_kafka) with each codec and with transactions.

usage:
  foreign_batches.py produce BOOTSTRAP TOPIC CODEC < PAYLOADS
      each stdin line is one record's value; librdkafka batches them (up to 1 MB, 50 ms) with
      compression.type CODEC; waits for every acknowledgement
  foreign_batches.py transactions BOOTSTRAP TOPIC N
      N records in a committed transaction, N in an aborted one, N without a transaction,
      interleaved in that order twice over; prints the ids a read_committed consumer must see
      (one per line)
  foreign_batches.py check PAYLOADS TOPIC_DIR [IDS]
      reads TOPIC_DIR with pyarrow and compares every row with PAYLOADS (Python's json): the
      same rows, each once, with the same id, val and time; with IDS, only the payloads whose
      id is listed there are expected. Prints "ok N" or exits 1 with the first difference.
"""

import json
import sys

TIMEOUT_S = 60


def fail(error):
    print(f"kafka error: {error}", file=sys.stderr)
    sys.exit(1)


def produce(bootstrap, topic, codec):
    from confluent_kafka import Producer

    delivered = []
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "compression.type": codec,
        "linger.ms": 50,
        "batch.size": 1_000_000,
        "error_cb": fail,
    })
    for line in sys.stdin.buffer:
        value = line.rstrip(b"\n")
        while True:
            try:
                producer.produce(topic, value, on_delivery=lambda e, m: delivered.append(e))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(TIMEOUT_S) != 0:
        fail("records left unsent")
    errors = [e for e in delivered if e is not None]
    if errors:
        fail(errors[0])
    print(len(delivered))


def transactions(bootstrap, topic, n):
    from confluent_kafka import Producer

    plain = Producer({"bootstrap.servers": bootstrap, "error_cb": fail})
    txn = Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": f"foreign-batches-{topic}",
        "error_cb": fail,
    })
    txn.init_transactions(TIMEOUT_S)
    expected = []
    next_id = 0

    def record(i):
        return json.dumps({"id": i, "val": i / 8, "time": 1_700_000_000 + i}).encode()

    for _ in range(2):
        for outcome in ("commit", "abort"):
            txn.begin_transaction()
            for _ in range(n):
                txn.produce(topic, record(next_id))
                if outcome == "commit":
                    expected.append(next_id)
                next_id += 1
            if outcome == "commit":
                txn.commit_transaction(TIMEOUT_S)
            else:
                txn.flush(TIMEOUT_S)
                txn.abort_transaction(TIMEOUT_S)
        for _ in range(n):
            plain.produce(topic, record(next_id))
            expected.append(next_id)
            next_id += 1
        if plain.flush(TIMEOUT_S) != 0:
            fail("records left unsent")
    for i in expected:
        print(i)


def check(payloads_path, topic_dir, ids_path=None):
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    import pyarrow as pa

    with open(payloads_path, "rb") as f:
        expected = [json.loads(line) for line in f if line.strip()]
    if ids_path:
        with open(ids_path) as f:
            wanted = {int(line) for line in f if line.strip()}
        expected = [e for e in expected if e["id"] in wanted]
    table = ds.dataset(topic_dir, format="parquet").to_table()
    times = pc.cast(table.column("time"), pa.int64()).to_pylist()
    rows = list(zip(table.column("id").to_pylist(), table.column("val").to_pylist(), times))
    if len(rows) != len(expected):
        sys.exit(f"{len(rows)} rows, expected {len(expected)}")
    by_id = {}
    for row in rows:
        if row[0] in by_id:
            sys.exit(f"id {row[0]} twice")
        by_id[row[0]] = row
    for e in expected:
        got = by_id.get(e["id"])
        want = (e["id"], float(e["val"]), e["time"] * 1_000_000)
        if got != want:
            sys.exit(f"id {e['id']}: got {got}, expected {want}")
    print("ok", len(rows))


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "produce":
        produce(sys.argv[2], sys.argv[3], sys.argv[4])
    elif command == "transactions":
        transactions(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif command == "check":
        check(*sys.argv[2:5])
    else:
        sys.exit(f"unknown command {command}")
