#!/usr/bin/env python3
"""An independent reader of a Delta table, for the Delta sink's tests: the Python `deltalake`
package (delta-rs's Python binding, its own build) and DuckDB's delta extension (delta-kernel-rs)
both read the table, and the two must agree.

usage: delta_read.py URI
       delta_read.py URI --poll SECONDS --out FILE --key COL[,COL...]

URI is a local path or s3://bucket/prefix/table. For s3:// the settings come from the
environment, the variables of scripts/s3proxy-local.sh's s3.env: AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION (or FACTORYPAL__STORAGE__REGION),
FACTORYPAL__STORAGE__ENDPOINT (http://HOST:PORT) and FACTORYPAL__STORAGE__ALLOW_HTTP.

Read mode prints one JSON document on stdout:
  {"version": N, "files": active data files, "partition_columns": [...],
   "schema": [{"name": ..., "type": Delta type, e.g. "timestamp"}], "rows": [{...}, ...]}
Rows are objects, sorted by their JSON text. Values: integers and strings as they are; floats
as Python's repr (they round-trip exactly; NaN and infinities as the strings "NaN",
"Infinity", "-Infinity"); timestamps as integer microseconds since the epoch (UTC); dates as
"YYYY-MM-DD"; decimals as strings; binary as hex. Exit 1 with a message on stderr when the two
readers disagree (other columns, or another multiset of rows).

Poll mode (a crash test's reader during the crashes) loads the newest version with `deltalake`
again and again for at most SECONDS (or until SIGTERM/SIGINT), reads the key columns of each new
version it sees, and checks: no key twice within a version, and every key of the previously seen
version still there (no row taken back). A table that does not exist yet is waited for. It
writes {"finished": bool, "versions": [seen...], "max_rows": N, "violations": [...],
"violation_count": N, "errors": [...], "error_count": N} to FILE (atomically) after each new
version it saw and at the end ("finished": true), and exits 1 if there is any violation. A
violation is {"version", "kind": "duplicate" | "taken_back", "count", "keys": [first 10]}
("taken_back" also names "since_version"); keys are lists of the key columns' values.

DuckDB's extensions are LOADed from the files the PyPI packages duckdb-extension-delta and
duckdb-extension-httpfs install, with autoinstall and autoload off: nothing is downloaded.
"""

import argparse
import base64
import datetime
import decimal
import importlib.util
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import deltalake
import duckdb
import pyarrow as pa
import pyarrow.compute as pc

POLL_PAUSE_S = 0.1
# Violations and errors kept in the summary (each with the count of what was left out).
MAX_REPORTED = 20
KEYS_PER_VIOLATION = 10


def fail(message):
    print(f"delta_read.py: {message}", file=sys.stderr)
    sys.exit(1)


# --- Settings -------------------------------------------------------------------------------


def is_s3(uri):
    return uri.startswith("s3://") or uri.startswith("s3a://")


def s3_settings():
    """Endpoint, region, key id, secret and allow_http from the environment (s3.env)."""
    env = os.environ
    missing = [v for v in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not env.get(v)]
    if missing:
        fail(f"an s3:// table needs {', '.join(missing)} (source the s3.env of s3proxy-local.sh)")
    return {
        "endpoint": env.get("FACTORYPAL__STORAGE__ENDPOINT") or env.get("AWS_ENDPOINT_URL"),
        "region": env.get("FACTORYPAL__STORAGE__REGION") or env.get("AWS_REGION") or "us-east-1",
        "key_id": env["AWS_ACCESS_KEY_ID"],
        "secret": env["AWS_SECRET_ACCESS_KEY"],
        "allow_http": (env.get("FACTORYPAL__STORAGE__ALLOW_HTTP") or "false").lower() == "true",
    }


def deltalake_options(uri):
    """storage_options for the `deltalake` package (object_store's AWS keys)."""
    if not is_s3(uri):
        return None
    s = s3_settings()
    opts = {
        "AWS_ACCESS_KEY_ID": s["key_id"],
        "AWS_SECRET_ACCESS_KEY": s["secret"],
        "AWS_REGION": s["region"],
        "AWS_ALLOW_HTTP": "true" if s["allow_http"] else "false",
    }
    if s["endpoint"]:
        opts["AWS_ENDPOINT_URL"] = s["endpoint"]
    return opts


