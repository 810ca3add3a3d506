"""Independent oracle for `tests/values.rs`: hard-to-round numbers, and what they must become.

usage: exact_values.py gen PAYLOADS_FILE SEED COUNT
       exact_values.py check TOPIC_DIR PAYLOADS_FILE

`gen` writes one JSON object per line, {"id", "f64", "f32", "ts"}, with number spellings chosen
to be hard: random 64-bit patterns (shortest, 17 and 25 significant digits), subnormals, the
extremes, values next to float32 rounding midpoints, and timestamps with up to 9 fractional
digits.

`check` reads the Parquet output with pyarrow and compares every value, bit for bit, with what
Python computes from the payload text on its own: `json` (whose floats are correctly rounded)
for float64, exact rational arithmetic (`fractions`) for float32 and for timestamps (the
nearest microsecond, ties to even). It prints a JSON summary and exits 1 on any difference.
"""
import json
import random
import struct
import sys
from fractions import Fraction

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

F32_MAX_BITS = 0x7F7FFFFF


def f64_from_bits(bits):
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def f64_bits(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def f32_value(bits):
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def spellings_of_double(x):
    return [repr(x), "%.17g" % x, "%.25g" % x, "%.17e" % x]


def hard_doubles(rng, count):
    fixed = [
        "2.2250738585072011e-308",  # serde_json's default parser makes this DBL_MIN
        "2.2250738585072014e-308",
        "4.9406564584124654e-324",
        "5e-324",
        "1.7976931348623157e308",
        "1012.6612174390209",
        "0.1",
        "-0.0",
        "9007199254740993",
        "123456789012345678901234567890",
        "0.30000000000000004",
        "1.00000000000000011102230246251565404236316680908203125",
    ]
    out = list(fixed)
    while len(out) < count:
        kind = rng.random()
        if kind < 0.1:
            bits = rng.getrandbits(52) | (rng.getrandbits(1) << 63)  # subnormal
        else:
            bits = rng.getrandbits(64)
        x = f64_from_bits(bits)
        if x != x or x in (float("inf"), float("-inf")):
            continue
        out.append(rng.choice(spellings_of_double(x)))
    return out


def hard_floats32(rng, count):
    out = ["3.4028234663852886e38", "1e-45", "1.1754943508222875e-38",
           "1.00000005960464477550387242", "16777217", "0.1"]
    while len(out) < count:
        bits = rng.getrandbits(31)
        if bits > F32_MAX_BITS - 1:
            continue
        lo, hi = Fraction(f32_value(bits)), Fraction(f32_value(bits + 1))
        mid = (lo + hi) / 2
        kind = rng.random()
        if kind < 0.4:  # a hair either side of the midpoint: where rounding twice goes wrong
            eps = (hi - lo) / (2 ** rng.randint(30, 60))
            x = mid + eps if rng.random() < 0.5 else mid - eps
        elif kind < 0.5:
            x = mid  # an exact tie
        else:
            x = lo
        if x == 0:
            continue
        sign = "-" if rng.random() < 0.5 else ""
        out.append(sign + decimal_text(x))
    return out


def decimal_text(x):
    """The exact decimal expansion of a dyadic rational, in scientific notation."""
    num, den = x.numerator, x.denominator
    k = den.bit_length() - 1  # den is a power of two
    digits = str(num * 5 ** k)  # x = digits / 10^k
    exponent = len(digits) - 1 - k
    return f"{digits[0]}.{digits[1:] or '0'}e{exponent}"


def hard_timestamps(rng, count):
    out = ["0", "1767225600", "1.000001", "-1.5", "0.0000015", "0.0000025",
           "253402300799.999999", "-62135596800", "1.7672256001234567e9"]
    while len(out) < count:
        secs = rng.randint(-62135596800, 253402300798)
        frac = rng.randint(0, 10 ** 9 - 1)
        digits = rng.choice([0, 3, 6, 7, 9])
        text = str(secs) if digits == 0 else f"{secs}.{str(frac).zfill(9)[:digits]}"
        out.append(text)
    return out


def gen(path, seed, count):
    rng = random.Random(seed)
    f64 = hard_doubles(rng, count)
    f32 = hard_floats32(rng, count)
    ts = hard_timestamps(rng, count)
    with open(path, "w") as f:
        for i in range(count):
            f.write(f'{{"id": {i}, "f64": {f64[i]}, "f32": {f32[i]}, "ts": {ts[i]}}}\n')


def nearest_f32_bits(text):
    """The float32 nearest to the decimal `text`, ties to even, by exact arithmetic."""
    x = Fraction(text)
    sign = 0x80000000 if text.lstrip().startswith("-") else 0
    x = abs(x)
    guess = f32_bits(float(x)) if float(x) <= 3.4028234663852886e38 else F32_MAX_BITS
    best = None
    for b in (guess - 1, guess, guess + 1):
        if b < 0 or b > F32_MAX_BITS:
            continue
        d = abs(Fraction(f32_value(b)) - x)
        if best is None or d < best[0] or (d == best[0] and b % 2 == 0):
            best = (d, b)
    return best[1] | sign


def raw_numbers(line):
    """The spellings of the numbers in one payload line, as written (json would convert)."""
    texts = {}
    json.loads(line, parse_float=lambda t: t, parse_int=lambda t: t, object_hook=texts.update)
    return texts


def check(topic_dir, payloads):
    table = ds.dataset(topic_dir, format="parquet").to_table()
    got = {
        "id": table.column("id").to_pylist(),
        "f64": table.column("f64").to_pylist(),
        "f32": table.column("f32").cast(pa.float32()).to_pylist(),
        "ts": pc.cast(table.column("ts"), pa.int64()).to_pylist(),
    }
    rows = {i: n for n, i in enumerate(got["id"])}
    mismatches = []
    lines = open(payloads).read().splitlines()
    for line in lines:
        parsed = json.loads(line)  # Python's own, correctly rounded, float parser
        texts = raw_numbers(line)
        i = parsed["id"]
        if i not in rows:
            mismatches.append({"id": i, "problem": "row missing"})
            continue
        n = rows[i]
        want = {
            "f64": f64_bits(parsed["f64"]),
            "f32": nearest_f32_bits(texts["f32"]),
            "ts": round(Fraction(texts["ts"]) * 10 ** 6),
        }
        have = {
            "f64": f64_bits(got["f64"][n]),
            "f32": f32_bits(got["f32"][n]),
            "ts": got["ts"][n],
        }
        for col in want:
            if want[col] != have[col]:
                mismatches.append({"id": i, "column": col, "text": texts[col],
                                   "want": want[col], "have": have[col]})
    print(json.dumps({"payloads": len(lines), "rows": table.num_rows,
                      "mismatches": len(mismatches), "first": mismatches[:10]}))
    return 0 if not mismatches and table.num_rows == len(lines) else 1


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(check(sys.argv[2], sys.argv[3]))
