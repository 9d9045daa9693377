//! Which sequence numbers are journaled: a contiguous point and a bitmap window above it.
//!
//! The backup link can reorder and duplicate frames, so the journal must know, for every
//! arriving seq, whether it already holds it, and what the highest `S` is such that every
//! seq from the start up to `S` is held (the cumulative ack). This is that set:
//!
//! - `base`: every seq `<= base` is held (the contiguous point);
//! - a ring bitmap of [`WINDOW`] bits for the seqs in `base + 1 ..= base + WINDOW`;
//! - an ordered overflow set for seqs further ahead than the window (they are journaled
//!   at once, and counted contiguous as soon as the gap below them closes and the window
//!   slides over them). At most [`OVERFLOW_CAP`] are remembered; past that a seq is still
//!   journaled but *untracked*: a duplicate of it would be journaled again, and the
//!   contiguous point stops below it for good (it under-acks, which is safe: an ack never
//!   claims a seq that is not journaled).
//!
//! Every operation is O(1) amortised without allocation while frames arrive less than
//! [`WINDOW`] seqs ahead of the oldest gap, which is what a link that merely reorders
//! does. The overflow set allocates, but only when a gap is older than 64K frames.

use std::collections::BTreeSet;

/// Seqs tracked by the bitmap above the contiguous point.
pub const WINDOW: u64 = 1 << 16;
const WORDS: usize = (WINDOW / 64) as usize;
/// Most seqs remembered beyond the window.
pub const OVERFLOW_CAP: usize = 1 << 20;

/// Whether an insert found the seq new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    New,
    Duplicate,
}

pub struct SeqWindow {
    base: u64,
    bits: Box<[u64; WORDS]>,
    overflow: BTreeSet<u64>,
    /// Seqs that arrived beyond the window (remembered in `overflow`).
    pub beyond_window: u64,
    /// Seqs that arrived beyond the window with the overflow set full.
    pub untracked: u64,
}

impl SeqWindow {
    /// A window where every seq `<= base` counts as held.
    pub fn new(base: u64) -> SeqWindow {
        SeqWindow {
            base,
            bits: Box::new([0; WORDS]),
            overflow: BTreeSet::new(),
            beyond_window: 0,
            untracked: 0,
        }
    }

    /// Every seq `<= contiguous()` is held.
    pub fn contiguous(&self) -> u64 {
        self.base
    }

