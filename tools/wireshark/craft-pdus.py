#!/usr/bin/env python3
"""Craft a small capture of taphold PDUs for the dissector test.

    python3 tools/wireshark/craft-pdus.py OUT.pcap [--expect OUT.tsv]

Standard library only. The capture holds one frame of every PDU the replays
do not produce (an ack and the node's heartbeat on the backup link, a target
confirmation to the appliance's target-confirm port, a resend request to a
backup node, a node's RETRANSMIT answer as a delivery datagram), then frames
that are wrong in one way each (bad magic, version, type, flags, length,
digest, link, origin; a cut PDU). Every valid PDU carries a correct keyed
SipHash-2-4 digest of bytes 8.. then 0..8 (protocol version 4), computed here
by an implementation of our own that is first checked
against the test vectors of docs/protocol.md (TARGET_CONFIRM and RESEND in
crates/taphold-wire/src/taphold.rs, key 00 01 .. 0f).

--expect writes, per frame, what a correct dissector must say about it
(tab-separated: frame number, then field=value pairs); scripts/test-dissector.sh
compares tshark's output with it.
"""

import argparse
import struct
import sys

MASK = (1 << 64) - 1

# The test vectors of docs/protocol.md, byte for byte.
VECTOR_KEY = bytes(range(16))
TARGET_CONFIRM_VECTOR = bytes.fromhex(
    "54480405ff00ff000000000700000008"
    "00000000692b8900000000000000002a"
    "0000000000001388000000000000002d"
    "000000000000000006575d2cb6809134"
)
RESEND_VECTOR = bytes.fromhex(
    "54480406ff00ff000000000700000008"
    "00000000692b8900000000000000002b"
    "0000000000001770000000000000002a"
    "00000002000000008ef6d94b97046527"
)
DELIVERY_VECTOR = bytes.fromhex(
    "5444012800 029c40 00000007 0a000063"
    "0000000069 2b8900 0000000000 00002a"
    "000000003b 9aca00 4f52444552".replace(" ", "")
)


def rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & MASK


def sip_round(v):
    v0, v1, v2, v3 = v
    v0 = (v0 + v1) & MASK
    v1 = rotl(v1, 13) ^ v0
    v0 = rotl(v0, 32)
    v2 = (v2 + v3) & MASK
    v3 = rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & MASK
    v3 = rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & MASK
    v1 = rotl(v1, 17) ^ v2
    v2 = rotl(v2, 32)
    return [v0, v1, v2, v3]


def siphash24(key, data):
    """SipHash-2-4 (Aumasson & Bernstein): two compression rounds per word, four
    finalization rounds; key and words little-endian."""
    k0, k1 = struct.unpack("<QQ", key)
    v = [
        k0 ^ 0x736F6D6570736575,
        k1 ^ 0x646F72616E646F6D,
        k0 ^ 0x6C7967656E657261,
        k1 ^ 0x7465646279746573,
    ]
    full = len(data) // 8 * 8
    words = [struct.unpack_from("<Q", data, i)[0] for i in range(0, full, 8)]
    last = bytearray(8)
    last[: len(data) - full] = data[full:]
    last[7] = len(data) & 0xFF
    words.append(struct.unpack("<Q", bytes(last))[0])
    for m in words:
        v[3] ^= m
        v = sip_round(sip_round(v))
        v[0] ^= m
    v[2] ^= 0xFF
    for _ in range(4):
        v = sip_round(v)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def check_vectors():
    for name, vec in (("TARGET_CONFIRM", TARGET_CONFIRM_VECTOR), ("RESEND", RESEND_VECTOR)):
        want = struct.unpack(">Q", vec[-8:])[0]
        got = pdu_digest(VECTOR_KEY, vec[:-8])
        if got != want:
            sys.exit(f"craft-pdus: SipHash-2-4 disagrees with {name}: {got:016x} != {want:016x}")


def pdu_digest(key, covered):
    """The digest of a PDU's header and body: SipHash-2-4 of bytes 8.., then 0..8."""
    return siphash24(key, covered[8:] + covered[:8])


def key_id(key):
    return siphash24(key, b"taphold key id") & 0xFF


# Header layout (docs/protocol.md, "Common header").
MAGIC, VERSION = 0x5448, 4
BACKUP, HEARTBEAT, ACK, CONFIRM, TARGET_CONFIRM, RESEND, FLOW_ACK = range(1, 8)
MODE_TCP, MODE_FIX_COMPACT = 2, 3
RETRANSMIT, FROM_NODE = 4, 8