def local_uri(uri):
    if is_s3(uri) or "://" in uri:
        return uri
    path = Path(uri)
    if not path.is_dir():
        fail(f"{uri}: no such directory (a Delta table is a directory with _delta_log/)")
    return str(path.resolve())


# --- DuckDB -----------------------------------------------------------------------------------


def extension_file(package, name):
    """The .duckdb_extension file a duckdb-extension-* package installed for this duckdb."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        fail(
            f"the Python package {package} is not installed (scripts/test-pyenv.sh installs it); "
            "extensions are loaded from it, never downloaded"
        )
    root = Path(list(spec.submodule_search_locations)[0]) / "extensions"
    path = root / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.is_file():
        found = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
        fail(
            f"{package} has no {name} extension for duckdb {duckdb.__version__} (it has {found}): "
            "pin duckdb to the version the extension package was built for"
        )
    return path


def duckdb_connection(uri):
    con = duckdb.connect(
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
    if is_s3(uri):
        con.execute(f"LOAD '{extension_file('duckdb_extension_httpfs', 'httpfs')}'")
    con.execute(f"LOAD '{extension_file('duckdb_extension_delta', 'delta')}'")
    if is_s3(uri):
        s = s3_settings()
        endpoint = s["endpoint"] or ""
        use_ssl = not endpoint.startswith("http://")
        host = endpoint.split("://", 1)[-1].rstrip("/")
        con.execute(
            "CREATE SECRET factorypal_s3 (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, ENDPOINT ?, "
            "URL_STYLE 'path', USE_SSL ?)",
            [s["key_id"], s["secret"], s["region"], host, use_ssl],
        )
    return con


def read_duckdb(uri):
    con = duckdb_connection(uri)
    try:
        return con.execute("SELECT * FROM delta_scan(?)", [uri]).to_arrow_table()
    except duckdb.Error as e:
        fail(f"DuckDB's delta_scan could not read {uri}: {e}")
    finally:
        con.close()


# --- Values -------------------------------------------------------------------------------------


def timestamps_as_micros(table):
    """Top-level timestamp columns as int64 microseconds since the epoch (UTC)."""
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            col = table.column(i)
            if field.type.unit != "us":
                col = pc.cast(col, pa.timestamp("us", field.type.tz))
            table = table.set_column(i, field.name, pc.cast(col, pa.int64()))
    return table


def plain(value):
    """A value as the JSON document shows it (see the module doc)."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        delta = value - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def rows_of(table):
    """Rows as plain dicts, sorted by their JSON text (a multiset in a canonical order)."""
    rows = [
        {k: plain(v) for k, v in row.items()} for row in timestamps_as_micros(table).to_pylist()
    ]
    keyed = sorted((json.dumps(r, sort_keys=True), r) for r in rows)
    return [r for _, r in keyed], [k for k, _ in keyed]


# --- Read mode ---------------------------------------------------------------------------------


def open_table(uri, version=None):
    return deltalake.DeltaTable(uri, version=version, storage_options=deltalake_options(uri))


def first_difference(a, b):
    """A short description of how two sorted lists of row texts differ."""
    only_a = sorted(set(a) - set(b))[:3]
    only_b = sorted(set(b) - set(a))[:3]
    return f"only in deltalake: {only_a}; only in DuckDB: {only_b}"


def disagreement(lake, duck):
    """None if the two readers' tables hold the same columns and the same multiset of rows,
    else what differs."""
    lake_cols, duck_cols = sorted(lake.column_names), sorted(duck.column_names)
    if lake_cols != duck_cols:
        return f"deltalake reads columns {lake_cols}, DuckDB reads {duck_cols}"
    _, lake_text = rows_of(lake)
    _, duck_text = rows_of(duck)
    if lake_text != duck_text:
        return (
            f"deltalake reads {len(lake_text)} rows, DuckDB {len(duck_text)}, and they differ: "
            f"{first_difference(lake_text, duck_text)}"
        )
    return None


def read(uri):
    try:
        dt = open_table(uri)
    except Exception as e:  # deltalake raises several exception types for a missing table
        fail(f"deltalake could not open the Delta table {uri}: {e}")
    version = dt.version()
    # Both read the newest version: call this on a table nobody is committing to (poll mode is
    # for tables being written).
    lake = dt.to_pyarrow_table()
    problem = disagreement(lake, read_duckdb(uri))
    if problem:
        fail(f"{uri} (version {version}): {problem}")
    lake_rows, _ = rows_of(lake)
    report = {
        "version": version,
        "files": len(dt.file_uris()),
        "partition_columns": list(dt.metadata().partition_columns),
        "schema": [{"name": f.name, "type": delta_type(f.type)} for f in dt.schema().fields],
        "rows": lake_rows,
    }
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")


