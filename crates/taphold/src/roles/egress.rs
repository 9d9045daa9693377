//! egress: walk the hold ring in order; release the head when the release
//! policy holds on its confirmations; rewrite it for the destination and
//! transmit it on P; then confirm to the source.
//!
//! Order is the hold ring's order, and a release the driver refused is
//! retried before anything newer is released. A confirmation leaves only
//! after the message it confirms is with the driver. Egress also owns P's
//! transmit queues, so ingress's ARP replies come through it; and it alone
//! looks at held messages in place, so it builds their re-launches
//! (relaunch.rs) for ingress to transmit.

use std::sync::Arc;

use dpdk::{Burst, Clock, Mbuf, Mempool, Port};
use taphold_core::event::{MessageEvent, MessageStatus};
use taphold_core::hold_ring::{Consumer, Released};
use taphold_core::policy::PolicyCheck;
use taphold_core::spsc::SpscProducer;
use taphold_wire::delivery::{self, DeliveryRepr};
use taphold_wire::digest::DigestKey;
use taphold_wire::emit::{
    emit_udp_headers, rewrite_released, rewrite_released_framed, Endpoint, UDP_FRAME_HEADER_LEN,
};
use taphold_wire::ethernet::MIN_FRAME_LEN;
use taphold_wire::taphold::{ConfirmRepr, ContentMode, Flags};

use super::relaunch::Relaunch;
use super::{HeldMessage, BURST};
use crate::config::{Framing, Gate};
use crate::frames::backup_frame;
use crate::links::{self, Control, Mode};
use crate::Shared;
use std::sync::atomic::Ordering;
use taphold_wire::ethernet::EthernetAddress;

pub struct Egress {
    pub primary: Arc<Port>,
    pub release_q: u16,
    pub confirm_q: u16,
    pub hold: Consumer<HeldMessage>,
    pub policy: PolicyCheck,
    pub pool: Mempool,
    pub key: DigestKey,
    pub stream: u32,
    /// This run's epoch: (stream, epoch, seq) names each message.
    pub epoch: u64,
    /// What a released datagram carries: the payload alone, or the delivery
    /// header before it.
    pub framing: Framing,
    /// The appliance on P: source of released messages and confirmations.
    pub ours: Endpoint,
    pub destination: Endpoint,
    pub arp_in: dpdk::ring::Consumer<Mbuf>,
    pub events: SpscProducer<MessageEvent>,
    pub clock: Clock,
    pub shared: &'static Shared,
    pub confirm_timeout_ns: u64,
    pub release_tx: Burst<{ 2 * BURST }>,
    pub confirm_tx: Burst<{ 2 * BURST }>,
    /// Last head seq counted overdue, so each message counts once.
    pub last_overdue: u64,
    pub gate: Gate,
    /// Re-launches: retransmits of overdue messages, re-send rounds.
    pub relaunch: Relaunch,
    /// Journal secondary mode: backup frames of unconfirmed held messages go
    /// to the main lcore, which writes and syncs them; `journal_next` is the
    /// next seq to hand over.
    pub journal_out: Option<dpdk::ring::Producer<Mbuf>>,
    pub journal_next: u64,
}

