#!/usr/bin/env python3
"""Write the two captures of benches/gateway.sh: the same FIX orders as protected
TCP segments (gateway mode, config/gateway.yaml's addresses) and as UDP messages
(listener mode, config/default.yaml's), so both modes run side by side on equal
payloads.

    python3 benches/gen_gateway_pcap.py GATEWAY.pcap LISTENER.pcap --count N

One flow engine 10.71.1.2:40001 -> exchange 10.71.2.2:9878; each frame one
FIX.4.2 NewOrderSingle (about 190 bytes), consecutive TCP sequence numbers, good
checksums. Standard library only; deterministic.
"""

import argparse
import struct

OURS = bytes.fromhex("020000000001")
ENGINE_MAC = bytes.fromhex("020000000e01")
ENGINE = bytes([10, 71, 1, 2])
EXCHANGE = bytes([10, 71, 2, 2])
SOURCE = bytes([192, 0, 2, 11])
APP_IP = bytes([198, 51, 100, 1])


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src, dst, proto, payload, ident):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF,
                      0x4000, 64, proto, 0, src, dst)
    return hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:] + payload


def order(i):
    body = ("35=D\x0149=ENGINE1\x0156=EXCHANGE\x0134=%d\x01"
            "52=20260101-00:00:00.000000\x0111=ORD-%08d\x0121=1\x0155=AAPL\x0154=1\x01"
            "60=20260101-00:00:00.000000\x0138=100\x0140=2\x0144=123.45\x0159=0\x01"
            % (i + 1, i)).encode()
    m = b"8=FIX.4.2\x019=%d\x01" % len(body) + body
    return m + b"10=%03d\x01" % (sum(m) % 256)


def tcp_frame(i, seq, payload):
    hdr = struct.pack("!HHIIBBHHH", 40001, 9878, seq & 0xFFFFFFFF, 5000, 5 << 4,
                      0x18, 64240, 0, 0)
    seg = hdr + payload
    c = csum(ENGINE + EXCHANGE + struct.pack("!BBH", 0, 6, len(seg)) + seg)
    seg = seg[:16] + struct.pack("!H", c) + seg[18:]
    return OURS + ENGINE_MAC + b"\x08\x00" + ipv4(ENGINE, EXCHANGE, 6, seg, i)


def udp_frame(i, payload):
    seg = struct.pack("!HHHH", 40001, 9000, 8 + len(payload), 0) + payload
    c = csum(SOURCE + APP_IP + struct.pack("!BBH", 0, 17, len(seg)) + seg) or 0xFFFF
    seg = seg[:6] + struct.pack("!H", c) + seg[8:]
    return OURS + ENGINE_MAC + b"\x08\x00" + ipv4(SOURCE, APP_IP, 17, seg, i)


def write(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", 1767225600, i % 1000000, len(fr), len(fr)))
            f.write(fr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gateway")
    ap.add_argument("listener")
    ap.add_argument("--count", type=int, default=256)
    a = ap.parse_args()
    seq = 1_000_000
    tcp, udp = [], []
    for i in range(a.count):
        p = order(i)
        tcp.append(tcp_frame(i, seq, p))
        udp.append(udp_frame(i, p))
        seq += len(p)
    write(a.gateway, tcp)
    write(a.listener, udp)


if __name__ == "__main__":
    main()
