//! ingress: P rx → classify → stamp (stream, seq) → build the backup frame →
//! put the original in the hold ring → launch the backup frame on every
//! backup link in service. Also launches our heartbeats on every link, and
//! the re-launches egress builds (retransmits, re-send rounds: relaunch.rs)
//! on the link each is for, before anything new.
//!
//! The slot is written before the backup frame is transmitted: on another
//! lcore, tap-rx may see the tap copy the instant it leaves, and must find the
//! message already held. Backpressure: ingress only takes from P as many
//! frames as the hold ring has free slots, and takes none while a backup link
//! still has frames it refused earlier (they go first, in order), while a
//! re-send round is under way, or while the appliance is halted. A hold ring
//! that stays full is published for the main lcore's backpressure alert: what
//! is not read from P meanwhile is the port's.

use std::sync::Arc;

use dpdk::{Burst, Clock, Mbuf, Mempool, Port};
use taphold_core::hold_ring::Producer;
use taphold_core::round::RoundIngress;
use taphold_wire::arp;
use taphold_wire::classify::{
    classify_offloaded, Classified, DropReason, MessageMeta, PrimaryAddr,
};
use taphold_wire::digest::KeyRing;
use taphold_wire::ethernet::{EthernetAddress, HEADER_LEN as ETH_HEADER_LEN, MIN_FRAME_LEN};
use taphold_wire::gateway::{PORT_P, PORT_Q};
use taphold_wire::link;
use taphold_wire::payload::PayloadKey;
use taphold_wire::taphold::{BackupRepr, Content, ContentMode, Flags, HeartbeatRepr, Packet};

use super::{HeldMessage, TcpHeld, BURST};
use crate::counters::IngressCounters;
use crate::frames::{backup_frame, link_frame, target_confirm, TargetConfirm};
use crate::plan::Plan;
use crate::plane::{IngressWriter, Mode, Plane};

mod gateway;
pub use gateway::GatewayState;

/// One backup link as ingress transmits on it.
struct LinkTx {
    port: Arc<Port>,
    mac: EthernetAddress,
    peer_mac: EthernetAddress,
    /// Backup frames and heartbeats built but not yet accepted by the driver, oldest first.
    pending: Burst<{ 4 * BURST }>,
    hb_seq: u64,
    next_hb_ns: u64,
    /// Egress's re-launches for this link.
    relaunches: dpdk::ring::Consumer<Mbuf>,
}

pub struct Ingress {
    primary: Arc<Port>,
    /// P verifies IPv4/UDP checksums on receive: frames it vouches for skip ours.
    rx_checksum_offload: bool,
    addr: PrimaryAddr,
    links: Vec<LinkTx>,
    hold: Producer<HeldMessage>,
    pool: Mempool,
    /// The backup-link keys: the sealing one by the clock, both accepted.
    key: KeyRing,
    /// The arbiter's keys, for target confirmations.
    arbiter_keys: KeyRing,
    /// `link_security: aead`: backup frames' payloads are encrypted with it.
    aead: Option<PayloadKey>,
    content: ContentMode,
    stream: u32,
    /// This run's epoch: (stream, epoch, seq) names each message.
    epoch: u64,
    arp_out: dpdk::ring::Producer<Mbuf>,
    clock: Clock,
    plane: &'static Plane,
    mine: IngressWriter,
    rx: Burst<BURST>,
    hb_interval_ns: u64,
    /// Our UDP port for the arbiter's target confirmations; 0: none.
    target_confirm_port: u16,
    /// Our side of the re-send round handshake: whether we are paused for one.
    round: RoundIngress<'static>,
    /// Seqs accepted in this poll, to stamp their launch time.
    launched: [u64; BURST],
    /// Gateway mode's rules and tables; None in listener mode.
    gateway: Option<GatewayState>,
    /// This poll found the appliance halted (failed closed).
    halted: bool,
    /// Two-port gateway: Q (its receive queue is ours) and the hand-off ring
    /// of what leaves on Q (egress owns Q's transmit queue).
    q: Option<Arc<Port>>,
    q_out: Option<dpdk::ring::Producer<Mbuf>>,
    /// The port each frame in `rx` came in on.
    in_port: [u8; BURST],
    /// Which port is read first this poll: they alternate, so that a busy P
    /// cannot starve Q of the hold ring's room (or the reverse).
    q_first: bool,
}