impl Egress {
    pub fn poll(&mut self) -> usize {
        let c = &self.shared.counters.egress;

        // Releases the driver refused earlier go first; nothing newer until they are out.
        if !self.release_tx.is_empty() {
            self.primary.tx_burst(self.release_q, &mut self.release_tx);
            if !self.release_tx.is_empty() {
                c.release_tx_retries.inc();
                return 0;
            }
        }
        if !self.confirm_tx.is_empty() {
            self.primary.tx_burst(self.confirm_q, &mut self.confirm_tx);
            if !self.confirm_tx.is_empty() {
                c.confirm_tx_retries.inc();
                return 0;
            }
        }

        // ARP replies ingress made (it does not own P's transmit queues).
        let mut work = 0;
        while self.confirm_tx.room() > BURST {
            let Some(m) = self.arp_in.pop() else { break };
            let _ = self.confirm_tx.push(m);
            c.arp_replies_sent.inc();
            work += 1;
        }

        let now = self.clock.now_ns();
        let ctl = &self.shared.control;
        let counters = &self.shared.counters.relaunch[..];
        work += self.relaunch.round(&mut self.hold, ctl, counters, now);
        if mode_is_journal(ctl) {
            work += self.journal_handoff();
        }
        // `active` first, then the mode (both Acquire): the main lcore stores
        // a degraded mode before it shrinks `active`, and a shrunk `active`
        // before it returns to protected, so a policy over fewer links is
        // never applied as if the appliance were still fully protected.
        let policy = self.policy.with_links(ctl.active.load(Ordering::Acquire));
        let mode = Mode::from_u8(ctl.mode.load(Ordering::Acquire));
        let mut released = 0;
        let mut last_released = 0;
        // Acquire: pairs with the main lcore's Release store after its fsync.
        let journaled = ctl.journaled_seq.load(Ordering::Acquire);
        // Halted: fail closed. The links in service no longer meet the policy,
        // so nothing is released until they do again.
        while released < BURST && mode != Mode::Halt {
            // A message the local journal holds (synced) was released under
            // that rule when it was accepted; it keeps it if the mode has
            // changed since, rather than wait for a tap copy.
            if mode != Mode::Journal && self.hold.head().is_some_and(|h| h.seq <= journaled) {
                let Some(r) = self.hold.release() else { break };
                self.shared
                    .counters
                    .egress
                    .released_journaled_after_mode_change
                    .inc();
                last_released = r.seq;
                if self.release(r, now, MessageStatus::ReleasedJournaled) {
                    released += 1;
                }
                continue;
            }
            let r = match (mode, self.gate) {
                // Degraded beyond the policy, configured to keep flowing:
                // release anyway, and say so on every such message.
                (Mode::PassThrough, _) => self.hold.release(),
                // Degraded beyond the policy, protected by the local journal:
                // release only what is synced to disk, in order.
                (Mode::Journal, _) => {
                    let Some(h) = self.hold.head() else { break };
                    let synced = h.seq <= journaled;
                    self.hold.release_if(|_| synced)
                }
                (_, Gate::Tap) => self
                    .hold
                    .release_if(|confirmed| policy.satisfied(confirmed)),
                (_, Gate::Ack) => {
                    // The strictest mode: only what the backup node has stored.
                    let Some(h) = self.hold.head() else { break };
                    let mut acked = 0u8;
                    for k in 0..self.relaunch.links.len() {
                        if links::get(&ctl.links[k].acked_seq) >= h.seq {
                            acked |= 1 << k;
                        }
                    }
                    self.hold.release_if(|_| policy.satisfied(acked))
                }
            };
            let Some(r) = r else { break };
            // In a degraded mode the links in service cannot meet the policy,
            // so whatever leaves is labelled by the mode, confirmed or not.
            let status = match mode {
                Mode::PassThrough => MessageStatus::ReleasedUnprotected,
                Mode::Journal => MessageStatus::ReleasedJournaled,
                Mode::Protected | Mode::Halt => MessageStatus::Released,
            };
            let seq = r.seq;
            if self.release(r, now, status) {
                released += 1;
            }
            last_released = seq;
        }
        c.released.add(released as u64);
        work += released;
        if last_released != 0 {
            // The main lcore's health checks skip what is already released.
            links::raise(&ctl.released_seq, last_released);
        }

        // Releases first; a confirmation only once every release is with the driver.
        self.primary.tx_burst(self.release_q, &mut self.release_tx);
        if self.release_tx.is_empty() {
            self.primary.tx_burst(self.confirm_q, &mut self.confirm_tx);
        }

        // Every held message has a next step: what waits too long for its
        // confirmation on a link in service is re-launched there. In every
        // mode: what the scan publishes is what the links' health (and so
        // their way back into service) is judged on.
        let active = ctl.active.load(Ordering::Acquire);
        work += self
            .relaunch
            .retransmit_overdue(&mut self.hold, ctl, active, counters, now);

        // Deadline: the oldest held message still waiting past its timeout.
        if let Some(h) = self.hold.head() {
            if h.seq != self.last_overdue
                && h.backup_tx_ns != 0
                && now.saturating_sub(h.backup_tx_ns) > self.confirm_timeout_ns
                && !self.policy.satisfied(h.confirmed)
            {
                self.last_overdue = h.seq;
                c.overdue.inc();
            }
        }
        work
    }

