//! egress: walk the hold ring in order; release the head when the release
//! policy holds on its confirmations; rewrite it for the destination and
//! transmit it on P; then confirm to the source.
//!
//! Order is the hold ring's order, and a release the driver refused is
//! retried before anything newer is released. A confirmation leaves only
//! after the message it confirms is with the driver. Egress also owns P's
//! transmit queues, so ingress's ARP replies come through it; and it alone
//! looks at held messages in place, so it builds their re-launches
//! (egress/relaunch.rs, a step of this role) for ingress to transmit.
//! A two-port gateway's Q transmit queue is egress's too: segments held for
//! a route on Q are released there, and what ingress forwards to Q comes
//! through Q's own hand-off ring.

use std::sync::Arc;

use dpdk::{Burst, Clock, Mbuf, Mempool, Port};
use taphold_core::event::{MessageEvent, MessageStatus};
use taphold_core::hold_ring::{Consumer, Released};
use taphold_core::policy::PolicyCheck;
use taphold_core::spsc::SpscProducer;
use taphold_wire::classify::MessageMeta;
use taphold_wire::delivery::{self, DeliveryRepr};
use taphold_wire::digest::{DigestKey, KeyRing};
use taphold_wire::emit::{
    rewrite_released, rewrite_released_framed, Endpoint, UDP_FRAME_HEADER_LEN,
};
use taphold_wire::ethernet::{EthernetAddress, MIN_FRAME_LEN};
use taphold_wire::taphold::{ConfirmRepr, ContentMode, Flags};
use taphold_wire::WireError;

use super::{HeldMessage, BURST};
use crate::config::{Framing, Gate};
use crate::frames::{backup_frame, confirmation_frame};
use crate::plan::Plan;
use crate::plane::{EgressWriter, Mode, Plane, Service};

pub mod relaunch;
use relaunch::Relaunch;

pub struct Egress {
    primary: Arc<Port>,
    release_q: u16,
    confirm_q: u16,
    hold: Consumer<HeldMessage>,
    policy: PolicyCheck,
    pool: Mempool,
    /// The backup-link keys (the local journal's records are sealed with
    /// the current one).
    key: KeyRing,
    /// Seals confirmations: a key of their own, so a source that checks them
    /// holds nothing that seals a backup frame.
    confirm_key: DigestKey,
    stream: u32,
    /// This run's epoch: (stream, epoch, seq) names each message.
    epoch: u64,
    /// What a released datagram carries: the payload alone, or the delivery
    /// header before it.
    framing: Framing,
    /// The appliance on P: source of released messages and confirmations.
    ours: Endpoint,
    destination: Endpoint,
    arp_in: dpdk::ring::Consumer<Mbuf>,
    events: SpscProducer<MessageEvent>,
    clock: Clock,
    plane: &'static Plane,
    mine: EgressWriter,
    confirm_timeout_ns: u64,
    release_tx: Burst<{ 2 * BURST }>,
    confirm_tx: Burst<{ 2 * BURST }>,
    /// Last head seq counted overdue, so each message counts once.
    last_overdue: u64,
    gate: Gate,
    links: usize,
    /// Re-launches: retransmits of overdue messages, re-send rounds.
    relaunch: Relaunch,
    /// Journal secondary mode: backup frames of held messages go to the main
    /// lcore, which writes and syncs them; `journal_next` is the next seq to
    /// hand over.
    journal_out: Option<dpdk::ring::Producer<Mbuf>>,
    journal_next: u64,
    /// Gateway mode: held segments were rewritten for their next hop when
    /// accepted; per protect rule, where a released segment is confirmed.
    gateway: bool,
    gateway_confirm_to: Vec<Option<Endpoint>>,
    /// Two-port gateway: Q, ingress's hand-off ring for it, and what waits
    /// for Q's transmit queue (released segments, then forwarded frames).
    q: Option<Arc<Port>>,
    q_in: Option<dpdk::ring::Consumer<Mbuf>>,
    q_tx: Burst<{ 2 * BURST }>,
}

