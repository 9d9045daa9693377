//! tap-rx: Tk rx → is this a tap copy of a backup frame we launched, intact?
//! → post the confirmation into that message's hold-ring slot.
//!
//! A tap copy confirms only if (1) its Ethernet addresses and type are those
//! we launched on link k, (2) it is of our stream, (3) its own keyed digest
//! matches its bytes (so it was not corrupted on the way and was made with our
//! key), (4) it is of this run's epoch (an authentic frame of an earlier run
//! is a replay), and (5) the hold ring has that seq in flight with that same
//! digest (so it is the frame we launched for the message now in the slot,
//! not an old or forged one).
//! Everything else is counted by reason and freed.

use std::sync::Arc;

use dpdk::{Burst, Clock, Mbuf, Port};
use taphold_core::hold_ring::Confirm;
use taphold_core::hold_ring::Confirmer;
use taphold_wire::digest::DigestKey;
use taphold_wire::ethernet::{self, EtherType, EthernetAddress};
use taphold_wire::taphold::{HeartbeatRepr, MsgType, Packet};

use super::{HeldMessage, BURST};
use crate::counters::{TapCounters, WireErrorKind};
use crate::links::{self, LinkShared};
use crate::Shared;

pub struct TapLink {
    /// Index of the backup link (its confirmation bit).
    pub link: usize,
    pub port: Arc<Port>,
    /// What a genuine tap copy carries: our MAC as source, the peer's as destination.
    pub our_mac: EthernetAddress,
    pub peer_mac: EthernetAddress,
}

pub struct TapRx {
    pub taps: Vec<TapLink>,
    pub hold: Confirmer<HeldMessage>,
    pub key: DigestKey,
    pub stream: u32,
    pub epoch: u64,
    pub clock: Clock,
    pub shared: &'static Shared,
    pub rx: Burst<BURST>,
}

impl TapRx {
    pub fn poll(&mut self) -> usize {
        let mut work = 0;
        for t in &self.taps {
            // Confirmations gate every release: drain the tap (a few bursts at
            // most) rather than let copies queue behind heartbeats.
            for _ in 0..4 {
                let n = t.port.rx_burst(0, &mut self.rx);
                if n == 0 {
                    break;
                }
                work += n;
                let now = self.clock.now_ns();
                let c = &self.shared.counters.tap[t.link];
                let ls = &self.shared.control.links[t.link];
                c.rx_frames.add(n as u64);
                while let Some(m) = self.rx.pop() {
                    check(&m, t, self, now, c, ls);
                }
                if n < BURST {
                    break;
                }
            }
        }
        work
    }
}

#[inline]
fn check(m: &Mbuf, t: &TapLink, rx: &TapRx, now: u64, c: &TapCounters, ls: &LinkShared) {
    let (hold, key, stream) = (&rx.hold, &rx.key, rx.stream);
    let f = m.data();
    if f.len() < ethernet::HEADER_LEN
        || f[0..6] != t.peer_mac.0
        || f[6..12] != t.our_mac.0
        || f[12..14] != EtherType::TAPHOLD.0.to_be_bytes()
    {
        // Not a frame we launch on this link at all (a stray frame on the
        // tap port); a damaged copy of ours keeps its Ethernet header.
        c.not_taphold.inc();
        return;
    }
    let p = match Packet::new_checked(&f[ethernet::HEADER_LEN..]) {
        Ok(p) => p,
        Err(e) => {
            c.malformed[WireErrorKind::index(e)].inc();
            return;
        }
    };
    match p.msg_type() {
        MsgType::Backup => {
            if p.stream() != stream {
                c.foreign.inc();
                return;
            }
            let digest = p.compute_digest(key);
            if digest != p.digest_field() {
                c.corrupt.inc();
                return;
            }
            // Authentic, but an earlier run's: replayed, never ours to confirm.
            if p.epoch() != rx.epoch {
                c.wrong_epoch.inc();
                return;
            }
            let outcome = hold.confirm(t.link, p.seq(), digest, now);
            c.count_outcome(outcome);
            // A genuine copy of a frame we launched: the tap path works up to it.
            if matches!(
                outcome,
                Confirm::Confirmed | Confirm::Duplicate | Confirm::Released
            ) {
                links::raise(&ls.tapped_seq, p.seq());
            }
        }
        MsgType::Heartbeat => match HeartbeatRepr::parse(&p, key) {
            Ok(h) if h.link as usize != t.link || h.stream != stream => c.foreign.inc(),
            Ok(h) if h.epoch != rx.epoch => c.wrong_epoch.inc(),
            Ok(h) => {
                c.heartbeats.inc();
                links::raise(&ls.hb_tapped_seq, h.seq);
            }
            Err(e) => c.malformed[WireErrorKind::index(e)].inc(),
        },
        _ => c.unexpected_type.inc(),
    }
}
