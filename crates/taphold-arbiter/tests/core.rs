//! The arbiter's core, one behaviour at a time, through its public API only.

mod common;

use common::*;
use taphold_arbiter::{
    Arbiter, ArbiterConfig, Checkpoint, EpochMark, Event, OnGap, Refusal, SetupError, Verdict,
    WAIT_SLOWDOWN,
};
use taphold_wire::taphold::{Packet, ResendRepr};
use taphold_wire::{DigestKey, Flags, WireError};

const E: u64 = 1_764_460_800;

fn arbiter(cfg: ArbiterConfig) -> Arbiter {
    Arbiter::new(cfg, &["A", "B"]).unwrap()
}

#[test]
fn in_order_messages_go_straight_through() {
    let mut arb = arbiter(config());
    let a = arb.input("A").unwrap();
    let mut sink = Sink::default();
    for seq in 1..=20 {
        let v = arb.on_datagram(a, &datagram(E, seq, Flags::EMPTY), seq, &mut sink.f());
        assert_eq!(v, Verdict::Delivered(1));
    }
    assert_eq!(sink.seqs(E), (1..=20).collect::<Vec<_>>());
    assert_eq!(sink.got[4].payload, payload(E, 5));
    assert_eq!(sink.got[4].input, 0);
    let c = arb.counters();
    assert_eq!(
        (c.delivered, c.gaps_opened, c.resend_requests_sent),
        (20, 0, 0)
    );
    assert_eq!(arb.input_counters(a).first_copies, 20);
    let e = arb.epochs();
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0].delivered_through, e[0].highest_seen, e[0].gap),
        (20, 20, None)
    );
}

#[test]
fn reordered_messages_wait_for_the_head_then_go_in_order() {
    let mut arb = arbiter(config());
    let a = arb.input("A").unwrap();
    let mut sink = Sink::default();
    let mut put = |arb: &mut Arbiter, seq| {
        arb.on_datagram(a, &datagram(E, seq, Flags::EMPTY), 0, &mut sink.f())
    };
    assert_eq!(put(&mut arb, 3), Verdict::Held);
    assert_eq!(put(&mut arb, 2), Verdict::Held);
    assert_eq!(arb.epochs()[0].gap, Some((1, 1)));
    assert_eq!(arb.epochs()[0].held, 2);
    assert_eq!(put(&mut arb, 1), Verdict::Delivered(3));
    assert_eq!(put(&mut arb, 4), Verdict::Delivered(1));
    assert_eq!(sink.seqs(E), [1, 2, 3, 4]);
    // Each held copy was delivered with its own payload.
    for g in &sink.got {
        assert_eq!(g.payload, payload(E, g.seq));
    }
    let c = arb.counters();
    assert_eq!(
        (c.gaps_opened, c.gap_seqs),
        (1, 2),
        "seqs 1 and 2 missing when 3 came"
    );
    assert_eq!((c.filled_by_reorder, c.filled_by_resend), (2, 0));
    assert_eq!(arb.epochs()[0].held, 0);
}

#[test]
fn first_copy_wins_and_later_copies_are_counted_by_input_and_flag() {
    let mut arb = arbiter(config());
    let (a, b) = (arb.input("A").unwrap(), arb.input("B").unwrap());
    let mut sink = Sink::default();
    let pd = Flags::POSSIBLE_DUPLICATE;
    let rt = Flags::RETRANSMIT;
    // Delivered from A; B's replay of it is a duplicate.
    arb.on_datagram(a, &datagram(E, 1, Flags::EMPTY), 0, &mut sink.f());
    let v = arb.on_datagram(b, &datagram_with(E, 1, pd, b"B's copy"), 0, &mut sink.f());
    assert_eq!(v, Verdict::Duplicate);
    // Held from B (a replay); A's later copy and a resend answer are duplicates.
    arb.on_datagram(b, &datagram_with(E, 3, pd, b"B3"), 0, &mut sink.f());
    let v = arb.on_datagram(a, &datagram(E, 3, Flags::EMPTY), 0, &mut sink.f());
    assert_eq!(v, Verdict::Duplicate);
    arb.on_datagram(b, &datagram(E, 3, rt | pd), 0, &mut sink.f());
    arb.on_datagram(a, &datagram(E, 2, Flags::EMPTY), 0, &mut sink.f());
    assert_eq!(sink.seqs(E), [1, 2, 3]);
    // Seq 3 is B's copy, with B's flags and payload.
    assert_eq!((sink.got[2].input, sink.got[2].flags), (1, pd));
    assert_eq!(sink.got[2].payload, b"B3");
    let (ca, cb) = (arb.input_counters(a), arb.input_counters(b));
    assert_eq!((ca.first_copies, ca.duplicates), (2, 1));
    assert_eq!(
        (ca.duplicates_possible_duplicate, ca.duplicates_retransmit),
        (0, 0)
    );
    assert_eq!(
        (cb.first_copies, cb.first_copies_possible_duplicate),
        (1, 1)
    );
    assert_eq!(cb.duplicates, 2);
    assert_eq!(
        (cb.duplicates_possible_duplicate, cb.duplicates_retransmit),
        (2, 1)
    );
}

