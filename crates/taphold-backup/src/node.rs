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
//! With a `destination` port D (`destination.rs`), each pass also takes a burst from D
//! — ARP requests answered, target confirmations remembered, resend requests queued —
//! answers queued resend requests from the journal as far as D's tx burst has room,
//! and takes a step of a takeover under way (`takeover.rs`): the check of the journal,
//! then the paced replay.
//!
//! Every `trim_interval_ms` the journal is trimmed (`journal.trim_below`: below the
//! released watermark, or below what the destination confirmed, every run held) and
//! what is unconfirmed recounted (the ALERT of `journal.alert_unconfirmed_records`);
//! every `stats_interval_ms` a stats line is printed. Between bursts the loop takes
//! commands from the control socket (`control.rs`) and watches the primary's silence
//! (`takeover.auto_after_ms`). None of that is per burst.
//!
//! Step 1 is [`Intake`]: the checks, the runs, the watermark, what D brings, the
//! counters, with no DPDK in it, so that plain tests can feed it any frame. [`Node`]
//! is the rest: the ports, the pool, the clock, and the frames we send.
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
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dpdk::{Burst, Clock, Eal, Mbuf, Mempool, Port, PortConfig};
use serde::Serialize;
use taphold_journal::{Appended, Journal, Recovery, Refused, RunId};
use taphold_wire::digest::{DigestKey, KeyRing};
use taphold_wire::emit::Endpoint;
use taphold_wire::ethernet::{EthernetAddress, MIN_FRAME_LEN};
use taphold_wire::link::{self, NotOurs};
use taphold_wire::taphold::{
    decrypt_backup_frame, AckRepr, BackupRepr, Flags, FlowAckRepr, HeartbeatRepr, MsgType, Packet,
    ALL_LINKS,
};
use taphold_wire::WireError;

use crate::config::{Config, IdlePolicy, TrimBelow};
use crate::control::{error_reply, Command, Request};
use crate::destination::{
    self, answer, judge, trim_bound, write_delivery, Confirmations, Delivery, DestAddr,
    DestCounters, DestFrame, Noted, Offer, ResendCounters, ResendJob, ResendQueue,
};
use crate::flows::{FlowAckLog, FlowKey, FLOW_ACKS_FILE};
use crate::takeover::{RunPlan, Takeover, Trigger};
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
    /// It names a key id we hold no key of: a wrong key, another deployment's, or
    /// a rotation we were not given.
    UnknownKey,
    /// An authentic encrypted backup frame whose payload tag fails under our
    /// payload key: the appliance's payload key is another.
    BadPayloadTag,
    /// An authentic heartbeat of a backup node (FROM_NODE): ours, or another
    /// node's, sent back to us by a reflector on the link.
    Reflected,
}

