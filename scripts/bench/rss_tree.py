#!/usr/bin/env python3
"""Peak resident memory of a whole process tree, sampled from /proc.

    rss_tree.py PID OUT_JSON [INTERVAL_S [OTHER_OURS_PID]]

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

It also tells whether the measurement had the machine to itself: "tree_cpu_s" is the CPU
time of the tree, "foreign_cpu_s" the CPU time the whole machine spent (/proc/stat) minus
the tree's and OTHER_OURS_PID's (the Kafka broker): what anything else (a build, tests)
took from the cores meanwhile, and "foreign_share" that as a share of all cores over the
run's wall time. Near 0 means the figures are clean.
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


def cpu_ticks(pid: int) -> int:
    """utime + stime of pid in clock ticks, or 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def machine_busy_ticks() -> int:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user + nice + system: time charged to processes. Not irq/softirq: loopback network
    # work (our client ↔ our broker) lands there and is not charged to anyone.
    return v[0] + v[1] + v[2]


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
    other = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    hz = os.sysconf("SC_CLK_TCK")
    busy0 = machine_busy_ticks()
    other0 = cpu_ticks(other) if other else 0
    t0 = time.monotonic()
    last_cpu = {}  # (pid, start) -> last seen utime + stime: exited processes keep theirs
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
        for pid, start in tracked:
            last_cpu[(pid, start)] = max(last_cpu.get((pid, start), 0), cpu_ticks(pid))
            r = rss_kib(pid)
            total += r
            if r > peak_single:
                peak_single, peak_cmd = r, cmd(pid)
        peak_tree = max(peak_tree, total)
        samples += 1
        if tracked:
            time.sleep(interval)
    busy = machine_busy_ticks() - busy0
    other_cpu = (cpu_ticks(other) - other0) if other else 0
    tree_cpu = sum(last_cpu.values())
    wall = time.monotonic() - t0
    foreign = max(0, busy - tree_cpu - other_cpu) / hz
    with open(out, "w") as f:
        json.dump(
            {
                "peak_tree_kib": peak_tree,
                "peak_single_kib": peak_single,
                "peak_single_cmd": peak_cmd,
                "samples": samples,
                "outlived_root": [c for c in outlived if c != "-"],
                "wall_s": round(wall, 2),
                "tree_cpu_s": round(tree_cpu / hz, 2),
                "foreign_cpu_s": round(foreign, 2),
                "foreign_share": round(foreign / (wall * (os.cpu_count() or 1)), 3),
            },
            f,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