#[test]
fn bad_datagrams_are_refused_and_counted_by_reason() {
    let mut cfg = config();
    cfg.max_payload = 8;
    let mut arb = arbiter(cfg);
    let a = arb.input("A").unwrap();
    let mut sink = Sink::default();
    let good = datagram_with(E, 1, Flags::EMPTY, b"ok");
    let edited = |at: usize, v: u8| {
        let mut d = good.clone();
        d[at] = v;
        d
    };
    let mut other_stream = good.clone();
    other_stream[8..12].copy_from_slice(&8u32.to_be_bytes());
    let cases: Vec<(Vec<u8>, Verdict)> = vec![
        (
            good[..39].to_vec(),
            Verdict::Refused(Refusal::Malformed(WireError::Truncated)),
        ),
        (
            vec![],
            Verdict::Refused(Refusal::Malformed(WireError::Truncated)),
        ),
        (
            edited(0, 0x55),
            Verdict::Refused(Refusal::Malformed(WireError::BadMagic)),
        ),
        (
            edited(2, 2),
            Verdict::Refused(Refusal::Malformed(WireError::BadVersion)),
        ),
        (
            edited(3, 48),
            Verdict::Refused(Refusal::Malformed(WireError::BadLength)),
        ),
        (
            edited(5, 0x08),
            Verdict::Refused(Refusal::Malformed(WireError::BadFlags)),
        ),
        (
            datagram_with(E, 0, Flags::EMPTY, b"ok"),
            Verdict::Refused(Refusal::SeqZero),
        ),
        (other_stream, Verdict::Refused(Refusal::WrongStream)),
        (
            datagram_with(E, 1, Flags::EMPTY, b"123456789"),
            Verdict::Refused(Refusal::TooLarge),
        ),
    ];
    for (bytes, want) in &cases {
        assert_eq!(
            arb.on_datagram(a, bytes, 0, &mut sink.f()),
            *want,
            "{bytes:02x?}"
        );
    }
    assert!(sink.got.is_empty());
    let c = arb.input_counters(a);
    let m = c.malformed;
    assert_eq!(
        (
            m.truncated,
            m.bad_magic,
            m.bad_version,
            m.bad_length,
            m.bad_flags,
            m.seq_zero
        ),
        (2, 1, 1, 1, 1, 1)
    );
    assert_eq!(m.total(), 7);
    assert_eq!((c.wrong_stream, c.too_large, c.received), (1, 1, 9));
    assert!(arb.epochs().is_empty(), "nothing refused opened an epoch");
    // Exactly max_payload is fine.
    let v = arb.on_datagram(
        a,
        &datagram_with(E, 1, Flags::EMPTY, b"12345678"),
        0,
        &mut sink.f(),
    );
    assert_eq!(v, Verdict::Delivered(1));
}

