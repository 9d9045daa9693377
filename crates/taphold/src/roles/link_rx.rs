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

use super::BURST;
use crate::frames::{from_node, FromNode, LinkIdentity};
use crate::links::{self, HB_LOG};
use crate::Shared;

pub struct LinkRxLink {
    /// Who we are on the link: the node's frames come from it to us.
    pub id: LinkIdentity,
    pub port: Arc<Port>,
}

pub struct LinkRx {
    pub links: Vec<LinkRxLink>,
    pub key: DigestKey,
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
            let ctl = &self.shared.control;
            let c = &self.shared.counters.link_rx[l.id.link];
            let ls = &ctl.links[l.id.link];
            c.rx_frames.add(n as u64);
            while let Some(m) = self.rx.pop() {
                match from_node(m.data(), &l.id, &self.key, ctl.highest_ackable()) {
                    FromNode::Ack { seq } => {
                        c.acks.inc();
                        if seq > c.acked_seq.get() {
                            c.acked_seq.add(seq - c.acked_seq.get());
                        }
                        links::raise(&ls.acked_seq, seq);
                        links::set(&ls.last_ack_ns, now);
                    }
                    FromNode::Heartbeat {
                        seq,
                        timestamp_ns,
                        echo_seq,
                    } => {
                        c.heartbeats.inc();
                        links::set(&ls.peer_hb_seq, seq);
                        links::set(&ls.peer_hb_ts, timestamp_ns);
                        links::set(&ls.last_peer_hb_ns, now);
                        // The echo of one of our recent heartbeats: its round trip.
                        let sent = links::get(&ls.hb_sent_seq);
                        if echo_seq != 0 && echo_seq <= sent && sent - echo_seq < HB_LOG as u64 {
                            let t = links::get(ls.hb_sent_ns.slot(echo_seq));
                            links::set(&ls.hb_echo_rtt_ns, now.saturating_sub(t));
                        }
                    }
                    FromNode::Foreign => c.foreign.inc(),
                    FromNode::Malformed => c.malformed.inc(),
                    FromNode::AckWrongEpoch => c.ack_wrong_epoch.inc(),
                    FromNode::AckBeyondLaunched => c.ack_beyond_launched.inc(),
                    FromNode::HeartbeatWrongEpoch => c.heartbeat_wrong_epoch.inc(),
                    FromNode::UnexpectedType => c.unexpected_type.inc(),
                }
            }
        }
        work
    }
}
