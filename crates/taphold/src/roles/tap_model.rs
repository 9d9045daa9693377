//! tap-model (replay harness only): the backup fibre, its passive tap and the
//! backup node at its far end, modelled with in-process ports so a capture
//! can be replayed through the whole pipeline without hardware.
//!
//! For each backup link it receives what the appliance transmitted on Bk
//! (the far side of a ring pair), sends a copy to Tk at once (the tap at 0 m:
//! mirror, cut or corrupt), and passes the original on to the sink, the
//! device standing in for the backup node's disk (net_pcap writing
//! backup.pcap). The modelled backup node acks each backup frame
//! `fibre_delay` after launch, the ack arriving another `fibre_delay` later,
//! and heartbeats every 10 ms. It is a test fixture role, but real DPDK
//! ports and real mbufs, like everything else.

use std::sync::Arc;

use dpdk::{Burst, Clock, Mbuf, Mempool, Port};
use taphold_wire::digest::KeyRing;
use taphold_wire::ethernet::EthernetAddress;
use taphold_wire::link;
use taphold_wire::taphold::{AckRepr, HeartbeatRepr, MsgType, Packet};

use super::BURST;
use crate::config::{HarnessLinkConfig, NodeAcks, SeqRange, TapMode};
use crate::frames::link_frame;
use crate::plan::Plan;
use crate::plane::Plane;
use taphold_wire::taphold::Flags;

/// Bursts taken from each fibre per poll.
const MAX_BURSTS: usize = 4;

/// Heartbeat period of the modelled backup node (the patent's default).
const NODE_HEARTBEAT_NS: u64 = 10_000_000;

pub struct ModelLink {
    link: usize,
    /// Far end of the fibre: receives what the appliance sent on Bk, and
    /// carries the modelled node's acks and heartbeats back.
    fibre: Port,
    /// Injects the tap copies into Tk.
    tap_feed: Port,
    mode: TapMode,
    /// Seqs whose first tap copy the tap loses (re-launches pass).
    lose: Vec<SeqRange>,
    /// The tap shows nothing from .0 to .1 ns after the model started.
    cut_window_ns: Option<(u64, u64)>,
    /// When the model first polled (the cut window's origin); 0 before.
    started_ns: u64,
    /// Index into `TapModel::sinks`, if the far end is recorded.
    sink: Option<usize>,
    tap_out: Burst<BURST>,
    /// The appliance's MAC on this link and the (modelled) node's.
    appliance_mac: EthernetAddress,
    node_mac: EthernetAddress,
    backup_node: bool,
    /// What its acks claim.
    node_acks: NodeAcks,
    /// Round trip of the modelled fibre (2 × one-way delay).
    ack_delay_ns: u64,
    /// Acks in flight, due a fibre round trip after each frame arrived.
    acks: AckQueue,
    records: u64,
    node_hb_seq: u64,
    next_node_hb_ns: u64,
    /// The appliance's last heartbeat, echoed in ours.
    echo: (u64, u64),
    /// The appliance's epoch as last heard: the modelled node speaks for it.
    epoch: u64,
    node_out: Burst<BURST>,
    /// Attack: the index of the link whose launches this tap also shows.
    pub inject_from: Option<usize>,
    /// Attack: heartbeats go straight back, addresses swapped.
    reflect: bool,
    /// Bridged frames waiting for this link's tap.
    bridged: Burst<BURST>,
}

pub struct TapModel {
    links: Vec<ModelLink>,
    sinks: Vec<Arc<Port>>,
    pool: Mempool,
    key: KeyRing,
    stream: u32,
    clock: Clock,
    plane: &'static Plane,
    rx: Burst<BURST>,
    sink_out: Burst<BURST>,
}

