#!/usr/bin/env python3
"""Peak resident memory of a whole process tree, sampled from /proc.

    rss_tree.py PID OUT_JSON [INTERVAL_S]

Every INTERVAL_S (default 0.2) sums the RSS of PID and all its descendants and keeps the
peak. /usr/bin/time cannot do this: its %M is the largest *single* process's peak among
those it waited for, and pyspark's driver JVM is a separate child of the python process.
A process seen once in the tree is followed until it exits even if it is re-parented (the
JVM can outlive python for a moment), so the sampler ends when all of them are gone.
Writes {"peak_tree_kib", "peak_single_kib", "peak_single_cmd", "samples",
"outlived_root"} to OUT_JSON; outlived_root lists the processes still running after PID
exited (orphans: nobody waited for them, so /usr/bin/time on PID never saw their memory).

The sum is of RSS, so pages shared between processes (libc, ...) count once per process:
a slight over-estimate, which is the safe side for a baseline.
"""

import json
import os
import sys
import time

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def stat(pid: int):
    """(ppid, starttime) of pid, or None if it is gone (or a zombie: exited, not reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may contain spaces and ')': the fields after the last ')' are fixed.
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] == b"Z":
        return None
    return int(fields[1]), int(fields[19])


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KIB
    except (OSError, IndexError, ValueError):
        return 0


def cmd(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "?"


def main() -> int:
    root = int(sys.argv[1])
    out = sys.argv[2]
    interval = float(sys.argv[3]) if len(sys.argv) > 3 else 0.2
    root_stat = stat(root)
    # (pid, starttime) pairs: a recycled pid is a different process.
    tracked = {(root, root_stat[1])} if root_stat else set()
    peak_tree = peak_single = samples = 0
    peak_cmd = ""
    outlived = []
    while tracked:
        table = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                s = stat(int(name))
                if s:
                    table[int(name)] = s
        # Add descendants of anything tracked (repeat until no new ones: deep trees).
        grew = True
        while grew:
            grew = False
            pids = {p for p, _ in tracked}
            for pid, (ppid, start) in table.items():
                if ppid in pids and (pid, start) not in tracked:
                    tracked.add((pid, start))
                    grew = True
        tracked = {(p, s) for p, s in tracked if p in table and table[p][1] == s}
        if root_stat and not outlived and (root, root_stat[1]) not in tracked:
            outlived = sorted({cmd(p).split(" ")[0] for p, _ in tracked}) or ["-"]
        total = 0
        for pid, _ in tracked:
            r = rss_kib(pid)
            total += r
            if r > peak_single:
                peak_single, peak_cmd = r, cmd(pid)
        peak_tree = max(peak_tree, total)
        samples += 1
        time.sleep(interval)
    with open(out, "w") as f:
        json.dump(
            {
                "peak_tree_kib": peak_tree,
                "peak_single_kib": peak_single,
                "peak_single_cmd": peak_cmd,
                "samples": samples,
                "outlived_root": [c for c in outlived if c != "-"],
            },
            f,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
