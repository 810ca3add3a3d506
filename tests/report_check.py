"""The independent check of `factorypal report`: recomputes every row of correlations.csv from
the source JSON files with numpy and scipy, following the Method section of the report's spec
(issue 13) and nothing of factorypal's but the CSV under test.

usage:
  report_check.py check --metrics M.json --workorders W.json --csv correlations.csv
                        --max-lag K [--from T] [--to T] [--alpha A]
      Exit 0 and one JSON line (rows, defined, significant, top3 per product, whether each
      product's top three are all significant) when every CSV row matches; else exit 1 and the
      first mismatches, one a line.
  report_check.py top3 --metrics M.json --workorders W.json --max-lag K [--from T] [--to T]
      One JSON line: per product, the top three metric ids by the spec's ranking.
  report_check.py exact-r --metrics M.json --workorders W.json --csv correlations.csv
                          --max-lag K [--rtol 1e-11] [--reference-rtol 1e-11]
      Each defined pearson_r of the CSV against the exact r of the same pairs (rational
      arithmetic on the same doubles), on rows where scipy's r is itself within
      --reference-rtol of exact. Exit 1 and the rows further than --rtol.
  report_check.py offsets --out DIR [--seed S] [--intervals N]
      Writes metrics.json and workorder.json where one-pass sums lose digits (a metric on an
      offset of 1e9, a counter starting at 1e12): the data of exact-r's test.
  report_check.py shuffle --in M.json --out SHUFFLED.json [--seed S]
      The null case: each metric id's `val`s permuted across that id's samples (fixed seed);
      ids, times and record order kept.

Inputs are the JSON arrays the pipeline was fed (`{"id","val","time"}` and
`{"time","product","production"}`, time in unix seconds); Python's json reads NaN, Infinity
and null, so the same files also describe data written to Parquet directly.
"""
import argparse
import csv
import datetime
import json
import math
import sys
import warnings

import numpy as np
import scipy
from scipy import stats

HEADER = "product,metric,lag,n,pearson_r,spearman_rho,p_value,p_adjusted,significant,note"

# Equality of floats: relative 1e-9. Two absolute floors, each only where a relative test is
# meaningless:
# * r and rho within 1e-12 of each other when the expected value is within 1e-12 of 0: near 0
#   the relative error of a correlation computed two ways (different summation orders) is
#   unbounded, while its absolute error stays at a few ulps of 1.
# * p values (raw and adjusted) below 1e-300 on both sides: there doubles go subnormal and carry
#   fewer than 53 bits, so two correct evaluations of the tail need not agree to 1e-9.
RTOL = 1e-9
R_FLOOR = 1e-12
P_FLOOR = 1e-300


def parse_time(text):
    """RFC 3339 or unix seconds, as unix seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        sys.exit(f"--from/--to {text!r} has no time zone")
    return t.timestamp()


def load(path):
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, list):
        sys.exit(f"{path}: not a JSON array")
    return data


def number(v):
    """A finite float, or None for null, a non-number or NaN/±inf."""
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def in_window(t, lo, hi):
    return (lo is None or t >= lo) and (hi is None or t < hi)


def key_order(k):
    """Integers numerically, strings lexically (integers first)."""
    return (0, k, "") if isinstance(k, int) else (1, 0, k)


def label(k):
    return str(k)


def intervals(workorders, lo, hi):
    """Per product: (starts, ends, outputs) with output NaN where the step is negative.

    Method steps 1-2."""
    per = {}
    for w in workorders:
        p, t, out = w.get("product"), w.get("time"), number(w.get("production"))
        if p is None or t is None or out is None:
            continue
        if not in_window(t, lo, hi):
            continue
        per.setdefault(p, []).append((t, out))
    result = {}
    for p, rows in per.items():
        rows.sort()
        starts, ends, outputs = [], [], []
        for (t0, o0), (t1, o1) in zip(rows, rows[1:]):
            if t1 > t0:
                step = o1 - o0
                starts.append(t0)
                ends.append(t1)
                outputs.append(step if step >= 0 else math.nan)
        result[p] = (np.array(starts, float), np.array(ends, float), np.array(outputs, float))
    return result


def interval_means(samples, starts, ends):
    """mean[m] = array over intervals (NaN where no sample). Method step 3.

    Each mean is the exact arithmetic mean of the interval's samples, rounded once to a double
    (rational arithmetic): the reference value, which also makes the mean of identical samples
    that very value (a sum rounded and then divided need not: three 0.1s give
    0.10000000000000002), so a metric that never changes is "constant", as the spec says."""
    from fractions import Fraction

    means = {}
    k = len(starts)
    for m, (times, vals) in samples.items():
        j = np.searchsorted(starts, times, side="right") - 1
        inside = (times < ends[np.clip(j, 0, k - 1)]) if k else np.zeros(len(times), bool)
        ok = (j >= 0) & inside
        groups = {}
        for jj, v in zip(j[ok].tolist(), vals[ok].tolist()):
            groups.setdefault(jj, []).append(v)
        mean = np.full(k, np.nan)
        for jj, vs in groups.items():
            mean[jj] = float(sum(map(Fraction, vs)) / len(vs))
        means[m] = mean
    return means


def metric_samples(metrics, lo, hi):
    """Per metric id: (times, values) of the usable samples, and every id seen."""
    ids = set()
    per = {}
    for r in metrics:
        m = r.get("id")
        if m is None:
            continue
        ids.add(m)
        t, v = r.get("time"), number(r.get("val"))
        if t is None or v is None or not in_window(t, lo, hi):
            continue
        per.setdefault(m, ([], []))
        per[m][0].append(t)
        per[m][1].append(v)
    samples = {m: (np.array(ts, float), np.array(vs, float)) for m, (ts, vs) in per.items()}
    return ids, samples


def correlate(x, y):
    """One row's n, r, rho, p and note (Method step 5)."""
    n = len(x)
    if n < 3:
        return n, None, None, None, "insufficient data"
    const_x = bool(np.all(x == x[0]))
    const_y = bool(np.all(y == y[0]))
    if const_x or const_y:
        if const_x and const_y:  # either note is right
            return n, None, None, None, ("constant output", "constant metric")
        return n, None, None, None, "constant output" if const_x else "constant metric"
    with warnings.catch_warnings():
        # scipy warns on nearly constant input; the values are still the reference ones.
        warnings.simplefilter("ignore")
        pr = stats.pearsonr(x, y)
        sr = stats.spearmanr(x, y)
    return n, float(pr.statistic), float(sr.statistic), float(pr.pvalue), None


