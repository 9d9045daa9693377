#!/usr/bin/env python3
"""Throughput figures from benches/run.sh's raw outputs (figure 1 and 5).

    python3 benches/parse_throughput.py OUT/throughput.runs OUT > OUT/throughput.json

Both sides are rated the same way: the median of their one-second rates after the first
second (testpmd's own `Rx-pps` per --stats-period; taphold's `released` deltas between its
per-second stats lines), so start-up is excluded from both.
"""

import json
import re
import statistics
import sys


def summary_of(text):
    i = text.find("\n{")
    if i < 0:
        return None
    return json.loads(text[i + 1 : text.rindex("}") + 1])


def testpmd(path):
    t = open(path).read()
    body = t.split("Telling cores to stop")[0]
    pps = [int(x) for x in re.findall(r"Rx-pps:\s+(\d+)", body)]
    steady = pps[2:] if len(pps) > 3 else pps[1:]
    m = re.findall(r"Accumulated forward statistics.*?RX-packets:\s+(\d+)", t, re.S)
    return {
        "pps": statistics.median(steady) if steady else None,
        "samples": steady,
        "rx_total": int(m[-1]) if m else None,
    }


def taphold(path):
    t = open(path).read()
    pts = [(float(a), int(b)) for a, b in re.findall(r"^t=([\d.]+)s .*?released=(\d+)", t, re.M)]
    rates = []
    for (t0, r0), (t1, r1) in zip(pts, pts[1:]):
        if t1 > t0:
            rates.append((r1 - r0) / (t1 - t0))
    steady = rates[1:] if len(rates) > 2 else rates
    s = summary_of(t) or {}
    msgs = s.get("messages", {})
    return {
        "mps": statistics.median(steady) if steady else None,
        "samples": [round(r) for r in steady],
        "released": msgs.get("released"),
        "unaccounted": msgs.get("unaccounted"),
        "hot_path_allocations": s.get("hot_path_allocations"),
        "in_use_at_exit": s.get("mempool", {}).get("in_use_at_exit"),
        "events_lost": s.get("egress", {}).get("events_lost"),
        "ring_full_polls": s.get("ingress", {}).get("ring_full_polls"),
        "hold_ns": s.get("latency_ns", {}).get("hold"),
    }


def main():
    runs_file, out = sys.argv[1:3]
    rows = []
    for line in open(runs_file):
        size, cap, tag, tp_cmd, th_cmd = line.rstrip("\n").split("\t")
        tp = testpmd("%s/testpmd-%s.txt" % (out, tag))
        th = taphold("%s/taphold-%s.txt" % (out, tag))
        ratio = th["mps"] / tp["pps"] if th["mps"] and tp["pps"] else None
        rows.append({
            "payload": int(size), "capacity": int(cap), "tag": tag,
            "tap_model": "lcore 2 (CPU 0)" if tag.endswith("-split") else "worker lcore",
            "testpmd": tp, "taphold": th,
            "ratio": round(ratio, 4) if ratio else None,
            "testpmd_cmd": tp_cmd, "taphold_cmd": th_cmd,
        })
    json.dump({"runs": rows}, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
