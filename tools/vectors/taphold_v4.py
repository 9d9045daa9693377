#!/usr/bin/env python3
"""Independent computation of the taphold protocol version 4 test vectors.

SipHash-2-4 written from the paper (Aumasson & Bernstein 2012), not from our Rust
code: the digest of a PDU is SipHash-2-4(key, pdu[8:48+body] + pdu[0:8]) and the key
id is SipHash-2-4(key, b"taphold key id") & 0xff (docs/protocol.md, "The digest").
Prints each vector as hex; crates/taphold-wire/src/taphold.rs holds the same bytes.

    python3 tools/vectors/taphold_v4.py
"""
import struct

M = (1 << 64) - 1


def rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & M


def siphash(key, msg, c=2, d=4):
    k0, k1 = struct.unpack("<QQ", key)
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573

    def rnd():
        nonlocal v0, v1, v2, v3
        v0 = (v0 + v1) & M; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32)
        v2 = (v2 + v3) & M; v3 = rotl(v3, 16); v3 ^= v2
        v0 = (v0 + v3) & M; v3 = rotl(v3, 21); v3 ^= v0
        v2 = (v2 + v1) & M; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32)

    n = len(msg)
    end = n - n % 8
    for i in range(0, end, 8):
        m = struct.unpack("<Q", msg[i:i + 8])[0]
        v3 ^= m
        for _ in range(c):
            rnd()
        v0 ^= m
    last = bytearray(msg[end:]) + bytes(7 - n % 8) + bytes([n & 0xFF])
    m = struct.unpack("<Q", bytes(last))[0]
    v3 ^= m
    for _ in range(c):
        rnd()
    v0 ^= m
    v2 ^= 0xFF
    for _ in range(d):
        rnd()
    return v0 ^ v1 ^ v2 ^ v3


KEY = bytes(range(16))
# The paper's SipHash-2-4 vector: key 00..0f, message 00..0e.
assert siphash(KEY, bytes(range(15))) == 0xA129CA6149BE45E5
KEY_ID = siphash(KEY, b"taphold key id") & 0xFF
EPOCH = 0x692B8900


def pdu(ptype, flags, link, mode, stream, body, epoch, seq, ts, wm, key=KEY):
    h = struct.pack(">HBBBBBBIIQQQQ", 0x5448, 4, ptype, siphash(key, b"taphold key id") & 0xFF,
                    flags, link, mode, stream, len(body), epoch, seq, ts, wm)
    covered = h + body
    d = siphash(key, covered[8:] + covered[:8])
    return covered + struct.pack(">Q", d)


def show(name, b):
    print(f"{name} ({len(b)} bytes):")
    for i in range(0, len(b), 16):
        row = b[i:i + 16]
        print("  " + "  ".join(" ".join(f"{x:02x}" for x in row[j:j + 8]) for j in range(0, len(row), 8)))


