//! Egress's re-launches: no held message waits forever for a tap copy.
//!
//! Two reasons to launch a held message's backup frame again, both on one
//! backup link, both flagged RETRANSMIT (so every re-launch of a message is the
//! same bytes; its digest goes in the slot beside the first launch's, and a
//! tap copy of either confirms):
//!
//! - **Retransmit**: the message has waited on link k longer than the timeout
//!   (`health.tap_timeout_us`; under `gate: ack`, `ack_timeout_us`) without
//!   its confirmation on k (the tap copy; under `gate: ack`, the node's ack).
//!   It is re-launched on k once per timeout, `health.tap_retransmits` times;
//!   after that it is counted `exhausted` (an alert) and k's health check,
//!   which measures the oldest unconfirmed message (published here as
//!   `unconfirmed_since_ns`), takes the link down so that the secondary mode
//!   acts. Until it does (its debounce is the operator's), the message is
//!   still re-launched, each wait twice the last, up to 64 timeouts: a tap
//!   that comes back before the link is declared down finds it again.
//! - **Re-send round**: a link entering service (a failover target, or a link
//!   back from down) gets every held message it has not confirmed, in seq
//!   order, before anything new: the main lcore starts a round for the links
//!   entering; ingress pauses (its tail frozen) and says so; we walk the held
//!   messages and hand the frames over; we say the round is done; ingress
//!   launches them and resumes (the handshake is `taphold_core::round`, its
//!   orderings in plane.rs). Messages accepted with no link in
//!   service (pass-through, journal) are launched this way too when protection
//!   returns.
//!
//! Egress builds the frames (it alone may look at held messages in place) and
//! hands them to ingress, which owns every backup link's transmit queue,
//! through one ring per link. The per-message bookkeeping (when and how often
//! each link re-launched it) is egress's own, indexed like the hold ring's
//! slots, allocated once.

// `k` is a link index into several per-link arrays at once (links, rings,
// cursors, counters): a range loop says that better than zipped iterators.
#![allow(clippy::needless_range_loop)]

use dpdk::{Mbuf, Mempool};
use taphold_core::hold_ring::Consumer;
use taphold_core::round::RoundEgress;
use taphold_wire::digest::KeyRing;
use taphold_wire::ethernet::EthernetAddress;
use taphold_wire::taphold::BackupRepr;
use taphold_wire::taphold::{ContentMode, Flags};

use crate::config::{Gate, MAX_LINKS};
use crate::counters::RelaunchCounters;
use crate::frames::backup_frame;
use crate::plan::Plan;
use crate::plane::{EgressWriter, Plane};
use crate::roles::{HeldMessage, BURST};

/// `round_next` when no round is being walked.
const DONE: u64 = u64::MAX;
/// Held messages looked at per link per poll by the retransmit scan: bounds a
/// poll's work when many are overdue (the rest are reached on later polls).
const SCAN: usize = 64;

/// One backup link as re-launches address it.
pub struct LinkAddr {
    pub mac: EthernetAddress,
    pub peer_mac: EthernetAddress,
}

/// What egress remembers of one held message's re-launches.
#[derive(Clone, Copy, Default)]
struct Tries {
    /// The seq these entries are about (the slot's occupant when written).
    seq: u64,
    /// Per link: when it last re-launched the message (0: never).
    last_ns: [u64; MAX_LINKS],
    /// Per link: how many times (a retransmit or a round's re-send).
    count: [u8; MAX_LINKS],
}

pub struct Relaunch {
    links: Vec<LinkAddr>,
    /// Per link: frames for ingress to launch on it.
    out: Vec<dpdk::ring::Producer<Mbuf>>,
    pool: Mempool,
    key: KeyRing,
    /// `link_security: aead`: re-launches are encrypted as first launches are.
    aead: Option<taphold_wire::payload::PayloadKey>,
    stream: u32,
    epoch: u64,
    content: ContentMode,
    gate: Gate,
    /// How long a message may wait for its confirmation on a link.
    timeout_ns: u64,
    /// Retransmits per message and link before it is counted exhausted.
    max_tries: u8,
    /// Per link: the lowest seq it may not have confirmed (a cursor; every
    /// held seq below it is confirmed on the link).
    oldest: [u64; MAX_LINKS],
    /// Per link: when it last entered service; a deadline never runs from
    /// before it.
    entered_ns: [u64; MAX_LINKS],
    /// Per link: where the retransmit scan goes on at the next poll.
    resume: [u64; MAX_LINKS],
    tries: Box<[Tries]>,
    /// Our side of the re-send round handshake.
    board: RoundEgress<'static>,
    /// The round being walked: its links, the next seq, and the first link
    /// of `round_links` not yet done for that seq.
    walking: bool,
    round_links: u8,
    round_next: u64,
    round_link_from: usize,
}