    #[inline]
    fn bit(&self, seq: u64) -> bool {
        let i = (seq % WINDOW) as usize;
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    #[inline]
    fn set(&mut self, seq: u64, on: bool) {
        let i = (seq % WINDOW) as usize;
        if on {
            self.bits[i / 64] |= 1 << (i % 64);
        } else {
            self.bits[i / 64] &= !(1 << (i % 64));
        }
    }

    /// Whether `seq` is held.
    pub fn contains(&self, seq: u64) -> bool {
        seq <= self.base
            || (seq - self.base <= WINDOW && self.bit(seq))
            || self.overflow.contains(&seq)
    }

    /// Records `seq` as held, unless it already was.
    pub fn insert(&mut self, seq: u64) -> Insert {
        if self.contains(seq) {
            return Insert::Duplicate;
        }
        if seq - self.base <= WINDOW {
            self.set(seq, true);
            if seq == self.base + 1 {
                self.advance();
            }
        } else if self.overflow.len() < OVERFLOW_CAP {
            self.overflow.insert(seq);
            self.beyond_window += 1;
        } else {
            self.untracked += 1;
        }
        Insert::New
    }

    /// Counts every seq `<= to` as held without journaling it (the primary has
    /// released them: they are the destination's now), then moves the
    /// contiguous point over whatever held seqs follow.
    ///
    /// Returns how many seqs it covered that were not held (gaps the
    /// primary's watermark filled).
    pub fn raise_base(&mut self, to: u64) -> u64 {
        if to <= self.base {
            return 0;
        }
        let mut held = 0;
        let clear_to = to.min(self.base + WINDOW);
        for seq in self.base + 1..=clear_to {
            held += u64::from(self.bit(seq));
            self.set(seq, false);
        }
        while let Some(&s) = self.overflow.first() {
            if s > to {
                break;
            }
            self.overflow.pop_first();
            held += 1;
        }
        let covered = (to - self.base).saturating_sub(held);
        self.base = to;
        self.advance();
        covered
    }

    /// Moves the contiguous point over every held seq, sliding the window over the
    /// overflow set as it goes.
    fn advance(&mut self) {
        loop {
            while self.bit(self.base + 1) {
                self.set(self.base + 1, false);
                self.base += 1;
            }
            let mut moved = false;
            while let Some(&s) = self.overflow.first() {
                if s - self.base > WINDOW {
                    break;
                }
                self.overflow.pop_first();
                self.set(s, true);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn raising_the_base_covers_released_seqs_and_joins_what_follows() {
        let mut w = SeqWindow::new(0);
        for s in [5, 6, 8] {
            w.insert(s);
        }
        assert_eq!(w.contiguous(), 0, "1..=4 never arrived");
        assert_eq!(w.raise_base(4), 4, "four seqs covered without being held");
        assert_eq!(w.contiguous(), 6, "released up to 4, 5 and 6 held");
        assert!(
            w.contains(3),
            "a released seq counts as held (a re-send is a duplicate)"
        );
        assert_eq!(w.raise_base(2), 0);
        assert_eq!(w.contiguous(), 6, "never lowers");
        assert_eq!(w.raise_base(7), 1, "7 was a gap; 8 held");
        assert_eq!(w.contiguous(), 8);
        w.insert(WINDOW * 3);
        w.raise_base(WINDOW * 2);
        assert_eq!(w.contiguous(), WINDOW * 2);
        w.raise_base(WINDOW * 3 - 1);
        assert_eq!(w.contiguous(), WINDOW * 3, "the overflow seq joined");
    }

    #[test]
    fn in_order_out_of_order_and_duplicates() {
        let mut w = SeqWindow::new(0);
        assert_eq!(w.insert(1), Insert::New);
        assert_eq!(w.contiguous(), 1);
        assert_eq!(w.insert(3), Insert::New);
        assert_eq!(w.contiguous(), 1);
        assert_eq!(w.insert(3), Insert::Duplicate);
        assert_eq!(w.insert(1), Insert::Duplicate);
        assert_eq!(w.insert(2), Insert::New);
        assert_eq!(w.contiguous(), 3);
        assert_eq!(w.insert(0), Insert::Duplicate, "below the start");
    }

    #[test]
    fn beyond_the_window_is_held_and_counted_once_the_gap_closes() {
        let mut w = SeqWindow::new(0);
        let far = 3 * WINDOW + 5;
        for s in (2..=far).rev() {
            assert_eq!(w.insert(s), Insert::New);
        }
        assert_eq!(w.contiguous(), 0);
        assert_eq!(w.insert(far), Insert::Duplicate);
        assert_eq!(w.insert(2 * WINDOW), Insert::Duplicate);
        assert!(w.beyond_window > 0);
        assert_eq!(w.insert(1), Insert::New);
        assert_eq!(w.contiguous(), far);
        assert!(w.overflow.is_empty());
    }

    proptest! {
        /// Against a model set: any order, any duplicates, with gaps wider than the window.
        #[test]
        fn matches_a_set(seqs in proptest::collection::vec(
            prop_oneof![1u64..200, 1u64..(3 * WINDOW)], 0..400)) {
            let mut w = SeqWindow::new(0);
            let mut model = std::collections::BTreeSet::new();
            for s in seqs {
                let fresh = model.insert(s);
                prop_assert_eq!(w.insert(s), if fresh { Insert::New } else { Insert::Duplicate });
                let mut c = 0;
                while model.contains(&(c + 1)) { c += 1; }
                prop_assert_eq!(w.contiguous(), c);
            }
            for s in 1..300 {
                prop_assert_eq!(w.contains(s), model.contains(&s));
            }
        }
    }
}