impl ModelLink {
    /// The model of link `link` as `cfg` describes it: `fibre` is the far
    /// end of its Bk ring pair, `tap_feed` the near end of its Tk pair,
    /// `sink` the index of the port recording what reaches the far end.
    pub fn new(
        link: usize,
        cfg: &HarnessLinkConfig,
        fibre: Port,
        tap_feed: Port,
        sink: Option<usize>,
        node_mac: EthernetAddress,
    ) -> ModelLink {
        ModelLink {
            link,
            fibre,
            tap_feed,
            mode: cfg.tap,
            lose: cfg.lose_tap_copies.clone(),
            cut_window_ns: cfg
                .tap_cut_ms
                .map(|[from, to]| (from.saturating_mul(1_000_000), to.saturating_mul(1_000_000))),
            started_ns: 0,
            sink,
            tap_out: Burst::new(),
            // Set by TapModel::new, once the link's MAC is known.
            appliance_mac: EthernetAddress([0; 6]),
            node_mac,
            backup_node: cfg.backup_node,
            node_acks: cfg.node_acks,
            ack_delay_ns: cfg.ack_delay_ns(),
            acks: AckQueue::new(1 << 16),
            records: 0,
            node_hb_seq: 0,
            next_node_hb_ns: 0,
            echo: (0, 0),
            epoch: 0,
            node_out: Burst::new(),
            inject_from: None,
            reflect: cfg.reflect,
            bridged: Burst::new(),
        }
    }
}

impl TapModel {
    /// The role over `links`; `macs[k]` is the appliance's MAC on link `k`.
    pub fn new(
        mut links: Vec<ModelLink>,
        sinks: Vec<Arc<Port>>,
        macs: &[EthernetAddress],
        plan: &Plan,
        pool: Mempool,
        clock: Clock,
        plane: &'static Plane,
    ) -> TapModel {
        for m in &mut links {
            m.appliance_mac = macs[m.link];
        }
        TapModel {
            links,
            sinks,
            pool,
            key: plan.key,
            stream: plan.stream,
            clock,
            plane,
            rx: Burst::new(),
            sink_out: Burst::new(),
        }
    }