impl Refusal {
    pub const ALL: [Refusal; 14] = [
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
        Refusal::Reflected,
        Refusal::UnknownKey,
        Refusal::BadPayloadTag,
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
            Refusal::Reflected => "reflected",
            Refusal::UnknownKey => "unknown_key",
            Refusal::BadPayloadTag => "bad_payload_tag",
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
    /// Authentic flow acks (type 7) of our stream, link and current epoch.
    pub flow_acks: u64,
    /// Those that advanced their flow's highest `acked` (written to `flow-acks`).
    pub flow_acks_advanced: u64,
    /// Times [`WRONG_KEY_RUN`] frames in a row failed the digest or named no key of
    /// ours (each logged as an ALERT): the node's key is not the appliance's.
    pub wrong_key_alerts: u64,
}

/// Frames in a row that fail authentication before the node says, as an ALERT,
/// that its key is wrong: more than a damaged frame or two, fewer than a
/// heartbeat period's worth.
pub const WRONG_KEY_RUN: u64 = 8;

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

/// One run of the appliance (an epoch) this node holds: the one being journaled, or
/// an older one kept for resend requests, trimming by confirmation and takeover.
struct Run {
    id: RunId,
    journal: Journal,
    recovery: Recovery,
    /// Records above the run's delivered-through, as of the last refresh.
    unconfirmed: u64,
    /// Gateway mode: the highest `acked` of each flow in this run (`flows.rs`).
    flow_acks: FlowAckLog,
    /// Gateway mode: this run carries TCP segments (or flow acks). A released
    /// segment may not be acknowledged by the exchange yet, and `recover`
    /// needs it: `trim_below: released` keeps every record of such a run.
    gateway: bool,
}

/// What the node does with the frames it receives: the checks, the run being
/// journaled, the appliance's watermark and heartbeat, the counters. No DPDK: the
/// poll loop hands it each frame's bytes, and a plain test can do the same.
pub struct Intake {
    cfg: Config,
    /// None until the appliance's first authentic frame names its epoch.
    run: Option<Run>,
    /// Every other run of our stream this node holds, by epoch: opened at start
    /// ([`Intake::open_held`]) or journaled before the appliance moved to a new epoch.
    held: Vec<Run>,
    /// Runs of our stream in the journal directory that could not be opened, and why.
    not_opened: Vec<(RunId, String)>,
    /// The backup-link keys: the sealing one by the clock, both accepted.
    key: KeyRing,
    /// The arbiter's keys (port D).
    arbiter_keys: KeyRing,
    /// Frames in a row on the backup link that failed the digest or named no
    /// key of ours, since the last authentic one: a wrong key, said loudly.
    auth_failures_in_a_row: u64,
    /// `link_security: aead`: the payload key, and where a frame is decrypted
    /// before it is journaled (allocated once).
    payload_key: Option<taphold_wire::payload::PayloadKey>,
    journal_ciphertext: bool,
    plain: Vec<u8>,
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
    /// When the primary was last heard: an authentic backup frame or heartbeat of
    /// the current (or a newer) epoch (our clock, ns).
    last_heard_ns: Option<u64>,
    /// Port D: our address, and what arrived on it.
    dest: Option<DestAddr>,
    pub dest_counters: DestCounters,
    /// The latest target confirmation of each run.
    pub confirmations: Confirmations,
    pub resend: ResendCounters,
    resends: ResendQueue,
    /// The last error reading a record back (a resend), for the stats.
    read_error: Option<String>,
}

pub struct Node {
    // Fields drop in this order: the bursts first, so that mbufs a failed poll left
    // in them go back to the pool before it goes (a pool dropped with mbufs out
    // leaks itself and the EAL, and its runtime directory stays behind).
    rx: Burst<BURST>,
    tx: Burst<BURST>,
    /// Port D, toward the destination's arbiter (its bursts drop before the pool).
    d: Option<DestPort>,
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
    /// Commands from the control socket's thread (`control.rs`).
    control: Option<mpsc::Receiver<Command>>,
    /// The status as of the last stats interval, for readers off the loop
    /// (telemetry, metrics): they never touch the loop's own state.
    published: Option<std::sync::Arc<std::sync::Mutex<serde_json::Value>>>,
    /// The takeover under way, or the last one.
    takeover: Option<ActiveTakeover>,
    /// `takeover.auto_after_ms` in ns, and the `last_heard_ns` it last fired at (it
    /// fires once per silence).
    auto_after_ns: Option<u64>,
    auto_fired_at: Option<u64>,
    /// ALERT on unconfirmed records: the threshold, whether it is raised, how often
    /// it was, and when it was last logged.
    alert_threshold: Option<u64>,
    alerting: bool,
    alerts: u64,
    last_alert_log: Option<Instant>,
}

/// Port D and its bursts.
struct DestPort {
    rx: Burst<BURST>,
    tx: Burst<BURST>,
    port: Port,
    /// Our address on D: the source of what we send.
    ours: Endpoint,
    /// Where takeover replays go: `replay_to` through `peer_mac`.
    replay_to: Endpoint,
}

/// A takeover and who waits for its report.
struct ActiveTakeover {
    t: Takeover,
    /// The check's result was logged.
    plan_logged: bool,
    /// The report went out (log, waiters).
    reported: bool,
    waiters: Vec<mpsc::Sender<String>>,
}

/// Hands `d` to the port's tx burst as a new mbuf: the datagram from `from` to `to`.
/// No room (pool empty, burst full): `NoRoom`, to try again; never fits: `TooLarge`.
fn send_delivery(
    pool: &Mempool,
    tx: &mut Burst<BURST>,
    d: &Delivery<'_>,
    from: &Endpoint,
    to: &Endpoint,
) -> Offer {
    if tx.is_full() {
        return Offer::NoRoom;
    }
    let Ok(len) = u16::try_from(d.frame_len()) else {
        return Offer::TooLarge;
    };
    let Some(mut m) = pool.alloc() else {
        return Offer::NoRoom;
    };
    // Dropping `m` on the way out frees it.
    let Some(buf) = m.append(len) else {
        return Offer::TooLarge;
    };
    if write_delivery(buf, d, from, to).is_err() {
        return Offer::TooLarge;
    }
    match tx.push(m) {
        Ok(()) => Offer::Taken,
        Err(_) => Offer::NoRoom,
    }
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
            held: Vec::new(),
            not_opened: Vec::new(),
            last_heard_ns: None,
            dest: cfg.destination.as_ref().map(|d| DestAddr {
                ours: Endpoint {
                    mac: d.mac.0,
                    ip: d.ip.octets(),
                    port: d.udp_port,
                },
                stream: cfg.stream,
            }),
            dest_counters: DestCounters::default(),
            confirmations: Confirmations::default(),
            resend: ResendCounters::default(),
            resends: ResendQueue::default(),
            read_error: None,
            key: cfg.keys.link,
            arbiter_keys: cfg.keys.arbiter,
            auth_failures_in_a_row: 0,
            payload_key: cfg.keys.payload.clone(),
            journal_ciphertext: cfg.journal_ciphertext,
            plain: vec![0; 1 << 17],
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
        // Held already (opened at start: the node restarted within the epoch).
        if self.held.iter().any(|r| r.id.epoch == epoch) {
            alloc_count::set_hot(false);
            let entered = self.seal_current().map(|_| {
                // Found after sealing: the sealed run went into `held` too.
                if let Some(i) = self.held.iter().position(|r| r.id.epoch == epoch) {
                    let run = self.held.remove(i);
                    self.make_current(run);
                }
            });
            alloc_count::set_hot(true);
            return entered.map_err(Err);
        }
        // Opening reads the run's segments: once per start of the appliance, not
        // per frame, so its allocations are not the poll loop's.
        alloc_count::set_hot(false);
        let opened = self.open_run(epoch);
        alloc_count::set_hot(true);
        opened.map_err(Err)
    }

    /// The current run, if any, synced and kept among the held runs: its records stay
    /// available for resend requests, trimming by confirmation and takeover.
    fn seal_current(&mut self) -> Result<(), String> {
        if let Some(mut old) = self.run.take() {
            if let Err(e) = old.journal.sync().and_then(|_| old.flow_acks.sync()) {
                self.run = Some(old);
                return Err(self.journal_failed(e));
            }
            log::info!(
                "run {} sealed at contiguous seq {} ({} records); held",
                old.id,
                old.journal.contiguous_seq(),
                old.journal.records_on_disk()
            );
            self.hold(old);
        }
        Ok(())
    }

    /// Keeps `run` among the held runs, in epoch order.
    fn hold(&mut self, run: Run) {
        let i = self.held.partition_point(|r| r.id.epoch < run.id.epoch);
        self.held.insert(i, run);
    }

    fn make_current(&mut self, run: Run) {
        self.run = Some(run);
        // Acks and the watermark are the run's own.
        self.counters.last_ack_seq = 0;
        self.watermark = 0;
        self.counters.runs_opened += 1;
    }

    /// Opens every run of our stream in the journal directory, to serve resend
    /// requests, trimming by confirmation and takeover for them too. A run that does
    /// not open (damage, with `journal.open_with_holes` off) is logged and listed, not
    /// fatal: it stops the node only if the appliance names its epoch (as before).
    pub fn open_held(&mut self) -> Result<(), String> {
        let root = self.cfg.journal.dir.clone();
        let runs = taphold_journal::list_runs(&root)
            .map_err(|e| format!("journal {}: {e}", root.display()))?;
        let stream = self.stream;
        for (id, _) in runs.runs.into_iter().filter(|(r, _)| r.stream == stream) {
            if self.held.iter().any(|r| r.id == id) || self.run.as_ref().is_some_and(|r| r.id == id)
            {
                continue;
            }
            match self.open_journal(id) {
                Ok(run) => self.hold(run),
                Err(e) => {
                    log::warn!("run {id} not opened, so not served (resend, trim, takeover): {e}");
                    self.not_opened.push((id, e));
                }
            }
        }
        Ok(())
    }

