//! The control plane: everything the lcores share, one block per writer.
//!
//! ```text
//!   block            writer       what it holds
//!   ControlBlock     main lcore   mode, links in service, journaled seq, link states
//!   IngressBlock     ingress      per link: launched seq, our heartbeats; launch times; backpressure;
//!                                 the destination's delivered seq (target confirmations)
//!   TapBlock[k]      tap-rx       per link: highest tapped seq and heartbeat
//!   LinkRxBlock[k]   link-rx      per link: the node's acks and heartbeats
//!   EgressBlock      egress       released seq, per link the oldest unconfirmed message
//!   RoundBoard       all three    the re-send round handshake (taphold_core::round)
//! ```
//!
//! Each block sits on cache lines of its own, its fields are private, and
//! every block has exactly one writer handle (`...Writer`), made once by
//! [`Plane::writers`] and moved into the role that writes it: the single-
//! writer rule is the type system's, not a comment's. Everyone reads through
//! `&Block` getters.
//!
//! # Memory ordering, once
//!
//! A single-writer fact (a highest seq, a time) is published and read with
//! Relaxed: readers want the latest level and nothing else travels with it.
//! Three things do travel, and use Release/Acquire, each pairing named at the
//! method that does it:
//!
//! - **Service** (`mode` and `active`): the main lcore changes them together
//!   ([`ControlWriter::publish_service`]). Egress reads `active` then the mode
//!   ([`ControlBlock::service`]); so when the appliance degrades the mode is
//!   stored first, and when it recovers `active` is: a policy over fewer links
//!   is never applied as if the appliance were fully protected.
//! - **Re-send rounds**: the main lcore publishes the round's links, then bumps
//!   the round (Release); ingress sees the bump (Acquire), stops taking new
//!   messages and says so (Release); egress sees ingress paused (Acquire),
//!   walks the held messages, hands the frames over, says the round is done
//!   (Release); ingress sees it done (Acquire) and, once its rings are empty,
//!   resumes. The handshake is `taphold_core::round`, whose loom model
//!   (`tests/loom.rs`, `resend_round_handshake`) checks these pairings; each
//!   side's handle is in its writer set.
//! - **The local journal**: the main lcore stores the journaled seq after its
//!   fsync (Release); egress loads it (Acquire) before releasing on it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use taphold_core::round::{RoundBoard, RoundEgress, RoundIngress, RoundMain};
pub use taphold_core::service::Mode;

use crate::config::MAX_LINKS;
use crate::counters::{Counters, Padded};

/// Launch times by seq, for the ack deadline: the oldest unacked message's
/// launch time is `launch_ns[acked + 1]`. Sized so that a link 64K messages
/// behind on acks has long been declared down.
pub const LAUNCH_LOG: usize = 1 << 16;
/// Recent heartbeat send times kept per link, by heartbeat seq: enough that
/// an untapped heartbeat older than the log is older than any sane tap
/// timeout (256 ms at the default 1 ms interval).
pub const HB_LOG: usize = 256;

/// The links in service and the mode, read together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Service {
    /// Links launched on and counted by the release policy (a mask).
    pub active: u8,
    pub mode: Mode,
}

#[inline(always)]
fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

#[inline(always)]
fn set(a: &AtomicU64, v: u64) {
    // Relaxed: one writer per field; see the module docs.
    a.store(v, Ordering::Relaxed);
}

/// Single-writer store of a level that only rises (a highest seq seen).
#[inline(always)]
fn raise(a: &AtomicU64, v: u64) {
    if v > a.load(Ordering::Relaxed) {
        a.store(v, Ordering::Relaxed);
    }
}

fn zeros<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

// ---------------------------------------------------------------- control --

/// Written by the main lcore.
pub struct ControlBlock {
    mode: AtomicU8,
    active: AtomicU8,
    /// Highest seq written and synced to the local journal.
    journaled_seq: AtomicU64,
    /// Per link: its health state (LinkState as u8), for telemetry.
    link_state: [AtomicU8; MAX_LINKS],
    /// Latency percentiles since the start, for telemetry: hold p50, p99,
    /// p99.9, max, then the tap round trip's (ns).
    latency: [AtomicU64; 8],
}