#[test]
fn a_gap_is_asked_for_after_the_timeout_retried_then_reported_and_asked_slowly() {
    let mut arb = arbiter(config());
    let (a, b) = (arb.input("A").unwrap(), arb.input("B").unwrap());
    let mut sink = Sink::default();
    let t0 = 1_000 * MS;
    arb.on_datagram(a, &datagram(E, 1, Flags::EMPTY), t0, &mut sink.f());
    arb.on_datagram(a, &datagram(E, 3, Flags::EMPTY), t0, &mut sink.f());
    arb.on_datagram(a, &datagram(E, 4, Flags::EMPTY), t0, &mut sink.f());
    assert!(
        arb.next_deadline() <= Some(t0),
        "the confirmation of seq 1 is due"
    );
    arb.on_tick(t0, &mut sink.f());
    drain(&mut arb);
    assert_eq!(arb.next_deadline(), Some(t0 + MS), "the gap's timeout");
    // Not before the gap timeout.
    arb.on_tick(t0 + MS - 1, &mut sink.f());
    assert!(drain(&mut arb).0.is_empty());
    // Then one request for seq 2, keyed, carrying what was delivered.
    arb.on_tick(t0 + MS, &mut sink.f());
    let (r, _) = drain(&mut arb);
    assert_eq!(
        r,
        [ResendRepr {
            stream: STREAM,
            epoch: E,
            seq: 2,
            count: 1,
            timestamp_ns: t0 + MS,
            delivered: 1
        }]
    );
    // Retries every resend_interval, resend_tries in all.
    let mut t = t0 + MS;
    for _ in 1..3 {
        arb.on_tick(t + 5 * MS - 1, &mut sink.f());
        assert!(drain(&mut arb).0.is_empty(), "not before the interval");
        t += 5 * MS;
        arb.on_tick(t, &mut sink.f());
        assert_eq!(ranges(&drain(&mut arb).0), [(2, 1)]);
    }
    assert!(arb
        .next_event()
        .is_some_and(|e| matches!(e, Event::EpochOpened { .. })));
    assert_eq!(arb.next_event(), None, "not reported while tries remain");
    // One interval after the last try: reported by name, and asked again.
    t += 5 * MS;
    arb.on_tick(t, &mut sink.f());
    assert_eq!(ranges(&drain(&mut arb).0), [(2, 1)]);
    assert_eq!(
        arb.next_event(),
        Some(Event::GapExhausted {
            epoch: E,
            first: 2,
            last: 2,
            asks: 3,
            since_ns: t0
        })
    );
    assert_eq!(arb.counters().gaps_exhausted, 1);
    // Then at the slow pace, reported each time; order holds: 3 and 4 wait.
    let slow = 5 * MS * WAIT_SLOWDOWN;
    arb.on_tick(t + slow - 1, &mut sink.f());
    assert!(drain(&mut arb).0.is_empty());
    arb.on_tick(t + slow, &mut sink.f());
    assert_eq!(ranges(&drain(&mut arb).0), [(2, 1)]);
    assert!(matches!(
        arb.next_event(),
        Some(Event::StillWaiting {
            first: 2,
            last: 2,
            asks: 4,
            ..
        })
    ));
    assert_eq!(sink.seqs(E), [1]);
    assert_eq!(arb.counters().resend_requests_sent, 5);
    // The answer fills it: RETRANSMIT from B, delivered with what waited.
    let v = arb.on_datagram(
        b,
        &datagram(E, 2, Flags::RETRANSMIT),
        t + slow + 1,
        &mut sink.f(),
    );
    assert_eq!(v, Verdict::Delivered(3));
    assert_eq!(sink.seqs(E), [1, 2, 3, 4]);
    assert_eq!(sink.got[1].flags, Flags::RETRANSMIT);
    assert_eq!(arb.counters().filled_by_resend, 1);
    assert_eq!(arb.input_counters(b).first_copies_retransmit, 1);
    assert_eq!(arb.epochs()[0].gap, None);
}

