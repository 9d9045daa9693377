//! ingress in gateway mode (`primary.mode: gateway`): taphold is the IPv4 next
//! hop between the trading engine and the exchange.
//!
//! Each frame from P is classified by `taphold_wire::gateway`:
//! - a protected TCP segment with payload becomes a message: rewritten for its
//!   next hop at once (MACs, TTL, IPv4 checksum), its backup frame (content
//!   mode 2, or 3 under `content: fix-compact`) launched, the frame held; egress
//!   transmits it as it is once its tap copy is back;
//! - a protected segment without payload (pure ACK, SYN, FIN, RST) is held the
//!   same way if data of its flow is still held, so it never overtakes it, and
//!   forwarded at once otherwise;
//! - return traffic of a protected flow is forwarded at once, and its
//!   acknowledgement number recorded: the exchange's confirmation, passed to
//!   the backup nodes in flow acks;
//! - other routable IPv4 is forwarded at once or refused by rule; ARP requests
//!   for our address are answered and ARP replies learned.
//!
//! What is forwarded at once goes through egress's hand-off ring (egress owns
//! P's transmit queue), behind releases already queued.
//!
//! With a second port Q (`gateway.port2`), frames from Q are classified the
//! same way by Q's rules (Q's MAC and addresses); ARP is answered, learned and
//! asked on the port an address belongs to, and a frame leaves on its route's
//! port: through the hand-off ring of that port (egress owns Q's transmit
//! queue too). A held segment records its port for egress.

use std::collections::VecDeque;

use dpdk::Mbuf;
use taphold_core::gateway::{Flows, Neighbors};
use taphold_wire::arp::{self, ArpRepr};
use taphold_wire::classify::MessageMeta;
use taphold_wire::ethernet::{self, EtherType, EthernetAddress};
use taphold_wire::gateway::{
    classify_gateway, forward_in_place, port_of, FlowKey, GatewayClass, GatewayRules, SegmentMeta,
    PORT_P, PORT_Q,
};
use taphold_wire::taphold::{BackupRepr, Content, ContentMode, Flags, FlowAckRepr, TcpSegmentRepr};

use super::{Ingress, BURST};
use crate::frames::link_frame;
use crate::plan::GatewayPlan;
use crate::roles::{HeldMessage, TcpHeld};

/// Gateway mode's state in ingress: the plan's rules and the tables only
/// ingress writes.
pub struct GatewayState {
    plan: GatewayPlan,
    neighbors: Neighbors,
    flows: Flows<FlowKey>,
    /// Sequence number of the last flow ack sent, in this epoch.
    flow_ack_seq: u64,
    next_flow_acks_ns: u64,
    next_arp_scan_ns: u64,
    /// Where a compact FIX encoding is built (allocated once).
    scratch: Vec<u8>,
    /// Frames waiting for their next hop's ARP reply, oldest first, with the
    /// next hop, when they were parked and the port they came in on (as
    /// Linux queues a few per unresolved neighbour): the first SYN after a
    /// restart is not lost.
    parked: VecDeque<([u8; 4], u64, Mbuf, u8)>,
    /// Our addresses on P (primary.ip first), and on Q (empty without Q).
    p_ours: Vec<[u8; 4]>,
    q_ours: Vec<[u8; 4]>,
    /// Our MAC on Q (unused without Q).
    q_mac: EthernetAddress,
}

/// Frames parked for unresolved next hops, at most (the rest are dropped,
/// counted, and left to TCP's retransmission).
pub const PARKED_MAX: usize = 32;

impl GatewayState {
    pub fn new(plan: &GatewayPlan, ip: [u8; 4], max_payload: u16) -> GatewayState {
        let mut neighbors = Neighbors::new(plan.max_neighbors, plan.arp_retry_ns);
        for (ip, mac) in &plan.neighbors {
            // Validation bounds the static entries by max_neighbors.
            neighbors.add_static(*ip, mac.0);
        }
        // Routers we will need: asked for on the first poll, not on the first packet.
        for r in &plan.routes {
            if let Some(via) = r.via {
                neighbors.should_ask(via, 0);
            }
        }
        GatewayState {
            neighbors,
            flows: Flows::new(plan.max_flows),
            flow_ack_seq: 0,
            next_flow_acks_ns: 0,
            next_arp_scan_ns: 0,
            scratch: vec![0; usize::from(max_payload)],
            parked: VecDeque::with_capacity(PARKED_MAX),
            p_ours: std::iter::once(ip)
                .chain(plan.addresses.iter().copied())
                .collect(),
            q_ours: plan
                .port2
                .as_ref()
                .map_or_else(Vec::new, |q| q.addresses.clone()),
            q_mac: plan
                .port2
                .as_ref()
                .map_or(EthernetAddress([0; 6]), |q| q.mac),
            plan: plan.clone(),
        }
    }
}

