"""Independent Delta readers and writers for tests/compact.rs and scripts/bench-compact.sh.

  make TABLE FILES ROWS_PER_FILE [DAYS]   many small appends with the `deltalake` package,
                                   partitioned by `date` (each file's rows in one UTC day; files
                                   go round DAYS days, default 3)
  bulk TABLE FILES ROWS_PER_FILE   the same shape fast, for benchmarks: FILES Parquet files of
                                   one day written by pyarrow, made a Delta table in one commit
                                   (convert_to_deltalake)
  read TABLE                       JSON: what the Python `deltalake` reader and DuckDB see
  query TABLE RUNS                 JSON: DuckDB's count(*), avg(val) over the active files, and
                                   the median time of RUNS runs (opening the files included)
  log TABLE                        JSON: every commit's operation and its actions' dataChange
  orphan TABLE SECONDS_OLD         copy an active file to a new untracked name (a write in
                                   flight), its mtime SECONDS_OLD in the past; prints its path
"""

import glob
import hashlib
import json
import os
import shutil
import sys
import time

import duckdb
import pyarrow as pa
from deltalake import DeltaTable, Field, Schema, write_deltalake

DAY = 86_400_000_000  # microseconds


def make(table, files, rows, days=3):
    schema = pa.schema(
        [
            ("id", pa.int32()),
            ("val", pa.float64()),
            ("time", pa.timestamp("us", tz="UTC")),
            ("date", pa.string()),
        ]
    )
    start = 1_624_320_000 * 1_000_000  # 2021-06-22T00:00:00Z
    for f in range(files):
        day = f % days
        ids = [f * rows + i for i in range(rows)]
        batch = pa.table(
            {
                "id": pa.array(ids, pa.int32()),
                "val": pa.array([i * 0.1 + 1e-9 for i in ids], pa.float64()),
                "time": pa.array([start + day * DAY + i for i in ids], pa.timestamp("us", tz="UTC")),
                "date": pa.array([f"2021-06-{22 + day}"] * rows, pa.string()),
            },
            schema=schema,
        )
        write_deltalake(table, batch, mode="append", partition_by=["date"])


def bulk(table, files, rows):
    import pyarrow.parquet as pq
    from deltalake import convert_to_deltalake

    start = 1_624_320_000 * 1_000_000
    part = os.path.join(table, "date=2021-06-22")
    os.makedirs(part, exist_ok=True)
    for f in range(files):
        ids = [f * rows + i for i in range(rows)]
        batch = pa.table(
            {
                "id": pa.array(ids, pa.int32()),
                "val": pa.array([i * 0.1 + 1e-9 for i in ids], pa.float64()),
                "time": pa.array([start + i * 10_000 for i in ids], pa.timestamp("us", tz="UTC")),
            }
        )
        pq.write_table(batch, os.path.join(part, f"part-{f:05d}.snappy.parquet"), compression="snappy")
    convert_to_deltalake(
        table,
        partition_by=Schema([Field("date", "string")]),
        partition_strategy="hive",
    )


def digest(rows):
    h = hashlib.sha256()
    for row in rows:
        h.update(repr(row).encode())
    return h.hexdigest()


def normalized(t):
    """Rows as sorted tuples of exact values: timestamps as integer microseconds (UTC), floats
    by repr, so two readers compare value for value."""
    cols = []
    for name in t.column_names:
        col = t.column(name)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        elif pa.types.is_large_string(col.type) or pa.types.is_string_view(col.type):
            col = col.cast(pa.string())
        cols.append(col.to_pylist())
    return sorted(tuple(repr(v) for v in row) for row in zip(*cols))


def read(table):
    dt = DeltaTable(table)
    t = dt.to_pyarrow_table()
    cols = [c for c in t.column_names]
    py_rows = normalized(t)
    files = dt.file_uris()
    con = duckdb.connect()
    duck_rows = []
    if files:
        listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        # Partition values live in the log, not the files: DuckDB reads the data columns
        # and the `date` comes from the hive directory name.
        duck = con.sql(
            f"SELECT * FROM read_parquet([{listing}], hive_partitioning = true, hive_types_autocast = false, union_by_name = true)"
        ).to_arrow_table()
        duck = duck.select([c for c in cols if c in duck.column_names])
        duck_rows = normalized(duck)
    ids = [r["id"] for r in t.select(["id"]).to_pylist()] if "id" in cols else []
    report = {
        "rows": t.num_rows,
        "distinct_ids": len(set(ids)),
        "files": len(files),
        "digest": digest(py_rows),
        "duckdb_rows": len(duck_rows),
        "duckdb_digest": digest(duck_rows),
        "version": dt.version(),
        "file_paths": [os.path.relpath(f.replace("file://", ""), table) for f in files],
    }
    if "date" in cols:
        per_date = {}
        for d in t.column("date").to_pylist():
            per_date[d] = per_date.get(d, 0) + 1
        report["per_date"] = per_date
        files_per_date = {}
        for f in files:
            part = [p for p in f.split("/") if p.startswith("date=")]
            key = part[0][5:] if part else ""
            files_per_date[key] = files_per_date.get(key, 0) + 1
        report["files_per_date"] = files_per_date
    print(json.dumps(report))


def query(table, runs):
    files = DeltaTable(table).file_uris()
    listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    times = []
    for _ in range(runs):
        con = duckdb.connect()  # a fresh connection: no cached metadata
        started = time.perf_counter()
        count, avg = con.sql(
            f"SELECT count(*), avg(val) FROM read_parquet([{listing}])"
        ).fetchone()
        times.append(time.perf_counter() - started)
        con.close()
    times.sort()
    print(json.dumps({"files": len(files), "count": count, "avg": avg, "seconds": times[len(times) // 2]}))


def log(table):
    commits = []
    for path in sorted(glob.glob(os.path.join(table, "_delta_log", "*.json"))):
        actions = [json.loads(line) for line in open(path) if line.strip()]
        info = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
        changes = [
            a[k]["dataChange"] for a in actions for k in ("add", "remove") if k in a
        ]
        commits.append(
            {
                "version": int(os.path.basename(path).split(".")[0]),
                "operation": info.get("operation"),
                "adds": sum(1 for a in actions if "add" in a),
                "removes": sum(1 for a in actions if "remove" in a),
                "data_change": sorted(set(changes)),
            }
        )
    print(json.dumps(commits))


def orphan(table, seconds_old):
    dt = DeltaTable(table)
    src = dt.file_uris()[0].replace("file://", "")
    dst = os.path.join(os.path.dirname(src), "part-99999-in-flight-" + str(os.getpid()) + ".parquet")
    shutil.copyfile(src, dst)
    then = time.time() - seconds_old
    os.utime(dst, (then, then))
    print(os.path.relpath(dst, table))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "make":
        make(args[0], int(args[1]), int(args[2]), *(int(a) for a in args[3:4]))
    elif cmd == "bulk":
        bulk(args[0], int(args[1]), int(args[2]))
    elif cmd == "read":
        read(args[0])
    elif cmd == "query":
        query(args[0], int(args[1]))
    elif cmd == "log":
        log(args[0])
    elif cmd == "orphan":
        orphan(args[0], float(args[1]))
    else:
        sys.exit(f"unknown command {cmd}")