    /// Sends one released message on its way; false if it could not be
    /// (counted; it then shows as unaccounted in the summary).
    fn release(&mut self, r: Released<HeldMessage>, now: u64, status: MessageStatus) -> bool {
        let protected = status != MessageStatus::ReleasedUnprotected;
        let c = &self.shared.counters.egress;
        let HeldMessage {
            mut mbuf, mut meta, ..
        } = r.item;
        let payload_off = meta.payload_off as usize;
        let payload_len = meta.payload_len as usize;
        let mut echo = [0u8; 16];
        let n = payload_len.min(16);
        echo[..n].copy_from_slice(&mbuf.data()[payload_off..payload_off + n]);
        let source = Endpoint {
            mac: meta.src_mac,
            ip: meta.src_ip,
            port: meta.src_port,
        };

        // Rewrite in place for the destination; the payload is not touched.
        let (rewritten, prefix_len) = match self.framing {
            Framing::Raw => (
                rewrite_released(mbuf.data_mut(), &meta, &self.ours, &self.destination),
                0,
            ),
            Framing::Taphold => {
                let header = DeliveryRepr {
                    flags: if protected {
                        Flags::EMPTY
                    } else {
                        Flags::UNPROTECTED
                    },
                    stream: self.stream,
                    epoch: self.epoch,
                    seq: r.seq,
                    src_ip: meta.src_ip,
                    src_port: meta.src_port,
                    release_ns: now,
                }
                .to_bytes();
                // The header goes into the mbuf's headroom (128 bytes on every
                // received mbuf), in front of the old headers.
                let rewritten = if mbuf.prepend(delivery::HEADER_LEN as u16).is_some() {
                    meta.payload_off += delivery::HEADER_LEN as u16;
                    rewrite_released_framed(
                        mbuf.data_mut(),
                        &meta,
                        &self.ours,
                        &self.destination,
                        &header,
                    )
                } else {
                    Err(taphold_wire::WireError::Truncated)
                };
                (rewritten, delivery::HEADER_LEN)
            }
        };
        match rewritten {
            Ok(start) => {
                mbuf.adj(start as u16);
                let len = UDP_FRAME_HEADER_LEN + prefix_len + payload_len;
                mbuf.set_len(len.max(MIN_FRAME_LEN));
                mbuf.data_mut()[len..].fill(0);
            }
            Err(_) => {
                // classify() never yields a layout rewrite_released refuses;
                // if it ever did, the frame must not leave as it came (it is
                // addressed to us). Counted, and visible as unaccounted.
                debug_assert!(false, "rewrite_released refused a classified message");
                c.rewrite_failed.inc();
                return false;
            }
        }
        // Cannot fail: release_tx was empty at the start and takes at most BURST per poll.
        let _ = self.release_tx.push(mbuf);

        let tap_ns = r.tap_ns.iter().copied().max().unwrap_or(0);
        let ev = MessageEvent {
            seq: r.seq,
            stream: self.stream,
            epoch: self.epoch,
            rx_ns: r.rx_ns,
            backup_tx_ns: r.backup_tx_ns,
            tap_ns,
            release_ns: now,
            status,
        };
        match status {
            MessageStatus::ReleasedUnprotected => c.released_unprotected.inc(),
            MessageStatus::ReleasedJournaled => c.released_journaled.inc(),
            _ => {}
        }
        if self.events.push(ev).is_err() {
            c.events_lost.inc();
        }

        if source.port == 0 {
            // UDP's "no reply expected": nowhere to confirm to.
            c.confirm_skipped_no_port.inc();
            return true;
        }
        let repr = ConfirmRepr {
            flags: if protected {
                Flags::EMPTY
            } else {
                Flags::UNPROTECTED
            },
            stream: self.stream,
            epoch: self.epoch,
            seq: r.seq,
            timestamp_ns: now,
            watermark: r.seq,
            payload_len: meta.payload_len,
            echo,
        };
        let Some(mut cm) = self.pool.alloc() else {
            c.confirm_no_mbuf.inc();
            return true; // released; only the confirmation is missing
        };
        let pdu = repr.buffer_len();
        let len = UDP_FRAME_HEADER_LEN + pdu;
        let Some(buf) = cm.append(len.max(MIN_FRAME_LEN) as u16) else {
            c.confirm_no_mbuf.inc();
            return true; // released; only the confirmation is missing
        };
        buf[len..].fill(0);
        if repr
            .emit(&mut buf[UDP_FRAME_HEADER_LEN..len], &self.key)
            .is_err()
            || emit_udp_headers(buf, &self.ours, &source, pdu).is_err()
        {
            c.confirm_no_mbuf.inc();
            return true; // released; only the confirmation is missing
        }
        // Cannot fail: confirm_tx keeps BURST of room for this poll's confirmations.
        let _ = self.confirm_tx.push(cm);
        c.confirmations_sent.inc();
        true
    }

    /// Journal mode: hand the backup frame of each held message, in seq
    /// order, to the main lcore for the local journal (a burst per poll).
    fn journal_handoff(&mut self) -> usize {
        let Some(out) = self.journal_out.as_mut() else {
            return 0;
        };
        let Some(h) = self.hold.head() else { return 0 };
        let end = h.seq + self.hold.held() as u64;
        self.journal_next = self.journal_next.max(h.seq);
        let mut sent = 0;
        while self.journal_next < end && sent < BURST {
            let seq = self.journal_next;
            let Some((_, held)) = self.hold.peek(seq) else {
                self.journal_next += 1;
                continue;
            };
            // Always the full message: the local journal is the only copy we rely on.
            let repr = held.backup_repr(
                Flags::EMPTY,
                seq,
                self.stream,
                self.epoch,
                ContentMode::Full,
                &self.key,
            );
            // The journal keeps the PDU only: no Ethernet addresses matter.
            let none = EthernetAddress([0; 6]);
            let Some((frame, _)) = backup_frame(&self.pool, &repr, &self.key, none, none) else {
                break; // no mbuf now: next poll
            };
            if let Err(frame) = out.push(frame) {
                drop(frame);
                break; // the main lcore is behind: next poll
            }
            self.journal_next += 1;
            sent += 1;
        }
        sent
    }

    /// Shutdown accounting: every message still held, in seq order.
    pub fn drain_held(&mut self, mut f: impl FnMut(Released<HeldMessage>)) -> usize {
        self.hold.drain(&mut f)
    }
}

#[inline]
fn mode_is_journal(ctl: &Control) -> bool {
    ctl.mode() == Mode::Journal
}
