//! Gateway mode's per-segment FIX work, outside DPDK (`cargo bench -p taphold-benches
//! --bench fix`): what `content: fix-compact` costs the appliance's worker against
//! `content: tcp`, side by side.
//!
//! - `copy/<segment>`: mode 2's work on the content: copying the segment's payload into
//!   the backup frame (`copy_from_slice`).
//! - `encode_compact/<segment>`: mode 3's: `taphold_fix::encode_compact` of the same
//!   payload (parse, BodyLength and CheckSum checked, kept fields written).
//! - `backup_emit_tcp/<segment>`, `backup_emit_compact/<segment>`: the whole sealed
//!   backup PDU of each mode (`BackupRepr::emit`, digest included), the compact one
//!   after encoding.
//!
//! Segments: `order` (one QuickFIX-style NewOrderSingle, FIX.4.2, ~190 B) and `burst4`
//! (four of them in one segment, as an engine batching orders would send).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use taphold_fix::compact::encode_compact;
use taphold_wire::digest::DigestKey;
use taphold_wire::taphold::{BackupRepr, Content, Flags, TcpSegmentRepr};

fn order(n: u32) -> Vec<u8> {
    let body = format!(
        "35=D\u{1}34={n}\u{1}49=CLIENT1\u{1}52=20261130-07:38:48.123\u{1}56=EXECUTOR\u{1}11=ORD-{n:08}\u{1}21=1\u{1}38=100\u{1}40=2\u{1}44=101.25\u{1}54=1\u{1}55=IBM\u{1}59=0\u{1}60=20261130-07:38:48.123\u{1}"
    );
    let mut m = format!("8=FIX.4.2\u{1}9={}\u{1}{body}", body.len()).into_bytes();
    let ck = m.iter().fold(0u32, |a, &b| a + u32::from(b)) % 256;
    m.extend_from_slice(format!("10={ck:03}\u{1}").as_bytes());
    m
}

fn segment(content: &[u8], payload_len: u16) -> TcpSegmentRepr<'_> {
    TcpSegmentRepr {
        src_ip: [10, 1, 0, 2],
        src_port: 40000,
        payload_len,
        dst_ip: [10, 2, 0, 2],
        dst_port: 9878,
        tcp_flags: 0x18,
        tcp_seq: 1_000_001,
        content,
    }
}

fn backup(content: Content<'_>, payload_len: u16) -> BackupRepr<'_> {
    BackupRepr {
        link: 0,
        flags: Flags::EMPTY,
        stream: 1,
        epoch: 1_764_460_800,
        seq: 42,
        timestamp_ns: 1,
        watermark: 41,
        src_ip: [10, 1, 0, 2],
        src_port: 40000,
        payload_len,
        content,
    }
}

fn bench(c: &mut Criterion) {
    let key = DigestKey::from_hex("5461706f6c642d64656d6f2d6b657931").expect("key");
    let segments = [
        ("order", order(7)),
        ("burst4", (7..11).flat_map(order).collect()),
    ];
    let mut g = c.benchmark_group("fix");
    g.warm_up_time(Duration::from_millis(300));
    g.measurement_time(Duration::from_secs(2));
    for (name, seg) in &segments {
        let len = seg.len() as u16;
        let mut out = vec![0u8; 4096];
        g.bench_with_input(BenchmarkId::new("copy", name), seg, |b, s| {
            b.iter(|| out[..s.len()].copy_from_slice(black_box(s)))
        });
        g.bench_with_input(BenchmarkId::new("encode_compact", name), seg, |b, s| {
            b.iter(|| encode_compact(black_box(s), &mut out).expect("whole messages"))
        });
        let mut pdu = vec![0u8; 4096];
        g.bench_with_input(BenchmarkId::new("backup_emit_tcp", name), seg, |b, s| {
            b.iter(|| {
                backup(Content::Tcp(segment(black_box(s), len)), len)
                    .emit(&mut pdu, &key)
                    .expect("emit")
            })
        });
        let mut enc = vec![0u8; 4096];
        g.bench_with_input(
            BenchmarkId::new("backup_emit_compact", name),
            seg,
            |b, s| {
                b.iter(|| {
                    let n = encode_compact(black_box(s), &mut enc).expect("whole messages");
                    backup(Content::FixCompact(segment(&enc[..n], len)), len)
                        .emit(&mut pdu, &key)
                        .expect("emit")
                })
            },
        );
        let n = encode_compact(seg, &mut enc).expect("whole messages");
        eprintln!("fix/{name}: segment {} B, compact {n} B", seg.len());
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