impl Ingress {
    /// One frame from P (or Q: `in_port`) in gateway mode: a message
    /// accepted (its seq returned), or forwarded, answered, learned, or
    /// dropped and counted.
    pub(super) fn admit_gateway(
        &mut self,
        m: Mbuf,
        in_port: u8,
        now: u64,
        watermark: u64,
        active: u8,
    ) -> Option<u64> {
        let c = &self.plane.counters.ingress;
        let g = &self.plane.counters.gateway;
        let gw = self.gateway.as_mut()?;
        let rules = if in_port == PORT_Q {
            GatewayRules {
                mac: gw.q_mac,
                ip: gw.q_ours.first().copied().unwrap_or([0; 4]),
                also: gw.q_ours.get(1..).unwrap_or(&[]),
                elsewhere: &gw.p_ours,
                routes: &gw.plan.routes,
                protect: &gw.plan.protect,
                forward_other: gw.plan.forward_other,
                max_payload: self.addr.max_payload,
            }
        } else {
            GatewayRules {
                mac: self.addr.mac,
                ip: self.addr.ip,
                also: &gw.plan.addresses,
                elsewhere: &gw.q_ours,
                routes: &gw.plan.routes,
                protect: &gw.plan.protect,
                forward_other: gw.plan.forward_other,
                max_payload: self.addr.max_payload,
            }
        };
        match classify_gateway(m.data(), &rules) {
            GatewayClass::Protected(seg) => {
                return self.protect(m, seg, in_port, now, watermark, active)
            }
            GatewayClass::Return {
                flow,
                ack,
                next_hop,
            } => {
                if let Some(a) = ack {
                    if gw.flows.acknowledge(&flow, a) {
                        g.return_acks.inc();
                    }
                }
                if self.forward_now(m, next_hop, in_port, now) {
                    g.returned.inc();
                }
            }
            GatewayClass::Forward { next_hop } => {
                if self.forward_now(m, next_hop, in_port, now) {
                    g.forwarded.inc();
                }
            }
            GatewayClass::ArpRequest { ip } => {
                // Its sender is a neighbour on this port's segment: learned, as
                // Linux does, so the reply it is about to get needs no ARP of ours.
                let a = arp::Packet::new_unchecked(&m.data()[ethernet::HEADER_LEN..]);
                let (sender, sender_mac) = (a.source_protocol_addr(), a.source_hardware_addr());
                let our_mac = rules.mac;
                let on_link = port_of(&gw.plan.routes, sender) == in_port
                    && gw
                        .plan
                        .routes
                        .iter()
                        .any(|r| r.via.is_none() && r.prefix.contains(sender));
                if on_link && !rules.is_ours(sender) && sender_mac.0[0] & 1 == 0 {
                    g.count_learned(gw.neighbors.learn(sender, sender_mac.0));
                }
                if self.answer_arp(m, our_mac, ip, in_port) && in_port == PORT_Q {
                    g.q_arp_replies.inc();
                }
            }
            GatewayClass::ArpReply { ip, .. } if port_of(&gw.plan.routes, ip) != in_port => {
                g.arp_wrong_port.inc();
            }
            GatewayClass::ArpReply { ip, mac } => g.count_learned(gw.neighbors.learn(ip, mac.0)),
            GatewayClass::Drop(reason) => c.dropped[reason.index()].inc(),
        }
        None
    }

