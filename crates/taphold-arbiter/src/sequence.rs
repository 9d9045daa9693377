//! One (stream, epoch): its delivered-through seq, its reorder window, its gaps.
//!
//! The window covers the seqs `delivered + 1 ..= delivered + window`; seq `s` lives in slot
//! `s % window`, so each seq of the window has a slot of its own and a slot is reused for
//! `s + window` the moment `s` is delivered (or skipped). A slot is:
//!
//! - `Empty`: the seq is above the highest seen, nothing is known of it;
//! - `Missing`: a higher seq has been seen, this one not: it is part of a gap, and the slot
//!   keeps when that was noticed and how often it was asked for;
//! - `Held`: its first copy waits (header fields and payload copied into the slot's
//!   preallocated buffer) for the seqs before it.
//!
//! The head (`delivered + 1`) is never `Held` after a call returns: a held head is delivered
//! at once, with every held seq after it. So "a gap" is exactly "the head is `Missing`".

use taphold_wire::delivery::DeliveryRepr;
use taphold_wire::taphold::{Flags, ResendRepr};

use crate::counters::{Counters, InputCounters};
use crate::{Delivery, Event, InputId, OnGap, Outbox, Rules, TransmitKind, Verdict};

/// How many skipped ranges an epoch remembers to recognise a late copy of a skipped seq
/// (`late_after_skip`); beyond that such a copy counts as a duplicate. Preallocated.
pub(crate) const SKIPPED_RANGES_KEPT: usize = 64;
/// Most resend requests one epoch emits per tick; the rest wait for the next tick.
pub(crate) const MAX_REQUESTS_PER_TICK: usize = 32;
/// With `on_gap: wait`, a gap whose tries are used up is asked for (and reported) every
/// `resend_interval × WAIT_SLOWDOWN`.
pub const WAIT_SLOWDOWN: u64 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    Missing,
    Held,
}

/// One seq of the window. Plain data, overwritten in place: no allocation per message.
#[derive(Debug, Clone, Copy)]
struct Slot {
    state: State,
    // Held: the first copy's header fields; its payload is in `Sequence::payloads`.
    input: InputId,
    flags: Flags,
    src_ip: [u8; 4],
    src_port: u16,
    release_ns: u64,
    len: usize,
    // Missing: when the gap was noticed, how often asked, when last.
    since_ns: u64,
    asks: u32,
    last_ask_ns: u64,
}

impl Slot {
    const EMPTY: Slot = Slot {
        state: State::Empty,
        input: InputId(0),
        flags: Flags::EMPTY,
        src_ip: [0; 4],
        src_port: 0,
        release_ns: 0,
        len: 0,
        since_ns: 0,
        asks: 0,
        last_ask_ns: 0,
    };

    fn missing(since_ns: u64) -> Slot {
        Slot {
            state: State::Missing,
            since_ns,
            ..Slot::EMPTY
        }
    }
}

/// What a missing seq waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// A resend request (first, retry, or a slow one under `on_gap: wait`).
    Ask,
    /// Its tries are used up and `on_gap: skip` will skip it once it is the head.
    Skip,
}

/// The arbiter's state for one (stream, epoch).
pub(crate) struct Sequence {
    /// Whether this slot of the epoch table holds an epoch.
    pub active: bool,
    pub epoch: u64,
    /// Every seq ≤ this has been delivered or skipped.
    pub delivered: u64,
    /// The highest seq seen on any input, refused beyond the window included; ≥ delivered.
    pub highest_seen: u64,
    /// How many seqs ≤ delivered were skipped.
    pub skipped: u64,
    /// (delivered, skipped) as last sent in a target confirmation; `None`: never sent.
    pub confirmed: Option<(u64, u64)>,
    /// When the gaps of this epoch next need looking at (`u64::MAX`: no gap).
    pub gap_check_ns: u64,
    /// Seqs held in the window (received, waiting for a gap before them).
    pub held: u64,
    window: u64,
    max_payload: usize,
    slots: Box<[Slot]>,
    payloads: Box<[u8]>,
    skipped_ranges: Vec<(u64, u64)>,
}