#[test]
fn skip_skips_exactly_the_missing_run_reports_it_and_carries_it_in_the_confirmation() {
    let mut cfg = config();
    cfg.on_gap = OnGap::Skip;
    cfg.resend_tries = 2;
    let mut arb = arbiter(cfg);
    let a = arb.input("A").unwrap();
    let mut sink = Sink::default();
    for seq in [1, 5, 6, 8] {
        arb.on_datagram(a, &datagram(E, seq, Flags::EMPTY), 0, &mut sink.f());
    }
    arb.on_tick(0, &mut sink.f());
    drain(&mut arb);
    // Asked at 1 ms (2..4 and 7), again at 6 ms; skipped at 11 ms.
    arb.on_tick(MS, &mut sink.f());
    assert_eq!(ranges(&drain(&mut arb).0), [(2, 3), (7, 1)]);
    arb.on_tick(6 * MS, &mut sink.f());
    assert_eq!(ranges(&drain(&mut arb).0), [(2, 3), (7, 1)]);
    arb.on_tick(11 * MS - 1, &mut sink.f());
    assert_eq!(sink.seqs(E), [1]);
    arb.on_tick(11 * MS, &mut sink.f());
    assert_eq!(
        sink.seqs(E),
        [1, 5, 6, 8],
        "2..4 and 7 skipped, the rest in order"
    );
    let mut ev = Vec::new();
    while let Some(e) = arb.next_event() {
        ev.push(e);
    }
    assert_eq!(
        ev[1..],
        [
            Event::GapExhausted {
                epoch: E,
                first: 2,
                last: 4,
                asks: 2,
                since_ns: 0
            },
            Event::Skipped {
                epoch: E,
                first: 2,
                last: 4
            },
            Event::GapExhausted {
                epoch: E,
                first: 7,
                last: 7,
                asks: 2,
                since_ns: 0
            },
            Event::Skipped {
                epoch: E,
                first: 7,
                last: 7
            },
        ]
    );
    let c = arb.counters();
    assert_eq!((c.skipped, c.skipped_ranges, c.gaps_exhausted), (4, 2, 2));
    // The confirmation says delivered through 8, 4 of them skipped.
    arb.on_tick(11 * MS, &mut sink.f());
    let (_, conf) = drain(&mut arb);
    assert_eq!(conf.len(), 1);
    assert_eq!(
        (conf[0].seq, conf[0].skipped, conf[0].highest_seen),
        (8, 4, 8)
    );
    // A late copy of a skipped seq is counted, not delivered.
    let v = arb.on_datagram(
        a,
        &datagram(E, 3, Flags::RETRANSMIT),
        12 * MS,
        &mut sink.f(),
    );
    assert_eq!(v, Verdict::LateAfterSkip);
    assert_eq!(arb.input_counters(a).late_after_skip, 1);
    assert_eq!(
        arb.checkpoint().epochs,
        [EpochMark {
            epoch: E,
            delivered: 8,
            skipped: 4
        }]
    );
}

#[test]
fn a_datagram_beyond_the_window_is_refused_then_asked_for_when_the_window_moves() {
    let mut cfg = config();
    cfg.window = 4;
    let mut arb = arbiter(cfg);
    let (a, b) = (arb.input("A").unwrap(), arb.input("B").unwrap());
    let mut sink = Sink::default();
    arb.on_datagram(a, &datagram(E, 1, Flags::EMPTY), 0, &mut sink.f());
    // Window: 2..=5. 3..5 held, 6..10 refused.
    for seq in 3..=10 {
        let v = arb.on_datagram(a, &datagram(E, seq, Flags::EMPTY), 0, &mut sink.f());
        assert_eq!(
            v,
            if seq <= 5 {
                Verdict::Held
            } else {
                Verdict::BeyondWindow
            },
            "{seq}"
        );
    }
    assert_eq!(arb.input_counters(a).beyond_window, 5);
    assert_eq!(arb.epochs()[0].highest_seen, 10, "refused, but seen");
    // Only what the window holds is asked for.
    arb.on_tick(MS, &mut sink.f());
    assert_eq!(ranges(&drain(&mut arb).0), [(2, 1)]);
    arb.on_datagram(b, &datagram(E, 2, Flags::RETRANSMIT), 2 * MS, &mut sink.f());
    assert_eq!(sink.seqs(E), [1, 2, 3, 4, 5]);
    // 6..9 are now in the window, missing from now: asked after the gap timeout.
    assert_eq!(arb.epochs()[0].gap, Some((6, 9)));
    arb.on_tick(3 * MS - 1, &mut sink.f());
    assert!(drain(&mut arb).0.is_empty());
    arb.on_tick(3 * MS, &mut sink.f());
    assert_eq!(ranges(&drain(&mut arb).0), [(6, 4)]);
    for seq in 6..=9 {
        arb.on_datagram(
            b,
            &datagram(E, seq, Flags::RETRANSMIT),
            4 * MS,
            &mut sink.f(),
        );
    }
    arb.on_tick(5 * MS, &mut sink.f());
    assert_eq!(ranges(&drain(&mut arb).0), [(10, 1)]);
    arb.on_datagram(
        b,
        &datagram(E, 10, Flags::RETRANSMIT),
        6 * MS,
        &mut sink.f(),
    );
    assert_eq!(sink.seqs(E), (1..=10).collect::<Vec<_>>());
    assert_eq!(arb.counters().filled_by_resend, 6);
}