/// What egress is given to work with, besides the plan.
pub struct EgressParts {
    pub primary: Arc<Port>,
    pub hold: Consumer<HeldMessage>,
    pub pool: Mempool,
    pub arp_in: dpdk::ring::Consumer<Mbuf>,
    /// Two-port gateway: Q, and ingress's hand-off ring of what leaves on it.
    pub q: Option<(Arc<Port>, dpdk::ring::Consumer<Mbuf>)>,
    pub events: SpscProducer<MessageEvent>,
    pub clock: Clock,
    pub plane: &'static Plane,
    pub mine: EgressWriter,
    pub relaunch: Relaunch,
    pub journal_out: Option<dpdk::ring::Producer<Mbuf>>,
}

impl Egress {
    pub fn new(plan: &Plan, epoch: u64, parts: EgressParts) -> Egress {
        let (q, q_in) = parts.q.map_or((None, None), |(p, r)| (Some(p), Some(r)));
        Egress {
            primary: parts.primary,
            release_q: plan.primary.release_q,
            confirm_q: plan.primary.confirm_q,
            hold: parts.hold,
            policy: plan.policy_check,
            pool: parts.pool,
            key: plan.key,
            confirm_key: plan.confirm_key,
            stream: plan.stream,
            epoch,
            framing: plan.framing,
            ours: plan.primary.ours,
            destination: plan.destination,
            arp_in: parts.arp_in,
            events: parts.events,
            clock: parts.clock,
            plane: parts.plane,
            mine: parts.mine,
            confirm_timeout_ns: plan.confirm_timeout_ns,
            release_tx: Burst::new(),
            confirm_tx: Burst::new(),
            last_overdue: 0,
            gate: plan.gate,
            links: plan.links.len(),
            relaunch: parts.relaunch,
            journal_out: parts.journal_out,
            journal_next: 0,
            gateway: plan.gateway.is_some(),
            gateway_confirm_to: plan
                .gateway
                .as_ref()
                .map_or_else(Vec::new, |g| g.confirm_to.clone()),
            q,
            q_in,
            q_tx: Burst::new(),
        }
    }

    pub fn poll(&mut self) -> usize {
        // Releases and confirmations the driver refused earlier go first.
        if !self.flush_refused() {
            return 0;
        }
        let mut work = self.forward_arp_replies();
        let now = self.clock.now_ns();
        let service = self.plane.control.service();
        work += self.relaunch.round(&mut self.hold, self.plane, now);
        if service.mode == Mode::Journal {
            work += self.journal_handoff();
        }
        work += self.release_ready(now, service);
        // Releases first; a confirmation only once every release is with the driver.
        self.primary.tx_burst(self.release_q, &mut self.release_tx);
        self.transmit_q();
        if self.release_tx.is_empty() && self.q_tx.is_empty() {
            self.primary.tx_burst(self.confirm_q, &mut self.confirm_tx);
        }
        // Every held message has a next step: what waits too long for its
        // confirmation on a link in service is re-launched there. In every
        // mode: what the scan publishes is what the links' health (and so
        // their way back into service) is judged on.
        work += self.relaunch.retransmit_overdue(
            &mut self.hold,
            self.plane,
            &self.mine,
            service.active,
            now,
        );
        self.count_overdue(now);
        work
    }

    /// Retries what the driver refused; false while some is still refused
    /// (nothing newer may overtake it).
    fn flush_refused(&mut self) -> bool {
        let c = &self.plane.counters.egress;
        if !self.release_tx.is_empty() {
            self.primary.tx_burst(self.release_q, &mut self.release_tx);
            if !self.release_tx.is_empty() {
                c.release_tx_retries.inc();
                return false;
            }
        }
        if !self.q_tx.is_empty() {
            self.transmit_q();
            if !self.q_tx.is_empty() {
                c.q_tx_retries.inc();
                return false;
            }
        }
        if !self.confirm_tx.is_empty() {
            self.primary.tx_burst(self.confirm_q, &mut self.confirm_tx);
            if !self.confirm_tx.is_empty() {
                c.confirm_tx_retries.inc();
                return false;
            }
        }
        true
    }

