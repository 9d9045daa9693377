//! The destination side of the node: port D, toward the destination's arbiter.
//!
//! What arrives on D ([`judge`]): ARP requests for our address (answered in place, as
//! the appliance's ingress does on P), and UDP datagrams to our address and port
//! carrying one keyed taphold PDU: a **target confirmation** (type 5: every seq of
//! (stream, epoch) up to its seq was delivered to the application, so the backup
//! copies may go — seed 004's "delete only once the target confirmed") or a **resend
//! request** (type 6: send seqs `seq .. seq + count` of (stream, epoch) again).
//! Everything else is refused with one named reason, and counted.
//!
//! What leaves on D: **delivery datagrams** built from journal records
//! ([`delivery_of`], [`write_delivery`]): the delivery header (stream, epoch, seq,
//! flags, the message's original source, release time) then the payload, exactly as the
//! appliance with `framing: taphold` releases it, flagged RETRANSMIT when answering a
//! resend request ([`answer`]) and POSSIBLE_DUPLICATE in a takeover (`takeover.rs`).
//!
//! Everything here is pure or plain file I/O through the journal: no DPDK. The poll loop
//! (`node.rs`) hands it frames and mbuf bytes.

use serde::Serialize;
use taphold_journal::{Journal, RecordRef};
use taphold_wire::arp;
use taphold_wire::classify::{classify, Classified, DropReason, PrimaryAddr};
use taphold_wire::delivery::{self, DeliveryRepr};
use taphold_wire::digest::KeyRing;
use taphold_wire::emit::{emit_udp_headers, Endpoint, UDP_FRAME_HEADER_LEN};
use taphold_wire::taphold::{
    BackupRepr, Content, Flags, MsgType, Packet, ResendRepr, TargetConfirmRepr,
};
use taphold_wire::WireError;

use crate::config::TrimBelow;

/// Largest UDP payload accepted on D: confirmations and resend requests are 64 bytes.
pub const MAX_REQUEST_LEN: u16 = 512;

/// Our address on D.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestAddr {
    pub ours: Endpoint,
    /// The stream we journal: confirmations and requests of another are refused.
    pub stream: u32,
}

/// Why a frame received on D was not used (beyond the classifier's own reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestRefusal {
    /// Not an ARP request for us nor a datagram to our address and port: the
    /// classifier's reason (`taphold_wire::classify::DropReason`).
    Dropped(DropReason),
    /// A datagram to our port that is not a valid taphold PDU.
    Malformed,
    /// Keyed digest wrong: corrupted, or not made with our key.
    BadDigest,
    /// It names a key id we hold no arbiter key of.
    UnknownKey,
    /// Authentic, of another stream.
    WrongStream,
    /// Authentic, of a type the arbiter does not send us (backup, heartbeat, ack,
    /// confirmation).
    UnexpectedType,
    /// A frame that did not fit one mbuf.
    MultiSegment,
}

impl DestRefusal {
    /// Our own reasons, in counter order.
    pub const OWN: [DestRefusal; 6] = [
        DestRefusal::Malformed,
        DestRefusal::BadDigest,
        DestRefusal::UnknownKey,
        DestRefusal::WrongStream,
        DestRefusal::UnexpectedType,
        DestRefusal::MultiSegment,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DestRefusal::Dropped(r) => r.as_str(),
            DestRefusal::Malformed => "malformed",
            DestRefusal::BadDigest => "bad_digest",
            DestRefusal::UnknownKey => "unknown_key",
            DestRefusal::WrongStream => "wrong_stream",
            DestRefusal::UnexpectedType => "unexpected_type",
            DestRefusal::MultiSegment => "multi_segment",
        }
    }

    fn own_index(self) -> Option<usize> {
        DestRefusal::OWN.iter().position(|r| *r == self)
    }

    fn from_wire(e: WireError) -> DestRefusal {
        match e {
            WireError::BadDigest => DestRefusal::BadDigest,
            _ => DestRefusal::Malformed,
        }
    }
}

/// What a frame received on D is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestFrame {
    /// An ARP request for our IP: the frame now holds our reply, `len` bytes long.
    Arp {
        len: usize,
    },
    /// An authentic target confirmation of our stream.
    Confirm(TargetConfirmRepr),
    /// An authentic resend request of our stream, and where the answers go (the
    /// request's UDP source, through the MAC it came from).
    Resend {
        req: ResendRepr,
        to: Endpoint,
    },
    Refused(DestRefusal),
}

