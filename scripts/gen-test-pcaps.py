#!/usr/bin/env python3
"""Generate taphold's reproducible test captures.

    python3 scripts/gen-test-pcaps.py [OUTDIR]     # default: <repo>/test-pcaps
    python3 scripts/gen-test-pcaps.py --check [DIR] # regenerate into a temp dir,
                                                    # compare byte-for-byte, exit 1
                                                    # on any difference

Standard library only.  Output is fully deterministic (fixed RNG seed, fixed
timestamps starting at 2026-01-01T00:00:00Z), so running it twice yields
byte-identical files.

Files written into OUTDIR:
    orders.pcap  orders.expected.json   2000 valid order messages, 4 sources
    junk.pcap    junk.expected.json     frames the appliance must refuse (plus
                                        ARP requests for our IP it must answer)
    mixed.pcap   mixed.expected.json    first 500 orders + all junk, spread out
    README.md                           description and expected counts

Classic libpcap: magic 0xa1b2c3d4 (little-endian file), v2.4, microsecond
timestamps, snaplen 65535, linktype 1 (Ethernet).  caplen == len always.
"""

import argparse
import datetime
import filecmp
import json
import os
import random
import shutil
import struct
import sys
import tempfile

SEED = 20260101
EPOCH = 1767225600  # 2026-01-01T00:00:00Z

# --------------------------------------------------------------------------
# Addresses (documentation ranges; the shipped default config's values)
# --------------------------------------------------------------------------


def mac(s):
    return bytes(int(x, 16) for x in s.split(":"))


def ip4(s):
    return bytes(int(x) for x in s.split("."))


APP_MAC = mac("02:00:00:00:00:01")
APP_IP = ip4("198.51.100.1")
APP_PORT = 9000
BCAST_MAC = b"\xff" * 6

SOURCES = {  # source id -> (mac, ip, udp source port)
    n: (mac("02:00:00:00:01:%02x" % n), ip4("192.0.2.1%d" % n), 40000 + n)
    for n in (1, 2, 3, 4)
}

# Hosts used only in junk.pcap.
ROUTER_MAC = mac("02:00:00:00:00:fe")
ROUTER_IP = ip4("198.51.100.254")
HOST2_MAC = mac("02:00:00:00:00:fd")
HOST2_IP = ip4("198.51.100.253")
OTHER_MAC = mac("02:00:00:00:00:99")
OTHER_IP = ip4("198.51.100.2")
ARP_OTHER_TARGET = ip4("198.51.100.99")
SUBNET_BCAST_IP = ip4("198.51.100.255")
APP_IP6 = bytes.fromhex("20010db8000000000000000000000001")  # 2001:db8::1
SRC1_IP6 = bytes.fromhex("20010db8000000000000000000000011")  # 2001:db8::11

MAX_PAYLOAD = 8900  # appliance's max message payload (default config)

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_VLAN = 0x8100
ETH_IPV6 = 0x86DD
ETH_LLDP = 0x88CC

DROP_REASONS = [
    "runt", "truncated", "not_for_us_mac", "vlan", "ipv6", "unknown_ethertype",
    "arp_not_for_us", "arp_other", "ipv4_bad_header", "ipv4_bad_checksum",
    "ipv4_fragment", "ipv4_not_for_us", "ip_proto_other", "udp_bad_length",
    "udp_bad_checksum", "udp_wrong_port", "empty_payload", "oversize",
]

# --------------------------------------------------------------------------
# Packet building
# --------------------------------------------------------------------------


def csum(data):
    """RFC 1071 one's-complement checksum."""
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def eth(dst, src, ethertype, payload, pad=True):
    f = dst + src + struct.pack("!H", ethertype) + payload
    if pad and len(f) < 60:  # minimum Ethernet frame without FCS
        f += b"\x00" * (60 - len(f))
    return f


def ipv4(src, dst, proto, payload, ident, df=True, mf=False, frag_off=0,
         ttl=64, options=b"", total_len=None, ihl=None, version=4,
         bad_csum=False):
    assert len(options) % 4 == 0
    if ihl is None:
        ihl = 5 + len(options) // 4
    hlen = 20 + len(options)
    if total_len is None:
        total_len = hlen + len(payload)
    flags = (0x4000 if df else 0) | (0x2000 if mf else 0) | frag_off
    hdr = struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, 0, total_len,
                      ident, flags, ttl, proto, 0, src, dst) + options
    c = csum(hdr)
    if bad_csum:
        c ^= 0x0101  # still nonzero, definitely wrong
    hdr = hdr[:10] + struct.pack("!H", c) + hdr[12:]
    return hdr + payload


def l4_csum_v4(src, dst, proto, seg, length=None):
    if length is None:
        length = len(seg)
    pseudo = src + dst + struct.pack("!BBH", 0, proto, length)
    c = csum(pseudo + seg)
    return c if c else 0xFFFF


def udp4(src, dst, sport, dport, payload, cksum="good", udp_len=None):
    """UDP segment over IPv4.  cksum: 'good' | 'zero' | 'bad'.
    udp_len overrides the length field; the checksum then covers
    min(udp_len, actual) bytes with udp_len in the pseudo-header."""
    real_len = 8 + len(payload)
    length = real_len if udp_len is None else udp_len
    seg = struct.pack("!HHHH", sport, dport, length, 0) + payload
    if cksum == "zero":
        return seg
    covered = seg[:max(8, min(length, real_len))]
    c = l4_csum_v4(src, dst, 17, covered, length)
    if cksum == "bad":
        c ^= 0x5A5A
        assert c not in (0, 0xFFFF)
    return seg[:6] + struct.pack("!H", c) + seg[8:]


def udp_frame(src_id, payload, *, dst_mac=APP_MAC, dst_ip=APP_IP,
              dport=APP_PORT, ident=0, cksum="good", options=b"",
              src_mac=None):
    smac, sip, sport = SOURCES[src_id]
    seg = udp4(sip, dst_ip, sport, dport, payload, cksum)
    return eth(dst_mac, src_mac or smac, ETH_IPV4,
               ipv4(sip, dst_ip, 17, seg, ident, options=options))


def arp(op, sha, spa, tha, tpa):
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sha, spa, tha, tpa)


