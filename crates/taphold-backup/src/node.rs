//! The backup node's poll loop, on the main lcore (`-l 0` is enough).
//!
//! One loop, one port, one rx and one tx queue. Per burst of up to 32 frames:
//!
//! 1. each frame is a backup frame (journaled), a heartbeat from the appliance
//!    (remembered, and answered with a heartbeat of ours after the burst), or refused
//!    with one named reason and freed — never journaled;
//! 2. the journal's fsync policy runs; if the contiguous *synced* seq advanced, one
//!    cumulative ack goes out — so an ack never claims a record that is not on disk;
//! 3. a heartbeat goes out if one is due or the appliance's needs an answer.
//!
//! Every `trim_interval_ms` the journal is trimmed below the released watermark; every
//! `stats_interval_ms` a stats line is printed. Neither is per burst.
//!
//! Step 1 is [`Intake`]: the checks, the run, the watermark and the counters, with no
//! DPDK in it, so that plain tests can feed it any frame. [`Node`] is the rest: the
//! port, the pool, the clock, and the frames we send.
//!
//! Records are kept per run of the appliance, (stream, epoch): the appliance takes a
//! new, larger epoch on every start and numbers from 1 again, so the node journals
//! into the run the frames name. The first authentic frame of a larger epoch (a
//! heartbeat, usually) seals the current run and opens the new one; a frame of a
//! smaller epoch (an earlier run's, replayed or delayed) is refused and counted. Acks
//! and our heartbeats carry the epoch of the run they speak for, and the appliance
//! counts nothing else.
//!
//! No heap allocation per frame: bursts are inline arrays, frames we send are built in a
//! stack buffer and copied into an mbuf from the pool, parsing borrows the mbuf. Journal
//! writes and fdatasync *are* syscalls on this path, by design: this is the backup node,
//! whose job is to be durable, not the appliance's hot path (and an ack is health, not
//! a release gate). The allocation counter (`alloc_count`) proves the no-allocation part
//! in the tests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dpdk::{Burst, Clock, Eal, Mbuf, Mempool, Port, PortConfig};
use serde::Serialize;
use taphold_journal::{Appended, Journal, Recovery, Refused, RunId};
use taphold_wire::digest::DigestKey;
use taphold_wire::ethernet::EthernetAddress;
use taphold_wire::link::{self, NotOurs};
use taphold_wire::taphold::{AckRepr, BackupRepr, HeartbeatRepr, MsgType, Packet, ALL_LINKS};
use taphold_wire::WireError;

use crate::config::{Config, IdlePolicy};
use taphold_runtime::alloc_count;
use taphold_runtime::idle::Idler;

pub const BURST: usize = 32;

/// Why a received frame was not used. Each is a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Shorter than an Ethernet header.
    Runt,
    /// Not EtherType 0x88B5.
    NotTaphold,
    /// Ethernet destination is not our MAC.
    NotForUs,
    /// Ethernet source is not the appliance's MAC on this link.
    WrongPeer,
    /// A frame that does not fit one mbuf segment.
    MultiSegment,
    /// Not a valid taphold PDU (`Packet::check`).
    Malformed,
    /// Keyed digest mismatch: corrupted on the way, or not made with our key.
    BadDigest,
    /// Authentic, but of another stream.
    WrongStream,
    /// An authentic heartbeat for another link.
    WrongLink,
    /// An authentic ack or confirmation: nothing the appliance sends us.
    UnexpectedType,
    /// Authentic, but of an epoch older than the run we journal: an earlier run's
    /// frame, replayed or delayed. Journaling it would mix runs.
    StaleEpoch,
}

impl Refusal {
    pub const ALL: [Refusal; 11] = [
        Refusal::Runt,
        Refusal::NotTaphold,
        Refusal::NotForUs,
        Refusal::WrongPeer,
        Refusal::MultiSegment,
        Refusal::Malformed,
        Refusal::BadDigest,
        Refusal::WrongStream,
        Refusal::WrongLink,
        Refusal::UnexpectedType,
        Refusal::StaleEpoch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Refusal::Runt => "runt",
            Refusal::NotTaphold => "not_taphold",
            Refusal::NotForUs => "not_for_us",
            Refusal::WrongPeer => "wrong_peer",
            Refusal::MultiSegment => "multi_segment",
            Refusal::Malformed => "malformed",
            Refusal::BadDigest => "bad_digest",
            Refusal::WrongStream => "wrong_stream",
            Refusal::WrongLink => "wrong_link",
            Refusal::UnexpectedType => "unexpected_type",
            Refusal::StaleEpoch => "stale_epoch",
        }
    }

    fn from_wire(e: WireError) -> Refusal {
        match e {
            WireError::BadDigest => Refusal::BadDigest,
            _ => Refusal::Malformed,
        }
    }
}

