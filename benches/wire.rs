//! Per-message wire work, by function (complements figure 4 of benches/RESULTS.md): what each
//! role computes for one message, outside DPDK, at 64 B and 1500 B payloads.
//!
//! - `digest/<len>`: the keyed digest over `len` bytes (120 = a 64-byte message's backup PDU
//!   before its trailer, 64 = a confirmation's, 1556 = a 1500-byte message's backup PDU).
//! - `digest_siphash24/<len>`: the same bytes under SipHash-2-4 (protocol version 1's digest,
//!   same implementation): the cost of the larger margin, side by side (decision 0001).
//! - `classify/<payload>`: ingress's classifier on a good message frame (IPv4 + UDP checksums).
//! - `backup_emit/<payload>`: ingress's backup PDU, sealed (`BackupRepr::emit`).
//! - `tap_check/<payload>`: tap-rx's check of a tap copy (`Packet::new_checked`, recompute).
//! - `rewrite_released/<payload>`: egress's in-place rewrite (incremental UDP checksum).
//! - `confirm/<payload>`: egress's confirmation (`ConfirmRepr::emit` + `emit_udp_headers`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use taphold_wire::classify::{classify, Classified, MessageMeta, PrimaryAddr};
use taphold_wire::digest::DigestKey;
use taphold_wire::emit::{emit_udp_headers, rewrite_released, Endpoint, UDP_FRAME_HEADER_LEN};
use taphold_wire::ethernet::EthernetAddress;
use taphold_wire::taphold::{BackupRepr, ConfirmRepr, Content, Flags, Packet};

const US: Endpoint = Endpoint {
    mac: EthernetAddress([0x02, 0, 0, 0, 0, 0x01]),
    ip: [198, 51, 100, 1],
    port: 9000,
};
const SOURCE: Endpoint = Endpoint {
    mac: EthernetAddress([0x02, 0, 0, 0, 1, 0x01]),
    ip: [192, 0, 2, 11],
    port: 40001,
};
const DEST: Endpoint = Endpoint {
    mac: EthernetAddress([0x02, 0, 0, 0, 0, 0x02]),
    ip: [203, 0, 113, 10],
    port: 9100,
};
const PAYLOADS: [usize; 2] = [64, 1500];

fn key() -> DigestKey {
    DigestKey::from_hex("5461706f6c642d64656d6f2d6b657931").expect("key")
}

/// A message frame from SOURCE to US, both checksums real.
fn message(payload: usize) -> Vec<u8> {
    let mut f = vec![0u8; UDP_FRAME_HEADER_LEN + payload];
    for (i, b) in f[UDP_FRAME_HEADER_LEN..].iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    emit_udp_headers(&mut f, &SOURCE, &US, payload).expect("frame");
    f
}

fn ours() -> PrimaryAddr {
    PrimaryAddr {
        mac: US.mac,
        ip: US.ip,
        udp_port: US.port,
        max_payload: 8900,
    }
}

fn meta(f: &[u8]) -> MessageMeta {
    match classify(f, &ours()) {
        Classified::Message(m) => m,
        other => panic!("{other:?}"),
    }
}

fn backup_repr<'a>(m: &MessageMeta, f: &'a [u8]) -> BackupRepr<'a> {
    let payload = &f[usize::from(m.payload_off)..][..usize::from(m.payload_len)];
    BackupRepr {
        link: 0,
        flags: Flags::EMPTY,
        stream: 1,
        epoch: 1_764_460_800,
        seq: 12345,
        timestamp_ns: 1_000_000,
        watermark: 12000,
        src_ip: m.src_ip,
        src_port: m.src_port,
        payload_len: m.payload_len,
        content: Content::Full(payload),
    }
}