    /// The MAC of `next_hop` and the frame back, or None: the frame is parked
    /// until the next hop's ARP reply (asked for now, if due), or dropped when
    /// the parking is full (counted). A frame also parks while earlier ones
    /// for the same next hop are parked: it must not overtake them.
    fn resolve(
        &mut self,
        m: Mbuf,
        next_hop: [u8; 4],
        in_port: u8,
        now: u64,
    ) -> Option<(Mbuf, EthernetAddress)> {
        let g = &self.plane.counters.gateway;
        let gw = self.gateway.as_mut()?;
        let waiting = gw.parked.iter().any(|(ip, _, _, _)| *ip == next_hop);
        if let (Some(mac), false) = (gw.neighbors.lookup(next_hop), waiting) {
            return Some((m, EthernetAddress(mac)));
        }
        if gw.parked.len() < PARKED_MAX {
            // Within the capacity reserved at construction: no allocation.
            gw.parked.push_back((next_hop, now, m, in_port));
            g.arp_parked.inc();
        } else {
            g.no_neighbor.inc();
        }
        if !waiting && gw.neighbors.should_ask(next_hop, now) {
            self.ask(next_hop);
        }
        None
    }

    /// The parked frames whose next hop is now resolved, oldest first, as
    /// many as `room`: they are admitted again before anything newer from P.
    /// All of one next hop's or none, so that none of them is parked again
    /// behind the others.
    pub(super) fn unpark(&mut self, room: usize) {
        let out = &mut self.rx;
        let ports = &mut self.in_port;
        let Some(gw) = self.gateway.as_mut() else {
            return;
        };
        while let Some(ip) = gw
            .parked
            .iter()
            .map(|(ip, _, _, _)| *ip)
            .find(|ip| gw.neighbors.lookup(*ip).is_some())
        {
            let count = gw.parked.iter().filter(|(i, _, _, _)| *i == ip).count();
            if out.len() + count > room.min(BURST) {
                return;
            }
            let mut i = 0;
            while i < gw.parked.len() {
                if gw.parked[i].0 == ip {
                    let (_, _, m, port) = gw.parked.remove(i).expect("index checked");
                    // Re-admitted by the rules of the port it came in on.
                    ports[out.len()] = port;
                    let _ = out.push(m);
                } else {
                    i += 1;
                }
            }
        }
    }

    /// At shutdown: every parked frame is dropped, counted.
    pub fn discard_parked(&mut self) {
        self.expire_parked(u64::MAX, 0);
    }

    /// Parked frames older than `max_age_ns` are dropped (counted): their next
    /// hop did not answer.
    fn expire_parked(&mut self, now: u64, max_age_ns: u64) {
        let g = &self.plane.counters.gateway;
        let Some(gw) = self.gateway.as_mut() else {
            return;
        };
        while gw
            .parked
            .front()
            .is_some_and(|(_, at, _, _)| now.saturating_sub(*at) > max_age_ns)
        {
            drop(gw.parked.pop_front());
            g.no_neighbor.inc();
        }
    }

    /// Our MAC and the address we speak from on `port`.
    fn ours_on(&self, port: u8) -> (EthernetAddress, [u8; 4]) {
        match (&self.gateway, port) {
            (Some(gw), PORT_Q) => (gw.q_mac, gw.q_ours.first().copied().unwrap_or([0; 4])),
            _ => (self.addr.mac, self.addr.ip),
        }
    }

    /// The port `next_hop` is reached on.
    fn port_to(&self, next_hop: [u8; 4]) -> u8 {
        self.gateway
            .as_ref()
            .map_or(PORT_P, |gw| port_of(&gw.plan.routes, next_hop))
    }

    /// Hands a frame to egress for `port` (P's ring, or Q's with a second port).
    pub(super) fn push_out(&mut self, port: u8, m: Mbuf) -> Result<(), Mbuf> {
        match (&mut self.q_out, port) {
            (Some(q), PORT_Q) => q.push(m),
            _ => self.arp_out.push(m),
        }
    }

    /// An ARP request for `ip`, broadcast through egress on the port `ip`
    /// is reached on.
    fn ask(&mut self, ip: [u8; 4]) {
        let g = &self.plane.counters.gateway;
        let port = self.port_to(ip);
        let (our_mac, our_ip) = self.ours_on(port);
        let Some(mut m) = self.pool.alloc() else {
            self.plane.counters.ingress.no_mbuf.inc();
            return;
        };
        let Some(buf) = m.append(ethernet::MIN_FRAME_LEN as u16) else {
            return;
        };
        buf.fill(0);
        let repr = ArpRepr {
            operation: arp::Operation::Request,
            source_hardware_addr: our_mac,
            source_protocol_addr: our_ip,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: ip,
        };
        let written =
            ethernet::emit_header(buf, EthernetAddress::BROADCAST, our_mac, EtherType::ARP)
                .and_then(|_| repr.emit(&mut buf[ethernet::HEADER_LEN..]));
        if written.is_ok() && self.push_out(port, m).is_ok() {
            g.arp_requests_sent.inc();
        } else {
            g.forward_ring_full.inc();
        }
    }