    fn open_run(&mut self, epoch: u64) -> Result<(), String> {
        self.seal_current()?;
        let id = RunId {
            stream: self.stream,
            epoch,
        };
        let run = self.open_journal(id)?;
        self.not_opened.retain(|(r, _)| *r != id);
        self.make_current(run);
        Ok(())
    }

    /// Opens (recovering) run `id`, logging what recovery found.
    fn open_journal(&self, id: RunId) -> Result<Run, String> {
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
        let flow_acks = FlowAckLog::open(&dir).map_err(|e| {
            format!(
                "journal {}: {}: {e} — stopping: flow acks cannot be kept",
                dir.display(),
                FLOW_ACKS_FILE
            )
        })?;
        Ok(Run {
            id,
            journal,
            recovery,
            unconfirmed: 0,
            gateway: !flow_acks.acks().flows.is_empty(),
            flow_acks,
        })
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
        let key = *self.key.for_id(p.key_id()).ok_or(Ok(Refusal::UnknownKey))?;
        match p.msg_type() {
            MsgType::Backup => {
                let b = BackupRepr::parse(&p, &key).map_err(|e| Ok(Refusal::from_wire(e)))?;
                if b.stream != self.stream {
                    return Err(Ok(Refusal::WrongStream));
                }
                // Launched on another link (the digest binds the link byte).
                if b.link != self.link {
                    return Err(Ok(Refusal::WrongLink));
                }
                self.enter_epoch(b.epoch)?;
                let received = &buf[..p.total_len()];
                // aead: decrypted before it is journaled, unless configured not to.
                let mut decrypted = None;
                if b.flags.contains(Flags::ENCRYPTED) && !self.journal_ciphertext {
                    if let Some(aead) = &self.payload_key {
                        let plain = &mut self.plain[..received.len()];
                        plain.copy_from_slice(received);
                        let n = decrypt_backup_frame(plain, aead, Some(&key))
                            .map_err(|_| Ok(Refusal::BadPayloadTag))?;
                        decrypted = Some(n);
                    }
                }
                self.counters.backup_frames += 1;
                self.note_watermark(b.watermark);
                let pdu = match decrypted {
                    Some(n) => &self.plain[..n],
                    None => received,
                };
                let run = self.run.as_mut().expect("enter_epoch opened a run");
                run.gateway |= b.content.tcp_segment().is_some();
                let appended = run.journal.append(b.seq, b.flags.bits(), now, pdu);
                match appended.map_err(|e| Err(self.journal_failed(e)))? {
                    Appended::Journaled => self.counters.journaled += 1,
                    Appended::Duplicate => self.counters.duplicates += 1,
                }
                self.last_heard_ns = Some(now);
                Ok(())
            }
            MsgType::Heartbeat => {
                let h = HeartbeatRepr::parse(&p, &key).map_err(|e| Ok(Refusal::from_wire(e)))?;
                if h.from_node {
                    return Err(Ok(Refusal::Reflected));
                }
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
                self.last_heard_ns = Some(now);
                Ok(())
            }
            MsgType::FlowAck => {
                // Verified like a heartbeat: digest, stream, link, epoch.
                let a = FlowAckRepr::parse(&p, &key).map_err(|e| Ok(Refusal::from_wire(e)))?;
                if a.stream != self.stream {
                    return Err(Ok(Refusal::WrongStream));
                }
                if a.link != self.link && a.link != ALL_LINKS {
                    return Err(Ok(Refusal::WrongLink));
                }
                self.enter_epoch(a.epoch)?;
                self.counters.flow_acks += 1;
                self.note_watermark(a.watermark);
                let run = self.run.as_mut().expect("enter_epoch opened a run");
                run.gateway = true;
                let advanced = run.flow_acks.note(FlowKey::of_ack(&a), a.acked);
                if advanced.map_err(|e| Err(self.journal_failed(e)))? {
                    self.counters.flow_acks_advanced += 1;
                }
                self.last_heard_ns = Some(now);
                Ok(())
            }
            // Target confirmations and resend requests come on the destination side,
            // never on the backup link.
            MsgType::Ack | MsgType::Confirm | MsgType::TargetConfirm | MsgType::Resend => {
                // Authentic or not, nothing we act on; say which.
                p.verify_digest(&key)
                    .map_err(|e| Ok(Refusal::from_wire(e)))?;
                Err(Ok(Refusal::UnexpectedType))
            }
        }
    }

    /// Counts a run of frames that fail authentication, and says loudly, once per
    /// run, that the key is wrong ([`WRONG_KEY_RUN`]). Any other refusal of an
    /// authentic frame ends the run too.
    pub fn note_auth(&mut self, r: Refusal) {
        if !matches!(r, Refusal::BadDigest | Refusal::UnknownKey) {
            if !matches!(
                r,
                Refusal::Runt
                    | Refusal::NotTaphold
                    | Refusal::NotForUs
                    | Refusal::WrongPeer
                    | Refusal::MultiSegment
                    | Refusal::Malformed
            ) {
                self.auth_failures_in_a_row = 0;
            }
            return;
        }
        self.auth_failures_in_a_row += 1;
        if self.auth_failures_in_a_row == WRONG_KEY_RUN {
            self.counters.wrong_key_alerts += 1;
            log::error!(
                "ALERT wrong_key: the last {WRONG_KEY_RUN} frames from the appliance on link {} failed the digest or named a key id we do not hold ({} bad_digest, {} unknown_key so far): this node's digest_key is not the appliance's, and nothing it sends is journaled or acked",
                self.link,
                self.counters.refused[Refusal::BadDigest as usize],
                self.counters.refused[Refusal::UnknownKey as usize],
            );
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

/// The journal of run `epoch`: the current one's or a held one's.
fn journal_of<'a>(
    current: &'a mut Option<Run>,
    held: &'a mut [Run],
    epoch: u64,
) -> Option<&'a mut Journal> {
    match current {
        Some(r) if r.id.epoch == epoch => Some(&mut r.journal),
        _ => held
            .iter_mut()
            .find(|r| r.id.epoch == epoch)
            .map(|r| &mut r.journal),
    }
}

/// What the poll loop hands [`Intake::handle_dest`] back to do with the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestAction {
    /// Send the frame back: it holds our ARP reply, this long.
    Reply(usize),
    /// Free it: used or refused (counted).
    Done,
}

