//! The hold ring: where an accepted message waits until its backup frame is known to be on the
//! backup link.
//!
//! Three lcore roles share it:
//!
//! - **ingress** ([`Producer`], exactly one) stamps each message with the next sequence
//!   number, launches its backup frame and puts the original buffer (zero copy) into the slot
//!   `seq & mask`. A full ring is backpressure: [`Producer::push`] hands the message back and
//!   never overwrites a held one.
//! - **tap-rx** ([`Confirmer`], one per tap, cloneable) sees the tap copy of a backup frame
//!   and posts a confirmation for that backup link into the message's slot, but only if the
//!   sequence number is the slot's current occupant and the keyed digest matches the one we
//!   launched.
//! - **egress** ([`Consumer`], exactly one) looks at the oldest held message, decides with
//!   the release policy, and releases it: takes the buffer out and frees the slot.
//!
//! # The state word and the confirmation words
//!
//! Each slot has one `AtomicU64` state word: `seq << 8 | flags`, where bit 6 is `RELEASED`
//! and bit 7 is `OCCUPIED`, and one `AtomicU64` confirmation word per backup link, holding the
//! seq that link last confirmed in this slot. Every word has a single writer, so every
//! transition is a plain store (a `mov` on x86), never a locked read-modify-write: the state
//! word is written by ingress (occupy) and egress (release), each only while it owns the
//! slot; link `k`'s confirmation word only by link `k`'s tap-rx. A confirmation is the seq
//! itself, so one meant for an older or a newer message than the slot's occupant never
//! counts for it: no ABA, whatever the timing, and no reset is needed when the slot is
//! reused.
//!
//! Lifecycle of a slot for one message: `seq << 8 | OCCUPIED` (published by ingress) →
//! `confirmed[k] = seq` by the tap-rx of each link `k` whose tap copy verifies →
//! `seq << 8 | RELEASED` (egress, deciding on the confirmation words it read) → reused for
//! `seq + cap` once egress has advanced the head past `seq`. The initial words are 0:
//! sequence numbers start at 1, so seq 0 never matches.
//!
//! A tap copy racing its message's release may be reported [`Confirm::Confirmed`] although
//! egress decided (on the other links, or unconditionally) just before it landed: the
//! release is still decided only on confirmations that were verified, which is the
//! invariant; only the late copy's counter differs. (The previous design, a
//! compare-and-swap of one word holding all links' bits, classified that copy exactly, for
//! two locked instructions per message.)
//!
//! # Who writes what
//!
//! | field            | written by                         | read by                       |
//! |------------------|------------------------------------|-------------------------------|
//! | `head`           | egress (Release)                   | ingress (Acquire)             |
//! | `tail`           | ingress (Release)                  | egress `held`/`in_flight`     |
//! | `state`          | ingress store, egress store        | everyone                      |
//! | `confirmed[link]`| that link's tap-rx (Release)       | egress (Acquire), tap-rx      |
//! | payload, `rx_ns` | ingress, before publishing `state` | egress, after its Acquire load |
//! | `digest`         | ingress (Release)                  | tap-rx (Acquire), egress      |
//! | `relaunch_digest`| ingress resets, egress (Release)   | tap-rx (Acquire)              |
//! | `tap_ns[link]`   | tap-rx, before `confirmed[link]`   | egress, only for set bits     |
//! | `backup_tx_ns`   | ingress                            | egress                        |

use core::fmt;
use core::mem::MaybeUninit;

use crate::sync::{Arc, AtomicU64, Ordering, UnsafeCell};
use crate::{check_capacity, CachePadded, CapacityError};

/// How many backup links (and taps) a message can be confirmed on.
pub const MAX_LINKS: usize = 4;

/// The largest hold ring: 2^24 slots.
pub const MAX_CAPACITY: usize = 1 << 24;

/// Egress has released the message; the slot awaits reuse.
const RELEASED: u64 = 1 << 6;
/// The slot holds the message named by the word's seq, payload initialised.
const OCCUPIED: u64 = 1 << 7;
/// The seq sits above the flag byte.
const SEQ_SHIFT: u32 = 8;

#[inline]
fn word_seq(state: u64) -> u64 {
    state >> SEQ_SHIFT
}