fn wire(c: &mut Criterion) {
    let k = key();
    let mut g = c.benchmark_group("wire");
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));

    for len in [64usize, 120, 1556] {
        let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
        g.bench_function(BenchmarkId::new("digest", len), |b| {
            b.iter(|| black_box(k.digest(black_box(&bytes))))
        });
        // Protocol version 3's digest, same implementation: the cost of 2-4.
        g.bench_function(BenchmarkId::new("digest_siphash13", len), |b| {
            b.iter(|| black_box(k.digest_siphash13(black_box(&bytes))))
        });
    }

    for payload in PAYLOADS {
        let f = message(payload);
        let ours = ours();
        g.bench_function(BenchmarkId::new("classify", payload), |b| {
            b.iter(|| black_box(classify(black_box(&f), &ours)))
        });

        let m = meta(&f);
        let repr = backup_repr(&m, &f);
        let mut out = vec![0u8; repr.buffer_len()];
        g.bench_function(BenchmarkId::new("backup_emit", payload), |b| {
            b.iter(|| black_box(black_box(&repr).emit(&mut out, &k)))
        });

        // link_security: aead: the same launch with the payload encrypted
        // (XChaCha20-Poly1305) before it is sealed.
        let aead = taphold_wire::payload::PayloadKey::new(&[0x5a; 32]);
        let enc = BackupRepr {
            flags: Flags::ENCRYPTED,
            ..repr
        };
        let mut out_enc = vec![0u8; enc.buffer_len()];
        g.bench_function(BenchmarkId::new("backup_emit_aead", payload), |b| {
            b.iter(|| {
                black_box(
                    black_box(&enc)
                        .emit_sealing_with(&mut out_enc, &k, Some(&aead))
                        .expect("emit"),
                )
            })
        });
        g.bench_function(BenchmarkId::new("tap_check_aead", payload), |b| {
            b.iter(|| {
                let p = Packet::new_checked(black_box(&out_enc[..])).expect("pdu");
                let (bound, free) = p.digests(&k);
                black_box((bound == p.digest_field(), free))
            })
        });

        // The same frame for 4 links: one absorption and 4 finishes, against
        // 4 whole emits (what binding the link would cost done naively).
        let mut outs = vec![vec![0u8; repr.buffer_len()]; 4];
        g.bench_function(BenchmarkId::new("backup_emit_4_links", payload), |b| {
            b.iter(|| {
                let seal = black_box(&repr)
                    .emit_sealing(&mut outs[0], &k)
                    .expect("emit");
                for (l, o) in outs.iter_mut().enumerate().skip(1) {
                    o.copy_from_slice(&out);
                    black_box(seal.seal_for(o, l as u8).expect("seal"));
                }
                black_box(seal.link_free())
            })
        });
        g.bench_function(
            BenchmarkId::new("backup_emit_4_links_naive", payload),
            |b| {
                b.iter(|| {
                    for (l, o) in outs.iter_mut().enumerate() {
                        let r = BackupRepr {
                            link: l as u8,
                            ..repr
                        };
                        black_box(r.emit(o, &k).expect("emit"));
                    }
                })
            },
        );

        // What tap-rx does per copy: the trailer (bound to the link) and the
        // link-free digest the hold ring matches, from one pass.
        g.bench_function(BenchmarkId::new("tap_check", payload), |b| {
            b.iter(|| {
                let p = Packet::new_checked(black_box(&out[..])).expect("pdu");
                let (bound, free) = p.digests(&k);
                black_box((bound == p.digest_field(), free))
            })
        });

        let mut frame = f.clone();
        g.bench_function(BenchmarkId::new("rewrite_released", payload), |b| {
            b.iter(|| {
                // The same input each time: the checksum field is restored with the header.
                frame[..UDP_FRAME_HEADER_LEN].copy_from_slice(&f[..UDP_FRAME_HEADER_LEN]);
                black_box(rewrite_released(&mut frame, black_box(&m), &US, &DEST))
            })
        });

        let confirm = ConfirmRepr {
            flags: Flags::EMPTY,
            stream: 1,
            epoch: 1_764_460_800,
            seq: 12345,
            timestamp_ns: 2_000_000,
            watermark: 12345,
            payload_len: m.payload_len,
            echo: ConfirmRepr::echo_of(&f[42..]),
        };
        let pdu = confirm.buffer_len();
        let mut cbuf = vec![0u8; UDP_FRAME_HEADER_LEN + pdu];
        g.bench_function(BenchmarkId::new("confirm", payload), |b| {
            b.iter(|| {
                let d = black_box(&confirm).emit(&mut cbuf[UDP_FRAME_HEADER_LEN..], &k);
                let n = emit_udp_headers(&mut cbuf, &US, &SOURCE, pdu);
                black_box((d, n))
            })
        });
    }
    g.finish();
}

criterion_group!(wire_functions, wire);
criterion_main!(wire_functions);
