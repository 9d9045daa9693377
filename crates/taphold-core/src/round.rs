//! The re-send round: how a link entering service gets every held message it
//! lacks, in order, before anything new.
//!
//! Three lcores take part, each through its own handle on one [`RoundBoard`]:
//!
//! 1. the control lcore ([`RoundMain::start`]) publishes the round's links,
//!    then bumps the round number (Release);
//! 2. ingress ([`RoundIngress::follow`]) sees the bump (Acquire), stops taking
//!    new messages from then on, and says it has paused for that round
//!    (Release): its tail is frozen;
//! 3. egress ([`RoundEgress::begin`]) sees ingress paused for the round
//!    (Acquire), so it sees every message ingress will have held before
//!    resuming; it walks them, hands each frame to ingress (a ring), and says
//!    the round is done (Release, [`RoundEgress::finish`]);
//! 4. ingress sees it done (Acquire), so every frame handed over is in its
//!    rings; once it has taken them all it resumes
//!    ([`RoundIngress::try_resume`]).
//!
//! A round started while another is under way widens it (its links get
//! theirs again, from the head): [`RoundMain::start`] reads whether the last
//! round is done. `tests/loom.rs` (`resend_round_handshake`) checks these pairings.

use crate::sync::{AtomicU64, Ordering};
use crate::CachePadded;

/// The round's shared words, one cache line pair per writer.
pub struct RoundBoard {
    /// Control lcore: the current round and its links (a mask).
    round: CachePadded<AtomicU64>,
    links: CachePadded<AtomicU64>,
    /// Ingress: the round it has paused for.
    paused: CachePadded<AtomicU64>,
    /// Egress: the last round it finished walking.
    done: CachePadded<AtomicU64>,
}

impl Default for RoundBoard {
    fn default() -> Self {
        RoundBoard::new()
    }
}

impl RoundBoard {
    /// No round yet (round 0 is done).
    pub fn new() -> RoundBoard {
        RoundBoard {
            round: CachePadded(AtomicU64::new(0)),
            links: CachePadded(AtomicU64::new(0)),
            paused: CachePadded(AtomicU64::new(0)),
            done: CachePadded(AtomicU64::new(0)),
        }
    }

    /// The current round and its links. Acquire: pairs with the Release bump
    /// in [`RoundMain::start`], which published the links before it.
    #[inline]
    pub fn current(&self) -> (u64, u8) {
        let round = self.round.load(Ordering::Acquire);
        (round, self.links.load(Ordering::Relaxed) as u8)
    }

    /// The round ingress last paused for.
    pub fn paused(&self) -> u64 {
        // Acquire: pairs with RoundIngress::follow's Release store.
        self.paused.load(Ordering::Acquire)
    }

    /// The last round egress finished.
    pub fn done(&self) -> u64 {
        // Acquire: pairs with RoundEgress::finish's Release store.
        self.done.load(Ordering::Acquire)
    }
}

/// The control lcore's handle.
pub struct RoundMain<'a> {
    board: &'a RoundBoard,
}

impl<'a> RoundMain<'a> {
    /// The handle on `board`; one per side, made once.
    pub fn new(board: &'a RoundBoard) -> Self {
        RoundMain { board }
    }

    /// Starts a round for the links `entering` (widened by those of an
    /// unfinished round). Returns its number and links.
    pub fn start(&self, entering: u8) -> (u64, u8) {
        let b = self.board;
        // Relaxed: only we write `round`.
        let round = b.round.load(Ordering::Relaxed);
        let pending = if b.done() == round {
            0
        } else {
            b.links.load(Ordering::Relaxed) as u8
        };
        let links = crate::service::round_links(pending, entering);
        // Relaxed: published by the Release bump below.
        b.links.store(u64::from(links), Ordering::Relaxed);
        // Release: pairs with the Acquire in `RoundBoard::current`.
        let round = b.round.fetch_add(1, Ordering::Release) + 1;
        (round, links)
    }

    /// The links of a round started and not yet finished (0: none).
    pub fn pending(&self) -> u8 {
        let (round, links) = self.board.current();
        if self.board.done() == round {
            0
        } else {
            links
        }
    }
}

/// Ingress's handle.
pub struct RoundIngress<'a> {
    board: &'a RoundBoard,
    seen: u64,
    paused: bool,
}

impl<'a> RoundIngress<'a> {
    /// The handle on `board`; one per side, made once.
    pub fn new(board: &'a RoundBoard) -> Self {
        RoundIngress {
            board,
            seen: 0,
            paused: false,
        }
    }