impl Sequence {
    /// An inactive table entry with its window allocated once, for good.
    pub fn new(window: u32, max_payload: usize) -> Sequence {
        Sequence {
            active: false,
            epoch: 0,
            delivered: 0,
            highest_seen: 0,
            skipped: 0,
            confirmed: None,
            gap_check_ns: u64::MAX,
            held: 0,
            window: u64::from(window),
            max_payload,
            slots: vec![Slot::EMPTY; window as usize].into_boxed_slice(),
            payloads: vec![0u8; window as usize * max_payload].into_boxed_slice(),
            skipped_ranges: Vec::with_capacity(SKIPPED_RANGES_KEPT),
        }
    }

    /// Takes this entry for `epoch`, resuming after `delivered` (0 for a new epoch).
    pub fn open(&mut self, epoch: u64, delivered: u64, skipped: u64) {
        self.active = true;
        self.epoch = epoch;
        self.delivered = delivered;
        self.highest_seen = delivered;
        self.skipped = skipped;
        // A new epoch has nothing to confirm yet; a resumed one is confirmed again on the
        // first tick, for a node that missed the last confirmation before the restart.
        self.confirmed = (delivered == 0 && skipped == 0).then_some((0, 0));
        self.gap_check_ns = u64::MAX;
        self.held = 0;
        self.slots.fill(Slot::EMPTY);
        self.skipped_ranges.clear();
    }

    /// Nothing held, nothing known missing, and the last target confirmation said so: the
    /// epoch can be forgotten without losing anything the arbiter knows of.
    pub fn finished(&self) -> bool {
        self.highest_seen == self.delivered
            && self.confirmed == Some((self.delivered, self.skipped))
    }

    /// Whether the target confirmation is behind.
    pub fn advanced(&self) -> bool {
        self.confirmed != Some((self.delivered, self.skipped))
    }

    /// The missing run at the head, if the head is missing: `(first, last)`.
    pub fn head_gap(&self) -> Option<(u64, u64)> {
        let head = self.delivered.checked_add(1)?;
        if self.slot(head).state != State::Missing {
            return None;
        }
        Some((head, self.missing_run_end(head)))
    }

    #[inline]
    fn index(&self, seq: u64) -> usize {
        (seq % self.window) as usize
    }

    #[inline]
    fn slot(&self, seq: u64) -> &Slot {
        &self.slots[self.index(seq)]
    }

    /// The last seq of the window (saturating: seqs near 2^64 simply have a shorter one).
    #[inline]
    fn window_end(&self) -> u64 {
        self.delivered.saturating_add(self.window)
    }

    /// The last seq worth looking at: seen, and inside the window.
    #[inline]
    fn limit(&self) -> u64 {
        self.highest_seen.min(self.window_end())
    }

    /// The last seq of the run of `Missing` slots starting at `first`.
    fn missing_run_end(&self, first: u64) -> u64 {
        let limit = self.limit();
        let mut last = first;
        while last < limit && self.slot(last + 1).state == State::Missing {
            last += 1;
        }
        last
    }

