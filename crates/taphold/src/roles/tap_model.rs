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
use taphold_wire::digest::DigestKey;
use taphold_wire::ethernet::{self, EtherType, EthernetAddress, MIN_FRAME_LEN};
use taphold_wire::taphold::{AckRepr, HeartbeatRepr, MsgType, Packet};

use super::BURST;
use crate::config::{NodeAcks, SeqRange, TapMode};
use crate::Shared;
use taphold_wire::taphold::Flags;

/// Bursts taken from each fibre per poll.
const MAX_BURSTS: usize = 4;

/// Heartbeat period of the modelled backup node (the patent's default).
const NODE_HEARTBEAT_NS: u64 = 10_000_000;

pub struct ModelLink {
    pub link: usize,
    /// Far end of the fibre: receives what the appliance sent on Bk, and
    /// carries the modelled node's acks and heartbeats back.
    pub fibre: Port,
    /// Injects the tap copies into Tk.
    pub tap_feed: Port,
    pub mode: TapMode,
    /// Seqs whose first tap copy the tap loses (re-launches pass).
    pub lose: Vec<SeqRange>,
    /// The tap shows nothing from .0 to .1 ns after the model started.
    pub cut_window_ns: Option<(u64, u64)>,
    /// When the model first polled (the cut window's origin); 0 before.
    pub started_ns: u64,
    /// Index into `TapModel::sinks`, if the far end is recorded.
    pub sink: Option<usize>,
    pub tap_out: Burst<BURST>,
    /// The appliance's MAC on this link and the (modelled) node's.
    pub appliance_mac: EthernetAddress,
    pub node_mac: EthernetAddress,
    pub backup_node: bool,
    /// What its acks claim.
    pub node_acks: NodeAcks,
    /// Round trip of the modelled fibre (2 × one-way delay).
    pub ack_delay_ns: u64,
    /// Acks in flight: (due time, cumulative seq), oldest first, preallocated.
    pub acks: Vec<(u64, u64)>,
    pub acks_head: usize,
    pub acks_len: usize,
    pub records: u64,
    pub node_hb_seq: u64,
    pub next_node_hb_ns: u64,
    /// The appliance's last heartbeat, echoed in ours.
    pub echo: (u64, u64),
    /// The appliance's epoch as last heard: the modelled node speaks for it.
    pub epoch: u64,
    pub node_out: Burst<BURST>,
}

pub struct TapModel {
    pub links: Vec<ModelLink>,
    pub sinks: Vec<Arc<Port>>,
    pub pool: Mempool,
    pub key: DigestKey,
    pub stream: u32,
    pub clock: Clock,
    pub shared: &'static Shared,
    pub rx: Burst<BURST>,
    pub sink_out: Burst<BURST>,
}

impl TapModel {
    pub fn poll(&mut self) -> usize {
        let c = &self.shared.counters.tap_model;
        let mut work = 0;
        let now = self.clock.now_ns();
        for l in &mut self.links {
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
                work += l.node_sends(now, &self.pool, &self.key, self.stream, self.shared);
            }
        }
        work
    }
}

impl ModelLink {
    /// A frame reaches the modelled node: a backup frame is stored and acked
    /// (the ack arrives a fibre round trip after launch); our heartbeat is
    /// remembered for the echo.
    fn node_receives(&mut self, m: &Mbuf, now: u64, key: &DigestKey) {
        let f = m.data();
        if f.len() <= ethernet::HEADER_LEN {
            return;
        }
        let Ok(p) = Packet::new_checked(&f[ethernet::HEADER_LEN..]) else {
            return;
        };
        if p.verify_digest(key).is_err() {
            return;
        }
        self.epoch = p.epoch();
        match p.msg_type() {
            MsgType::Backup => {
                self.records += 1;
                let cap = self.acks.len();
                if self.acks_len == cap {
                    // The queue is full: fold into the newest entry (acks are cumulative).
                    let last = (self.acks_head + self.acks_len - 1) % cap;
                    self.acks[last].1 = self.acks[last].1.max(p.seq());
                } else {
                    let at = (self.acks_head + self.acks_len) % cap;
                    self.acks[at] = (now + self.ack_delay_ns, p.seq());
                    self.acks_len += 1;
                }
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
        match frame(pool, self.appliance_mac, self.node_mac, pdu, emit) {
            Some(m) => self.node_out.push(m).is_ok(),
            None => false,
        }
    }

    /// Acks whose round trip is over, and the node's heartbeat when due.
    fn node_sends(
        &mut self,
        now: u64,
        pool: &Mempool,
        key: &DigestKey,
        stream: u32,
        shared: &Shared,
    ) -> usize {
        let c = &shared.counters.tap_model;
        let cap = self.acks.len();
        let mut ack_seq = 0;
        while self.acks_len > 0 && self.acks[self.acks_head].0 <= now {
            ack_seq = ack_seq.max(self.acks[self.acks_head].1);
            self.acks_head = (self.acks_head + 1) % cap;
            self.acks_len -= 1;
        }
        let mut sent = 0;
        if ack_seq != 0 {
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
    let Some(p) = m
        .data()
        .get(ethernet::HEADER_LEN..)
        .and_then(|b| Packet::new_checked(b).ok())
    else {
        return false;
    };
    p.msg_type() == MsgType::Backup
        && !p.flags().contains(Flags::RETRANSMIT)
        && lose.iter().any(|r| r.contains(p.seq()))
}

/// A taphold frame from the modelled node: Ethernet header, PDU, padding.
fn frame(
    pool: &Mempool,
    dst: EthernetAddress,
    src: EthernetAddress,
    pdu: usize,
    emit: impl FnOnce(&mut [u8]) -> Result<u64, taphold_wire::WireError>,
) -> Option<Mbuf> {
    let mut m = pool.alloc()?;
    let len = (ethernet::HEADER_LEN + pdu).max(MIN_FRAME_LEN);
    let buf = m.append(len as u16)?;
    buf.fill(0);
    ethernet::emit_header(buf, dst, src, EtherType::TAPHOLD).ok()?;
    emit(&mut buf[ethernet::HEADER_LEN..ethernet::HEADER_LEN + pdu]).ok()?;
    Some(m)
}