def expected_rows(args):
    lo = parse_time(args.from_) if args.from_ is not None else None
    hi = parse_time(args.to) if args.to is not None else None
    workorders = load(args.workorders)
    metrics = load(args.metrics)
    per_product = intervals(workorders, lo, hi)
    products = {w.get("product") for w in workorders if w.get("product") is not None}
    ids, samples = metric_samples(metrics, lo, hi)
    rows = []
    for p in sorted(products, key=key_order):
        starts, ends, outputs = per_product.get(p, (np.array([]), np.array([]), np.array([])))
        means = interval_means(samples, starts, ends)
        k_count = len(starts)
        product_rows = []
        for m in sorted(ids, key=key_order):
            mean = means.get(m, np.full(k_count, np.nan))
            for lag in range(args.max_lag + 1):
                js = [
                    j
                    for j in range(lag, k_count)
                    if not math.isnan(outputs[j]) and not math.isnan(mean[j - lag])
                ]
                x = np.array([outputs[j] for j in js], float)
                y = np.array([mean[j - lag] for j in js], float)
                n, r, rho, pv, note = correlate(x, y)
                product_rows.append(
                    {"product": p, "metric": m, "lag": lag, "n": n, "r": r, "rho": rho, "p": pv,
                     "note": note, "x": x, "y": y}
                )
        defined = [row for row in product_rows if row["p"] is not None]
        if defined:
            adjusted = stats.false_discovery_control(np.array([row["p"] for row in defined]), method="bh")
            for row, q in zip(defined, adjusted):
                row["q"] = float(q)
                row["significant"] = bool(q <= args.alpha)
        rows.extend(product_rows)
    return rows


def top3(rows):
    """Per product: the top three metric ids (Method step 7) and whether their rows are
    significant."""
    best = {}
    for row in rows:
        if row["r"] is None:
            continue
        key = (row["product"], row["metric"])
        cur = best.get(key)
        stronger = cur is None or abs(row["r"]) > abs(cur["r"])
        if stronger or (abs(row["r"]) == abs(cur["r"]) and row["lag"] < cur["lag"]):
            best[key] = row
    ranked = {}
    for (p, m), row in best.items():
        ranked.setdefault(p, []).append(row)
    out = {}
    for p, items in ranked.items():
        items.sort(key=lambda row: (-abs(row["r"]), key_order(row["metric"])))
        out[label(p)] = [
            {"metric": i["metric"], "lag": i["lag"], "r": i["r"], "significant": i.get("significant", False)}
            for i in items[:3]
        ]
    return out


def close(ours, theirs, floor_kind):
    if ours == theirs:
        return True
    if floor_kind == "r" and abs(theirs) <= R_FLOOR:
        return abs(ours - theirs) <= R_FLOOR
    if floor_kind == "p" and abs(theirs) < P_FLOOR and abs(ours) < P_FLOOR:
        return True
    return abs(ours - theirs) <= RTOL * abs(theirs)