#[test]
fn requests_name_each_missing_run_and_respect_the_count_cap() {
    let mut cfg = config();
    cfg.window = 64;
    cfg.resend_max_count = 4;
    let mut arb = arbiter(cfg);
    let a = arb.input("A").unwrap();
    let mut sink = Sink::default();
    for seq in [1, 4, 6, 21] {
        arb.on_datagram(a, &datagram(E, seq, Flags::EMPTY), 0, &mut sink.f());
    }
    arb.on_tick(MS, &mut sink.f());
    let (r, _) = drain(&mut arb);
    assert_eq!(
        ranges(&r),
        [(2, 2), (5, 1), (7, 4), (11, 4), (15, 4), (19, 2)]
    );
    assert!(r.iter().all(|r| r.delivered == 1 && r.epoch == E));
    let c = arb.counters();
    assert_eq!((c.resend_requests_sent, c.resend_seqs_requested), (6, 17));
    assert_eq!((c.gaps_opened, c.gap_seqs), (3, 17));
}

/// Found by fuzzing (crates/taphold-fuzz/regressions/arbiter/): a datagram may claim any
/// seq, and two epochs each claiming one near 2^64 overflowed the count of missing seqs.
#[test]
fn seqs_near_two_to_the_64_in_several_epochs_are_counted_not_a_crash() {
    let mut arb = arbiter(config());
    let a = arb.input("A").unwrap();
    let mut sink = Sink::default();
    for epoch in [E, E + 1] {
        let v = arb.on_datagram(
            a,
            &datagram(epoch, u64::MAX, Flags::EMPTY),
            0,
            &mut sink.f(),
        );
        assert_eq!(v, Verdict::BeyondWindow);
    }
    arb.on_tick(MS, &mut sink.f());
    let c = arb.counters();
    assert_eq!((c.gaps_opened, c.gap_seqs), (2, u64::MAX));
    assert!(sink.seqs(E).is_empty() && sink.seqs(E + 1).is_empty());
}

#[test]
fn resend_requests_do_not_verify_under_another_key() {
    let mut arb = arbiter(config());
    let a = arb.input("A").unwrap();
    let mut sink = Sink::default();
    arb.on_datagram(a, &datagram(E, 2, Flags::EMPTY), 0, &mut sink.f());
    arb.on_tick(MS, &mut sink.f());
    let mut n = 0;
    arb.drain_transmits(|_, bytes| {
        let p = Packet::new_checked(bytes).unwrap();
        assert!(ResendRepr::parse(&p, &DigestKey([0x55; 16])).is_err());
        assert_eq!(ResendRepr::parse(&p, &key()).unwrap().seq, 1);
        n += 1;
    });
    assert_eq!(n, 1);
}

#[test]
fn target_confirmations_follow_the_interval_and_the_idle_time() {
    let mut arb = arbiter(config());
    let a = arb.input("A").unwrap();
    let mut sink = Sink::default();
    assert_eq!(arb.next_deadline(), None, "nothing to do");
    arb.on_datagram(a, &datagram(E, 1, Flags::EMPTY), 0, &mut sink.f());
    // The first advance is confirmed at once.
    assert_eq!(arb.pending_confirms(), 0);
    arb.on_tick(0, &mut sink.f());
    assert_eq!(arb.pending_confirms(), 1);
    let (_, c) = drain(&mut arb);
    assert_eq!(
        (c[0].epoch, c[0].seq, c[0].highest_seen, c[0].skipped),
        (E, 1, 1, 0)
    );
    assert_eq!(arb.next_deadline(), None, "confirmed, nothing pending");
    // A steady flow, one message per ms: one confirmation per 100 ms.
    let mut sent = Vec::new();
    for ms in 1..=250u64 {
        arb.on_datagram(
            a,
            &datagram(E, ms + 1, Flags::EMPTY),
            ms * MS,
            &mut sink.f(),
        );
        arb.on_tick(ms * MS, &mut sink.f());
        for c in drain(&mut arb).1 {
            sent.push((ms, c.seq));
        }
    }
    assert_eq!(sent, [(100, 101), (200, 201)]);
    // Idle: 10 ms after the last datagram.
    arb.on_tick(260 * MS - 1, &mut sink.f());
    assert!(drain(&mut arb).1.is_empty());
    assert_eq!(arb.next_deadline(), Some(260 * MS));
    arb.on_tick(260 * MS, &mut sink.f());
    let (_, c) = drain(&mut arb);
    assert_eq!(c.iter().map(|c| c.seq).collect::<Vec<_>>(), [251]);
    assert_eq!(arb.counters().target_confirms_sent, 4);
    // No advance, no confirmation; confirm_all sends one anyway (shutdown).
    arb.on_tick(900 * MS, &mut sink.f());
    assert!(drain(&mut arb).1.is_empty());
    assert_eq!(arb.confirm_all(901 * MS), 1);
    assert_eq!(drain(&mut arb).1[0].seq, 251);
}