impl ControlBlock {
    fn new(active: u8) -> ControlBlock {
        ControlBlock {
            mode: AtomicU8::new(Mode::Protected as u8),
            active: AtomicU8::new(active),
            journaled_seq: AtomicU64::new(0),
            link_state: std::array::from_fn(|_| AtomicU8::new(0)),
            latency: zeros(),
        }
    }

    /// The links in service, then the mode (both Acquire): pairs with
    /// [`ControlWriter::publish_service`]'s Release stores, in the order
    /// the module docs give.
    #[inline]
    pub fn service(&self) -> Service {
        let active = self.active.load(Ordering::Acquire);
        let mode = Mode::from_u8(self.mode.load(Ordering::Acquire));
        Service { active, mode }
    }

    /// The mode alone (Relaxed): for a role that acts on it within a poll or
    /// two and reads nothing published with it.
    #[inline]
    pub fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Ordering::Relaxed))
    }

    /// The links in service alone (Relaxed), as [`ControlBlock::mode`].
    #[inline]
    pub fn active(&self) -> u8 {
        self.active.load(Ordering::Relaxed)
    }

    /// The highest seq the local journal holds, synced. Acquire: pairs with
    /// the Release store after the fsync ([`ControlWriter::journaled`]).
    #[inline]
    pub fn journaled_seq(&self) -> u64 {
        self.journaled_seq.load(Ordering::Acquire)
    }

    pub fn link_state(&self, k: usize) -> u8 {
        self.link_state[k].load(Ordering::Relaxed)
    }

    /// See [`ControlWriter::publish_latency`].
    pub fn latency(&self) -> [u64; 8] {
        std::array::from_fn(|i| get(&self.latency[i]))
    }
}