/// Counters of the poll loop (one thread: plain integers).
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub rx_frames: u64,
    pub backup_frames: u64,
    pub journaled: u64,
    pub duplicates: u64,
    pub refused: [u64; Refusal::ALL.len()],
    pub acks_sent: u64,
    pub last_ack_seq: u64,
    pub heartbeats_sent: u64,
    pub heartbeats_received: u64,
    /// Frames we built but could not send (pool empty or tx queue full).
    pub tx_dropped: u64,
    pub trims: u64,
    pub segments_trimmed: u64,
    /// Runs opened: one per epoch of the appliance heard.
    pub runs_opened: u64,
    /// Authentic frames whose released watermark was absurd ([`ABSURD_WATERMARK`]
    /// or more): ignored.
    pub watermark_absurd: u64,
}

/// A released watermark at or above this is absurd: at a billion messages a second an
/// epoch would need three centuries to get there. An authentic frame carrying one is
/// an appliance bug; believed, it would cover (ack, and treat as duplicates) every seq.
pub const ABSURD_WATERMARK: u64 = 1 << 63;

impl Counters {
    fn refuse(&mut self, r: Refusal) {
        self.refused[r as usize] += 1;
    }
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().sum()
    }
}

/// The appliance's last heartbeat, echoed in ours.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct PeerHeartbeat {
    pub seq: u64,
    pub timestamp_ns: u64,
}

/// The run being journaled: one epoch of the appliance.
struct Run {
    id: RunId,
    journal: Journal,
    recovery: Recovery,
}

/// What the node does with the frames it receives: the checks, the run being
/// journaled, the appliance's watermark and heartbeat, the counters. No DPDK: the
/// poll loop hands it each frame's bytes, and a plain test can do the same.
pub struct Intake {
    cfg: Config,
    /// None until the appliance's first authentic frame names its epoch.
    run: Option<Run>,
    key: DigestKey,
    mac: EthernetAddress,
    peer_mac: EthernetAddress,
    link: u8,
    stream: u32,
    pub counters: Counters,
    /// Highest released watermark seen in an authentic frame.
    watermark: u64,
    peer_hb: PeerHeartbeat,
    /// The appliance sent a heartbeat in this burst: answer after it.
    answer_heartbeat: bool,
}

pub struct Node {
    // Fields drop in this order: the bursts first, so that mbufs a failed poll left
    // in them go back to the pool before it goes (a pool dropped with mbufs out
    // leaks itself and the EAL, and its runtime directory stays behind).
    rx: Burst<BURST>,
    tx: Burst<BURST>,
    port: Port,
    pool: Mempool,
    clock: Clock,
    intake: Intake,
    heartbeat_period_ns: u64,
    idle: IdlePolicy,
    stats_every: Duration,
    trim_every: Duration,
    next_heartbeat_ns: u64,
    hb_seq: u64,
}

