//! The destination arbiter's per-message cost (`taphold-arbiter`'s pure core), one thread,
//! steady state, at 64 B and 1500 B payloads. Each iteration is a block of 64 messages;
//! criterion's throughput is per message.
//!
//! - `in_order/<payload>`: one input, every seq in order: each datagram checked, delivered
//!   straight from its bytes, the window moved; a tick and a drain of the outbox per block
//!   (the binary ticks once per batch of datagrams).
//! - `reorder_dup/<payload>`: two inputs, A with each pair of seqs swapped (every other
//!   message held in the window, copied, delivered from it) and B duplicating every message
//!   (first copy wins: B's copies counted and dropped). Three datagrams per message.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use taphold_arbiter::{Arbiter, ArbiterConfig, Delivery, OnGap};
use taphold_wire::{DeliveryRepr, DigestKey, Flags};

const BLOCK: u64 = 64;
const PAYLOADS: [usize; 2] = [64, 1500];
const EPOCH: u64 = 1_764_460_800;

fn arbiter(max_payload: usize) -> Arbiter {
    let config = ArbiterConfig {
        stream: 1,
        key: DigestKey::from_hex("5461706f6c642d64656d6f2d6b657931").expect("key"),
        window: 1024,
        max_payload,
        max_epochs: 2,
        gap_timeout_ns: 1_000_000,
        resend_interval_ns: 5_000_000,
        resend_tries: 3,
        resend_max_count: 1024,
        on_gap: OnGap::Wait,
        confirm_interval_ns: 100_000_000,
        confirm_idle_ns: 10_000_000,
    };
    Arbiter::new(config, &["A", "B"]).expect("arbiter")
}

/// A delivery datagram whose seq is rewritten in place for each message.
fn datagram(payload: usize, flags: Flags) -> Vec<u8> {
    let h = DeliveryRepr {
        flags,
        stream: 1,
        epoch: EPOCH,
        seq: 1,
        src_ip: [192, 0, 2, 11],
        src_port: 40001,
        release_ns: 0,
    };
    let mut v = h.to_bytes().to_vec();
    v.extend((0..payload).map(|i| i as u8));
    v
}

fn set_seq(d: &mut [u8], seq: u64) {
    d[24..32].copy_from_slice(&seq.to_be_bytes());
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("arbiter");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));
    g.throughput(Throughput::Elements(BLOCK));
    for payload in PAYLOADS {
        let mut arb = arbiter(payload);
        let a = arb.input("A").expect("A");
        let mut d = datagram(payload, Flags::EMPTY);
        let mut seq = 0u64;
        let mut t = 1_000_000_000u64;
        let mut deliver = |m: &Delivery<'_>| {
            black_box(m.payload.len());
        };
        g.bench_function(BenchmarkId::new("in_order", payload), |b| {
            b.iter(|| {
                for _ in 0..BLOCK {
                    seq += 1;
                    set_seq(&mut d, seq);
                    black_box(arb.on_datagram(a, black_box(&d), t, &mut deliver));
                }
                t += 1_000;
                arb.on_tick(t, &mut deliver);
                arb.drain_transmits(|_, p| {
                    black_box(p);
                });
            })
        });
        assert_eq!(arb.counters().delivered, seq, "every message delivered");

        let mut arb = arbiter(payload);
        let (a, b_in) = (arb.input("A").expect("A"), arb.input("B").expect("B"));
        let mut da = datagram(payload, Flags::EMPTY);
        let mut db = datagram(payload, Flags::POSSIBLE_DUPLICATE);
        let mut seq = 0u64;
        g.bench_function(BenchmarkId::new("reorder_dup", payload), |b| {
            b.iter(|| {
                for _ in 0..BLOCK / 2 {
                    // A: seq + 2 before seq + 1 (held, then both delivered); B: both again.
                    for s in [seq + 2, seq + 1] {
                        set_seq(&mut da, s);
                        black_box(arb.on_datagram(a, black_box(&da), t, &mut deliver));
                    }
                    for s in [seq + 1, seq + 2] {
                        set_seq(&mut db, s);
                        black_box(arb.on_datagram(b_in, black_box(&db), t, &mut deliver));
                    }
                    seq += 2;
                }
                t += 1_000;
                arb.on_tick(t, &mut deliver);
                arb.drain_transmits(|_, p| {
                    black_box(p);
                });
            })
        });
        let c = arb.counters();
        assert_eq!(c.delivered, seq);
        assert_eq!(arb.input_counters(b_in).duplicates, seq);
    }
    g.finish();
}

criterion_group!(arbiter_core, bench);
criterion_main!(arbiter_core);