    /// One datagram of this epoch, already checked and of our stream.
    #[allow(clippy::too_many_arguments)]
    pub fn receive<F: FnMut(&Delivery<'_>)>(
        &mut self,
        rules: &Rules,
        input: InputId,
        repr: &DeliveryRepr,
        payload: &[u8],
        now: u64,
        ic: &mut InputCounters,
        c: &mut Counters,
        deliver: &mut F,
    ) -> Verdict {
        let seq = repr.seq;
        let dup = |ic: &mut InputCounters| {
            ic.duplicates += 1;
            if repr.flags.contains(Flags::POSSIBLE_DUPLICATE) {
                ic.duplicates_possible_duplicate += 1;
            }
            if repr.flags.contains(Flags::RETRANSMIT) {
                ic.duplicates_retransmit += 1;
            }
        };
        if seq <= self.delivered {
            if self
                .skipped_ranges
                .iter()
                .any(|&(a, b)| (a..=b).contains(&seq))
            {
                ic.late_after_skip += 1;
                return Verdict::LateAfterSkip;
            }
            dup(ic);
            return Verdict::Duplicate;
        }
        if seq > self.window_end() {
            self.note_seen(rules, seq, now, c);
            ic.beyond_window += 1;
            return Verdict::BeyondWindow;
        }
        let i = self.index(seq);
        match self.slots[i].state {
            State::Held => {
                dup(ic);
                return Verdict::Duplicate;
            }
            State::Missing if self.slots[i].asks > 0 => c.filled_by_resend += 1,
            State::Missing => c.filled_by_reorder += 1,
            State::Empty => {}
        }
        self.note_seen(rules, seq, now, c);
        ic.first_copies += 1;
        if repr.flags.contains(Flags::POSSIBLE_DUPLICATE) {
            ic.first_copies_possible_duplicate += 1;
        }
        if repr.flags.contains(Flags::RETRANSMIT) {
            ic.first_copies_retransmit += 1;
        }
        if seq == self.delivered + 1 {
            // The head: straight from the caller's bytes, no copy.
            deliver(&Delivery {
                stream: repr.stream,
                epoch: self.epoch,
                seq,
                flags: repr.flags,
                input,
                src_ip: repr.src_ip,
                src_port: repr.src_port,
                release_ns: repr.release_ns,
                payload,
            });
            c.delivered += 1;
            self.advance(rules, now);
            let n = 1 + self.drain(rules, repr.stream, now, c, deliver);
            return Verdict::Delivered(n);
        }
        let at = i * self.max_payload;
        self.payloads[at..at + payload.len()].copy_from_slice(payload);
        self.slots[i] = Slot {
            state: State::Held,
            input,
            flags: repr.flags,
            src_ip: repr.src_ip,
            src_port: repr.src_port,
            release_ns: repr.release_ns,
            len: payload.len(),
            ..Slot::EMPTY
        };
        self.held += 1;
        Verdict::Held
    }

    /// `seq` was seen: if it is above everything seen so far, the seqs between are missing
    /// (a new gap); those inside the window are marked so, from `now`.
    fn note_seen(&mut self, rules: &Rules, seq: u64, now: u64, c: &mut Counters) {
        if seq <= self.highest_seen {
            return;
        }
        let from = self.highest_seen + 1;
        if seq > from {
            c.gaps_opened += 1;
            // Saturating: any datagram may claim a seq near 2^64, in every epoch (found by
            // fuzzing: two such epochs overflowed the count).
            c.gap_seqs = c.gap_seqs.saturating_add(seq - from);
            let top = (seq - 1).min(self.window_end());
            if from <= top {
                for s in from..=top {
                    let i = self.index(s);
                    self.slots[i] = Slot::missing(now);
                }
                self.gap_check_ns = self
                    .gap_check_ns
                    .min(now.saturating_add(rules.gap_timeout_ns));
            }
        }
        self.highest_seen = seq;
    }

    /// The head is delivered or skipped: its slot now stands for the seq entering the top of
    /// the window, which is missing if a higher seq was already seen.
    fn advance(&mut self, rules: &Rules, now: u64) {
        let i = self.index(self.delivered + 1);
        self.delivered += 1;
        let top = self.window_end();
        self.slots[i] = if top <= self.highest_seen && top > self.delivered {
            self.gap_check_ns = self
                .gap_check_ns
                .min(now.saturating_add(rules.gap_timeout_ns));
            Slot::missing(now)
        } else {
            Slot::EMPTY
        };
        // A new head that is already missing may already have used up its tries (it was
        // asked along with the seqs before it): look at it on the next tick.
        if self.slot(self.delivered.saturating_add(1)).state == State::Missing {
            self.gap_check_ns = self.gap_check_ns.min(now);
        }
    }