def delta_type(t):
    """A Delta schema type as text: the primitive's name (long, timestamp...) or its repr."""
    name = getattr(t, "type", None)
    return name if isinstance(name, str) else repr(t)


# --- Poll mode ---------------------------------------------------------------------------------


class Stop(Exception):
    pass


def on_signal(_signum, _frame):
    raise Stop()


class Summary:
    def __init__(self):
        self.versions = []
        self.max_rows = 0
        self.violations = []
        self.violation_count = 0
        self.errors = []
        self.error_count = 0

    def violation(self, entry):
        self.violation_count += 1
        if len(self.violations) < MAX_REPORTED:
            self.violations.append(entry)

    def error(self, text):
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(text)

    def write(self, out, finished):
        """The summary into out, atomically (a reader never sees half of it)."""
        tmp = Path(f"{out}.tmp")
        tmp.write_text(json.dumps(self.as_json(finished)) + "\n")
        tmp.replace(out)

    def as_json(self, finished):
        return {
            "finished": finished,
            "versions": self.versions,
            "max_rows": self.max_rows,
            "violations": self.violations,
            "violation_count": self.violation_count,
            "errors": self.errors,
            "error_count": self.error_count,
        }


def key_list(dt, key_cols):
    table = timestamps_as_micros(dt.to_pyarrow_table(columns=key_cols))
    cols = [table.column(c).to_pylist() for c in key_cols]
    return [tuple(plain(v) for v in row) for row in zip(*cols)]


def check_version(summary, version, keys, previous):
    """Record version's checks against the previously seen version's key set; return its set."""
    seen = set(keys)
    summary.versions.append(version)
    summary.max_rows = max(summary.max_rows, len(keys))
    if len(seen) != len(keys):
        counts = {}
        for k in keys:
            counts[k] = counts.get(k, 0) + 1
        dups = [list(k) for k, n in counts.items() if n > 1]
        summary.violation(
            {"version": version, "kind": "duplicate", "count": len(dups),
             "keys": dups[:KEYS_PER_VIOLATION]}
        )
    if previous is not None:
        gone = previous[1] - seen
        if gone:
            summary.violation(
                {"version": version, "kind": "taken_back", "since_version": previous[0],
                 "count": len(gone), "keys": [list(k) for k in sorted(gone, key=repr)[:KEYS_PER_VIOLATION]]}
            )
    return (version, seen)


def poll(uri, seconds, out, key_cols):
    summary = Summary()
    deadline = time.monotonic() + seconds
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    dt, previous = None, None
    try:
        while time.monotonic() < deadline:
            try:
                if dt is None:
                    dt = open_table(uri)
                else:
                    dt.update_incremental()
                version = dt.version()
                if previous is None or version != previous[0]:
                    previous = check_version(summary, version, key_list(dt, key_cols), previous)
                    summary.write(out, finished=False)
            except Stop:
                raise
            except deltalake.exceptions.TableNotFoundError as e:
                if dt is not None:  # it was there: worth a note; before its first commit: wait
                    summary.error(f"TableNotFoundError: {e}")
            except Exception as e:  # a read failing (e.g. a file gone): note it and go on
                summary.error(f"{type(e).__name__}: {e}")
            time.sleep(POLL_PAUSE_S)
    except Stop:
        pass
    summary.write(out, finished=True)
    if summary.violation_count:
        fail(f"{uri}: {summary.violation_count} violation(s), see {out}: {summary.violations[:2]}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("uri")
    p.add_argument("--poll", type=float, metavar="SECONDS")
    p.add_argument("--out")
    p.add_argument("--key", help="key columns, comma-separated (poll mode)")
    a = p.parse_args()
    uri = local_uri(a.uri) if a.poll is None else a.uri
    if a.poll is None:
        if a.out or a.key:
            p.error("--out and --key belong to --poll")
        read(uri)
        return
    if not a.out or not a.key:
        p.error("--poll needs --out FILE and --key COL[,COL...]")
    poll(uri if is_s3(uri) else str(Path(uri).resolve()), a.poll, a.out, a.key.split(","))


if __name__ == "__main__":
    main()