/// Judges one frame received on D (Ethernet header on). An ARP request for us is
/// rewritten in place into the reply; nothing else is changed.
pub fn judge(frame: &mut [u8], addr: &DestAddr, keys: &KeyRing) -> DestFrame {
    let ours = PrimaryAddr {
        mac: addr.ours.mac,
        ip: addr.ours.ip,
        udp_port: addr.ours.port,
        max_payload: MAX_REQUEST_LEN,
    };
    let meta = match classify(frame, &ours) {
        // Every datagram to our one port is a request (`classify` has no
        // control port, so never says Control).
        Classified::Message(m) | Classified::Control(m) => m,
        Classified::ArpRequest => {
            return match arp::reply_in_place(frame, addr.ours.mac, addr.ours.ip) {
                Ok(len) => DestFrame::Arp { len },
                Err(_) => DestFrame::Refused(DestRefusal::Dropped(DropReason::ArpOther)),
            }
        }
        Classified::Drop(r) => return DestFrame::Refused(DestRefusal::Dropped(r)),
    };
    let at = usize::from(meta.payload_off);
    let pdu = &frame[at..at + usize::from(meta.payload_len)];
    match request(pdu, addr.stream, keys) {
        Ok(Request::Confirm(c)) => DestFrame::Confirm(c),
        Ok(Request::Resend(req)) => DestFrame::Resend {
            req,
            to: Endpoint {
                mac: meta.src_mac,
                ip: meta.src_ip,
                port: meta.src_port,
            },
        },
        Err(r) => DestFrame::Refused(r),
    }
}

enum Request {
    Confirm(TargetConfirmRepr),
    Resend(ResendRepr),
}

/// The PDU of a datagram to our port.
fn request(pdu: &[u8], stream: u32, keys: &KeyRing) -> Result<Request, DestRefusal> {
    let p = Packet::new_checked(pdu).map_err(|_| DestRefusal::Malformed)?;
    let key = keys.for_id(p.key_id()).ok_or(DestRefusal::UnknownKey)?;
    let r = match p.msg_type() {
        MsgType::TargetConfirm => {
            let c = TargetConfirmRepr::parse(&p, key).map_err(DestRefusal::from_wire)?;
            (c.stream, Request::Confirm(c))
        }
        MsgType::Resend => {
            let r = ResendRepr::parse(&p, key).map_err(DestRefusal::from_wire)?;
            (r.stream, Request::Resend(r))
        }
        MsgType::Backup
        | MsgType::Heartbeat
        | MsgType::Ack
        | MsgType::Confirm
        | MsgType::FlowAck => {
            // Authentic or not, nothing we act on here; say which.
            p.verify_digest(key).map_err(DestRefusal::from_wire)?;
            return Err(DestRefusal::UnexpectedType);
        }
    };
    if r.0 != stream {
        return Err(DestRefusal::WrongStream);
    }
    Ok(r.1)
}

/// Counters of D (the poll loop's thread only).
#[derive(Debug, Default, Clone)]
pub struct DestCounters {
    pub frames_rx: u64,
    pub arp_replies: u64,
    /// ARP replies we could not queue (tx burst full).
    pub arp_reply_dropped: u64,
    pub target_confirms: u64,
    /// Authentic confirmations whose delivered-through was below one already heard.
    pub target_confirms_stale: u64,
    pub dropped: [u64; DropReason::COUNT],
    pub refused: [u64; DestRefusal::OWN.len()],
    /// Frames we built on D but could not send (pool empty, tx queue full at shutdown).
    pub tx_dropped: u64,
}

impl DestCounters {
    pub fn refuse(&mut self, r: DestRefusal) {
        match r {
            DestRefusal::Dropped(d) => self.dropped[d.index()] += 1,
            own => {
                if let Some(i) = own.own_index() {
                    self.refused[i] += 1
                }
            }
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let refused: serde_json::Map<String, serde_json::Value> = DestRefusal::OWN
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name().to_string(), self.refused[i].into()))
            .collect();
        let dropped: serde_json::Map<String, serde_json::Value> = DropReason::ALL
            .iter()
            .map(|r| (r.as_str().to_string(), self.dropped[r.index()].into()))
            .collect();
        serde_json::json!({
            "frames_rx": self.frames_rx,
            "arp_replies": self.arp_replies,
            "arp_reply_dropped": self.arp_reply_dropped,
            "target_confirms": self.target_confirms,
            "target_confirms_stale": self.target_confirms_stale,
            "refused": refused,
            "dropped": dropped,
            "tx_dropped": self.tx_dropped,
        })
    }
}