/// One slot. Aligned to a cache line so a confirmation on slot `n` does not bounce the line
/// ingress is writing for slot `n + 1`.
#[repr(align(64))]
struct Slot<T> {
    /// `seq << 8 | flags`; see the module docs.
    state: AtomicU64,
    /// Per backup link: the last seq that link's tap copy confirmed in this slot.
    confirmed: [AtomicU64; MAX_LINKS],
    /// Keyed digest of the backup frame we launched for the occupant. Atomic because tap-rx
    /// may read it while ingress rewrites it for the next occupant.
    digest: AtomicU64,
    /// Keyed digest of the frame egress re-launched for the occupant (flagged RETRANSMIT, so
    /// its bytes and digest differ from the first launch's), or 0: none. A tap copy of either
    /// frame confirms.
    relaunch_digest: AtomicU64,
    /// When the original message was received on the primary port.
    rx_ns: AtomicU64,
    /// When ingress launched (or last re-launched) the backup frame; 0 until stamped.
    backup_tx_ns: AtomicU64,
    /// First tap copy time per backup link; meaningful only where the link's bit is set.
    tap_ns: [AtomicU64; MAX_LINKS],
    /// The original message buffer (an owned mbuf in production).
    payload: UnsafeCell<MaybeUninit<T>>,
}

impl<T> Slot<T> {
    /// The links that have confirmed `seq`, bit `k` for link `k`. Acquire: pairs with each
    /// link's Release store in `confirm`, publishing its `tap_ns`.
    #[inline]
    fn confirmed_bits(&self, seq: u64) -> u8 {
        let mut bits = 0;
        for (k, c) in self.confirmed.iter().enumerate() {
            if c.load(Ordering::Acquire) == seq {
                bits |= 1 << k;
            }
        }
        bits
    }

    fn new() -> Self {
        Slot {
            state: AtomicU64::new(0),
            confirmed: core::array::from_fn(|_| AtomicU64::new(0)),
            digest: AtomicU64::new(0),
            relaunch_digest: AtomicU64::new(0),
            rx_ns: AtomicU64::new(0),
            backup_tx_ns: AtomicU64::new(0),
            tap_ns: core::array::from_fn(|_| AtomicU64::new(0)),
            payload: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }
}

/// The three role handles of one hold ring: ingress, tap-rx, egress.
pub type Handles<T> = (Producer<T>, Confirmer<T>, Consumer<T>);

/// The shared ring. Built only through [`HoldRing::new`], which hands out the three role
/// handles; the ring itself lives until the last handle is dropped, and then drops every
/// message still held, exactly once.
pub struct HoldRing<T> {
    /// Seq of the oldest held message, i.e. the next one egress releases. Written only by
    /// egress, after it has taken the payload out.
    head: CachePadded<AtomicU64>,
    /// Seq the next launch will get. Written only by ingress, after publishing the slot.
    tail: CachePadded<AtomicU64>,
    mask: u64,
    slots: Box<[Slot<T>]>,
}

// SAFETY: the ring moves `T` values from the ingress thread to the egress thread (or back into
// the dropping thread), so `T: Send` is required and sufficient: no `&T` is ever handed out,
// so `T: Sync` is not needed. Every shared field is atomic, and the payload cell is accessed
// only under the ownership protocol argued at each `unsafe` block below.
unsafe impl<T: Send> Send for HoldRing<T> {}
// SAFETY: as above; `&HoldRing` (via the handles) only lets threads move `T` by value.
unsafe impl<T: Send> Sync for HoldRing<T> {}

impl<T> HoldRing<T> {
    /// Builds a hold ring of `capacity` slots (a power of two, at most [`MAX_CAPACITY`]) and
    /// returns its three role handles. This is the only allocation the ring ever makes.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(capacity: usize) -> Result<Handles<T>, CapacityError> {
        check_capacity(capacity, MAX_CAPACITY)?;
        let ring = Arc::new(HoldRing {
            head: CachePadded(AtomicU64::new(1)),
            tail: CachePadded(AtomicU64::new(1)),
            mask: capacity as u64 - 1,
            slots: (0..capacity).map(|_| Slot::new()).collect(),
        });
        let producer = Producer {
            ring: Arc::clone(&ring),
            next: 1,
            head_cache: 1,
        };
        let confirmer = Confirmer {
            ring: Arc::clone(&ring),
        };
        let consumer = Consumer { ring, head: 1 };
        Ok((producer, confirmer, consumer))
    }

