#!/usr/bin/env python3
"""Hold ring vs rte_ring figures (figure 2) from criterion's estimates.

    python3 benches/parse_ring.py TARGET/criterion "COMMAND" > OUT/ring.json

Per-message time = criterion's mean per iteration divided by the batch.
"""

import json
import os
import sys

BENCHES = [
    ("single_thread/hold_ring/1", 1), ("single_thread/rte_ring/1", 1),
    ("single_thread/hold_ring/32", 32), ("single_thread/rte_ring/32", 32),
    ("single_thread/rte_ring_bulk/32", 32),
    ("single_thread/two_cas_floor/1", 1), ("single_thread/two_cas_floor/32", 32),
    ("two_threads/hold_ring", 1), ("two_threads/rte_ring", 1),
]


def main():
    root, cmd = sys.argv[1:3]
    res = {"command": cmd, "ns_per_message": {}, "ci_ns_per_message": {}}
    for name, batch in BENCHES:
        p = os.path.join(root, name, "new", "estimates.json")
        if not os.path.exists(p):
            continue
        e = json.load(open(p))
        mean = e["mean"]
        res["ns_per_message"][name] = round(mean["point_estimate"] / batch, 3)
        ci = mean["confidence_interval"]
        res["ci_ns_per_message"][name] = [round(ci["lower_bound"] / batch, 3),
                                         round(ci["upper_bound"] / batch, 3)]
    ns = res["ns_per_message"]
    ratios = {}
    for a, b, k in [("single_thread/hold_ring/1", "single_thread/rte_ring/1", "batch 1"),
                    ("single_thread/hold_ring/32", "single_thread/rte_ring/32", "batch 32"),
                    ("single_thread/hold_ring/32", "single_thread/rte_ring_bulk/32", "batch 32 vs bulk"),
                    ("single_thread/two_cas_floor/1", "single_thread/rte_ring/1", "two-CAS floor, batch 1"),
                    ("single_thread/two_cas_floor/32", "single_thread/rte_ring/32", "two-CAS floor, batch 32"),
                    ("two_threads/hold_ring", "two_threads/rte_ring", "two threads")]:
        if a in ns and b in ns and ns[b]:
            ratios[k] = round(ns[a] / ns[b], 2)
    res["ratio"] = ratios
    json.dump(res, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