def pdu(key, mtype, body, *, stream=7, epoch=0x692B8900, seq=1, ts=5000, watermark=0,
        flags=0, link=0xFF, mode=0, magic=MAGIC, version=VERSION, body_len=None, digest=None):
    hdr = struct.pack(">HBBBBBBIIQQQQ", magic, version, mtype, key_id(key), flags, link, mode,
                      stream, len(body) if body_len is None else body_len, epoch, seq, ts,
                      watermark)
    covered = hdr + body
    d = pdu_digest(key, covered) if digest is None else digest
    return covered + struct.pack(">Q", d)


def eth(dst, src, ethertype, payload):
    return dst + src + struct.pack(">H", ethertype) + payload


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(">%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp_frame(src_mac, dst_mac, src_ip, dst_ip, sport, dport, payload):
    udp_len = 8 + len(payload)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0x4000, 64, 17, 0, src_ip, dst_ip)
    ip = ip[:10] + struct.pack(">H", csum(ip)) + ip[12:]
    pseudo = src_ip + dst_ip + struct.pack(">BBH", 0, 17, udp_len)
    udp = struct.pack(">HHHH", sport, dport, udp_len, 0) + payload
    c = csum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack(">H", c) + udp[8:]
    return eth(dst_mac, src_mac, 0x0800, ip + udp)


def mac(s):
    return bytes(int(x, 16) for x in s.split(":"))