    #[inline]
    fn capacity(&self) -> usize {
        self.slots.len()
    }

    #[inline]
    fn slot(&self, seq: u64) -> &Slot<T> {
        &self.slots[(seq & self.mask) as usize]
    }
}

impl<T> Drop for HoldRing<T> {
    fn drop(&mut self) {
        for slot in self.slots.iter() {
            // Relaxed: the last handle's `Arc` drop already ordered every other thread's
            // accesses before this one (Arc's Release decrement / Acquire fence).
            if slot.state.load(Ordering::Relaxed) & OCCUPIED != 0 {
                slot.payload.with_mut(|p| {
                    // SAFETY: OCCUPIED is set only after ingress wrote the payload and is
                    // cleared by the store with which egress claims it, so the payload is
                    // initialised and not yet taken. We are the last owner of the ring, so
                    // nobody else can touch it; it is dropped here once and never again.
                    unsafe { (*p).assume_init_drop() }
                });
            }
        }
    }
}

impl<T> fmt::Debug for HoldRing<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HoldRing")
            .field("capacity", &self.capacity())
            .field("head", &self.head.load(Ordering::Relaxed))
            .field("tail", &self.tail.load(Ordering::Relaxed))
            .finish()
    }
}

/// Ingress's handle: the only one that launches messages into the hold ring.
#[derive(Debug)]
pub struct Producer<T> {
    ring: Arc<HoldRing<T>>,
    /// Seq the next push gets; ingress's own copy of `tail`.
    next: u64,
    /// Last `head` we loaded; refreshed only when the ring looks full, so the steady state
    /// does not touch egress's cache line.
    head_cache: u64,
}

impl<T> Producer<T> {
    /// The ring's capacity in messages.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// The sequence number the next [`push`](Self::push) will assign, so ingress can build
    /// the backup frame (which carries the seq) before holding the message.
    #[inline]
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// How many more messages can be held right now.
    #[inline]
    pub fn free(&self) -> usize {
        // Acquire: pairs with egress's Release store of `head` in `release_if`; a slot counted
        // free here has had its payload taken.
        let head = self.ring.head.load(Ordering::Acquire);
        self.ring.capacity() - (self.next - head) as usize
    }

    /// Holds `item` in the next slot and returns the seq assigned to it. `digest` is the keyed
    /// digest of the backup frame launched for it, `rx_ns` when it arrived on the primary port.
    ///
    /// Returns `Err(item)` when the ring is full: the caller applies backpressure; nothing
    /// held is ever overwritten.
    #[inline]
    pub fn push(&mut self, item: T, digest: u64, rx_ns: u64) -> Result<u64, T> {
        let ring = &*self.ring;
        let seq = self.next;
        if seq - self.head_cache > ring.mask {
            // Acquire: pairs with egress's Release store of `head` after it took the payload of
            // `seq - capacity` out of this slot; our payload write below happens after that.
            self.head_cache = ring.head.load(Ordering::Acquire);
            if seq - self.head_cache > ring.mask {
                return Err(item);
            }
        }
        let slot = ring.slot(seq);
        slot.payload.with_mut(|p| {
            // SAFETY: `seq - head < capacity`, so egress has released the slot's previous
            // occupant (seq - capacity) and, by the Acquire load of `head` above (or an
            // earlier one that saw an even later head), has finished reading its payload.
            // The slot is not OCCUPIED, so neither tap-rx (never touches payloads) nor egress
            // (claims only OCCUPIED slots) reads it until we publish `state` below. We are
            // the only producer (`&mut self`, `!Clone`). Writing over the moved-out old value
            // drops nothing.
            unsafe { (*p).write(item) };
        });
        // Release: pairs with tap-rx's Acquire load of `digest`. If tap-rx, still checking a
        // tap copy of the previous occupant, reads this new digest, it also sees egress's
        // RELEASED word (which happened before our Acquire of `head`) when it re-reads
        // `state`, and so never reports the old seq's copy as a digest mismatch.
        slot.digest.store(digest, Ordering::Release);
        // Release: as `digest`. The previous occupant's re-launch digest must not linger: a
        // copy of seq can only match a digest computed over seq, but 0 (none) is the rule.
        slot.relaunch_digest.store(0, Ordering::Release);
        // Relaxed: published by the Release store of `state` below.
        slot.rx_ns.store(rx_ns, Ordering::Relaxed);
        slot.backup_tx_ns.store(0, Ordering::Relaxed);
        // `tap_ns` is not reset: egress reads it only for link bits set for this seq, and a
        // confirmer writes it before setting its bit.

        // Release: publishes payload, digest and times. Pairs with tap-rx's Acquire load in
        // `confirm` (tap-rx can see the tap copy on another lcore right after ingress
        // transmits, which is after this push) and egress's Acquire load in `release_if`.
        slot.state
            .store(seq << SEQ_SHIFT | OCCUPIED, Ordering::Release);
        // Release: pairs with egress's Acquire load of `tail` in `held`/`in_flight`.
        ring.tail.store(seq + 1, Ordering::Release);
        self.next = seq + 1;
        Ok(seq)
    }

