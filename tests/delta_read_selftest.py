#!/usr/bin/env python3
"""Self-check of tests/delta_read.py before any table of factorypal's exists: Delta tables are
written with the Python `deltalake` package (partitioned by a `date` column), then delta_read.py
runs as its own process on them and must report exactly what was written; its poll mode must
pass a table that only grows and flag one whose rows are taken back or duplicated.

usage: delta_read_selftest.py BASE     BASE: an empty local directory or s3://bucket/prefix
                                       (S3 settings from the environment, as delta_read.py)
"""

import json
import math
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

sys.path.insert(0, str(Path(__file__).resolve().parent))
import delta_read  # noqa: E402  (the module under test, for its comparison function)

READER = Path(__file__).resolve().parent / "delta_read.py"
WAIT_S = 60

# Values that must come back exactly: floats whose shortest repr needs 17 digits, the smallest
# subnormal, the largest double, negative zero; timestamps before 1970 and with microseconds;
# strings with quotes, backslashes and characters outside the BMP.
FLOATS = [0.1, 1 / 3, 5e-324, 1.7976931348623157e308, -0.0, 2.0000000000000004, 123456.789]
MICROS = [-1, 0, 1_624_320_000_123_456, 1_624_406_399_999_999, 1_624_406_400_000_000, 1, 2]
STRINGS = ['a"b', "back\\slash", "äöü €", "😀", "", "line\nbreak", "plain"]


def date_of(micros):
    return time.strftime("%Y-%m-%d", time.gmtime(micros // 1_000_000))


def batch(ids):
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "val": pa.array([FLOATS[i % len(FLOATS)] for i in ids], pa.float64()),
            "time": pa.array([MICROS[i % len(MICROS)] for i in ids], pa.timestamp("us", "UTC")),
            "name": pa.array([STRINGS[i % len(STRINGS)] for i in ids], pa.string()),
            "date": pa.array([date_of(MICROS[i % len(MICROS)]) for i in ids], pa.string()),
        }
    )


def expected_rows(ids):
    return [
        {
            "id": i,
            "val": FLOATS[i % len(FLOATS)],
            "time": MICROS[i % len(MICROS)],
            "name": STRINGS[i % len(STRINGS)],
            "date": date_of(MICROS[i % len(MICROS)]),
        }
        for i in ids
    ]


def options(uri):
    return delta_read.deltalake_options(uri)


def write(uri, ids, mode="append"):
    write_deltalake(uri, batch(ids), mode=mode, partition_by=["date"], storage_options=options(uri))


def check(cond, what):
    if not cond:
        raise SystemExit(f"delta_read_selftest: FAILED: {what}")
    print(f"ok   {what}")


def run_reader(*args):
    return subprocess.run(
        [sys.executable, str(READER), *args], capture_output=True, text=True, timeout=120
    )


def same_float(a, b):
    return a == b and math.copysign(1, a) == math.copysign(1, b)


def check_read_mode(base):
    uri = f"{base}/read"
    write(uri, list(range(7)))
    write(uri, [7, 8])
    out = run_reader(uri)
    check(out.returncode == 0, f"read mode exits 0 on {uri} ({out.stderr.strip()})")
    doc = json.loads(out.stdout)
    check(doc["version"] == 1, f"version is 1 after two commits (got {doc['version']})")
    dates_first = {date_of(MICROS[i % len(MICROS)]) for i in range(7)}
    dates_second = {date_of(MICROS[i % len(MICROS)]) for i in (7, 8)}
    want_files = len(dates_first) + len(dates_second)
    check(doc["files"] == want_files, f"files is {want_files}, one per partition and commit (got {doc['files']})")
    check(doc["partition_columns"] == ["date"], f"partition_columns is ['date'] (got {doc['partition_columns']})")
    types = {f["name"]: f["type"] for f in doc["schema"]}
    check(types == {"id": "long", "val": "double", "time": "timestamp", "name": "string", "date": "string"},
          f"schema names Delta's types ({types})")
    rows = sorted(doc["rows"], key=lambda r: r["id"])
    want = expected_rows(range(9))
    check([r["id"] for r in rows] == list(range(9)), "every row once")
    check(all(r.keys() == w.keys() for r, w in zip(rows, want)), "every column in every row")
    check(all(same_float(r["val"], w["val"]) for r, w in zip(rows, want)), "floats exact (incl. -0.0, 5e-324)")
    check([r["time"] for r in rows] == [w["time"] for w in want], "timestamps as exact microseconds (incl. before 1970)")
    check([r["name"] for r in rows] == [w["name"] for w in want], "strings as they are")
    check([r["date"] for r in rows] == [w["date"] for w in want], "the date partition values")
    if not base.startswith("s3://"):
        dirs = sorted(p.name for p in Path(uri).iterdir() if p.name.startswith("date="))
        check(dirs == sorted(f"date={d}" for d in dates_first | dates_second), f"Hive-style partition directories {dirs}")

    one = batch([1, 2])
    check(delta_read.disagreement(one, one) is None, "disagreement(): none for equal tables")
    other = batch([1, 3])
    check("differ" in (delta_read.disagreement(one, other) or ""), "disagreement(): another row is found")
    check("differ" in (delta_read.disagreement(one, batch([1, 2, 2])) or ""), "disagreement(): a duplicate row is found")
    check("columns" in (delta_read.disagreement(one, one.drop_columns(["name"])) or ""), "disagreement(): a missing column is found")
    out = run_reader(f"{base}/no-such-table")
    check(out.returncode == 1 and "delta_read.py:" in out.stderr, f"a missing table exits 1 with a message ({out.stderr.strip()[:100]})")


