//! ingress: P rx → classify → stamp (stream, seq) → build the backup frame →
//! put the original in the hold ring → launch the backup frame on every
//! backup link.
//!
//! The slot is written before the backup frame is transmitted: on another
//! lcore, tap-rx may see the tap copy the instant it leaves, and must find the
//! message already held. Backpressure: ingress only takes from P as many
//! frames as the hold ring has free slots, and takes none while a backup link
//! still has backup frames it refused earlier (they go first, in order).

use std::sync::Arc;

use dpdk::{Burst, Clock, Mbuf, Mempool, Port};
use taphold_core::hold_ring::Producer;
use taphold_wire::arp;
use taphold_wire::classify::{classify, Classified, MessageMeta, PrimaryAddr};
use taphold_wire::digest::DigestKey;
use taphold_wire::ethernet::{self, EtherType, EthernetAddress, MIN_FRAME_LEN};
use taphold_wire::taphold::{BackupRepr, Content, ContentMode, Flags};

use super::{HeldMessage, BURST};
use crate::counters::IngressCounters;
use crate::Shared;

/// One backup link as ingress transmits on it.
pub struct LinkTx {
    pub port: Arc<Port>,
    pub mac: EthernetAddress,
    pub peer_mac: EthernetAddress,
    /// Backup frames built but not yet accepted by the driver, oldest first.
    pub pending: Burst<{ 2 * BURST }>,
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
    pub arp_out: dpdk::ring::Producer<Mbuf>,
    pub clock: Clock,
    pub shared: &'static Shared,
    pub rx: Burst<BURST>,
    /// Seqs accepted in this poll, to stamp their launch time.
    pub launched: [u64; BURST],
}

impl Ingress {
    pub fn poll(&mut self) -> usize {
        let c: &IngressCounters = &self.shared.counters.ingress;

        // Backup frames a link refused earlier leave before anything newer.
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
            return 0;
        }

        let room = self.hold.free().min(BURST);
        if room == 0 {
            c.ring_full_polls.inc();
            return 0;
        }
        let n = self.primary.rx_burst_max(0, &mut self.rx, room);
        if n == 0 {
            return 0;
        }
        c.rx_frames.add(n as u64);
        let now = self.clock.now_ns();
        // Highest seq egress has released: the backup node may trim below it.
        let held = (self.hold.capacity() - self.hold.free()) as u64;
        let watermark = self.hold.next_seq() - 1 - held;

        let mut accepted = 0;
        while let Some(mut m) = self.rx.pop() {
            if m.segments() != 1 {
                c.multi_segment.inc();
                continue;
            }
            match classify(m.data(), &self.addr) {
                Classified::Message(meta) => {
                    if let Some(seq) = self.accept(m, meta, now, watermark) {
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
                        c.dropped[taphold_wire::classify::DropReason::ArpOther.index()].inc();
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

        if accepted > 0 {
            // Stamp before transmitting: the tap copy cannot precede this.
            let t = self.clock.now_ns();
            for &seq in &self.launched[..accepted] {
                self.hold.set_backup_tx_ns(seq, t);
            }
            for l in &mut self.links {
                c.backup_frames_sent
                    .add(l.port.tx_burst(0, &mut l.pending) as u64);
            }
            c.accepted.add(accepted as u64);
        }
        n
    }

    /// Builds the backup frame for every link, then holds the message.
    /// Returns its seq, or None if it could not be protected (counted).
    fn accept(&mut self, m: Mbuf, meta: MessageMeta, now: u64, watermark: u64) -> Option<u64> {
        let c = &self.shared.counters.ingress;
        let seq = self.hold.next_seq();
        let payload = &m.data()[meta.payload_off as usize..][..meta.payload_len as usize];
        let content = match self.content {
            ContentMode::Full => Content::Full(payload),
            ContentMode::Digest => Content::Digest(self.key.digest(payload)),
        };
        let repr = BackupRepr {
            flags: Flags::EMPTY,
            stream: self.stream,
            seq,
            timestamp_ns: now,
            watermark,
            src_ip: meta.src_ip,
            src_port: meta.src_port,
            payload_len: meta.payload_len,
            content,
        };
        let pdu_len = repr.buffer_len();
        let frame_len = (ethernet::HEADER_LEN + pdu_len).max(MIN_FRAME_LEN);

        // Allocate every link's frame first: a message is accepted whole or not at all.
        let Some(mut first) = self.pool.alloc() else {
            c.no_mbuf.inc();
            return None;
        };
        let Some(buf) = first.append(frame_len as u16) else {
            c.no_mbuf.inc();
            return None;
        };
        let l0 = &self.links[0];
        // The frame is at least 70 bytes: a 14-byte header always fits.
        let _ = ethernet::emit_header(buf, l0.peer_mac, l0.mac, EtherType::TAPHOLD);
        let Ok(digest) = repr.emit(
            &mut buf[ethernet::HEADER_LEN..ethernet::HEADER_LEN + pdu_len],
            &self.key,
        ) else {
            c.no_mbuf.inc();
            return None;
        };
        buf[ethernet::HEADER_LEN + pdu_len..].fill(0);

        // Same PDU bytes on every link; only the Ethernet addresses differ.
        for k in 1..self.links.len() {
            let Some(mut copy) = first.copy(&self.pool) else {
                // Undo: frames already queued for links 1..k this round go back.
                for l in &mut self.links[1..k] {
                    drop(l.pending_pop_last());
                }
                c.no_mbuf.inc();
                return None;
            };
            let l = &self.links[k];
            let _ = ethernet::emit_header(copy.data_mut(), l.peer_mac, l.mac, EtherType::TAPHOLD);
            // Cannot fail: pending was empty at the start of this poll and
            // holds 2×BURST, and at most BURST frames are added per poll.
            let _ = self.links[k].pending.push(copy);
        }
        let _ = self.links[0].pending.push(first);

        match self.hold.push(HeldMessage { mbuf: m, meta }, digest, now) {
            Ok(s) => {
                debug_assert_eq!(s, seq);
                Some(s)
            }
            // Unreachable: we took at most `free()` frames and are the only producer.
            Err(_msg) => {
                for l in &mut self.links {
                    drop(l.pending_pop_last());
                }
                c.ring_full_polls.inc();
                None
            }
        }
    }
}

impl LinkTx {
    /// Takes back the newest queued backup frame (undo of a half-built accept).
    fn pending_pop_last(&mut self) -> Option<Mbuf> {
        self.pending.pop_back()
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
