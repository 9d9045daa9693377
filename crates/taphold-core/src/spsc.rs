//! A fixed-capacity single-producer/single-consumer ring of `Copy` records.
//!
//! Egress pushes one [`MessageEvent`](crate::MessageEvent) per released message; the main
//! lcore pops them and writes `events.csv` off the hot path. The ring never blocks and never
//! allocates after construction: when it is full, [`SpscProducer::push`] hands the record
//! back and egress counts a lost event record rather than waiting.
//!
//! Positions are free-running `usize` counters (wrapping), the slot is `position & mask`.
//! Each side keeps a private cache of the other side's position and reloads it only when the
//! ring looks full (producer) or empty (consumer), so the steady state touches the other
//! side's cache line once per lap rather than once per record.

use core::fmt;
use core::mem::MaybeUninit;

use crate::sync::{Arc, AtomicUsize, Ordering, UnsafeCell};
use crate::{check_capacity, CachePadded, CapacityError};

/// The largest event ring: 2^24 records.
pub const MAX_CAPACITY: usize = 1 << 24;

/// The shared ring; built only through [`Spsc::new`], which returns its two handles.
pub struct Spsc<T> {
    /// Position of the next record to pop. Written only by the consumer.
    head: CachePadded<AtomicUsize>,
    /// Position of the next record to push. Written only by the producer.
    tail: CachePadded<AtomicUsize>,
    mask: usize,
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
}

// SAFETY: records move by value from the producer's thread to the consumer's; `T: Send` is
// all that needs. Positions are atomic; each slot is accessed by one side at a time, as
// argued at the `unsafe` blocks below.
unsafe impl<T: Send> Sync for Spsc<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Spsc<T> {}

impl<T: Copy> Spsc<T> {
    /// Builds a ring of `capacity` records (a power of two, at most [`MAX_CAPACITY`]); the only
    /// allocation it makes.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(capacity: usize) -> Result<(SpscProducer<T>, SpscConsumer<T>), CapacityError> {
        check_capacity(capacity, MAX_CAPACITY)?;
        let ring = Arc::new(Spsc {
            head: CachePadded(AtomicUsize::new(0)),
            tail: CachePadded(AtomicUsize::new(0)),
            mask: capacity - 1,
            slots: (0..capacity)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
        });
        Ok((
            SpscProducer {
                ring: Arc::clone(&ring),
                tail: 0,
                head_cache: 0,
            },
            SpscConsumer {
                ring,
                head: 0,
                tail_cache: 0,
            },
        ))
    }
}

impl<T> Spsc<T> {
    #[inline]
    fn len(&self) -> usize {
        // Acquire both: pair with the other side's Release stores; the answer is a snapshot.
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        tail.wrapping_sub(head).min(self.slots.len())
    }
}

impl<T> fmt::Debug for Spsc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spsc")
            .field("capacity", &self.slots.len())
            .field("len", &self.len())
            .finish()
    }
}

/// The pushing side (egress).
#[derive(Debug)]
pub struct SpscProducer<T> {
    ring: Arc<Spsc<T>>,
    /// Our own copy of `tail`.
    tail: usize,
    /// The consumer's `head` as last loaded.
    head_cache: usize,
}

impl<T: Copy> SpscProducer<T> {
    /// Appends `v`, or returns it if the ring is full (the caller counts a lost record).
    #[inline]
    pub fn push(&mut self, v: T) -> Result<(), T> {
        let ring = &*self.ring;
        if self.tail.wrapping_sub(self.head_cache) > ring.mask {
            // Acquire: pairs with the consumer's Release store of `head` in `pop`; it has
            // finished reading the slot we are about to overwrite.
            self.head_cache = ring.head.load(Ordering::Acquire);
            if self.tail.wrapping_sub(self.head_cache) > ring.mask {
                return Err(v);
            }
        }
        ring.slots[self.tail & ring.mask].with_mut(|p| {
            // SAFETY: `tail - head < capacity`, so this slot is not between the consumer's
            // head and our tail: the consumer has finished with it (Acquire above) and will
            // not read it until our Release store of `tail` below. We are the only producer.
            // `T: Copy`, so overwriting drops nothing.
            unsafe { (*p).write(v) };
        });
        self.tail = self.tail.wrapping_add(1);
        // Release: pairs with the consumer's Acquire load of `tail` in `pop`, publishing the
        // record written above.
        ring.tail.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Records currently queued (a snapshot).
    #[inline]
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether no records are queued (a snapshot).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ring's capacity in records.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.ring.slots.len()
    }
}