    /// Delivers every held seq at the head, in order. Returns how many.
    fn drain<F: FnMut(&Delivery<'_>)>(
        &mut self,
        rules: &Rules,
        stream: u32,
        now: u64,
        c: &mut Counters,
        deliver: &mut F,
    ) -> u64 {
        let mut n = 0;
        loop {
            let Some(seq) = self.delivered.checked_add(1) else {
                return n;
            };
            let i = self.index(seq);
            let s = self.slots[i];
            if s.state != State::Held {
                return n;
            }
            let at = i * self.max_payload;
            deliver(&Delivery {
                stream,
                epoch: self.epoch,
                seq,
                flags: s.flags,
                input: s.input,
                src_ip: s.src_ip,
                src_port: s.src_port,
                release_ns: s.release_ns,
                payload: &self.payloads[at..at + s.len],
            });
            c.delivered += 1;
            self.held -= 1;
            n += 1;
            self.advance(rules, now);
        }
    }

    /// What a missing slot waits for, and from when.
    fn next_step(rules: &Rules, s: &Slot) -> (u64, Next) {
        let base = if s.asks == 0 {
            s.since_ns.saturating_add(rules.gap_timeout_ns)
        } else {
            s.last_ask_ns.saturating_add(rules.resend_interval_ns)
        };
        if s.asks < rules.resend_tries {
            return (base, Next::Ask);
        }
        match rules.on_gap {
            OnGap::Skip => (base, Next::Skip),
            // The first ask past the tries comes one interval after the last try (and
            // reports the gap exhausted); the later ones at the slow pace.
            OnGap::Wait if s.asks == rules.resend_tries => (base, Next::Ask),
            OnGap::Wait => (
                s.last_ask_ns
                    .saturating_add(rules.resend_interval_ns.saturating_mul(WAIT_SLOWDOWN)),
                Next::Ask,
            ),
        }
    }

    /// The epoch's timers: skip what the policy gives up on, ask for what is due.
    #[allow(clippy::too_many_arguments)]
    pub fn tick<F: FnMut(&Delivery<'_>)>(
        &mut self,
        rules: &Rules,
        stream: u32,
        now: u64,
        out: &mut Outbox,
        events: &mut crate::Events,
        c: &mut Counters,
        deliver: &mut F,
    ) {
        if now < self.gap_check_ns {
            return;
        }
        self.gap_check_ns = u64::MAX;
        if rules.on_gap == OnGap::Skip {
            self.skip_exhausted(rules, stream, now, events, c, deliver);
        }
        let next = self.ask(rules, stream, now, out, events, c);
        self.gap_check_ns = self.gap_check_ns.min(next);
    }

    /// `on_gap: skip`: while the head's run is missing and out of tries, report it, skip
    /// it, and deliver what waited behind it.
    fn skip_exhausted<F: FnMut(&Delivery<'_>)>(
        &mut self,
        rules: &Rules,
        stream: u32,
        now: u64,
        events: &mut crate::Events,
        c: &mut Counters,
        deliver: &mut F,
    ) {
        let exhausted = |s: &Slot| {
            s.state == State::Missing && {
                let (at, next) = Self::next_step(rules, s);
                next == Next::Skip && now >= at
            }
        };
        loop {
            let Some(first) = self.delivered.checked_add(1) else {
                return;
            };
            let head = *self.slot(first);
            if !exhausted(&head) {
                return;
            }
            let limit = self.limit();
            let mut last = first;
            while last < limit && exhausted(self.slot(last + 1)) {
                last += 1;
            }
            c.gaps_exhausted += 1;
            events.push(
                Event::GapExhausted {
                    epoch: self.epoch,
                    first,
                    last,
                    asks: head.asks,
                    since_ns: head.since_ns,
                },
                c,
            );
            for _ in first..=last {
                self.advance(rules, now);
            }
            let n = last - first + 1;
            self.skipped += n;
            c.skipped += n;
            c.skipped_ranges += 1;
            if self.skipped_ranges.len() < SKIPPED_RANGES_KEPT {
                self.skipped_ranges.push((first, last));
            }
            events.push(
                Event::Skipped {
                    epoch: self.epoch,
                    first,
                    last,
                },
                c,
            );
            self.drain(rules, stream, now, c, deliver);
        }
    }