def compare(expected, csv_path, worst):
    """Mismatches between the expected rows and the CSV, as lines; `worst[column]` gets the
    largest relative difference seen in that column (how close the two are, not only whether
    they are within tolerance)."""
    with open(csv_path, newline="") as f:
        text = f.read()
    lines = text.split("\n")
    problems = []
    if lines[0] != HEADER:
        problems.append(f"header is {lines[0]!r}, expected {HEADER!r}")
        return problems
    got = list(csv.DictReader(text.splitlines()))
    want_keys = [(label(r["product"]), label(r["metric"]), r["lag"]) for r in expected]
    got_keys = [(g["product"], g["metric"], int(g["lag"])) for g in got]
    if want_keys != got_keys:
        missing = [k for k in want_keys if k not in set(got_keys)]
        extra = [k for k in got_keys if k not in set(want_keys)]
        if missing or extra:
            problems.append(
                f"rows differ: {len(missing)} missing (first {missing[:5]}), "
                f"{len(extra)} unexpected (first {extra[:5]})"
            )
        else:
            problems.append("rows are not in the spec's order (product, metric, lag)")
        return problems
    for want, g in zip(expected, got):
        where = f"row product={g['product']} metric={g['metric']} lag={g['lag']}"
        if int(g["n"]) != want["n"]:
            problems.append(f"{where}: n={g['n']}, expected {want['n']}")
            continue
        fields = [
            ("pearson_r", want["r"], "r"),
            ("spearman_rho", want["rho"], "r"),
            ("p_value", want["p"], "p"),
            ("p_adjusted", want.get("q"), "p"),
        ]
        for name, value, kind in fields:
            cell = g[name]
            if value is None:
                if cell != "":
                    problems.append(f"{where}: {name}={cell!r}, expected empty ({want['note']})")
                continue
            if cell == "":
                problems.append(f"{where}: {name} is empty, expected {value!r}")
                continue
            ours = float(cell)
            if value != 0:
                worst[name] = max(worst.get(name, 0.0), abs(ours - value) / abs(value))
            if not close(ours, value, kind):
                diff = abs(ours - value) / abs(value) if value else float("inf")
                problems.append(f"{where}: {name}={cell}, scipy {value!r} (relative difference {diff:.3g})")
        if want["p"] is None:
            if g["significant"] != "":
                problems.append(f"{where}: significant={g['significant']!r}, expected empty")
            note = want["note"]
            wanted = note if isinstance(note, tuple) else (note,)
            if not any(w in g["note"] for w in wanted):
                wanted_text = " or ".join(map(repr, wanted))
                problems.append(f"{where}: note={g['note']!r}, expected one containing {wanted_text}")
        else:
            flag = "true" if want["significant"] else "false"
            if g["significant"] != flag:
                problems.append(
                    f"{where}: significant={g['significant']!r}, expected {flag} (p_adjusted scipy {want['q']!r})"
                )
    return problems


def check(args):
    expected = expected_rows(args)
    worst = {}
    problems = compare(expected, args.csv, worst)
    if problems:
        versions = f"scipy {scipy.__version__}, numpy {np.__version__}"
        print(f"report_check: {len(problems)} mismatch(es) in {args.csv} ({versions}):")
        for line in problems[:args.show]:
            print("  " + line)
        sys.exit(1)
    tops = top3(expected)
    summary = {
        "rows": len(expected),
        "defined": sum(1 for r in expected if r["p"] is not None),
        "significant": sum(1 for r in expected if r.get("significant")),
        "significant_per_product": {
            label(p): sum(1 for r in expected if r["product"] == p and r.get("significant"))
            for p in sorted({r["product"] for r in expected}, key=key_order)
        },
        "top3": {p: [item["metric"] for item in items] for p, items in tops.items()},
        "top3_significant": {p: all(item["significant"] for item in items) for p, items in tops.items()},
        "max_relative_difference": worst,
    }
    print(json.dumps(summary))


def exact_r(x, y):
    """Pearson's r of the very doubles x and y in exact rational arithmetic, rounded once."""
    from fractions import Fraction

    xs = [Fraction(float(v)) for v in x]
    ys = [Fraction(float(v)) for v in y]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    dx = [v - mx for v in xs]
    dy = [v - my for v in ys]
    sxy = sum(a * b for a, b in zip(dx, dy))
    r2 = sxy * sxy / (sum(a * a for a in dx) * sum(b * b for b in dy))
    return math.copysign(math.sqrt(r2), sxy)