    /// Forwards a frame at once: rewritten for `next_hop` and handed to
    /// egress for the port it is reached on. False if it was dropped (counted).
    fn forward_now(&mut self, m: Mbuf, next_hop: [u8; 4], in_port: u8, now: u64) -> bool {
        let Some((mut m, mac)) = self.resolve(m, next_hop, in_port, now) else {
            return false;
        };
        let out = self.port_to(next_hop);
        if forward_in_place(m.data_mut(), self.ours_on(out).0, mac).is_err() {
            // The classifier refuses what the rewrite would (TTL ≤ 1, runts).
            debug_assert!(false, "forward rewrite refused a classified frame");
            return false;
        }
        if self.push_out(out, m).is_err() {
            self.plane.counters.gateway.forward_ring_full.inc();
            return false;
        }
        true
    }

    /// A protected segment: held behind its backup frame, or (no payload and
    /// nothing of its flow held) forwarded at once.
    fn protect(
        &mut self,
        m: Mbuf,
        seg: SegmentMeta,
        in_port: u8,
        now: u64,
        watermark: u64,
        active: u8,
    ) -> Option<u64> {
        let c = &self.plane.counters.ingress;
        let g = &self.plane.counters.gateway;
        if self.halted {
            // Failed closed: nothing protected is accepted (TCP retransmits it).
            g.protected_refused_halted.inc();
            return None;
        }
        let released = self.released();
        let gw = self.gateway.as_mut()?;
        // u64::MAX: not tracked (table full), so assume something is held.
        let last_held = match gw.flows.entry(seg.flow) {
            Some(f) => f.last_held,
            None => {
                g.flow_table_full.inc();
                u64::MAX
            }
        };
        if seg.payload_len == 0 && last_held <= released {
            if self.forward_now(m, seg.next_hop, in_port, now) {
                g.protected_control_forwarded.inc();
            }
            return None;
        }
        let (mut m, mac) = self.resolve(m, seg.next_hop, in_port, now)?;
        let out_port = self.port_to(seg.next_hop);
        if forward_in_place(m.data_mut(), self.ours_on(out_port).0, mac).is_err() {
            debug_assert!(false, "forward rewrite refused a classified segment");
            return None;
        }
        let meta = MessageMeta {
            src_mac: seg.src_mac,
            src_ip: seg.flow.src_ip,
            src_port: seg.flow.src_port,
            payload_off: seg.payload_off,
            payload_len: seg.payload_len,
            udp_checksum: 0,
        };
        let tcp = TcpHeld {
            dst_ip: seg.flow.dst_ip,
            dst_port: seg.flow.dst_port,
            tcp_seq: seg.tcp_seq,
            tcp_flags: seg.tcp_flags,
            rule: seg.rule,
            out_port,
        };
        let seq = self.hold.next_seq();
        let Some(first) = (0..self.links.len()).find(|k| active & (1 << k) != 0) else {
            let s = self.accept_unlaunched(m, meta, Some(tcp), now, watermark)?;
            self.note_held(seg.flow, s);
            return Some(s);
        };
        let payload = &m.data()[usize::from(seg.payload_off)..][..usize::from(seg.payload_len)];
        let full = TcpSegmentRepr {
            src_ip: meta.src_ip,
            src_port: meta.src_port,
            payload_len: meta.payload_len,
            dst_ip: tcp.dst_ip,
            dst_port: tcp.dst_port,
            tcp_flags: tcp.tcp_flags,
            tcp_seq: tcp.tcp_seq,
            content: payload,
        };
        // The scratch buffer is taken out for the call, so the frame can be
        // built by `&mut self` methods while the encoding borrows it.
        let mut scratch = std::mem::take(&mut self.gateway.as_mut()?.scratch);
        let content = match self.gateway.as_ref()?.plan.content {
            ContentMode::FixCompact if seg.payload_len > 0 => {
                match taphold_fix::compact::encode_compact(payload, &mut scratch) {
                    Ok(n) => {
                        g.fix_compact.inc();
                        Content::FixCompact(TcpSegmentRepr {
                            content: &scratch[..n],
                            ..full
                        })
                    }
                    Err(_) => {
                        g.fix_compact_fallback.inc();
                        Content::Tcp(full)
                    }
                }
            }
            _ => Content::Tcp(full),
        };
        let repr = BackupRepr {
            // The first link it goes on; the others' copies are sealed for theirs.
            link: first as u8,
            // Never ENCRYPTED: gateway mode refuses link_security: aead (config).
            flags: Flags::EMPTY,
            stream: self.stream,
            epoch: self.epoch,
            seq,
            timestamp_ns: now,
            watermark,
            src_ip: meta.src_ip,
            src_port: meta.src_port,
            payload_len: meta.payload_len,
            content,
        };
        let digest = self.queue_backup_frames(&repr, first, active);
        if let Some(gw) = self.gateway.as_mut() {
            gw.scratch = scratch;
        }
        let Some(digest) = digest else {
            c.no_mbuf.inc();
            return None;
        };
        let held = HeldMessage {
            mbuf: m,
            meta,
            tcp: Some(tcp),
            timestamp_ns: now,
            watermark,
        };
        match self.hold.push(held, digest, now) {
            Ok(s) => {
                if seg.payload_len == 0 {
                    g.protected_control_held.inc();
                } else {
                    g.protected_segments.inc();
                }
                self.note_held(seg.flow, s);
                Some(s)
            }
            // Unreachable: we took at most `free()` frames and are the only producer.
            Err(_msg) => {
                self.unqueue_last(active);
                c.ring_full_polls.inc();
                None
            }
        }
    }

