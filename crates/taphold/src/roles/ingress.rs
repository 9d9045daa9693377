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
//! that stays full is published (`ring_full_since_ns`) for the main lcore's
//! backpressure alert: what is not read from P meanwhile is the port's.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use dpdk::{Burst, Clock, Mbuf, Mempool, Port};
use taphold_core::hold_ring::Producer;
use taphold_wire::arp;
use taphold_wire::classify::{classify, Classified, DropReason, MessageMeta, PrimaryAddr};
use taphold_wire::digest::DigestKey;
use taphold_wire::ethernet::{self, EtherType, EthernetAddress, MIN_FRAME_LEN};
use taphold_wire::taphold::{BackupRepr, Content, ContentMode, Flags, HeartbeatRepr, Packet};

use super::{HeldMessage, BURST};
use crate::counters::IngressCounters;
use crate::frames::backup_frame;
use crate::links::{self, Mode};
use crate::Shared;

/// One backup link as ingress transmits on it.
pub struct LinkTx {
    pub port: Arc<Port>,
    pub mac: EthernetAddress,
    pub peer_mac: EthernetAddress,
    /// Backup frames and heartbeats built but not yet accepted by the driver, oldest first.
    pub pending: Burst<{ 4 * BURST }>,
    pub hb_seq: u64,
    pub next_hb_ns: u64,
}

pub struct Ingress {
    pub primary: Arc<Port>,
    pub addr: PrimaryAddr,
    pub links: Vec<LinkTx>,
    pub hold: Producer<HeldMessage>,
    pub pool: Mempool,
    pub key: DigestKey,
    pub content: ContentMode,
    pub stream: u32,
    /// This run's epoch: (stream, epoch, seq) names each message.
    pub epoch: u64,
    pub arp_out: dpdk::ring::Producer<Mbuf>,
    /// Per link: the frames egress re-launches on it, to launch before anything new.
    pub resend_in: Vec<dpdk::ring::Consumer<Mbuf>>,
    pub clock: Clock,
    pub shared: &'static Shared,
    pub rx: Burst<BURST>,
    pub hb_interval_ns: u64,
    /// Re-send round last seen, and whether we are paused for it.
    pub failover_seen: u64,
    pub paused: bool,
    /// Seqs accepted in this poll, to stamp their launch time.
    pub launched: [u64; BURST],
}