/// Options of a run (from the command line).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunOpts {
    pub exit_when_idle_ms: Option<u64>,
    pub duration_ms: Option<u64>,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Intake {
    pub fn new(cfg: &Config) -> Intake {
        Intake {
            cfg: cfg.clone(),
            run: None,
            key: cfg.digest_key.0,
            mac: cfg.mac.0,
            peer_mac: cfg.peer_mac.0,
            link: cfg.link,
            stream: cfg.stream,
            counters: Counters::default(),
            watermark: 0,
            peer_hb: PeerHeartbeat::default(),
            answer_heartbeat: false,
        }
    }

    fn journal_failed(&self, e: std::io::Error) -> String {
        let dir = match &self.run {
            Some(r) => r.journal.config().dir.clone(),
            None => self.cfg.journal.dir.clone(),
        };
        format!(
            "journal {}: {e} — stopping: nothing more can be journaled or acked",
            dir.display()
        )
    }

    /// Makes `epoch` the run we journal, if it is the appliance's newest: a larger
    /// epoch seals the current run (synced) and opens (or recovers) its own; a smaller
    /// one is an earlier run's frame and is refused.
    fn enter_epoch(&mut self, epoch: u64) -> Result<(), Result<Refusal, String>> {
        match &self.run {
            Some(r) if r.id.epoch == epoch => return Ok(()),
            Some(r) if r.id.epoch > epoch => return Err(Ok(Refusal::StaleEpoch)),
            _ => {}
        }
        // Opening reads the run's segments: once per start of the appliance, not
        // per frame, so its allocations are not the poll loop's.
        alloc_count::set_hot(false);
        let opened = self.open_run(epoch);
        alloc_count::set_hot(true);
        opened.map_err(Err)
    }

    fn open_run(&mut self, epoch: u64) -> Result<(), String> {
        if let Some(mut old) = self.run.take() {
            old.journal.sync().map_err(|e| self.journal_failed(e))?;
            log::info!(
                "run {} sealed at contiguous seq {} ({} records)",
                old.id,
                old.journal.contiguous_seq(),
                old.journal.records_on_disk()
            );
        }
        let id = RunId {
            stream: self.stream,
            epoch,
        };
        let jc = self.cfg.journal_config(id);
        let dir = jc.dir.clone();
        let (journal, recovery) = Journal::open(jc).map_err(|e| match Refused::of(&e) {
            Some(r) => format!(
                "journal {}: refusing to open run {id}: records may be missing or damaged:\n{}\nNothing was changed. `taphold-backup journal inspect {}` shows the run; set journal.open_with_holes: true to open it anyway (what reads is used, what is missing stays missing and is logged) — stopping: nothing can be journaled or acked",
                dir.display(),
                r.problem_lines(),
                self.cfg.journal.dir.display()
            ),
            None => format!(
                "journal {}: {e} — stopping: nothing more can be journaled or acked",
                dir.display()
            ),
        })?;
        log::info!("run {id} ({}): {recovery}", dir.display());
        if let Some(t) = &recovery.tail_cut {
            log::warn!(
                "run {id}: cut {} of {} bytes from {} at byte offset {} ({}); the bytes are in {}",
                if t.torn {
                    "a torn tail"
                } else {
                    "a DAMAGED tail"
                },
                t.bytes,
                t.segment.display(),
                t.offset,
                t.defect,
                t.set_aside.display()
            );
        }
        for p in &recovery.holes_allowed {
            log::warn!("run {id}: opened with holes allowed despite: {p}");
        }
        self.run = Some(Run {
            id,
            journal,
            recovery,
        });
        // Acks and the watermark are the run's own.
        self.counters.last_ack_seq = 0;
        self.watermark = 0;
        self.counters.runs_opened += 1;
        Ok(())
    }

    /// One received frame (Ethernet header on), at `now` (ns). `Err(Ok(reason))`:
    /// refused; `Err(Err(msg))`: the journal failed, or a run could not be opened.
    pub fn handle(&mut self, f: &[u8], now: u64) -> Result<(), Result<Refusal, String>> {
        let buf = link::open_frame(f, self.mac, self.peer_mac).map_err(|e| {
            Ok(match e {
                NotOurs::Runt => Refusal::Runt,
                NotOurs::NotTaphold => Refusal::NotTaphold,
                NotOurs::NotForUs => Refusal::NotForUs,
                NotOurs::WrongPeer => Refusal::WrongPeer,
            })
        })?;
        let p = Packet::new_checked(buf).map_err(|e| Ok(Refusal::from_wire(e)))?;
        match p.msg_type() {
            MsgType::Backup => {
                let b = BackupRepr::parse(&p, &self.key).map_err(|e| Ok(Refusal::from_wire(e)))?;
                if b.stream != self.stream {
                    return Err(Ok(Refusal::WrongStream));
                }
                self.enter_epoch(b.epoch)?;
                self.counters.backup_frames += 1;
                self.note_watermark(b.watermark);
                let pdu = &buf[..p.total_len()];
                let run = self.run.as_mut().expect("enter_epoch opened a run");
                let appended = run.journal.append(b.seq, b.flags.bits(), now, pdu);
                match appended.map_err(|e| Err(self.journal_failed(e)))? {
                    Appended::Journaled => self.counters.journaled += 1,
                    Appended::Duplicate => self.counters.duplicates += 1,
                }
                Ok(())
            }
            MsgType::Heartbeat => {
                let h =
                    HeartbeatRepr::parse(&p, &self.key).map_err(|e| Ok(Refusal::from_wire(e)))?;
                if h.stream != self.stream {
                    return Err(Ok(Refusal::WrongStream));
                }
                if h.link != self.link && h.link != ALL_LINKS {
                    return Err(Ok(Refusal::WrongLink));
                }
                self.enter_epoch(h.epoch)?;
                self.counters.heartbeats_received += 1;
                self.note_watermark(h.watermark);
                self.peer_hb = PeerHeartbeat {
                    seq: h.seq,
                    timestamp_ns: h.timestamp_ns,
                };
                self.answer_heartbeat = true;
                Ok(())
            }
            // Target confirmations and resend requests come on the destination side,
            // never on the backup link.
            MsgType::Ack | MsgType::Confirm | MsgType::TargetConfirm | MsgType::Resend => {
                // Authentic or not, nothing we act on; say which.
                p.verify_digest(&self.key)
                    .map_err(|e| Ok(Refusal::from_wire(e)))?;
                Err(Ok(Refusal::UnexpectedType))
            }
        }
    }

    /// The primary's released watermark, from an authentic backup frame or
    /// heartbeat: kept for trimming, and counted as covered by our acks
    /// (taphold_journal::Journal::note_released).
    fn note_watermark(&mut self, w: u64) {
        if w >= ABSURD_WATERMARK {
            self.counters.watermark_absurd += 1;
            return;
        }
        if w > self.watermark {
            self.watermark = w;
            if let Some(run) = &mut self.run {
                // The journal covers no seq above the highest this run holds, which is
                // the highest seq seen in a backup frame of this run (journaled now or
                // before a restart): a standby that has seen nothing covers nothing.
                // Safe because the appliance releases only what it launched, so its
                // released watermark is always below a seq it launched: frames above
                // what we hold are still on their way, and each one raises the cover
                // as it is journaled. Stopping short under-acks for a while; it never
                // acks, or takes for a duplicate, a seq nobody has seen.
                run.journal.note_released(w);
            }
        }
    }
}