    /// Looks for a new round; true if one just began (ingress is paused for
    /// it from here: it must take no new message until it resumes).
    #[inline]
    pub fn follow(&mut self) -> bool {
        let (round, _) = self.board.current();
        if round == self.seen {
            return false;
        }
        self.seen = round;
        self.paused = true;
        // Release: pairs with RoundEgress::begin's Acquire; every message we
        // held before this store is visible to egress's walk.
        self.board.paused.store(round, Ordering::Release);
        true
    }

    /// Whether ingress is paused for a round.
    #[inline]
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Whether egress has handed over every frame of the round ingress is
    /// paused for: read this before taking frames from the rings, so that
    /// rings found empty afterwards really hold nothing more of the round.
    #[inline]
    pub fn round_done(&self) -> bool {
        self.paused && self.board.done() == self.seen
    }

    /// Resumes once the round is done (`round_done`, read before draining)
    /// and every frame of it was taken (`drained`). Returns whether ingress
    /// may take new messages.
    #[inline]
    pub fn try_resume(&mut self, round_done: bool, drained: bool) -> bool {
        if self.paused && round_done && drained {
            self.paused = false;
        }
        !self.paused
    }
}

/// Egress's handle.
pub struct RoundEgress<'a> {
    board: &'a RoundBoard,
    serving: u64,
    walking: bool,
}

impl<'a> RoundEgress<'a> {
    /// The handle on `board`; one per side, made once.
    pub fn new(board: &'a RoundBoard) -> Self {
        RoundEgress {
            board,
            serving: 0,
            walking: false,
        }
    }

    /// A round to walk now, with its links: a new one ingress has paused
    /// for (a newer round restarts the walk). None while there is nothing
    /// new, or ingress has not paused yet.
    #[inline]
    pub fn begin(&mut self) -> Option<(u64, u8)> {
        let (round, links) = self.board.current();
        if round == self.serving || self.board.paused() != round {
            return None;
        }
        self.serving = round;
        self.walking = true;
        Some((round, links))
    }

    /// Every frame of the round being walked is handed over.
    #[inline]
    pub fn finish(&mut self) {
        self.walking = false;
        // Release: pairs with RoundIngress::round_done's Acquire.
        self.board.done.store(self.serving, Ordering::Release);
    }

    /// The links of a round announced or under way (0: none): their
    /// deadlines wait for it.
    #[inline]
    pub fn pending(&self) -> u8 {
        let (round, links) = self.board.current();
        if round != self.serving || self.walking {
            links
        } else {
            0
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn one_round_step_by_step() {
        let b = RoundBoard::new();
        let (main, mut ing, mut eg) = (
            RoundMain::new(&b),
            RoundIngress::new(&b),
            RoundEgress::new(&b),
        );
        assert!(!ing.follow());
        assert_eq!(eg.begin(), None);
        assert_eq!((main.pending(), eg.pending()), (0, 0));
        assert_eq!(main.start(0b10), (1, 0b10));
        assert_eq!((main.pending(), eg.pending()), (0b10, 0b10));
        assert_eq!(eg.begin(), None, "ingress has not paused yet");
        assert!(ing.follow());
        assert!(ing.is_paused());
        assert!(!ing.round_done());
        assert!(!ing.try_resume(false, true));
        assert_eq!(eg.begin(), Some((1, 0b10)));
        assert_eq!(eg.begin(), None, "once");
        assert_eq!(eg.pending(), 0b10, "walking");
        eg.finish();
        assert_eq!((main.pending(), eg.pending()), (0, 0));
        assert!(ing.round_done());
        assert!(!ing.try_resume(true, false), "frames still to take");
        assert!(ing.try_resume(true, true));
        assert!(!ing.follow());
    }

    #[test]
    fn a_round_started_during_another_widens_it() {
        let b = RoundBoard::new();
        let (main, mut ing, mut eg) = (
            RoundMain::new(&b),
            RoundIngress::new(&b),
            RoundEgress::new(&b),
        );
        main.start(0b01);
        ing.follow();
        assert_eq!(eg.begin(), Some((1, 0b01)));
        // Link 2 enters before the walk ends: round 2 covers both.
        assert_eq!(main.start(0b10), (2, 0b11));
        eg.finish(); // round 1 done; round 2 not
                     // Ingress looks for a new round before it looks at the old one's end.
        assert!(ing.follow(), "ingress pauses again, for round 2");
        assert!(!ing.round_done(), "ingress waits for the new round");
        assert_eq!(
            eg.begin(),
            Some((2, 0b11)),
            "the walk restarts for both links"
        );
        eg.finish();
        assert!(ing.round_done() && ing.try_resume(true, true));
        // A round after the last finished is not widened.
        assert_eq!(main.start(0b100), (3, 0b100));
    }
}