impl Relaunch {
    /// `links`: per link, its addresses and the ring to ingress.
    pub fn new(
        plan: &Plan,
        epoch: u64,
        links: Vec<(LinkAddr, dpdk::ring::Producer<Mbuf>)>,
        pool: Mempool,
        board: RoundEgress<'static>,
    ) -> Relaunch {
        let (links, out) = links.into_iter().unzip();
        Relaunch {
            links,
            out,
            pool,
            key: plan.key,
            aead: plan.aead.clone(),
            stream: plan.stream,
            epoch,
            content: plan.content,
            gate: plan.gate,
            timeout_ns: plan.relaunch_timeout_ns,
            max_tries: plan.max_retransmits,
            oldest: [1; MAX_LINKS],
            entered_ns: [0; MAX_LINKS],
            resume: [0; MAX_LINKS],
            tries: vec![Tries::default(); plan.hold_capacity].into_boxed_slice(),
            board,
            walking: false,
            round_links: 0,
            round_next: DONE,
            round_link_from: 0,
        }
    }

    /// Whether held message `seq`, with tap confirmations `confirmed`, is
    /// confirmed on link `k` in the sense the release gate uses.
    #[inline]
    fn satisfied(&self, plane: &Plane, k: usize, seq: u64, confirmed: u8) -> bool {
        match self.gate {
            Gate::Tap => confirmed & (1 << k) != 0,
            Gate::Ack => plane.link_rx[k].acked_seq() >= seq,
        }
    }

    #[inline]
    fn entry(&mut self, seq: u64) -> &mut Tries {
        let i = (seq as usize) & (self.tries.len() - 1);
        let t = &mut self.tries[i];
        if t.seq != seq {
            *t = Tries {
                seq,
                ..Tries::default()
            };
        }
        t
    }

    /// Builds the RETRANSMIT frame of held message `seq` for link `k`, records
    /// its digest in the slot, and hands it to ingress. False if it could not
    /// be done now (no mbuf, ring full): the caller retries later.
    fn relaunch(
        &mut self,
        hold: &mut Consumer<HeldMessage>,
        k: usize,
        seq: u64,
        now: u64,
        c: &RelaunchCounters,
    ) -> bool {
        let Some((_, held)) = hold.peek(seq) else {
            return true; // released meanwhile: nothing left to do
        };
        let repr = BackupRepr {
            link: k as u8,
            ..held.backup_repr(
                if self.aead.is_some() {
                    Flags::RETRANSMIT | Flags::ENCRYPTED
                } else {
                    Flags::RETRANSMIT
                },
                seq,
                self.stream,
                self.epoch,
                self.content,
                self.key.sealing(now),
            )
        };
        let l = &self.links[k];
        let key = self.key.sealing(now);
        let Some((frame, seal)) = backup_frame(
            &self.pool,
            &repr,
            (key, self.aead.as_ref()),
            l.mac,
            l.peer_mac,
        ) else {
            c.deferred.inc();
            return false;
        };
        // Before the frame can exist on the wire: its tap copy must find it.
        hold.set_relaunch_digest(seq, seal.link_free());
        if let Err(frame) = self.out[k].push(frame) {
            drop(frame);
            c.deferred.inc();
            return false;
        }
        let t = self.entry(seq);
        t.last_ns[k] = now;
        t.count[k] = t.count[k].saturating_add(1);
        true
    }

    /// The re-send round, if one is due: once ingress has paused for it, every
    /// held message the round's links have not confirmed is re-launched on
    /// them, in seq order, a burst per poll; then the round is declared done.
    pub fn round(&mut self, hold: &mut Consumer<HeldMessage>, plane: &Plane, now: u64) -> usize {
        let counters = &plane.counters.relaunch;
        if let Some((_, links)) = self.board.begin() {
            // A new round (or a wider one, restarting the walk from the head).
            self.walking = true;
            self.round_links = links;
            let head = hold.head().map_or(DONE, |h| h.seq);
            self.round_next = head;
            self.round_link_from = 0;
            for k in 0..self.links.len() {
                if links & (1 << k) != 0 {
                    self.entered_ns[k] = now;
                    // Its confirmations from before it left service still
                    // count; the scan moves the cursor over them again.
                    self.oldest[k] = 1;
                    counters[k].rounds.inc();
                }
            }
        }
        if !self.walking {
            return 0;
        }
        let mut built = 0;
        while self.round_next != DONE && built < BURST {
            let seq = self.round_next;
            let Some((confirmed, _)) = hold.peek(seq) else {
                let end = hold.head().map_or(0, |h| h.seq + hold.held() as u64);
                if seq >= end {
                    self.round_next = DONE;
                } else {
                    self.round_next += 1; // released meanwhile
                }
                continue;
            };
            for k in self.round_link_from..self.links.len() {
                if self.round_links & (1 << k) == 0 || self.satisfied(plane, k, seq, confirmed) {
                    continue;
                }
                if !self.relaunch(hold, k, seq, now, &counters[k]) {
                    self.round_link_from = k;
                    return built; // resume at this (seq, link) next poll
                }
                counters[k].round_resends.inc();
                built += 1;
            }
            self.round_link_from = 0;
            self.round_next += 1;
        }
        if self.round_next == DONE {
            // Every frame handed over above is visible to ingress once it
            // sees the round done (taphold_core::round).
            self.walking = false;
            self.board.finish();
        }
        built
    }

