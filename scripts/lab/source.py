#!/usr/bin/env python3
"""Kernel UDP order source for the live lab (python3 stdlib only).

Sends ORD1 order messages (test-pcaps/README.md) over an ordinary UDP socket
from --bind (192.0.2.11:40001) to the appliance (198.51.100.1:9000), reads the
appliance's confirmations on the same socket (taphold confirmation PDU,
docs/protocol.md: the echo at PDU bytes 56..72 is the message's first 16
bytes, so echo[6:10] is the client seq), and writes a JSON summary:
sent, confirmed, confirmed_seqs (in arrival order), in_order, duplicates,
missing, bad (confirmations that did not parse), elapsed_s, and
unprotected_seqs: the confirmations flagged UNPROTECTED (flags bit 1: the
appliance released the message in pass-through, without a tap copy).

Bounded: exactly --count messages, then at most --wait seconds for the
remaining confirmations.
"""
import argparse
import json
import random
import select
import socket
import struct
import sys
import time

SOH = b"\x01"


def message(source_id, seq, size, flags, rng):
    body = b"8=FIX.4.4" + SOH + b"35=D" + SOH + b"11=%d-%d" % (source_id, seq) + SOH
    body += b"55=LAB" + SOH + b"38=%d" % rng.randint(1, 1000) + SOH
    hdr = b"ORD1" + struct.pack("!HIHI", source_id, seq, size, flags)
    payload = hdr + body
    if len(payload) + 4 <= size:
        payload += b"58=" + b"P" * (size - len(payload) - 4) + SOH
    payload = payload[:size].ljust(size, b"\0")
    assert len(payload) == size
    return payload


UNPROTECTED = 0x0002


def parse_confirmation(data):
    """(source id, client seq, flags) echoed by a confirmation PDU, or None."""
    # Protocol version 4: a 48-byte common header (key id at 4, flags at 5,
    # the epoch at 16..24).
    if len(data) < 80 or data[0:2] != b"TH" or data[2] != 4 or data[3] != 4:
        return None
    (body_len,) = struct.unpack_from("!I", data, 12)
    if body_len != 24:
        return None
    echo = data[56:72]
    if echo[0:4] != b"ORD1":
        return None
    source_id, seq = struct.unpack_from("!HI", echo, 4)
    flags = data[5]
    return source_id, seq, flags


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=2000.0, help="messages per second")
    ap.add_argument("--size-min", type=int, default=64)
    ap.add_argument("--size-max", type=int, default=300)
    ap.add_argument("--id", type=int, default=1, help="source id (1..4)")
    ap.add_argument("--first-seq", type=int, default=1)
    ap.add_argument("--bind", default=None, help="default 192.0.2.<10+id>:<40000+id>")
    ap.add_argument("--to", default="198.51.100.1:9000")
    ap.add_argument("--wait", type=float, default=5.0, help="seconds to wait for confirmations after sending")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="-")
    a = ap.parse_args()
    if not 16 <= a.size_min <= a.size_max <= 1472:
        sys.exit("source: need 16 <= size-min <= size-max <= 1472")

    bind = a.bind or "192.0.2.%d:%d" % (10 + a.id, 40000 + a.id)
    bhost, bport = bind.rsplit(":", 1)
    thost, tport = a.to.rsplit(":", 1)
    rng = random.Random(a.seed)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((bhost, int(bport)))
    s.connect((thost, int(tport)))
    s.setblocking(False)

    confirmed = []
    unprotected = []
    bad = 0

    def drain():
        nonlocal bad
        while True:
            try:
                data = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionRefusedError:
                continue
            c = parse_confirmation(data)
            if c is None or c[0] != a.id:
                bad += 1
            else:
                confirmed.append(c[1])
                if c[2] & UNPROTECTED:
                    unprotected.append(c[1])

    seqs = list(range(a.first_seq, a.first_seq + a.count))
    start = time.monotonic()
    interval = 1.0 / a.rate if a.rate > 0 else 0.0
    sent = 0
    for i, seq in enumerate(seqs):
        due = start + i * interval
        while True:
            now = time.monotonic()
            if now >= due:
                break
            r, _, _ = select.select([s], [], [], due - now)
            if r:
                drain()
        size = rng.randint(a.size_min, a.size_max)
        msg = message(a.id, seq, size, rng.randrange(8), rng)
        while True:
            try:
                s.send(msg)
                break
            except (BlockingIOError, InterruptedError):
                select.select([], [s], [], 0.01)
            except ConnectionRefusedError:
                pass  # an ICMP error from earlier; try again
        sent += 1
        drain()
    send_done = time.monotonic()
    deadline = send_done + a.wait
    want = set(seqs)
    while time.monotonic() < deadline and not want.issubset(confirmed):
        r, _, _ = select.select([s], [], [], min(0.05, max(0.0, deadline - time.monotonic())))
        if r:
            drain()
    drain()

    got = set(confirmed)
    summary = {
        "source_id": a.id,
        "sent": sent,
        "confirmed": len(got & want),
        "confirmations": len(confirmed),
        "duplicates": len(confirmed) - len(got),
        "in_order": confirmed == sorted(confirmed),
        "missing": sorted(want - got),
        "unexpected": sorted(got - want),
        "bad": bad,
        "send_s": round(send_done - start, 3),
        "elapsed_s": round(time.monotonic() - start, 3),
        "confirmed_seqs": confirmed,
        "unprotected_seqs": unprotected,
    }
    text = json.dumps(summary)
    if a.out == "-":
        print(text)
    else:
        with open(a.out, "w") as f:
            f.write(text + "\n")
        short = {k: v for k, v in summary.items() if k not in ("confirmed_seqs", "missing", "unprotected_seqs")}
        short["unprotected"] = len(unprotected)
        short["missing"] = len(summary["missing"])
        print("source:", json.dumps(short))


if __name__ == "__main__":
    main()
