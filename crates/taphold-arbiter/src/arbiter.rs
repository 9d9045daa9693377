//! The arbiter: inputs in, messages out in order, resend requests and target confirmations
//! to send. Pure: no I/O, no clock (every call takes `now` in UNIX nanoseconds), no
//! allocation after [`Arbiter::new`] in steady state.

use std::collections::VecDeque;
use std::fmt;

use serde::Serialize;
use taphold_wire::delivery::{self, DeliveryRepr};
use taphold_wire::digest::DigestKey;
use taphold_wire::taphold::{Flags, TargetConfirmRepr};
use taphold_wire::WireError;

use crate::checkpoint::{Checkpoint, EpochMark};
use crate::counters::{Counters, InputCounters};
use crate::sequence::Sequence;

/// Longest payload a delivery datagram can carry: a UDP/IPv4 datagram's 65 507 bytes less
/// the 40-byte delivery header.
pub const MAX_PAYLOAD_LIMIT: usize = 65_507 - delivery::HEADER_LEN;
/// Largest reorder window, in messages.
pub const MAX_WINDOW: u32 = 1 << 20;
/// Most epochs one arbiter follows at once.
pub const MAX_EPOCHS: usize = 64;
/// Most inputs (A, B, ...).
pub const MAX_INPUTS: usize = 16;
/// Events kept until drained; more are counted in `events_dropped`.
pub const EVENT_QUEUE: usize = 256;
/// Bytes of the largest PDU the arbiter emits (both types are 64).
const PDU_LEN: usize = 64;

/// What to do with a gap that `resend_tries` requests did not fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnGap {
    /// Keep waiting: ask every `resend_interval × WAIT_SLOWDOWN` and report each time.
    /// Order is never broken; delivery of the epoch stops until the gap fills.
    Wait,
    /// Skip the missing seqs (reported, counted, carried in the target confirmation's
    /// `skipped`), and deliver what follows.
    Skip,
}

/// How the arbiter behaves. Times in nanoseconds.
#[derive(Clone, PartialEq, Eq)]
pub struct ArbiterConfig {
    /// The one stream this arbiter takes; others are refused (`wrong_stream`).
    pub stream: u32,
    /// The deployment's digest key: target confirmations and resend requests are keyed.
    pub key: DigestKey,
    /// Reorder window per epoch, in messages: how far ahead of the delivered seq a message
    /// is held. Memory: `window × max_payload × max_epochs` bytes, allocated up front.
    pub window: u32,
    /// Largest payload held (bytes after the delivery header); larger ones are refused.
    pub max_payload: usize,
    /// Epochs followed at once (a restarted appliance's new epoch while the old one's gap
    /// is still being filled needs two).
    pub max_epochs: usize,
    /// How long a missing seq may stay missing before it is asked for.
    pub gap_timeout_ns: u64,
    /// Between two requests for the same seq.
    pub resend_interval_ns: u64,
    /// Requests for a seq before its gap is reported and `on_gap` decides (≥ 1).
    pub resend_tries: u32,
    /// Most seqs in one resend request (≥ 1).
    pub resend_max_count: u32,
    /// What to do once the tries are used up.
    pub on_gap: OnGap,
    /// At most one target confirmation round per interval while delivery advances.
    pub confirm_interval_ns: u64,
    /// A round as soon as no datagram has come for this long after an advance.
    pub confirm_idle_ns: u64,
}

impl fmt::Debug for ArbiterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Everything but the key.
        f.debug_struct("ArbiterConfig")
            .field("stream", &self.stream)
            .field("window", &self.window)
            .field("max_payload", &self.max_payload)
            .field("max_epochs", &self.max_epochs)
            .field("gap_timeout_ns", &self.gap_timeout_ns)
            .field("resend_interval_ns", &self.resend_interval_ns)
            .field("resend_tries", &self.resend_tries)
            .field("resend_max_count", &self.resend_max_count)
            .field("on_gap", &self.on_gap)
            .field("confirm_interval_ns", &self.confirm_interval_ns)
            .field("confirm_idle_ns", &self.confirm_idle_ns)
            .finish()
    }
}