    fn note_held(&mut self, flow: FlowKey, seq: u64) {
        if let Some(f) = self.gateway.as_mut().and_then(|gw| gw.flows.entry(flow)) {
            f.last_held = seq;
        }
    }

    /// Gateway mode's periodic work, on the heartbeat path: ARP for next hops
    /// still unresolved, and the exchange's new acknowledgements to every
    /// backup link as flow acks.
    pub(super) fn gateway_tick(&mut self, now: u64, watermark: u64) -> usize {
        let Some(gw) = self.gateway.as_mut() else {
            return 0;
        };
        let mut work = 0;
        if now >= gw.next_arp_scan_ns {
            gw.next_arp_scan_ns = now + gw.plan.arp_retry_ns;
            // As long as the asking lasts: the first ask and its re-asks.
            let max_age = gw
                .plan
                .arp_retry_ns
                .saturating_mul(u64::from(taphold_core::gateway::MAX_RETRIES) + 1);
            self.expire_parked(now, max_age);
            let Some(gw) = self.gateway.as_mut() else {
                return 0;
            };
            let mut due = [[0u8; 4]; 8];
            let mut n = 0;
            gw.neighbors.due(now, |ip| {
                if n < due.len() {
                    due[n] = ip;
                    n += 1;
                }
            });
            for ip in &due[..n] {
                self.ask(*ip);
            }
            work += n;
        }
        let Some(gw) = self.gateway.as_mut() else {
            return work;
        };
        if now < gw.next_flow_acks_ns {
            return work;
        }
        gw.next_flow_acks_ns = now + gw.plan.flow_ack_interval_ns;
        let (stream, epoch) = (self.stream, self.epoch);
        let g = &self.plane.counters.gateway;
        let links = &mut self.links;
        let pool = &self.pool;
        let key = self.key.sealing(now);
        let seq = &mut gw.flow_ack_seq;
        gw.flows.unsent_acks(|flow, acked| {
            // All or nothing: a flow ack goes to every link or is offered again.
            if links.iter().any(|l| l.pending.room() == 0) {
                return false;
            }
            *seq += 1;
            for (k, l) in links.iter_mut().enumerate() {
                let repr = FlowAckRepr {
                    link: k as u8,
                    stream,
                    epoch,
                    seq: *seq,
                    timestamp_ns: now,
                    watermark,
                    src_ip: flow.src_ip,
                    src_port: flow.src_port,
                    dst_ip: flow.dst_ip,
                    dst_port: flow.dst_port,
                    acked,
                };
                if let Some((m, _)) = link_frame(pool, l.mac, l.peer_mac, repr.buffer_len(), |b| {
                    repr.emit(b, key)
                }) {
                    let _ = l.pending.push(m);
                    g.flow_acks_sent.inc();
                    work += 1;
                }
            }
            true
        });
        work
    }
}