    pub fn poll(&mut self) -> usize {
        let c = &self.plane.counters.tap_model;
        let mut work = 0;
        let now = self.clock.now_ns();
        // Attack models: (source link, target position, target's addresses).
        let mut bridges = [(
            usize::MAX,
            0usize,
            EthernetAddress([0; 6]),
            EthernetAddress([0; 6]),
        ); 4];
        for (i, l) in self.links.iter().enumerate().take(bridges.len()) {
            if let Some(from) = l.inject_from {
                bridges[i] = (from, i, l.node_mac, l.appliance_mac);
            }
        }
        for li in 0..self.links.len() {
            let (before, rest) = self.links.split_at_mut(li);
            let (l, after) = rest.split_first_mut().expect("li < len");
            if l.started_ns == 0 {
                l.started_ns = now;
            }
            let cut_now = l
                .cut_window_ns
                .is_some_and(|(from, to)| (from..to).contains(&now.saturating_sub(l.started_ns)));
            // A fibre does not queue: take everything that arrived, a few
            // bursts at most, so the modelled tap never lags the appliance.
            for _ in 0..MAX_BURSTS {
                let n = l.fibre.rx_burst(0, &mut self.rx);
                if n == 0 {
                    break;
                }
                work += n;
                c.fibre_frames.add(n as u64);
                while let Some(m) = self.rx.pop() {
                    let lost = !l.lose.is_empty() && first_copy_of(&m, &l.lose);
                    if lost {
                        c.tap_lost.inc();
                    }
                    match l.mode {
                        _ if cut_now => c.tap_cut.inc(),
                        _ if lost => {}
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
                    if l.backup_node {
                        l.node_receives(&m, now, &self.key);
                    }
                    if l.reflect {
                        l.reflect_heartbeat(&m, &self.pool);
                    }
                    for &(from, to, node, ours) in &bridges {
                        if from != l.link {
                            continue;
                        }
                        let target = match to.cmp(&li) {
                            std::cmp::Ordering::Less => &mut before[to],
                            std::cmp::Ordering::Greater => &mut after[to - li - 1],
                            std::cmp::Ordering::Equal => continue,
                        };
                        if let Some(mut copy) = m.copy(&self.pool) {
                            link::readdress(copy.data_mut(), node, ours);
                            if target.bridged.push(copy).is_err() {
                                c.model_drops.inc();
                            }
                        }
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
            if l.backup_node {
                work += l.node_sends(now, &self.pool, &self.key, self.stream, self.plane);
            } else if !l.node_out.is_empty() {
                work += l.fibre.tx_burst(0, &mut l.node_out);
                c.model_drops.add(l.node_out.len() as u64);
                l.node_out.clear();
            }
        }
        // What the attack models bridged reaches each tap whatever the tap
        // fibre does: it is injected at the tap port.
        for l in &mut self.links {
            if !l.bridged.is_empty() {
                work += l.tap_feed.tx_burst(0, &mut l.bridged);
                c.model_drops.add(l.bridged.len() as u64);
                l.bridged.clear();
            }
        }
        work
    }
}

impl ModelLink {
    /// The reflector: a heartbeat goes back to the appliance unchanged but
    /// for the Ethernet addresses (no key needed).
    fn reflect_heartbeat(&mut self, m: &Mbuf, pool: &Mempool) {
        let is_hb = link::pdu(m.data())
            .and_then(|b| Packet::new_checked(b).ok())
            .is_some_and(|p| p.msg_type() == MsgType::Heartbeat);
        if !is_hb {
            return;
        }
        if let Some(mut copy) = m.copy(pool) {
            link::readdress(copy.data_mut(), self.appliance_mac, self.node_mac);
            let _ = self.node_out.push(copy);
        }
    }

    /// A frame reaches the modelled node: a backup frame is stored and acked
    /// (the ack arrives a fibre round trip after launch); our heartbeat is
    /// remembered for the echo.
    fn node_receives(&mut self, m: &Mbuf, now: u64, keys: &KeyRing) {
        let Some(Ok(p)) = link::pdu(m.data()).map(Packet::new_checked) else {
            return;
        };
        let Some(key) = keys.for_id(p.key_id()) else {
            return;
        };
        if p.verify_digest(key).is_err() {
            return;
        }
        self.epoch = p.epoch();
        match p.msg_type() {
            MsgType::Backup => {
                self.records += 1;
                self.acks.push(now + self.ack_delay_ns, p.seq());
            }
            MsgType::Heartbeat => self.echo = (p.seq(), p.timestamp_ns()),
            _ => {}
        }
    }

    /// Queues a frame from the modelled node to the appliance.
    fn queue(
        &mut self,
        pool: &Mempool,
        pdu: usize,
        emit: impl FnOnce(&mut [u8]) -> Result<u64, taphold_wire::WireError>,
    ) -> bool {
        match link_frame(pool, self.node_mac, self.appliance_mac, pdu, emit) {
            Some((m, _)) => self.node_out.push(m).is_ok(),
            None => false,
        }
    }

    /// Acks whose round trip is over, and the node's heartbeat when due.
    fn node_sends(
        &mut self,
        now: u64,
        pool: &Mempool,
        keys: &KeyRing,
        stream: u32,
        plane: &Plane,
    ) -> usize {
        let key = keys.sealing(now);
        let c = &plane.counters.tap_model;
        let mut sent = 0;
        if let Some(ack_seq) = self.acks.due(now) {
            let (epoch, seq) = match self.node_acks {
                NodeAcks::Faithful => (self.epoch, ack_seq),
                NodeAcks::OtherEpoch => (self.epoch.wrapping_sub(1), ack_seq),
                NodeAcks::BeyondLaunched => (self.epoch, ack_seq + 1_000_000),
            };
            let repr = AckRepr {
                link: self.link as u8,
                stream,
                epoch,
                seq,
                timestamp_ns: now,
                watermark: 0,
                records: self.records,
            };
            if self.queue(pool, repr.buffer_len(), |b| repr.emit(b, key)) {
                c.node_acks.inc();
            }
        }
        if now >= self.next_node_hb_ns {
            self.next_node_hb_ns = now + NODE_HEARTBEAT_NS;
            self.node_hb_seq += 1;
            let repr = HeartbeatRepr {
                link: self.link as u8,
                from_node: true,
                stream,
                epoch: self.epoch,
                seq: self.node_hb_seq,
                timestamp_ns: now,
                watermark: 0,
                echo_seq: self.echo.0,
                echo_timestamp_ns: self.echo.1,
            };
            if self.queue(pool, repr.buffer_len(), |b| repr.emit(b, key)) {
                c.node_heartbeats.inc();
            }
        }
        if !self.node_out.is_empty() {
            sent = self.fibre.tx_burst(0, &mut self.node_out);
            c.model_drops.add(self.node_out.len() as u64);
            self.node_out.clear();
        }
        sent
    }
}

/// Whether `m` is the first launch (not a RETRANSMIT) of a backup frame whose
/// seq is in `lose`.
fn first_copy_of(m: &Mbuf, lose: &[SeqRange]) -> bool {
    let Some(Ok(p)) = link::pdu(m.data()).map(Packet::new_checked) else {
        return false;
    };
    p.msg_type() == MsgType::Backup
        && !p.flags().contains(Flags::RETRANSMIT)
        && lose.iter().any(|r| r.contains(p.seq()))
}

/// The modelled node's acks in flight: (due time, cumulative seq), oldest
/// first, in a ring allocated once. Full, a new ack folds into the newest
/// entry (acks are cumulative, so nothing is lost but a little timing).
pub struct AckQueue {
    ring: Vec<(u64, u64)>,
    head: usize,
    len: usize,
}

impl AckQueue {
    pub fn new(capacity: usize) -> AckQueue {
        AckQueue {
            ring: vec![(0, 0); capacity.max(1)],
            head: 0,
            len: 0,
        }
    }

    /// An ack of `seq` due at `due_ns`.
    pub fn push(&mut self, due_ns: u64, seq: u64) {
        let cap = self.ring.len();
        if self.len == cap {
            let last = (self.head + self.len - 1) % cap;
            self.ring[last].1 = self.ring[last].1.max(seq);
        } else {
            self.ring[(self.head + self.len) % cap] = (due_ns, seq);
            self.len += 1;
        }
    }

    /// Takes every ack due by `now`: the highest seq among them, if any.
    pub fn due(&mut self, now: u64) -> Option<u64> {
        let cap = self.ring.len();
        let mut seq = None;
        while self.len > 0 && self.ring[self.head].0 <= now {
            seq = Some(seq.unwrap_or(0).max(self.ring[self.head].1));
            self.head = (self.head + 1) % cap;
            self.len -= 1;
        }
        seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_come_due_in_order_and_a_full_queue_folds() {
        let mut q = AckQueue::new(3);
        assert_eq!(q.due(u64::MAX), None);
        q.push(10, 1);
        q.push(20, 2);
        q.push(20, 3);
        assert_eq!(q.due(9), None);
        assert_eq!(q.due(10), Some(1));
        assert_eq!(q.due(25), Some(3), "the highest of those due");
        q.push(30, 4);
        q.push(31, 5);
        q.push(32, 6);
        q.push(33, 9); // full: folds into the newest entry, due at 32
        assert_eq!(q.due(31), Some(5));
        assert_eq!(q.due(32), Some(9));
        assert_eq!(q.due(u64::MAX), None, "empty again");
        // Wraps many times without losing an ack.
        for i in 0..100u64 {
            q.push(i, i + 1);
            assert_eq!(q.due(i), Some(i + 1));
        }
    }
}