/// The part of the config the per-epoch code reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    pub gap_timeout_ns: u64,
    pub resend_interval_ns: u64,
    pub resend_tries: u32,
    pub resend_max_count: u32,
    pub on_gap: OnGap,
}

/// Why an arbiter could not be built or restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupError {
    /// A config value out of its range: which, and why.
    Config { field: &'static str, why: String },
    /// A checkpoint that does not fit this arbiter.
    Restore(String),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Config { field, why } => write!(f, "{field}: {why}"),
            SetupError::Restore(why) => write!(f, "cannot restore the checkpoint: {why}"),
        }
    }
}

impl std::error::Error for SetupError {}

/// An input, as numbered by [`Arbiter::new`] (the order of the names given). Only the
/// arbiter that made it hands it out ([`Arbiter::input`], [`Arbiter::inputs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct InputId(pub(crate) u8);

impl InputId {
    /// Its index in the names given to [`Arbiter::new`].
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// One message handed to the application: the first copy of its (stream, epoch, seq).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery<'a> {
    pub stream: u32,
    pub epoch: u64,
    pub seq: u64,
    /// The winning copy's flags (RETRANSMIT if it came by resend, POSSIBLE_DUPLICATE if a
    /// backup node replayed it after a takeover, UNPROTECTED if released in pass-through).
    pub flags: Flags,
    /// The input whose copy won.
    pub input: InputId,
    pub src_ip: [u8; 4],
    pub src_port: u16,
    pub release_ns: u64,
    pub payload: &'a [u8],
}

impl Delivery<'_> {
    /// The delivery header of the winning copy, to forward it as it came.
    pub fn header(&self) -> DeliveryRepr {
        DeliveryRepr {
            flags: self.flags,
            stream: self.stream,
            epoch: self.epoch,
            seq: self.seq,
            src_ip: self.src_ip,
            src_port: self.src_port,
            release_ns: self.release_ns,
        }
    }
}

/// What became of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It was the next seq: delivered, with this many in all (it and those held behind it).
    Delivered(u64),
    /// Held in the window until the seqs before it come.
    Held,
    /// A later copy of a seq held or delivered: dropped (first copy wins).
    Duplicate,
    /// A copy of a seq already skipped by `on_gap: skip`.
    LateAfterSkip,
    /// Too far ahead of the delivered seq; it will be asked for again once the window moves.
    BeyondWindow,
    /// Refused before it reached its epoch.
    Refused(Refusal),
}

/// Why a datagram was refused before reaching its epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a valid delivery header.
    Malformed(WireError),
    /// Seq 0 (seqs start at 1).
    SeqZero,
    /// Another stream.
    WrongStream,
    /// Payload above `max_payload`.
    TooLarge,
    /// An epoch at or below the floor (older than one finished and forgotten).
    StaleEpoch,
    /// A new epoch with every epoch slot busy.
    EpochsFull,
}

/// Something to report by name (log it, keep it in a summary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A new epoch, expecting `first_expected` next.
    EpochOpened { epoch: u64, first_expected: u64 },
    /// A finished epoch forgotten to make room; the floor is now `epoch`.
    EpochForgotten { epoch: u64, delivered: u64 },
    /// The gap at the head of `epoch`, seqs `first..=last`, is still missing after
    /// `asks` requests.
    GapExhausted {
        epoch: u64,
        first: u64,
        last: u64,
        asks: u32,
        since_ns: u64,
    },
    /// `on_gap: skip` skipped `first..=last` of `epoch`: never delivered.
    Skipped { epoch: u64, first: u64, last: u64 },
    /// `on_gap: wait`: the gap is still there, asked again.
    StillWaiting {
        epoch: u64,
        first: u64,
        last: u64,
        asks: u32,
        since_ns: u64,
    },
}

/// A bounded event queue (preallocated).
pub(crate) struct Events(VecDeque<Event>);

impl Events {
    pub fn push(&mut self, e: Event, c: &mut Counters) {
        if self.0.len() < EVENT_QUEUE {
            self.0.push_back(e);
        } else {
            c.events_dropped += 1;
        }
    }
}

/// Where an emitted PDU goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum TransmitKind {
    /// A resend request: to every backup node, from the socket whose input should receive
    /// the answers.
    Resend,
    /// A target confirmation: to the appliance and every backup node.
    TargetConfirm,
}