/// What the destination confirmed of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Confirmed {
    pub epoch: u64,
    /// Delivered through: the highest a confirmation of this run said.
    pub delivered: u64,
    /// The highest seq the arbiter said it has received.
    pub highest_seen: u64,
    /// Seqs ≤ delivered the arbiter gave up on, as its latest confirmation says.
    pub skipped: u64,
    /// Authentic confirmations of this run.
    pub confirms: u64,
    /// When the last came (our clock, UNIX ns).
    pub last_ns: u64,
}

/// What a confirmation did to what we knew of its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noted {
    /// The first of its run.
    First,
    /// It raised delivered-through.
    Raised,
    /// It said what we knew.
    Same,
    /// Below what an earlier one said (reordered): changes nothing.
    Stale,
}

/// Runs whose confirmations are remembered at once.
pub const CONFIRMED_RUNS: usize = 64;

/// The latest target confirmation of each run, by epoch: kept apart from the runs
/// themselves, so that a confirmation that arrives before the run is opened (the two
/// ports are not ordered) still counts. Fixed size: when full, the smallest epoch is
/// forgotten (counted); no allocation.
#[derive(Debug, Clone)]
pub struct Confirmations {
    slots: [Option<Confirmed>; CONFIRMED_RUNS],
    /// Runs forgotten to make room.
    pub evicted: u64,
}

impl Default for Confirmations {
    fn default() -> Self {
        Confirmations {
            slots: [None; CONFIRMED_RUNS],
            evicted: 0,
        }
    }
}

impl Confirmations {
    /// Notes an authentic confirmation (of our stream) at `now`. Delivered-through
    /// never goes back: confirmations are cumulative, and a reordered older one
    /// changes nothing but the counts.
    pub fn note(&mut self, c: &TargetConfirmRepr, now: u64) -> Noted {
        let found = self
            .slots
            .iter()
            .position(|s| s.is_some_and(|s| s.epoch == c.epoch));
        let Some(i) = found else {
            let i = match self.slots.iter().position(Option::is_none) {
                Some(i) => i,
                None => {
                    self.evicted += 1;
                    (0..CONFIRMED_RUNS)
                        .min_by_key(|&i| self.slots[i].map_or(0, |s| s.epoch))
                        .unwrap_or(0)
                }
            };
            self.slots[i] = Some(Confirmed {
                epoch: c.epoch,
                delivered: c.seq,
                highest_seen: c.highest_seen,
                skipped: c.skipped,
                confirms: 1,
                last_ns: now,
            });
            return Noted::First;
        };
        let Some(s) = self.slots[i].as_mut() else {
            return Noted::Stale;
        };
        s.confirms += 1;
        s.last_ns = now;
        s.highest_seen = s.highest_seen.max(c.highest_seen);
        if c.seq < s.delivered {
            return Noted::Stale;
        }
        let raised = c.seq > s.delivered;
        s.delivered = c.seq;
        s.skipped = c.skipped;
        if raised {
            Noted::Raised
        } else {
            Noted::Same
        }
    }

    pub fn get(&self, epoch: u64) -> Option<&Confirmed> {
        self.slots.iter().flatten().find(|s| s.epoch == epoch)
    }

    /// Delivered-through of run `epoch`, if a confirmation of it was heard.
    pub fn delivered(&self, epoch: u64) -> Option<u64> {
        self.get(epoch).map(|s| s.delivered)
    }
}

/// The trim bound (exclusive: seqs below it may go) of one run, or none.
///
/// - `released`: the current run only, below the primary's released watermark and the
///   contiguous point (today's behaviour); older runs are kept.
/// - `delivered`: any run, below its delivered-through and the contiguous point —
///   and never without a confirmation of that run.
pub fn trim_bound(
    mode: TrimBelow,
    current: bool,
    released: u64,
    contiguous: u64,
    delivered: Option<u64>,
) -> Option<u64> {
    match mode {
        TrimBelow::Released => current.then(|| released.min(contiguous).saturating_add(1)),
        TrimBelow::Delivered => delivered.map(|d| d.min(contiguous).saturating_add(1)),
    }
}

/// A message to deliver: the header and the payload (borrowed from a journal record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery<'a> {
    pub header: DeliveryRepr,
    pub payload: &'a [u8],
}

