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
use taphold_wire::digest::KeyRing;

use super::BURST;
use crate::frames::{from_node, FromNode, LinkIdentity};
use crate::plane::{LinkRxWriter, Plane};

/// One backup link, as link-rx polls it.
pub struct LinkRxLink {
    /// Who we are on the link: the node's frames come from it to us.
    pub id: LinkIdentity,
    pub port: Arc<Port>,
    /// What link-rx publishes about the link.
    pub mine: LinkRxWriter,
}

pub struct LinkRx {
    links: Vec<LinkRxLink>,
    key: KeyRing,
    clock: Clock,
    plane: &'static Plane,
    rx: Burst<BURST>,
}

impl LinkRx {
    pub fn new(
        links: Vec<LinkRxLink>,
        key: KeyRing,
        clock: Clock,
        plane: &'static Plane,
    ) -> LinkRx {
        LinkRx {
            links,
            key,
            clock,
            plane,
            rx: Burst::new(),
        }
    }

    pub fn poll(&mut self) -> usize {
        let mut work = 0;
        for l in &self.links {
            let n = l.port.rx_burst(0, &mut self.rx);
            work += n;
            if n == 0 {
                continue;
            }
            let now = self.clock.now_ns();
            let c = &self.plane.counters.link_rx[l.id.link];
            c.rx_frames.add(n as u64);
            while let Some(m) = self.rx.pop() {
                let ackable = self.plane.highest_ackable();
                match from_node(m.data(), &l.id, &self.key, ackable) {
                    FromNode::Ack { seq } => {
                        c.acks.inc();
                        if seq > c.acked_seq.get() {
                            c.acked_seq.add(seq - c.acked_seq.get());
                        }
                        l.mine.acked(seq, now);
                    }
                    FromNode::Heartbeat {
                        seq,
                        timestamp_ns,
                        echo_seq,
                    } => {
                        c.heartbeats.inc();
                        l.mine.peer_heartbeat(seq, timestamp_ns, now);
                        // The echo of one of our recent heartbeats: its round trip.
                        if let Some(t) = self.plane.ingress.hb_sent_ns(l.id.link, echo_seq) {
                            l.mine.echo_rtt(now.saturating_sub(t));
                        }
                    }
                    FromNode::Foreign => c.foreign.inc(),
                    FromNode::Malformed => c.malformed.inc(),
                    FromNode::UnknownKey => c.unknown_key.inc(),
                    FromNode::AckWrongEpoch => c.ack_wrong_epoch.inc(),
                    FromNode::AckBeyondLaunched => c.ack_beyond_launched.inc(),
                    FromNode::HeartbeatWrongEpoch => c.heartbeat_wrong_epoch.inc(),
                    FromNode::Reflected => c.reflected.inc(),
                    FromNode::UnexpectedType => c.unexpected_type.inc(),
                }
            }
        }
        work
    }
}
