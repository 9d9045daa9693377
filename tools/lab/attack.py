#!/usr/bin/env python3
"""The attacks of issue 14, live, for the lab tests (crates/taphold-lab/tests/security.rs).

Run inside a lab namespace (`scripts/lab.sh exec NS python3 tools/lab/attack.py ...`),
raw AF_PACKET sockets, standard library only:

  sniff IFACE                 every taphold frame (EtherType 0x88B5) seen on IFACE, to
                              stdout as 2-byte length + frame
  inject IFACE DST SRC        frames from stdin (as `sniff` writes them), re-addressed
                              DST <- SRC, sent on IFACE: with `sniff` in another
                              namespace, a genuine frame of one link bridged to another
  reflect IFACE PEER          every heartbeat from PEER on IFACE sent straight back,
                              Ethernet addresses swapped (a reflector, no backup node)
  acks IFACE DST SRC KEY LINK EPOCH N
                              N authentic acks (sealed with KEY, 32 hex digits) for
                              LINK of EPOCH, seqs 1..N, 5 ms apart: a run's acks
                              replayed into another run

Each mode runs until killed (acks: until sent) and prints what it did to stderr.
"""

import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "vectors"))
import taphold_v4 as v  # noqa: E402

ETH_P_ALL = 0x0003
TAPHOLD = 0x88B5


def mac(s):
    return bytes(int(x, 16) for x in s.split(":"))


def sock(iface):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    return s


def frames(s):
    """Frames received (not our own sends) carrying a taphold PDU."""
    while True:
        data, addr = s.recvfrom(65535)
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        if len(data) >= 14 + 48 and struct.unpack(">H", data[12:14])[0] == TAPHOLD:
            yield data


def sniff(iface):
    out = sys.stdout.buffer
    n = 0
    for f in frames(sock(iface)):
        out.write(struct.pack(">H", len(f)) + f)
        out.flush()
        n += 1


def inject(iface, dst, src):
    s = sock(iface)
    inp = sys.stdin.buffer
    n = 0
    while True:
        h = inp.read(2)
        if len(h) < 2:
            break
        f = inp.read(struct.unpack(">H", h)[0])
        s.send(mac(dst) + mac(src) + f[12:])
        n += 1
        if n % 100 == 0:
            print(f"inject: {n} frames", file=sys.stderr, flush=True)


def reflect(iface, peer):
    s = sock(iface)
    p = mac(peer)
    n = 0
    for f in frames(s):
        if f[6:12] != p or f[14 + 3] != 2:  # from the appliance, a heartbeat
            continue
        s.send(f[6:12] + f[0:6] + f[12:])
        n += 1
        if n % 50 == 0:
            print(f"reflect: {n} heartbeats", file=sys.stderr, flush=True)


def acks(iface, dst, src, key, link, epoch, count):
    s = sock(iface)
    k = bytes.fromhex(key)
    for seq in range(1, count + 1):
        pdu = v.pdu(3, 0x08, link, 0, 1, struct.pack(">Q", seq), epoch, seq,
                    time.time_ns(), 0, key=k)
        s.send(mac(dst) + mac(src) + struct.pack(">H", TAPHOLD) + pdu)
        time.sleep(0.005)
    print(f"acks: {count} sent", file=sys.stderr, flush=True)


def main(argv):
    mode, args = argv[1], argv[2:]
    if mode == "sniff":
        sniff(*args)
    elif mode == "inject":
        inject(*args)
    elif mode == "reflect":
        reflect(*args)
    elif mode == "acks":
        acks(args[0], args[1], args[2], args[3], int(args[4]), int(args[5]), int(args[6]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