def ip4(s):
    return bytes(int(x) for x in s.split("."))


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", 1767225600 + i, 0, len(fr), len(fr)))
            f.write(fr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--expect")
    a = ap.parse_args()
    check_vectors()
    k = VECTOR_KEY

    appliance_b1, node_b1 = mac("02:00:00:00:0b:01"), mac("02:00:00:00:0c:01")
    app_mac, arb_mac = mac("02:00:00:00:00:01"), mac("02:00:00:00:00:02")
    node_d_mac = mac("02:00:00:00:0d:01")
    app_ip, arb_ip, node_ip = ip4("198.51.100.1"), ip4("203.0.113.10"), ip4("203.0.113.21")

    frames, expect = [], []

    def add(frame, **want):
        frames.append(frame)
        expect.append(want)

    # 1. The node's ack on link 0: seq 41 journaled, 1234 records.
    add(eth(appliance_b1, node_b1, 0x88B5,
            pdu(k, ACK, struct.pack(">Q", 1234), link=0, seq=41, watermark=40, flags=FROM_NODE)),
        **{"taphold.type": 3, "taphold.seq": 41, "taphold.link": 0, "taphold.ack.records": 1234,
           "taphold.digest_status": "good"})
    # 2. The node's heartbeat on link 0, echoing the appliance's heartbeat 9.
    add(eth(appliance_b1, node_b1, 0x88B5,
            pdu(k, HEARTBEAT, struct.pack(">QQ", 9, 1_000_000_123), link=0, seq=3, flags=FROM_NODE)),
        **{"taphold.type": 2, "taphold.seq": 3, "taphold.flags.from_node": 1, "taphold.heartbeat.echo_seq": 9,
           "taphold.heartbeat.echo_timestamp_ns": 1_000_000_123, "taphold.digest_status": "good"})
    # 3. The target confirmation of docs/protocol.md, to the appliance's target-confirm port.
    add(udp_frame(arb_mac, app_mac, arb_ip, app_ip, 9101, 9001, TARGET_CONFIRM_VECTOR),
        **{"taphold.type": 5, "taphold.stream": 7, "taphold.epoch": 0x692B8900, "taphold.seq": 42,
           "taphold.watermark": 45, "taphold.target_confirm.skipped": 0,
           "taphold.digest_status": "good"})
    # 4. The resend request of docs/protocol.md, to a backup node's destination port.
    add(udp_frame(arb_mac, node_d_mac, arb_ip, node_ip, 9101, 9110, RESEND_VECTOR),
        **{"taphold.type": 6, "taphold.seq": 43, "taphold.watermark": 42,
           "taphold.resend.count": 2, "taphold.digest_status": "good"})
    # 5. The node's answer: seq 43 as a delivery datagram flagged RETRANSMIT.
    answer = bytearray(DELIVERY_VECTOR)
    answer[4:6] = struct.pack(">H", RETRANSMIT)
    answer[24:32] = struct.pack(">Q", 43)
    add(udp_frame(node_d_mac, arb_mac, node_ip, arb_ip, 9110, 9101, bytes(answer)),
        **{"taphold_delivery.seq": 43, "taphold_delivery.stream": 7,
           "taphold_delivery.epoch": 0x692B8900, "taphold_delivery.flags.retransmit": 1,
           "taphold_delivery.src_port": 40000, "taphold_delivery.release_ns": 1_000_000_000})
    # 6. A digest-only backup frame flagged RETRANSMIT.
    add(eth(node_b1, appliance_b1, 0x88B5,
            pdu(k, BACKUP, struct.pack(">4sHHQ", ip4("192.0.2.11"), 40001, 212, 0x1122334455667788),
                mode=1, seq=77, flags=RETRANSMIT, link=1)),
        **{"taphold.type": 1, "taphold.seq": 77, "taphold.content_mode": 1,
           "taphold.flags.retransmit": 1, "taphold.backup.payload_len": 212, "taphold.link": 1,
           "taphold.backup.src_port": 40001, "taphold.digest_status": "good"})

    # 7. An encrypted backup frame (link_security: aead): ciphertext and tag are
    # opaque to the dissector, the digest and the lengths are checked.
    add(eth(node_b1, appliance_b1, 0x88B5,
            pdu(k, BACKUP, struct.pack(">4sHH", ip4("192.0.2.11"), 40001, 5) + bytes(range(5))
                + bytes(range(16, 32)), seq=78, flags=0x10, link=0)),
        **{"taphold.type": 1, "taphold.seq": 78, "taphold.flags.encrypted": 1,
           "taphold.backup.payload_len": 5, "taphold.digest_status": "good"})
    # 8. Gateway mode: a TCP segment in content mode 2 (PSH|ACK at TCP seq 1000).
    def tcp_body(payload_len, content, reserved=0, seq=1000, flags=0x18):
        return struct.pack(">4sHH4sHBBI", ip4("10.1.0.2"), 40000, payload_len, ip4("10.2.0.2"),
                           9878, flags, reserved, seq) + content
    add(eth(node_b1, appliance_b1, 0x88B5,
            pdu(k, BACKUP, tcp_body(5, b"ORDER"), mode=MODE_TCP, seq=79, link=0)),
        **{"taphold.type": 1, "taphold.seq": 79, "taphold.content_mode": 2,
           "taphold.backup.src_ip": "10.1.0.2", "taphold.backup.src_port": 40000,
           "taphold.backup.payload_len": 5, "taphold.backup.dst_ip": "10.2.0.2",
           "taphold.backup.dst_port": 9878, "taphold.backup.tcp_flags": "0x18",
           "taphold.backup.tcp_seq": 1000, "taphold.backup.payload": "4f:52:44:45:52",
           "taphold.digest_status": "good"})
    # 9. The same flow in content mode 3: payload_len the original 300, a compact content.
    add(eth(node_b1, appliance_b1, 0x88B5,
            pdu(k, BACKUP, tcp_body(300, b"compact", seq=4294967000), mode=MODE_FIX_COMPACT, seq=80, link=0)),
        **{"taphold.type": 1, "taphold.seq": 80, "taphold.content_mode": 3,
           "taphold.backup.payload_len": 300, "taphold.backup.tcp_seq": 4294967000,
           "taphold.backup.compact": "63:6f:6d:70:61:63:74", "taphold.digest_status": "good"})
    # 10. A flow ack on link 1: the exchange acknowledged up to TCP seq 1005.
    def flow_ack_body(acked, r1=0, r2=0):
        return struct.pack(">4sHH4sHHI", ip4("10.1.0.2"), 40000, r1, ip4("10.2.0.2"), 9878, r2, acked)
    add(eth(node_b1, appliance_b1, 0x88B5,
            pdu(k, FLOW_ACK, flow_ack_body(1005), link=1, seq=4, watermark=80)),
        **{"taphold.type": 7, "taphold.seq": 4, "taphold.link": 1,
           "taphold.flow_ack.src_ip": "10.1.0.2", "taphold.flow_ack.src_port": 40000,
           "taphold.flow_ack.dst_ip": "10.2.0.2", "taphold.flow_ack.dst_port": 9878,
           "taphold.flow_ack.acked": 1005, "taphold.digest_status": "good"})

    # Wrong in one way each (all on the backup link's EtherType).
    good_ack = pdu(k, ACK, struct.pack(">Q", 1), link=0, seq=1, flags=FROM_NODE)
    bad = lambda b: eth(appliance_b1, node_b1, 0x88B5, b)  # noqa: E731
    add(bad(b"XX" + good_ack[2:]), expert="taphold.bad_magic")
    add(bad(good_ack[:2] + b"\x02" + good_ack[3:]), expert="taphold.bad_version")
    add(bad(good_ack[:3] + b"\x09" + good_ack[4:]), expert="taphold.unknown_type")
    add(bad(good_ack[:2] + b"\x03" + good_ack[3:]), expert="taphold.bad_version")
    add(bad(pdu(k, ACK, struct.pack(">Q", 1), link=0, flags=0x28)), expert="taphold.bad_flags")
    add(bad(pdu(k, ACK, struct.pack(">Q", 1) * 2, link=0, flags=FROM_NODE)), expert="taphold.bad_length")
    add(bad(good_ack[:60]), expert="taphold.truncated")
    add(bad(pdu(k, ACK, struct.pack(">Q", 1), link=0, flags=FROM_NODE, digest=0xDEADBEEF)),
        expert="taphold.bad_digest", **{"taphold.digest_status": "bad"})
    # Version 4's binding: an ack without FROM_NODE, a backup frame for no link,
    # and a node heartbeat whose FROM_NODE was cleared (a reflection dressed up).
    add(bad(pdu(k, ACK, struct.pack(">Q", 1), link=0)), expert="taphold.malformed")
    add(bad(pdu(k, BACKUP, struct.pack(">4sHHQ", ip4("192.0.2.11"), 1, 1, 1), mode=1, link=0xFF)),
        expert="taphold.malformed")
    hb = bytearray(pdu(k, HEARTBEAT, struct.pack(">QQ", 1, 2), link=0, flags=FROM_NODE))
    hb[5] = 0
    add(bad(bytes(hb)), expert="taphold.bad_digest", **{"taphold.digest_status": "bad"})
    # ENCRYPTED on a heartbeat.
    add(bad(pdu(k, HEARTBEAT, struct.pack(">QQ", 1, 2), link=0, flags=0x18)), expert="taphold.malformed")
    add(bad(pdu(k, CONFIRM, bytes(24), link=2)), expert="taphold.malformed")
    add(bad(pdu(k, RESEND, struct.pack(">II", 0, 0), seq=5)), expert="taphold.malformed")
    add(bad(pdu(k, RESEND, struct.pack(">II", 1, 0), seq=0)), expert="taphold.malformed")
    add(bad(pdu(k, RESEND, struct.pack(">II", 2, 0), seq=MASK)), expert="taphold.malformed")
    add(bad(pdu(k, RESEND, struct.pack(">II", 1, 0), seq=MASK)),
        **{"taphold.type": 6, "taphold.seq": MASK, "taphold.resend.count": 1, "taphold.digest_status": "good"})

    add(bad(pdu(k, FLOW_ACK, flow_ack_body(1, r1=1), link=0)), expert="taphold.malformed")
    add(bad(pdu(k, FLOW_ACK, flow_ack_body(1, r2=0x100), link=0)), expert="taphold.malformed")
    add(bad(pdu(k, FLOW_ACK, flow_ack_body(1) + bytes(4), link=0)), expert="taphold.bad_length")
    add(bad(pdu(k, BACKUP, tcp_body(5, b"ORDER", reserved=1), mode=MODE_TCP)), expert="taphold.malformed")
    add(bad(pdu(k, BACKUP, tcp_body(6, b"ORDER"), mode=MODE_TCP, link=0)), expert="taphold.bad_length")
    add(bad(pdu(k, BACKUP, tcp_body(5, b"")[:16], mode=MODE_FIX_COMPACT, link=0)), expert="taphold.bad_length")
    add(bad(pdu(k, BACKUP, tcp_body(5, b"ORDER"), mode=4)), expert="taphold.malformed")

    write_pcap(a.out, frames)
    if a.expect:
        with open(a.expect, "w") as f:
            for i, want in enumerate(expect, 1):
                f.write("\t".join([str(i)] + [f"{k}={v}" for k, v in want.items()]) + "\n")


if __name__ == "__main__":
    main()
