//! tap-model (replay harness only): the backup fibre and its passive tap,
//! modelled with in-process ports so a capture can be replayed through the
//! whole pipeline without hardware.
//!
//! For each backup link it receives what the appliance transmitted on Bk
//! (the far side of a ring pair), sends a copy to Tk (the tap: mirror, cut or
//! corrupt), and passes the original on to the sink, the device standing in
//! for the backup node (net_pcap writing backup.pcap). It is a test fixture
//! role, but real DPDK ports and real mbufs, like everything else.

use std::sync::Arc;

use dpdk::{Burst, Mempool, Port};

use super::BURST;
use crate::config::TapMode;
use crate::Shared;

pub struct ModelLink {
    /// Far end of the fibre: receives what the appliance sent on Bk.
    pub fibre: Port,
    /// Injects the tap copies into Tk.
    pub tap_feed: Port,
    pub mode: TapMode,
    /// Index into `TapModel::sinks`, if the far end is recorded.
    pub sink: Option<usize>,
    pub tap_out: Burst<BURST>,
}

pub struct TapModel {
    pub links: Vec<ModelLink>,
    pub sinks: Vec<Arc<Port>>,
    pub pool: Mempool,
    pub shared: &'static Shared,
    pub rx: Burst<BURST>,
    pub sink_out: Burst<BURST>,
}

impl TapModel {
    pub fn poll(&mut self) -> usize {
        let c = &self.shared.counters.tap_model;
        let mut work = 0;
        for l in &mut self.links {
            let n = l.fibre.rx_burst(0, &mut self.rx);
            if n == 0 {
                continue;
            }
            work += n;
            c.fibre_frames.add(n as u64);
            while let Some(m) = self.rx.pop() {
                match l.mode {
                    TapMode::Cut => c.tap_cut.inc(),
                    TapMode::Mirror | TapMode::Corrupt => match m.copy(&self.pool) {
                        Some(mut copy) => {
                            if l.mode == TapMode::Corrupt {
                                // Flip one bit in the last byte before the digest trailer.
                                let len = copy.len();
                                let i = len.saturating_sub(9).max(14).min(len - 1);
                                copy.data_mut()[i] ^= 0x01;
                                c.tap_corrupted.inc();
                            }
                            if l.tap_out.push(copy).is_err() {
                                c.model_drops.inc();
                            } else {
                                c.tap_copies.inc();
                            }
                        }
                        None => c.model_drops.inc(),
                    },
                }
                match l.sink {
                    Some(_) => {
                        if self.sink_out.push(m).is_err() {
                            c.model_drops.inc();
                        }
                    }
                    None => drop(m),
                }
            }
            l.tap_feed.tx_burst(0, &mut l.tap_out);
            c.model_drops.add(l.tap_out.len() as u64);
            l.tap_out.clear();
            if let Some(s) = l.sink {
                let sent = self.sinks[s].tx_burst(0, &mut self.sink_out);
                c.sink_frames.add(sent as u64);
                c.model_drops.add(self.sink_out.len() as u64);
                self.sink_out.clear();
            }
        }
        work
    }
}