impl Node {
    pub fn build(eal: &Eal, cfg: &Config) -> Result<Node, String> {
        // What the journal directory holds; a run is opened (and recovered) once the
        // appliance names its epoch.
        let runs = taphold_journal::list_runs(&cfg.journal.dir)
            .map_err(|e| format!("journal {}: {e}", cfg.journal.dir.display()))?;
        log::info!(
            "journal {}: {} run(s) of stream(s) {:?}",
            cfg.journal.dir.display(),
            runs.runs.len(),
            runs.runs
                .iter()
                .map(|(r, _)| r.stream)
                .collect::<std::collections::BTreeSet<_>>()
        );
        for s in &runs.stray {
            log::warn!(
                "journal {}: {} is outside any run (a journal from before epochs?); it is never opened",
                cfg.journal.dir.display(),
                s.display()
            );
        }
        let pool = Mempool::new(
            eal,
            "taphold_backup",
            cfg.mempool.mbufs,
            cfg.mempool.cache,
            cfg.mempool.data_room,
            -1,
        )
        .map_err(err)?;
        let mut port = Port::by_name(eal, &cfg.port).map_err(err)?;
        port.configure(&PortConfig::default(), &pool).map_err(err)?;
        port.start().map_err(err)?;
        if let Ok(l) = port.link() {
            log::info!(
                "port {} (id {}): link {}",
                cfg.port,
                port.id(),
                if l.up { "up" } else { "down" }
            );
        }
        Ok(Node {
            port,
            pool,
            clock: Clock::new(eal),
            intake: Intake::new(cfg),
            heartbeat_period_ns: cfg.heartbeat_period_ns(),
            idle: cfg.idle,
            stats_every: Duration::from_millis(cfg.stats_interval_ms),
            trim_every: Duration::from_millis(cfg.trim_interval_ms),
            next_heartbeat_ns: 0,
            hb_seq: 0,
            rx: Burst::new(),
            tx: Burst::new(),
        })
    }

