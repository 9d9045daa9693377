//! Proves the hot path allocates nothing: the appliance's counting global allocator, armed
//! only on this test's thread around a steady-state loop of 100k messages through the hold ring (launch,
//! confirm, head, release) and the event ring (push, pop).
#![cfg(not(loom))]

use taphold_core::{
    Confirm, HoldRing, MessageEvent, MessageStatus, PolicyCheck, ReleasePolicy, Spsc,
};
use taphold_runtime::alloc_count::{self, CountingAlloc};

// The appliance's own counting allocator: it counts only threads marked hot,
// so the test harness's other threads do not count.
#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn measure(f: impl FnOnce()) -> u64 {
    let before = alloc_count::hot_allocations();
    alloc_count::set_hot(true);
    f();
    alloc_count::set_hot(false);
    alloc_count::hot_allocations() - before
}

#[test]
fn steady_state_allocates_nothing() {
    const MESSAGES: u64 = 100_000;
    let (mut ingress, tap_rx, mut egress) = HoldRing::<u64>::new(256).unwrap();
    let (mut events_tx, mut events_rx) = Spsc::<MessageEvent>::new(256).unwrap();
    let policy = PolicyCheck::new(ReleasePolicy::AtLeast(2), 3).unwrap();

    // The counter itself works (guards against a vacuous pass).
    assert_eq!(measure(|| drop(std::hint::black_box(Box::new(1u8)))), 1);

    let allocs = measure(|| {
        let mut released = 0u64;
        for i in 0..MESSAGES {
            // Digest 0 never confirms (it marks a re-launch): start from 1.
            let digest = (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let seq = ingress.next_seq();
            assert_eq!(ingress.push(i, digest, i), Ok(seq));
            ingress.set_backup_tx_ns(seq, i + 1);
            assert_eq!(tap_rx.confirm(0, seq, digest, i + 2), Confirm::Confirmed);
            assert_eq!(
                tap_rx.confirm(0, seq, digest ^ 1, i + 2),
                Confirm::DigestMismatch
            );
            // Every other message gets its second confirmation a little later.
            if i % 2 == 1 {
                assert_eq!(
                    tap_rx.confirm(2, seq - 1, digest, i + 3),
                    Confirm::DigestMismatch
                );
                let prev = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                assert_eq!(tap_rx.confirm(2, seq - 1, prev, i + 3), Confirm::Confirmed);
                assert_eq!(tap_rx.confirm(2, seq, digest, i + 3), Confirm::Confirmed);
            }
            while let Some(head) = egress.head() {
                if !policy.satisfied(head.confirmed) {
                    break;
                }
                let r = egress.release_if(|bits| policy.satisfied(bits)).unwrap();
                released += 1;
                let event = MessageEvent {
                    seq: r.seq,
                    stream: 1,
                    epoch: 1,
                    rx_ns: r.rx_ns,
                    backup_tx_ns: r.backup_tx_ns,
                    tap_ns: r.tap_ns[2],
                    release_ns: r.rx_ns + 10,
                    status: MessageStatus::Released,
                };
                assert!(events_tx.push(event).is_ok());
                assert_eq!(events_rx.pop(), Some(event));
            }
        }
        assert_eq!(released, MESSAGES);
        assert_eq!(egress.held(), 0);
        assert_eq!(ingress.free(), 256);
    });
    assert_eq!(allocs, 0, "hot path allocated {allocs} times");
}