impl Intake {
    /// One frame received on port D (Ethernet header on) at `now`: an ARP request
    /// for us (rewritten into the reply), a target confirmation (remembered), a resend
    /// request (queued), or refused with one named reason. Never journals anything.
    pub fn handle_dest(&mut self, f: &mut [u8], now: u64) -> DestAction {
        let Some(addr) = self.dest else {
            return DestAction::Done;
        };
        self.dest_counters.frames_rx += 1;
        match judge(f, &addr, &self.arbiter_keys) {
            DestFrame::Arp { len } => return DestAction::Reply(len),
            DestFrame::Confirm(c) => {
                self.dest_counters.target_confirms += 1;
                if self.confirmations.note(&c, now) == Noted::Stale {
                    self.dest_counters.target_confirms_stale += 1;
                }
            }
            DestFrame::Resend { req, to } => {
                self.resend.requests += 1;
                if self.resends.push(ResendJob::of(&req, to)).is_err() {
                    self.resend.queue_full += 1;
                }
            }
            DestFrame::Refused(r) => self.dest_counters.refuse(r),
        }
        DestAction::Done
    }

    /// Counts a frame on D that did not fit one mbuf.
    pub fn dest_multi_segment(&mut self) {
        self.dest_counters.frames_rx += 1;
        self.dest_counters
            .refuse(destination::DestRefusal::MultiSegment);
    }

    /// The run of `epoch`, current or held.
    fn run_mut(&mut self, epoch: u64) -> Option<&mut Run> {
        match &mut self.run {
            Some(r) if r.id.epoch == epoch => Some(r),
            _ => self.held.iter_mut().find(|r| r.id.epoch == epoch),
        }
    }

    /// Every run held, in epoch order (the current one among them).
    fn runs(&self) -> impl Iterator<Item = &Run> {
        let cur = self.run.as_ref();
        let below = self
            .held
            .iter()
            .filter(move |r| cur.is_none_or(|c| r.id.epoch < c.id.epoch));
        let above = self
            .held
            .iter()
            .filter(move |r| cur.is_some_and(|c| r.id.epoch > c.id.epoch));
        below.chain(cur).chain(above)
    }

    /// Whether resend requests wait to be answered.
    pub fn resends_pending(&self) -> bool {
        !self.resends.is_empty()
    }

