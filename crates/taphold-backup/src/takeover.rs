//! Takeover: the primary is gone, and the node replays from its journal what the
//! destination may not have (seed 000 ¶45: "the backup takes over").
//!
//! For every run the node holds, in epoch order, what may be missing at the
//! destination is everything above what the destination confirmed delivered
//! ([`RunPlan::from`]) up to the highest seq journaled. A takeover goes in two phases,
//! each a little per pass of the poll loop so that the backup link is still served:
//!
//! 1. **Check**: every seq of those ranges is looked up. What cannot be replayed is
//!    listed by seq (ranges of consecutive seqs) with the reason and, when the record
//!    says it, the message's original source: `not_received` (a hole: never journaled,
//!    or covered by the primary's released watermark without a frame), `trimmed`
//!    (below the trim floor while not confirmed delivered), `digest_only` (journaled
//!    without its payload), `unreadable` (a damaged record). The list is logged before
//!    anything is replayed.
//! 2. **Replay**: each seq that can be, in order, as a delivery datagram flagged
//!    POSSIBLE_DUPLICATE to `destination.replay_to`, at most `takeover.rate_per_s` per
//!    second ([`Pacer`]). The arbiter delivers the first copy of each (stream, epoch,
//!    seq) and discards the others, so what the primary already delivered costs only
//!    bandwidth.
//!
//! Then the report ([`Takeover::report`]): per run, what was replayed (count, first and
//! last seq) and what could not be. No DPDK here: the poll loop hands over the journal
//! and sends what [`Takeover::replay_step`] gives it.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};

use taphold_journal::{Journal, RunId};
use taphold_wire::taphold::Flags;

use crate::destination::{delivery_of, Delivery, NotDeliverable, Offer};

/// Entries listed per run at most; the seqs beyond are still counted.
pub const MAX_LISTED: usize = 1000;
/// Seqs looked up per check step.
pub const CHECK_PER_STEP: u64 = 4096;
/// Lookups per replay step, replayed or not.
pub const LOOKUPS_PER_STEP: u64 = 1024;

/// Replays at most `per_s` messages a second, from the first one at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacer {
    per_s: u64,
    start_ns: u64,
    sent: u64,
}

impl Pacer {
    pub fn new(per_s: u64, start_ns: u64) -> Pacer {
        Pacer {
            per_s: per_s.max(1),
            start_ns,
            sent: 0,
        }
    }

    /// How many may go at `now_ns`: one at the start, then `per_s` a second.
    pub fn allowance(&self, now_ns: u64) -> u64 {
        let elapsed = u128::from(now_ns.saturating_sub(self.start_ns));
        let due = elapsed * u128::from(self.per_s) / 1_000_000_000 + 1;
        u64::try_from(due)
            .unwrap_or(u64::MAX)
            .saturating_sub(self.sent)
    }

    pub fn sent(&mut self, n: u64) {
        self.sent += n;
    }
}

/// What started a takeover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `taphold-backup takeover --control PATH`.
    Command,
    /// `takeover.auto_after_ms` of silence from the primary.
    Auto,
}

impl Trigger {
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Command => "command",
            Trigger::Auto => "auto",
        }
    }
}

/// Why a seq cannot be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No record: never journaled (lost on the link, before the node joined), or
    /// covered by the primary's released watermark without a frame.
    NotReceived,
    /// Below the trim floor, and not confirmed delivered.
    Trimmed,
    /// Journaled digest-only: the payload is not here.
    DigestOnly,
    /// A gateway-mode TCP segment: part of a byte stream, not a datagram to replay.
    TcpSegment,
    /// The record is damaged, or not a backup frame.
    Unreadable,
    /// Its frame is larger than an mbuf holds.
    TooLarge,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::NotReceived => "not_received",
            Reason::Trimmed => "trimmed",
            Reason::DigestOnly => "digest_only",
            Reason::TcpSegment => "tcp_segment",
            Reason::Unreadable => "unreadable",
            Reason::TooLarge => "too_large",
        }
    }
}

/// Consecutive seqs that cannot be replayed for one reason (and, for a single
/// record, its original source when the record says it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreplayable {
    pub from: u64,
    pub to: u64,
    pub reason: Reason,
    pub src: Option<SocketAddrV4>,
    /// The read error, for `unreadable`.
    pub error: Option<String>,
}