def check_exact_r(args):
    """Each defined r of the CSV against the exact r of the same pairs (rational arithmetic),
    where double precision allows it: rows on which scipy's own r is further than
    --reference-rtol from exact (inputs nearly constant in double precision) are skipped."""
    expected = expected_rows(args)
    got = {(g["product"], g["metric"], int(g["lag"])): g for g in csv.DictReader(open(args.csv, newline=""))}
    problems, worst, worst_scipy, skipped, checked = [], 0.0, 0.0, 0, 0
    for row in expected:
        if row["r"] is None:
            continue
        exact = exact_r(row["x"], row["y"])
        scipy_err = abs(row["r"] - exact) / abs(exact) if exact else abs(row["r"])
        if scipy_err > args.reference_rtol:
            skipped += 1
            continue
        cell = got[(label(row["product"]), label(row["metric"]), row["lag"])]["pearson_r"]
        ours = float(cell)
        err = abs(ours - exact) / abs(exact) if exact else abs(ours)
        checked += 1
        worst, worst_scipy = max(worst, err), max(worst_scipy, scipy_err)
        if err > args.rtol:
            problems.append(
                f"row product={row['product']} metric={row['metric']} lag={row['lag']} (n={row['n']}): "
                f"pearson_r={cell}, exact {exact!r} (relative error {err:.2g}; scipy's {scipy_err:.2g})"
            )
    summary = {
        "checked": checked,
        "skipped": skipped,
        "max_relative_error": worst,
        "scipy_max_relative_error": worst_scipy,
    }
    if problems:
        print(
            f"report_check: {len(problems)} r value(s) of {args.csv} further than {args.rtol:g} "
            f"from exact: {json.dumps(summary)}"
        )
        for line in problems[:args.show]:
            print("  " + line)
        sys.exit(1)
    print(json.dumps(summary))


def offsets(args):
    """Data where a plain one-pass mean loses digits: per product, args.intervals work orders
    100 s apart (product 1's counter starts at 1e12), one sample per interval of each metric:
    a near-copy of the output (+1), a tiny signal on a 1e9 offset (+2), noise (+3), and the
    negated output with noise (+4), ids 10*product + k."""
    rng = np.random.default_rng(args.seed)
    start = 1_767_225_600
    workorders, metrics = [], []
    for product in range(2):
        t, counter = start, 1e12 if product else 0.0
        for i in range(args.intervals + 1):
            workorders.append({"time": t, "product": product, "production": counter})
            rate = 100 + 50 * math.sin(i / 15 + product) + rng.normal() * (0.001 if product == 0 else 5)
            if i < args.intervals:
                base = 10 * product
                metrics.append({"id": base + 1, "val": 2 * rate + rng.normal() * 1e-3, "time": t + 50})
                offset = 1e9 + rate * 1e-3 + rng.normal() * 1e-3
                metrics.append({"id": base + 2, "val": offset, "time": t + 51})
                metrics.append({"id": base + 3, "val": float(rng.normal()), "time": t + 52})
                metrics.append({"id": base + 4, "val": -rate + rng.normal() * 30, "time": t + 53})
            counter += rate
            t += 100
    for name, records in (("metrics.json", metrics), ("workorder.json", workorders)):
        with open(f"{args.out}/{name}", "w") as f:
            json.dump(records, f)


def shuffle(args):
    records = load(getattr(args, "in"))
    rng = np.random.default_rng(args.seed)
    positions = {}
    for i, r in enumerate(records):
        positions.setdefault(r.get("id"), []).append(i)
    for ids in positions.values():
        vals = [records[i].get("val") for i in ids]
        order = rng.permutation(len(vals))
        for i, k in zip(ids, order):
            records[i]["val"] = vals[k]
    with open(args.out, "w") as f:
        f.write("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    for name in ("check", "top3", "exact-r"):
        p = sub.add_parser(name)
        p.add_argument("--metrics", required=True)
        p.add_argument("--workorders", required=True)
        p.add_argument("--max-lag", type=int, default=3)
        p.add_argument("--from", dest="from_")
        p.add_argument("--to")
        p.add_argument("--alpha", type=float, default=0.05)
        if name in ("check", "exact-r"):
            p.add_argument("--csv", required=True)
            p.add_argument("--show", type=int, default=10, help="mismatches printed")
        if name == "exact-r":
            p.add_argument("--rtol", type=float, default=1e-11)
            p.add_argument("--reference-rtol", type=float, default=1e-11)
    p = sub.add_parser("offsets")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--intervals", type=int, default=2000)
    p = sub.add_parser("shuffle")
    p.add_argument("--in", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    if args.mode == "check":
        check(args)
    elif args.mode == "exact-r":
        check_exact_r(args)
    elif args.mode == "offsets":
        offsets(args)
    elif args.mode == "top3":
        print(json.dumps({p: [i["metric"] for i in items] for p, items in top3(expected_rows(args)).items()}))
    else:
        shuffle(args)


if __name__ == "__main__":
    main()