impl Ingress {
    pub fn poll(&mut self) -> usize {
        let c: &IngressCounters = &self.shared.counters.ingress;
        let ctl = &self.shared.control;
        let now = self.clock.now_ns();
        let mut work = self.heartbeats(now);

        // Acquire: pairs with the main lcore's Release store of `active`, made
        // after it bumped the failover epoch; seeing a new mask means seeing
        // the epoch that goes with it below.
        let active = ctl.active.load(Ordering::Acquire);
        // Acquire: pairs with the main lcore's Release bump (failover_link first).
        let round = ctl.failover_epoch.load(Ordering::Acquire);
        if round != self.failover_seen {
            self.failover_seen = round;
            self.paused = true;
            // Release: tells egress our tail is frozen, so its walk of the held
            // messages sees every one we will ever launch before resuming.
            ctl.ingress_paused_epoch.store(round, Ordering::Release);
        }
        work += self.take_resends();

        // Frames a link refused earlier leave before anything newer.
        let mut busy = false;
        for l in &mut self.links {
            if !l.pending.is_empty() {
                c.backup_frames_sent
                    .add(l.port.tx_burst(0, &mut l.pending) as u64);
                busy |= !l.pending.is_empty();
            }
        }
        if busy {
            c.backup_link_busy_polls.inc();
            return work;
        }
        if self.paused {
            c.failover_paused_polls.inc();
            return work;
        }
        if ctl.mode() == Mode::Halt {
            c.halted_polls.inc();
            return work;
        }

        let room = self.hold.free().min(BURST);
        if room == 0 {
            c.ring_full_polls.inc();
            if links::get(&ctl.ring_full_since_ns) == 0 {
                links::set(&ctl.ring_full_since_ns, now.max(1));
            }
            return work;
        }
        if links::get(&ctl.ring_full_since_ns) != 0 {
            links::set(&ctl.ring_full_since_ns, 0);
        }
        let n = self.primary.rx_burst_max(0, &mut self.rx, room);
        if n == 0 {
            return work;
        }
        c.rx_frames.add(n as u64);
        let watermark = self.released_watermark();

        let mut accepted = 0;
        while let Some(mut m) = self.rx.pop() {
            if m.segments() != 1 {
                c.multi_segment.inc();
                continue;
            }
            match classify(m.data(), &self.addr) {
                Classified::Message(meta) => {
                    if let Some(seq) = self.accept(m, meta, now, watermark, active) {
                        self.launched[accepted] = seq;
                        accepted += 1;
                    }
                }
                Classified::ArpRequest => {
                    let ok = match arp::reply_in_place(m.data_mut(), self.addr.mac, self.addr.ip) {
                        Ok(len) => pad_to(&mut m, len),
                        Err(_) => false,
                    };
                    if !ok {
                        c.dropped[DropReason::ArpOther.index()].inc();
                    } else if self.arp_out.push(m).is_err() {
                        c.arp_reply_dropped.inc();
                    } else {
                        c.arp_replies.inc();
                    }
                }
                Classified::Drop(reason) => c.dropped[reason.index()].inc(),
            }
            // A refused frame's mbuf is dropped (freed) here, at the end of its iteration.
        }

        if accepted > 0 && active != 0 {
            // Stamp before transmitting: the tap copy cannot precede this.
            let t = self.clock.now_ns();
            let last = self.launched[accepted - 1];
            for &seq in &self.launched[..accepted] {
                self.hold.set_backup_tx_ns(seq, t);
                ctl.record_launch(seq, t);
            }
            for (k, l) in self.links.iter_mut().enumerate() {
                if active & (1 << k) != 0 {
                    links::raise(&ctl.links[k].launched_seq, last);
                }
                c.backup_frames_sent
                    .add(l.port.tx_burst(0, &mut l.pending) as u64);
            }
        }
        // With no link in service (pass-through, journal) nothing was
        // launched: the messages are held without a launch time.
        c.accepted.add(accepted as u64);
        work + n
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
        let c = &self.shared.counters.ingress;
        let seq = self.hold.next_seq();
        let Some(first) = (0..self.links.len()).find(|k| active & (1 << k) != 0) else {
            return self.accept_unlaunched(m, meta, now, watermark);
        };
        let payload = &m.data()[meta.payload_off as usize..][..meta.payload_len as usize];
        let content = match self.content {
            ContentMode::Full => Content::Full(payload),
            ContentMode::Digest => Content::Digest(self.key.digest(payload)),
        };
        let repr = BackupRepr {
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
        let l = &self.links[first];
        let Some((frame, digest)) = backup_frame(&self.pool, &repr, &self.key, l.mac, l.peer_mac)
        else {
            c.no_mbuf.inc();
            return None;
        };

        // Same PDU bytes on every link; only the Ethernet addresses differ.
        let mut queued = 0u8;
        for k in (first + 1)..self.links.len() {
            if active & (1 << k) == 0 {
                continue;
            }
            let Some(mut copy) = frame.copy(&self.pool) else {
                // Undo: the copies already queued this round go back.
                for j in 0..self.links.len() {
                    if queued & (1 << j) != 0 {
                        drop(self.links[j].pending.pop_back());
                    }
                }
                c.no_mbuf.inc();
                return None;
            };
            let l = &self.links[k];
            let _ = ethernet::emit_header(copy.data_mut(), l.peer_mac, l.mac, EtherType::TAPHOLD);
            // Cannot fail: pending was empty at the start of this poll and
            // holds 4×BURST: at most BURST frames and a heartbeat per poll.
            let _ = self.links[k].pending.push(copy);
            queued |= 1 << k;
        }
        let _ = self.links[first].pending.push(frame);

        let held = HeldMessage {
            mbuf: m,
            meta,
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
                for (k, l) in self.links.iter_mut().enumerate() {
                    if active & (1 << k) != 0 {
                        drop(l.pending.pop_back());
                    }
                }
                c.ring_full_polls.inc();
                None
            }
        }
    }