if __name__ == "__main__":
    print(f"key 00..0f: id 0x{KEY_ID:02x}")
    payload_digest = siphash(KEY, b"ORDER")
    prefix = bytes([10, 0, 0, 99]) + struct.pack(">HH", 40000, 5)
    show("backup full, link 1", pdu(1, 0, 1, 0, 7, prefix + b"ORDER", EPOCH, 42, 1_000_000_000, 41))
    show("backup full, the same frame on link 0", pdu(1, 0, 0, 0, 7, prefix + b"ORDER", EPOCH, 42, 1_000_000_000, 41))
    show("backup digest-only RETRANSMIT, link 0",
         pdu(1, 4, 0, 1, 7, prefix + struct.pack(">Q", payload_digest), EPOCH, 42, 1_000_000_000, 41))
    hb_body = struct.pack(">QQ", 4, 1500)
    show("heartbeat from the appliance, link 1", pdu(2, 0, 1, 0, 7, hb_body, EPOCH, 5, 2000, 41))
    show("heartbeat from the node, link 1", pdu(2, 8, 1, 0, 7, hb_body, EPOCH, 5, 2000, 41))
    show("ack, link 0", pdu(3, 8, 0, 0, 7, struct.pack(">Q", 43), EPOCH, 42, 3000, 41))
    show("confirmation UNPROTECTED", pdu(4, 2, 0xFF, 0, 7, struct.pack(">H6x", 5) + b"ORDER" + bytes(11), EPOCH, 42, 4000, 42))
    show("target confirmation", pdu(5, 0, 0xFF, 0, 7, struct.pack(">Q", 0), EPOCH, 42, 5000, 45))
    show("resend request", pdu(6, 0, 0xFF, 0, 7, struct.pack(">II", 2, 0), EPOCH, 43, 6000, 42))
    # Gateway mode: a TCP segment (content mode 2) on link 0, and a flow ack on link 0.
    tcp_prefix = (bytes([10, 1, 0, 2]) + struct.pack(">HH", 40000, 5) + bytes([10, 2, 0, 2])
                  + struct.pack(">HBBI", 9878, 0x18, 0, 0x01020304))
    show("backup tcp, link 0", pdu(1, 0, 0, 2, 7, tcp_prefix + b"ORDER", EPOCH, 43, 1_000_000_000, 42))
    flow_ack_body = (bytes([10, 1, 0, 2]) + struct.pack(">HH", 40000, 0) + bytes([10, 2, 0, 2])
                     + struct.pack(">HHI", 9878, 0, 0x01020309))
    show("flow ack, link 0", pdu(7, 0, 0, 0, 7, flow_ack_body, EPOCH, 1, 7000, 43))


# --- link_security: aead (crates/taphold-wire/src/payload.rs) -----------------------
# XChaCha20-Poly1305: HChaCha20 written here from draft-irtf-cfrg-xchacha, then the
# `cryptography` package's ChaCha20Poly1305 (an implementation not ours).

def _qr(s, a, b, c, d):
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] ^= s[a]; s[d] = ((s[d] << 16) | (s[d] >> 16)) & 0xFFFFFFFF
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] ^= s[c]; s[b] = ((s[b] << 12) | (s[b] >> 20)) & 0xFFFFFFFF
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] ^= s[a]; s[d] = ((s[d] << 8) | (s[d] >> 24)) & 0xFFFFFFFF
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] ^= s[c]; s[b] = ((s[b] << 7) | (s[b] >> 25)) & 0xFFFFFFFF


def hchacha20(key, nonce16):
    s = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    s += list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))
    for _ in range(10):
        _qr(s, 0, 4, 8, 12); _qr(s, 1, 5, 9, 13); _qr(s, 2, 6, 10, 14); _qr(s, 3, 7, 11, 15)
        _qr(s, 0, 5, 10, 15); _qr(s, 1, 6, 11, 12); _qr(s, 2, 7, 8, 13); _qr(s, 3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def xchacha20poly1305(key, nonce24, plaintext, ad):
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    sub = hchacha20(key, nonce24[:16])
    out = ChaCha20Poly1305(sub).encrypt(b"\0\0\0\0" + nonce24[16:], plaintext, ad)
    return out[:-16], out[-16:]


def payload_nonce(stream, epoch, seq):
    return struct.pack(">IQQI", stream, epoch, seq, 0)


# draft-irtf-cfrg-xchacha-03 2.2.1: HChaCha20's test vector.
assert hchacha20(bytes(range(32)), bytes.fromhex("000000090000004a0000000031415927")).hex() == \
    "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"

if __name__ == "__main__":
    ct, tag = xchacha20poly1305(bytes(range(32)), payload_nonce(7, EPOCH, 42), b"ORDER",
                                bytes([10, 0, 0, 99, 0x9C, 0x40, 0x00, 0x05]))
    print(f"aead: payload key 00..1f, stream 7, epoch {EPOCH:#x}, seq 42, 'ORDER': "
          f"ciphertext {ct.hex()} tag {tag.hex()}")
