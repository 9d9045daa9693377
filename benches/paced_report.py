#!/usr/bin/env python3
"""Paced-load latency figures (figure 7) from each paced run of benches/run.sh.

    python3 benches/paced_report.py OUT/paced.runs OUT > OUT/paced.json

Per run (fwd, tap, ack-5km, ack-50km) and per phase of the generator's schedule
(fixed rates, max, quiet spells): the end-to-end latency the generator measured
(stamped as the message is handed to P's receive ring, timed when it comes back
released: the same TSC at both ends), and for taphold the stages from events.csv
over the same messages (taphold's seq is the order P received them, which is the
generator's message number): rx -> backup launch, launch -> tap copy, tap copy ->
release, rx -> release; for the plain forwarder the same rx -> release (its
residence.csv: from the poll that received a message to its transmit). Added
latency = tap gate - plain forwarder, per percentile and phase, two ways: end to end
(as the generator saw it), and in residence (rx -> release inside the device, which
leaves out the generator's own scheduling). Exact percentiles (nearest rank).
Standard library only.
"""

import csv
import json
import math
import os
import sys

QS = [("p50", 0.5), ("p99", 0.99), ("p999", 0.999), ("max", 1.0)]


def pct(v, q):
    if not v:
        return None
    k = min(len(v), max(1, math.ceil(q * len(v)))) - 1
    return v[k]


def summary(v):
    v = sorted(v)
    d = {name: pct(v, q) for name, q in QS}
    d["n"] = len(v)
    return d


def stages(events, first, count, burst):
    st = {"rx_launch": [], "launch_tap": [], "tap_release": [], "total": [], "total_alone": []}
    for seq in range(first, first + count):
        e = events.get(seq)
        if e is None:
            continue
        rx, tx, tap, rel = e
        st["total"].append(rel - rx)
        # Launched alone: no other message shared its launch (after a stall of the
        # generator or of the worker, messages arrive together and are handled as one
        # burst, which every stage then reflects).
        if tx and burst.get(tx) == 1:
            st["total_alone"].append(rel - rx)
        if tx:
            st["rx_launch"].append(tx - rx)
        if tx and tap:
            st["launch_tap"].append(tap - tx)
        if tap:
            st["tap_release"].append(rel - tap)
    return {k: summary(v) for k, v in st.items()}


def main():
    runs_file, out = sys.argv[1:3]
    runs = {}
    order = []
    for line in open(runs_file):
        run, gcmd, dcmd = line.rstrip("\n").split("\t")
        d = os.path.join(out, "paced-" + run)
        g = json.load(open(os.path.join(d, "gen.json")))
        events = {}
        ev = os.path.join(d, "events.csv")
        r = {"run": run, "generator_command": gcmd, "device_command": dcmd,
             "confirmations": g["confirmations"], "other_frames": g["other_frames"],
             "phases": []}
        res = os.path.join(d, "residence.csv")
        residence = {}
        if os.path.exists(res):
            with open(res) as f:
                for row in csv.DictReader(f):
                    residence[int(row["seq"])] = (int(row["rx_to_tx_ns"]), int(row.get("burst") or 0))
        if os.path.exists(ev):
            with open(ev) as f:
                for row in csv.DictReader(f):
                    if row["status"].startswith("released"):
                        events[int(row["seq"])] = (int(row["rx_ns"]), int(row["backup_tx_ns"]),
                                                   int(row["tap_ns"]), int(row["release_ns"]))
            s = json.load(open(os.path.join(d, "summary.json")))
            r["hot_path_allocations"] = s.get("hot_path_allocations")
            r["events_lost"] = s.get("egress", {}).get("events_lost")
            r["unaccounted"] = s.get("messages", {}).get("unaccounted")
            r["released"] = s.get("messages", {}).get("released")
        burst = {}
        for e in events.values():
            if e[1]:
                burst[e[1]] = burst.get(e[1], 0) + 1
        for ph in g["phases"]:
            p = {k: ph[k] for k in ("name", "rate", "quiet_ms", "first_seq", "sent", "back",
                                    "late", "refused_bursts", "achieved_rate")}
            p["e2e"] = {k: ph[k + "_ns"] for k, _ in QS}
            if ph["quiet_ms"]:
                p["e2e_each"] = ph["all_ns"]
            if events:
                p["stages"] = stages(events, ph["first_seq"], ph["sent"], burst)
            elif residence:
                v = [residence[k] for k in range(ph["first_seq"], ph["first_seq"] + ph["sent"])
                     if k in residence]
                p["stages"] = {"total": summary([d for d, _ in v]),
                               "total_alone": summary([d for d, n in v if n == 1])}
            r["phases"].append(p)
        runs[run] = r
        order.append(run)
    added = []
    if "fwd" in runs and "tap" in runs:
        fwd = {p["name"]: p for p in runs["fwd"]["phases"]}
        for p in runs["tap"]["phases"]:
            f = fwd.get(p["name"])
            if not f:
                continue
            row = {"name": p["name"], "rate": p["rate"], "quiet_ms": p["quiet_ms"],
                   "achieved_rate_tap": p["achieved_rate"], "achieved_rate_fwd": f["achieved_rate"]}
            for k, _ in QS:
                a, b = p["e2e"][k], f["e2e"][k]
                row[k] = None if a is None or b is None else a - b
                for stage, key in (("total", "residence_"), ("total_alone", "alone_")):
                    ta = p.get("stages", {}).get(stage, {}).get(k)
                    tb = f.get("stages", {}).get(stage, {}).get(k)
                    row[key + k] = None if ta is None or tb is None else ta - tb
            added.append(row)
    json.dump({"runs": [runs[k] for k in order], "added": added}, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
