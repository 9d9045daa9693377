//! Named counters, written by one hot role each and read by the main lcore.
//!
//! Each counter has exactly one writer (the role that owns it), so an
//! increment is a relaxed load and store — no locked read-modify-write on the
//! data path. The main lcore reads them relaxed for the stats line and the
//! summary; a reading may be a moment old, never torn (64-bit atomics).

use std::sync::atomic::{AtomicU64, Ordering};

use taphold_core::hold_ring::Confirm;
use taphold_wire::classify::DropReason;
use taphold_wire::WireError;

#[derive(Default, Debug)]
#[repr(transparent)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Single-writer increment.
    #[inline(always)]
    pub fn inc(&self) {
        self.add(1)
    }

    #[inline(always)]
    pub fn add(&self, n: u64) {
        // Relaxed: a statistic; only this role writes it, the main lcore reads.
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    #[inline(always)]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Keeps each role's counters on their own cache lines.
#[repr(align(64))]
#[derive(Default)]
pub struct Padded<T>(pub T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Something the summary can list as (name, value) pairs.
pub trait Named {
    fn each(&self, f: &mut dyn FnMut(&str, u64));
}

#[derive(Default)]
pub struct IngressCounters {
    pub rx_frames: Counter,
    /// Messages accepted: launched on the backup link(s) and put in the hold ring.
    pub accepted: Counter,
    pub arp_replies: Counter,
    /// Frames refused by the classifier, by reason (DropReason::index).
    pub dropped: [Counter; DropReason::ALL.len()],
    /// Frames that arrived in more than one mbuf segment (pool too small).
    pub multi_segment: Counter,
    /// Messages refused because no mbuf was free for the backup frame.
    pub no_mbuf: Counter,
    /// Polls where the hold ring had no room: we stopped pulling from P.
    pub ring_full_polls: Counter,
    /// Polls that waited for a backup link to accept earlier backup frames.
    pub backup_link_busy_polls: Counter,
    pub backup_frames_sent: Counter,
    /// ARP replies dropped because the egress hand-off ring was full.
    pub arp_reply_dropped: Counter,
    pub heartbeats_sent: Counter,
    /// Messages refused because no backup link was in service.
    pub no_link: Counter,
    /// Polls that accepted nothing because the appliance is halted (fail closed).
    pub halted_polls: Counter,
    /// Polls that accepted nothing while a re-send round was under way.
    pub failover_paused_polls: Counter,
    /// Frames egress re-launched (re-send rounds and retransmits) that
    /// ingress put on their links.
    pub resent: Counter,
    /// Accepted with no link in service (pass-through or journal mode): no backup frame.
    pub unlaunched: Counter,
    /// Target confirmations from the destination's arbiter that counted, and
    /// those that did not, by reason.
    pub target_confirms: Counter,
    pub target_confirm_malformed: Counter,
    pub target_confirm_corrupt: Counter,
    /// Target confirmations naming a key id we hold no arbiter key of.
    pub target_confirm_unknown_key: Counter,
    pub target_confirm_foreign: Counter,
    pub target_confirm_other_epoch: Counter,
    pub target_confirm_beyond_released: Counter,
}

impl Named for IngressCounters {
    fn each(&self, f: &mut dyn FnMut(&str, u64)) {
        f("rx_frames", self.rx_frames.get());
        f("accepted", self.accepted.get());
        f("arp_replies", self.arp_replies.get());
        for r in DropReason::ALL {
            f(
                &format!("drop_{}", r.as_str()),
                self.dropped[r.index()].get(),
            );
        }
        f("drop_multi_segment", self.multi_segment.get());
        f("drop_no_mbuf", self.no_mbuf.get());
        f("ring_full_polls", self.ring_full_polls.get());
        f("backup_link_busy_polls", self.backup_link_busy_polls.get());
        f("backup_frames_sent", self.backup_frames_sent.get());
        f("arp_reply_dropped", self.arp_reply_dropped.get());
        f("heartbeats_sent", self.heartbeats_sent.get());
        f("drop_no_link", self.no_link.get());
        f("halted_polls", self.halted_polls.get());
        f("failover_paused_polls", self.failover_paused_polls.get());
        f("resent", self.resent.get());
        f("accepted_unlaunched", self.unlaunched.get());
        f("target_confirms", self.target_confirms.get());
        f(
            "target_confirm_malformed",
            self.target_confirm_malformed.get(),
        );
        f("target_confirm_corrupt", self.target_confirm_corrupt.get());
        f(
            "target_confirm_unknown_key",
            self.target_confirm_unknown_key.get(),
        );
        f("target_confirm_foreign", self.target_confirm_foreign.get());
        f(
            "target_confirm_other_epoch",
            self.target_confirm_other_epoch.get(),
        );
        f(
            "target_confirm_beyond_released",
            self.target_confirm_beyond_released.get(),
        );
    }
}

/// Gateway mode (`primary.mode: gateway`): what ingress routed, held and
/// learned besides messages.
#[derive(Default)]
pub struct GatewayCounters {
    /// Protected TCP segments held, with a backup frame launched.
    pub protected_segments: Counter,
    /// Protected segments with no payload (pure ACK, SYN, FIN, RST) held
    /// behind data of their flow still held, so as not to overtake it.
    pub protected_control_held: Counter,
    /// Protected segments with no payload forwarded at once: nothing of
    /// their flow was held.
    pub protected_control_forwarded: Counter,
    /// Protected segments refused while the appliance was halted (failed
    /// closed): the engine's TCP retransmits them.
    pub protected_refused_halted: Counter,
    /// Return traffic of protected flows forwarded at once.
    pub returned: Counter,
    /// Of which: acknowledgements that advanced a flow's (the target's confirmation).
    pub return_acks: Counter,
    /// Other routable traffic forwarded (`gateway.other: forward`).
    pub forwarded: Counter,
    /// Frames parked until their next hop's ARP reply (then sent in order).
    pub arp_parked: Counter,
    /// Dropped: the next hop's MAC did not come in time, or the parking was full.
    pub no_neighbor: Counter,
    /// Dropped: egress's hand-off ring was full.
    pub forward_ring_full: Counter,
    pub arp_requests_sent: Counter,
    pub arp_learned: Counter,
    pub arp_moved: Counter,
    pub arp_table_full: Counter,
    /// A new protected flow found the flow table full: its segments are all
    /// held (correct, slower), and its acknowledgements are not passed on.
    pub flow_table_full: Counter,
    /// Flow acks sent to the backup nodes (one per link).
    pub flow_acks_sent: Counter,
    /// `content: fix-compact`: segments backed up compact, and those that did
    /// not hold whole FIX messages and went in full.
    pub fix_compact: Counter,
    pub fix_compact_fallback: Counter,
    /// Two-port gateway: frames received on Q (`ingress.rx_frames` counts
    /// P's), and of `ingress.arp_replies` those answered on Q.
    pub q_rx_frames: Counter,
    pub q_arp_replies: Counter,
    /// ARP replies for an address reached on the other port: not learned
    /// (a neighbour is only believed on its own segment).
    pub arp_wrong_port: Counter,
}

impl GatewayCounters {
    /// What an ARP reply or request taught the neighbour table.
    pub fn count_learned(&self, learned: taphold_core::gateway::Learned) {
        use taphold_core::gateway::Learned;
        match learned {
            Learned::New => self.arp_learned.inc(),
            Learned::Moved => self.arp_moved.inc(),
            Learned::Full => self.arp_table_full.inc(),
            Learned::Same | Learned::Static => {}
        }
    }
}

impl Named for GatewayCounters {
    fn each(&self, f: &mut dyn FnMut(&str, u64)) {
        f("protected_segments", self.protected_segments.get());
        f("protected_control_held", self.protected_control_held.get());
        f(
            "protected_control_forwarded",
            self.protected_control_forwarded.get(),
        );
        f(
            "protected_refused_halted",
            self.protected_refused_halted.get(),
        );
        f("returned", self.returned.get());
        f("return_acks", self.return_acks.get());
        f("forwarded", self.forwarded.get());
        f("arp_parked", self.arp_parked.get());
        f("drop_no_neighbor", self.no_neighbor.get());
        f("drop_forward_ring_full", self.forward_ring_full.get());
        f("arp_requests_sent", self.arp_requests_sent.get());
        f("arp_learned", self.arp_learned.get());
        f("arp_moved", self.arp_moved.get());
        f("arp_table_full", self.arp_table_full.get());
        f("flow_table_full", self.flow_table_full.get());
        f("flow_acks_sent", self.flow_acks_sent.get());
        f("fix_compact", self.fix_compact.get());
        f("fix_compact_fallback", self.fix_compact_fallback.get());
        f("q_rx_frames", self.q_rx_frames.get());
        f("q_arp_replies", self.q_arp_replies.get());
        f("arp_wrong_port", self.arp_wrong_port.get());
    }
}

impl IngressCounters {
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(Counter::get).sum::<u64>()
            + self.multi_segment.get()
            + self.no_mbuf.get()
            + self.no_link.get()
    }
}

/// Why a tap copy did not confirm anything, or that it did.
#[derive(Default)]
pub struct TapCounters {
    pub rx_frames: Counter,
    pub confirmed: Counter,
    /// A second copy for a link that already confirmed that message.
    pub duplicate: Counter,
    /// A copy for a message already released (e.g. the slower link under `any`).
    pub late: Counter,
    pub stale: Counter,
    pub future: Counter,
    /// In flight, but not the bytes we launched (keyed digest differs).
    pub digest_mismatch: Counter,
    /// The frame's own digest field does not match its bytes: corrupted on
    /// the way, or not made with our key.
    pub corrupt: Counter,
    /// Copies naming a key id we hold no key of (another deployment's, or
    /// a rotation we were not given).
    pub unknown_key: Counter,
    /// Not a taphold PDU, or malformed (by wire error).
    pub malformed: [Counter; WireErrorKind::COUNT],
    /// Ethernet addresses or type are not those of our frames on this link.
    pub not_taphold: Counter,
    /// A taphold frame of another stream or link.
    pub foreign: Counter,
    /// A genuine-looking copy of another epoch: an earlier run's frame replayed.
    pub wrong_epoch: Counter,
    /// A backup frame launched on another link, seen on this link's tap: it
    /// never confirms this link.
    pub wrong_link: Counter,
    /// Tap copies of our own heartbeats.
    pub heartbeats: Counter,
    /// Copies of our flow acks (gateway mode).
    pub flow_acks: Counter,
    /// Taphold PDUs that never travel our way on a tap (acks, confirmations).
    pub unexpected_type: Counter,
}

impl TapCounters {
    #[inline]
    pub fn count_outcome(&self, c: Confirm) {
        match c {
            Confirm::Confirmed => self.confirmed.inc(),
            Confirm::Duplicate => self.duplicate.inc(),
            Confirm::Released => self.late.inc(),
            Confirm::Stale => self.stale.inc(),
            Confirm::Future => self.future.inc(),
            Confirm::DigestMismatch => self.digest_mismatch.inc(),
        }
    }
}

impl Named for TapCounters {
    fn each(&self, f: &mut dyn FnMut(&str, u64)) {
        f("rx_frames", self.rx_frames.get());
        f("confirmed", self.confirmed.get());
        f("duplicate", self.duplicate.get());
        f("late", self.late.get());
        f("stale", self.stale.get());
        f("future", self.future.get());
        f("digest_mismatch", self.digest_mismatch.get());
        f("corrupt", self.corrupt.get());
        f("unknown_key", self.unknown_key.get());
        for (i, name) in WireErrorKind::NAMES.iter().enumerate() {
            f(&format!("malformed_{name}"), self.malformed[i].get());
        }
        f("not_taphold", self.not_taphold.get());
        f("foreign", self.foreign.get());
        f("wrong_epoch", self.wrong_epoch.get());
        f("wrong_link", self.wrong_link.get());
        f("heartbeats", self.heartbeats.get());
        f("flow_acks", self.flow_acks.get());
        f("unexpected_type", self.unexpected_type.get());
    }
}

/// Dense indexes for wire errors, for counter arrays.
pub struct WireErrorKind;

impl WireErrorKind {
    pub const COUNT: usize = 9;
    pub const NAMES: [&'static str; Self::COUNT] = [
        "truncated",
        "bad_magic",
        "bad_version",
        "unknown_type",
        "bad_flags",
        "bad_length",
        "bad_digest",
        "bad_checksum",
        "other",
    ];

    #[inline]
    pub fn index(e: WireError) -> usize {
        match e {
            WireError::Truncated => 0,
            WireError::BadMagic => 1,
            WireError::BadVersion => 2,
            WireError::UnknownType => 3,
            WireError::BadFlags => 4,
            WireError::BadLength => 5,
            WireError::BadDigest => 6,
            WireError::BadChecksum => 7,
            _ => 8,
        }
    }
}

#[derive(Default)]
pub struct EgressCounters {
    pub released: Counter,
    pub release_tx_retries: Counter,
    pub confirmations_sent: Counter,
    pub confirm_tx_retries: Counter,
    /// Confirmations not sent because no mbuf was free (the message itself
    /// was released; the source will see it as unconfirmed and may resend).
    pub confirm_no_mbuf: Counter,
    pub arp_replies_sent: Counter,
    /// Two-port gateway: frames transmitted on Q (released segments and
    /// what ingress forwarded at once), and polls that found Q's transmit
    /// queue refusing some.
    pub q_tx_frames: Counter,
    pub q_tx_retries: Counter,
    /// Event records lost because the main lcore fell behind (telemetry only).
    pub events_lost: Counter,
    /// Messages whose confirmation took longer than confirm_timeout_us.
    pub overdue: Counter,
    /// Released in pass-through mode without meeting the policy (flagged).
    pub released_unprotected: Counter,
    /// Released in journal mode once synced locally, without meeting the policy.
    pub released_journaled: Counter,
    /// Messages whose rewrite for the destination failed (never expected).
    pub rewrite_failed: Counter,
    /// Released messages from source port 0 (UDP's "no reply"): no
    /// confirmation can reach the source, so none is sent.
    pub confirm_skipped_no_port: Counter,
    /// Released messages whose rule was the local journal though the mode
    /// had changed since they were accepted (journal synced first).
    pub released_journaled_after_mode_change: Counter,
}

impl Named for EgressCounters {
    fn each(&self, f: &mut dyn FnMut(&str, u64)) {
        f("released", self.released.get());
        f("release_tx_retries", self.release_tx_retries.get());
        f("confirmations_sent", self.confirmations_sent.get());
        f("confirm_tx_retries", self.confirm_tx_retries.get());
        f("confirm_no_mbuf", self.confirm_no_mbuf.get());
        f("arp_replies_sent", self.arp_replies_sent.get());
        f("q_tx_frames", self.q_tx_frames.get());
        f("q_tx_retries", self.q_tx_retries.get());
        f("events_lost", self.events_lost.get());
        f("overdue", self.overdue.get());
        f("released_unprotected", self.released_unprotected.get());
        f("released_journaled", self.released_journaled.get());
        f("rewrite_failed", self.rewrite_failed.get());
        f(
            "confirm_skipped_no_port",
            self.confirm_skipped_no_port.get(),
        );
        f(
            "released_journaled_after_mode_change",
            self.released_journaled_after_mode_change.get(),
        );
    }
}

/// What egress re-launched on one link. Written by egress only.
#[derive(Default)]
pub struct RelaunchCounters {
    /// Held messages re-launched (flagged RETRANSMIT) because their tap copy
    /// (or, under `gate: ack`, the node's ack) did not come within the timeout.
    pub retransmits: Counter,
    /// Messages still unconfirmed after `tap_retransmits` re-launches (an
    /// alert): the link's health check takes it down; until then they are
    /// re-launched ever more slowly.
    pub exhausted: Counter,
    /// Held messages re-launched by a re-send round when the link entered
    /// service (failover target, or back from down).
    pub round_resends: Counter,
    /// Re-send rounds the link took part in.
    pub rounds: Counter,
    /// Re-launched frames that could not be built or handed over at once
    /// (no mbuf, ring full): retried on a later poll.
    pub deferred: Counter,
}

impl Named for RelaunchCounters {
    fn each(&self, f: &mut dyn FnMut(&str, u64)) {
        f("retransmits", self.retransmits.get());
        f("exhausted", self.exhausted.get());
        f("round_resends", self.round_resends.get());
        f("rounds", self.rounds.get());
        f("deferred", self.deferred.get());
    }
}

#[derive(Default)]
pub struct LinkRxCounters {
    pub rx_frames: Counter,
    pub acks: Counter,
    pub heartbeats: Counter,
    pub malformed: Counter,
    /// PDUs naming a key id we hold no key of.
    pub unknown_key: Counter,
    pub foreign: Counter,
    pub unexpected_type: Counter,
    /// Authentic acks for another epoch (an earlier run's records): ignored.
    pub ack_wrong_epoch: Counter,
    /// Authentic acks of this epoch beyond the highest seq launched (on any
    /// link) or released: nothing we sent can be acked yet, so ignored.
    pub ack_beyond_launched: Counter,
    /// Authentic heartbeats from a node still on another epoch: not counted
    /// as the node's heartbeats until it speaks for this run.
    pub heartbeat_wrong_epoch: Counter,
    /// Authentic heartbeats of our own sent back to us (a reflector, not a
    /// backup node): never a sign of life.
    pub reflected: Counter,
    /// Highest cumulative ack seen from the backup node (not a counter: a level).
    pub acked_seq: Counter,
}

impl Named for LinkRxCounters {
    fn each(&self, f: &mut dyn FnMut(&str, u64)) {
        f("rx_frames", self.rx_frames.get());
        f("acks", self.acks.get());
        f("heartbeats", self.heartbeats.get());
        f("malformed", self.malformed.get());
        f("unknown_key", self.unknown_key.get());
        f("foreign", self.foreign.get());
        f("unexpected_type", self.unexpected_type.get());
        f("ack_wrong_epoch", self.ack_wrong_epoch.get());
        f("ack_beyond_launched", self.ack_beyond_launched.get());
        f("heartbeat_wrong_epoch", self.heartbeat_wrong_epoch.get());
        f("reflected", self.reflected.get());
        f("acked_seq", self.acked_seq.get());
    }
}

#[derive(Default)]
pub struct TapModelCounters {
    pub fibre_frames: Counter,
    pub tap_copies: Counter,
    pub tap_corrupted: Counter,
    pub tap_cut: Counter,
    /// First tap copies the modelled tap lost on purpose (`lose_tap_copies`).
    pub tap_lost: Counter,
    /// Frames the model could not pass on (its own ring full, or no mbuf).
    pub model_drops: Counter,
    pub sink_frames: Counter,
    /// The modelled backup node's acks and heartbeats.
    pub node_acks: Counter,
    pub node_heartbeats: Counter,
}

impl Named for TapModelCounters {
    fn each(&self, f: &mut dyn FnMut(&str, u64)) {
        f("fibre_frames", self.fibre_frames.get());
        f("tap_copies", self.tap_copies.get());
        f("tap_corrupted", self.tap_corrupted.get());
        f("tap_cut", self.tap_cut.get());
        f("tap_lost", self.tap_lost.get());
        f("model_drops", self.model_drops.get());
        f("sink_frames", self.sink_frames.get());
        f("node_acks", self.node_acks.get());
        f("node_heartbeats", self.node_heartbeats.get());
    }
}

/// Every counter of the appliance, one block per role (per link where the
/// role works per link).
#[derive(Default)]
pub struct Counters {
    pub ingress: Padded<IngressCounters>,
    /// Gateway mode's, written by ingress too.
    pub gateway: Padded<GatewayCounters>,
    pub tap: [Padded<TapCounters>; crate::config::MAX_LINKS],
    pub egress: Padded<EgressCounters>,
    pub relaunch: [Padded<RelaunchCounters>; crate::config::MAX_LINKS],
    pub link_rx: [Padded<LinkRxCounters>; crate::config::MAX_LINKS],
    pub tap_model: Padded<TapModelCounters>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wire_error_has_a_distinct_named_slot() {
        let all = [
            WireError::Truncated,
            WireError::BadMagic,
            WireError::BadVersion,
            WireError::UnknownType,
            WireError::BadFlags,
            WireError::BadLength,
            WireError::BadDigest,
            WireError::BadChecksum,
        ];
        let mut seen = std::collections::BTreeSet::new();
        for e in all {
            assert!(seen.insert(WireErrorKind::index(e)), "{e:?}");
        }
        assert_eq!(WireErrorKind::index(WireError::Malformed), 8);
    }

    #[test]
    fn counter_names_are_unique_per_block() {
        let c = Counters::default();
        let mut names = Vec::new();
        c.ingress.each(&mut |n, _| names.push(n.to_string()));
        let before = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), before);
        assert!(names.contains(&"drop_runt".to_string()));
    }

    #[test]
    fn single_writer_increments_add_up() {
        let c = Counter::default();
        for _ in 0..1000 {
            c.inc();
        }
        c.add(24);
        assert_eq!(c.get(), 1024);
    }
}