/// What ingress is given to work with, besides the plan.
pub struct IngressParts {
    pub primary: Arc<Port>,
    /// Per link: its port, our MAC on it, and egress's re-launches for it.
    pub links: Vec<(Arc<Port>, EthernetAddress, dpdk::ring::Consumer<Mbuf>)>,
    pub hold: Producer<HeldMessage>,
    pub pool: Mempool,
    pub arp_out: dpdk::ring::Producer<Mbuf>,
    /// Two-port gateway: Q, and the hand-off ring of what leaves on Q.
    pub q: Option<(Arc<Port>, dpdk::ring::Producer<Mbuf>)>,
    pub clock: Clock,
    pub plane: &'static Plane,
    pub mine: IngressWriter,
    pub round: RoundIngress<'static>,
}

impl Ingress {
    pub fn new(plan: &Plan, epoch: u64, parts: IngressParts) -> Ingress {
        let links = parts
            .links
            .into_iter()
            .zip(&plan.links)
            .map(|((port, mac, relaunches), l)| LinkTx {
                port,
                mac,
                peer_mac: l.peer_mac,
                pending: Burst::new(),
                hb_seq: 0,
                next_hb_ns: 0,
                relaunches,
            })
            .collect();
        let (q, q_out) = parts.q.map_or((None, None), |(p, r)| (Some(p), Some(r)));
        Ingress {
            rx_checksum_offload: parts.primary.rx_checksum_offload(),
            primary: parts.primary,
            addr: plan.primary.addr,
            links,
            hold: parts.hold,
            pool: parts.pool,
            key: plan.key,
            arbiter_keys: plan.arbiter_keys,
            aead: plan.aead.clone(),
            content: plan.content,
            stream: plan.stream,
            epoch,
            arp_out: parts.arp_out,
            clock: parts.clock,
            plane: parts.plane,
            mine: parts.mine,
            rx: Burst::new(),
            hb_interval_ns: plan.heartbeat_interval_ns,
            target_confirm_port: plan.primary.target_confirm_port,
            round: parts.round,
            launched: [0; BURST],
            gateway: plan
                .gateway
                .as_ref()
                .map(|g| GatewayState::new(g, plan.primary.addr.ip, plan.primary.addr.max_payload)),
            q,
            q_out,
            in_port: [PORT_P; BURST],
            q_first: false,
            halted: false,
        }
    }

    pub fn poll(&mut self) -> usize {
        let c: &IngressCounters = &self.plane.counters.ingress;
        let now = self.clock.now_ns();
        let service = self.plane.control.service();
        let mut work = self.heartbeats(now);
        if self.gateway.is_some() {
            let watermark = self.watermark();
            work += self.gateway_tick(now, watermark);
        }
        // A new re-send round: stop taking new messages until egress has handed
        // over every frame of it (taphold_core::round).
        self.round.follow();
        work += self.take_relaunches(now);
        // Frames a link refused earlier leave before anything newer.
        if !self.flush_links() {
            c.backup_link_busy_polls.inc();
            return work;
        }
        if self.round.is_paused() {
            c.failover_paused_polls.inc();
            return work;
        }
        self.halted = service.mode == Mode::Halt;
        if self.halted {
            c.halted_polls.inc();
            // Listener mode takes nothing from P while failed closed. Gateway
            // mode goes on routing what it never holds (the exchange's side,
            // ARP, other traffic) and refuses protected segments, counted.
            if self.gateway.is_none() {
                return work;
            }
        }
        let room = if self.halted {
            BURST
        } else {
            self.hold.free().min(BURST)
        };
        self.mine.ring_full((room == 0).then_some(now));
        if room == 0 {
            c.ring_full_polls.inc();
            return work;
        }
        // Gateway mode: frames parked for a next hop now resolved go first.
        self.unpark(room);
        let parked = self.rx.len();
        let n = self.receive(room, parked);
        if n + parked == 0 {
            return work;
        }
        let watermark = self.watermark();
        let mut accepted = 0;
        let mut i = 0;
        while let Some(m) = self.rx.pop() {
            let port = self.in_port[i];
            i += 1;
            if let Some(seq) = self.admit(m, port, now, watermark, service.active) {
                self.launched[accepted] = seq;
                accepted += 1;
            }
            // A refused frame's mbuf is freed inside `admit`, exactly once.
        }
        self.launch(accepted, service.active);
        c.accepted.add(accepted as u64);
        work + n + parked
    }

