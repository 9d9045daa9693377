//! What the roles publish about each backup link, and the control state the
//! main lcore publishes back.
//!
//! Each field has exactly one writer. The roles write plain facts (highest
//! seq launched, tapped, acked; heartbeat times); the main lcore reads them
//! every control tick, runs each link's health state machine, and writes the
//! two words the hot roles read once per poll: the operating `mode` and the
//! `active` mask of links in service. A link entering service (a failover
//! target, or a link back from down) is brought up to date by a re-send round,
//! a handshake through `failover_epoch` / `resend_links` / `resend_done_epoch`
//! (see roles/relaunch.rs).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use crate::config::MAX_LINKS;
use crate::counters::Padded;

/// Launch times by seq, for the ack deadline: the oldest unacked message's
/// launch time is `launch_ns[acked + 1]`. Sized so that a link 64K messages
/// behind on acks has long been declared down.
pub const LAUNCH_LOG: usize = 1 << 16;
/// Recent heartbeat send times kept per link, by heartbeat seq: enough that
/// an untapped heartbeat older than the log is older than any sane tap
/// timeout (256 ms at the default 1 ms interval).
pub const HB_LOG: usize = 256;

/// Send times of a link's recent heartbeats.
pub struct HbLog(pub [AtomicU64; HB_LOG]);

impl Default for HbLog {
    fn default() -> Self {
        HbLog(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl HbLog {
    #[inline]
    pub fn slot(&self, seq: u64) -> &AtomicU64 {
        &self.0[seq as usize % HB_LOG]
    }
}

#[derive(Default)]
pub struct LinkShared {
    // ingress
    /// Highest message seq launched on this link.
    pub launched_seq: AtomicU64,
    /// Our last heartbeat's seq, and send times of the recent ones.
    pub hb_sent_seq: AtomicU64,
    pub hb_sent_ns: HbLog,
    // egress
    /// When the oldest held message this link has not confirmed was launched
    /// on it (or the link entered service, if later); 0: none outstanding.
    /// What the health check's tap deadline runs from.
    pub unconfirmed_since_ns: AtomicU64,
    // tap-rx
    /// Highest message seq whose tap copy was verified on this link.
    pub tapped_seq: AtomicU64,
    /// Highest of our heartbeats seen on this link's tap.
    pub hb_tapped_seq: AtomicU64,
    // link-rx
    pub acked_seq: AtomicU64,
    pub last_ack_ns: AtomicU64,
    pub peer_hb_seq: AtomicU64,
    pub peer_hb_ts: AtomicU64,
    pub last_peer_hb_ns: AtomicU64,
    /// Round trip of our last heartbeat echoed by the backup node.
    pub hb_echo_rtt_ns: AtomicU64,
    // main lcore
    /// LinkState as u8 (0 up, 1 degraded, 2 down).
    pub state: AtomicU8,
}

/// The operating mode the main lcore chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// The release policy can be met: the invariant holds in full.
    Protected = 0,
    /// Releasing without confirmation, every message flagged unprotected.
    PassThrough = 1,
    /// Failed closed: nothing new accepted.
    Halt = 2,
    /// Released once written and synced to the local journal.
    Journal = 3,
}

impl Mode {
    pub fn from_u8(v: u8) -> Mode {
        match v {
            1 => Mode::PassThrough,
            2 => Mode::Halt,
            3 => Mode::Journal,
            _ => Mode::Protected,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Protected => "protected",
            Mode::PassThrough => "pass-through",
            Mode::Halt => "halt",
            Mode::Journal => "journal",
        }
    }
}

pub struct Control {
    pub links: [Padded<LinkShared>; MAX_LINKS],
    pub launch_ns: Box<[AtomicU64]>,
    pub mode: AtomicU8,
    /// Links launched on and counted by the release policy.
    pub active: AtomicU8,
    /// Bumped by the main lcore to start a re-send round onto `resend_links`.
    pub failover_epoch: AtomicU64,
    /// The links of the current re-send round (a mask): those entering service.
    pub resend_links: AtomicU8,
    /// Set by ingress once it has paused for that epoch (its tail is frozen).
    pub ingress_paused_epoch: AtomicU64,
    /// Set by egress once every held unconfirmed message of that epoch has
    /// been handed to ingress for re-launch.
    pub resend_done_epoch: AtomicU64,
    /// Highest seq written and synced to the local journal (journal mode).
    pub journaled_seq: AtomicU64,
    /// Highest seq egress has released (written by egress once per poll).
    pub released_seq: AtomicU64,
    /// When ingress first found the hold ring full in the current spell of
    /// backpressure; 0 while it is not (written by ingress).
    pub ring_full_since_ns: AtomicU64,
}

impl Control {
    pub fn new(active: u8) -> Control {
        Control {
            links: Default::default(),
            launch_ns: (0..LAUNCH_LOG).map(|_| AtomicU64::new(0)).collect(),
            mode: AtomicU8::new(Mode::Protected as u8),
            active: AtomicU8::new(active),
            failover_epoch: AtomicU64::new(0),
            resend_links: AtomicU8::new(0),
            ingress_paused_epoch: AtomicU64::new(0),
            resend_done_epoch: AtomicU64::new(0),
            journaled_seq: AtomicU64::new(0),
            released_seq: AtomicU64::new(0),
            ring_full_since_ns: AtomicU64::new(0),
        }
    }

    #[inline]
    pub fn mode(&self) -> Mode {
        // Relaxed: a mode change takes effect within a poll or two; nothing
        // else is published with it.
        Mode::from_u8(self.mode.load(Ordering::Relaxed))
    }

    #[inline]
    pub fn active(&self) -> u8 {
        self.active.load(Ordering::Relaxed)
    }

    #[inline]
    pub fn record_launch(&self, seq: u64, ns: u64) {
        self.launch_ns[seq as usize & (LAUNCH_LOG - 1)].store(ns, Ordering::Relaxed);
    }

    pub fn launch_of(&self, seq: u64) -> u64 {
        self.launch_ns[seq as usize & (LAUNCH_LOG - 1)].load(Ordering::Relaxed)
    }

    /// The highest seq of this epoch that a backup node can have heard of:
    /// launched on some link, or released (its node may cover it by the
    /// watermark without having received it). An ack beyond it is a claim
    /// about messages that do not exist yet.
    #[inline]
    pub fn highest_ackable(&self) -> u64 {
        self.links
            .iter()
            .map(|l| get(&l.launched_seq))
            .fold(get(&self.released_seq), u64::max)
    }
}

/// Single-writer store of a monotonic level (highest seq seen).
#[inline(always)]
pub fn raise(a: &AtomicU64, v: u64) {
    // Relaxed: one writer per field; readers want the latest level, nothing
    // else is published through it.
    if v > a.load(Ordering::Relaxed) {
        a.store(v, Ordering::Relaxed);
    }
}

#[inline(always)]
pub fn set(a: &AtomicU64, v: u64) {
    a.store(v, Ordering::Relaxed);
}

#[inline(always)]
pub fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}