def wait_for_version(summary_file, version, poller):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if summary_file.exists():
            doc = json.loads(summary_file.read_text())
            if version in doc["versions"]:
                return
        if poller.poll() is not None:
            raise SystemExit(f"delta_read_selftest: the poller exited early: {poller.stderr.read()}")
        time.sleep(0.05)
    raise SystemExit(f"delta_read_selftest: the poller did not see version {version} within {WAIT_S} s")


def poll_run(uri, summary_file, steps):
    """Start the poller on uri (before the table exists), run each step once the poller has seen
    the previous version, stop it with SIGTERM; return (exit code, summary)."""
    poller = subprocess.Popen(
        [sys.executable, str(READER), uri, "--poll", "300", "--out", str(summary_file), "--key", "id"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for version, step in enumerate(steps):
            step()
            wait_for_version(summary_file, version, poller)
        poller.send_signal(signal.SIGTERM)
        poller.wait(timeout=WAIT_S)
    finally:
        if poller.poll() is None:
            poller.kill()
            poller.wait()
    return poller.returncode, json.loads(summary_file.read_text())


def check_poll_mode(base, scratch):
    uri = f"{base}/poll-good"
    code, doc = poll_run(
        uri,
        scratch / "poll-good.json",
        [lambda: write(uri, list(range(100))), lambda: write(uri, list(range(100, 250))), lambda: write(uri, [250])],
    )
    check(code == 0, f"poll mode exits 0 on a table that only grows (exit {code})")
    check(doc["finished"] and doc["versions"] == [0, 1, 2], f"it saw versions 0, 1, 2 and finished ({doc['versions']})")
    check(doc["max_rows"] == 251 and doc["violations"] == [], f"251 rows, no violations ({doc['violations']})")

    uri = f"{base}/poll-bad"
    code, doc = poll_run(
        uri,
        scratch / "poll-bad.json",
        [
            lambda: write(uri, list(range(100))),
            lambda: write(uri, list(range(60)), mode="overwrite"),  # 40 rows taken back
            lambda: write(uri, [0, 1, 2]),  # 3 keys twice
        ],
    )
    kinds = [(v["version"], v["kind"], v["count"]) for v in doc["violations"]]
    check(code == 1, f"poll mode exits 1 when rows are taken back or duplicated (exit {code})")
    check(kinds == [(1, "taken_back", 40), (2, "duplicate", 3)], f"violations name version, kind and count ({kinds})")
    taken = doc["violations"][0]
    check(taken["since_version"] == 0 and len(taken["keys"]) == 10 and all(k[0] >= 60 for k in taken["keys"]),
          "a taken-back violation lists (up to 10 of) the keys gone")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    base = sys.argv[1].rstrip("/")
    check_read_mode(base)
    with tempfile.TemporaryDirectory(prefix="delta-read-selftest-") as scratch:
        check_poll_mode(base, Path(scratch))
    print(f"delta_read_selftest: all checks passed on {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