    /// Records when the backup frame of `seq` was launched: just before `tx_burst` on the
    /// backup link, and again on a re-launch. Ignored unless `seq` was pushed and its slot has
    /// not been reused since (an already-released seq's slot is overwritten harmlessly: the
    /// next push resets it).
    #[inline]
    pub fn set_backup_tx_ns(&self, seq: u64, ns: u64) {
        // Only we push, so `next` tells exactly whether `seq` is its slot's latest occupant.
        if seq != 0 && seq < self.next && self.next - seq <= self.ring.capacity() as u64 {
            // Relaxed: egress reads it after a confirmation, which follows the tap copy, which
            // follows our tx_burst (DPDK orders descriptor writes behind a write barrier); a
            // release on a timeout may see 0, meaning "not stamped yet".
            self.ring
                .slot(seq)
                .backup_tx_ns
                .store(ns, Ordering::Relaxed);
        }
    }
}

impl<T> Producer<T> {
    /// Records the launch time of `seq` if it has none yet: the first launch
    /// of a message accepted with no backup link in service, which egress
    /// re-launches later. A message launched before keeps its first launch
    /// time (a late copy of that launch may still be the one that confirms).
    #[inline]
    pub fn stamp_first_launch(&self, seq: u64, ns: u64) {
        if seq != 0 && seq < self.next && self.next - seq <= self.ring.capacity() as u64 {
            let slot = self.ring.slot(seq);
            // Relaxed: as `set_backup_tx_ns`; only we write the field, so the
            // load and store cannot race another writer.
            if slot.backup_tx_ns.load(Ordering::Relaxed) == 0 {
                slot.backup_tx_ns.store(ns, Ordering::Relaxed);
            }
        }
    }
}

/// What a tap copy did to the hold ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Confirm {
    /// The first confirmation of this message from this backup link; it was recorded.
    Confirmed,
    /// This backup link had already confirmed this message (a duplicate tap copy).
    Duplicate,
    /// The message was already released: a late tap copy.
    Released,
    /// The seq is older than its slot's occupant (or is 0): the slot has moved on.
    Stale,
    /// The seq has not been launched yet.
    Future,
    /// The seq is held but the digest differs from the backup frame we launched: a corrupted
    /// or forged tap copy. It never confirms anything.
    DigestMismatch,
}

/// tap-rx's handle: posts confirmations. Clone one per tap: each link's confirmations must
/// come from one thread (see [`Confirmer::confirm`]).
#[derive(Debug)]
pub struct Confirmer<T> {
    ring: Arc<HoldRing<T>>,
}

// By hand: a derived Clone would require `T: Clone`, and the handle clones only the `Arc`.
impl<T> Clone for Confirmer<T> {
    fn clone(&self) -> Self {
        Confirmer {
            ring: Arc::clone(&self.ring),
        }
    }
}