/// PDUs waiting to be sent, in fixed preallocated slots.
pub(crate) struct Outbox {
    key: DigestKey,
    pdus: Vec<(TransmitKind, [u8; PDU_LEN], usize)>,
    cap: usize,
}

impl Outbox {
    pub fn free(&self) -> usize {
        self.cap - self.pdus.len()
    }

    /// Emits one PDU through `emit`; false if full (or if `emit` refuses).
    pub fn push(
        &mut self,
        kind: TransmitKind,
        emit: impl FnOnce(&mut [u8], &DigestKey) -> Result<u64, WireError>,
    ) -> bool {
        if self.pdus.len() >= self.cap {
            return false;
        }
        let mut buf = [0u8; PDU_LEN];
        if emit(&mut buf, &self.key).is_err() {
            return false;
        }
        self.pdus.push((kind, buf, PDU_LEN));
        true
    }
}

/// The state of one epoch, for a summary or a health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EpochStatus {
    pub epoch: u64,
    /// Every seq ≤ this was delivered or skipped.
    pub delivered_through: u64,
    pub highest_seen: u64,
    /// Seqs ≤ delivered_through skipped.
    pub skipped: u64,
    /// Messages received and waiting behind a gap.
    pub held: u64,
    /// The missing run at the head, if any: `[first, last]`.
    pub gap: Option<(u64, u64)>,
}

/// The destination's arbiter for one stream. See the crate docs for the semantics.
pub struct Arbiter {
    stream: u32,
    rules: Rules,
    window: u32,
    max_payload: usize,
    confirm_interval_ns: u64,
    confirm_idle_ns: u64,
    names: Vec<String>,
    inputs: Vec<InputCounters>,
    seqs: Vec<Sequence>,
    /// The epoch entry the last datagram went to: most datagrams go to the same one.
    last: usize,
    /// Epochs at or below this were finished and forgotten (unless still active).
    floor: u64,
    counters: Counters,
    last_input_ns: u64,
    last_confirm_ns: Option<u64>,
    out: Outbox,
    events: Events,
}

impl fmt::Debug for Arbiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The state, not the window's bytes (nor the key).
        f.debug_struct("Arbiter")
            .field("stream", &self.stream)
            .field("inputs", &self.names)
            .field("floor", &self.floor)
            .field("epochs", &self.epochs())
            .field("counters", &self.counters)
            .finish()
    }
}

impl Arbiter {
    /// An arbiter for `config`, with one input per name (A first: the appliance; then B...).
    /// Allocates everything it will ever use: `max_epochs` windows of `window` slots of
    /// `max_payload` bytes.
    pub fn new(config: ArbiterConfig, inputs: &[&str]) -> Result<Arbiter, SetupError> {
        let bad = |field, why: String| Err(SetupError::Config { field, why });
        if config.window == 0 || config.window > MAX_WINDOW {
            return bad(
                "window",
                format!("{} is not in 1..={MAX_WINDOW}", config.window),
            );
        }
        if config.max_payload == 0 || config.max_payload > MAX_PAYLOAD_LIMIT {
            return bad(
                "max_payload",
                format!("{} is not in 1..={MAX_PAYLOAD_LIMIT}", config.max_payload),
            );
        }
        if config.max_epochs == 0 || config.max_epochs > MAX_EPOCHS {
            return bad(
                "max_epochs",
                format!("{} is not in 1..={MAX_EPOCHS}", config.max_epochs),
            );
        }
        if config.resend_tries == 0 {
            return bad("resend_tries", "must be at least 1".into());
        }
        if config.resend_max_count == 0 {
            return bad("resend_max_count", "must be at least 1".into());
        }
        for (field, v) in [
            ("gap_timeout", config.gap_timeout_ns),
            ("resend_interval", config.resend_interval_ns),
            ("confirm_interval", config.confirm_interval_ns),
            ("confirm_idle", config.confirm_idle_ns),
        ] {
            if v == 0 {
                return bad(field, "must be more than 0".into());
            }
        }
        if inputs.is_empty() || inputs.len() > MAX_INPUTS {
            return bad(
                "inputs",
                format!("{} inputs: want 1..={MAX_INPUTS}", inputs.len()),
            );
        }
        for (i, n) in inputs.iter().enumerate() {
            if inputs[..i].contains(n) {
                return bad("inputs", format!("input `{n}` is named twice"));
            }
        }
        let out_cap = config.max_epochs * (crate::sequence::MAX_REQUESTS_PER_TICK + 1);
        Ok(Arbiter {
            stream: config.stream,
            rules: Rules {
                gap_timeout_ns: config.gap_timeout_ns,
                resend_interval_ns: config.resend_interval_ns,
                resend_tries: config.resend_tries,
                resend_max_count: config.resend_max_count,
                on_gap: config.on_gap,
            },
            window: config.window,
            max_payload: config.max_payload,
            confirm_interval_ns: config.confirm_interval_ns,
            confirm_idle_ns: config.confirm_idle_ns,
            names: inputs.iter().map(|s| s.to_string()).collect(),
            inputs: vec![InputCounters::default(); inputs.len()],
            seqs: (0..config.max_epochs)
                .map(|_| Sequence::new(config.window, config.max_payload))
                .collect(),
            last: 0,
            floor: 0,
            counters: Counters::default(),
            last_input_ns: 0,
            last_confirm_ns: None,
            out: Outbox {
                key: config.key,
                pdus: Vec::with_capacity(out_cap),
                cap: out_cap,
            },
            events: Events(VecDeque::with_capacity(EVENT_QUEUE)),
        })
    }

