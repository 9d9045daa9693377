use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use proptest::prelude::*;

use super::*;
use crate::policy::{PolicyCheck, ReleasePolicy};

/// The keyed digest of the backup frame of `seq`, as ingress would compute it.
fn digest_of(seq: u64) -> u64 {
    (seq ^ 0x5eed_f00d_dead_beef).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Drop ledger: how many times each message id was dropped.
type Ledger = Rc<RefCell<BTreeMap<u64, u32>>>;

/// A message buffer that records its drop in a ledger and owns a heap box, so a double drop
/// or a leak shows up (ledger count, or Miri/ASan on the box).
#[derive(Debug)]
struct Msg {
    id: u64,
    _buf: Box<u64>,
    ledger: Ledger,
}

impl Msg {
    fn new(id: u64, ledger: &Ledger) -> Self {
        Msg {
            id,
            _buf: Box::new(id),
            ledger: Rc::clone(ledger),
        }
    }
}

impl Drop for Msg {
    fn drop(&mut self) {
        *self.ledger.borrow_mut().entry(self.id).or_insert(0) += 1;
    }
}

fn assert_each_dropped_once(ledger: &Ledger, ids: impl IntoIterator<Item = u64>) {
    let ledger = ledger.borrow();
    let mut n = 0;
    for id in ids {
        assert_eq!(ledger.get(&id), Some(&1), "message {id} dropped != once");
        n += 1;
    }
    assert_eq!(ledger.len(), n, "unexpected drops: {ledger:?}");
}

#[test]
fn capacity_checked() {
    assert_eq!(HoldRing::<u8>::new(0).unwrap_err(), CapacityError::Zero);
    assert_eq!(
        HoldRing::<u8>::new(3).unwrap_err(),
        CapacityError::NotPowerOfTwo(3)
    );
    assert_eq!(
        HoldRing::<u8>::new(MAX_CAPACITY << 1).unwrap_err(),
        CapacityError::TooLarge {
            capacity: MAX_CAPACITY << 1,
            max: MAX_CAPACITY
        }
    );
    let (p, _, c) = HoldRing::<u8>::new(1).unwrap();
    assert_eq!((p.capacity(), c.capacity(), p.free()), (1, 1, 1));
}

#[test]
fn every_confirm_outcome() {
    let (mut p, c, mut e) = HoldRing::<Box<u64>>::new(4).unwrap();
    assert_eq!(c.confirm(0, 1, digest_of(1), 10), Confirm::Future);
    assert_eq!(c.confirm(0, 0, digest_of(0), 10), Confirm::Stale);
    assert_eq!(p.next_seq(), 1);
    assert_eq!(p.push(Box::new(1), digest_of(1), 100), Ok(1));
    p.set_backup_tx_ns(1, 150);
    // Same slot as 1, one lap ahead: not launched.
    assert_eq!(c.confirm(0, 5, digest_of(5), 10), Confirm::Future);
    assert_eq!(c.confirm(0, 2, digest_of(2), 10), Confirm::Future);
    // Forged / corrupted tap copy: never confirms.
    assert_eq!(
        c.confirm(0, 1, digest_of(1) ^ 1, 10),
        Confirm::DigestMismatch
    );
    assert_eq!(e.head().unwrap().confirmed, 0);
    assert!(e.release_if(|c| c != 0).is_none());
    assert_eq!(c.confirm(2, 1, digest_of(1), 200), Confirm::Confirmed);
    assert_eq!(c.confirm(2, 1, digest_of(1), 300), Confirm::Duplicate);
    // A wrong digest is reported as such even after the link confirmed.
    assert_eq!(c.confirm(2, 1, 0, 300), Confirm::DigestMismatch);
    assert_eq!(
        e.head(),
        Some(Head {
            seq: 1,
            confirmed: 0b100,
            rx_ns: 100,
            backup_tx_ns: 150
        })
    );
    let r = e.release_if(|c| c & 0b100 != 0).unwrap();
    assert_eq!(
        (
            *r.item,
            r.seq,
            r.confirmed,
            r.digest,
            r.rx_ns,
            r.backup_tx_ns,
            r.tap_ns
        ),
        (1, 1, 0b100, digest_of(1), 100, 150, [0, 0, 200, 0])
    );
    // Late tap copy of a released message whose slot is not reused yet.
    assert_eq!(c.confirm(0, 1, digest_of(1), 400), Confirm::Released);
    // Reuse slot 1 with seq 5.
    for seq in 2..=5 {
        assert_eq!(p.push(Box::new(seq), digest_of(seq), 0), Ok(seq));
    }
    assert_eq!(c.confirm(0, 1, digest_of(1), 400), Confirm::Stale);
    assert_eq!(c.confirm(0, 9, digest_of(9), 400), Confirm::Future);
    // A copy of seq 1 carrying seq 5's digest still cannot touch seq 5.
    assert_eq!(c.confirm(0, 1, digest_of(5), 400), Confirm::Stale);
    assert_eq!(c.confirm(1, 5, digest_of(5), 500), Confirm::Confirmed);
    assert_eq!(
        e.in_flight().collect::<Vec<_>>(),
        [(2, 0), (3, 0), (4, 0), (5, 0b10)]
    );
    let mut seen = vec![];
    assert_eq!(e.drain(|r| seen.push((r.seq, *r.item, r.tap_ns[1]))), 4);
    assert_eq!(seen, [(2, 2, 0), (3, 3, 0), (4, 4, 0), (5, 5, 500)]);
}

#[test]
fn a_relaunched_frame_confirms_and_its_digest_goes_with_the_slot() {
    let (mut p, c, mut e) = HoldRing::<Box<u64>>::new(2).unwrap();
    // Seq 1 launched normally; seq 2 accepted with no backup frame (digest 0).
    assert_eq!(p.push(Box::new(1), digest_of(1), 0), Ok(1));
    assert_eq!(p.push(Box::new(2), 0, 0), Ok(2));
    let relaunch = |seq: u64| digest_of(seq) ^ 0x5a5a;
    // Before a re-launch, only the first launch's digest confirms; 0 never does.
    assert_eq!(c.confirm(0, 1, relaunch(1), 1), Confirm::DigestMismatch);
    assert_eq!(c.confirm(0, 2, 0, 1), Confirm::DigestMismatch);
    e.set_relaunch_digest(1, relaunch(1));
    e.set_relaunch_digest(2, relaunch(2));
    // Not held: ignored.
    e.set_relaunch_digest(3, relaunch(3));
    assert_eq!(c.confirm(0, 1, relaunch(1), 2), Confirm::Confirmed);
    assert_eq!(
        c.confirm(1, 1, digest_of(1), 2),
        Confirm::Confirmed,
        "the first launch too"
    );
    assert_eq!(c.confirm(0, 2, relaunch(2), 3), Confirm::Confirmed);
    assert_eq!(c.confirm(1, 2, relaunch(1), 3), Confirm::DigestMismatch);
    assert_eq!(e.release().unwrap().seq, 1);
    // Seq 3 reuses seq 1's slot: the old re-launch digest is gone with it.
    assert_eq!(p.push(Box::new(3), digest_of(3), 0), Ok(3));
    assert_eq!(c.confirm(0, 3, relaunch(1), 4), Confirm::DigestMismatch);
    assert_eq!(c.confirm(0, 1, relaunch(1), 4), Confirm::Stale);
    assert_eq!(c.confirm(0, 3, digest_of(3), 4), Confirm::Confirmed);
}

#[test]
#[should_panic(expected = "out of range")]
fn link_out_of_range_panics() {
    let (_p, c, _e) = HoldRing::<u8>::new(2).unwrap();
    c.confirm(MAX_LINKS, 1, 0, 0);
}

#[test]
fn full_ring_returns_item_and_loses_nothing() {
    let ledger = Ledger::default();
    let (mut p, c, mut e) = HoldRing::<Msg>::new(8).unwrap();
    for id in 1..=8 {
        assert_eq!(p.push(Msg::new(id, &ledger), digest_of(id), 0).unwrap(), id);
    }
    assert_eq!(p.free(), 0);
    assert_eq!(e.held(), 8);
    let back = p.push(Msg::new(9, &ledger), digest_of(9), 0).unwrap_err();
    assert_eq!(back.id, 9);
    assert_eq!(p.next_seq(), 9, "a refused push assigns no seq");
    assert!(ledger.borrow().is_empty(), "nothing dropped while full");
    assert_eq!(c.confirm(0, 1, digest_of(1), 1), Confirm::Confirmed);
    let r = e.release_if(|c| c != 0).unwrap();
    assert_eq!((r.seq, r.item.id), (1, 1));
    drop(r);
    assert_eq!(p.free(), 1);
    assert_eq!(p.push(back, digest_of(9), 0).unwrap(), 9);
    let mut ids = vec![];
    e.drain(|r| {
        assert_eq!(r.seq, r.item.id);
        ids.push(r.item.id);
    });
    assert_eq!(ids, (2..=9).collect::<Vec<_>>());
    assert_each_dropped_once(&ledger, 1..=9);
}

#[test]
fn seq_wraps_many_laps_of_a_small_ring() {
    let (mut p, c, mut e) = HoldRing::<u64>::new(2).unwrap();
    let mut released = 0u64;
    for seq in 1..=10_000u64 {
        assert_eq!(p.push(seq * 10, digest_of(seq), seq).unwrap(), seq);
        // An old copy for the same slot, and one from the future, never mark it.
        let old = seq.saturating_sub(2);
        assert_eq!(c.confirm(1, old, digest_of(old), 0), Confirm::Stale);
        assert_eq!(
            c.confirm(1, seq + 2, digest_of(seq + 2), 0),
            Confirm::Future
        );
        assert_eq!(
            c.confirm(3, seq, digest_of(seq), seq + 1),
            Confirm::Confirmed
        );
        if seq % 2 == 0 {
            while let Some(r) = e.release_if(|c| c == 0b1000) {
                released += 1;
                assert_eq!(
                    (r.seq, r.item, r.tap_ns[3]),
                    (released, released * 10, released + 1)
                );
            }
        }
    }
    assert_eq!(released, 10_000);
    assert_eq!(e.held(), 0);
    assert!(e.head().is_none());
}

#[test]
fn every_payload_dropped_exactly_once() {
    let ledger = Ledger::default();
    {
        let (mut p, _c, mut e) = HoldRing::<Msg>::new(16).unwrap();
        for id in 1..=40 {
            p.push(Msg::new(id, &ledger), digest_of(id), 0).unwrap();
            if id % 3 == 0 {
                drop(e.release().unwrap()); // released
            }
            if id == 20 {
                let mut n = 0;
                e.drain(|_| n += 1); // drained
                assert_eq!(n, 20 - 6);
            }
        }
        // 21..=40 minus the released ones are still held; they go with the ring, when the
        // last handle is dropped, not before.
        drop(e);
        assert!(ledger.borrow().get(&40).is_none());
    }
    assert_each_dropped_once(&ledger, 1..=40);
}

#[test]
fn set_backup_tx_ns_only_touches_its_own_slot() {
    let (mut p, _c, mut e) = HoldRing::<u8>::new(2).unwrap();
    p.set_backup_tx_ns(1, 5); // not pushed yet: ignored
    p.push(1, 0, 0).unwrap();
    p.push(2, 0, 0).unwrap();
    p.set_backup_tx_ns(0, 7);
    p.set_backup_tx_ns(3, 7);
    assert_eq!(e.head().unwrap().backup_tx_ns, 0);
    p.set_backup_tx_ns(1, 11);
    p.set_backup_tx_ns(1, 12); // re-launch
    assert_eq!(e.release().unwrap().backup_tx_ns, 12);
    p.push(3, 0, 0).unwrap(); // reuses seq 1's slot
    p.set_backup_tx_ns(1, 99); // too old: would hit seq 3
    p.set_backup_tx_ns(2, 21);
    assert_eq!(e.release().unwrap().backup_tx_ns, 21);
    assert_eq!(e.release().unwrap().backup_tx_ns, 0);
}

#[test]
fn release_if_decides_on_the_swapped_word() {
    let (mut p, c, mut e) = HoldRing::<u8>::new(4).unwrap();
    p.push(7, digest_of(1), 0).unwrap();
    c.confirm(0, 1, digest_of(1), 0);
    let mut asked = vec![];
    assert!(e
        .release_if(|bits| {
            asked.push(bits);
            bits == 0b11
        })
        .is_none());
    c.confirm(1, 1, digest_of(1), 0);
    let r = e.release_if(|bits| bits == 0b11).unwrap();
    assert_eq!((r.item, r.confirmed), (7, 0b11));
    assert_eq!(asked, [0b01]);
    assert!(e.release().is_none());
}

// ---------------------------------------------------------------------------------------
// Model-based property test.

#[derive(Clone, Debug)]
enum Op {
    Launch,
    /// A tap copy for `seq = base + delta`, where base is the oldest held seq (or next seq).
    Confirm {
        link: usize,
        delta: i64,
        right_digest: bool,
    },
    ReleaseIf {
        policy: ReleasePolicy,
        links: u8,
    },
    Release,
    Head,
}

fn op_strategy(cap: i64) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Launch),
        6 => (0..MAX_LINKS, -2 * cap..2 * cap, prop::bool::weighted(0.8)).prop_map(
            |(link, delta, right_digest)| Op::Confirm { link, delta, right_digest }
        ),
        3 => (
            prop_oneof![
                Just(ReleasePolicy::Any),
                Just(ReleasePolicy::All),
                (1u8..=4).prop_map(ReleasePolicy::AtLeast)
            ],
            1u8..16
        )
            .prop_map(|(policy, links)| Op::ReleaseIf { policy, links }),
        1 => Just(Op::Release),
        1 => Just(Op::Head),
    ]
}

