"""Writes a topic directory in the Parquet sink's layout with pyarrow, for the report's tests of
values the pipeline never lets through (NaN, ±Infinity, null) and of committed vs uncommitted
files.

usage: report_parquet.py KIND RECORDS.json TOPIC_DIR [--uncommitted MORE.json] [--type COL=TYPE]

KIND is `metrics` (id int32, val float64, time timestamp[us, UTC]) or `workorder` (time
timestamp[us, UTC], product int32, production float64): the consumer's sample schemas. RECORDS
is a JSON array of objects with those keys (times in unix seconds; Python's json reads NaN,
Infinity and null). Writes `part-00000000-0000.parquet` and the checkpoint commit of batch 0 in
the consumer's format (`_checkpoint/all/000000000000.commit.json`); with --uncommitted, MORE's
records go to `part-00000001-0000.parquet`, a file of batch 1, which has no commit: a report
must not read it. --type gives a column another Arrow type (`val=string`: a column of a type
the report must refuse).
"""
import argparse
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMAS = {
    "metrics": pa.schema(
        [("id", pa.int32()), ("val", pa.float64()), ("time", pa.timestamp("us", tz="UTC"))]
    ),
    "workorder": pa.schema(
        [("time", pa.timestamp("us", tz="UTC")), ("product", pa.int32()), ("production", pa.float64())]
    ),
}


def table(kind, records, types):
    schema = SCHEMAS[kind]
    for name, type_name in types.items():
        schema = schema.set(schema.get_field_index(name), pa.field(name, getattr(pa, type_name)()))
    columns = {}
    for field in schema:
        values = [r.get(field.name) for r in records]
        if pa.types.is_timestamp(field.type):
            values = [None if v is None else int(v) * 1_000_000 for v in values]
        elif pa.types.is_string(field.type):
            values = [None if v is None else str(v) for v in values]
        columns[field.name] = pa.array(values, type=field.type, from_pandas=False)
    return pa.table(columns, schema=schema)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=sorted(SCHEMAS))
    parser.add_argument("records")
    parser.add_argument("topic_dir")
    parser.add_argument("--uncommitted")
    parser.add_argument("--type", action="append", default=[], help="COL=TYPE, e.g. val=string")
    args = parser.parse_args()
    types = dict(t.split("=", 1) for t in args.type)
    with open(args.records) as f:
        records = json.load(f)
    checkpoint = os.path.join(args.topic_dir, "_checkpoint", "all")
    os.makedirs(checkpoint, exist_ok=True)
    name = "part-00000000-0000.parquet"
    pq.write_table(table(args.kind, records, types), os.path.join(args.topic_dir, name))
    commit = {
        "batch": 0,
        "next_offsets": {"0": len(records)},
        "files": [name],
        "rows": len(records),
        "bad_records": 0,
    }
    with open(os.path.join(checkpoint, "000000000000.commit.json"), "w") as f:
        json.dump(commit, f, indent=2)
    if args.uncommitted:
        with open(args.uncommitted) as f:
            more = json.load(f)
        uncommitted = os.path.join(args.topic_dir, "part-00000001-0000.parquet")
        pq.write_table(table(args.kind, more, types), uncommitted)


if __name__ == "__main__":
    main()