#[test]
fn epochs_are_independent_sequences() {
    let mut arb = arbiter(config());
    let (a, b) = (arb.input("A").unwrap(), arb.input("B").unwrap());
    let mut sink = Sink::default();
    let (old, new) = (E, E + 1);
    // The restarted appliance's epoch starts at 1 while the old one still has a gap.
    arb.on_datagram(b, &datagram(old, 1, Flags::EMPTY), 0, &mut sink.f());
    arb.on_datagram(b, &datagram(old, 3, Flags::EMPTY), 0, &mut sink.f());
    arb.on_datagram(a, &datagram(new, 1, Flags::EMPTY), 0, &mut sink.f());
    arb.on_datagram(a, &datagram(new, 2, Flags::EMPTY), 0, &mut sink.f());
    arb.on_datagram(b, &datagram(old, 2, Flags::RETRANSMIT), 0, &mut sink.f());
    arb.on_datagram(a, &datagram(new, 3, Flags::EMPTY), 0, &mut sink.f());
    assert_eq!(sink.seqs(old), [1, 2, 3]);
    assert_eq!(sink.seqs(new), [1, 2, 3]);
    let order: Vec<_> = sink.got.iter().map(|g| (g.epoch - E, g.seq)).collect();
    assert_eq!(order, [(0, 1), (1, 1), (1, 2), (0, 2), (0, 3), (1, 3)]);
    arb.on_tick(0, &mut sink.f());
    let (_, c) = drain(&mut arb);
    assert_eq!(
        c.iter().map(|c| (c.epoch, c.seq)).collect::<Vec<_>>(),
        [(old, 3), (new, 3)],
        "one confirmation per epoch"
    );
}

#[test]
fn the_epoch_table_forgets_finished_epochs_and_refuses_older_ones() {
    let mut cfg = config();
    cfg.max_epochs = 1;
    let mut arb = arbiter(cfg);
    let a = arb.input("A").unwrap();
    let mut sink = Sink::default();
    arb.on_datagram(a, &datagram(E, 1, Flags::EMPTY), 0, &mut sink.f());
    arb.on_datagram(a, &datagram(E, 3, Flags::EMPTY), 0, &mut sink.f());
    // E has a gap: E + 1 cannot have its slot.
    let v = arb.on_datagram(a, &datagram(E + 1, 1, Flags::EMPTY), 0, &mut sink.f());
    assert_eq!(v, Verdict::Refused(Refusal::EpochsFull));
    assert_eq!(arb.input_counters(a).epochs_full, 1);
    arb.on_datagram(a, &datagram(E, 2, Flags::EMPTY), 0, &mut sink.f());
    // Finished but not yet confirmed: still refused (its confirmation must go out first).
    let v = arb.on_datagram(a, &datagram(E + 1, 1, Flags::EMPTY), 0, &mut sink.f());
    assert_eq!(v, Verdict::Refused(Refusal::EpochsFull));
    arb.on_tick(0, &mut sink.f());
    drain(&mut arb);
    // Now E is forgotten; the floor rises to it.
    let v = arb.on_datagram(a, &datagram(E + 1, 1, Flags::EMPTY), 0, &mut sink.f());
    assert_eq!(v, Verdict::Delivered(1));
    assert_eq!(arb.floor(), E);
    assert_eq!(arb.counters().epochs_forgotten, 1);
    // A late copy of E, or anything older, is stale: never delivered twice.
    for epoch in [E, E - 1] {
        let v = arb.on_datagram(a, &datagram(epoch, 2, Flags::EMPTY), 0, &mut sink.f());
        assert_eq!(v, Verdict::Refused(Refusal::StaleEpoch));
    }
    assert_eq!(arb.input_counters(a).stale_epoch, 2);
    assert_eq!(sink.seqs(E), [1, 2, 3]);
    let cp = arb.checkpoint();
    assert_eq!((cp.floor, cp.epochs.len()), (E, 1));
}

