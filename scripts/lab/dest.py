#!/usr/bin/env python3
"""Kernel UDP destination for the live lab (python3 stdlib only).

Listens on --listen (203.0.113.10:9100), records every ORD1 message's
(source id, client seq) in arrival order, and exits after --idle-exit seconds
without a message (or --max-time seconds in all), writing a JSON summary:
received, per_source {id: {received, first, last, duplicates, out_of_order,
gaps}}, duplicates, out_of_order, gaps, not_orders, arrivals ([id, seq]...).

out_of_order counts messages whose seq is lower than the highest seen before
from the same source; gaps counts seqs missing between the lowest and highest
seen per source. --ready FILE is created once the socket is bound.
"""
import argparse
import json
import select
import socket
import struct
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="203.0.113.10:9100")
    ap.add_argument("--out", default="-")
    ap.add_argument("--idle-exit", type=float, default=3.0)
    ap.add_argument("--max-time", type=float, default=300.0)
    ap.add_argument("--max-count", type=int, default=10_000_000)
    ap.add_argument("--ready", default=None)
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((host, int(port)))
    if a.ready:
        open(a.ready, "w").close()

    arrivals = []
    not_orders = 0
    senders = set()
    start = last = time.monotonic()
    while len(arrivals) < a.max_count:
        now = time.monotonic()
        if now - last >= a.idle_exit or now - start >= a.max_time:
            break
        r, _, _ = select.select([s], [], [], min(0.1, a.idle_exit))
        if not r:
            continue
        data, addr = s.recvfrom(65536)
        last = time.monotonic()
        senders.add("%s:%d" % addr)
        if len(data) < 16 or data[0:4] != b"ORD1":
            not_orders += 1
            continue
        source_id, seq, length = struct.unpack_from("!HIH", data, 4)
        if length != len(data):
            not_orders += 1
            continue
        arrivals.append((source_id, seq))

    per = {}
    for sid, seq in arrivals:
        p = per.setdefault(sid, {"received": 0, "seen": set(), "max": 0, "duplicates": 0, "out_of_order": 0})
        p["received"] += 1
        if seq in p["seen"]:
            p["duplicates"] += 1
        elif seq < p["max"]:
            p["out_of_order"] += 1
        p["seen"].add(seq)
        p["max"] = max(p["max"], seq)
    per_source = {}
    for sid, p in sorted(per.items()):
        lo, hi = min(p["seen"]), max(p["seen"])
        per_source[str(sid)] = {
            "received": p["received"],
            "first": lo,
            "last": hi,
            "duplicates": p["duplicates"],
            "out_of_order": p["out_of_order"],
            "gaps": (hi - lo + 1) - len(p["seen"]),
        }
    summary = {
        "received": len(arrivals),
        "duplicates": sum(p["duplicates"] for p in per_source.values()),
        "out_of_order": sum(p["out_of_order"] for p in per_source.values()),
        "gaps": sum(p["gaps"] for p in per_source.values()),
        "not_orders": not_orders,
        "senders": sorted(senders),
        "per_source": per_source,
        "elapsed_s": round(time.monotonic() - start, 3),
        "arrivals": arrivals,
    }
    text = json.dumps(summary)
    if a.out == "-":
        print(text)
    else:
        with open(a.out, "w") as f:
            f.write(text + "\n")
        short = {k: v for k, v in summary.items() if k != "arrivals"}
        print("dest:", json.dumps(short))


if __name__ == "__main__":
    main()