    /// Highest seq egress has released: the backup node may trim below it.
    fn released_watermark(&self) -> u64 {
        let held = (self.hold.capacity() - self.hold.free()) as u64;
        self.hold.next_seq() - 1 - held
    }

    /// No backup link in service. In pass-through and journal modes the
    /// message is still accepted and held, with no backup frame (egress
    /// releases it flagged, or once journaled); otherwise it is refused and
    /// counted (the main lcore is about to halt us).
    fn accept_unlaunched(
        &mut self,
        m: Mbuf,
        meta: MessageMeta,
        now: u64,
        watermark: u64,
    ) -> Option<u64> {
        let c = &self.shared.counters.ingress;
        if !matches!(
            self.shared.control.mode(),
            Mode::PassThrough | Mode::Journal
        ) {
            c.no_link.inc();
            return None;
        }
        let held = HeldMessage {
            mbuf: m,
            meta,
            timestamp_ns: now,
            watermark,
        };
        // Digest 0: no tap copy exists to match; release is the mode's decision.
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
        let ctl = &self.shared.control;
        let watermark = self.released_watermark();
        let mut sent = 0;
        for (k, l) in self.links.iter_mut().enumerate() {
            if now < l.next_hb_ns || l.pending.room() == 0 {
                continue;
            }
            l.next_hb_ns = now + self.hb_interval_ns;
            let ls = &ctl.links[k];
            let seq = l.hb_seq + 1;
            let repr = HeartbeatRepr {
                link: k as u8,
                stream: self.stream,
                epoch: self.epoch,
                seq,
                timestamp_ns: now,
                watermark,
                echo_seq: links::get(&ls.peer_hb_seq),
                echo_timestamp_ns: links::get(&ls.peer_hb_ts),
            };
            let Some(mut m) = self.pool.alloc() else {
                self.shared.counters.ingress.no_mbuf.inc();
                continue;
            };
            let pdu = repr.buffer_len();
            let len = (ethernet::HEADER_LEN + pdu).max(MIN_FRAME_LEN);
            let Some(buf) = m.append(len as u16) else {
                continue;
            };
            buf.fill(0);
            let _ = ethernet::emit_header(buf, l.peer_mac, l.mac, EtherType::TAPHOLD);
            if repr
                .emit(
                    &mut buf[ethernet::HEADER_LEN..ethernet::HEADER_LEN + pdu],
                    &self.key,
                )
                .is_err()
            {
                continue;
            }
            l.hb_seq = seq;
            // Recorded before the frame leaves, like a backup frame's launch.
            links::set(ls.hb_sent_ns.slot(seq), now);
            links::set(&ls.hb_sent_seq, seq);
            let _ = l.pending.push(m);
            self.shared.counters.ingress.heartbeats_sent.inc();
            sent += 1;
        }
        sent
    }

    /// Moves egress's re-launched frames onto their links, ahead of anything
    /// new; while paused for a re-send round, resumes once egress says the
    /// round is done and every frame of it is queued.
    fn take_resends(&mut self) -> usize {
        let ctl = &self.shared.control;
        let c = &self.shared.counters.ingress;
        // Acquire: pairs with egress's Release store after its last enqueue,
        // so empty rings below really mean every re-send was taken.
        let done = ctl.resend_done_epoch.load(Ordering::Acquire) == self.failover_seen;
        let now = self.clock.now_ns();
        let mut moved = 0;
        let mut left = 0;
        for (k, (l, ring)) in self.links.iter_mut().zip(&mut self.resend_in).enumerate() {
            while l.pending.room() > 0 {
                let Some(m) = ring.pop() else { break };
                // Its launch on this link is now: the ack and tap deadlines count from here.
                if let Ok(p) = Packet::new_checked(&m.data()[ethernet::HEADER_LEN..]) {
                    ctl.record_launch(p.seq(), now);
                    links::raise(&ctl.links[k].launched_seq, p.seq());
                    // A message accepted with no link in service: its first launch.
                    self.hold.stamp_first_launch(p.seq(), now);
                }
                let _ = l.pending.push(m);
                moved += 1;
            }
            left += ring.count();
        }
        c.resent.add(moved as u64);
        if self.paused && done && left == 0 {
            self.paused = false;
        }
        moved
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