impl Delivery<'_> {
    /// Bytes of the whole frame: Ethernet/IPv4/UDP, the header, the payload.
    pub fn frame_len(&self) -> usize {
        UDP_FRAME_HEADER_LEN + delivery::HEADER_LEN + self.payload.len()
    }
}

/// Why a journal record cannot be delivered again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotDeliverable {
    /// Journaled digest-only: the payload is not here. The message's original source.
    DigestOnly { src_ip: [u8; 4], src_port: u16 },
    /// A gateway-mode TCP segment (content mode 2 or 3): part of a TCP byte stream, not a
    /// datagram the arbiter could take (`journal export --flow` and `recover` serve
    /// those). The flow's source.
    TcpSegment { src_ip: [u8; 4], src_port: u16 },
    /// The record's bytes are not a backup frame (never expected: the journal holds
    /// what passed the checks, under a CRC).
    NotBackup,
    /// Journaled encrypted (`journal_ciphertext`, or no payload key): only
    /// `journal export --payload-key-file` reads it.
    Encrypted,
}

/// The delivery of the message in journal record `rec`, flagged `flags`: its original
/// source from the backup frame, release time the frame's launch time (the appliance's
/// `timestamp_ns`, what `journal export --format pcap` writes too).
pub fn delivery_of<'a>(rec: &RecordRef<'a>, flags: Flags) -> Result<Delivery<'a>, NotDeliverable> {
    let p = Packet::new_checked(rec.payload).map_err(|_| NotDeliverable::NotBackup)?;
    let b = BackupRepr::parse_verified_earlier(&p).map_err(|_| NotDeliverable::NotBackup)?;
    if b.flags.contains(Flags::ENCRYPTED) {
        return Err(NotDeliverable::Encrypted);
    }
    match b.content {
        Content::Full(payload) => Ok(Delivery {
            header: DeliveryRepr {
                flags,
                stream: b.stream,
                epoch: b.epoch,
                seq: b.seq,
                src_ip: b.src_ip,
                src_port: b.src_port,
                release_ns: b.timestamp_ns,
            },
            payload,
        }),
        Content::Digest(_) => Err(NotDeliverable::DigestOnly {
            src_ip: b.src_ip,
            src_port: b.src_port,
        }),
        Content::Tcp(_) | Content::FixCompact(_) => Err(NotDeliverable::TcpSegment {
            src_ip: b.src_ip,
            src_port: b.src_port,
        }),
    }
}

/// Writes delivery `d` as a UDP datagram from `from` to `to` into `frame` (at least
/// [`Delivery::frame_len`] bytes); returns the frame's length (never below the
/// Ethernet minimum: the header alone makes 82 bytes).
pub fn write_delivery(
    frame: &mut [u8],
    d: &Delivery<'_>,
    from: &Endpoint,
    to: &Endpoint,
) -> Result<usize, WireError> {
    let len = d.frame_len();
    let frame = frame.get_mut(..len).ok_or(WireError::Truncated)?;
    d.header.emit(&mut frame[UDP_FRAME_HEADER_LEN..])?;
    frame[UDP_FRAME_HEADER_LEN + delivery::HEADER_LEN..].copy_from_slice(d.payload);
    emit_udp_headers(frame, from, to, delivery::HEADER_LEN + d.payload.len())
}

/// What became of a delivery offered to the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// On its way: in the tx burst.
    Taken,
    /// No room now (pool empty, tx burst full): the same seq goes next pass.
    NoRoom,
    /// Larger than an mbuf holds: it can never go.
    TooLarge,
}

/// One resend request being answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResendJob {
    pub epoch: u64,
    /// The next seq to answer, and the last asked for.
    pub next: u64,
    pub last: u64,
    pub to: Endpoint,
    /// The seqs above the highest the run holds were counted missing.
    clamped: bool,
}

impl ResendJob {
    pub fn of(req: &ResendRepr, to: Endpoint) -> ResendJob {
        let seqs = req.seqs();
        ResendJob {
            epoch: req.epoch,
            next: *seqs.start(),
            last: *seqs.end(),
            to,
            clamped: false,
        }
    }

    /// Seqs still to answer.
    pub fn remaining(&self) -> u64 {
        if self.next > self.last {
            0
        } else {
            (self.last - self.next).saturating_add(1)
        }
    }
}

/// Resend requests waiting to be answered: a fixed ring, no allocation.
pub const RESEND_QUEUE: usize = 16;

