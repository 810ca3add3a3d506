"""Reads a topic's Parquet output with independent readers (pyarrow and DuckDB) for the tests.

usage: read_parquet.py TOPIC_DIR

Prints one JSON object: the schema pyarrow sees, the row count from both readers, and every row
(timestamps as microseconds since 1970, UTC), so the Rust test can compare them with what was
produced. Entries starting with `_` or `.` (checkpoint, bad records, temporaries) are ignored,
as both readers do for datasets.
"""
import json
import sys

import duckdb
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow as pa

topic_dir = sys.argv[1]
table = ds.dataset(topic_dir, format="parquet").to_table()
schema = [[f.name, str(f.type)] for f in table.schema]

columns = {}
for f in table.schema:
    col = table.column(f.name)
    if pa.types.is_timestamp(f.type):
        col = pc.cast(col, pa.int64())
    columns[f.name] = col.to_pylist()
rows = [dict(zip(columns, values)) for values in zip(*columns.values())] if columns else []

duck_rows = duckdb.sql(f"select count(*) from read_parquet('{topic_dir}/*.parquet')").fetchall()[0][0]
print(json.dumps({"schema": schema, "pyarrow_rows": table.num_rows, "duckdb_rows": duck_rows, "rows": rows}))
