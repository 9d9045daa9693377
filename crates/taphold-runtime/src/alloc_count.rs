//! Proof that the hot path does not allocate.
//!
//! The binary's global allocator counts every allocation made by a thread
//! while it is marked hot (an lcore inside its poll loop). The count is in
//! summary.json as `hot_path_allocations`, and the end-to-end tests assert it
//! is zero over a whole replay. Threads that are not hot pay one thread-local
//! read per allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct CountingAlloc;

static HOT_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // const-initialised, no destructor: reading it never allocates.
    static HOT: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to the system allocator unchanged; the bookkeeping neither
// allocates nor unwinds.
unsafe impl GlobalAlloc for CountingAlloc {
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

#[inline(always)]
fn note() {
    if HOT.try_with(|h| h.get()).unwrap_or(false) {
        HOT_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Marks the calling thread hot (inside a poll loop) or not.
pub fn set_hot(hot: bool) {
    HOT.with(|h| h.set(hot));
}

/// Allocations made by hot threads so far.
pub fn hot_allocations() -> u64 {
    HOT_ALLOCATIONS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static ALLOC: CountingAlloc = CountingAlloc;

    #[test]
    fn counts_only_while_hot() {
        let before = hot_allocations();
        let v: Vec<u8> = Vec::with_capacity(16);
        drop(v);
        assert_eq!(hot_allocations(), before, "not hot: not counted");
        set_hot(true);
        let v: Vec<u8> = Vec::with_capacity(16);
        set_hot(false);
        drop(v);
        assert!(
            hot_allocations() > before,
            "an allocation while hot is counted"
        );
    }
}