impl Unreplayable {
    fn describe(&self, out: &mut String) {
        let _ = if self.from == self.to {
            write!(out, "{}", self.from)
        } else {
            write!(out, "{}..{}", self.from, self.to)
        };
        let _ = write!(out, " ({}", self.reason.name().replace('_', " "));
        if let Some(s) = self.src {
            let _ = write!(out, ", from {s}");
        }
        if let Some(e) = &self.error {
            let _ = write!(out, ": {e}");
        }
        out.push(')');
    }
}

/// One run's part of a takeover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan {
    pub run: RunId,
    /// What the destination confirmed delivered, if anything is known of it.
    pub delivered: Option<u64>,
    /// The range that may be missing at the destination (empty when `from > to`).
    pub from: u64,
    pub to: u64,
    pub replayed: u64,
    pub first: Option<u64>,
    pub last: Option<u64>,
    pub unreplayable: Vec<Unreplayable>,
    /// Seqs that cannot be replayed, listed or not.
    pub unreplayable_seqs: u64,
    /// Entries beyond [`MAX_LISTED`], not listed.
    pub unlisted: u64,
}

impl RunPlan {
    /// Run `run`, holding records up to `highest`, of which the destination confirmed
    /// `delivered` (None: nothing known; the run's first seq is `first_seq`).
    pub fn new(run: RunId, delivered: Option<u64>, highest: u64, first_seq: u64) -> RunPlan {
        let from = delivered.map_or(first_seq.max(1), |d| d.saturating_add(1));
        RunPlan {
            run,
            delivered,
            from,
            to: highest,
            replayed: 0,
            first: None,
            last: None,
            unreplayable: Vec::new(),
            unreplayable_seqs: 0,
            unlisted: 0,
        }
    }

    /// Seqs in the range.
    pub fn seqs(&self) -> u64 {
        if self.from > self.to {
            0
        } else {
            (self.to - self.from).saturating_add(1)
        }
    }

    /// Notes that `seq` cannot be replayed; consecutive seqs of one reason without a
    /// source of their own make one entry.
    fn cannot(
        &mut self,
        seq: u64,
        reason: Reason,
        src: Option<SocketAddrV4>,
        error: Option<String>,
    ) {
        self.unreplayable_seqs += 1;
        if let Some(last) = self.unreplayable.last_mut() {
            if last.reason == reason
                && last.src.is_none()
                && src.is_none()
                && error.is_none()
                && last.error.is_none()
                && last.to.checked_add(1) == Some(seq)
            {
                last.to = seq;
                return;
            }
        }
        if self.unreplayable.len() >= MAX_LISTED {
            self.unlisted += 1;
            return;
        }
        self.unreplayable.push(Unreplayable {
            from: seq,
            to: seq,
            reason,
            src,
            error,
        });
    }

    /// Notes that seqs `from..=to` cannot be replayed, as one entry.
    fn cannot_range(&mut self, from: u64, to: u64, reason: Reason, error: Option<String>) {
        self.unreplayable_seqs = self
            .unreplayable_seqs
            .saturating_add((to - from).saturating_add(1));
        if self.unreplayable.len() >= MAX_LISTED {
            self.unlisted += 1;
            return;
        }
        self.unreplayable.push(Unreplayable {
            from,
            to,
            reason,
            src: None,
            error,
        });
    }

    /// Whether the check listed `seq` as unreplayable (or listed too much to say).
    fn listed(&self, seq: u64) -> bool {
        self.unlisted > 0
            || self
                .unreplayable
                .iter()
                .any(|u| u.from <= seq && seq <= u.to)
    }

    /// The unreplayable entries, as a line of text.
    pub fn describe_unreplayable(&self) -> String {
        let mut s = String::new();
        for (i, u) in self.unreplayable.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            u.describe(&mut s);
        }
        if self.unlisted > 0 {
            let _ = write!(s, " and {} more entries", self.unlisted);
        }
        s
    }

    fn json(&self) -> serde_json::Value {
        let list: Vec<serde_json::Value> = self
            .unreplayable
            .iter()
            .map(|u| {
                serde_json::json!({
                    "from": u.from,
                    "to": u.to,
                    "reason": u.reason.name(),
                    "src": u.src.map(|s| s.to_string()),
                    "error": u.error,
                })
            })
            .collect();
        serde_json::json!({
            "stream": self.run.stream,
            "epoch": self.run.epoch,
            "delivered_through": self.delivered,
            "from": self.from,
            "to": self.to,
            "seqs": self.seqs(),
            "replayed": self.replayed,
            "first_seq": self.first,
            "last_seq": self.last,
            "unreplayable_seqs": self.unreplayable_seqs,
            "unreplayable": list,
            "unlisted": self.unlisted,
        })
    }
}