#[test]
fn a_restored_arbiter_resumes_at_delivered_plus_one_and_asks_for_what_it_missed() {
    let mut first = arbiter(config());
    let a = first.input("A").unwrap();
    let mut sink = Sink::default();
    for seq in 1..=5 {
        first.on_datagram(a, &datagram(E, seq, Flags::EMPTY), 0, &mut sink.f());
    }
    let cp = Checkpoint::decode(&first.checkpoint().encode(), STREAM).unwrap();
    assert_eq!(
        cp.epochs,
        [EpochMark {
            epoch: E,
            delivered: 5,
            skipped: 0
        }]
    );

    let mut arb = arbiter(config());
    arb.restore(&cp).unwrap();
    let mut sink = Sink::default();
    // Seqs 6..8 were released while the arbiter was down; 9 arrives.
    assert_eq!(
        arb.on_datagram(a, &datagram(E, 3, Flags::EMPTY), 0, &mut sink.f()),
        Verdict::Duplicate
    );
    assert_eq!(
        arb.on_datagram(a, &datagram(E, 9, Flags::EMPTY), 0, &mut sink.f()),
        Verdict::Held
    );
    arb.on_tick(MS, &mut sink.f());
    let (r, c) = drain(&mut arb);
    assert_eq!(ranges(&r), [(6, 3)]);
    assert_eq!(r[0].delivered, 5);
    assert_eq!(c.len(), 1, "the restored state is confirmed again");
    assert_eq!(c[0].seq, 5);
    for seq in 6..=8 {
        arb.on_datagram(
            a,
            &datagram(E, seq, Flags::RETRANSMIT),
            2 * MS,
            &mut sink.f(),
        );
    }
    assert_eq!(sink.seqs(E), [6, 7, 8, 9]);
}

#[test]
fn restore_refuses_what_does_not_fit() {
    let cp = |stream, n: u64| Checkpoint {
        stream,
        floor: 0,
        epochs: (0..n)
            .map(|i| EpochMark {
                epoch: E + i,
                delivered: 1,
                skipped: 0,
            })
            .collect(),
    };
    let mut arb = arbiter(config());
    let e = arb.restore(&cp(STREAM + 1, 1)).unwrap_err();
    assert!(e.to_string().contains("stream 8's"), "{e}");
    let e = arb.restore(&cp(STREAM, 3)).unwrap_err();
    assert!(e.to_string().contains("max_epochs is 2"), "{e}");
    // Found writing the arbiter_state fuzz target (crates/taphold-fuzz/regressions/arbiter_state/): a state file
    // whose epoch was delivered through u64::MAX overflowed the next seq expected.
    let text = "taphold-arbiter 1 stream 7 floor 0 epochs 1 epoch 5 delivered 18446744073709551615 skipped 0";
    let line = format!("{text} crc32 {:08x}\n", crc32fast::hash(text.as_bytes()));
    let max = Checkpoint::decode(&line, STREAM).expect("a well-formed line");
    let e = arb.restore(&max).unwrap_err();
    assert!(e.to_string().contains("no seq is left"), "{e}");
    let mut near = max.clone();
    near.epochs[0].delivered = u64::MAX - 1;
    let mut arb = arbiter(config());
    arb.restore(&near)
        .expect("u64::MAX is still a seq to expect");
    let a = arb.input("A").unwrap();
    let mut sink = Sink::default();
    for seq in [u64::MAX, u64::MAX, 1] {
        arb.on_datagram(a, &datagram(5, seq, Flags::EMPTY), 0, &mut sink.f());
        arb.on_tick(1_000_000_000, &mut sink.f());
    }
    assert_eq!(sink.seqs(5), [u64::MAX]);
    let a = arb.input("A").unwrap();
    arb.on_datagram(
        a,
        &datagram(E, 1, Flags::EMPTY),
        0,
        &mut Sink::default().f(),
    );
    let e = arb.restore(&cp(STREAM, 1)).unwrap_err();
    assert!(
        matches!(e, SetupError::Restore(_)) && e.to_string().contains("already"),
        "{e}"
    );
}

