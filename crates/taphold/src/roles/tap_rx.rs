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

use dpdk::{Burst, Clock, Port};
use taphold_core::hold_ring::Confirm;
use taphold_core::hold_ring::Confirmer;
use taphold_wire::digest::KeyRing;

use super::{HeldMessage, BURST};
use crate::counters::{TapCounters, WireErrorKind};
use crate::frames::{tap_copy, LinkIdentity, TapCopy};
use crate::plane::{Plane, TapWriter};

/// One tap, as tap-rx polls it.
pub struct TapLink {
    /// Who we are on the link: a genuine tap copy is from us to the node.
    pub id: LinkIdentity,
    pub port: Arc<Port>,
    /// What tap-rx publishes about the link.
    pub mine: TapWriter,
}

pub struct TapRx {
    taps: Vec<TapLink>,
    hold: Confirmer<HeldMessage>,
    key: KeyRing,
    clock: Clock,
    plane: &'static Plane,
    rx: Burst<BURST>,
}

impl TapRx {
    pub fn new(
        taps: Vec<TapLink>,
        hold: Confirmer<HeldMessage>,
        key: KeyRing,
        clock: Clock,
        plane: &'static Plane,
    ) -> TapRx {
        TapRx {
            taps,
            hold,
            key,
            clock,
            plane,
            rx: Burst::new(),
        }
    }

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
                let c = &self.plane.counters.tap[t.id.link];
                c.rx_frames.add(n as u64);
                while let Some(m) = self.rx.pop() {
                    let verdict = tap_copy(m.data(), &t.id, &self.key);
                    act(verdict, t.id.link, &self.hold, now, c, &t.mine);
                    // The mbuf is freed here, whatever the verdict.
                }
                if n < BURST {
                    break;
                }
            }
        }
        work
    }
}

/// What a tap copy does: a confirmation posted, or a counter.
#[inline]
fn act(
    v: TapCopy,
    link: usize,
    hold: &Confirmer<HeldMessage>,
    now: u64,
    c: &TapCounters,
    mine: &TapWriter,
) {
    match v {
        TapCopy::Backup { seq, digest } => {
            let outcome = hold.confirm(link, seq, digest, now);
            c.count_outcome(outcome);
            // A genuine copy of a frame we launched: the tap path works up to it.
            if matches!(
                outcome,
                Confirm::Confirmed | Confirm::Duplicate | Confirm::Released
            ) {
                mine.tapped(seq);
            }
        }
        TapCopy::Heartbeat { seq } => {
            c.heartbeats.inc();
            mine.heartbeat_tapped(seq);
        }
        TapCopy::FlowAck => c.flow_acks.inc(),
        TapCopy::NotTaphold => c.not_taphold.inc(),
        TapCopy::Malformed(e) => c.malformed[WireErrorKind::index(e)].inc(),
        TapCopy::Foreign => c.foreign.inc(),
        TapCopy::Corrupt => c.corrupt.inc(),
        TapCopy::UnknownKey => c.unknown_key.inc(),
        TapCopy::WrongEpoch => c.wrong_epoch.inc(),
        TapCopy::WrongLink => c.wrong_link.inc(),
        TapCopy::UnexpectedType => c.unexpected_type.inc(),
    }
}