    /// Polls until a signal, the duration, or idleness ends the run. Returns why it
    /// stopped; `Err` only when the journal failed (nothing more is acked then).
    pub fn run(&mut self, opts: &RunOpts, signalled: &AtomicBool) -> Result<&'static str, String> {
        let started = Instant::now();
        let mut next_stats = started + self.stats_every;
        let mut next_trim = started + self.trim_every;
        let mut last_rx = started;
        let mut rx_since_check = false;
        let mut idler = Idler::new(self.idle);
        let mut passes = 0u32;
        alloc_count::set_hot(true);
        let why = loop {
            let n = match self.poll() {
                Ok(n) => n,
                Err(e) => {
                    alloc_count::set_hot(false);
                    return Err(e);
                }
            };
            passes = passes.wrapping_add(1);
            if n > 0 {
                rx_since_check = true;
                idler.pass(n); // resets the backoff
            }
            // Wall-clock housekeeping every 64 busy passes, and on every idle one.
            if n > 0 && passes & 63 != 0 {
                continue;
            }
            let now = Instant::now();
            if rx_since_check {
                last_rx = now;
                rx_since_check = false;
            }
            if signalled.load(Ordering::SeqCst) {
                break "signal";
            }
            if opts
                .duration_ms
                .is_some_and(|ms| now.duration_since(started) >= Duration::from_millis(ms))
            {
                break "duration";
            }
            if opts
                .exit_when_idle_ms
                .is_some_and(|ms| now.duration_since(last_rx) >= Duration::from_millis(ms))
            {
                break "idle";
            }
            if now >= next_trim || now >= next_stats {
                alloc_count::set_hot(false);
                if now >= next_trim {
                    next_trim = now + self.trim_every;
                    self.trim()?;
                }
                if now >= next_stats {
                    next_stats = now + self.stats_every;
                    println!("{}", self.stats_line(now.duration_since(started)));
                }
                alloc_count::set_hot(true);
            }
            if n == 0 {
                idler.pass(0);
            }
        };
        alloc_count::set_hot(false);
        Ok(why)
    }

    /// One pass: a burst in, the fsync policy, an ack and a heartbeat out if due.
    /// Returns the frames received.
    pub fn poll(&mut self) -> Result<usize, String> {
        let n = self.port.rx_burst(0, &mut self.rx);
        let now = self.clock.now_ns();
        if n > 0 {
            self.intake.counters.rx_frames += n as u64;
            while let Some(m) = self.rx.pop() {
                let handled = if m.segments() != 1 {
                    Err(Ok(Refusal::MultiSegment))
                } else {
                    self.intake.handle(m.data(), now)
                };
                if let Err(r) = handled {
                    self.intake.counters.refuse(r?);
                }
                // The mbuf is freed here, whatever became of it.
            }
        }
        if let Some(run) = &mut self.intake.run {
            if let Err(e) = run.journal.maybe_sync(now) {
                return Err(self.intake.journal_failed(e));
            }
            if run.journal.contiguous_seq() > self.intake.counters.last_ack_seq {
                self.send_ack(now);
            }
        }
        if self.intake.answer_heartbeat || now >= self.next_heartbeat_ns {
            self.send_heartbeat(now);
        }
        if !self.tx.is_empty() {
            self.port.tx_burst(0, &mut self.tx);
        }
        Ok(n)
    }

    /// Queues one frame of ours to the appliance: a PDU of `pdu_len` bytes
    /// that `emit` writes.
    fn send(
        &mut self,
        pdu_len: usize,
        emit: impl FnOnce(&mut [u8], &DigestKey) -> Result<u64, WireError>,
    ) {
        let mut frame = [0u8; 128];
        let key = &self.intake.key;
        let Ok((len, _)) = link::emit_frame(
            &mut frame,
            self.intake.peer_mac,
            self.intake.mac,
            pdu_len,
            |pdu| emit(pdu, key),
        ) else {
            // Only a link outside 0..=3, which the config refuses.
            self.intake.counters.tx_dropped += 1;
            return;
        };
        let Some(m) = Mbuf::from_bytes(&self.pool, &frame[..len]) else {
            self.intake.counters.tx_dropped += 1;
            return;
        };
        if self.tx.push(m).is_err() {
            // Dropping the returned mbuf frees it.
            self.intake.counters.tx_dropped += 1;
        }
    }

    /// A cumulative ack for the current run (none before the appliance is heard).
    fn send_ack(&mut self, now: u64) {
        let Some(run) = &self.intake.run else { return };
        let ack = AckRepr {
            link: self.intake.link,
            stream: self.intake.stream,
            epoch: run.id.epoch,
            seq: run.journal.contiguous_seq(),
            timestamp_ns: now,
            watermark: self.intake.watermark,
            records: run.journal.records_total(),
        };
        self.send(ack.buffer_len(), |b, k| ack.emit(b, k));
        self.intake.counters.acks_sent += 1;
        self.intake.counters.last_ack_seq = ack.seq;
    }

    fn send_heartbeat(&mut self, now: u64) {
        self.hb_seq += 1;
        let hb = HeartbeatRepr {
            link: self.intake.link,
            epoch: self.intake.run.as_ref().map_or(0, |r| r.id.epoch),
            seq: self.hb_seq,
            timestamp_ns: now,
            watermark: self.intake.watermark,
            stream: self.intake.stream,
            echo_seq: self.intake.peer_hb.seq,
            echo_timestamp_ns: self.intake.peer_hb.timestamp_ns,
        };
        self.send(hb.buffer_len(), |b, k| hb.emit(b, k));
        self.intake.counters.heartbeats_sent += 1;
        self.intake.answer_heartbeat = false;
        self.next_heartbeat_ns = now + self.heartbeat_period_ns;
    }

    /// Trims the journal below what the appliance has released *and* we hold
    /// contiguously (the journal clamps to the latter as well).
    fn trim(&mut self) -> Result<(), String> {
        let Some(run) = &mut self.intake.run else {
            return Ok(());
        };
        let bound = self.intake.watermark.min(run.journal.contiguous_seq()) + 1;
        let trimmed = run.journal.trim_below(bound);
        let n = trimmed.map_err(|e| self.intake.journal_failed(e))?;
        self.intake.counters.trims += 1;
        self.intake.counters.segments_trimmed += n as u64;
        Ok(())
    }

    /// Stops: syncs the journal, sends the last ack, drains the tx queue.
    pub fn shutdown(&mut self) -> Result<(), String> {
        if let Some(run) = &mut self.intake.run {
            if let Err(e) = run.journal.sync() {
                return Err(self.intake.journal_failed(e));
            }
        }
        let now = self.clock.now_ns();
        if self
            .intake
            .run
            .as_ref()
            .is_some_and(|r| r.journal.contiguous_seq() > self.intake.counters.last_ack_seq)
        {
            self.send_ack(now);
        }
        for _ in 0..100 {
            if self.tx.is_empty() {
                break;
            }
            self.port.tx_burst(0, &mut self.tx);
        }
        self.intake.counters.tx_dropped += self.tx.len() as u64;
        self.tx.clear();
        Ok(())
    }

    pub fn stats_line(&self, elapsed: Duration) -> String {
        let c = &self.intake.counters;
        let run = match &self.intake.run {
            Some(r) => format!(
                "run epoch {} | syncs {} | journal {} records {} bytes",
                r.id.epoch,
                r.journal.stats().syncs,
                r.journal.records_on_disk(),
                r.journal.bytes_on_disk()
            ),
            None => "no run yet (the appliance has not been heard)".into(),
        };
        format!(
            "[{:>7.1}s] rx {} journaled {} dup {} refused {} | ack {} (seq {}) hb tx {} rx {} | {run}, watermark {}",
            elapsed.as_secs_f64(),
            c.rx_frames,
            c.journaled,
            c.duplicates,
            c.refused_total(),
            c.acks_sent,
            c.last_ack_seq,
            c.heartbeats_sent,
            c.heartbeats_received,
            self.intake.watermark
        )
    }

    pub fn summary(&self, why: &str) -> serde_json::Value {
        let c = &self.intake.counters;
        let refused: serde_json::Map<String, serde_json::Value> = Refusal::ALL
            .iter()
            .map(|r| (r.name().to_string(), c.refused[*r as usize].into()))
            .collect();
        let port = self.port.stats().ok();
        // The run journaled last: its journal, as it stands.
        let (run, journal, syncs, policy_syncs) = match &self.intake.run {
            Some(r) => {
                let (j, rec, js) = (&r.journal, &r.recovery, r.journal.stats());
                (
                    serde_json::json!({ "stream": r.id.stream, "epoch": r.id.epoch }),
                    serde_json::json!({
                        "dir": j.config().dir,
                        "contiguous_seq": j.contiguous_seq(),
                        "durable_seq": j.durable_seq(),
                        "records_total": j.records_total(),
                        "records": j.records_on_disk(),
                        "bytes": j.bytes_on_disk(),
                        "segments": j.segment_count(),
                        "segments_created": js.segments_created,
                        "appended": js.appended,
                        "appended_bytes": js.appended_bytes,
                        "beyond_window": js.beyond_window,
                        "untracked": js.untracked,
                        "floor": j.floor(),
                        "recovered_records": rec.records,
                        "covered_by_watermark": js.covered_by_watermark,
                        "tail_cut_bytes": rec.tail_cut.as_ref().map_or(0, |t| t.bytes),
                        "tail_set_aside": rec.tail_cut.as_ref().map(|t| &t.set_aside),
                        "missing_seqs": rec.missing_seqs,
                        "holes_allowed": rec.holes_allowed.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                    }),
                    js.syncs,
                    js.policy_syncs,
                )
            }
            None => (serde_json::Value::Null, serde_json::Value::Null, 0, 0),
        };
        serde_json::json!({
            "stopped_by": why,
            "frames_rx": c.rx_frames,
            "backup_frames": c.backup_frames,
            "journaled": c.journaled,
            "duplicates": c.duplicates,
            "refused": refused,
            "refused_total": c.refused_total(),
            "acks_sent": c.acks_sent,
            "last_ack_seq": c.last_ack_seq,
            "heartbeats_sent": c.heartbeats_sent,
            "heartbeats_received": c.heartbeats_received,
            "peer_heartbeat": self.intake.peer_hb,
            "watermark": self.intake.watermark,
            "tx_dropped": c.tx_dropped,
            "syncs": syncs,
            "policy_syncs": policy_syncs,
            "trims": c.trims,
            "segments_trimmed": c.segments_trimmed,
            "runs_opened": c.runs_opened,
            "watermark_absurd": c.watermark_absurd,
            "run": run,
            "journal_dir": self.intake.cfg.journal.dir,
            "journal": journal,
            "port": port.map(|p| serde_json::json!({
                "ipackets": p.ipackets, "opackets": p.opackets, "imissed": p.imissed,
                "ierrors": p.ierrors, "oerrors": p.oerrors, "rx_nombuf": p.rx_nombuf,
            })),
            "hot_path_allocations": alloc_count::hot_allocations(),
        })
    }
}

