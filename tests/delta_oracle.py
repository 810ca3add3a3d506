"""Independent judge of a Delta table written from `metrics`-shaped records.

usage: delta_oracle.py PAYLOADS ROWS_JSON [--day-partitioned]

PAYLOADS holds the exact payloads written to Kafka, one per line; the good ones are JSON
objects {"id": int, "val": number, "time": seconds or RFC 3339 text}, and each id is
unique. Lines that are not such an object are bad records and must not be in the table.
ROWS_JSON is what `tests/delta_read.py` printed for the table (both the `deltalake` package
and DuckDB read it, and agreed).

Checks, all with Python's own parsers (json's correctly rounded floats, exact rational
arithmetic for seconds, datetime for RFC 3339): every good payload is a row exactly once,
no other row exists, `val` is bit-for-bit the float json parses, `time` is the instant in
microseconds, and with --day-partitioned `date` is the UTC day of `time`. Prints a JSON
summary; exits 1 on any difference.
"""
import datetime
import json
import sys
from collections import Counter
from fractions import Fraction

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def micros(value):
    """The instant of a payload's `time` in whole microseconds (ties to even)."""
    if isinstance(value, str):
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        delta = parsed - EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return round(Fraction(str(value)) * 1_000_000)


def utc_day(us):
    return (EPOCH + datetime.timedelta(microseconds=us)).strftime("%Y-%m-%d")


def expected_rows(path):
    rows = {}
    bad = 0
    with open(path, "rb") as f:
        for line in f.read().split(b"\n"):
            if not line:
                continue
            try:
                record = json.loads(line)
                if not isinstance(record["id"], int) or not -2**31 <= record["id"] < 2**31:
                    raise ValueError("id is not an int32")
                row = (record["id"], float(record["val"]), micros(record["time"]))
            except (ValueError, KeyError, TypeError, OverflowError):
                bad += 1
                continue
            assert row[0] not in rows, f"test data repeats id {row[0]}"
            rows[row[0]] = row
    return rows, bad


def main(payloads, rows_json, day_partitioned):
    expected, bad = expected_rows(payloads)
    with open(rows_json) as f:
        table = json.load(f)
    problems = []
    seen = Counter(r["id"] for r in table["rows"])
    twice = sorted(i for i, n in seen.items() if n > 1)
    missing = sorted(set(expected) - set(seen))
    extra = sorted(set(seen) - set(expected))
    if twice:
        problems.append(f"{len(twice)} ids more than once, e.g. {twice[:5]}")
    if missing:
        problems.append(f"{len(missing)} ids missing, e.g. {missing[:5]}")
    if extra:
        problems.append(f"{len(extra)} ids that no good payload has, e.g. {extra[:5]}")
    wrong = []
    for r in table["rows"]:
        want = expected.get(r["id"])
        if want is None:
            continue
        got = (r["id"], r["val"], r["time"])
        if got != want or (isinstance(r["val"], float) and r["val"].hex() != want[1].hex()):
            wrong.append({"got": got, "want": want})
        elif day_partitioned and r.get("date") != utc_day(want[2]):
            wrong.append({"id": r["id"], "date": r.get("date"), "want": utc_day(want[2])})
    if wrong:
        problems.append(f"{len(wrong)} rows with wrong values, e.g. {wrong[:3]}")
    summary = {
        "good_payloads": len(expected),
        "bad_payloads": bad,
        "rows": len(table["rows"]),
        "problems": problems,
    }
    print(json.dumps(summary))
    return 1 if problems else 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    sys.exit(main(args[0], args[1], "--day-partitioned" in sys.argv))
