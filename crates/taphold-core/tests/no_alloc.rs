//! Proves the hot path allocates nothing: a counting global allocator, armed only on this
//! test's thread around a steady-state loop of 100k messages through the hold ring (launch,
//! confirm, head, release) and the event ring (push, pop).
#![cfg(not(loom))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use taphold_core::{
    Confirm, HoldRing, MessageEvent, MessageStatus, PolicyCheck, ReleasePolicy, Spsc,
};

struct Counting;

thread_local! {
    /// Armed around the measured region, on the measuring thread only, so the test harness's
    /// other threads do not count.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the allocator also runs while thread-locals are being torn down.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn measure(f: impl FnOnce()) -> u64 {
    ALLOCS.with(|n| n.set(0));
    ARMED.with(|a| a.set(true));
    f();
    ARMED.with(|a| a.set(false));
    ALLOCS.with(|n| n.get())
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
            let digest = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
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
                let prev = (i - 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
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
