#!/usr/bin/env python3
"""Write a capture of N valid taphold messages for the benchmarks.

    python3 benches/gen_pcap.py OUT.pcap --count N --payload BYTES [--seed S]

Every frame is a UDP datagram the shipped config accepts (to 02:00:00:00:00:01,
198.51.100.1:9000, from one of four sources, good IPv4 and UDP checksums) whose
payload is exactly BYTES long. Deterministic for a given seed. Standard library
only; classic pcap, microsecond stamps, linktype Ethernet.
"""

import argparse
import random
import struct

APP_MAC = bytes.fromhex("020000000001")
APP_IP = bytes([198, 51, 100, 1])
APP_PORT = 9000


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame(src_id, ident, payload):
    src_mac = bytes.fromhex("0200000001%02x" % src_id)
    src_ip = bytes([192, 0, 2, 10 + src_id])
    sport = 40000 + src_id
    udp_len = 8 + len(payload)
    pseudo = src_ip + APP_IP + struct.pack("!BBH", 0, 17, udp_len)
    seg = struct.pack("!HHHH", sport, APP_PORT, udp_len, 0) + payload
    c = csum(pseudo + seg) or 0xFFFF
    seg = seg[:6] + struct.pack("!H", c) + seg[8:]
    total = 20 + udp_len
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ident & 0xFFFF, 0x4000,
                      64, 17, 0, src_ip, APP_IP)
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    f = APP_MAC + src_mac + struct.pack("!H", 0x0800) + hdr + seg
    return f + b"\0" * max(0, 60 - len(f))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=256)
    ap.add_argument("--payload", type=int, default=64)
    ap.add_argument("--seed", type=int, default=5)
    a = ap.parse_args()
    if not 1 <= a.payload <= 8900:
        ap.error("--payload must be 1..8900")
    rng = random.Random(a.seed * 100003 + a.payload)
    with open(a.out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(a.count):
            body = b"ORD1" + struct.pack("!I", i)
            body += bytes(rng.getrandbits(8) for _ in range(max(0, a.payload - len(body))))
            fr = frame(1 + i % 4, i, body[: a.payload])
            f.write(struct.pack("<IIII", 1767225600, i % 1000000, len(fr), len(fr)))
            f.write(fr)


if __name__ == "__main__":
    main()
