//! Model checks (loom) of the atomic pairings the lcores rely on: the hold ring's and the
//! event ring's (every interleaving, within a preemption bound, of ingress, tap-rx and
//! egress on a tiny ring) and the re-send round handshake's (`resend_round_handshake`:
//! main lcore, ingress and egress).
//!
//! Run with `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p taphold-core
//! --release --test loom`.
#![cfg(loom)]

use std::sync::atomic::{AtomicUsize, Ordering};

use loom::thread;
use taphold_core::{Confirm, HoldRing, Spsc};

fn digest_of(seq: u64) -> u64 {
    seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xabcd
}

/// A payload that counts its drops (a std atomic: only read after every thread joined, so it
/// is bookkeeping, not synchronisation under test).
struct Msg {
    seq: u64,
    drops: std::sync::Arc<[AtomicUsize; 4]>,
}

impl Drop for Msg {
    fn drop(&mut self) {
        self.drops[self.seq as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// Preemption bound 3 (override with `LOOM_MAX_PREEMPTIONS`): the whole file runs in seconds.
fn builder() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b
}

/// Ingress launches up to three messages into a ring of two (the third fits only if egress
/// has released seq 1, and then reuses its slot); tap-rx sends a forged tap copy of seq 1 on
/// link 1, one tap copy of each seq on link 0, and a late copy of seq 1 last; egress releases
/// what is confirmed on link 0, then drains the rest. No thread spins, so loom explores every
/// interleaving of a bounded program quickly.
///
/// Checked: releases in seq order; a message is released by the policy only with its
/// confirmation, and carries link 0's bit if and only if exactly one tap copy of that seq
/// returned `Confirmed` (a stale or forged copy never marks anything); the tap time is
/// published with the bit; every payload is dropped exactly once.
#[test]
fn hold_ring_launch_confirm_release() {
    builder().check(|| {
        const N: u64 = 3;
        let drops = std::sync::Arc::new([(); 4].map(|_| AtomicUsize::new(0)));
        let (mut producer, confirmer, mut consumer) = HoldRing::<Msg>::new(2).unwrap();

        let d = drops.clone();
        let ingress = thread::spawn(move || {
            for seq in 1..=N {
                let item = Msg {
                    seq,
                    drops: d.clone(),
                };
                match producer.push(item, digest_of(seq), seq) {
                    Ok(s) => assert_eq!(s, seq),
                    Err(back) => {
                        // Full: backpressure. The message comes back intact, unlaunched.
                        assert_eq!((back.seq, producer.next_seq()), (seq, seq));
                        return seq - 1;
                    }
                }
            }
            N
        });

        let tap_rx = thread::spawn(move || {
            // A forged tap copy (wrong digest) can never confirm.
            let forged = confirmer.confirm(1, 1, digest_of(1) ^ 1, 0);
            assert!(
                matches!(forged, Confirm::Future | Confirm::DigestMismatch),
                "{forged:?}"
            );
            let mut confirmed = [0u32; 4];
            // Right-digest copies; the last is a late copy of seq 1, racing its release and
            // the reuse of its slot by seq 3. Reading seq 3's digest while the word still
            // says seq 1 must not make a genuine copy look forged.
            for seq in [1, 2, 3, 1] {
                match confirmer.confirm(0, seq, digest_of(seq), 100 + seq) {
                    Confirm::Confirmed => confirmed[seq as usize] += 1,
                    Confirm::DigestMismatch => panic!("genuine copy of {seq} seen as forged"),
                    _ => {}
                }
            }
            confirmed
        });

        let mut records = Vec::new();
        let mut record = |r: taphold_core::Released<Msg>, by_policy: bool| {
            assert_eq!(r.seq, r.item.seq);
            assert_eq!(r.digest, digest_of(r.seq));
            assert_eq!(r.confirmed & !1, 0, "forged copy marked a message");
            if by_policy {
                assert_eq!(r.confirmed, 1, "released without its confirmation");
            }
            if r.confirmed & 1 != 0 {
                assert_eq!(r.tap_ns[0], 100 + r.seq, "tap time published with the bit");
            }
            records.push((r.seq, r.confirmed));
        };
        for _ in 0..2 {
            if let Some(r) = consumer.release_if(|bits| bits & 1 != 0) {
                record(r, true);
            }
            thread::yield_now();
        }
        let launched = ingress.join().unwrap();
        let confirmed = tap_rx.join().unwrap();
        while let Some(r) = consumer.release_if(|bits| bits & 1 != 0) {
            record(r, true);
        }
        consumer.drain(|r| record(r, false));

        assert!(launched >= 2);
        let seqs: Vec<u64> = records.iter().map(|r| r.0).collect();
        assert_eq!(
            seqs,
            (1..=launched).collect::<Vec<_>>(),
            "in order, none lost"
        );
        for &(seq, bits) in &records {
            assert_eq!(u32::from(bits & 1), confirmed[seq as usize], "seq {seq}");
        }
        drop(consumer);
        for seq in 1..=N as usize {
            assert_eq!(drops[seq].load(Ordering::Relaxed), 1, "seq {seq} drops");
        }
    });
}

/// Pass-through (unprotected) release: egress releases unconditionally while ingress refills
/// the slots, so the payload hand-off rests on the state word's Release/Acquire alone (no
/// confirmation in between); a tap copy of seq 2 races with its release: the release reports
/// the bit only if the copy returned `Confirmed` (a copy landing just after egress read the
/// confirmation words may still say `Confirmed`: the plain-store design's one inexactness,
/// in a counter, never in a release decision), and with the bit, its tap time.
#[test]
fn hold_ring_unconditional_release_races_confirm() {
    builder().check(|| {
        const N: u64 = 3;
        let drops = std::sync::Arc::new([(); 4].map(|_| AtomicUsize::new(0)));
        let (mut producer, confirmer, mut consumer) = HoldRing::<Msg>::new(2).unwrap();

        let d = drops.clone();
        let ingress = thread::spawn(move || {
            for seq in 1..=N {
                let mut item = Msg {
                    seq,
                    drops: d.clone(),
                };
                loop {
                    match producer.push(item, digest_of(seq), seq) {
                        Ok(_) => break,
                        Err(back) => {
                            item = back;
                            thread::yield_now();
                        }
                    }
                }
            }
        });
        let tap_rx = thread::spawn(move || confirmer.confirm(0, 2, digest_of(2), 7));

        let mut bits = [0u8; 4];
        let mut tap2 = 0;
        let mut next = 1;
        while next <= N {
            match consumer.release() {
                Some(r) => {
                    assert_eq!((r.seq, r.item.seq), (next, next));
                    bits[next as usize] = r.confirmed;
                    if next == 2 {
                        tap2 = r.tap_ns[0];
                    }
                    next += 1;
                }
                None => thread::yield_now(),
            }
        }
        ingress.join().unwrap();
        let outcome = tap_rx.join().unwrap();
        assert_eq!(bits[1] | bits[3], 0);
        if bits[2] == 1 {
            assert_eq!(outcome, Confirm::Confirmed);
            assert_eq!(tap2, 7, "tap time published with the confirmation");
        }
        assert!(matches!(
            outcome,
            Confirm::Confirmed | Confirm::Future | Confirm::Released | Confirm::Stale
        ));
        drop(consumer);
        for seq in 1..=N as usize {
            assert_eq!(drops[seq].load(Ordering::Relaxed), 1, "seq {seq} drops");
        }
    });
}

/// Two backup links confirm the same messages concurrently, each from its own tap-rx (one
/// writer per confirmation word), while egress releases under an all-links policy: a message
/// is released only with both links' confirmations, each with its own tap time, in order,
/// and a copy of each link confirms exactly once however the threads interleave.
#[test]
fn hold_ring_two_links_confirm_concurrently() {
    builder().check(|| {
        const N: u64 = 2;
        let drops = std::sync::Arc::new([(); 4].map(|_| AtomicUsize::new(0)));
        let (mut producer, confirmer, mut consumer) = HoldRing::<Msg>::new(2).unwrap();
        for seq in 1..=N {
            let item = Msg {
                seq,
                drops: drops.clone(),
            };
            assert_eq!(producer.push(item, digest_of(seq), seq).ok(), Some(seq));
        }
        let link = |k: usize| {
            let c = confirmer.clone();
            thread::spawn(move || {
                let mut confirmed = 0;
                for seq in 1..=N {
                    let t = 10 * (k as u64 + 1) + seq;
                    match c.confirm(k, seq, digest_of(seq), t) {
                        Confirm::Confirmed => confirmed += 1,
                        other => panic!("link {k} seq {seq}: {other:?}"),
                    }
                    // A duplicate copy on the same link never counts twice (it may find
                    // the message already released by then).
                    let again = c.confirm(k, seq, digest_of(seq), t);
                    assert!(
                        matches!(again, Confirm::Duplicate | Confirm::Released),
                        "{again:?}"
                    );
                }
                confirmed
            })
        };
        let (a, b) = (link(0), link(1));
        drop(confirmer);
        let mut released = Vec::new();
        for _ in 0..3 {
            while let Some(r) = consumer.release_if(|bits| bits & 3 == 3) {
                assert_eq!(r.confirmed, 3, "released without both confirmations");
                assert_eq!(r.tap_ns[0], 10 + r.seq);
                assert_eq!(r.tap_ns[1], 20 + r.seq);
                released.push(r.seq);
            }
            thread::yield_now();
        }
        assert_eq!((a.join().unwrap(), b.join().unwrap()), (N, N));
        while let Some(r) = consumer.release_if(|bits| bits & 3 == 3) {
            assert_eq!(r.confirmed, 3);
            released.push(r.seq);
        }
        assert_eq!(released, (1..=N).collect::<Vec<_>>(), "in order, none left");
        drop(consumer);
        drop(producer);
        for seq in 1..=N as usize {
            assert_eq!(drops[seq].load(Ordering::Relaxed), 1, "seq {seq} drops");
        }
    });
}

/// A message still held when the ring goes away is dropped once, by whichever handle is last.
#[test]
fn hold_ring_drop_with_held_message() {
    builder().check(|| {
        let drops = std::sync::Arc::new([(); 4].map(|_| AtomicUsize::new(0)));
        let (mut producer, confirmer, consumer) = HoldRing::<Msg>::new(2).unwrap();
        producer
            .push(
                Msg {
                    seq: 1,
                    drops: drops.clone(),
                },
                1,
                0,
            )
            .ok()
            .unwrap();
        let t = thread::spawn(move || {
            let _ = confirmer.confirm(0, 1, 1, 0);
            drop(consumer);
        });
        drop(producer);
        t.join().unwrap();
        assert_eq!(drops[1].load(Ordering::Relaxed), 1);
    });
}

/// The event ring: three records through a ring of two, in order, none lost.
#[test]
fn spsc_in_order() {
    builder().check(|| {
        let (mut tx, mut rx) = Spsc::<u64>::new(2).unwrap();
        let producer = thread::spawn(move || {
            for v in 1..=3u64 {
                while tx.push(v).is_err() {
                    thread::yield_now();
                }
            }
        });
        let mut expect = 1;
        while expect <= 3 {
            match rx.pop() {
                Some(v) => {
                    assert_eq!(v, expect);
                    expect += 1;
                }
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert_eq!(rx.pop(), None);
    });
}

/// The re-send round (src/round.rs): the control lcore starts a round; ingress,
/// which may hold a new message first (raising `tail`), pauses for it; egress walks
/// everything held (1..=tail as it reads it) into the hand-off ring and finishes;
/// ingress takes every frame and resumes. Each side makes a bounded number of
/// attempts (no spinning), so loom explores every interleaving quickly, and the
/// checks hold for whatever each side got to do:
///
/// - if egress walked, ingress had paused, and the walk saw exactly what ingress
///   held before it paused (nothing missed, nothing taken after);
/// - if ingress resumed, egress had finished, and ingress had taken every re-sent
///   frame, in order.
#[test]
fn resend_round_handshake() {
    use loom::sync::atomic::AtomicU64;
    use loom::sync::Arc;
    use taphold_core::round::{RoundBoard, RoundEgress, RoundIngress, RoundMain};

    builder().check(|| {
        let board = Arc::new(RoundBoard::new());
        let tail = Arc::new(AtomicU64::new(0));
        let (mut tx, mut rx) = Spsc::<u64>::new(2).unwrap();

        let b = board.clone();
        let main = thread::spawn(move || {
            RoundMain::new(&b).start(0b1);
        });

        let (b, t) = (board.clone(), tail.clone());
        let egress = thread::spawn(move || {
            let mut e = RoundEgress::new(&b);
            for _ in 0..2 {
                if let Some((_, links)) = e.begin() {
                    assert_eq!(links, 0b1);
                    // What ingress held before it paused is visible (its tail
                    // store precedes its Release of `paused`, which begin acquired).
                    let upto = t.load(Ordering::Relaxed);
                    for s in 1..=upto {
                        tx.push(s).unwrap();
                    }
                    e.finish();
                    return Some(upto);
                }
                thread::yield_now();
            }
            None
        });

        let mut ing = RoundIngress::new(&board);
        // Either the round is seen before a message is held, or one message
        // is held first and the round looked for once more.
        let paused_at = if ing.follow() {
            Some(0)
        } else {
            tail.store(1, Ordering::Relaxed);
            ing.follow().then_some(1)
        };
        let mut got = Vec::new();
        let mut resumed = false;
        if paused_at.is_some() {
            for _ in 0..2 {
                let done = ing.round_done();
                while let Some(s) = rx.pop() {
                    got.push(s);
                }
                if ing.try_resume(done, rx.len() == 0) {
                    resumed = true;
                    break;
                }
                thread::yield_now();
            }
        }
        main.join().unwrap();
        let walked = egress.join().unwrap();
        if let Some(w) = walked {
            assert_eq!(
                Some(w),
                paused_at,
                "the walk saw exactly what was held before the pause"
            );
        }
        if resumed {
            let w = walked.expect("resumed only after egress finished");
            assert_eq!(
                got,
                (1..=w).collect::<Vec<_>>(),
                "every re-sent frame, in order"
            );
        } else {
            assert!(ing.is_paused() || paused_at.is_none());
        }
    });
}