/// Where a takeover is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Looking up every seq of run `run` from `next`.
    Checking {
        run: usize,
        next: u64,
    },
    /// Replaying run `run` from `next`.
    Replaying {
        run: usize,
        next: u64,
    },
    Done,
}

/// One takeover, from trigger to report.
#[derive(Debug, Clone)]
pub struct Takeover {
    pub trigger: Trigger,
    pub started_ns: u64,
    pub checked_ns: Option<u64>,
    pub finished_ns: Option<u64>,
    pub runs: Vec<RunPlan>,
    /// Runs of our stream in the journal directory that could not be opened: their
    /// seqs cannot be replayed. (run, why)
    pub not_opened: Vec<(RunId, String)>,
    pub replay_to: SocketAddrV4,
    pub rate_per_s: u64,
    pub phase: Phase,
    pacer: Pacer,
    /// Passes a replay found no room (pool empty, tx full): it waited.
    pub waits: u64,
    /// Seqs the check found replayable that were gone when replayed (trimmed since by
    /// a confirmation, so delivered).
    pub gone_since_check: u64,
    /// Stopped before it finished (the node stopped).
    pub interrupted: bool,
}

impl Takeover {
    /// A takeover of `runs` (in epoch order), starting at `now`.
    pub fn new(
        trigger: Trigger,
        runs: Vec<RunPlan>,
        not_opened: Vec<(RunId, String)>,
        replay_to: SocketAddrV4,
        rate_per_s: u64,
        now: u64,
    ) -> Takeover {
        Takeover {
            trigger,
            started_ns: now,
            checked_ns: None,
            finished_ns: None,
            runs,
            not_opened,
            replay_to,
            rate_per_s,
            phase: Phase::Checking { run: 0, next: 0 },
            pacer: Pacer::new(rate_per_s, now),
            waits: 0,
            gone_since_check: 0,
            interrupted: false,
        }
        .settled(now)
    }

    fn settled(mut self, now: u64) -> Takeover {
        self.settle(now);
        self
    }

    /// Skips to the first run with seqs left in the current phase; `now` starts the
    /// replay's pacing when the check ends.
    fn settle(&mut self, now: u64) {
        loop {
            match self.phase {
                Phase::Checking { run, next } => {
                    let Some(p) = self.runs.get(run) else {
                        self.phase = Phase::Replaying { run: 0, next: 0 };
                        self.checked_ns = Some(now.max(self.started_ns));
                        self.pacer = Pacer::new(self.rate_per_s, now.max(self.started_ns));
                        continue;
                    };
                    let next = next.max(p.from);
                    if next > p.to || p.seqs() == 0 {
                        self.phase = Phase::Checking {
                            run: run + 1,
                            next: 0,
                        };
                        continue;
                    }
                    self.phase = Phase::Checking { run, next };
                    return;
                }
                Phase::Replaying { run, next } => {
                    let Some(p) = self.runs.get(run) else {
                        self.phase = Phase::Done;
                        self.finished_ns = Some(now.max(self.started_ns));
                        return;
                    };
                    let next = next.max(p.from);
                    if next > p.to || p.seqs() == 0 {
                        self.phase = Phase::Replaying {
                            run: run + 1,
                            next: 0,
                        };
                        continue;
                    }
                    self.phase = Phase::Replaying { run, next };
                    return;
                }
                Phase::Done => return,
            }
        }
    }

