"""Checks a serve-api stream against Python's own reading of the data file.

usage: api_stream_check.py DATA_FILE SERVED_FILE

The served bytes must be, line by line, the file's records stably sorted by `time`, each as
`json.dumps(record, separators=(",", ":"), ensure_ascii=False)`: the test data is chosen so
that this compact form is exactly the file's text without whitespace. Prints what differs and
exits 1 otherwise.
"""

import json
import sys


def main():
    data_path, served_path = sys.argv[1], sys.argv[2]
    with open(data_path, encoding="utf-8") as f:
        records = json.load(f)
    records.sort(key=lambda r: r["time"])  # Python's sort is stable
    with open(served_path, "rb") as f:
        served = f.read()
    lines = served.split(b"\n")
    if lines[-1] != b"":
        sys.exit(f"the stream does not end in a newline: {lines[-1][:200]!r}")
    lines.pop()
    if len(lines) != len(records):
        sys.exit(f"{len(lines)} lines served, {len(records)} records in the file")
    for i, (line, record) in enumerate(zip(lines, records)):
        expected = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
        if line != expected:
            sys.exit(f"line {i}: served {line[:300]!r}, expected {expected[:300]!r}")
    print(f"ok: {len(lines)} lines")


if __name__ == "__main__":
    main()