    /// Reads up to `room` frames in all (`taken` already in `rx`) from P and,
    /// with a second gateway port, from Q, noting each one's port.
    fn receive(&mut self, room: usize, taken: usize) -> usize {
        let order = if self.q_first {
            [PORT_Q, PORT_P]
        } else {
            [PORT_P, PORT_Q]
        };
        self.q_first = !self.q_first && self.q.is_some();
        let mut taken = taken;
        let mut n = 0;
        for port in order {
            if taken >= room {
                break;
            }
            let got = match (port, &self.q) {
                (PORT_P, _) => {
                    let k = self.primary.rx_burst_max(0, &mut self.rx, room - taken);
                    self.plane.counters.ingress.rx_frames.add(k as u64);
                    k
                }
                (_, Some(q)) => {
                    let k = q.rx_burst_max(0, &mut self.rx, room - taken);
                    self.plane.counters.gateway.q_rx_frames.add(k as u64);
                    k
                }
                _ => 0,
            };
            self.in_port[taken..taken + got].fill(port);
            taken += got;
            n += got;
        }
        n
    }

    /// Transmits what each link holds pending; false if a link still refuses
    /// some (nothing newer may overtake them).
    fn flush_links(&mut self) -> bool {
        let c = &self.plane.counters.ingress;
        let mut clear = true;
        for l in &mut self.links {
            if !l.pending.is_empty() {
                c.backup_frames_sent
                    .add(l.port.tx_burst(0, &mut l.pending) as u64);
                clear &= l.pending.is_empty();
            }
        }
        clear
    }

    /// One frame from P (or, in a two-port gateway, from Q: `port`): a
    /// message accepted (its seq returned), an ARP request answered, or
    /// something else dropped and counted.
    fn admit(&mut self, m: Mbuf, port: u8, now: u64, watermark: u64, active: u8) -> Option<u64> {
        let c = &self.plane.counters.ingress;
        if m.segments() != 1 {
            c.multi_segment.inc();
            return None;
        }
        if self.gateway.is_some() {
            return self.admit_gateway(m, port, now, watermark, active);
        }
        let verified = self.rx_checksum_offload && m.rx_checksums_good();
        match classify_offloaded(m.data(), &self.addr, self.target_confirm_port, verified) {
            Classified::Message(meta) => return self.accept(m, meta, now, watermark, active),
            Classified::Control(meta) => self.target_confirmation(&m, meta, now),
            Classified::ArpRequest => {
                self.answer_arp(m, self.addr.mac, self.addr.ip, PORT_P);
            }
            Classified::Drop(reason) => c.dropped[reason.index()].inc(),
        }
        None
    }

    /// Stamps this poll's accepted messages as launched and transmits their
    /// backup frames on every link in service.
    fn launch(&mut self, accepted: usize, active: u8) {
        if accepted == 0 || active == 0 {
            // With no link in service (pass-through, journal) nothing was
            // launched: the messages are held without a launch time.
            return;
        }
        let c = &self.plane.counters.ingress;
        // Stamp before transmitting: the tap copy cannot precede this.
        let t = self.clock.now_ns();
        let last = self.launched[accepted - 1];
        for &seq in &self.launched[..accepted] {
            self.hold.set_backup_tx_ns(seq, t);
            self.mine.record_launch(seq, t);
        }
        for (k, l) in self.links.iter_mut().enumerate() {
            if active & (1 << k) != 0 {
                self.mine.launched_on(k, last);
            }
            c.backup_frames_sent
                .add(l.port.tx_burst(0, &mut l.pending) as u64);
        }
    }

