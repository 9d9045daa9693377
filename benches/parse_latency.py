#!/usr/bin/env python3
"""Release-latency figures (figure 3) from events.csv of each latency run.

    python3 benches/parse_latency.py OUT/latency.runs OUT > OUT/latency.json

Hold time = release_ns - rx_ns per released message (TSC ns), exact percentiles
(nearest rank) over every message of the replay.
"""

import csv
import json
import os
import sys


def pct(v, q):
    if not v:
        return None
    k = max(0, min(len(v) - 1, int(round(q * len(v) + 0.5)) - 1))
    return v[k]


def main():
    runs_file, out = sys.argv[1:3]
    rows = []
    for line in open(runs_file):
        mode, delay, tag, cmd = line.rstrip("\n").split("\t")
        d = os.path.join(out, "lat-" + tag)
        row = {"mode": mode, "delay_us": delay, "tag": tag, "command": cmd}
        if os.path.exists(os.path.join(d, "pending")):
            row["pending"] = open(os.path.join(d, "pending")).read().strip()
            rows.append(row)
            continue
        hold = []
        with open(os.path.join(d, "events.csv")) as f:
            for r in csv.DictReader(f):
                if r["status"] == "released":
                    hold.append(int(r["release_ns"]) - int(r["rx_ns"]))
        hold.sort()
        s = json.load(open(os.path.join(d, "summary.json")))
        row.update({
            "count": len(hold),
            "p50_ns": pct(hold, 0.5), "p99_ns": pct(hold, 0.99),
            "p999_ns": pct(hold, 0.999), "max_ns": hold[-1] if hold else None,
            "hot_path_allocations": s.get("hot_path_allocations"),
            "unaccounted": s.get("messages", {}).get("unaccounted"),
        })
        rows.append(row)
    by = {(r["mode"], r["delay_us"]): r for r in rows}
    ratios = {}
    for delay in ("5", "50"):
        t, a = by.get(("tap", delay)), by.get(("ack", delay))
        if t and a and t.get("p50_ns") and a.get("p50_ns"):
            ratios[delay] = round(t["p50_ns"] / a["p50_ns"], 3)
    json.dump({"runs": rows, "tap_over_ack_p50": ratios}, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