    /// Asks for every missing seq that is due, one resend request per contiguous run (at
    /// most `resend_max_count` seqs each). Returns when to look again.
    fn ask(
        &mut self,
        rules: &Rules,
        stream: u32,
        now: u64,
        out: &mut Outbox,
        events: &mut crate::Events,
        c: &mut Counters,
    ) -> u64 {
        let mut next = u64::MAX;
        let mut run: Option<(u64, u32)> = None;
        let mut requests = 0usize;
        let head = self.delivered.saturating_add(1);
        for seq in head..=self.limit() {
            let i = self.index(seq);
            let s = self.slots[i];
            if s.state != State::Missing {
                self.flush(&mut run, stream, now, out, c);
                continue;
            }
            let (at, step) = Self::next_step(rules, &s);
            if step == Next::Skip || now < at {
                self.flush(&mut run, stream, now, out, c);
                // A run out of tries is skipped from the head only; later ones are looked at
                // when they get there (`advance`).
                if step == Next::Ask || seq == head {
                    next = next.min(at);
                }
                continue;
            }
            let extends = matches!(run, Some((first, count))
                if first + u64::from(count) == seq && count < rules.resend_max_count);
            if !extends {
                // A new request: within this tick's share, and room in the outbox for it
                // and for the one still open. If not, the rest waits for the next tick.
                if requests >= MAX_REQUESTS_PER_TICK || out.free() < 1 + usize::from(run.is_some())
                {
                    next = now;
                    break;
                }
                requests += 1;
                self.flush(&mut run, stream, now, out, c);
                run = Some((seq, 0));
            }
            if let Some((_, count)) = run.as_mut() {
                *count += 1;
            }
            if seq == head && s.asks >= rules.resend_tries {
                let last = self.missing_run_end(head);
                let (epoch, asks, since_ns) = (self.epoch, s.asks, s.since_ns);
                let event = if asks == rules.resend_tries {
                    c.gaps_exhausted += 1;
                    Event::GapExhausted {
                        epoch,
                        first: head,
                        last,
                        asks,
                        since_ns,
                    }
                } else {
                    c.gaps_still_waiting += 1;
                    Event::StillWaiting {
                        epoch,
                        first: head,
                        last,
                        asks,
                        since_ns,
                    }
                };
                events.push(event, c);
            }
            let slot = &mut self.slots[i];
            slot.asks += 1;
            slot.last_ask_ns = now;
            next = next.min(Self::next_step(rules, slot).0);
        }
        self.flush(&mut run, stream, now, out, c);
        next
    }

    /// Emits the open run as a resend request.
    fn flush(
        &self,
        run: &mut Option<(u64, u32)>,
        stream: u32,
        now: u64,
        out: &mut Outbox,
        c: &mut Counters,
    ) {
        if let Some((seq, count)) = run.take() {
            let r = ResendRepr {
                stream,
                epoch: self.epoch,
                seq,
                count,
                timestamp_ns: now,
                delivered: self.delivered,
            };
            if out.push(TransmitKind::Resend, |b, key| r.emit(b, key)) {
                c.resend_requests_sent += 1;
                c.resend_seqs_requested += u64::from(count);
            }
        }
    }
}