    /// Builds the backup frame for every link in service, then holds the
    /// message. Returns its seq, or None if it could not be protected (counted).
    fn accept(
        &mut self,
        m: Mbuf,
        meta: MessageMeta,
        now: u64,
        watermark: u64,
        active: u8,
    ) -> Option<u64> {
        let c = &self.plane.counters.ingress;
        let seq = self.hold.next_seq();
        let Some(first) = (0..self.links.len()).find(|k| active & (1 << k) != 0) else {
            return self.accept_unlaunched(m, meta, None, now, watermark);
        };
        let payload = &m.data()[meta.payload_off as usize..][..meta.payload_len as usize];
        let repr = BackupRepr {
            link: first as u8,
            flags: if self.aead.is_some() {
                Flags::ENCRYPTED
            } else {
                Flags::EMPTY
            },
            stream: self.stream,
            epoch: self.epoch,
            seq,
            timestamp_ns: now,
            watermark,
            src_ip: meta.src_ip,
            src_port: meta.src_port,
            payload_len: meta.payload_len,
            content: Content::new(self.content, payload, self.key.sealing(now)),
        };
        let Some(digest) = self.queue_backup_frames(&repr, first, active) else {
            c.no_mbuf.inc();
            return None;
        };
        let held = HeldMessage {
            mbuf: m,
            meta,
            tcp: None,
            timestamp_ns: now,
            watermark,
        };
        match self.hold.push(held, digest, now) {
            Ok(s) => {
                debug_assert_eq!(s, seq);
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

    /// Builds the backup frame of `repr` and queues it on every link in
    /// `active` (`first` is the lowest, the one `repr` names), all or
    /// nothing: the same PDU bytes on every link but the link byte and the
    /// digest that binds it, sealed from one pass over the payload. Returns
    /// the link-free digest the hold ring keeps, or None (nothing queued)
    /// when the pool runs out.
    fn queue_backup_frames(&mut self, repr: &BackupRepr, first: usize, active: u8) -> Option<u64> {
        let l = &self.links[first];
        let key = self.key.sealing(repr.timestamp_ns);
        let (frame, seal) = backup_frame(
            &self.pool,
            repr,
            (key, self.aead.as_ref()),
            l.mac,
            l.peer_mac,
        )?;
        let mut queued = 0u8;
        for k in (first + 1)..self.links.len() {
            if active & (1 << k) == 0 {
                continue;
            }
            let Some(mut copy) = frame.copy(&self.pool) else {
                self.unqueue_last(queued);
                return None;
            };
            let l = &self.links[k];
            link::readdress(copy.data_mut(), l.peer_mac, l.mac);
            // Cannot fail: the copy is the frame just built, for a link < 4.
            let _ = seal.seal_for(&mut copy.data_mut()[ETH_HEADER_LEN..], k as u8);
            // Cannot fail: pending was empty at the start of this poll and
            // holds 4×BURST: at most BURST frames and a heartbeat per poll.
            let _ = self.links[k].pending.push(copy);
            queued |= 1 << k;
        }
        let _ = self.links[first].pending.push(frame);
        Some(seal.link_free())
    }

    /// Takes back (and frees) the frame last queued on each link in `links`.
    fn unqueue_last(&mut self, links: u8) {
        for (k, l) in self.links.iter_mut().enumerate() {
            if links & (1 << k) != 0 {
                drop(l.pending.pop_back());
            }
        }
    }

    /// Highest seq egress has released: the backup node may trim below it.
    fn released(&self) -> u64 {
        let held = (self.hold.capacity() - self.hold.free()) as u64;
        self.hold.next_seq() - 1 - held
    }

    /// The watermark our frames carry, below which the backup nodes may
    /// delete: with target confirmations, what the destination confirmed
    /// delivered (seed 004: delete once the target confirmed); else what was
    /// released. (In gateway mode the nodes keep every TCP segment whatever
    /// the watermark: released is not acknowledged by the exchange.)
    fn watermark(&self) -> u64 {
        let released = self.released();
        if self.target_confirm_port == 0 {
            released
        } else {
            self.plane.ingress.delivered_seq().min(released)
        }
    }

    /// A datagram to our target-confirm port: counted, and if it is an
    /// authentic confirmation of this run, published.
    fn target_confirmation(&mut self, m: &Mbuf, meta: MessageMeta, now: u64) {
        let c = &self.plane.counters.ingress;
        let payload = &m.data()[meta.payload_off as usize..][..meta.payload_len as usize];
        match target_confirm(
            payload,
            self.stream,
            self.epoch,
            self.released(),
            &self.arbiter_keys,
        ) {
            TargetConfirm::Delivered { seq } => {
                self.mine.delivered(seq, now);
                c.target_confirms.inc();
            }
            TargetConfirm::Malformed => c.target_confirm_malformed.inc(),
            TargetConfirm::Corrupt => c.target_confirm_corrupt.inc(),
            TargetConfirm::UnknownKey => c.target_confirm_unknown_key.inc(),
            TargetConfirm::Foreign => c.target_confirm_foreign.inc(),
            TargetConfirm::OtherEpoch => c.target_confirm_other_epoch.inc(),
            TargetConfirm::BeyondReleased => c.target_confirm_beyond_released.inc(),
        }
    }

    /// No backup link in service. In pass-through and journal modes the
    /// message is still accepted and held, with no backup frame (egress
    /// releases it flagged, or once journaled, or launches it when protection
    /// returns); otherwise it is refused and counted (the main lcore is about
    /// to halt us).
    fn accept_unlaunched(
        &mut self,
        m: Mbuf,
        meta: MessageMeta,
        tcp: Option<TcpHeld>,
        now: u64,
        watermark: u64,
    ) -> Option<u64> {
        let c = &self.plane.counters.ingress;
        if !matches!(self.plane.control.mode(), Mode::PassThrough | Mode::Journal) {
            c.no_link.inc();
            return None;
        }
        let held = HeldMessage {
            mbuf: m,
            meta,
            tcp,
            timestamp_ns: now,
            watermark,
        };
        // Digest 0: no frame exists to match; release is the mode's decision.
        match self.hold.push(held, 0, now) {
            Ok(seq) => {
                c.unlaunched.inc();
                Some(seq)
            }
            Err(_) => {
                c.ring_full_polls.inc();
                None
            }
        }
    }

    /// Our heartbeat on every link that is due one (active and standby: the
    /// tap copy of a heartbeat proves a tap path that carries no traffic).
    fn heartbeats(&mut self, now: u64) -> usize {
        let watermark = self.watermark();
        let mut sent = 0;
        for (k, l) in self.links.iter_mut().enumerate() {
            if now < l.next_hb_ns || l.pending.room() == 0 {
                continue;
            }
            l.next_hb_ns = now + self.hb_interval_ns;
            let seq = l.hb_seq + 1;
            let (echo_seq, echo_timestamp_ns) = self.plane.link_rx[k].peer_heartbeat();
            let repr = HeartbeatRepr {
                link: k as u8,
                from_node: false,
                stream: self.stream,
                epoch: self.epoch,
                seq,
                timestamp_ns: now,
                watermark,
                echo_seq,
                echo_timestamp_ns,
            };
            let Some((m, _)) = link_frame(&self.pool, l.mac, l.peer_mac, repr.buffer_len(), |b| {
                repr.emit(b, self.key.sealing(now))
            }) else {
                self.plane.counters.ingress.no_mbuf.inc();
                continue;
            };
            l.hb_seq = seq;
            self.mine.heartbeat_sent(k, seq, now);
            let _ = l.pending.push(m);
            self.plane.counters.ingress.heartbeats_sent.inc();
            sent += 1;
        }
        sent
    }

    /// Moves egress's re-launched frames onto their links, ahead of anything
    /// new; while paused for a re-send round, resumes once egress says the
    /// round is done and every frame of it is queued.
    fn take_relaunches(&mut self, now: u64) -> usize {
        let c = &self.plane.counters.ingress;
        // Before draining: rings found empty after it hold nothing more of the round.
        let done = self.round.round_done();
        let mut moved = 0;
        let mut left = 0;
        for (k, l) in self.links.iter_mut().enumerate() {
            while l.pending.room() > 0 {
                let Some(m) = l.relaunches.pop() else { break };
                // Its launch on this link is now: the ack and tap deadlines count from here.
                if let Some(Ok(p)) = link::pdu(m.data()).map(Packet::new_checked) {
                    self.mine.record_launch(p.seq(), now);
                    self.mine.launched_on(k, p.seq());
                    // A message accepted with no link in service: its first launch.
                    self.hold.stamp_first_launch(p.seq(), now);
                }
                let _ = l.pending.push(m);
                moved += 1;
            }
            left += l.relaunches.count();
        }
        c.resent.add(moved as u64);
        self.round.try_resume(done, left == 0);
        moved
    }
}

impl Ingress {
    /// Answers an ARP request for our `ip` in place and hands the reply to
    /// egress for `port`; true if it went (else counted: a request the reply
    /// cannot be made of, or egress's ring full).
    fn answer_arp(&mut self, mut m: Mbuf, mac: EthernetAddress, ip: [u8; 4], port: u8) -> bool {
        let c = &self.plane.counters.ingress;
        let ok = match arp::reply_in_place(m.data_mut(), mac, ip) {
            Ok(len) => pad_to(&mut m, len),
            Err(_) => false,
        };
        if !ok {
            c.dropped[DropReason::ArpOther.index()].inc();
            return false;
        }
        if self.push_out(port, m).is_err() {
            c.arp_reply_dropped.inc();
            return false;
        }
        c.arp_replies.inc();
        true
    }
}

/// Grows a frame to `len` bytes (at least the Ethernet minimum), zero padding.
fn pad_to(m: &mut Mbuf, len: usize) -> bool {
    let want = len.max(MIN_FRAME_LEN);
    if !m.set_len(want) {
        return false;
    }
    m.data_mut()[len..].fill(0);
    true
}
