//! link-rx: Bk rx → acks and heartbeats from the backup node.
//!
//! Acks are health, not gate: nothing here releases a message. The highest
//! cumulative ack and the heartbeat count are published for the main lcore,
//! which drives each link's health from them.

use std::sync::Arc;

use dpdk::{Burst, Port};
use taphold_wire::digest::DigestKey;
use taphold_wire::ethernet::{self, EtherType, EthernetAddress};
use taphold_wire::taphold::{AckRepr, HeartbeatRepr, MsgType, Packet};

use super::BURST;
use crate::Shared;

pub struct LinkRxLink {
    pub link: usize,
    pub port: Arc<Port>,
    pub our_mac: EthernetAddress,
    pub peer_mac: EthernetAddress,
}

pub struct LinkRx {
    pub links: Vec<LinkRxLink>,
    pub key: DigestKey,
    pub shared: &'static Shared,
    pub rx: Burst<BURST>,
}

impl LinkRx {
    pub fn poll(&mut self) -> usize {
        let mut work = 0;
        for l in &self.links {
            let n = l.port.rx_burst(0, &mut self.rx);
            work += n;
            let c = &self.shared.counters.link_rx[l.link];
            c.rx_frames.add(n as u64);
            while let Some(m) = self.rx.pop() {
                let f = m.data();
                // From the backup node to us, taphold EtherType.
                if f.len() < ethernet::HEADER_LEN
                    || f[0..6] != l.our_mac.0
                    || f[6..12] != l.peer_mac.0
                    || f[12..14] != EtherType::TAPHOLD.0.to_be_bytes()
                {
                    c.foreign.inc();
                    continue;
                }
                let Ok(p) = Packet::new_checked(&f[ethernet::HEADER_LEN..]) else {
                    c.malformed.inc();
                    continue;
                };
                match p.msg_type() {
                    MsgType::Ack => match AckRepr::parse(&p, &self.key) {
                        Ok(a) => {
                            c.acks.inc();
                            if a.seq > c.acked_seq.get() {
                                c.acked_seq.add(a.seq - c.acked_seq.get());
                            }
                        }
                        Err(_) => c.malformed.inc(),
                    },
                    MsgType::Heartbeat => match HeartbeatRepr::parse(&p, &self.key) {
                        Ok(_) => c.heartbeats.inc(),
                        Err(_) => c.malformed.inc(),
                    },
                    _ => c.unexpected_type.inc(),
                }
            }
        }
        work
    }
}