/// The reference: what is in flight and what each slot last held.
struct Model {
    cap: u64,
    next: u64,
    /// (seq, confirmation bits, tap_ns per link) oldest first.
    in_flight: VecDeque<(u64, u8, [u64; 4])>,
    /// Last seq pushed into each slot (0: never).
    slot_seq: Vec<u64>,
}

impl Model {
    fn expect_confirm(&mut self, link: usize, seq: u64, right: bool, t: u64) -> Confirm {
        if seq == 0 {
            return Confirm::Stale;
        }
        let last = self.slot_seq[(seq % self.cap) as usize];
        if last < seq {
            return Confirm::Future;
        }
        if last > seq {
            return Confirm::Stale;
        }
        let Some(entry) = self.in_flight.iter_mut().find(|m| m.0 == seq) else {
            return Confirm::Released;
        };
        if !right {
            Confirm::DigestMismatch
        } else if entry.1 & (1 << link) != 0 {
            Confirm::Duplicate
        } else {
            entry.1 |= 1 << link;
            entry.2[link] = t;
            Confirm::Confirmed
        }
    }
}

fn run_model(cap: usize, ops: &[Op]) -> Result<(), TestCaseError> {
    let ledger = Ledger::default();
    let (mut p, c, mut e) = HoldRing::<Msg>::new(cap).unwrap();
    let mut m = Model {
        cap: cap as u64,
        next: 1,
        in_flight: VecDeque::new(),
        slot_seq: vec![0; cap],
    };
    let mut released_seqs = Vec::new();
    let mut clock = 0u64;
    for op in ops {
        clock += 1;
        match *op {
            Op::Launch => {
                let id = m.next;
                let res = p.push(Msg::new(id, &ledger), digest_of(id), clock);
                if m.in_flight.len() == cap {
                    let back = res.expect_err("push into a full ring");
                    prop_assert_eq!(back.id, id);
                    std::mem::forget(back); // keep the ledger to pushed messages only
                } else {
                    prop_assert_eq!(res.ok(), Some(id));
                    p.set_backup_tx_ns(id, clock * 2);
                    m.in_flight.push_back((id, 0, [0; 4]));
                    m.slot_seq[(id % m.cap) as usize] = id;
                    m.next += 1;
                }
                prop_assert_eq!(p.next_seq(), m.next);
                prop_assert_eq!(p.free(), cap - m.in_flight.len());
            }
            Op::Confirm {
                link,
                delta,
                right_digest,
            } => {
                let base = m.in_flight.front().map_or(m.next, |f| f.0) as i64;
                let seq = (base + delta).max(0) as u64;
                let digest = if right_digest {
                    digest_of(seq)
                } else {
                    digest_of(seq) ^ (1 << (clock % 64))
                };
                let expected = m.expect_confirm(link, seq, right_digest, clock);
                prop_assert_eq!(c.confirm(link, seq, digest, clock), expected, "seq {}", seq);
            }
            Op::ReleaseIf { policy, links } => {
                // Random link masks: the check counts only those links.
                let check = PolicyCheck::new(policy, MAX_LINKS)
                    .unwrap()
                    .with_links(links);
                let want = m
                    .in_flight
                    .front()
                    .filter(|f| check.satisfied(f.1))
                    .copied();
                let got = e.release_if(|bits| check.satisfied(bits));
                match (want, got) {
                    (None, None) => {}
                    (Some((seq, bits, tap)), Some(r)) => {
                        m.in_flight.pop_front();
                        prop_assert!(bits != 0, "released without a confirmation");
                        prop_assert_eq!(
                            (r.seq, r.item.id, r.confirmed, r.digest, r.tap_ns),
                            (seq, seq, bits, digest_of(seq), tap)
                        );
                        prop_assert_eq!(r.backup_tx_ns, 2 * r.rx_ns);
                        released_seqs.push(r.seq);
                    }
                    (want, got) => {
                        prop_assert!(false, "model {:?} ring {:?}", want, got.map(|r| r.seq))
                    }
                }
            }
            Op::Release => {
                let want = m.in_flight.pop_front();
                let got = e.release();
                prop_assert_eq!(want.map(|w| (w.0, w.1)), got.map(|r| (r.seq, r.confirmed)));
                if let Some(w) = want {
                    released_seqs.push(w.0);
                }
            }
            Op::Head => {
                let want = m.in_flight.front().map(|f| (f.0, f.1));
                prop_assert_eq!(want, e.head().map(|h| (h.seq, h.confirmed)));
                prop_assert_eq!(
                    e.in_flight().collect::<Vec<_>>(),
                    m.in_flight.iter().map(|f| (f.0, f.1)).collect::<Vec<_>>()
                );
                prop_assert_eq!(e.held(), m.in_flight.len());
            }
        }
    }
    prop_assert!(released_seqs.windows(2).all(|w| w[1] == w[0] + 1));
    // Half the time drain, half the time drop the ring with messages held.
    if ops.len() & 1 == 0 {
        let mut drained = vec![];
        e.drain(|r| drained.push((r.seq, r.confirmed)));
        let expect: Vec<_> = m.in_flight.iter().map(|f| (f.0, f.1)).collect();
        prop_assert_eq!(drained, expect);
    }
    drop((p, c, e));
    assert_each_dropped_once(&ledger, 1..m.next);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn matches_reference_model(
        cap_log in 0u32..4,
        ops in prop::collection::vec(op_strategy(8), 1..300),
    ) {
        run_model(1 << cap_log, &ops)?;
    }
}