impl<T> Confirmer<T> {
    /// Posts the tap copy of message `seq`, seen on backup link `link` at `tap_ns`, carrying
    /// `digest`.
    ///
    /// The confirmation is a Release store of `seq` into the slot's confirmation word for
    /// `link`, made only after the state word showed `seq` held and the digest matched; it
    /// can only count for the message it names, since egress compares it with the seq it
    /// releases.
    ///
    /// Each link must have one confirming thread (one tap-rx per tap, as deployed): two
    /// confirmers racing on one link could overwrite a newer message's confirmation with an
    /// older seq, which would then wait for its retransmit (delayed, never lost or forged).
    ///
    /// # Panics
    /// If `link >= MAX_LINKS` (a configuration error, not a wire one).
    #[inline]
    pub fn confirm(&self, link: usize, seq: u64, digest: u64, tap_ns: u64) -> Confirm {
        assert!(link < MAX_LINKS, "backup link index {link} out of range");
        if seq == 0 {
            return Confirm::Stale;
        }
        let slot = self.ring.slot(seq);
        // Acquire: pairs with ingress's Release store of `state` in `push`, so the digest we
        // read below is at least the one launched with the seq we see.
        let mut state = slot.state.load(Ordering::Acquire);
        loop {
            let occupant = word_seq(state);
            if occupant < seq {
                return Confirm::Future;
            }
            if occupant > seq {
                return Confirm::Stale;
            }
            if state & RELEASED != 0 {
                return Confirm::Released;
            }
            debug_assert!(state & OCCUPIED != 0);
            // Acquire: pairs with ingress's Release store of `digest` in `push`. This read races
            // with reuse of the slot: it may return the next occupant's digest. That is
            // harmless: a match is posted as `seq`, which counts for nobody once the slot has
            // moved on; and a mismatch is reported only after re-reading `state` (see below).
            let launched = slot.digest.load(Ordering::Acquire);
            // Acquire: pairs with egress's Release store in `set_relaunch_digest`, made before
            // it handed the re-launched frame over for transmission (so before its tap copy
            // can exist). The same reasoning about slot reuse holds as for `digest`.
            let relaunched = slot.relaunch_digest.load(Ordering::Acquire);
            // 0 is "no frame" (a message accepted with no backup link in service, or never
            // re-launched): it matches nothing. (A genuine digest of 0 has odds 2^-64; that
            // message is then confirmed by its re-launch, whose bytes differ.)
            if digest == 0 || (launched != digest && relaunched != digest) {
                // Acquire: if `launched` came from a later push, that push happened after
                // egress stored RELEASED for `seq`, so this load sees RELEASED (or a newer seq)
                // and we go round again to classify the copy as late, not forged.
                let again = slot.state.load(Ordering::Acquire);
                if again == state {
                    return Confirm::DigestMismatch;
                }
                state = again;
                continue;
            }
            // Relaxed: only this link's confirmer writes the word.
            if slot.confirmed[link].load(Ordering::Relaxed) == seq {
                return Confirm::Duplicate;
            }
            // Relaxed: published by the Release store below; egress reads it only if it sees
            // `seq` in this link's word, which is stored after it.
            slot.tap_ns[link].store(tap_ns, Ordering::Relaxed);
            // Release: pairs with egress's Acquire load in `confirmed_bits`, publishing
            // `tap_ns[link]`. A plain store: this link's word has no other writer.
            slot.confirmed[link].store(seq, Ordering::Release);
            return Confirm::Confirmed;
        }
    }
}

/// The oldest held message, as egress sees it before deciding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Its sequence number.
    pub seq: u64,
    /// Confirmations so far, bit `k` for backup link `k`.
    pub confirmed: u8,
    /// When it arrived on the primary port.
    pub rx_ns: u64,
    /// When its backup frame was launched (0 if not stamped yet); for deadline checks.
    pub backup_tx_ns: u64,
}

/// A released message and what the ring knew about it.
#[derive(Debug)]
pub struct Released<T> {
    /// The original message buffer, now owned by egress.
    pub item: T,
    /// Its sequence number.
    pub seq: u64,
    /// The confirmations the release was decided on.
    pub confirmed: u8,
    /// The keyed digest of its backup frame.
    pub digest: u64,
    /// When it arrived on the primary port.
    pub rx_ns: u64,
    /// When its backup frame was launched (0 if never stamped).
    pub backup_tx_ns: u64,
    /// First tap copy time per backup link; 0 for links that did not confirm.
    pub tap_ns: [u64; MAX_LINKS],
}

