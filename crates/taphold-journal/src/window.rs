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
//!
//! Seqs come off the wire and watermarks from the primary, so any `u64` is a possible
//! input: no arithmetic here can overflow (a base of `u64::MAX` holds every seq).

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
        // Not contained, so `seq > base` and `base < u64::MAX`.
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
        let mut held = 0u64;
        // `to > base`, so `base + 1` cannot overflow; the window's end can.
        let clear_to = to.min(self.base.saturating_add(WINDOW));
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
            while self.base < u64::MAX && self.bit(self.base + 1) {
                self.set(self.base + 1, false);
                self.base += 1;
            }
            let mut moved = false;
            while let Some(&s) = self.overflow.first() {
                // Overflow seqs are all above the base.
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

    /// The seqs in `contiguous() + 1 ..= up_to` that are not held: the first `limit`
    /// gaps as inclusive ranges, and how many seqs are missing in all. An untracked
    /// seq (see the module doc) counts as missing.
    pub fn gaps(&self, up_to: u64, limit: usize) -> (Vec<(u64, u64)>, u64) {
        let mut ranges = Vec::new();
        let mut missing = 0u64;
        if up_to <= self.base {
            return (ranges, 0);
        }
        let mut gap = |from: u64, to: u64| {
            missing = missing.saturating_add(to - from + 1);
            if ranges.len() < limit {
                ranges.push((from, to));
            }
        };
        // The held seqs above the base in order: the window's, then the overflow
        // set's (every one of which lies beyond the window).
        let window_end = up_to.min(self.base.saturating_add(WINDOW));
        let in_window = (self.base + 1..=window_end).filter(|&s| self.bit(s));
        let beyond = self.overflow.range(..=up_to).copied();
        let mut prev = self.base;
        for held in in_window.chain(beyond) {
            if held > prev + 1 {
                gap(prev + 1, held - 1);
            }
            prev = held;
        }
        if up_to > prev {
            gap(prev + 1, up_to);
        }
        (ranges, missing)
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

    #[test]
    fn the_extremes_of_u64_neither_overflow_nor_wrap() {
        let mut w = SeqWindow::new(0);
        assert_eq!(w.insert(u64::MAX), Insert::New);
        assert_eq!(w.insert(u64::MAX), Insert::Duplicate);
        assert_eq!(w.gaps(u64::MAX, 4), (vec![(1, u64::MAX - 1)], u64::MAX - 1));
        assert_eq!(w.raise_base(u64::MAX - 1), u64::MAX - 1);
        assert_eq!(w.contiguous(), u64::MAX, "the overflow seq joined");
        assert_eq!(w.insert(7), Insert::Duplicate);
        assert_eq!(w.raise_base(u64::MAX), 0);

        let mut w = SeqWindow::new(u64::MAX - 3);
        assert_eq!(w.insert(u64::MAX), Insert::New);
        assert_eq!(w.gaps(u64::MAX, 4), (vec![(u64::MAX - 2, u64::MAX - 1)], 2));
        assert_eq!(w.raise_base(u64::MAX), 2);
        assert_eq!(w.contiguous(), u64::MAX);
        assert!(w.contains(u64::MAX) && w.contains(0));
    }

    #[test]
    fn gaps_are_the_missing_ranges_in_and_beyond_the_window() {
        let mut w = SeqWindow::new(0);
        for s in [2, 3, 7, WINDOW + 100, WINDOW + 102] {
            w.insert(s);
        }
        let (r, n) = w.gaps(WINDOW + 102, 16);
        assert_eq!(
            r,
            [
                (1, 1),
                (4, 6),
                (8, WINDOW + 99),
                (WINDOW + 101, WINDOW + 101)
            ]
        );
        assert_eq!(n, 1 + 3 + (WINDOW + 92) + 1);
        assert_eq!(w.gaps(WINDOW + 105, 1), (vec![(1, 1)], n + 3));
        assert_eq!(w.gaps(0, 16), (vec![], 0));
    }

    /// Seqs and watermarks near 0, in the middle and near `u64::MAX`.
    fn extreme() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..300,
            (u64::MAX - 300)..=u64::MAX,
            (1u64 << 63) - 150..(1u64 << 63) + 150,
            any::<u64>(),
        ]
    }

    proptest! {
        /// Any mix of inserts and raises, at the extremes of `u64`, against a model:
        /// nothing panics, and what is held is exactly what the model holds.
        #[test]
        fn extremes_match_a_model(
            start in extreme(),
            ops in proptest::collection::vec((any::<bool>(), extreme()), 0..60),
        ) {
            let mut w = SeqWindow::new(start);
            let mut base = start;
            let mut held = std::collections::BTreeSet::new();
            let mut probes = vec![0, 1, u64::MAX, u64::MAX - 1, start];
            for (raise, v) in ops {
                probes.push(v);
                probes.push(v.wrapping_add(1));
                if raise {
                    let before = w.contiguous();
                    let covered = w.raise_base(v);
                    if v > base {
                        let newly = held.range(base + 1..=v).count() as u64;
                        prop_assert_eq!(covered, v - base - newly);
                        base = v;
                    } else {
                        prop_assert_eq!(covered, 0);
                    }
                    prop_assert!(w.contiguous() >= before);
                } else {
                    let fresh = v > base && held.insert(v);
                    prop_assert_eq!(w.insert(v), if fresh { Insert::New } else { Insert::Duplicate });
                }
                while base < u64::MAX && held.contains(&(base + 1)) {
                    base += 1;
                }
                prop_assert_eq!(w.contiguous(), base);
            }
            for p in probes {
                prop_assert_eq!(w.contains(p), p <= base || held.contains(&p), "seq {}", p);
            }
            let top = held.last().copied().unwrap_or(base).max(base);
            let (_, missing) = w.gaps(top, 0);
            let want = if top > base {
                (top - base) - held.range(base + 1..=top).count() as u64
            } else {
                0
            };
            prop_assert_eq!(missing, want);
        }

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
