//! link-rx: Bk rx → acks and heartbeats from the backup node.
//!
//! Acks are health, not gate: nothing here releases a message. The highest
//! cumulative ack and the heartbeat count are published for the main lcore,
//! which drives each link's health from them (and `gate: ack` releases on
//! them). So an ack counts only if it speaks for this run's epoch and for
//! nothing beyond what this epoch has launched (on any link: a node may cover
//! seqs released while its link was out of service, by the watermark): a node
//! that restarted, or kept an earlier run's journal, would otherwise vouch for
//! messages it has never seen. Refused acks are counted by name.

use std::sync::Arc;

use dpdk::{Burst, Clock, Port};
use taphold_wire::digest::DigestKey;
use taphold_wire::ethernet::{self, EtherType, EthernetAddress};
use taphold_wire::taphold::{AckRepr, HeartbeatRepr, MsgType, Packet};

use super::BURST;
use crate::links::{self, HB_LOG};
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
    pub stream: u32,
    pub epoch: u64,
    pub clock: Clock,
    pub shared: &'static Shared,
    pub rx: Burst<BURST>,
}

impl LinkRx {
    pub fn poll(&mut self) -> usize {
        let mut work = 0;
        for l in &self.links {
            let n = l.port.rx_burst(0, &mut self.rx);
            work += n;
            if n == 0 {
                continue;
            }
            let now = self.clock.now_ns();
            let c = &self.shared.counters.link_rx[l.link];
            let ls = &self.shared.control.links[l.link];
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
                        Ok(a) if a.link as usize != l.link || a.stream != self.stream => {
                            c.foreign.inc()
                        }
                        Ok(a) if a.epoch != self.epoch => c.ack_wrong_epoch.inc(),
                        Ok(a) if a.seq > self.shared.control.highest_ackable() => {
                            c.ack_beyond_launched.inc()
                        }
                        Ok(a) => {
                            c.acks.inc();
                            if a.seq > c.acked_seq.get() {
                                c.acked_seq.add(a.seq - c.acked_seq.get());
                            }
                            links::raise(&ls.acked_seq, a.seq);
                            links::set(&ls.last_ack_ns, now);
                        }
                        Err(_) => c.malformed.inc(),
                    },
                    MsgType::Heartbeat => match HeartbeatRepr::parse(&p, &self.key) {
                        Ok(h) if h.link as usize != l.link || h.stream != self.stream => {
                            c.foreign.inc()
                        }
                        Ok(h) if h.epoch != self.epoch => c.heartbeat_wrong_epoch.inc(),
                        Ok(h) => {
                            c.heartbeats.inc();
                            links::set(&ls.peer_hb_seq, h.seq);
                            links::set(&ls.peer_hb_ts, h.timestamp_ns);
                            links::set(&ls.last_peer_hb_ns, now);
                            // The echo of one of our recent heartbeats: its round trip.
                            let sent = links::get(&ls.hb_sent_seq);
                            if h.echo_seq != 0
                                && h.echo_seq <= sent
                                && sent - h.echo_seq < HB_LOG as u64
                            {
                                let t = links::get(ls.hb_sent_ns.slot(h.echo_seq));
                                links::set(&ls.hb_echo_rtt_ns, now.saturating_sub(t));
                            }
                        }
                        Err(_) => c.malformed.inc(),
                    },
                    _ => c.unexpected_type.inc(),
                }
            }
        }
        work
    }
}