    /// ARP replies ingress made (it does not own P's transmit queues); in
    /// gateway mode also what ingress forwards at once, which goes out on the
    /// release queue, behind the releases queued before it.
    fn forward_arp_replies(&mut self) -> usize {
        let mut n = 0;
        let out = if self.gateway {
            &mut self.release_tx
        } else {
            &mut self.confirm_tx
        };
        while out.room() > BURST {
            let Some(m) = self.arp_in.pop() else { break };
            let _ = out.push(m);
            n += 1;
        }
        if let Some(q_in) = &mut self.q_in {
            while self.q_tx.room() > BURST {
                let Some(m) = q_in.pop() else { break };
                let _ = self.q_tx.push(m);
                n += 1;
            }
        }
        self.plane.counters.egress.arp_replies_sent.add(n as u64);
        n
    }

    /// Offers what waits for Q to Q's transmit queue (two-port gateway).
    fn transmit_q(&mut self) {
        if let Some(q) = &self.q {
            let sent = q.tx_burst(0, &mut self.q_tx);
            self.plane.counters.egress.q_tx_frames.add(sent as u64);
        }
    }

    /// Releases, in order, up to a burst of held messages whose rule holds.
    fn release_ready(&mut self, now: u64, service: Service) -> usize {
        // `service`: `active` read before the mode (plane.rs), so a policy
        // over fewer links is never applied as if fully protected.
        let policy = self.policy.with_links(service.active);
        let journaled = self.plane.control.journaled_seq();
        let mut released = 0;
        let mut last = 0;
        while released < BURST {
            let Some((r, status)) = self.next_release(service.mode, policy, journaled) else {
                break;
            };
            last = r.seq;
            if self.release(r, now, status) {
                released += 1;
            }
        }
        self.plane.counters.egress.released.add(released as u64);
        if last != 0 {
            // The main lcore's health checks skip what is already released.
            self.mine.released(last);
        }
        released
    }

    /// The head of the hold ring, if its release rule holds now, and how it
    /// is released.
    fn next_release(
        &mut self,
        mode: Mode,
        policy: PolicyCheck,
        journaled: u64,
    ) -> Option<(Released<HeldMessage>, MessageStatus)> {
        // Failed closed: nothing is released until the links meet the policy again.
        if mode == Mode::Halt {
            return None;
        }
        let head = self.hold.head()?;
        // A message the local journal holds (synced) was released under that
        // rule when it was accepted; it keeps it if the mode has changed
        // since, rather than wait for a tap copy.
        if head.seq <= journaled {
            if mode != Mode::Journal {
                self.plane
                    .counters
                    .egress
                    .released_journaled_after_mode_change
                    .inc();
            }
            return self
                .hold
                .release()
                .map(|r| (r, MessageStatus::ReleasedJournaled));
        }
        let r = match (mode, self.gate) {
            (Mode::Halt, _) => return None,
            // Degraded beyond the policy, configured to keep flowing: release
            // anyway, and say so on every such message.
            (Mode::PassThrough, _) => {
                return self
                    .hold
                    .release()
                    .map(|r| (r, MessageStatus::ReleasedUnprotected))
            }
            // Degraded beyond the policy, protected by the local journal:
            // only what is synced (above).
            (Mode::Journal, _) => return None,
            (Mode::Protected, Gate::Tap) => self
                .hold
                .release_if(|confirmed| policy.satisfied(confirmed)),
            (Mode::Protected, Gate::Ack) => {
                // The strictest mode: only what the backup node has stored.
                let acked = (0..self.links)
                    .filter(|&k| self.plane.link_rx[k].acked_seq() >= head.seq)
                    .fold(0u8, |m, k| m | (1 << k));
                self.hold.release_if(|_| policy.satisfied(acked))
            }
        };
        r.map(|r| (r, MessageStatus::Released))
    }