    /// The run the current phase works on, if any.
    pub fn current_run(&self) -> Option<RunId> {
        match self.phase {
            Phase::Checking { run, .. } | Phase::Replaying { run, .. } => {
                self.runs.get(run).map(|p| p.run)
            }
            Phase::Done => None,
        }
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    pub fn is_checking(&self) -> bool {
        matches!(self.phase, Phase::Checking { .. })
    }

    /// The current run's journal cannot be had (never expected: runs stay open for the
    /// life of the process): what is left of it cannot be replayed.
    pub fn run_lost(&mut self, why: &str, now: u64) {
        let (run, next, checking) = match self.phase {
            Phase::Checking { run, next } => (run, next, true),
            Phase::Replaying { run, next } => (run, next, false),
            Phase::Done => return,
        };
        if let Some(p) = self.runs.get_mut(run) {
            let from = next.max(p.from);
            if checking && from <= p.to {
                p.cannot_range(from, p.to, Reason::Unreadable, Some(why.to_string()));
            }
            p.to = from.saturating_sub(1);
        }
        self.phase = if checking {
            Phase::Checking {
                run: run + 1,
                next: 0,
            }
        } else {
            Phase::Replaying {
                run: run + 1,
                next: 0,
            }
        };
        self.settle(now);
    }

    /// One step of the check of the current run in `journal` (at most
    /// [`CHECK_PER_STEP`] seqs). Returns true when the check of every run is done.
    pub fn check_step(&mut self, journal: &mut Journal, now: u64) -> bool {
        let Phase::Checking { run, next } = self.phase else {
            return !self.is_checking();
        };
        let floor = journal.floor();
        let p = &mut self.runs[run];
        let end = p.to.min(next.saturating_add(CHECK_PER_STEP - 1));
        for seq in next..=end {
            match journal.read(seq) {
                Ok(Some(rec)) => match delivery_of(&rec, Flags::POSSIBLE_DUPLICATE) {
                    Ok(_) => {}
                    Err(NotDeliverable::DigestOnly { src_ip, src_port }) => {
                        let src = SocketAddrV4::new(Ipv4Addr::from(src_ip), src_port);
                        p.cannot(seq, Reason::DigestOnly, Some(src), None)
                    }
                    Err(NotDeliverable::TcpSegment { src_ip, src_port }) => {
                        let src = SocketAddrV4::new(Ipv4Addr::from(src_ip), src_port);
                        p.cannot(seq, Reason::TcpSegment, Some(src), None)
                    }
                    Err(NotDeliverable::NotBackup) => p.cannot(
                        seq,
                        Reason::Unreadable,
                        None,
                        Some("the record is not a backup frame".into()),
                    ),
                    Err(NotDeliverable::Encrypted) => p.cannot(
                        seq,
                        Reason::Unreadable,
                        None,
                        Some("journaled encrypted (journal_ciphertext)".into()),
                    ),
                },
                Ok(None) if seq < floor => p.cannot(seq, Reason::Trimmed, None, None),
                Ok(None) => p.cannot(seq, Reason::NotReceived, None, None),
                Err(e) => p.cannot(seq, Reason::Unreadable, None, Some(e.to_string())),
            }
        }
        let to = p.to;
        self.phase = if end < to {
            Phase::Checking { run, next: end + 1 }
        } else {
            Phase::Checking {
                run: run + 1,
                next: 0,
            }
        };
        self.settle(now);
        !self.is_checking()
    }

    /// One step of the replay of the current run in `journal` at `now`: as many seqs
    /// as the pacer allows (at most `max_sent` and [`LOOKUPS_PER_STEP`] lookups), in
    /// order, each replayable one handed to `send` flagged POSSIBLE_DUPLICATE. What the
    /// check listed is skipped. Returns how many were sent.
    pub fn replay_step(
        &mut self,
        journal: &mut Journal,
        now: u64,
        max_sent: usize,
        mut send: impl FnMut(&Delivery<'_>) -> Offer,
    ) -> u64 {
        let Phase::Replaying { run, mut next } = self.phase else {
            return 0;
        };
        let allowed = self.pacer.allowance(now).min(max_sent as u64);
        let p = &mut self.runs[run];
        let (mut sent, mut lookups) = (0u64, 0u64);
        let (mut blocked, mut run_done) = (false, false);
        while sent < allowed && lookups < LOOKUPS_PER_STEP {
            if next > p.to {
                run_done = true;
                break;
            }
            lookups += 1;
            if let Ok(Some(rec)) = journal.read(next) {
                if let Ok(d) = delivery_of(&rec, Flags::POSSIBLE_DUPLICATE) {
                    match send(&d) {
                        Offer::Taken => {
                            sent += 1;
                            p.replayed += 1;
                            p.first.get_or_insert(next);
                            p.last = Some(next);
                        }
                        Offer::NoRoom => {
                            blocked = true;
                            break;
                        }
                        Offer::TooLarge => p.cannot(next, Reason::TooLarge, None, None),
                    }
                }
            } else if !p.listed(next) {
                // Replayable at the check, gone now: trimmed since, by a
                // confirmation that covered it (so delivered).
                self.gone_since_check += 1;
            }
            match next.checked_add(1) {
                Some(n) => next = n,
                None => {
                    run_done = true;
                    break;
                }
            }
        }
        run_done |= next > p.to;
        if blocked {
            self.waits += 1;
        }
        self.pacer.sent(sent);
        self.phase = if run_done {
            Phase::Replaying {
                run: run + 1,
                next: 0,
            }
        } else {
            Phase::Replaying { run, next }
        };
        self.settle(now);
        sent
    }

    /// Replayed so far, all runs.
    pub fn replayed(&self) -> u64 {
        self.runs.iter().map(|p| p.replayed).sum()
    }

    /// Seqs that cannot be replayed, all runs.
    pub fn unreplayable(&self) -> u64 {
        self.runs.iter().map(|p| p.unreplayable_seqs).sum()
    }

    /// Seqs to replay in all, as the check left them.
    pub fn planned(&self) -> u64 {
        self.runs
            .iter()
            .map(|p| p.seqs().saturating_sub(p.unreplayable_seqs))
            .sum()
    }

    pub fn state(&self) -> &'static str {
        match (self.phase, self.interrupted) {
            (_, true) => "interrupted",
            (Phase::Checking { .. }, _) => "checking",
            (Phase::Replaying { .. }, _) => "replaying",
            (Phase::Done, _) => "done",
        }
    }

    /// The log line after the check: what will be replayed, what cannot be.
    pub fn plan_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.runs {
            let mut l = format!(
                "TAKEOVER ({}): run {}: delivered through {}; ",
                self.trigger.name(),
                p.run,
                p.delivered.map_or("unknown".into(), |d| d.to_string())
            );
            if p.seqs() == 0 {
                l.push_str("nothing above it to replay");
            } else {
                let _ = write!(
                    l,
                    "replaying seqs {}..{} ({} of {}) to {} at {}/s",
                    p.from,
                    p.to,
                    p.seqs() - p.unreplayable_seqs,
                    p.seqs(),
                    self.replay_to,
                    self.rate_per_s
                );
                if p.unreplayable_seqs > 0 {
                    let _ = write!(
                        l,
                        "; CANNOT replay {} seq(s): {}",
                        p.unreplayable_seqs,
                        p.describe_unreplayable()
                    );
                }
            }
            out.push(l);
        }
        for (run, why) in &self.not_opened {
            out.push(format!(
                "TAKEOVER ({}): run {run} could not be opened, none of its seqs can be replayed: {why}",
                self.trigger.name()
            ));
        }
        out
    }

    /// The report: what was (and is being) replayed, and what could not be.
    pub fn report(&self) -> serde_json::Value {
        let ms = |a: Option<u64>, b: u64| a.map(|a| a.saturating_sub(b) as f64 / 1e6);
        serde_json::json!({
            "trigger": self.trigger.name(),
            "state": self.state(),
            "started_ns": self.started_ns,
            "checked_ns": self.checked_ns,
            "finished_ns": self.finished_ns,
            "check_ms": ms(self.checked_ns, self.started_ns),
            "replay_ms": self.checked_ns.and_then(|c| ms(self.finished_ns, c)),
            "replay_to": self.replay_to.to_string(),
            "rate_per_s": self.rate_per_s,
            "replayed": self.replayed(),
            "planned": self.planned(),
            "unreplayable_seqs": self.unreplayable(),
            "runs": self.runs.iter().map(RunPlan::json).collect::<Vec<_>>(),
            "runs_not_opened": self.not_opened.iter().map(|(r, why)| serde_json::json!({
                "stream": r.stream, "epoch": r.epoch, "error": why,
            })).collect::<Vec<_>>(),
            "waits": self.waits,
            "gone_since_check": self.gone_since_check,
        })
    }
}
