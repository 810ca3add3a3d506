"""Independent oracle for `partition_by_day` (`tests/day_partitions.rs`): Python's own datetime
decides each record's UTC day, pyarrow and DuckDB read the Hive layout.

usage:
  day_partitions.py gen PAYLOADS_JSONL SEED COUNT
      Writes COUNT payloads `{"id", "val", "time"}`: times near UTC midnight over several days
      as RFC 3339 text with offsets from -11:00 to +14:00 (so the local date is often not the
      UTC one), unix seconds (integer, fractional, negative), a few without a time. The first
      lines are fixed cases, e.g. `2021-06-22T23:30:00-02:00`, which belongs to 2021-06-23.
  day_partitions.py check PAYLOADS_JSONL TOPIC_DIR
      Reads TOPIC_DIR with pyarrow (`partitioning="hive"`) and DuckDB
      (`read_parquet('TOPIC_DIR/*/*.parquet', hive_partitioning=true)`): each must hold every
      payload's row exactly once, with `id`, `val` and `time` exact and `date` the UTC date
      Python computes from the payload's own time text (None without a time). Every data file
      must be in a `date=` directory and hold no `date` column itself. Prints a JSON summary;
      exits 1 on any difference.
"""
import json
import os
import random
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from fractions import Fraction

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
OFFSETS = ["Z", "-02:00", "+05:30", "+14:00", "-11:00", "+00:00", "-00:30", "+09:45"]

# (time as it appears in the payload, the UTC date it belongs to), checked literally.
FIXED = [
    ("2021-06-22T23:30:00-02:00", "2021-06-23"),
    ("2021-06-23T01:30:00+05:30", "2021-06-22"),
    ("2021-06-22T23:59:59.999999Z", "2021-06-22"),
    ("2021-06-23T00:00:00Z", "2021-06-23"),
    ("2024-02-29T23:00:00-01:00", "2024-03-01"),
    ("2021-12-31T22:00:00-03:00", "2022-01-01"),
    (1624406399, "2021-06-22"),
    (1624406400, "2021-06-23"),
    (1624406399.999999, "2021-06-22"),
    (-1, "1969-12-31"),
    (-0.5, "1969-12-31"),
    ("1969-12-31T23:59:59.5Z", "1969-12-31"),
    ("1970-01-01T00:30:00+01:00", "1969-12-31"),
    (None, None),
]


def rfc3339(micros, offset):
    """`micros` since 1970 as RFC 3339 text in the given offset."""
    if offset == "Z":
        tz = timezone.utc
    else:
        sign = -1 if offset[0] == "-" else 1
        hours, minutes = map(int, offset[1:].split(":"))
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    local = (EPOCH + timedelta(microseconds=micros)).astimezone(tz)
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if local.microsecond:
        text += f".{local.microsecond:06d}"
    return text + ("Z" if offset == "Z" else local.strftime("%z")[:3] + ":" + local.strftime("%z")[3:])


def gen(path, seed, count):
    rng = random.Random(int(seed))
    midnight = int(datetime(2021, 6, 20, tzinfo=timezone.utc).timestamp()) * 1_000_000
    day = 86_400 * 1_000_000
    with open(path, "w") as f:
        for i in range(int(count)):
            record = {"id": i, "val": rng.uniform(-1e6, 1e6)}
            if i < len(FIXED):
                time = FIXED[i][0]
            else:
                # Within three hours of a UTC midnight, one of six days.
                micros = midnight + rng.randrange(6) * day + rng.randrange(-3 * 3600, 3 * 3600) * 1_000_000
                kind = rng.randrange(10)
                if kind == 0:
                    time = None
                elif kind <= 5:
                    if rng.randrange(2):
                        micros += rng.randrange(1_000_000)
                    time = rfc3339(micros, rng.choice(OFFSETS))
                elif kind <= 7:
                    time = micros // 1_000_000
                else:
                    # Milliseconds: 13 digits, so the JSON text is exactly this decimal.
                    time = float(f"{micros // 1_000_000}.{rng.randrange(1_000):03d}")
            if time is not None:
                record["time"] = time
            f.write(json.dumps(record) + "\n")


def micros_of(time):
    """Microseconds since 1970 of a payload's time, by Python alone."""
    if time is None:
        return None
    if isinstance(time, str):
        dt = datetime.fromisoformat(time.replace("Z", "+00:00"))
        return (dt - EPOCH) // timedelta(microseconds=1)
    exact = Fraction(str(time)) * 1_000_000
    assert exact.denominator == 1, time
    return int(exact)


def utc_date(micros):
    if micros is None:
        return None
    return (EPOCH + timedelta(microseconds=micros)).date().isoformat()


def expected_rows(payloads_path):
    rows = Counter()
    with open(payloads_path) as f:
        for line in f:
            record = json.loads(line)
            micros = micros_of(record.get("time"))
            rows[(record["id"], record["val"], micros, utc_date(micros))] += 1
    return rows


def pyarrow_rows(topic_dir):
    table = ds.dataset(topic_dir, format="parquet", partitioning="hive").to_table()
    time = pc.cast(table.column("time"), pa.int64()).to_pylist()
    dates = [None if d is None else str(d) for d in table.column("date").to_pylist()]
    return Counter(zip(table.column("id").to_pylist(), table.column("val").to_pylist(), time, dates))


def duckdb_rows(topic_dir):
    result = duckdb.sql(
        f"select id, val, epoch_us(time), cast(date as varchar) "
        f"from read_parquet('{topic_dir}/*/*.parquet', hive_partitioning=true)"
    ).fetchall()
    return Counter(tuple(r) for r in result)


def layout_problems(topic_dir):
    problems = []
    files = 0
    for root, dirs, names in os.walk(topic_dir):
        dirs[:] = [d for d in dirs if not d.startswith(("_", "."))]
        for name in names:
            if not name.endswith(".parquet"):
                continue
            files += 1
            parent = os.path.basename(root)
            if not parent.startswith("date="):
                problems.append(f"{root}/{name} is not in a date= directory")
            if "date" in pq.read_schema(os.path.join(root, name)).names:
                problems.append(f"{root}/{name} holds a date column itself")
    return files, problems


def diff(name, got, wanted):
    if got == wanted:
        return []
    extra = list((got - wanted).items())[:3]
    missing = list((wanted - got).items())[:3]
    return [f"{name}: {sum(got.values())} rows for {sum(wanted.values())}; extra e.g. {extra}, missing e.g. {missing}"]


def check(payloads_path, topic_dir):
    wanted = expected_rows(payloads_path)
    problems = []
    for time, date in FIXED:
        if utc_date(micros_of(time)) != date:
            problems.append(f"oracle: {time!r} should be on {date}")
    if any(n != 1 for n in wanted.values()):
        problems.append("payloads are not all different")
    files, layout = layout_problems(topic_dir)
    problems += layout
    by_pyarrow = pyarrow_rows(topic_dir)
    by_duckdb = duckdb_rows(topic_dir)
    problems += diff("pyarrow", by_pyarrow, wanted)
    problems += diff("duckdb", by_duckdb, wanted)
    days = sorted({k[3] for k in by_pyarrow}, key=lambda d: (d is None, d or ""))
    print(json.dumps({
        "records": sum(wanted.values()),
        "pyarrow": sum(by_pyarrow.values()),
        "duckdb": sum(by_duckdb.values()),
        "files": files,
        "days": days,
        "problems": problems,
    }))
    return 1 if problems else 0


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(*sys.argv[2:5])
    else:
        sys.exit(check(*sys.argv[2:4]))