# --------------------------------------------------------------------------
# Order message payloads
# --------------------------------------------------------------------------

SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM",
           "XOM", "BRK.B", "SPY", "QQQ", "IWM", "V", "UNH", "ESH6", "NQH6"]

FLAG_SELL = 1 << 0
FLAG_LIMIT = 1 << 1
FLAG_IOC = 1 << 2
FLAG_BATCH = 1 << 8


def fix_time(ts_us):
    d = datetime.datetime.fromtimestamp(ts_us // 1_000_000, datetime.timezone.utc)
    return d.strftime("%Y%m%d-%H:%M:%S") + ".%06d" % (ts_us % 1_000_000)


def order_header(src_id, seq, size, flags):
    """16 bytes, network byte order:
    'ORD1' | source id u16 | client seq u32 | msg length u16 | flags u32"""
    return b"ORD1" + struct.pack("!HIHI", src_id, seq, size, flags)


def fix_finish(body_fields, target):
    """Build '8=FIX.4.4|9=NNNN|<body>|58=<pad>|10=CCC|' of exactly `target`
    bytes when possible (truncated if the natural message is longer)."""
    body = "".join("%s=%s\x01" % kv for kv in body_fields).encode()

    def assemble(b):
        head = b"8=FIX.4.4\x019=%04d\x01" % len(b)
        m = head + b
        return m + b"10=%03d\x01" % (sum(m) % 256)

    msg = assemble(body)
    gap = target - len(msg)
    if gap >= 5:
        fill = b"58=" + (b"PAD" * gap)[:gap - 4] + b"\x01"
        msg = assemble(body + fill)
    elif gap > 0:
        msg += b"\x00" * gap  # binary trailer padding
    return msg[:target]


def order_payload(rng, src_id, seq, size, ts_us, jumbo=False):
    side = rng.choice((1, 2))
    limit = rng.random() < 0.8
    ioc = rng.random() < 0.15
    flags = (FLAG_SELL if side == 2 else 0) | (FLAG_LIMIT if limit else 0) \
        | (FLAG_IOC if ioc else 0) | (FLAG_BATCH if jumbo else 0)
    t = fix_time(ts_us)
    common = [("49", "GW%d" % src_id), ("56", "TAPHOLD"), ("34", str(seq)),
              ("52", t)]
    target = size - 16
    if not jumbo:
        sym = rng.choice(SYMBOLS)
        fields = [("35", "D")] + common + [
            ("11", "C%d-%08d" % (src_id, seq)), ("55", sym), ("54", str(side)),
            ("38", str(rng.choice((1, 5, 10, 25, 100, 200, 500, 1000)))),
            ("40", "2" if limit else "1")]
        if limit:
            fields.append(("44", "%d.%02d" % (rng.randint(5, 900), rng.randint(0, 99))))
        fields += [("59", "3" if ioc else "0"), ("60", t)]
    else:
        # List order (35=E) carrying many orders, until near the target size.
        fields = [("35", "E")] + common + [("66", "L%d-%08d" % (src_id, seq))]
        groups = []
        n = 0
        est = 120
        while est < target - 200:
            n += 1
            g = [("11", "C%d-%08d-%04d" % (src_id, seq, n)), ("67", str(n)),
                 ("55", rng.choice(SYMBOLS)), ("54", str(rng.choice((1, 2)))),
                 ("38", str(rng.choice((1, 10, 100, 1000)))), ("40", "2"),
                 ("44", "%d.%02d" % (rng.randint(5, 900), rng.randint(0, 99)))]
            groups += g
            est += sum(len(k) + len(v) + 2 for k, v in g)
        fields += [("68", str(n)), ("73", str(n))] + groups
    return order_header(src_id, seq, size, flags) + fix_finish(fields, target)


# --------------------------------------------------------------------------
# orders.pcap
# --------------------------------------------------------------------------

N_ORDERS = 2000
N_MIXED_ORDERS = 500


def wire_us(frame_len):
    """Serialisation time at 10 Gb/s incl. preamble/IFG/FCS, in whole us."""
    return (frame_len + 24) * 8 // 10_000


def gen_orders(rng):
    # ---- choose payload sizes and special cases, by message index ----
    def pick(lo, hi, k, taken):
        out = []
        while len(out) < k:
            i = rng.randrange(lo, hi)
            if i not in taken:
                taken.add(i)
                out.append(i)
        return sorted(out)

    taken = set()
    jumbo_idx = pick(20, N_MIXED_ORDERS, 2, taken) + pick(N_MIXED_ORDERS, N_ORDERS, 4, taken)
    zero_idx = pick(0, N_MIXED_ORDERS, 2, taken) + pick(N_MIXED_ORDERS, N_ORDERS, 4, taken)
    opt_idx = pick(0, N_MIXED_ORDERS, 1, taken) + pick(N_MIXED_ORDERS, N_ORDERS, 2, taken)
    exact_idx = pick(0, N_MIXED_ORDERS, 3, taken) + pick(N_MIXED_ORDERS, N_ORDERS, 1, taken)

    sizes = []
    for i in range(N_ORDERS):
        if rng.random() < 0.07:
            sizes.append(rng.randint(1000, 1472))
        else:
            sizes.append(int(rng.triangular(64, 301, 110)))
    jumbo_sizes = [8900, rng.randint(8000, 8899), 8000] + \
        [rng.randint(8000, 8899) for _ in range(3)]
    for i, s in zip(jumbo_idx, jumbo_sizes):
        sizes[i] = s
    for i, s in zip(exact_idx, (64, 300, 1472, 1000)):
        sizes[i] = s  # boundary sizes: 64 and 1472 in the first 500 too
    options_for = {opt_idx[0]: b"\x01\x01\x01\x00",   # NOP NOP NOP EOL
                   opt_idx[1]: b"\x94\x04\x00\x00",   # Router Alert
                   opt_idx[2]: b"\x01\x01\x01\x00"}
    zero_set = set(zero_idx)
    jumbo_set = set(jumbo_idx)

    # ---- timing and source interleaving ----
    seq = {n: 0 for n in SOURCES}
    ip_id = {n: rng.randrange(65536) for n in SOURCES}
    per_source = {n: 0 for n in SOURCES}
    pkts = []
    t = 0  # us since EPOCH
    i = 0
    burst_no = 0
    while i < N_ORDERS:
        if burst_no == 3:
            bsize = 64  # guarantee one maximal burst
        else:
            bsize = min(64, 1 + int(rng.expovariate(1 / 10)))
        bsize = min(bsize, N_ORDERS - i)
        dominant = rng.choices((1, 2, 3, 4), weights=(40, 30, 20, 10))[0]
        for k in range(bsize):
            if rng.random() < 0.7:
                src = dominant
            else:
                src = rng.choices((1, 2, 3, 4), weights=(40, 30, 20, 10))[0]
            seq[src] += 1
            per_source[src] += 1
            ip_id[src] = (ip_id[src] + 1) & 0xFFFF
            payload = order_payload(rng, src, seq[src], sizes[i], EPOCH * 1_000_000 + t,
                                    jumbo=i in jumbo_set)
            assert len(payload) == sizes[i]
            f = udp_frame(src, payload, ident=ip_id[src],
                          cksum="zero" if i in zero_set else "good",
                          options=options_for.get(i, b""))
            pkts.append((t, f))
            i += 1
            t += max(1, wire_us(len(f))) + rng.randint(0, 4)
        burst_no += 1
        r = rng.random()
        if r < 0.70:
            t += rng.randint(200, 3000)
        elif r < 0.95:
            t += rng.randint(3000, 20000)
        else:
            t += rng.randint(20000, 100000)

    info = {
        "sizes": sizes, "jumbo_idx": jumbo_idx, "zero_idx": zero_idx,
        "opt_idx": opt_idx, "per_source": per_source,
    }
    return pkts, info


# --------------------------------------------------------------------------
# junk.pcap
# --------------------------------------------------------------------------

JUNK_SEQ_BASE = 0xF0000000  # junk order messages use seqs >= this


def gen_junk(rng):
    cases = []  # (reason, description, frame)
    jseq = [JUNK_SEQ_BASE]
    jid = [0x7000]

    def order(src, size=120):
        jseq[0] += 1
        return order_payload(rng, src, jseq[0], size, EPOCH * 1_000_000)

    def nid():
        jid[0] += 1
        return jid[0]

    def add(reason, desc, frame):
        cases.append((reason, desc, frame))

    s1mac, s1ip, s1port = SOURCES[1]
    s2mac, s2ip, s2port = SOURCES[2]
    s3mac, s3ip, s3port = SOURCES[3]
    s4mac, s4ip, s4port = SOURCES[4]

    # ---- ARP ----
    add("arp_request", "ARP who-has 198.51.100.1 (broadcast) from router 198.51.100.254 -> must be answered",
        eth(BCAST_MAC, ROUTER_MAC, ETH_ARP,
            arp(1, ROUTER_MAC, ROUTER_IP, b"\x00" * 6, APP_IP)))
    add("arp_request", "ARP who-has 198.51.100.1 (unicast to our MAC, cache refresh) from 198.51.100.253 -> must be answered",
        eth(APP_MAC, HOST2_MAC, ETH_ARP,
            arp(1, HOST2_MAC, HOST2_IP, b"\x00" * 6, APP_IP)))
    add("arp_not_for_us", "ARP who-has 198.51.100.99 (broadcast)",
        eth(BCAST_MAC, ROUTER_MAC, ETH_ARP,
            arp(1, ROUTER_MAC, ROUTER_IP, b"\x00" * 6, ARP_OTHER_TARGET)))
    add("arp_not_for_us", "gratuitous ARP request from 198.51.100.253 (broadcast)",
        eth(BCAST_MAC, HOST2_MAC, ETH_ARP,
            arp(1, HOST2_MAC, HOST2_IP, b"\x00" * 6, HOST2_IP)))
    add("arp_other", "ARP reply 198.51.100.254 is-at 02:00:00:00:00:fe, to our MAC",
        eth(APP_MAC, ROUTER_MAC, ETH_ARP,
            arp(2, ROUTER_MAC, ROUTER_IP, APP_MAC, APP_IP)))

    # ---- runt ----
    full = udp_frame(1, order(1), ident=nid())
    add("runt", "10-byte frame (shorter than an Ethernet header)", full[:10])
    full = udp_frame(2, order(2), ident=nid())
    add("runt", "30-byte frame, EtherType IPv4, cut inside the 20-byte IPv4 header (< 34 bytes)", full[:30])
    arpf = eth(APP_MAC, ROUTER_MAC, ETH_ARP,
               arp(1, ROUTER_MAC, ROUTER_IP, b"\x00" * 6, APP_IP), pad=False)
    add("runt", "20-byte frame, EtherType ARP, only 6 of the 28 ARP bytes present", arpf[:20])

    # ---- truncated ----
    full = udp_frame(3, order(3, 300), ident=nid())
    add("truncated", "valid 342-byte order frame cut to 200 bytes (IP total length 328 > 186 present)",
        full[:200])
    full = udp_frame(4, order(4), ident=nid())
    add("truncated", "40-byte frame claiming IPv4 (valid 20-byte IP header, IP total length 148 > 26 present)",
        full[:40])
    p = order(1)
    seg = udp4(s1ip, APP_IP, s1port, APP_PORT, p, udp_len=8 + len(p) + 8)
    add("truncated", "UDP length field 8 bytes LARGER than the IP payload (IP header consistent with frame)",
        eth(APP_MAC, s1mac, ETH_IPV4, ipv4(s1ip, APP_IP, 17, seg, nid())))

    # ---- Ethernet / EtherType level ----
    add("not_for_us_mac", "valid order to 198.51.100.1:9000 but Ethernet dst 02:00:00:00:00:99",
        udp_frame(2, order(2), dst_mac=OTHER_MAC, ident=nid()))
    inner = ipv4(s3ip, APP_IP, 17, udp4(s3ip, APP_IP, s3port, APP_PORT, order(3)), nid())
    add("vlan", "802.1Q VLAN 100 tagged (0x8100) otherwise-valid order to us",
        eth(APP_MAC, s3mac, ETH_VLAN, struct.pack("!HH", 100, ETH_IPV4) + inner))
    p = order(1)
    useg = struct.pack("!HHHH", s1port, APP_PORT, 8 + len(p), 0) + p
    pseudo6 = SRC1_IP6 + APP_IP6 + struct.pack("!IxxxB", len(useg), 17)
    c6 = csum(pseudo6 + useg) or 0xFFFF
    useg = useg[:6] + struct.pack("!H", c6) + useg[8:]
    ip6 = struct.pack("!IHBB", 0x60000000, len(useg), 17, 64) + SRC1_IP6 + APP_IP6 + useg
    add("ipv6", "IPv6 UDP 2001:db8::11.40001 > 2001:db8::1.9000 carrying an order",
        eth(APP_MAC, s1mac, ETH_IPV6, ip6))
    def tlv(typ, val):
        return struct.pack("!H", (typ << 9) | len(val)) + val
    lldp = (tlv(1, b"\x04" + ROUTER_MAC) + tlv(2, b"\x05" + b"xe-0/0/0")
            + tlv(3, b"\x00\x78") + tlv(0, b""))
    add("unknown_ethertype", "LLDP (EtherType 0x88CC) sent to our MAC",
        eth(APP_MAC, ROUTER_MAC, ETH_LLDP, lldp))
    llc = b"\x42\x42\x03" + b"\x00" * 35  # STP BPDU over 802.2 LLC
    add("unknown_ethertype", "IEEE 802.3 length-field frame (type/len 0x0026, LLC/STP) to our MAC",
        eth(APP_MAC, ROUTER_MAC, len(llc), llc))

    # ---- IPv4 header level ----
    p = order(2)
    seg = udp4(s2ip, APP_IP, s2port, APP_PORT, p)
    add("ipv4_bad_header", "EtherType IPv4 but IP version 6 in the header (checksum otherwise correct)",
        eth(APP_MAC, s2mac, ETH_IPV4, ipv4(s2ip, APP_IP, 17, seg, nid(), version=6)))
    add("ipv4_bad_header", "IPv4 IHL = 4 (< 5)",
        eth(APP_MAC, s2mac, ETH_IPV4, ipv4(s2ip, APP_IP, 17, seg, nid(), ihl=4)))
    add("ipv4_bad_header", "IPv4 total length 16 (< IHL*4 = 20)",
        eth(APP_MAC, s2mac, ETH_IPV4, ipv4(s2ip, APP_IP, 17, seg, nid(), total_len=16)))
    p = order(3)
    seg = udp4(s3ip, APP_IP, s3port, APP_PORT, p)
    add("ipv4_bad_checksum", "IPv4 header checksum wrong (xor 0x0101), everything else valid",
        eth(APP_MAC, s3mac, ETH_IPV4, ipv4(s3ip, APP_IP, 17, seg, nid(), bad_csum=True)))
    # a 2000-byte order, fragmented at a 1500 MTU
    p = order(4, 2000)
    seg = udp4(s4ip, APP_IP, s4port, APP_PORT, p)
    fid = nid()
    add("ipv4_fragment", "first fragment (MF=1, offset 0) of a 2000-byte order, 1480 bytes",
        eth(APP_MAC, s4mac, ETH_IPV4,
            ipv4(s4ip, APP_IP, 17, seg[:1480], fid, df=False, mf=True)))
    add("ipv4_fragment", "last fragment (MF=0, offset 1480) of the same datagram, 528 bytes",
        eth(APP_MAC, s4mac, ETH_IPV4,
            ipv4(s4ip, APP_IP, 17, seg[1480:], fid, df=False, frag_off=1480 // 8)))
    add("ipv4_not_for_us", "valid order to 198.51.100.2:9000 with our Ethernet MAC",
        udp_frame(1, order(1), dst_ip=OTHER_IP, ident=nid()))
    add("ipv4_not_for_us", "UDP to subnet broadcast 198.51.100.255:9000, Ethernet broadcast",
        udp_frame(2, order(2), dst_mac=BCAST_MAC, dst_ip=SUBNET_BCAST_IP, ident=nid()))

    # ---- other IP protocols ----
    data = struct.pack("!II", EPOCH, 0) + bytes(range(0x10, 0x10 + 48))
    icmp = struct.pack("!BBHHH", 8, 0, 0, 0x4242, 1) + data
    icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
    add("ip_proto_other", "ICMP echo request 192.0.2.11 > 198.51.100.1",
        eth(APP_MAC, s1mac, ETH_IPV4, ipv4(s1ip, APP_IP, 1, icmp, nid())))
    opts = (b"\x02\x04\x05\xb4" + b"\x04\x02" + b"\x08\x0a" + struct.pack("!II", 123456, 0)
            + b"\x01" + b"\x03\x03\x07")
    tcp = struct.pack("!HHIIBBHHH", s2port, APP_PORT, 0x1A2B3C4D, 0, (10 << 4), 0x02,
                      64240, 0, 0) + opts
    tcp = tcp[:16] + struct.pack("!H", l4_csum_v4(s2ip, APP_IP, 6, tcp)) + tcp[18:]
    add("ip_proto_other", "TCP SYN 192.0.2.12:40002 > 198.51.100.1:9000",
        eth(APP_MAC, s2mac, ETH_IPV4, ipv4(s2ip, APP_IP, 6, tcp, nid())))

    # ---- UDP level ----
    p = order(3)
    seg = udp4(s3ip, APP_IP, s3port, APP_PORT, p, udp_len=len(p))  # 8 smaller
    add("udp_bad_length", "UDP length field 8 bytes SMALLER than the IP payload",
        eth(APP_MAC, s3mac, ETH_IPV4, ipv4(s3ip, APP_IP, 17, seg, nid())))
    p = order(4)
    seg = udp4(s4ip, APP_IP, s4port, APP_PORT, p, udp_len=4)
    add("udp_bad_length", "UDP length field 4 (< 8)",
        eth(APP_MAC, s4mac, ETH_IPV4, ipv4(s4ip, APP_IP, 17, seg, nid())))
    add("udp_bad_checksum", "UDP checksum nonzero and wrong (xor 0x5a5a)",
        udp_frame(1, order(1), ident=nid(), cksum="bad"))
    add("udp_bad_checksum", "UDP checksum nonzero and wrong (xor 0x5a5a), 1200-byte payload",
        udp_frame(2, order(2, 1200), ident=nid(), cksum="bad"))
    add("udp_wrong_port", "valid order to UDP port 9001",
        udp_frame(3, order(3), dport=9001, ident=nid()))
    add("udp_wrong_port", "valid order to UDP port 8999",
        udp_frame(4, order(4), dport=8999, ident=nid()))
    add("empty_payload", "UDP to 9000 with zero-length payload (frame padded to 60 bytes)",
        udp_frame(1, b"", ident=nid()))
    add("oversize", "UDP payload 9000 bytes (> 8900), 9042-byte frame",
        udp_frame(2, order(2, 9000), ident=nid()))
    add("oversize", "UDP payload 8901 bytes (max + 1), 8943-byte frame",
        udp_frame(3, order(3, 8901), ident=nid()))

    pkts = []
    t = 0
    for reason, desc, frame in cases:
        pkts.append((t, frame))
        t += rng.randint(200, 2000)
    return pkts, cases


def junk_counts(cases):
    counts = {r: 0 for r in DROP_REASONS}
    arp_req = 0
    for reason, _, _ in cases:
        if reason == "arp_request":
            arp_req += 1
        else:
            counts[reason] += 1
    return counts, arp_req


# --------------------------------------------------------------------------
# mixed.pcap
# --------------------------------------------------------------------------

MIXED_SHIFT_US = 2000


def gen_mixed(rng, orders, junk_cases):
    msgs = [(t + MIXED_SHIFT_US, f) for t, f in orders[:N_MIXED_ORDERS]]
    first_arp = next(i for i, c in enumerate(junk_cases) if c[0] == "arp_request")
    rest = [c[2] for i, c in enumerate(junk_cases) if i != first_arp]
    rng.shuffle(rest)
    # burst gaps: between message j and j+1 where the gap is >= 100 us
    gaps = [j for j in range(len(msgs) - 1) if msgs[j + 1][0] - msgs[j][0] >= 100]
    slots = {}
    for f in rest:
        slots.setdefault(rng.choice(gaps), []).append(f)
    out = [(0, junk_cases[first_arp][2])]
    for j, (t, f) in enumerate(msgs):
        out.append((t, f))
        if j in slots:
            fs = slots[j]
            ta, tb = t, msgs[j + 1][0]
            for k, jf in enumerate(fs):
                out.append((ta + (k + 1) * (tb - ta) // (len(fs) + 1), jf))
    ts = [t for t, _ in out]
    assert ts == sorted(ts)
    return out


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def write_pcap(path, pkts):
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for t, f in pkts:
            sec, usec = divmod(EPOCH * 1_000_000 + t, 1_000_000)
            fh.write(struct.pack("<IIII", sec, usec, len(f), len(f)))
            fh.write(f)


def write_json(path, obj):
    with open(path, "w", newline="\n") as fh:
        json.dump(obj, fh, indent=2)
        fh.write("\n")


def readme(orders_exp, junk_exp, mixed_exp, cases, info, n_junk, n_mixed):
    sizes = info["sizes"]
    L = []
    a = L.append
    a("# taphold test captures")
    a("")
    a("**Generated files — do not edit by hand.** Regenerate with")
    a("")
    a("    python3 scripts/gen-test-pcaps.py            # writes test-pcaps/")
    a("    python3 scripts/gen-test-pcaps.py OUTDIR     # writes elsewhere")
    a("    python3 scripts/gen-test-pcaps.py --check    # exit 1 if test-pcaps/ differs")
    a("")
    a("The generator uses only the Python 3.11 standard library, a fixed RNG seed")
    a("(%d) and fixed timestamps starting at 2026-01-01T00:00:00Z, so its output is" % SEED)
    a("byte-identical on every run. All files are classic libpcap (magic 0xa1b2c3d4,")
    a("microsecond timestamps, snaplen 65535, linktype 1 Ethernet, caplen == len).")
    a("IPv4 header checksums and UDP checksums are real except where a case is")
    a("deliberately bad or deliberately 0.")
    a("")
    a("## Addresses (the shipped default config)")
    a("")
    a("| role | MAC | IPv4 | UDP port |")
    a("|---|---|---|---|")
    a("| appliance primary port P | 02:00:00:00:00:01 | 198.51.100.1 | 9000 (listen) |")
    for n in SOURCES:
        a("| source %d | 02:00:00:00:01:0%d | 192.0.2.1%d | %d |" % (n, n, n, 40000 + n))
    a("")
    a("Junk-only hosts: router 02:00:00:00:00:fe / 198.51.100.254, host")
    a("02:00:00:00:00:fd / 198.51.100.253, foreign MAC 02:00:00:00:00:99, foreign IPs")
    a("198.51.100.2, 198.51.100.99, 198.51.100.255, IPv6 2001:db8::11 > 2001:db8::1.")
    a("")
    a("All order messages: Ethernet dst = appliance MAC, no VLAN, IPv4 DF set, TTL 64,")
    a("dst 198.51.100.1:9000, IP ID increments per source. Frames shorter than 60")
    a("bytes are zero-padded to 60 (as on a real wire) except deliberate runts /")
    a("truncations, so parsers must use the IP/UDP length fields, not the frame length.")
    a("")
    a("## Order message payload")
    a("")
    a("16-byte header, network byte order, then FIX-like tag=value text (SOH")
    a("separated) padded to size with a `58=PADPAD...` field (or, if 1-4 bytes short,")
    a("NUL bytes); small messages are truncated FIX text:")
    a("")
    a("| offset | size | field |")
    a("|---|---|---|")
    a("| 0 | 4 | magic `ORD1` |")
    a("| 4 | 2 | source id u16 (1..4) |")
    a("| 6 | 4 | client sequence u32, per source, 1,2,3,... with no gaps |")
    a("| 10 | 2 | message length u16 (= UDP payload length) |")
    a("| 12 | 4 | flags u32: bit0 sell, bit1 limit, bit2 IOC, bit8 batch (jumbo list order) |")
    a("")
    a("The first 16 bytes are unique per message. Order-like payloads inside")
    a("junk.pcap use sequence numbers >= 0x%08X so they can never collide with a real" % JUNK_SEQ_BASE)
    a("order if one leaks through.")
    a("")
    a("## Files")
    a("")
    a("### orders.pcap — %d frames, all valid messages" % N_ORDERS)
    a("")
    a("4 interleaved sources, bursty timing (bursts of 1-64 messages a few us apart at")
    a("10 Gb/s pacing, then gaps of 0.2-100 ms; one 64-message burst).")
    ps = info["per_source"]
    a("Messages per source: " + ", ".join("source %d: %d" % (n, ps[n]) for n in SOURCES)
      + " (so the last client sequence of source N equals its count).")
    small = sum(1 for s in sizes if s <= 300)
    mid = sum(1 for s in sizes if 1000 <= s <= 1472)
    jum = sum(1 for s in sizes if s >= 8000)
    a("UDP payload sizes: %d in 64..300, %d in 1000..1472, %d jumbo in 8000..8900" % (small, mid, jum))
    a("(min %d, max %d; jumbo sizes %s). Special-but-valid cases (0-based message index in"
      % (min(sizes), max(sizes), ", ".join(str(sizes[i]) for i in info["jumbo_idx"])))
    a("orders.pcap; indices < 500 are also in mixed.pcap):")
    a("")
    a("- jumbo messages at %s" % ", ".join(map(str, info["jumbo_idx"])))
    a("- UDP checksum 0 (no checksum, valid in IPv4) at %s" % ", ".join(map(str, info["zero_idx"])))
    a("- IPv4 options, IHL 6, at %s (NOP NOP NOP EOL; Router Alert; NOP NOP NOP EOL)"
      % ", ".join(map(str, info["opt_idx"])))
    a("")
    a("`orders.expected.json`:")
    a("")
    a("```json")
    a(json.dumps(orders_exp, indent=2))
    a("```")
    a("")
    a("### junk.pcap — %d frames" % n_junk)
    a("")
    a("Every frame violates exactly one rule given the classifier order (length ->")
    a("Ethernet dst MAC (ours or broadcast) -> EtherType -> ARP / IPv4 header ->")
    a("truncation -> IPv4 checksum -> fragment -> IPv4 dst -> protocol -> UDP). ARP")
    a("requests for 198.51.100.1 are not drops: the appliance must answer them; they")
    a("are counted as `arp_request`.")
    a("")
    a("| # | expected reason | frame len | description |")
    a("|---|---|---|---|")
    for i, (reason, desc, frame) in enumerate(cases):
        a("| %d | %s | %d | %s |" % (i + 1, reason, len(frame), desc))
    a("")
    a("`junk.expected.json` (`messages` = frames that must be accepted as orders):")
    a("")
    a("```json")
    a(json.dumps(junk_exp, indent=2))
    a("```")
    a("")
    a("### mixed.pcap — %d frames (default replay input)" % n_mixed)
    a("")
    a("The first %d messages of orders.pcap (timestamps shifted +%d us) with every" % (N_MIXED_ORDERS, MIXED_SHIFT_US))
    a("junk.pcap frame spread through the burst gaps; the broadcast ARP request for")
    a("198.51.100.1 comes first (at 2026-01-01T00:00:00Z), the rest in seeded-random")
    a("order. Contains 2 jumbos (one exactly 8900 bytes), 2 checksum-0 messages, 1")
    a("IPv4-options message and payloads of exactly 64 and 1472 bytes.")
    a("")
    a("`mixed.expected.json`:")
    a("")
    a("```json")
    a(json.dumps(mixed_exp, indent=2))
    a("```")
    a("")
    a("## Notes for classifier / test authors")
    a("")
    a("- `truncated` covers: IP total length > bytes present (a 200-byte cut of a")
    a("  342-byte frame, and a 40-byte frame whose complete 20-byte IP header claims")
    a("  148 bytes), and a UDP length field larger than the IP payload.")
    a("- `runt` covers: < 14 bytes, an IPv4 frame < 34 bytes, an ARP frame < 42 bytes.")
    a("- `udp_bad_length` covers: UDP length 8 smaller than the IP payload, and UDP")
    a("  length 4 (< 8).")
    a("- `ipv4_fragment` covers both a first fragment (MF=1) and a last fragment")
    a("  (MF=0, offset 1480) — check MF *and* offset.")
    a("- `empty_payload` is a 60-byte padded frame: payload length must come from the")
    a("  UDP length, not the frame length.")
    a("- `oversize` covers 9000 and 8901 (max %d + 1); orders contain exactly %d." % (MAX_PAYLOAD, MAX_PAYLOAD))
    a("- Wire format check: `tcpdump -nn -vv -r test-pcaps/junk.pcap` reports")
    a("  `bad cksum` on the ipv4_bad_checksum frame, `bad udp cksum` on the two")
    a("  udp_bad_checksum frames, and `[no cksum]` on orders' checksum-0 messages.")
    a("")
    return "\n".join(L)



# --------------------------------------------------------------------------
# gateway.pcap: TCP order-entry sessions through gateway mode
# --------------------------------------------------------------------------

GW_IP = ip4("10.71.1.1")          # primary.ip (the engine's gateway)
GW_IP2 = ip4("10.71.2.1")         # gateway.addresses (the exchange's gateway)
ENGINE_MAC = mac("02:00:00:00:0e:01")
ENGINE_IP = ip4("10.71.1.2")
EXCHANGE_MAC = mac("02:00:00:00:0e:02")
EXCHANGE_IP = ip4("10.71.2.2")
GW_FLOWS = [(40001, 9878), (40002, 9879)]  # (engine port, exchange port)


def tcp4(src, dst, sport, dport, seq, ack, flags, payload=b"", bad=False):
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF,
                      ack & 0xFFFFFFFF, 5 << 4, flags, 64240, 0, 0)
    seg = hdr + payload
    c = l4_csum_v4(src, dst, 6, seg)
    if c == 0xFFFF:  # TCP has no "no checksum": 0xFFFF and 0 are the same sum
        c = 0
    if bad:
        c ^= 0x5A5A
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def gw_frame(to_exchange, sport, dport, seq, ack, flags, payload=b"", ident=0,
             ttl=64, bad=False, dst_ip=None, proto_payload=None):
    if to_exchange:
        smac, sip, dip = ENGINE_MAC, ENGINE_IP, dst_ip or EXCHANGE_IP
    else:
        smac, sip, dip = EXCHANGE_MAC, EXCHANGE_IP, dst_ip or ENGINE_IP
    seg = tcp4(sip, dip, sport, dport, seq, ack, flags, payload, bad)
    return eth(APP_MAC, smac, ETH_IPV4, ipv4(sip, dip, 6, seg, ident, ttl=ttl))


def fix_msg(fields):
    body = "".join("%s=%s\x01" % kv for kv in fields).encode()
    head = b"8=FIX.4.2\x019=%d\x01" % len(body)
    m = head + body
    return m + b"10=%03d\x01" % (sum(m) % 256)


def gen_gateway(rng):
    """Two FIX sessions engine -> exchange through taphold in gateway mode:
    handshake, orders (some segments with two FIX messages), execution reports
    back, pure ACKs, one retransmitted segment, two segments out of order, FIN;
    then frames gateway mode must refuse or forward by rule."""
    FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
    pkts = []
    t = [500_000]  # microseconds after EPOCH
    exp = {"protected_data": 0, "protected_control": 0, "returned": 0,
           "retransmitted": 0, "out_of_order": 0, "fix_messages": 0,
           "flows": {}}
    ident = [0]

    def add(frame):
        t[0] += rng.randint(20, 200)
        pkts.append((t[0], frame))

    def nid():
        ident[0] += 1
        return ident[0]

    for fi, (sport, dport) in enumerate(GW_FLOWS):
        # Flow 2's byte stream crosses the 2^32 wrap of the sequence space.
        e_seq = 1_000_000 if fi == 0 else 0xFFFF_FFFF - 1200
        x_seq = 7_000_000 * (fi + 1)
        flow = "%s:%d-%s:%d" % ("10.71.1.2", sport, "10.71.2.2", dport)
        f_exp = {"data_segments": 0, "fix_messages": 0, "bytes": 0,
                 "last_ack_from_exchange": 0, "first_seq": 0}
        f_exp["first_seq"] = (e_seq + 1) & 0xFFFFFFFF
        # Handshake.
        add(gw_frame(True, sport, dport, e_seq, 0, SYN, ident=nid()))
        exp["protected_control"] += 1
        e_seq = (e_seq + 1) & 0xFFFFFFFF
        add(gw_frame(False, dport, sport, x_seq, e_seq, SYN | ACK, ident=nid()))
        exp["returned"] += 1
        x_seq += 1
        add(gw_frame(True, sport, dport, e_seq, x_seq, ACK, ident=nid()))
        exp["protected_control"] += 1
        segments = []
        for k in range(12):
            n_msgs = 2 if k % 4 == 3 else 1
            payload = b""
            for j in range(n_msgs):
                msg_seq = f_exp["fix_messages"] + 1
                payload += fix_msg([
                    ("35", "D"), ("49", "ENGINE%d" % (fi + 1)), ("56", "EXCHANGE"),
                    ("34", str(msg_seq)), ("52", fix_time(EPOCH * 1_000_000 + t[0] + j)),
                    ("11", "ORD-%d-%04d" % (fi + 1, msg_seq)), ("21", "1"),
                    ("55", rng.choice(SYMBOLS)), ("54", str(rng.choice((1, 2)))),
                    ("60", fix_time(EPOCH * 1_000_000 + t[0] + j)),
                    ("38", str(rng.choice((1, 10, 100, 500)))), ("40", "2"),
                    ("44", "%d.%02d" % (rng.randint(5, 900), rng.randint(0, 99))),
                    ("59", "0")])
                f_exp["fix_messages"] += 1
            segments.append((e_seq, payload))
            e_seq = (e_seq + len(payload)) & 0xFFFFFFFF
        # Segments 5 and 6 swapped (out of order); segment 8 sent twice.
        order = list(range(len(segments)))
        order[5], order[6] = order[6], order[5]
        sent = []
        for i in order:
            sent.append(i)
            if i == 8:
                sent.append(8)
        received = set()
        reports = 0
        for i in sent:
            seq, payload = segments[i]
            add(gw_frame(True, sport, dport, seq, x_seq, PSH | ACK, payload, ident=nid()))
            exp["protected_data"] += 1
            f_exp["data_segments"] += 1
            received.add(i)
            # The exchange acknowledges cumulatively (the contiguous prefix) and
            # reports an execution; segment 6 before 5 gets no new ACK.
            if i == 6 and 5 not in received:
                continue
            k = 0
            while k in received:
                k += 1
            acked = (segments[k - 1][0] + len(segments[k - 1][1])) & 0xFFFFFFFF
            reports += 1
            report = fix_msg([("35", "8"), ("49", "EXCHANGE"), ("56", "ENGINE%d" % (fi + 1)),
                              ("34", str(reports)), ("52", fix_time(EPOCH * 1_000_000 + t[0])),
                              ("150", "2"), ("39", "2")])
            add(gw_frame(False, dport, sport, x_seq, acked, PSH | ACK, report, ident=nid()))
            exp["returned"] += 1
            x_seq += len(report)
            # The engine acknowledges the report (a pure ACK of the protected flow).
            add(gw_frame(True, sport, dport, e_seq, x_seq, ACK, ident=nid()))
            exp["protected_control"] += 1
        exp["retransmitted"] += 1
        exp["out_of_order"] += 1
        # Close from the engine.
        add(gw_frame(True, sport, dport, e_seq, x_seq, FIN | ACK, ident=nid()))
        exp["protected_control"] += 1
        e_seq = (e_seq + 1) & 0xFFFFFFFF
        add(gw_frame(False, dport, sport, x_seq, e_seq, FIN | ACK, ident=nid()))
        exp["returned"] += 1
        f_exp["last_ack_from_exchange"] = e_seq & 0xFFFFFFFF
        x_seq += 1
        add(gw_frame(True, sport, dport, e_seq, x_seq, ACK, ident=nid()))
        exp["protected_control"] += 1
        f_exp["bytes"] = sum(len(p) for _, p in segments)
        exp["flows"][flow] = f_exp
        exp["fix_messages"] += f_exp["fix_messages"]

    junk = {}

    def bad(reason, frame):
        junk[reason] = junk.get(reason, 0) + 1
        add(frame)

    sport, dport = GW_FLOWS[0]
    order = fix_msg([("35", "D"), ("34", "999"), ("11", "JUNK")])
    bad("tcp_bad_checksum", gw_frame(True, sport, dport, 5, 5, PSH | ACK, order, ident=nid(), bad=True))
    bad("ttl_expired", gw_frame(True, sport, dport, 5, 5, PSH | ACK, order, ident=nid(), ttl=1))
    bad("no_route", gw_frame(True, sport, dport, 5, 5, PSH | ACK, order, ident=nid(),
                             dst_ip=ip4("192.0.2.99")))
    bad("ipv4_to_us", gw_frame(True, sport, dport, 5, 5, PSH | ACK, order, ident=nid(),
                               dst_ip=GW_IP))
    bad("oversize", gw_frame(True, sport, dport, 5, 5, PSH | ACK, b"x" * 1401, ident=nid()))
    bad("not_for_us_mac", gw_frame(True, sport, dport, 5, 5, PSH | ACK, order, ident=nid())[:0]
        + EXCHANGE_MAC + gw_frame(True, sport, dport, 5, 5, PSH | ACK, order, ident=nid())[6:])
    bad("ipv6", eth(APP_MAC, ENGINE_MAC, 0x86DD, b"\x60" + b"\x00" * 39))
    # Forwarded by rule (gateway.other: forward): ssh to the exchange, and UDP.
    forwarded = 0
    add(gw_frame(True, 50000, 22, 1, 1, PSH | ACK, b"SSH-2.0-x\r\n", ident=nid()))
    forwarded += 1
    add(eth(APP_MAC, ENGINE_MAC, ETH_IPV4,
            ipv4(ENGINE_IP, EXCHANGE_IP, 17, udp4(ENGINE_IP, EXCHANGE_IP, 5000, 5001, b"md"), nid())))
    forwarded += 1
    # A next hop nobody configured: an ARP request goes out, the frame is dropped.
    add(eth(APP_MAC, ENGINE_MAC, ETH_IPV4,
            ipv4(ENGINE_IP, ip4("10.71.2.99"), 17, udp4(ENGINE_IP, ip4("10.71.2.99"), 5000, 5001, b"?"), nid())))
    exp["no_neighbor"] = 1
    # ARP for both of our addresses.
    for ours in (GW_IP, GW_IP2):
        add(eth(BCAST_MAC, ENGINE_MAC, 0x0806, arp(1, ENGINE_MAC, ENGINE_IP, b"\x00" * 6, ours)))
    exp["arp_request"] = 2
    exp["forwarded"] = forwarded
    exp["dropped"] = junk
    return [(ts, f) for ts, f in pkts], exp


def generate(outdir):
    os.makedirs(outdir, exist_ok=True)
    rng = random.Random(SEED)
    orders, info = gen_orders(rng)
    junk, cases = gen_junk(random.Random(SEED + 1))
    mixed = gen_mixed(random.Random(SEED + 2), orders, cases)

    sizes = info["sizes"]
    orders_exp = {
        "messages": N_ORDERS,
        "sources": len(SOURCES),
        "max_payload": max(sizes),
        "min_payload": min(sizes),
        "per_source": {str(n): info["per_source"][n] for n in SOURCES},
        "jumbo": len(info["jumbo_idx"]),
        "udp_checksum_zero": len(info["zero_idx"]),
        "ipv4_options": len(info["opt_idx"]),
    }
    counts, arp_req = junk_counts(cases)
    junk_exp = {"messages": 0, **counts, "arp_request": arp_req}
    mixed_exp = {"messages": N_MIXED_ORDERS, **counts, "arp_request": arp_req}
    assert len(junk) == sum(counts.values()) + arp_req
    assert len(mixed) == N_MIXED_ORDERS + len(junk)

    gateway, gateway_exp = gen_gateway(random.Random(SEED + 3))
    write_pcap(os.path.join(outdir, "gateway.pcap"), gateway)
    write_json(os.path.join(outdir, "gateway.expected.json"), gateway_exp)
    write_pcap(os.path.join(outdir, "orders.pcap"), orders)
    write_pcap(os.path.join(outdir, "junk.pcap"), junk)
    write_pcap(os.path.join(outdir, "mixed.pcap"), mixed)
    write_json(os.path.join(outdir, "orders.expected.json"), orders_exp)
    write_json(os.path.join(outdir, "junk.expected.json"), junk_exp)
    write_json(os.path.join(outdir, "mixed.expected.json"), mixed_exp)
    with open(os.path.join(outdir, "README.md"), "w", newline="\n") as fh:
        fh.write(readme(orders_exp, junk_exp, mixed_exp, cases, info,
                        len(junk), len(mixed)))
    return {"orders.pcap": len(orders), "junk.pcap": len(junk), "mixed.pcap": len(mixed)}


OUTPUTS = ["orders.pcap", "junk.pcap", "mixed.pcap", "gateway.pcap",
           "gateway.expected.json", "orders.expected.json",
           "junk.expected.json", "mixed.expected.json", "README.md"]


def main():
    default = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "test-pcaps")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir", nargs="?", default=default)
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temp dir and compare with OUTDIR")
    args = ap.parse_args()
    if args.check:
        tmp = tempfile.mkdtemp(prefix="taphold-pcaps-")
        try:
            generate(tmp)
            bad = []
            for name in OUTPUTS:
                have = os.path.join(args.outdir, name)
                if not os.path.exists(have):
                    bad.append("%s: missing" % name)
                elif not filecmp.cmp(have, os.path.join(tmp, name), shallow=False):
                    bad.append("%s: differs" % name)
            if bad:
                for b in bad:
                    print("gen-test-pcaps --check: " + b, file=sys.stderr)
                return 1
            print("gen-test-pcaps --check: %s matches (%d files)" % (args.outdir, len(OUTPUTS)))
            return 0
        finally:
            shutil.rmtree(tmp)
    counts = generate(args.outdir)
    for name, n in counts.items():
        print("%-12s %5d frames" % (name, n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