#[test]
fn bad_configs_are_named() {
    type Edit = fn(&mut ArbiterConfig);
    let cases: Vec<(Edit, &str)> = vec![
        (|c| c.window = 0, "window"),
        (|c| c.window = (1 << 20) + 1, "window"),
        (|c| c.max_payload = 0, "max_payload"),
        (|c| c.max_payload = 65_468, "max_payload"),
        (|c| c.max_epochs = 0, "max_epochs"),
        (|c| c.resend_tries = 0, "resend_tries"),
        (|c| c.resend_max_count = 0, "resend_max_count"),
        (|c| c.gap_timeout_ns = 0, "gap_timeout"),
        (|c| c.confirm_idle_ns = 0, "confirm_idle"),
    ];
    for (edit, field) in cases {
        let mut c = config();
        edit(&mut c);
        match Arbiter::new(c, &["A"]) {
            Err(SetupError::Config { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {:?}", other.map(|_| ())),
        }
    }
    assert!(Arbiter::new(config(), &[]).is_err());
    assert!(Arbiter::new(config(), &["A", "A"])
        .unwrap_err()
        .to_string()
        .contains("twice"));
    assert!(
        !format!("{:?}", config()).contains("key"),
        "the key never reaches a log"
    );
}

#[test]
fn seqs_near_the_top_of_the_range_do_not_overflow() {
    let mut arb = arbiter(config());
    let a = arb.input("A").unwrap();
    let mut sink = Sink::default();
    arb.restore(&Checkpoint {
        stream: STREAM,
        floor: 0,
        epochs: vec![EpochMark {
            epoch: E,
            delivered: u64::MAX - 3,
            skipped: 0,
        }],
    })
    .unwrap();
    for seq in [u64::MAX, u64::MAX - 1, u64::MAX - 2] {
        arb.on_datagram(a, &datagram(E, seq, Flags::EMPTY), 0, &mut sink.f());
    }
    arb.on_tick(10 * MS, &mut sink.f());
    assert_eq!(sink.seqs(E), [u64::MAX - 2, u64::MAX - 1, u64::MAX]);
    let v = arb.on_datagram(a, &datagram(E, u64::MAX, Flags::EMPTY), 0, &mut sink.f());
    assert_eq!(v, Verdict::Duplicate);
}

proptest::proptest! {
    /// Arbitrary bytes, and valid datagrams with one byte changed, never panic, and every
    /// datagram lands in exactly one named counter of its input.
    #[test]
    fn any_bytes_are_counted_never_a_panic(
        datagrams in proptest::collection::vec(
            (proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
             1u64..40, 0usize..48, proptest::prelude::any::<u8>(), proptest::prelude::any::<bool>()),
            1..60),
    ) {
        let mut cfg = config();
        cfg.max_payload = 16;
        cfg.max_epochs = 1;
        let mut arb = arbiter(cfg);
        let a = arb.input("A").unwrap();
        let mut sink = Sink::default();
        for (i, (junk, seq, at, v, edit)) in datagrams.into_iter().enumerate() {
            let bytes = if edit {
                let mut d = datagram(E + (seq % 3), seq, Flags::EMPTY);
                d[at] = v;
                d
            } else {
                junk
            };
            arb.on_datagram(a, &bytes, i as u64 * MS, &mut sink.f());
            arb.on_tick(i as u64 * MS, &mut sink.f());
            arb.drain_transmits(|_, _| {});
        }
        let c = arb.input_counters(a);
        let refused = c.wrong_stream + c.stale_epoch + c.epochs_full + c.too_large + c.malformed.total();
        proptest::prop_assert_eq!(
            c.received,
            c.first_copies + c.duplicates + c.late_after_skip + c.beyond_window + refused
        );
        proptest::prop_assert_eq!(arb.counters().delivered, sink.got.len() as u64);
    }
}
