//! Proves the core allocates nothing per message in steady state: the appliance's counting
//! global allocator, armed only on this test's thread, around 100k messages through two
//! inputs with reordering, duplicates, gaps filled by resend, epochs opened, target
//! confirmations, events and PDUs drained.

mod common;

use common::*;
use taphold_arbiter::{Arbiter, Delivery, Verdict};
use taphold_runtime::alloc_count::{self, CountingAlloc};
use taphold_wire::{DeliveryRepr, Flags};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn measure(f: impl FnOnce()) -> u64 {
    let before = alloc_count::hot_allocations();
    alloc_count::set_hot(true);
    f();
    alloc_count::set_hot(false);
    alloc_count::hot_allocations() - before
}

/// A datagram of (epoch, seq) in a stack buffer.
fn dgram(buf: &mut [u8; 64], epoch: u64, seq: u64, flags: Flags) -> usize {
    let h = DeliveryRepr {
        flags,
        stream: STREAM,
        epoch,
        seq,
        src_ip: [10, 0, 0, 9],
        src_port: 40000,
        release_ns: seq,
    };
    h.emit(&mut buf[..]).unwrap();
    buf[40..48].copy_from_slice(&seq.to_be_bytes());
    48
}

#[test]
fn steady_state_allocates_nothing() {
    const MESSAGES: u64 = 100_000;
    let mut cfg = config();
    cfg.window = 64;
    let mut arb = Arbiter::new(cfg, &["A", "B"]).unwrap();
    let (a, b) = (arb.input("A").unwrap(), arb.input("B").unwrap());

    // The counter itself works (guards against a vacuous pass).
    assert_eq!(measure(|| drop(std::hint::black_box(Box::new(1u8)))), 1);

    let mut next = 1u64;
    let mut sum = 0u64;
    let mut count = 0u64;
    let allocs = measure(|| {
        let mut deliver = |m: &Delivery<'_>| {
            assert_eq!(m.seq, next, "in order");
            assert_eq!(m.payload, m.seq.to_be_bytes());
            next += 1;
            sum = sum.wrapping_add(m.seq);
            count += 1;
        };
        let mut buf = [0u8; 64];
        let mut pdus = 0u64;
        let epoch = 1_764_460_800;
        let mut t = 1_000 * MS;
        let mut seq = 1u64;
        while seq <= MESSAGES {
            t += 100_000;
            // Every 8 seqs: swap a pair (reordering); every 100: lose one on A and let
            // the backup node's answer fill it after the gap timeout; B duplicates all.
            let order: [u64; 2] = if seq & 7 == 0 {
                [seq + 1, seq]
            } else {
                [seq, seq + 1]
            };
            for s in order {
                if s > MESSAGES {
                    continue;
                }
                if s % 100 != 50 {
                    let n = dgram(&mut buf, epoch, s, Flags::EMPTY);
                    let v = arb.on_datagram(a, &buf[..n], t, &mut deliver);
                    assert!(
                        matches!(v, Verdict::Delivered(_) | Verdict::Held),
                        "{s}: {v:?}"
                    );
                }
                let n = dgram(&mut buf, epoch, s, Flags::POSSIBLE_DUPLICATE);
                if s % 100 != 50 {
                    assert_eq!(
                        arb.on_datagram(b, &buf[..n], t, &mut deliver),
                        Verdict::Duplicate
                    );
                }
            }
            arb.on_tick(t, &mut deliver);
            let mut answers = [0u64; 4];
            let mut na = 0;
            arb.drain_transmits(|kind, bytes| {
                pdus += 1;
                if kind == taphold_arbiter::TransmitKind::Resend {
                    // seq of the request: bytes 24..32.
                    answers[na] = u64::from_be_bytes(bytes[24..32].try_into().unwrap());
                    na += 1;
                }
            });
            for &s in &answers[..na] {
                let n = dgram(&mut buf, epoch, s, Flags::RETRANSMIT);
                arb.on_datagram(b, &buf[..n], t, &mut deliver);
            }
            while arb.next_event().is_some() {}
            seq += 2;
        }
        // Let the last gap's timer run out and the idle confirmation go.
        for _ in 0..3 {
            t += 20 * MS;
            arb.on_tick(t, &mut deliver);
            arb.drain_transmits(|_, _| pdus += 1);
        }
        assert!(
            pdus > 1000,
            "gaps were asked for and confirmations sent: {pdus}"
        );
    });
    assert_eq!(count, MESSAGES);
    assert_eq!(sum, MESSAGES * (MESSAGES + 1) / 2);
    let c = arb.counters();
    assert_eq!(c.filled_by_resend, MESSAGES / 100);
    assert!(c.target_confirms_sent > 0);
    assert_eq!(allocs, 0, "the core allocated {allocs} times");
}