    /// Resumes from a checkpoint (the state file, or the application's own copy): each
    /// epoch in it expects `delivered + 1` next. Only on a fresh arbiter.
    pub fn restore(&mut self, cp: &Checkpoint) -> Result<(), SetupError> {
        let err = |why: String| Err(SetupError::Restore(why));
        if cp.stream != self.stream {
            return err(format!(
                "it is stream {}'s, this arbiter takes stream {}",
                cp.stream, self.stream
            ));
        }
        if self.seqs.iter().any(|s| s.active) {
            return err("the arbiter has already taken datagrams".into());
        }
        if cp.epochs.len() > self.seqs.len() {
            return err(format!(
                "{} epochs, max_epochs is {}",
                cp.epochs.len(),
                self.seqs.len()
            ));
        }
        for (i, m) in cp.epochs.iter().enumerate() {
            if cp.epochs[..i].iter().any(|o| o.epoch == m.epoch) {
                return err(format!("epoch {} is in it twice", m.epoch));
            }
            if m.skipped > m.delivered {
                return err(format!(
                    "epoch {}: skipped {} > delivered {}",
                    m.epoch, m.skipped, m.delivered
                ));
            }
            // Found with the arbiter_state fuzz target: the next seq expected, delivered + 1, overflowed.
            if m.delivered == u64::MAX {
                return err(format!(
                    "epoch {}: delivered {}: no seq is left to expect next",
                    m.epoch, m.delivered
                ));
            }
        }
        self.floor = cp.floor;
        for (s, m) in self.seqs.iter_mut().zip(&cp.epochs) {
            s.open(m.epoch, m.delivered, m.skipped);
            self.counters.epochs_opened += 1;
            self.events.push(
                Event::EpochOpened {
                    epoch: m.epoch,
                    first_expected: m.delivered + 1,
                },
                &mut self.counters,
            );
        }
        Ok(())
    }

    /// The inputs, in the order named.
    pub fn inputs(&self) -> impl Iterator<Item = (InputId, &str)> {
        self.names
            .iter()
            .enumerate()
            .map(|(i, n)| (InputId(i as u8), n.as_str()))
    }

