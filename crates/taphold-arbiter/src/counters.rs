//! Named counters: what each input brought and what became of it, and what the arbiter did
//! about gaps and confirmations. Every datagram refused is counted here by reason; nothing
//! is dropped silently.

use serde::Serialize;
use taphold_wire::WireError;

/// Per input: every datagram it brought lands in exactly one of `first_copies`,
/// `duplicates`, `late_after_skip` or a refusal (`beyond_window`, `wrong_stream`,
/// `stale_epoch`, `epochs_full`, `too_large`, `malformed.*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InputCounters {
    /// Datagrams handed to [`crate::Arbiter::on_datagram`] for this input.
    pub received: u64,
    /// First copies of a seq: this input won, the message is (or will be) delivered.
    pub first_copies: u64,
    /// ... of which flagged POSSIBLE_DUPLICATE (a backup node's replay after takeover).
    pub first_copies_possible_duplicate: u64,
    /// ... of which flagged RETRANSMIT (a backup node's answer to a resend request).
    pub first_copies_retransmit: u64,
    /// Later copies of a seq already held or delivered: first copy wins, these are dropped.
    pub duplicates: u64,
    /// ... of which flagged POSSIBLE_DUPLICATE.
    pub duplicates_possible_duplicate: u64,
    /// ... of which flagged RETRANSMIT.
    pub duplicates_retransmit: u64,
    /// Copies of a seq the gap policy had already skipped: too late to deliver in order.
    pub late_after_skip: u64,
    /// Seqs further ahead than the reorder window: refused, and asked for again by a resend
    /// request once the window has moved up to them.
    pub beyond_window: u64,
    /// Well-formed delivery headers of another stream.
    pub wrong_stream: u64,
    /// Epochs at or below the floor: older than an epoch the arbiter has finished and
    /// forgotten.
    pub stale_epoch: u64,
    /// A new epoch while every epoch slot holds one that is not finished (see
    /// `max_epochs`); its seqs come back by resend once a slot frees.
    pub epochs_full: u64,
    /// Payloads larger than `max_payload`.
    pub too_large: u64,
    /// Malformed delivery headers, by reason.
    pub malformed: Malformed,
}

/// Malformed delivery headers, one counter per reason the wire crate gives, plus seq 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Malformed {
    /// Shorter than the 40-byte header.
    pub truncated: u64,
    /// Not `"TD"`.
    pub bad_magic: u64,
    /// Not version 1.
    pub bad_version: u64,
    /// Header length not 40.
    pub bad_length: u64,
    /// An undefined flag bit.
    pub bad_flags: u64,
    /// Seq 0: seqs start at 1 in every epoch.
    pub seq_zero: u64,
    /// Anything else the header check refuses.
    pub other: u64,
}

impl Malformed {
    pub(crate) fn count(&mut self, e: WireError) {
        match e {
            WireError::Truncated => self.truncated += 1,
            WireError::BadMagic => self.bad_magic += 1,
            WireError::BadVersion => self.bad_version += 1,
            WireError::BadLength => self.bad_length += 1,
            WireError::BadFlags => self.bad_flags += 1,
            _ => self.other += 1,
        }
    }

    /// Every malformed datagram, whatever the reason.
    pub fn total(&self) -> u64 {
        self.truncated
            + self.bad_magic
            + self.bad_version
            + self.bad_length
            + self.bad_flags
            + self.seq_zero
            + self.other
    }
}

/// The arbiter's own work, over every input and epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Messages handed to the application, in order.
    pub delivered: u64,
    /// Epochs opened (first datagram of a new epoch, or restored from a checkpoint).
    pub epochs_opened: u64,
    /// Finished epochs forgotten to make room for a newer one (the floor rose to them).
    pub epochs_forgotten: u64,
    /// Gaps noticed: a datagram arrived with seqs missing between it and the highest seen.
    pub gaps_opened: u64,
    /// Seqs found missing when those gaps were noticed (saturating: a datagram may claim
    /// any seq).
    pub gap_seqs: u64,
    /// Missing seqs that arrived before they were asked for (reordering).
    pub filled_by_reorder: u64,
    /// Missing seqs that arrived after a resend request asked for them.
    pub filled_by_resend: u64,
    /// Resend requests emitted (each to every backup node).
    pub resend_requests_sent: u64,
    /// Seqs those requests asked for.
    pub resend_seqs_requested: u64,
    /// Gaps at the head of an epoch still missing after `resend_tries` requests: reported.
    pub gaps_exhausted: u64,
    /// Periodic reports of a gap still waiting (`on_gap: wait`).
    pub gaps_still_waiting: u64,
    /// Seqs skipped by `on_gap: skip` (never delivered).
    pub skipped: u64,
    /// Ranges those seqs formed.
    pub skipped_ranges: u64,
    /// Target confirmations emitted (each to every confirm destination).
    pub target_confirms_sent: u64,
    /// Events the application did not drain in time (the event queue is bounded).
    pub events_dropped: u64,
}