// ---------------------------------------------------------------------------------------
// Threaded stress: real ingress, tap-rx and egress threads over a small ring.

#[test]
fn threaded_stress() {
    const N: u64 = 300_000;
    let (mut p, c, mut e) = HoldRing::<Box<u64>>::new(16).unwrap();

    let ingress = std::thread::spawn(move || {
        let mut full = 0u64;
        for seq in 1..=N {
            let mut item = Box::new(seq);
            loop {
                match p.push(item, digest_of(seq), seq) {
                    Ok(s) => {
                        assert_eq!(s, seq);
                        p.set_backup_tx_ns(seq, seq + 1);
                        break;
                    }
                    Err(back) => {
                        item = back;
                        full += 1;
                        std::thread::yield_now();
                    }
                }
            }
        }
        full
    });

    let tap_rx = std::thread::spawn(move || {
        let mut confirmed = 0u64;
        let mut seq = 1;
        while seq <= N {
            // Forged copy (link 1), stale copy of an older lap (link 2) and a copy from the
            // future (link 3): none may ever mark a slot.
            let forged = c.confirm(1, seq, digest_of(seq) ^ 0xff, 0);
            assert!(
                matches!(forged, Confirm::DigestMismatch | Confirm::Future),
                "{forged:?}"
            );
            // seq - 1 is pushed, so the head is past seq - 17: released for sure.
            if seq > 17 {
                let stale = c.confirm(2, seq - 17, digest_of(seq - 17), 0);
                assert!(
                    matches!(stale, Confirm::Released | Confirm::Stale),
                    "{stale:?}"
                );
            }
            let future = c.confirm(3, seq + 32, digest_of(seq + 32), 0);
            assert_eq!(future, Confirm::Future);
            match c.confirm(0, seq, digest_of(seq), seq + 2) {
                Confirm::Confirmed => {
                    confirmed += 1;
                    seq += 1;
                }
                Confirm::Future => std::thread::yield_now(),
                other => panic!("seq {seq}: {other:?}"),
            }
        }
        confirmed
    });

    let mut next = 1u64;
    while next <= N {
        match e.release_if(|bits| bits & 1 != 0) {
            Some(r) => {
                assert_eq!((r.seq, *r.item), (next, next));
                assert_eq!(r.confirmed, 0b0001, "false confirmation on seq {next}");
                assert_eq!(r.digest, digest_of(next));
                assert_eq!(r.tap_ns, [next + 2, 0, 0, 0]);
                assert_eq!(r.rx_ns, next);
                next += 1;
            }
            None => std::thread::yield_now(),
        }
    }
    ingress.join().unwrap();
    assert_eq!(tap_rx.join().unwrap(), N);
    assert!(e.release().is_none());
}

#[test]
fn peek_sees_held_messages_only_and_never_releases() {
    let (mut p, c, mut e) = HoldRing::<u32>::new(4).unwrap();
    assert!(e.peek(1).is_none(), "nothing launched");
    for v in [10, 20, 30] {
        p.push(v, v as u64, 0).unwrap();
    }
    assert_eq!(c.confirm(1, 2, 20, 5), Confirm::Confirmed);
    assert_eq!(e.peek(1), Some((0, &10)));
    assert_eq!(e.peek(2), Some((0b10, &20)));
    assert_eq!(e.peek(4), None, "future");
    assert_eq!(e.held(), 3, "peeking releases nothing");
    assert_eq!(e.release().unwrap().item, 10);
    assert_eq!(e.peek(1), None, "released");
    assert_eq!(e.peek(3), Some((0, &30)));
}
