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
use taphold_journal::{Appended, Journal, Recovery};
use taphold_wire::digest::DigestKey;
use taphold_wire::ethernet::{self, EtherType, EthernetAddress, MIN_FRAME_LEN};
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
}

impl Refusal {
    pub const ALL: [Refusal; 10] = [
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
}

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

pub struct Node {
    port: Port,
    pool: Mempool,
    journal: Journal,
    recovery: Recovery,
    clock: Clock,
    key: DigestKey,
    mac: EthernetAddress,
    peer_mac: EthernetAddress,
    link: u8,
    stream: u32,
    heartbeat_period_ns: u64,
    idle: IdlePolicy,
    stats_every: Duration,
    trim_every: Duration,
    pub counters: Counters,
    /// Highest released watermark seen in an authentic frame.
    watermark: u64,
    peer_hb: PeerHeartbeat,
    /// The appliance sent a heartbeat in this burst: answer after it.
    answer_heartbeat: bool,
    next_heartbeat_ns: u64,
    hb_seq: u64,
    rx: Burst<BURST>,
    tx: Burst<BURST>,
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

impl Node {
    pub fn build(eal: &Eal, cfg: &Config) -> Result<Node, String> {
        let (journal, recovery) = Journal::open(cfg.journal_config())
            .map_err(|e| format!("journal {}: {e}", cfg.journal.dir.display()))?;
        log::info!("journal {}: {recovery}", cfg.journal.dir.display());
        if recovery.torn_bytes_discarded > 0 {
            log::warn!(
                "recovered {} records, discarded a torn tail of {} bytes",
                recovery.records,
                recovery.torn_bytes_discarded
            );
        }
        if recovery.valid_records_discarded > 0 {
            log::warn!(
                "{} valid-looking records after the torn region were discarded with it",
                recovery.valid_records_discarded
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
            journal,
            recovery,
            clock: Clock::new(eal),
            key: cfg.digest_key.0,
            mac: cfg.mac.0,
            peer_mac: cfg.peer_mac.0,
            link: cfg.link,
            stream: cfg.stream,
            heartbeat_period_ns: cfg.heartbeat_period_us * 1000,
            idle: cfg.idle,
            stats_every: Duration::from_millis(cfg.stats_interval_ms),
            trim_every: Duration::from_millis(cfg.trim_interval_ms),
            counters: Counters::default(),
            watermark: 0,
            peer_hb: PeerHeartbeat::default(),
            answer_heartbeat: false,
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
            self.counters.rx_frames += n as u64;
            while let Some(m) = self.rx.pop() {
                if let Err(r) = self.handle(&m, now) {
                    self.counters.refuse(r?);
                }
                // The mbuf is freed here, whatever became of it.
            }
        }
        self.journal
            .maybe_sync(now)
            .map_err(|e| self.journal_failed(e))?;
        if self.journal.contiguous_seq() > self.counters.last_ack_seq {
            self.send_ack(now);
        }
        if self.answer_heartbeat || now >= self.next_heartbeat_ns {
            self.send_heartbeat(now);
        }
        if !self.tx.is_empty() {
            self.port.tx_burst(0, &mut self.tx);
        }
        Ok(n)
    }

    fn journal_failed(&self, e: std::io::Error) -> String {
        format!(
            "journal {}: {e} — stopping: nothing more can be journaled or acked",
            self.journal.config().dir.display()
        )
    }

    /// One received frame. `Err(Ok(reason))`: refused; `Err(Err(msg))`: the journal failed.
    fn handle(&mut self, m: &Mbuf, now: u64) -> Result<(), Result<Refusal, String>> {
        if m.segments() != 1 {
            return Err(Ok(Refusal::MultiSegment));
        }
        let f = m.data();
        if f.len() < ethernet::HEADER_LEN {
            return Err(Ok(Refusal::Runt));
        }
        if f[12..14] != EtherType::TAPHOLD.0.to_be_bytes() {
            return Err(Ok(Refusal::NotTaphold));
        }
        if f[0..6] != self.mac.0 {
            return Err(Ok(Refusal::NotForUs));
        }
        if f[6..12] != self.peer_mac.0 {
            return Err(Ok(Refusal::WrongPeer));
        }
        let buf = &f[ethernet::HEADER_LEN..];
        let p = Packet::new_checked(buf).map_err(|e| Ok(Refusal::from_wire(e)))?;
        match p.msg_type() {
            MsgType::Backup => {
                let b = BackupRepr::parse(&p, &self.key).map_err(|e| Ok(Refusal::from_wire(e)))?;
                if b.stream != self.stream {
                    return Err(Ok(Refusal::WrongStream));
                }
                self.counters.backup_frames += 1;
                self.note_watermark(b.watermark);
                let pdu = &buf[..p.total_len()];
                match self
                    .journal
                    .append(b.seq, b.stream, b.flags.bits(), now, pdu)
                    .map_err(|e| Err(self.journal_failed(e)))?
                {
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
                self.counters.heartbeats_received += 1;
                self.note_watermark(h.watermark);
                self.peer_hb = PeerHeartbeat {
                    seq: h.seq,
                    timestamp_ns: h.timestamp_ns,
                };
                self.answer_heartbeat = true;
                Ok(())
            }
            MsgType::Ack | MsgType::Confirm => {
                // Authentic or not, nothing we act on; say which.
                p.verify_digest(&self.key)
                    .map_err(|e| Ok(Refusal::from_wire(e)))?;
                Err(Ok(Refusal::UnexpectedType))
            }
        }
    }

    /// Queues one frame of ours (Ethernet to the appliance, padded to 60 bytes).
    fn send(&mut self, emit: impl FnOnce(&mut [u8], &DigestKey) -> Result<u64, WireError>) {
        let mut frame = [0u8; 128];
        ethernet::emit_header(&mut frame, self.peer_mac, self.mac, EtherType::TAPHOLD)
            .expect("128 bytes hold a header");
        let pdu = &mut frame[ethernet::HEADER_LEN..];
        if emit(pdu, &self.key).is_err() {
            // Only a link outside 0..=3, which the config refuses.
            self.counters.tx_dropped += 1;
            return;
        }
        let total_pdu = Packet::new_unchecked(&frame[ethernet::HEADER_LEN..]).total_len();
        let len = (ethernet::HEADER_LEN + total_pdu).max(MIN_FRAME_LEN);
        let Some(m) = Mbuf::from_bytes(&self.pool, &frame[..len]) else {
            self.counters.tx_dropped += 1;
            return;
        };
        if self.tx.push(m).is_err() {
            // Dropping the returned mbuf frees it.
            self.counters.tx_dropped += 1;
        }
    }

    /// The primary's released watermark, from an authentic backup frame or
    /// heartbeat: kept for trimming, and counted as covered by our acks
    /// (taphold_journal::Journal::note_released).
    fn note_watermark(&mut self, w: u64) {
        if w > self.watermark {
            self.watermark = w;
            self.journal.note_released(w);
        }
    }

    fn send_ack(&mut self, now: u64) {
        let ack = AckRepr {
            link: self.link,
            stream: self.stream,
            seq: self.journal.contiguous_seq(),
            timestamp_ns: now,
            watermark: self.watermark,
            records: self.journal.records_total(),
        };
        self.send(|b, k| ack.emit(b, k));
        self.counters.acks_sent += 1;
        self.counters.last_ack_seq = ack.seq;
    }

    fn send_heartbeat(&mut self, now: u64) {
        self.hb_seq += 1;
        let hb = HeartbeatRepr {
            link: self.link,
            seq: self.hb_seq,
            timestamp_ns: now,
            watermark: self.watermark,
            stream: self.stream,
            echo_seq: self.peer_hb.seq,
            echo_timestamp_ns: self.peer_hb.timestamp_ns,
        };
        self.send(|b, k| hb.emit(b, k));
        self.counters.heartbeats_sent += 1;
        self.answer_heartbeat = false;
        self.next_heartbeat_ns = now + self.heartbeat_period_ns;
    }

    /// Trims the journal below what the appliance has released *and* we hold
    /// contiguously (the journal clamps to the latter as well).
    fn trim(&mut self) -> Result<(), String> {
        let bound = self.watermark.min(self.journal.contiguous_seq()) + 1;
        let n = self
            .journal
            .trim_below(bound)
            .map_err(|e| self.journal_failed(e))?;
        self.counters.trims += 1;
        self.counters.segments_trimmed += n as u64;
        Ok(())
    }

    /// Stops: syncs the journal, sends the last ack, drains the tx queue.
    pub fn shutdown(&mut self) -> Result<(), String> {
        self.journal.sync().map_err(|e| self.journal_failed(e))?;
        let now = self.clock.now_ns();
        if self.journal.contiguous_seq() > self.counters.last_ack_seq {
            self.send_ack(now);
        }
        for _ in 0..100 {
            if self.tx.is_empty() {
                break;
            }
            self.port.tx_burst(0, &mut self.tx);
        }
        self.counters.tx_dropped += self.tx.len() as u64;
        self.tx.clear();
        Ok(())
    }

    pub fn stats_line(&self, elapsed: Duration) -> String {
        let c = &self.counters;
        format!(
            "[{:>7.1}s] rx {} journaled {} dup {} refused {} | ack {} (seq {}) hb tx {} rx {} | syncs {} | journal {} records {} bytes, watermark {}",
            elapsed.as_secs_f64(),
            c.rx_frames,
            c.journaled,
            c.duplicates,
            c.refused_total(),
            c.acks_sent,
            c.last_ack_seq,
            c.heartbeats_sent,
            c.heartbeats_received,
            self.journal.stats().syncs,
            self.journal.records_on_disk(),
            self.journal.bytes_on_disk(),
            self.watermark
        )
    }

    pub fn summary(&self, why: &str) -> serde_json::Value {
        let c = &self.counters;
        let js = self.journal.stats();
        let refused: serde_json::Map<String, serde_json::Value> = Refusal::ALL
            .iter()
            .map(|r| (r.name().to_string(), c.refused[*r as usize].into()))
            .collect();
        let port = self.port.stats().ok();
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
            "peer_heartbeat": self.peer_hb,
            "watermark": self.watermark,
            "tx_dropped": c.tx_dropped,
            "syncs": js.syncs,
            "policy_syncs": js.policy_syncs,
            "trims": c.trims,
            "segments_trimmed": c.segments_trimmed,
            "journal": {
                "dir": self.journal.config().dir,
                "contiguous_seq": self.journal.contiguous_seq(),
                "durable_seq": self.journal.durable_seq(),
                "records_total": self.journal.records_total(),
                "records": self.journal.records_on_disk(),
                "bytes": self.journal.bytes_on_disk(),
                "segments": self.journal.segment_count(),
                "segments_created": js.segments_created,
                "appended": js.appended,
                "appended_bytes": js.appended_bytes,
                "beyond_window": js.beyond_window,
                "untracked": js.untracked,
                "floor": self.journal.floor(),
                "recovered_records": self.recovery.records,
                "covered_by_watermark": self.journal.stats().covered_by_watermark,
                "torn_bytes_discarded": self.recovery.torn_bytes_discarded,
                "valid_records_discarded": self.recovery.valid_records_discarded,
            },
            "port": port.map(|p| serde_json::json!({
                "ipackets": p.ipackets, "opackets": p.opackets, "imissed": p.imissed,
                "ierrors": p.ierrors, "oerrors": p.oerrors, "rx_nombuf": p.rx_nombuf,
            })),
            "hot_path_allocations": alloc_count::hot_allocations(),
        })
    }
}