    /// Counts the oldest held message once when it waits past its timeout.
    fn count_overdue(&mut self, now: u64) {
        if let Some(h) = self.hold.head() {
            if h.seq != self.last_overdue
                && h.backup_tx_ns != 0
                && now.saturating_sub(h.backup_tx_ns) > self.confirm_timeout_ns
                && !self.policy.satisfied(h.confirmed)
            {
                self.last_overdue = h.seq;
                self.plane.counters.egress.overdue.inc();
            }
        }
    }

    /// Sends one released message on its way; false if it could not be
    /// (counted; it then shows as unaccounted in the summary).
    fn release(&mut self, r: Released<HeldMessage>, now: u64, status: MessageStatus) -> bool {
        let c = &self.plane.counters.egress;
        let protected = status != MessageStatus::ReleasedUnprotected;
        let HeldMessage {
            mut mbuf,
            mut meta,
            tcp,
            ..
        } = r.item;
        if let Some(t) = tcp {
            // A TCP segment, already addressed to its next hop: it leaves
            // byte-identical to what was held, on its route's port. (Q's burst
            // keeps BURST of room for this poll's releases, like release_tx.)
            let out = match t.out_port {
                taphold_wire::gateway::PORT_Q if self.q.is_some() => &mut self.q_tx,
                _ => &mut self.release_tx,
            };
            let _ = out.push(mbuf);
            self.record(r.seq, r.rx_ns, r.backup_tx_ns, r.tap_ns, now, status);
            let to = self
                .gateway_confirm_to
                .get(usize::from(t.rule))
                .copied()
                .flatten();
            if let (Some(to), true) = (to, meta.payload_len > 0) {
                // The echo names the bytes confirmed: flow and TCP sequence number.
                let mut echo = [0u8; 16];
                echo[0..4].copy_from_slice(&meta.src_ip);
                echo[4..6].copy_from_slice(&meta.src_port.to_be_bytes());
                echo[6..10].copy_from_slice(&t.dst_ip);
                echo[10..12].copy_from_slice(&t.dst_port.to_be_bytes());
                echo[12..16].copy_from_slice(&t.tcp_seq.to_be_bytes());
                let ours = Endpoint {
                    port: to.port,
                    ..self.ours
                };
                self.confirm_to(&ours, &to, r.seq, meta.payload_len, echo, protected, now);
            }
            return true;
        }
        // What the confirmation echoes, read before the rewrite moves things.
        let mut echo = [0u8; 16];
        let n = (meta.payload_len as usize).min(16);
        let payload_off = meta.payload_off as usize;
        echo[..n].copy_from_slice(&mbuf.data()[payload_off..payload_off + n]);
        let source = Endpoint {
            mac: meta.src_mac,
            ip: meta.src_ip,
            port: meta.src_port,
        };

        if self
            .rewrite_for_destination(&mut mbuf, &mut meta, r.seq, protected, now)
            .is_err()
        {
            // classify() never yields a layout the rewrite refuses; if it ever
            // did, the frame must not leave as it came (it is addressed to
            // us). Counted, and visible as unaccounted.
            debug_assert!(false, "the rewrite refused a classified message");
            c.rewrite_failed.inc();
            return false;
        }
        // Cannot fail: release_tx was empty at the start and takes at most BURST per poll.
        let _ = self.release_tx.push(mbuf);

        self.record(r.seq, r.rx_ns, r.backup_tx_ns, r.tap_ns, now, status);
        let ours = self.ours;
        self.confirm_to(
            &ours,
            &source,
            r.seq,
            meta.payload_len,
            echo,
            protected,
            now,
        );
        true
    }

    /// Counts a released message by how it was released, and hands its event
    /// record to the main lcore.
    fn record(
        &mut self,
        seq: u64,
        rx_ns: u64,
        backup_tx_ns: u64,
        tap_ns: [u64; taphold_core::hold_ring::MAX_LINKS],
        now: u64,
        status: MessageStatus,
    ) {
        let event = MessageEvent {
            seq,
            stream: self.stream,
            epoch: self.epoch,
            rx_ns,
            backup_tx_ns,
            tap_ns: tap_ns.iter().copied().max().unwrap_or(0),
            release_ns: now,
            status,
        };
        let c = &self.plane.counters.egress;
        match status {
            MessageStatus::ReleasedUnprotected => c.released_unprotected.inc(),
            MessageStatus::ReleasedJournaled => c.released_journaled.inc(),
            _ => {}
        }
        if self.events.push(event).is_err() {
            c.events_lost.inc();
        }
    }