/// The main lcore's handle on [`ControlBlock`].
pub struct ControlWriter(&'static ControlBlock);

impl ControlWriter {
    /// Publishes the links in service and the mode. Release stores, in the
    /// order egress's Acquire loads need: degrading, the mode first;
    /// protecting, `active` first.
    pub fn publish_service(&self, s: Service) {
        let c = self.0;
        if s.mode != Mode::Protected {
            c.mode.store(s.mode as u8, Ordering::Release);
            c.active.store(s.active, Ordering::Release);
        } else {
            c.active.store(s.active, Ordering::Release);
            c.mode.store(s.mode as u8, Ordering::Release);
        }
    }

    /// Every seq up to `seq` is written and synced to the local journal.
    /// Release: pairs with egress's Acquire in [`ControlBlock::journaled_seq`].
    pub fn journaled(&self, seq: u64) {
        self.0.journaled_seq.store(seq, Ordering::Release);
    }

    pub fn set_link_state(&self, k: usize, state: u8) {
        self.0.link_state[k].store(state, Ordering::Relaxed);
    }

    /// Hold time p50, p99, p99.9, max, then the tap round trip's, in ns.
    pub fn publish_latency(&self, v: [u64; 8]) {
        for (a, v) in self.0.latency.iter().zip(v) {
            set(a, v);
        }
    }
}

// ---------------------------------------------------------------- ingress --

/// Send times of a link's recent heartbeats, by heartbeat seq.
struct HbLog([AtomicU64; HB_LOG]);

impl HbLog {
    #[inline]
    fn slot(&self, seq: u64) -> &AtomicU64 {
        &self.0[seq as usize % HB_LOG]
    }
}

struct IngressLink {
    /// Highest message seq launched on this link.
    launched_seq: AtomicU64,
    /// Our last heartbeat's seq, and the send times of the recent ones.
    hb_sent_seq: AtomicU64,
    hb_sent_ns: HbLog,
}

/// Written by ingress.
pub struct IngressBlock {
    links: [IngressLink; MAX_LINKS],
    /// Launch times by seq (`LAUNCH_LOG` of them).
    launch_ns: Box<[AtomicU64]>,
    /// When the hold ring was first found full in the current spell of
    /// backpressure; 0 while it is not.
    ring_full_since_ns: AtomicU64,
    /// Delivered through, as the destination's arbiter last confirmed for
    /// this epoch (0: nothing yet), and when that confirmation came.
    delivered_seq: AtomicU64,
    last_target_confirm_ns: AtomicU64,
}

impl IngressBlock {
    fn new() -> IngressBlock {
        IngressBlock {
            links: std::array::from_fn(|_| IngressLink {
                launched_seq: AtomicU64::new(0),
                hb_sent_seq: AtomicU64::new(0),
                hb_sent_ns: HbLog(zeros()),
            }),
            launch_ns: (0..LAUNCH_LOG).map(|_| AtomicU64::new(0)).collect(),
            ring_full_since_ns: AtomicU64::new(0),
            delivered_seq: AtomicU64::new(0),
            last_target_confirm_ns: AtomicU64::new(0),
        }
    }

    pub fn launched_seq(&self, k: usize) -> u64 {
        get(&self.links[k].launched_seq)
    }

    /// When `seq` was (last) launched, if the log still has it.
    pub fn launch_of(&self, seq: u64) -> u64 {
        get(&self.launch_ns[seq as usize & (LAUNCH_LOG - 1)])
    }

    pub fn hb_sent_seq(&self, k: usize) -> u64 {
        get(&self.links[k].hb_sent_seq)
    }

    /// When our heartbeat `seq` on link `k` was sent, if it is recent enough
    /// to be in the log.
    pub fn hb_sent_ns(&self, k: usize, seq: u64) -> Option<u64> {
        let sent = self.hb_sent_seq(k);
        (seq != 0 && seq <= sent && sent - seq < HB_LOG as u64)
            .then(|| get(self.links[k].hb_sent_ns.slot(seq)))
    }

    pub fn ring_full_since_ns(&self) -> u64 {
        get(&self.ring_full_since_ns)
    }

    /// What the destination confirmed delivered, through this seq of this
    /// epoch.
    pub fn delivered_seq(&self) -> u64 {
        get(&self.delivered_seq)
    }

    /// When the last target confirmation of this epoch arrived; 0: none yet.
    pub fn last_target_confirm_ns(&self) -> u64 {
        get(&self.last_target_confirm_ns)
    }
}

/// Ingress's handle on [`IngressBlock`].
pub struct IngressWriter(&'static IngressBlock);

impl IngressWriter {
    pub fn block(&self) -> &'static IngressBlock {
        self.0
    }

    /// Records that `seq` was launched at `ns` (on some link): the ack
    /// deadline counts from here.
    #[inline]
    pub fn record_launch(&self, seq: u64, ns: u64) {
        set(&self.0.launch_ns[seq as usize & (LAUNCH_LOG - 1)], ns);
    }

    #[inline]
    pub fn launched_on(&self, k: usize, seq: u64) {
        raise(&self.0.links[k].launched_seq, seq);
    }

    /// Our heartbeat `seq` on link `k` leaves now (`ns`): recorded before
    /// the frame leaves, like a backup frame's launch.
    #[inline]
    pub fn heartbeat_sent(&self, k: usize, seq: u64, ns: u64) {
        let l = &self.0.links[k];
        set(l.hb_sent_ns.slot(seq), ns);
        set(&l.hb_sent_seq, seq);
    }

    /// The destination confirmed delivery through `seq` at `now`.
    #[inline]
    pub fn delivered(&self, seq: u64, now: u64) {
        raise(&self.0.delivered_seq, seq);
        set(&self.0.last_target_confirm_ns, now);
    }

    /// Backpressure: the ring is full (`Some(now)`) or not (`None`).
    #[inline]
    pub fn ring_full(&self, now: Option<u64>) {
        let since = get(&self.0.ring_full_since_ns);
        match now {
            Some(t) if since == 0 => set(&self.0.ring_full_since_ns, t.max(1)),
            None if since != 0 => set(&self.0.ring_full_since_ns, 0),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------- tap-rx --

/// Written by tap-rx, one per link.
#[derive(Default)]
pub struct TapBlock {
    /// Highest message seq whose tap copy was verified on this link.
    tapped_seq: AtomicU64,
    /// Highest of our heartbeats seen on this link's tap.
    hb_tapped_seq: AtomicU64,
}

impl TapBlock {
    pub fn tapped_seq(&self) -> u64 {
        get(&self.tapped_seq)
    }
    pub fn hb_tapped_seq(&self) -> u64 {
        get(&self.hb_tapped_seq)
    }
}

/// Tap-rx's handle on one link's [`TapBlock`].
pub struct TapWriter(&'static TapBlock);

impl TapWriter {
    #[inline]
    pub fn tapped(&self, seq: u64) {
        raise(&self.0.tapped_seq, seq);
    }
    #[inline]
    pub fn heartbeat_tapped(&self, seq: u64) {
        raise(&self.0.hb_tapped_seq, seq);
    }
}

// ---------------------------------------------------------------- link-rx --

/// Written by link-rx, one per link: what the backup node said.
#[derive(Default)]
pub struct LinkRxBlock {
    acked_seq: AtomicU64,
    last_ack_ns: AtomicU64,
    peer_hb_seq: AtomicU64,
    peer_hb_ts: AtomicU64,
    last_peer_hb_ns: AtomicU64,
    /// Round trip of our last heartbeat echoed by the node.
    hb_echo_rtt_ns: AtomicU64,
}

impl LinkRxBlock {
    pub fn acked_seq(&self) -> u64 {
        get(&self.acked_seq)
    }
    pub fn last_ack_ns(&self) -> u64 {
        get(&self.last_ack_ns)
    }
    /// The node's last heartbeat (seq, its timestamp), to echo in ours.
    pub fn peer_heartbeat(&self) -> (u64, u64) {
        (get(&self.peer_hb_seq), get(&self.peer_hb_ts))
    }
    pub fn last_peer_hb_ns(&self) -> u64 {
        get(&self.last_peer_hb_ns)
    }
    pub fn hb_echo_rtt_ns(&self) -> u64 {
        get(&self.hb_echo_rtt_ns)
    }
}

/// Link-rx's handle on one link's [`LinkRxBlock`].
pub struct LinkRxWriter(&'static LinkRxBlock);

impl LinkRxWriter {
    #[inline]
    pub fn acked(&self, seq: u64, now: u64) {
        raise(&self.0.acked_seq, seq);
        set(&self.0.last_ack_ns, now);
    }
    #[inline]
    pub fn peer_heartbeat(&self, seq: u64, timestamp_ns: u64, now: u64) {
        set(&self.0.peer_hb_seq, seq);
        set(&self.0.peer_hb_ts, timestamp_ns);
        set(&self.0.last_peer_hb_ns, now);
    }
    #[inline]
    pub fn echo_rtt(&self, ns: u64) {
        set(&self.0.hb_echo_rtt_ns, ns);
    }
}

// ---------------------------------------------------------------- egress --

/// Written by egress.
pub struct EgressBlock {
    /// Highest seq released.
    released_seq: AtomicU64,
    /// Per link: when the oldest held message whose tap copy has not come
    /// back on it started waiting; 0: none. The tap deadline runs from here.
    unconfirmed_since_ns: [AtomicU64; MAX_LINKS],
}

impl EgressBlock {
    fn new() -> EgressBlock {
        EgressBlock {
            released_seq: AtomicU64::new(0),
            unconfirmed_since_ns: zeros(),
        }
    }

    pub fn released_seq(&self) -> u64 {
        get(&self.released_seq)
    }

    pub fn unconfirmed_since_ns(&self, k: usize) -> u64 {
        get(&self.unconfirmed_since_ns[k])
    }
}

/// Egress's handle on [`EgressBlock`].
pub struct EgressWriter(&'static EgressBlock);

impl EgressWriter {
    pub fn block(&self) -> &'static EgressBlock {
        self.0
    }
    #[inline]
    pub fn released(&self, seq: u64) {
        raise(&self.0.released_seq, seq);
    }
    #[inline]
    pub fn unconfirmed_since(&self, k: usize, ns: u64) {
        set(&self.0.unconfirmed_since_ns[k], ns);
    }
}

// ---------------------------------------------------------------- plane --

/// Everything the lcores share. Lives as long as the process (leaked once at
/// start-up): every role and the main lcore read it.
pub struct Plane {
    pub control: Padded<ControlBlock>,
    pub ingress: Padded<IngressBlock>,
    pub tap: [Padded<TapBlock>; MAX_LINKS],
    pub link_rx: [Padded<LinkRxBlock>; MAX_LINKS],
    pub egress: Padded<EgressBlock>,
    /// The re-send round handshake (main lcore, ingress, egress).
    pub round: RoundBoard,
    pub counters: Counters,
    /// Set by the main lcore to stop the workers (and by the panic hook).
    pub quit: AtomicBool,
}

/// The one writer handle of each block, made once.
pub struct Writers {
    pub control: ControlWriter,
    pub ingress: IngressWriter,
    pub tap: Vec<TapWriter>,
    pub link_rx: Vec<LinkRxWriter>,
    pub egress: EgressWriter,
    pub round_main: RoundMain<'static>,
    pub round_ingress: RoundIngress<'static>,
    pub round_egress: RoundEgress<'static>,
}

impl Plane {
    /// The plane, for the process's lifetime, with `active` links in service,
    /// and the writer handle of every block (`links` links).
    pub fn new(active: u8, links: usize) -> (&'static Plane, Writers) {
        let p: &'static Plane = Box::leak(Box::new(Plane {
            control: Padded(ControlBlock::new(active)),
            ingress: Padded(IngressBlock::new()),
            tap: Default::default(),
            link_rx: Default::default(),
            egress: Padded(EgressBlock::new()),
            round: RoundBoard::new(),
            counters: Counters::default(),
            quit: AtomicBool::new(false),
        }));
        let w = Writers {
            control: ControlWriter(&p.control.0),
            ingress: IngressWriter(&p.ingress.0),
            tap: p.tap.iter().take(links).map(|b| TapWriter(&b.0)).collect(),
            link_rx: p
                .link_rx
                .iter()
                .take(links)
                .map(|b| LinkRxWriter(&b.0))
                .collect(),
            egress: EgressWriter(&p.egress.0),
            round_main: RoundMain::new(&p.round),
            round_ingress: RoundIngress::new(&p.round),
            round_egress: RoundEgress::new(&p.round),
        };
        (p, w)
    }

    /// The highest seq of this epoch that a backup node can have heard of:
    /// launched on some link, or released (its node may cover it by the
    /// watermark without having received it). An ack beyond it is a claim
    /// about messages that do not exist yet.
    #[inline]
    pub fn highest_ackable(&self) -> u64 {
        (0..MAX_LINKS)
            .map(|k| self.ingress.launched_seq(k))
            .fold(self.egress.released_seq(), u64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_is_published_in_the_order_egress_reads_it() {
        let (p, w) = Plane::new(0b01, 2);
        assert_eq!(
            p.control.service(),
            Service {
                active: 0b01,
                mode: Mode::Protected
            }
        );
        w.control.publish_service(Service {
            active: 0,
            mode: Mode::Halt,
        });
        assert_eq!(p.control.service().mode, Mode::Halt);
        assert_eq!(p.control.active(), 0);
        w.control.publish_service(Service {
            active: 0b11,
            mode: Mode::Protected,
        });
        assert_eq!(p.control.service().active, 0b11);
    }

    #[test]
    fn levels_times_and_backpressure() {
        let (p, w) = Plane::new(1, 2);
        w.ingress.launched_on(1, 10);
        w.ingress.launched_on(1, 7);
        assert_eq!(p.ingress.launched_seq(1), 10, "a level never falls");
        w.egress.released(12);
        assert_eq!(p.highest_ackable(), 12);
        w.ingress.heartbeat_sent(0, 3, 300);
        assert_eq!(p.ingress.hb_sent_ns(0, 3), Some(300));
        assert_eq!(p.ingress.hb_sent_ns(0, 4), None, "not sent yet");
        assert_eq!(p.ingress.hb_sent_ns(0, 0), None);
        w.ingress.ring_full(Some(5));
        w.ingress.ring_full(Some(9));
        assert_eq!(p.ingress.ring_full_since_ns(), 5, "since the first");
        w.ingress.ring_full(None);
        assert_eq!(p.ingress.ring_full_since_ns(), 0);
        assert_eq!(w.tap.len(), 2);
        assert_eq!(w.link_rx.len(), 2);
    }
}