/// The popping side (the main lcore).
#[derive(Debug)]
pub struct SpscConsumer<T> {
    ring: Arc<Spsc<T>>,
    /// Our own copy of `head`.
    head: usize,
    /// The producer's `tail` as last loaded.
    tail_cache: usize,
}

impl<T: Copy> SpscConsumer<T> {
    /// Takes the oldest record, or `None` if the ring is empty.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        let ring = &*self.ring;
        if self.head == self.tail_cache {
            // Acquire: pairs with the producer's Release store of `tail` in `push`; records
            // below it are written.
            self.tail_cache = ring.tail.load(Ordering::Acquire);
            if self.head == self.tail_cache {
                return None;
            }
        }
        let v = ring.slots[self.head & ring.mask].with_mut(|p| {
            // SAFETY: `head < tail`, and the producer wrote this slot before its Release
            // store of `tail`, which we acquired. It will not overwrite it until our Release
            // store of `head` below. We are the only consumer; `T: Copy`, so reading leaves
            // nothing to drop twice.
            unsafe { (*p).assume_init_read() }
        });
        self.head = self.head.wrapping_add(1);
        // Release: pairs with the producer's Acquire load of `head` in `push`; our read above
        // happens before it reuses the slot.
        ring.head.store(self.head, Ordering::Release);
        Some(v)
    }

    /// Records currently queued (a snapshot).
    #[inline]
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether no records are queued (a snapshot).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ring's capacity in records.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.ring.slots.len()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn capacity_checked() {
        assert_eq!(Spsc::<u8>::new(0).unwrap_err(), CapacityError::Zero);
        assert_eq!(
            Spsc::<u8>::new(6).unwrap_err(),
            CapacityError::NotPowerOfTwo(6)
        );
        assert!(matches!(
            Spsc::<u8>::new(MAX_CAPACITY * 2),
            Err(CapacityError::TooLarge { .. })
        ));
        assert!(Spsc::<u8>::new(1).is_ok());
    }

    #[test]
    fn fifo_full_and_wrap() {
        let (mut tx, mut rx) = Spsc::<u32>::new(4).unwrap();
        assert!(rx.pop().is_none());
        let mut next_in = 0u32;
        let mut next_out = 0u32;
        for lap in 0..100 {
            let burst = lap % 6; // sometimes more than fits
            for _ in 0..burst {
                match tx.push(next_in) {
                    Ok(()) => next_in += 1,
                    Err(v) => {
                        assert_eq!(v, next_in);
                        assert_eq!(tx.len(), 4);
                    }
                }
            }
            assert_eq!(rx.len(), (next_in - next_out) as usize);
            for _ in 0..(lap % 5) {
                if let Some(v) = rx.pop() {
                    assert_eq!(v, next_out);
                    next_out += 1;
                }
            }
        }
        while let Some(v) = rx.pop() {
            assert_eq!(v, next_out);
            next_out += 1;
        }
        assert_eq!(next_in, next_out);
        assert!(rx.is_empty() && tx.is_empty());
    }

    #[test]
    fn wrapping_positions() {
        // Start both positions just below usize::MAX to cross the wrap.
        let (mut tx, mut rx) = Spsc::<usize>::new(2).unwrap();
        let start = usize::MAX - 3;
        tx.tail = start;
        tx.head_cache = start;
        rx.head = start;
        rx.tail_cache = start;
        tx.ring.head.store(start, Ordering::Relaxed);
        tx.ring.tail.store(start, Ordering::Relaxed);
        for i in 0..20 {
            tx.push(i).unwrap();
            tx.push(i + 100).unwrap();
            assert_eq!(tx.push(0), Err(0));
            assert_eq!(rx.len(), 2);
            assert_eq!(rx.pop(), Some(i));
            assert_eq!(rx.pop(), Some(i + 100));
            assert_eq!(rx.pop(), None);
        }
    }

    #[test]
    fn threaded_in_order() {
        const N: u64 = 200_000;
        let (mut tx, mut rx) = Spsc::<u64>::new(64).unwrap();
        let producer = std::thread::spawn(move || {
            let mut lost = 0u64;
            for i in 0..N {
                // Retry rather than count a loss, so the consumer can check every value.
                let mut v = i;
                while let Err(back) = tx.push(v) {
                    v = back;
                    lost += 1;
                    std::thread::yield_now();
                }
            }
            lost
        });
        let mut expect = 0u64;
        while expect < N {
            match rx.pop() {
                Some(v) => {
                    assert_eq!(v, expect);
                    expect += 1;
                }
                None => std::thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert_eq!(rx.pop(), None);
    }
}