/// egress's handle: the only one that releases messages, always oldest first.
#[derive(Debug)]
pub struct Consumer<T> {
    ring: Arc<HoldRing<T>>,
    /// Seq of the oldest held message; egress's own copy of `head`.
    head: u64,
}

impl<T> Consumer<T> {
    /// The ring's capacity in messages.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// How many messages are held (launched and not released).
    #[inline]
    pub fn held(&self) -> usize {
        // Acquire: pairs with ingress's Release store of `tail` in `push`.
        (self.ring.tail.load(Ordering::Acquire) - self.head) as usize
    }

    /// The oldest held message and its confirmations so far, or `None` if nothing is held.
    /// Confirmations may arrive right after; [`release_if`](Self::release_if) decides on the
    /// confirmation words it reads itself.
    #[inline]
    pub fn head(&self) -> Option<Head> {
        let slot = self.ring.slot(self.head);
        // Acquire: pairs with ingress's Release store of `state` in `push`. Reading the slot, not `tail`, keeps egress off ingress's cache line.
        let state = slot.state.load(Ordering::Acquire);
        if word_seq(state) != self.head || state & OCCUPIED == 0 {
            return None;
        }
        Some(Head {
            seq: self.head,
            confirmed: slot.confirmed_bits(self.head),
            // Relaxed: published by the Release store of `state` we acquired above, and
            // stable until we release.
            rx_ns: slot.rx_ns.load(Ordering::Relaxed),
            backup_tx_ns: slot.backup_tx_ns.load(Ordering::Relaxed),
        })
    }

    /// Releases the oldest held message unconditionally (the caller has checked the policy on
    /// [`head`](Self::head), or is passing through unprotected). `None` if nothing is held.
    #[inline]
    pub fn release(&mut self) -> Option<Released<T>> {
        self.release_if(|_| true)
    }

    /// Releases the oldest held message if `policy` accepts its confirmation bits. The bits
    /// given to `policy` are the ones [`Released::confirmed`] reports: read once, so a
    /// decision is never made on one reading and reported with another.
    #[inline]
    pub fn release_if(&mut self, mut policy: impl FnMut(u8) -> bool) -> Option<Released<T>> {
        let ring = &*self.ring;
        let seq = self.head;
        let slot = ring.slot(seq);
        // Acquire: pairs with ingress's Release store of `state` (payload published).
        let state = slot.state.load(Ordering::Acquire);
        if word_seq(state) != seq || state & OCCUPIED == 0 {
            return None; // not launched yet: the slot still shows seq - capacity
        }
        debug_assert!(state & RELEASED == 0, "only egress releases, then moves on");
        // Acquire (in `confirmed_bits`): pairs with each confirmer's Release store, so every
        // confirmed link's `tap_ns` is visible below. The decision is made on these bits and
        // they are what the release reports; a confirmation landing after this read does not
        // change it.
        let confirmed = slot.confirmed_bits(seq);
        if !policy(confirmed) {
            return None;
        }
        // Release: nothing is published to confirmers by RELEASED (they only return
        // `Released` on it), but the store keeps the word's writers ordered for readers of
        // `Drop` and `in_flight`. A plain store: only egress writes the word while the slot
        // is occupied.
        slot.state
            .store((seq << SEQ_SHIFT) | RELEASED, Ordering::Release);
        let item = slot.payload.with_mut(|p| {
            // SAFETY: the slot was OCCUPIED by `seq`, so ingress wrote the payload before its
            // Release store of `state`, which our Acquire load observed. Our store cleared
            // OCCUPIED, so nobody else will read it (tap-rx never reads payloads; `Drop`
            // skips non-OCCUPIED slots), and ingress will not overwrite it until our Release
            // store of `head` below. We read it exactly once.
            unsafe { (*p).assume_init_read() }
        });
        let mut tap_ns = [0; MAX_LINKS];
        for (link, t) in tap_ns.iter_mut().enumerate() {
            if confirmed & (1 << link) != 0 {
                // Relaxed: published by that link's Release store, acquired in `confirmed_bits`.
                *t = slot.tap_ns[link].load(Ordering::Relaxed);
            }
        }
        let released = Released {
            item,
            seq,
            confirmed,
            // Relaxed: published by ingress's Release store of `state`; stable until the
            // Release store of `head` below lets ingress reuse the slot.
            digest: slot.digest.load(Ordering::Relaxed),
            rx_ns: slot.rx_ns.load(Ordering::Relaxed),
            backup_tx_ns: slot.backup_tx_ns.load(Ordering::Relaxed),
            tap_ns,
        };
        self.head = seq + 1;
        // Release: pairs with ingress's Acquire load of `head` in `push`/`free`; our payload
        // and field reads above happen before ingress reuses the slot.
        ring.head.store(self.head, Ordering::Release);
        Some(released)
    }