#[cfg(test)]
mod tests {
    //! The node's handling of received frames, without DPDK: authentic PDUs with any
    //! field values, and damaged ones, against a model of what must be journaled.

    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use taphold_wire::taphold::{Content, Flags};

    const KEY: &str = "5461706f6c642d64656d6f2d6b657931";
    const OURS: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0c, 1]);
    const APPLIANCE: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0b, 1]);

    fn intake(dir: &std::path::Path) -> Intake {
        let text = format!(
            "port: net_pcap0\nmac: {OURS}\npeer_mac: {APPLIANCE}\nlink: 0\nstream: 1\n\
             digest_key: \"{KEY}\"\njournal:\n  dir: {}\n  segment_bytes: 4096\n",
            dir.display()
        );
        Intake::new(&Config::parse("t.yaml", &text).unwrap())
    }

    #[derive(Debug, Clone)]
    enum Sent {
        Backup {
            stream: u32,
            epoch: u64,
            seq: u64,
            watermark: u64,
            timestamp_ns: u64,
            flags: u16,
            payload: Vec<u8>,
            digest_only: bool,
        },
        Heartbeat {
            link: u8,
            epoch: u64,
            seq: u64,
            timestamp_ns: u64,
            watermark: u64,
        },
    }

    fn frame(s: &Sent) -> Vec<u8> {
        let k = DigestKey::from_hex(KEY).unwrap();
        let mut pdu = vec![0u8; 128];
        let n = match s {
            Sent::Backup {
                stream,
                epoch,
                seq,
                watermark,
                timestamp_ns,
                flags,
                payload,
                digest_only,
            } => {
                let r = BackupRepr {
                    flags: Flags::from_bits(flags & Flags::ALL.bits()).unwrap(),
                    stream: *stream,
                    epoch: *epoch,
                    seq: *seq,
                    timestamp_ns: *timestamp_ns,
                    watermark: *watermark,
                    src_ip: [192, 0, 2, 7],
                    src_port: 40000,
                    payload_len: payload.len() as u16,
                    content: if *digest_only {
                        Content::Digest(k.digest(payload))
                    } else {
                        Content::Full(payload)
                    },
                };
                r.emit(&mut pdu, &k).unwrap();
                r.buffer_len()
            }
            Sent::Heartbeat {
                link,
                epoch,
                seq,
                timestamp_ns,
                watermark,
            } => {
                let h = HeartbeatRepr {
                    link: *link,
                    epoch: *epoch,
                    seq: *seq,
                    timestamp_ns: *timestamp_ns,
                    watermark: *watermark,
                    stream: 1,
                    echo_seq: 0,
                    echo_timestamp_ns: 0,
                };
                h.emit(&mut pdu, &k).unwrap();
                h.buffer_len()
            }
        };
        let mut f = vec![0u8; link::frame_len(n)];
        link::emit_frame(&mut f, OURS, APPLIANCE, n, |b| {
            b.copy_from_slice(&pdu[..n]);
            Ok(0)
        })
        .unwrap();
        f
    }

    /// Near 0, near 2^63, near u64::MAX, anywhere.
    fn extreme() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..40,
            (1u64 << 63) - 3..(1u64 << 63) + 3,
            (u64::MAX - 3)..=u64::MAX,
            any::<u64>(),
        ]
    }

    fn epoch() -> impl Strategy<Value = u64> {
        prop_oneof![4 => Just(7u64), 1 => Just(0u64), 1 => Just(8u64), 1 => Just(u64::MAX)]
    }

    fn sent() -> impl Strategy<Value = Sent> {
        let backup = (
            prop_oneof![9 => Just(1u32), 1 => any::<u32>()],
            epoch(),
            prop_oneof![2 => 0u64..40, 1 => extreme()],
            extreme(),
            any::<u64>(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..24),
            any::<bool>(),
        )
            .prop_map(
                |(stream, epoch, seq, watermark, timestamp_ns, flags, payload, digest_only)| {
                    Sent::Backup {
                        stream,
                        epoch,
                        seq,
                        watermark,
                        timestamp_ns,
                        flags,
                        payload,
                        digest_only,
                    }
                },
            );
        let heartbeat = (
            prop_oneof![Just(0u8), Just(ALL_LINKS), Just(2u8)],
            epoch(),
            any::<u64>(),
            any::<u64>(),
            extreme(),
        )
            .prop_map(
                |(link, epoch, seq, timestamp_ns, watermark)| Sent::Heartbeat {
                    link,
                    epoch,
                    seq,
                    timestamp_ns,
                    watermark,
                },
            );
        prop_oneof![4 => backup, 1 => heartbeat]
    }

    /// What must happen to authentic frames: the run is the newest epoch heard; a
    /// seq is journaled unless it is 0, held already, or covered by a watermark
    /// (below 2^63) no higher than the highest seq held.
    #[derive(Default)]
    struct Model {
        epoch: Option<u64>,
        held: BTreeSet<u64>,
        released: u64,
        cover: u64,
    }

    impl Model {
        fn enter(&mut self, epoch: u64) -> bool {
            match self.epoch {
                Some(e) if e > epoch => return false,
                Some(e) if e == epoch => {}
                _ => {
                    *self = Model {
                        epoch: Some(epoch),
                        ..Model::default()
                    }
                }
            }
            true
        }
        fn release(&mut self, w: u64) {
            if w < ABSURD_WATERMARK {
                self.released = self.released.max(w);
            }
            let top = self.held.last().copied().unwrap_or(0);
            self.cover = self.cover.max(self.released.min(top));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_authentic_frame_is_handled_as_the_model_says(
            frames in proptest::collection::vec((sent(), any::<u64>(), 0u8..8, any::<prop::sample::Index>()), 1..40),
        ) {
            let t = tempfile::tempdir().unwrap();
            let mut i = intake(t.path());
            let mut m = Model::default();
            for (s, now, damage, at) in frames {
                let mut f = frame(&s);
                let before = i.counters.clone();
                if damage == 0 {
                    // One byte changed anywhere: never journaled, never a panic.
                    let k = at.index(f.len());
                    f[k] ^= 0x20;
                    let r = i.handle(&f, now);
                    prop_assert!(matches!(r, Err(Ok(_))), "{:?}", r);
                    prop_assert_eq!(i.counters.journaled, before.journaled);
                    continue;
                }
                let r = i.handle(&f, now);
                prop_assert!(!matches!(r, Err(Err(_))), "{:?}", r);
                match s {
                    Sent::Backup { stream, epoch, seq, watermark, .. } => {
                        if stream != 1 {
                            prop_assert_eq!(r, Err(Ok(Refusal::WrongStream)));
                            continue;
                        }
                        if !m.enter(epoch) {
                            prop_assert_eq!(r, Err(Ok(Refusal::StaleEpoch)));
                            continue;
                        }
                        prop_assert_eq!(r, Ok(()));
                        m.release(watermark);
                        let fresh = seq >= 1 && !m.held.contains(&seq) && seq > m.cover;
                        prop_assert_eq!(
                            i.counters.journaled - before.journaled,
                            u64::from(fresh),
                            "seq {} watermark {} cover {}", seq, watermark, m.cover
                        );
                        prop_assert_eq!(i.counters.duplicates - before.duplicates, u64::from(!fresh));
                        if fresh {
                            m.held.insert(seq);
                            m.release(0);
                        }
                    }
                    Sent::Heartbeat { link, epoch, watermark, .. } => {
                        if link == 2 {
                            prop_assert_eq!(r, Err(Ok(Refusal::WrongLink)));
                            continue;
                        }
                        if !m.enter(epoch) {
                            prop_assert_eq!(r, Err(Ok(Refusal::StaleEpoch)));
                            continue;
                        }
                        prop_assert_eq!(r, Ok(()));
                        m.release(watermark);
                    }
                }
                let absurd = i.counters.watermark_absurd - before.watermark_absurd;
                let w = match s { Sent::Backup { watermark, .. } | Sent::Heartbeat { watermark, .. } => watermark };
                prop_assert_eq!(absurd, u64::from(w >= ABSURD_WATERMARK));
                // The ack never claims a seq above the highest one seen.
                let run = i.run.as_mut().unwrap();
                run.journal.sync().unwrap();
                let top = m.held.last().copied().unwrap_or(0);
                prop_assert!(run.journal.contiguous_seq() <= top, "{} > {}", run.journal.contiguous_seq(), top);
                prop_assert_eq!(run.id.epoch, m.epoch.unwrap());
            }
        }
    }
}