    /// Answers waiting resend requests, in the order they came, from the journal of
    /// the run each names: at most `room` deliveries (each handed to `send` with
    /// where it goes). Returns how many went.
    pub fn answer_resends(
        &mut self,
        room: usize,
        mut send: impl FnMut(&Delivery<'_>, &Endpoint) -> Offer,
    ) -> usize {
        let mut sent = 0;
        while sent < room {
            let Some(&mut mut job) = self.resends.front_mut() else {
                break;
            };
            let to = job.to;
            let before = self.resend.answered;
            let done = match journal_of(&mut self.run, &mut self.held, job.epoch) {
                Some(j) => answer(
                    &mut job,
                    j,
                    room - sent,
                    &mut self.resend,
                    &mut self.read_error,
                    |d| send(d, &to),
                ),
                None => {
                    self.resend.unknown_run += 1;
                    self.resend.missing = self.resend.missing.saturating_add(job.remaining());
                    true
                }
            };
            sent += (self.resend.answered - before) as usize;
            if done {
                self.resends.pop();
            } else {
                if let Some(f) = self.resends.front_mut() {
                    *f = job;
                }
                // No room, or this pass's lookups are spent: on with it next pass.
                break;
            }
        }
        sent
    }

    /// Trims every run held as `journal.trim_below` says (see
    /// [`destination::trim_bound`]); the current run's bound also uses the primary's
    /// released watermark. An older run wholly covered gives up its last segment too.
    /// Returns (runs trimmed, segments deleted).
    pub fn trim(&mut self) -> Result<(u64, u64), String> {
        let mode = self.cfg.journal.trim_below;
        let (mut runs, mut segments) = (0u64, 0u64);
        let watermark = self.watermark;
        let mut failed = None;
        let cur_epoch = self.run.as_ref().map(|r| r.id.epoch);
        for r in self.run.iter_mut().chain(self.held.iter_mut()) {
            let current = Some(r.id.epoch) == cur_epoch;
            if r.gateway && mode == TrimBelow::Released {
                // Released is not acknowledged by the exchange (gateway mode).
                continue;
            }
            let delivered = self.confirmations.delivered(r.id.epoch);
            let Some(bound) = trim_bound(
                mode,
                current,
                watermark,
                r.journal.contiguous_seq(),
                delivered,
            ) else {
                continue;
            };
            let trimmed = if current {
                r.journal.trim_below(bound)
            } else {
                // Nothing more comes to an older run: its active segment may go too.
                r.journal.trim_below_all(bound)
            };
            match trimmed {
                Ok(n) => {
                    runs += 1;
                    segments += n as u64;
                }
                Err(e) => {
                    failed = Some((r.journal.config().dir.clone(), e));
                    break;
                }
            }
        }
        if let Some((dir, e)) = failed {
            return Err(format!(
                "journal {}: {e} — stopping: nothing more can be journaled or acked",
                dir.display()
            ));
        }
        Ok((runs, segments))
    }

    /// Recounts each run's records the destination has not confirmed (reading only
    /// the blocks that straddle its delivered-through). Returns the total.
    pub fn refresh_unconfirmed(&mut self) -> u64 {
        let mut total = 0u64;
        for r in self.run.iter_mut().chain(self.held.iter_mut()) {
            let d = self.confirmations.delivered(r.id.epoch).unwrap_or(0);
            match r.journal.records_above(d) {
                Ok(n) => r.unconfirmed = n,
                Err(e) => {
                    // Counted whole: a damaged block is not confirmed either.
                    r.unconfirmed = r.journal.records_on_disk();
                    self.read_error = Some(e.to_string());
                }
            }
            total += r.unconfirmed;
        }
        total
    }

    /// What a takeover now would replay: every run held, in epoch order, above what
    /// the destination confirmed delivered. Without a confirmation of a run heard
    /// since start, under `trim_below: delivered` its trim floor stands for one
    /// (nothing below it was trimmed unconfirmed); otherwise nothing is known and the
    /// run is replayed from its first seq.
    pub fn takeover_plan(
        &self,
        trigger: Trigger,
        replay_to: std::net::SocketAddrV4,
        rate_per_s: u64,
        now: u64,
    ) -> Takeover {
        let mode = self.cfg.journal.trim_below;
        let plans = self
            .runs()
            .map(|r| {
                let heard = self.confirmations.delivered(r.id.epoch);
                let floor = r.journal.floor();
                let by_floor = (mode == TrimBelow::Delivered && floor > 1).then(|| floor - 1);
                let delivered = match (heard, by_floor) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                RunPlan::new(
                    r.id,
                    delivered,
                    r.journal.highest_seq(),
                    self.cfg.journal.first_seq,
                )
            })
            .collect();
        Takeover::new(
            trigger,
            plans,
            self.not_opened.clone(),
            replay_to,
            rate_per_s,
            now,
        )
    }

    /// One step of `t` on the journal of the run it is at (none: the run is gone).
    /// `send` gets the deliveries of a replay step.
    pub fn takeover_step(
        &mut self,
        t: &mut Takeover,
        now: u64,
        room: usize,
        send: impl FnMut(&Delivery<'_>) -> Offer,
    ) {
        let Some(id) = t.current_run() else { return };
        let Some(run) = self.run_mut(id.epoch) else {
            t.run_lost("the run's journal is not open", now);
            return;
        };
        if t.is_checking() {
            t.check_step(&mut run.journal, now);
        } else {
            t.replay_step(&mut run.journal, now, room, send);
        }
    }

    /// When the primary was last heard (an authentic backup frame or heartbeat).
    pub fn last_heard_ns(&self) -> Option<u64> {
        self.last_heard_ns
    }

    /// Per run: what it holds and what the destination confirmed of it.
    fn runs_json(&self) -> serde_json::Value {
        let cur = self.run.as_ref().map(|r| r.id);
        let list: Vec<serde_json::Value> = self
            .runs()
            .map(|r| {
                let j = &r.journal;
                let c = self.confirmations.get(r.id.epoch);
                serde_json::json!({
                    "stream": r.id.stream,
                    "epoch": r.id.epoch,
                    "current": Some(r.id) == cur,
                    "records": j.records_on_disk(),
                    "bytes": j.bytes_on_disk(),
                    "segments": j.segment_count(),
                    "contiguous_seq": j.contiguous_seq(),
                    "highest_seq": j.highest_seq(),
                    "floor": j.floor(),
                    "delivered_through": c.map(|c| c.delivered),
                    "highest_seen": c.map(|c| c.highest_seen),
                    "skipped": c.map(|c| c.skipped),
                    "confirms": c.map_or(0, |c| c.confirms),
                    "unconfirmed_records": r.unconfirmed,
                    // Gateway mode: the highest acked per flow (flow-acks).
                    "flow_acks": r.flow_acks.acks().flows.iter()
                        .map(|(k, a)| (k.to_string(), serde_json::Value::from(*a)))
                        .collect::<serde_json::Map<_, _>>(),
                })
            })
            .collect();
        serde_json::Value::Array(list)
    }

    /// Totals over every run held.
    fn journal_totals(&self) -> (usize, u64, u64, u64) {
        self.runs().fold((0, 0, 0, 0), |(n, rec, bytes, unc), r| {
            (
                n + 1,
                rec + r.journal.records_on_disk(),
                bytes + r.journal.bytes_on_disk(),
                unc + r.unconfirmed,
            )
        })
    }
}

/// Configures and starts port `name` (one rx and one tx queue, promiscuous).
fn start_port(eal: &Eal, name: &str, pool: &Mempool, what: &str) -> Result<Port, String> {
    let mut port = Port::by_name(eal, name).map_err(err)?;
    port.configure(&PortConfig::default(), pool).map_err(err)?;
    port.start().map_err(err)?;
    if let Ok(l) = port.link() {
        log::info!(
            "{what} port {name} (id {}): link {}",
            port.id(),
            if l.up { "up" } else { "down" }
        );
    }
    Ok(port)
}

impl Node {
    /// Takes commands from the control socket's thread through `rx`.
    /// Starts publishing the status (now, then every stats interval) and
    /// returns the shared copy.
    pub fn publish_status(&mut self) -> std::sync::Arc<std::sync::Mutex<serde_json::Value>> {
        let p = std::sync::Arc::new(std::sync::Mutex::new(self.status()));
        self.published = Some(p.clone());
        p
    }

    pub fn attach_control(&mut self, rx: mpsc::Receiver<Command>) {
        self.control = Some(rx);
    }

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
        let mut intake = Intake::new(cfg);
        intake.open_held()?;
        let pool = Mempool::new(
            eal,
            "taphold_backup",
            cfg.mempool.mbufs,
            cfg.mempool.cache,
            cfg.mempool.data_room,
            -1,
        )
        .map_err(err)?;
        let port = start_port(eal, &cfg.port, &pool, "backup link")?;
        let d = match &cfg.destination {
            Some(dc) => Some(DestPort {
                port: start_port(eal, &dc.port, &pool, "destination")?,
                rx: Burst::new(),
                tx: Burst::new(),
                ours: Endpoint {
                    mac: dc.mac.0,
                    ip: dc.ip.octets(),
                    port: dc.udp_port,
                },
                replay_to: Endpoint {
                    mac: dc.peer_mac.0,
                    ip: dc.replay_to.ip().octets(),
                    port: dc.replay_to.port(),
                },
            }),
            None => None,
        };
        let takeover = cfg.takeover();
        Ok(Node {
            port,
            d,
            pool,
            clock: Clock::new(eal),
            intake,
            control: None,
            published: None,
            takeover: None,
            auto_after_ns: takeover.auto_after_ms.map(|ms| ms * 1_000_000),
            auto_fired_at: None,
            alert_threshold: cfg.journal.alert_unconfirmed_records,
            alerting: false,
            alerts: 0,
            last_alert_log: None,
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
            let (n, work) = match self.poll() {
                Ok(n) => n,
                Err(e) => {
                    alloc_count::set_hot(false);
                    return Err(e);
                }
            };
            passes = passes.wrapping_add(1);
            if n > 0 {
                rx_since_check = true;
            }
            if work > 0 {
                idler.pass(work); // resets the backoff
            }
            // Wall-clock housekeeping every 64 busy passes, and on every idle one.
            if work > 0 && passes & 63 != 0 {
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
            // Idle: nothing received for that long, and nothing left to send (a
            // resend request being answered, a takeover under way).
            if opts
                .exit_when_idle_ms
                .is_some_and(|ms| now.duration_since(last_rx) >= Duration::from_millis(ms))
                && !self.busy()
            {
                break "idle";
            }
            self.control_and_auto();
            if now >= next_trim || now >= next_stats {
                alloc_count::set_hot(false);
                if now >= next_trim {
                    next_trim = now + self.trim_every;
                    self.trim()?;
                    self.check_unconfirmed();
                }
                if now >= next_stats {
                    next_stats = now + self.stats_every;
                    println!("{}", self.stats_line(now.duration_since(started)));
                    if let Some(p) = &self.published {
                        let status = self.status();
                        *p.lock().unwrap_or_else(|e| e.into_inner()) = status;
                    }
                }
                alloc_count::set_hot(true);
            }
            if work == 0 {
                idler.pass(0);
            }
        };
        alloc_count::set_hot(false);
        Ok(why)
    }

    /// Whether something is left to send: resend answers, a takeover.
    fn busy(&self) -> bool {
        self.intake.resends_pending() || self.takeover.as_ref().is_some_and(|a| !a.t.is_done())
    }

    /// Commands from the control socket, and the automatic takeover: between bursts.
    fn control_and_auto(&mut self) {
        if let Some(rx) = &self.control {
            if let Ok(cmd) = rx.try_recv() {
                alloc_count::set_hot(false);
                self.command(cmd);
                alloc_count::set_hot(true);
            }
        }
        let (Some(after), Some(heard)) = (self.auto_after_ns, self.intake.last_heard_ns()) else {
            return;
        };
        let now = self.clock.now_ns();
        if now.saturating_sub(heard) >= after
            && self.auto_fired_at != Some(heard)
            && !self.busy_taking_over()
        {
            // Once per silence: the primary must be heard again to arm it again.
            self.auto_fired_at = Some(heard);
            alloc_count::set_hot(false);
            log::warn!(
                "TAKEOVER (auto): nothing authentic from the primary on the backup link for {} ms (takeover.auto_after_ms {}): taking over. If the primary is alive (its backup link cut), two senders now feed the destination: fence it",
                now.saturating_sub(heard) / 1_000_000,
                after / 1_000_000
            );
            if let Err(e) = self.start_takeover(Trigger::Auto) {
                log::warn!("TAKEOVER (auto): {e}");
            }
            alloc_count::set_hot(true);
        }
    }

    fn busy_taking_over(&self) -> bool {
        self.takeover.as_ref().is_some_and(|a| !a.t.is_done())
    }

    /// One command from the control socket.
    fn command(&mut self, cmd: Command) {
        match cmd.request {
            Request::Status => {
                self.intake.refresh_unconfirmed();
                let _ = cmd.reply.send(self.status().to_string());
            }
            Request::Takeover => {
                log::warn!("TAKEOVER (command): asked on the control socket");
                match self.start_takeover(Trigger::Command) {
                    Ok(()) => {
                        if let Some(a) = &mut self.takeover {
                            a.waiters.push(cmd.reply);
                        }
                    }
                    Err(e) => {
                        log::warn!("TAKEOVER (command): {e}");
                        let _ = cmd.reply.send(error_reply(&e));
                    }
                }
            }
        }
    }

    /// Starts a takeover, unless one is under way or there is no port to replay on.
    fn start_takeover(&mut self, trigger: Trigger) -> Result<(), String> {
        if let Some(a) = self.takeover.as_ref().filter(|a| !a.t.is_done()) {
            return Err(format!(
                "a takeover ({}) is already {}: `status` shows its progress",
                a.t.trigger.name(),
                a.t.state()
            ));
        }
        let Some(d) = &self.d else {
            return Err("no destination port is configured: there is nowhere to replay to".into());
        };
        let to = std::net::SocketAddrV4::new(d.replay_to.ip.into(), d.replay_to.port);
        let rate = self.intake.cfg.takeover().rate_per_s;
        // Everything journaled so far is in the files the check reads.
        if let Some(r) = &mut self.intake.run {
            r.journal
                .flush()
                .map_err(|e| self.intake.journal_failed(e))?;
        }
        let t = self
            .intake
            .takeover_plan(trigger, to, rate, self.clock.now_ns());
        log::warn!(
            "TAKEOVER ({}): checking {} run(s) before replaying: {}",
            trigger.name(),
            t.runs.len(),
            t.runs
                .iter()
                .map(|p| format!("{} seqs {}..{}", p.run, p.from, p.to))
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.takeover = Some(ActiveTakeover {
            t,
            plan_logged: false,
            reported: false,
            waiters: Vec::new(),
        });
        Ok(())
    }

    /// One step of the takeover under way, after the check logs what it found, and
    /// at the end the report.
    fn takeover_step(&mut self, now: u64) -> usize {
        let Node {
            takeover,
            intake,
            d,
            pool,
            ..
        } = self;
        let (Some(a), Some(d)) = (takeover.as_mut(), d.as_mut()) else {
            return 0;
        };
        if a.t.is_done() && a.reported {
            return 0;
        }
        let mut sent = 0;
        if a.t.is_checking() {
            // Bookkeeping of a takeover (the list of what cannot be replayed), not
            // the per-frame path.
            alloc_count::set_hot(false);
            intake.takeover_step(&mut a.t, now, 0, |_| Offer::NoRoom);
            alloc_count::set_hot(true);
        } else if !a.t.is_done() {
            let room = d.tx.room();
            let (ours, to) = (d.ours, d.replay_to);
            intake.takeover_step(&mut a.t, now, room, |del| {
                let r = send_delivery(pool, &mut d.tx, del, &ours, &to);
                if r == Offer::Taken {
                    sent += 1;
                }
                r
            });
        }
        if !a.t.is_checking() && !a.plan_logged {
            alloc_count::set_hot(false);
            a.plan_logged = true;
            for l in a.t.plan_lines() {
                log::warn!("{l}");
            }
            alloc_count::set_hot(true);
        }
        if a.t.is_done() && !a.reported {
            alloc_count::set_hot(false);
            Self::report_takeover(a);
            alloc_count::set_hot(true);
        }
        sent
    }

    /// Logs the end of a takeover and answers whoever waits for it.
    fn report_takeover(a: &mut ActiveTakeover) {
        a.reported = true;
        let t = &a.t;
        log::warn!(
            "TAKEOVER ({}) {}: replayed {} message(s) to {}: {}; {} seq(s) could not be replayed",
            t.trigger.name(),
            t.state(),
            t.replayed(),
            t.replay_to,
            t.runs
                .iter()
                .map(|p| match (p.first, p.last) {
                    (Some(f), Some(l)) => format!("{} {} ({f}..{l})", p.run, p.replayed),
                    _ => format!("{} 0", p.run),
                })
                .collect::<Vec<_>>()
                .join(", "),
            t.unreplayable()
        );
        let report = serde_json::json!({ "takeover": t.report() }).to_string();
        for w in a.waiters.drain(..) {
            let _ = w.send(report.clone());
        }
    }

    /// One pass: a burst in from each port, the fsync policy, an ack and a heartbeat
    /// out if due, resend answers and the takeover's step. Returns the frames received
    /// and the work done (frames received and sent).
    pub fn poll(&mut self) -> Result<(usize, usize), String> {
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
                match handled {
                    Ok(()) => self.intake.auth_failures_in_a_row = 0,
                    Err(r) => {
                        let r = r?;
                        self.intake.counters.refuse(r);
                        self.intake.note_auth(r);
                    }
                }
                // The mbuf is freed here, whatever became of it.
            }
        }
        let dn = self.poll_dest(now);
        if let Some(run) = &mut self.intake.run {
            if let Err(e) = run.journal.maybe_sync(now) {
                return Err(self.intake.journal_failed(e));
            }
            // Flow acks of this burst: durable before the next burst is taken.
            if let Err(e) = run.flow_acks.sync() {
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
        let mut sent = self.answer_resends();
        if self.takeover.is_some() {
            sent += self.takeover_step(now);
        }
        if let Some(d) = &mut self.d {
            if !d.tx.is_empty() {
                d.port.tx_burst(0, &mut d.tx);
            }
        }
        Ok((n + dn, n + dn + sent))
    }

    /// A burst from port D: ARP requests answered, confirmations noted, resend
    /// requests queued, the rest counted. Returns the frames received.
    fn poll_dest(&mut self, now: u64) -> usize {
        let Some(d) = &mut self.d else { return 0 };
        let n = d.port.rx_burst(0, &mut d.rx);
        while let Some(mut m) = d.rx.pop() {
            if m.segments() != 1 {
                self.intake.dest_multi_segment();
                continue;
            }
            if let DestAction::Reply(len) = self.intake.handle_dest(m.data_mut(), now) {
                // Our ARP reply, in the request's own mbuf: padded, sent back.
                let padded = m.set_len(len.max(MIN_FRAME_LEN));
                if padded {
                    m.data_mut()[len..].fill(0);
                }
                if !padded || d.tx.push(m).is_err() {
                    self.intake.dest_counters.arp_reply_dropped += 1;
                } else {
                    self.intake.dest_counters.arp_replies += 1;
                }
            }
            // Anything else is freed here.
        }
        n
    }

    /// Answers waiting resend requests, as far as D's tx burst has room.
    fn answer_resends(&mut self) -> usize {
        let Node {
            intake, d, pool, ..
        } = self;
        let Some(d) = d.as_mut() else { return 0 };
        if !intake.resends_pending() || d.tx.is_full() {
            return 0;
        }
        let room = d.tx.room();
        let ours = d.ours;
        intake.answer_resends(room, |del, to| {
            send_delivery(pool, &mut d.tx, del, &ours, to)
        })
    }

    /// Queues one frame of ours to the appliance: a PDU of `pdu_len` bytes
    /// that `emit` writes.
    fn send(
        &mut self,
        pdu_len: usize,
        emit: impl FnOnce(&mut [u8], &DigestKey) -> Result<u64, WireError>,
    ) {
        let mut frame = [0u8; 128];
        let key = *self.intake.key.sealing(self.clock.now_ns());
        let Ok((len, _)) = link::emit_frame(
            &mut frame,
            self.intake.peer_mac,
            self.intake.mac,
            pdu_len,
            |pdu| emit(pdu, &key),
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
            from_node: true,
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

    /// Trims every run as `journal.trim_below` says ([`Intake::trim`]).
    fn trim(&mut self) -> Result<(), String> {
        let (_, n) = self.intake.trim()?;
        self.intake.counters.trims += 1;
        self.intake.counters.segments_trimmed += n;
        Ok(())
    }

    /// Recounts what the destination has not confirmed, and raises (or clears) the
    /// ALERT of `journal.alert_unconfirmed_records`. Never deletes anything.
    fn check_unconfirmed(&mut self) {
        let total = self.intake.refresh_unconfirmed();
        let Some(limit) = self.alert_threshold else {
            return;
        };
        if total >= limit {
            let again = self
                .last_alert_log
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
            if !self.alerting {
                self.alerting = true;
                self.alerts += 1;
            }
            if again {
                self.last_alert_log = Some(Instant::now());
                let (runs, records, bytes, _) = self.intake.journal_totals();
                log::warn!(
                    "ALERT: {total} journaled record(s) not confirmed delivered by the destination (journal.alert_unconfirmed_records {limit}); they are kept until a target confirmation covers them, so the journal grows: {records} records, {bytes} bytes in {runs} run(s) in {}. Is the destination's arbiter confirming?",
                    self.intake.cfg.journal.dir.display()
                );
            }
        } else if self.alerting {
            self.alerting = false;
            self.last_alert_log = None;
            log::info!(
                "alert cleared: {total} unconfirmed record(s), below journal.alert_unconfirmed_records {limit}"
            );
        }
    }

    /// Stops: syncs the journal, sends the last ack, drains the tx queues; a takeover
    /// under way is reported as interrupted.
    pub fn shutdown(&mut self) -> Result<(), String> {
        // The summary's unconfirmed counts as they are at the end.
        self.intake.refresh_unconfirmed();
        if let Some(a) = &mut self.takeover {
            if !a.reported {
                a.t.interrupted = !a.t.is_done();
                Self::report_takeover(a);
            }
        }
        if let Some(d) = &mut self.d {
            for _ in 0..100 {
                if d.tx.is_empty() {
                    break;
                }
                d.port.tx_burst(0, &mut d.tx);
            }
            self.intake.dest_counters.tx_dropped += d.tx.len() as u64;
            d.tx.clear();
        }
        if let Some(run) = &mut self.intake.run {
            if let Err(e) = run.journal.sync().and_then(|_| run.flow_acks.sync()) {
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
        let (runs, records, bytes, unconfirmed) = self.intake.journal_totals();
        let mut line = format!(
            "[{:>7.1}s] rx {} journaled {} dup {} refused {} | ack {} (seq {}) hb tx {} rx {} | {run}, watermark {} | all runs: {runs} runs {records} records {bytes} bytes, {unconfirmed} unconfirmed",
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
        );
        if self.d.is_some() {
            let (dc, r) = (&self.intake.dest_counters, &self.intake.resend);
            line.push_str(&format!(
                " | D rx {} confirms {} resend req {} answered {} missing {}",
                dc.frames_rx, dc.target_confirms, r.requests, r.answered, r.missing
            ));
        }
        if let Some(a) = &self.takeover {
            line.push_str(&format!(
                " | takeover {} replayed {}",
                a.t.state(),
                a.t.replayed()
            ));
        }
        if let Some(e) = &self.intake.read_error {
            line.push_str(&format!(" | last read error: {e}"));
        }
        line
    }

    /// What `status` on the control socket answers: the summary as it stands.
    pub fn status(&self) -> serde_json::Value {
        let mut v = self.summary("running");
        v["stopped_by"] = serde_json::Value::Null;
        v
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
        let mut v = serde_json::json!({
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
            "flow_acks": c.flow_acks,
            "flow_acks_advanced": c.flow_acks_advanced,
            "wrong_key_alerts": c.wrong_key_alerts,
            "run": run,
            "journal_dir": self.intake.cfg.journal.dir,
            "journal": journal,
            "port": port.map(|p| serde_json::json!({
                "ipackets": p.ipackets, "opackets": p.opackets, "imissed": p.imissed,
                "ierrors": p.ierrors, "oerrors": p.oerrors, "rx_nombuf": p.rx_nombuf,
            })),
            "hot_path_allocations": alloc_count::hot_allocations(),
        });
        if let (Some(m), serde_json::Value::Object(x)) = (v.as_object_mut(), self.summary_more()) {
            m.extend(x);
        }
        v
    }

    /// The rest of the summary: every run, the destination side, the takeover.
    fn summary_more(&self) -> serde_json::Value {
        let i = &self.intake;
        let trim_below = match i.cfg.journal.trim_below {
            TrimBelow::Released => "released",
            TrimBelow::Delivered => "delivered",
        };
        let not_opened: Vec<serde_json::Value> = i
            .not_opened
            .iter()
            .map(|(r, e)| serde_json::json!({ "stream": r.stream, "epoch": r.epoch, "error": e }))
            .collect();
        let (runs, records, bytes, unconfirmed) = i.journal_totals();
        let now = self.clock.now_ns();
        let heard = i.last_heard_ns();
        let port_d = self.d.as_ref().and_then(|d| d.port.stats().ok()).map(|p| {
            serde_json::json!({
                "ipackets": p.ipackets, "opackets": p.opackets, "imissed": p.imissed,
                "ierrors": p.ierrors, "oerrors": p.oerrors, "rx_nombuf": p.rx_nombuf,
            })
        });
        serde_json::json!({
            "trim_below": trim_below,
            "runs": i.runs_json(),
            "runs_not_opened": not_opened,
            "journal_total": {
                "runs": runs, "records": records, "bytes": bytes,
                "unconfirmed_records": unconfirmed,
            },
            "alert": {
                "unconfirmed_records_threshold": self.alert_threshold,
                "alerting": self.alerting,
                "alerts": self.alerts,
            },
            "primary": {
                "last_heard_ns": heard,
                "silent_ms": heard.map(|h| now.saturating_sub(h) / 1_000_000),
                "auto_takeover_after_ms": self.auto_after_ns.map(|n| n / 1_000_000),
            },
            "destination": self.d.as_ref().map(|_| i.dest_counters.json()),
            "resend": self.d.as_ref().map(|_| serde_json::json!(i.resend)),
            "last_read_error": i.read_error,
            "confirmations_forgotten": i.confirmations.evicted,
            "takeover": self.takeover.as_ref().map(|a| a.t.report()),
            "port_d": port_d,
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
             digest_key: \"{KEY}\"\nallow_demo_key: true\njournal:\n  dir: {}\n  segment_bytes: 4096\n",
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
                    link: 0,
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
                    from_node: false,
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

#[cfg(test)]
#[path = "node_dest_tests.rs"]
mod dest_tests;

#[cfg(test)]
#[path = "flow_tests.rs"]
mod flow_tests;