#[derive(Debug, Clone, Default)]
pub struct ResendQueue {
    jobs: [Option<ResendJob>; RESEND_QUEUE],
    head: usize,
    len: usize,
}

impl ResendQueue {
    /// Queues a job; `Err` (nothing queued) when full.
    pub fn push(&mut self, j: ResendJob) -> Result<(), ResendJob> {
        if self.len == RESEND_QUEUE {
            return Err(j);
        }
        self.jobs[(self.head + self.len) % RESEND_QUEUE] = Some(j);
        self.len += 1;
        Ok(())
    }

    pub fn front_mut(&mut self) -> Option<&mut ResendJob> {
        if self.len == 0 {
            return None;
        }
        self.jobs[self.head].as_mut()
    }

    pub fn pop(&mut self) {
        if self.len > 0 {
            self.jobs[self.head] = None;
            self.head = (self.head + 1) % RESEND_QUEUE;
            self.len -= 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Counters of resend requests.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct ResendCounters {
    /// Authentic requests of our stream.
    pub requests: u64,
    /// Requests refused because RESEND_QUEUE were waiting (the arbiter asks again).
    pub queue_full: u64,
    /// Requests for a run this node does not hold (its seqs counted missing too).
    pub unknown_run: u64,
    /// Seqs answered: one delivery datagram each.
    pub answered: u64,
    /// Seqs asked for that the journal holds no record of (never received, trimmed,
    /// or above the highest seq held): no answer.
    pub missing: u64,
    /// Seqs journaled digest-only: no payload to send, no answer.
    pub digest_only: u64,
    /// Seqs journaled as gateway-mode TCP segments: not datagrams, no answer.
    pub tcp_segment: u64,
    /// Seqs whose record could not be read (damage; the error is logged at the next
    /// stats interval) or is not a backup frame: no answer.
    pub unreadable: u64,
    /// Seqs whose frame is larger than an mbuf: no answer.
    pub too_large: u64,
    /// Seqs journaled encrypted (`journal_ciphertext`): no answer.
    pub encrypted: u64,
}

/// Lookups one call of [`answer`] makes at most, found or not: a request for a long
/// range the journal does not hold must not hold up the poll loop.
pub const LOOKUPS_PER_PASS: u64 = 1024;

/// Answers from `job` (of the run `journal` holds): each seq with a full record is
/// handed to `send` as a delivery flagged RETRANSMIT, in seq order; the others are
/// counted. Stops after `max_sent` deliveries, [`LOOKUPS_PER_PASS`] lookups, or when
/// `send` has no room (that seq is tried again next time). Returns whether the job
/// is done; the last read error, if any, goes to `error`.
pub fn answer(
    job: &mut ResendJob,
    journal: &mut Journal,
    max_sent: usize,
    c: &mut ResendCounters,
    error: &mut Option<String>,
    mut send: impl FnMut(&Delivery<'_>) -> Offer,
) -> bool {
    if !job.clamped {
        // Above the highest seq held nothing is looked up: a request may name any
        // range (up to 2^32 seqs).
        job.clamped = true;
        let top = journal.highest_seq();
        if job.last > top {
            let from = job.next.max(top.saturating_add(1));
            c.missing = c.missing.saturating_add(job.last - from + 1);
            job.last = from - 1;
        }
    }
    let mut sent = 0usize;
    let mut lookups = 0u64;
    while job.next <= job.last && sent < max_sent && lookups < LOOKUPS_PER_PASS {
        lookups += 1;
        let seq = job.next;
        match journal.read(seq) {
            Ok(Some(rec)) => match delivery_of(&rec, Flags::RETRANSMIT) {
                Ok(d) => match send(&d) {
                    Offer::Taken => {
                        c.answered += 1;
                        sent += 1;
                    }
                    Offer::NoRoom => return false,
                    Offer::TooLarge => c.too_large += 1,
                },
                Err(NotDeliverable::DigestOnly { .. }) => c.digest_only += 1,
                Err(NotDeliverable::TcpSegment { .. }) => c.tcp_segment += 1,
                Err(NotDeliverable::NotBackup) => c.unreadable += 1,
                Err(NotDeliverable::Encrypted) => c.encrypted += 1,
            },
            Ok(None) => c.missing += 1,
            Err(e) => {
                c.unreadable += 1;
                *error = Some(e.to_string());
            }
        }
        // `next` past u64::MAX: the range ended there.
        match seq.checked_add(1) {
            Some(n) => job.next = n,
            None => return true,
        }
    }
    job.next > job.last
}
