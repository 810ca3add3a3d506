"""Reads a factorypal status server over and over, as a status page and a Prometheus
scraper would (only much more often), for scripts/bench-consume.sh.

usage: scrape_status.py HOST:PORT INTERVAL_S OUT.json   (runs until SIGTERM)
       scrape_status.py --summarize OUT.json...          (one line over several runs)

Each round GETs /status and /metrics; the time to the whole body and the body size are kept.
Connection refused (before the server is up, after it is gone) is counted, not timed.
"""
import json
import signal
import sys
import time
import urllib.error
import urllib.request


def scrape(addr, interval, out):
    timings = {"/status": [], "/metrics": []}
    sizes = {"/status": 0, "/metrics": 0}
    refused = 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    while not stop:
        for path in timings:
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(f"http://{addr}{path}", timeout=5) as r:
                    body = r.read()
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                refused += 1
                continue
            timings[path].append((time.perf_counter() - t0) * 1000)
            sizes[path] = max(sizes[path], len(body))
        time.sleep(interval)
    json.dump({"timings_ms": timings, "max_bytes": sizes, "refused": refused}, open(out, "w"))


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")


def summarize(files):
    runs = [json.load(open(f)) for f in files]
    parts = []
    for path in ("/status", "/metrics"):
        t = [v for r in runs for v in r["timings_ms"][path]]
        size = max(r["max_bytes"][path] for r in runs)
        parts.append(
            f"{path}: {len(t)} reads, median {percentile(t, 50):.2f} ms, p99 {percentile(t, 99):.2f} ms, max {max(t, default=float('nan')):.2f} ms, up to {size} bytes"
        )
    print("; ".join(parts))


if __name__ == "__main__":
    if sys.argv[1] == "--summarize":
        summarize(sys.argv[2:])
    else:
        scrape(sys.argv[1], float(sys.argv[2]), sys.argv[3])
