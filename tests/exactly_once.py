"""Independent oracle for the failover tests in `tests/cluster.rs`: every record of a source file
is in Kafka exactly once and in Parquet exactly once, with its values exact.

usage: exactly_once.py SOURCE_JSON KCAT_JSONL TOPIC_DIR

SOURCE_JSON is the file serve-api streamed (a JSON array of objects). KCAT_JSONL is what
`kcat -C -J` read back from the topic. TOPIC_DIR is the consumer's Parquet output for it.

Kafka: the `source-offset` headers are exactly 0..N-1, each once, and the payloads, parsed by
Python's `json` (correctly rounded floats), are the source's records, each once. Parquet (read
with pyarrow): the rows are the source's records, each once, every column compared exactly
(timestamps as microseconds, from the source's seconds with exact rational arithmetic). Prints
a JSON summary; exits 1 on any difference.
"""
import json
import sys
from collections import Counter
from fractions import Fraction

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds


def micros(seconds):
    """Whole microseconds of a number of seconds (ties to even, as the consumer documents)."""
    return round(Fraction(str(seconds)) * 1_000_000)


def main(source_path, kcat_path, topic_dir):
    with open(source_path) as f:
        source = json.load(f)
    problems = []

    offsets = Counter()
    payloads = Counter()
    with open(kcat_path) as f:
        for line in f:
            if not line.strip():
                continue
            record = json.loads(line)
            headers = record.get("headers") or []
            named = dict(zip(headers[0::2], headers[1::2]))
            offsets[int(named["source-offset"])] += 1
            payloads[json.dumps(json.loads(record["payload"]), sort_keys=True)] += 1
    expected = Counter(json.dumps(r, sort_keys=True) for r in source)
    twice = sorted(o for o, n in offsets.items() if n > 1)
    missing = sorted(set(range(len(source))) - set(offsets))
    if twice:
        problems.append(f"kafka: {len(twice)} source-offsets more than once, e.g. {twice[:5]}")
    if missing:
        problems.append(f"kafka: {len(missing)} source-offsets missing, e.g. {missing[:5]}")
    if payloads != expected:
        diff = list((payloads - expected).items())[:3] + list((expected - payloads).items())[:3]
        problems.append(f"kafka: payloads differ from the source, e.g. {diff}")

    table = ds.dataset(topic_dir, format="parquet").to_table()
    columns = {}
    timestamps = set()
    for field in table.schema:
        column = table.column(field.name)
        if pa.types.is_timestamp(field.type):
            column = pc.cast(column, pa.int64())
            timestamps.add(field.name)
        columns[field.name] = column.to_pylist()
    names = list(columns)
    rows = Counter(zip(*columns.values())) if names else Counter()

    def as_row(record):
        return tuple(micros(record[n]) if n in timestamps else record[n] for n in names)

    wanted = Counter(as_row(r) for r in source)
    if rows != wanted:
        diff = list((rows - wanted).items())[:3] + list((wanted - rows).items())[:3]
        problems.append(
            f"parquet: {table.num_rows} rows for {len(source)} records; differences e.g. {diff}"
        )
    print(json.dumps({
        "source": len(source),
        "kafka": sum(offsets.values()),
        "parquet": table.num_rows,
        "problems": problems,
    }))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