    /// The links of a round announced or under way: their deadlines wait for
    /// the round (which re-launches everything they lack anyway).
    pub fn round_pending(&self) -> u8 {
        self.board.pending()
    }

    /// The retransmit scan of the links in service (`active`): re-launches
    /// each held message overdue on a link, and publishes when the oldest
    /// held message whose tap copy has not come back on it started waiting
    /// (the health check's tap deadline; acks have their own).
    pub fn retransmit_overdue(
        &mut self,
        hold: &mut Consumer<HeldMessage>,
        plane: &Plane,
        mine: &EgressWriter,
        active: u8,
        now: u64,
    ) -> usize {
        let counters = &plane.counters.relaunch;
        let in_round = self.round_pending();
        let Some(head) = hold.head().map(|h| h.seq) else {
            for k in 0..self.links.len() {
                mine.unconfirmed_since(k, 0);
            }
            return 0;
        };
        let end = head + hold.held() as u64;
        let mut sent = 0;
        for k in 0..self.links.len() {
            let since = if active & (1 << k) == 0 || in_round & (1 << k) != 0 {
                // Out of service; or entering it, when the round re-sends
                // everything and the deadline starts from then.
                0
            } else {
                let since = self.advance(hold, plane, k, head, end);
                sent += self.scan(hold, plane, k, head, end, now, &counters[k]);
                since
            };
            mine.unconfirmed_since(k, since);
        }
        sent
    }

    /// Moves link `k`'s cursor over what it has confirmed, and returns when
    /// the oldest held message whose tap copy has not come back on it started
    /// waiting (0: none seen within the scan's reach).
    fn advance(
        &mut self,
        hold: &mut Consumer<HeldMessage>,
        plane: &Plane,
        k: usize,
        head: u64,
        end: u64,
    ) -> u64 {
        let mut seq = self.oldest[k].max(head);
        let mut since = 0;
        let mut looked = 0;
        while seq < end && looked < SCAN {
            let Some((confirmed, held)) = hold.peek(seq) else {
                seq += 1;
                continue;
            };
            if since == 0 && confirmed & (1 << k) == 0 {
                since = held.timestamp_ns.max(self.entered_ns[k]).max(1);
            }
            if self.satisfied(plane, k, seq, confirmed) && seq == self.oldest[k].max(head) {
                // Everything below is confirmed on k.
                self.oldest[k] = seq + 1;
            } else {
                looked += 1;
                if since != 0 {
                    break;
                }
            }
            seq += 1;
        }
        since
    }

    /// Re-launches on link `k` what has waited for its confirmation there
    /// longer than the timeout, at most `max_tries` times each. A budget of
    /// looks per poll, resumed where the last poll stopped, so a long run of
    /// overdue messages is covered a slice at a time.
    #[allow(clippy::too_many_arguments)]
    fn scan(
        &mut self,
        hold: &mut Consumer<HeldMessage>,
        plane: &Plane,
        k: usize,
        head: u64,
        end: u64,
        now: u64,
        c: &RelaunchCounters,
    ) -> usize {
        let from = self.oldest[k].max(head);
        let mut seq = if (from..end).contains(&self.resume[k]) {
            self.resume[k]
        } else {
            from
        };
        let mut sent = 0;
        let mut looked = 0;
        while looked < SCAN {
            if seq >= end {
                seq = from; // the whole run is covered: start again next poll
                break;
            }
            looked += 1;
            let Some((confirmed, held)) = hold.peek(seq) else {
                seq += 1;
                continue;
            };
            let waiting_from = held.timestamp_ns.max(self.entered_ns[k]);
            if self.satisfied(plane, k, seq, confirmed) {
                seq += 1;
                continue;
            }
            // Messages were launched in seq order: the first that is not
            // overdue ends this pass.
            if now.saturating_sub(waiting_from) < self.timeout_ns {
                seq = from;
                break;
            }
            let (max, timeout) = (self.max_tries, self.timeout_ns);
            let (last, count) = {
                let t = self.entry(seq);
                (t.last_ns[k], t.count[k])
            };
            // Past the allowed retransmits, each wait doubles (at most 64x).
            let beyond = u32::from(count.saturating_sub(max)).min(6);
            if now.saturating_sub(last.max(waiting_from)) >= timeout << beyond {
                if count == max {
                    // Counted once: the alert, and the health check's cue.
                    c.exhausted.inc();
                }
                if !self.relaunch(hold, k, seq, now, c) {
                    break; // no mbuf or ring room: this seq again next poll
                }
                c.retransmits.inc();
                sent += 1;
            }
            seq += 1;
        }
        self.resume[k] = seq;
        sent
    }
}