    /// Shutdown: releases every message still held, oldest first, into `f`; returns how many.
    /// Messages pushed concurrently while draining are drained too.
    pub fn drain(&mut self, mut f: impl FnMut(Released<T>)) -> usize {
        let mut n = 0;
        while let Some(released) = self.release() {
            f(released);
            n += 1;
        }
        n
    }

    /// Walks the held messages from oldest to newest as `(seq, confirmed)`: a snapshot for a
    /// failover re-send. Confirmations may be posted during the walk; nothing is released
    /// during it (releasing needs `&mut self`).
    pub fn in_flight(&self) -> impl Iterator<Item = (u64, u8)> + '_ {
        // Acquire: pairs with ingress's Release store of `tail`; every seq below it is
        // published in its slot.
        let tail = self.ring.tail.load(Ordering::Acquire);
        (self.head..tail).filter_map(move |seq| {
            // Acquire: pairs with the Release stores of `state`.
            let state = self.ring.slot(seq).state.load(Ordering::Acquire);
            (word_seq(state) == seq && state & OCCUPIED != 0)
                .then(|| (seq, self.ring.slot(seq).confirmed_bits(seq)))
        })
    }

    /// Records the digest of a frame re-launched for held message `seq` (flagged RETRANSMIT,
    /// so not the bytes of its first launch): a tap copy of it confirms as one of the first
    /// launch does. Call it before handing the frame over for transmission. Ignored unless
    /// `seq` is held; 0 means none.
    #[inline]
    pub fn set_relaunch_digest(&mut self, seq: u64, digest: u64) {
        // Acquire: pairs with ingress's Release store of `tail`.
        let tail = self.ring.tail.load(Ordering::Acquire);
        if seq < self.head || seq >= tail {
            return;
        }
        // Release: pairs with tap-rx's Acquire load in `confirm`. `seq` is held (between our
        // head and ingress's tail), so ingress cannot reuse the slot before our head passes
        // it, which needs `&mut self` again.
        self.ring
            .slot(seq)
            .relaunch_digest
            .store(digest, Ordering::Release);
    }

    /// The message `seq` while it is still held, with its confirmation bits: for failover,
    /// which re-launches held messages on another backup link without releasing them.
    ///
    /// Takes `&mut self` so the reference cannot outlive or overlap a release, and so only
    /// the one egress thread ever sees a payload in place (`T` need not be `Sync`).
    #[cfg(not(loom))]
    pub fn peek(&mut self, seq: u64) -> Option<(u8, &T)> {
        // Acquire: pairs with ingress's Release store of `tail`.
        let tail = self.ring.tail.load(Ordering::Acquire);
        if seq < self.head || seq >= tail {
            return None;
        }
        let slot = self.ring.slot(seq);
        // Acquire: pairs with ingress's Release store of `state`, which published the payload.
        let state = slot.state.load(Ordering::Acquire);
        if word_seq(state) != seq || state & OCCUPIED == 0 {
            return None;
        }
        slot.payload.with_mut(|p| {
            // SAFETY: OCCUPIED with this seq means ingress wrote the payload before publishing
            // the state we acquired; only egress (us, through &mut self) takes payloads out and
            // ingress cannot reuse the slot until our head passes `seq`, which needs &mut self
            // again. So a shared reference for the borrow of self is sound.
            Some((slot.confirmed_bits(seq), unsafe { (*p).assume_init_ref() }))
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
