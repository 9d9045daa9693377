//! The fixed array a burst of packets lives in.
//!
//! `rx_burst` appends to a `Burst`, `tx_burst` sends from its front and leaves
//! whatever the driver refused in it, still owned. Dropping a `Burst` frees
//! what is left, so an unsent mbuf is freed exactly once on every path. The
//! array is inline (no heap), sized at compile time like DPDK's own
//! `struct rte_mbuf *pkts[MAX_PKT_BURST]`.

use std::ptr::NonNull;

use crate::Mbuf;

pub struct Burst<const N: usize> {
    /// Owned mbufs live in `ptrs[head..tail]`; the rest are stale.
    ptrs: [*mut dpdk_sys::rte_mbuf; N],
    head: usize,
    tail: usize,
}

// SAFETY: a Burst owns its mbufs exclusively (like Vec<Mbuf>), and Mbuf is Send.
unsafe impl<const N: usize> Send for Burst<N> {}

impl<const N: usize> Default for Burst<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Burst<N> {
    pub const CAPACITY: usize = N;

    pub const fn new() -> Self {
        Burst {
            ptrs: [std::ptr::null_mut(); N],
            head: 0,
            tail: 0,
        }
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        self.tail - self.head
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    #[inline(always)]
    pub fn is_full(&self) -> bool {
        self.len() == N
    }

    /// Room left for more mbufs.
    #[inline(always)]
    pub fn room(&self) -> usize {
        N - self.len()
    }

    /// Moves the owned range to the front so the whole room is contiguous.
    #[inline]
    fn compact(&mut self) {
        if self.head != 0 {
            self.ptrs.copy_within(self.head..self.tail, 0);
            self.tail -= self.head;
            self.head = 0;
        }
    }

    /// Appends one mbuf; gives it back when full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.is_full() {
            return Err(m);
        }
        if self.tail == N {
            self.compact();
        }
        self.ptrs[self.tail] = m.into_raw().as_ptr();
        self.tail += 1;
        Ok(())
    }

    /// Takes the oldest mbuf.
    #[inline]
    pub fn pop(&mut self) -> Option<Mbuf> {
        if self.is_empty() {
            return None;
        }
        let p = self.ptrs[self.head];
        self.head += 1;
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
        // SAFETY: ptrs[head..tail] are owned, non-null mbufs; we just removed p
        // from that range, so ownership moves to the returned Mbuf alone.
        Some(unsafe { Mbuf::from_raw(NonNull::new_unchecked(p)) })
    }

    /// Takes the newest mbuf.
    #[inline]
    pub fn pop_back(&mut self) -> Option<Mbuf> {
        if self.is_empty() {
            return None;
        }
        self.tail -= 1;
        let p = self.ptrs[self.tail];
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
        // SAFETY: p was the last owned, non-null entry; it left the owned range.
        Some(unsafe { Mbuf::from_raw(NonNull::new_unchecked(p)) })
    }

    /// The mbuf at position `i` (0 = oldest), borrowed.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&Mbuf> {
        if i >= self.len() {
            return None;
        }
        // SAFETY: Mbuf is a transparent-sized wrapper of one NonNull pointer;
        // ptrs[head+i] is an owned non-null mbuf, and a shared borrow of it
        // through &self cannot outlive or free it.
        Some(unsafe {
            &*(&self.ptrs[self.head + i] as *const *mut dpdk_sys::rte_mbuf as *const Mbuf)
        })
    }

    /// Frees every mbuf left.
    pub fn clear(&mut self) {
        let n = self.len();
        if n != 0 {
            // SAFETY: ptrs[head..tail] are owned mbufs; after this call we forget
            // them (head = tail), so each is freed exactly once.
            unsafe {
                dpdk_sys::rte_pktmbuf_free_bulk(self.ptrs.as_mut_ptr().add(self.head), n as u32)
            };
        }
        self.head = 0;
        self.tail = 0;
    }

    /// For the driver layer: the contiguous free tail after compaction.
    #[inline]
    pub(crate) fn spare_ptrs(&mut self) -> (*mut *mut dpdk_sys::rte_mbuf, usize) {
        self.compact();
        // SAFETY: tail <= N, so the pointer is within or one past the array.
        (
            unsafe { self.ptrs.as_mut_ptr().add(self.tail) },
            N - self.tail,
        )
    }

    /// For the driver layer: `n` pointers were written by rx_burst after tail.
    ///
    /// # Safety
    /// The `n` slots after `tail` must now hold owned mbufs.
    #[inline]
    pub(crate) unsafe fn commit_spare(&mut self, n: usize) {
        debug_assert!(self.tail + n <= N);
        self.tail += n;
    }

    /// For the driver layer: the owned range, to offer to tx_burst.
    #[inline]
    pub(crate) fn owned_ptrs(&mut self) -> (*mut *mut dpdk_sys::rte_mbuf, usize) {
        // SAFETY: head <= N.
        (unsafe { self.ptrs.as_mut_ptr().add(self.head) }, self.len())
    }

    /// For the driver layer: the first `n` owned mbufs now belong to the driver.
    #[inline]
    pub(crate) fn forget_front(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.head += n;
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
    }
}

impl<const N: usize> Drop for Burst<N> {
    fn drop(&mut self) {
        self.clear();
    }
}

impl<const N: usize> std::fmt::Debug for Burst<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Burst")
            .field("len", &self.len())
            .field("capacity", &N)
            .finish()
    }
}