    /// The input called `name`.
    pub fn input(&self, name: &str) -> Option<InputId> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| InputId(i as u8))
    }

    /// One UDP payload from `input`, at `now`. Every message it makes deliverable (it, and
    /// any held behind it) goes to `deliver`, in order, before this returns.
    pub fn on_datagram<F: FnMut(&Delivery<'_>)>(
        &mut self,
        input: InputId,
        bytes: &[u8],
        now: u64,
        deliver: &mut F,
    ) -> Verdict {
        let ic = &mut self.inputs[input.index()];
        ic.received += 1;
        self.last_input_ns = now;
        let packet = match delivery::Packet::new_checked(bytes) {
            Ok(p) => p,
            Err(e) => {
                ic.malformed.count(e);
                return Verdict::Refused(Refusal::Malformed(e));
            }
        };
        let repr = match DeliveryRepr::parse(&packet) {
            Ok(r) => r,
            Err(e) => {
                ic.malformed.count(e);
                return Verdict::Refused(Refusal::Malformed(e));
            }
        };
        if repr.stream != self.stream {
            ic.wrong_stream += 1;
            return Verdict::Refused(Refusal::WrongStream);
        }
        if repr.seq == 0 {
            ic.malformed.seq_zero += 1;
            return Verdict::Refused(Refusal::SeqZero);
        }
        let payload = packet.payload();
        if payload.len() > self.max_payload {
            ic.too_large += 1;
            return Verdict::Refused(Refusal::TooLarge);
        }
        let at = match self.sequence_of(repr.epoch) {
            Ok(at) => at,
            Err(r) => {
                let ic = &mut self.inputs[input.index()];
                match r {
                    Refusal::StaleEpoch => ic.stale_epoch += 1,
                    _ => ic.epochs_full += 1,
                }
                return Verdict::Refused(r);
            }
        };
        self.seqs[at].receive(
            &self.rules,
            input,
            &repr,
            payload,
            now,
            &mut self.inputs[input.index()],
            &mut self.counters,
            deliver,
        )
    }

    /// The table entry of `epoch`, opening one for a new epoch.
    fn sequence_of(&mut self, epoch: u64) -> Result<usize, Refusal> {
        let s = &self.seqs[self.last];
        if s.active && s.epoch == epoch {
            return Ok(self.last);
        }
        if let Some(i) = self.seqs.iter().position(|s| s.active && s.epoch == epoch) {
            self.last = i;
            return Ok(i);
        }
        if epoch <= self.floor {
            return Err(Refusal::StaleEpoch);
        }
        let free = match self.seqs.iter().position(|s| !s.active) {
            Some(i) => i,
            None => {
                // Forget the oldest finished epoch below this one; the floor rises to it so
                // that a late copy of its seqs is refused, never delivered twice.
                let i = self
                    .seqs
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.epoch < epoch && s.finished())
                    .min_by_key(|(_, s)| s.epoch)
                    .map(|(i, _)| i)
                    .ok_or(Refusal::EpochsFull)?;
                let s = &mut self.seqs[i];
                s.active = false;
                self.floor = self.floor.max(s.epoch);
                self.counters.epochs_forgotten += 1;
                let e = Event::EpochForgotten {
                    epoch: s.epoch,
                    delivered: s.delivered,
                };
                self.events.push(e, &mut self.counters);
                i
            }
        };
        self.seqs[free].open(epoch, 0, 0);
        self.counters.epochs_opened += 1;
        self.events.push(
            Event::EpochOpened {
                epoch,
                first_expected: 1,
            },
            &mut self.counters,
        );
        self.last = free;
        Ok(free)
    }

    /// The timers, at `now`: resend requests that are due, gaps the policy gives up on
    /// (skipped seqs let what waited behind them through to `deliver`), and target
    /// confirmations. Cheap when nothing is due; call it after each batch of datagrams
    /// and whenever [`Arbiter::next_deadline`] passes.
    pub fn on_tick<F: FnMut(&Delivery<'_>)>(&mut self, now: u64, deliver: &mut F) {
        for s in self.seqs.iter_mut().filter(|s| s.active) {
            s.tick(
                &self.rules,
                self.stream,
                now,
                &mut self.out,
                &mut self.events,
                &mut self.counters,
                deliver,
            );
        }
        if self.confirm_due(now) {
            self.confirm(now, false);
        }
    }

    /// Whether a target confirmation round is due: delivery advanced since the last one,
    /// and either the interval has passed or the inputs have been idle long enough.
    fn confirm_due(&self, now: u64) -> bool {
        self.confirm_deadline().is_some_and(|at| now >= at)
    }

    fn confirm_deadline(&self) -> Option<u64> {
        if !self.seqs.iter().any(|s| s.active && s.advanced()) {
            return None;
        }
        let interval = self
            .last_confirm_ns
            .map_or(0, |t| t.saturating_add(self.confirm_interval_ns));
        let idle = self.last_input_ns.saturating_add(self.confirm_idle_ns);
        Some(interval.min(idle))
    }

    /// Emits a target confirmation for each epoch that advanced (`all`: for every epoch,
    /// as at shutdown). Returns how many.
    fn confirm(&mut self, now: u64, all: bool) -> usize {
        let mut n = 0;
        for s in self.seqs.iter_mut().filter(|s| s.active) {
            if !(all || s.advanced()) {
                continue;
            }
            let r = TargetConfirmRepr {
                stream: self.stream,
                epoch: s.epoch,
                seq: s.delivered,
                timestamp_ns: now,
                highest_seen: s.highest_seen,
                skipped: s.skipped,
            };
            if self
                .out
                .push(TransmitKind::TargetConfirm, |b, k| r.emit(b, k))
            {
                s.confirmed = Some((s.delivered, s.skipped));
                self.counters.target_confirms_sent += 1;
                n += 1;
            }
        }
        self.last_confirm_ns = Some(now);
        n
    }

    /// A target confirmation for every epoch now, advanced or not (shutdown, or an
    /// application that confirms on its own schedule). Returns how many were emitted.
    pub fn confirm_all(&mut self, now: u64) -> usize {
        self.confirm(now, true)
    }

    /// When [`Arbiter::on_tick`] next has something to do (`None`: nothing pending).
    pub fn next_deadline(&self) -> Option<u64> {
        let gaps = self
            .seqs
            .iter()
            .filter(|s| s.active)
            .map(|s| s.gap_check_ns)
            .min()
            .filter(|&t| t != u64::MAX);
        match (gaps, self.confirm_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How many target confirmations wait in the outbox. When any do, persist
    /// [`Arbiter::checkpoint`] *before* sending them: a node trims its journal below a
    /// confirmation, so it must never be ahead of what a restarted arbiter resumes from.
    pub fn pending_confirms(&self) -> usize {
        self.out
            .pdus
            .iter()
            .filter(|p| p.0 == TransmitKind::TargetConfirm)
            .count()
    }

    /// Hands every PDU waiting to `send` (in the order emitted) and empties the outbox.
    pub fn drain_transmits(&mut self, mut send: impl FnMut(TransmitKind, &[u8])) {
        for (kind, buf, len) in &self.out.pdus {
            send(*kind, &buf[..*len]);
        }
        self.out.pdus.clear();
    }

    /// The next event to report, oldest first.
    pub fn next_event(&mut self) -> Option<Event> {
        self.events.0.pop_front()
    }

    /// What to persist: each epoch's delivered-through and skipped, and the floor.
    pub fn checkpoint(&self) -> Checkpoint {
        let mut epochs: Vec<EpochMark> = self
            .seqs
            .iter()
            .filter(|s| s.active)
            .map(|s| EpochMark {
                epoch: s.epoch,
                delivered: s.delivered,
                skipped: s.skipped,
            })
            .collect();
        epochs.sort_by_key(|m| m.epoch);
        Checkpoint {
            stream: self.stream,
            floor: self.floor,
            epochs,
        }
    }

    /// Each active epoch's state, oldest epoch first.
    pub fn epochs(&self) -> Vec<EpochStatus> {
        let mut v: Vec<EpochStatus> = self
            .seqs
            .iter()
            .filter(|s| s.active)
            .map(|s| EpochStatus {
                epoch: s.epoch,
                delivered_through: s.delivered,
                highest_seen: s.highest_seen,
                skipped: s.skipped,
                held: s.held,
                gap: s.head_gap(),
            })
            .collect();
        v.sort_by_key(|e| e.epoch);
        v
    }

    /// The arbiter's counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// One input's counters.
    pub fn input_counters(&self, input: InputId) -> &InputCounters {
        &self.inputs[input.index()]
    }

    /// Epochs at or below this are refused as stale (unless still followed).
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// The stream taken.
    pub fn stream(&self) -> u32 {
        self.stream
    }

    /// The reorder window, in messages.
    pub fn window(&self) -> u32 {
        self.window
    }
}