    /// Rewrites a released message in place for the destination: new
    /// Ethernet/IPv4/UDP headers (and the delivery header before the payload
    /// under `framing: taphold`); the payload is not touched.
    fn rewrite_for_destination(
        &self,
        mbuf: &mut Mbuf,
        meta: &mut MessageMeta,
        seq: u64,
        protected: bool,
        now: u64,
    ) -> Result<(), WireError> {
        let prefix_len = match self.framing {
            Framing::Raw => 0,
            Framing::Taphold => delivery::HEADER_LEN,
        };
        let start = match self.framing {
            Framing::Raw => rewrite_released(mbuf.data_mut(), meta, &self.ours, &self.destination)?,
            Framing::Taphold => {
                let header = DeliveryRepr {
                    flags: flags_for(protected),
                    stream: self.stream,
                    epoch: self.epoch,
                    seq,
                    src_ip: meta.src_ip,
                    src_port: meta.src_port,
                    release_ns: now,
                }
                .to_bytes();
                // The header goes into the mbuf's headroom (128 bytes on every
                // received mbuf), in front of the old headers.
                mbuf.prepend(delivery::HEADER_LEN as u16)
                    .ok_or(WireError::Truncated)?;
                meta.payload_off += delivery::HEADER_LEN as u16;
                rewrite_released_framed(
                    mbuf.data_mut(),
                    meta,
                    &self.ours,
                    &self.destination,
                    &header,
                )?
            }
        };
        mbuf.adj(start as u16);
        let len = UDP_FRAME_HEADER_LEN + prefix_len + meta.payload_len as usize;
        mbuf.set_len(len.max(MIN_FRAME_LEN));
        mbuf.data_mut()[len..].fill(0);
        Ok(())
    }

    /// Queues the confirmation of released message `seq` to its source
    /// (after the message itself, in the same poll's bursts).
    #[allow(clippy::too_many_arguments)]
    fn confirm_to(
        &mut self,
        ours: &Endpoint,
        source: &Endpoint,
        seq: u64,
        payload_len: u16,
        echo: [u8; 16],
        protected: bool,
        now: u64,
    ) {
        let c = &self.plane.counters.egress;
        if source.port == 0 {
            // UDP's "no reply expected": nowhere to confirm to.
            c.confirm_skipped_no_port.inc();
            return;
        }
        let repr = ConfirmRepr {
            flags: flags_for(protected),
            stream: self.stream,
            epoch: self.epoch,
            seq,
            timestamp_ns: now,
            watermark: seq,
            payload_len,
            echo,
        };
        match confirmation_frame(&self.pool, &repr, &self.confirm_key, ours, source) {
            // Cannot fail: confirm_tx keeps BURST of room for this poll's confirmations.
            Some(m) => {
                let _ = self.confirm_tx.push(m);
                c.confirmations_sent.inc();
            }
            // Released; only the confirmation is missing.
            None => c.confirm_no_mbuf.inc(),
        }
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
            // Link 0: the record names no link that matters.
            let repr = held.backup_repr(
                Flags::EMPTY,
                seq,
                self.stream,
                self.epoch,
                ContentMode::Full,
                self.key.current(),
            );
            // The journal keeps the PDU only: no Ethernet addresses matter.
            let none = EthernetAddress([0; 6]);
            let key = self.key.current();
            // In clear: the local journal never leaves this host.
            let Some((frame, _)) = backup_frame(&self.pool, &repr, (key, None), none, none) else {
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

/// A released message's flags on the wire: UNPROTECTED unless its backup
/// frame's tap copy (or the journal) covered it.
fn flags_for(protected: bool) -> Flags {
    if protected {
        Flags::EMPTY
    } else {
        Flags::UNPROTECTED
    }
}
