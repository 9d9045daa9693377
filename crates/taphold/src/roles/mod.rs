//! The lcore roles: short `poll` functions over one burst, composed onto
//! lcores by the config's role map (all of them on one worker is what a
//! 2-core machine runs).
//!
//! ```text
//!  P rx ─► ingress ─► backup frame ─► Bk tx ══ fibre ══► backup node
//!             │                         ╽ passive tap
//!             ▼ hold ring ◄── confirm ── tap-rx ◄── Tk rx
//!           egress ─► P tx (destination), then P tx (confirmation to source)
//!  Bk rx ─► link-rx (acks, heartbeats: health, not gate)
//! ```
//!
//! A role owns every queue it polls or transmits on, so no queue is ever
//! touched by two lcores: P rx belongs to ingress, every P tx queue to egress
//! (ingress hands its ARP replies over), Bk tx to ingress, Bk rx to link-rx,
//! Tk rx to tap-rx.

pub mod egress;
pub mod ingress;
pub mod link_rx;
pub mod tap_model;
pub mod tap_rx;

use taphold_wire::classify::MessageMeta;
use taphold_wire::digest::DigestKey;
use taphold_wire::taphold::{BackupRepr, Content, ContentMode, Flags, TcpSegmentRepr};

/// Frames taken from a port per poll, as in DPDK's examples.
pub const BURST: usize = 32;

/// What the hold ring holds for each accepted message: the original frame,
/// untouched (zero copy), and where its payload is.
pub struct HeldMessage {
    pub mbuf: dpdk::Mbuf,
    pub meta: MessageMeta,
    /// Gateway mode: the protected TCP segment's flow and sequence number.
    /// Its frame was rewritten for its next hop when it was accepted; release
    /// transmits it as it is.
    pub tcp: Option<TcpHeld>,
    /// The backup frame's timestamp and watermark fields: with the message
    /// they rebuild the very bytes (and digest) for a failover re-launch.
    pub timestamp_ns: u64,
    pub watermark: u64,
}

/// What a held TCP segment's backup frame carries besides the source and
/// payload that [`MessageMeta`] has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpHeld {
    pub dst_ip: [u8; 4],
    pub dst_port: u16,
    pub tcp_seq: u32,
    pub tcp_flags: u8,
    /// The protect rule it matched.
    pub rule: u8,
    /// The port it leaves on (`taphold_wire::gateway::PORT_P` or `PORT_Q`).
    pub out_port: u8,
}

impl HeldMessage {
    /// The backup frame of message `seq` of `stream` in `epoch`, with
    /// `flags`: with none, the very bytes (and digest) it was launched with;
    /// with RETRANSMIT, the bytes of every re-launch of it (the timestamp and
    /// watermark are the first launch's, so all re-launches are alike).
    /// A TCP segment's frame is always mode 2 (the segment in full): a
    /// re-launch or a journal record is never the compact form.
    /// It names link 0: the caller sets the link it launches on.
    pub fn backup_repr<'a>(
        &'a self,
        flags: Flags,
        seq: u64,
        stream: u32,
        epoch: u64,
        mode: ContentMode,
        key: &DigestKey,
    ) -> BackupRepr<'a> {
        let payload =
            &self.mbuf.data()[self.meta.payload_off as usize..][..self.meta.payload_len as usize];
        BackupRepr {
            link: 0,
            flags,
            stream,
            epoch,
            seq,
            timestamp_ns: self.timestamp_ns,
            watermark: self.watermark,
            src_ip: self.meta.src_ip,
            src_port: self.meta.src_port,
            payload_len: self.meta.payload_len,
            content: match self.tcp {
                Some(t) => Content::Tcp(TcpSegmentRepr {
                    src_ip: self.meta.src_ip,
                    src_port: self.meta.src_port,
                    payload_len: self.meta.payload_len,
                    dst_ip: t.dst_ip,
                    dst_port: t.dst_port,
                    tcp_flags: t.tcp_flags,
                    tcp_seq: t.tcp_seq,
                    content: payload,
                }),
                None => Content::new(mode, payload, key),
            },
        }
    }
}

/// One role, as the worker loop sees it. Built once per lcore and kept in a
/// Vec there: inline (not boxed) so a role's state is one contiguous block.
#[allow(clippy::large_enum_variant)]
pub enum Role {
    Ingress(ingress::Ingress),
    TapRx(tap_rx::TapRx),
    Egress(egress::Egress),
    LinkRx(link_rx::LinkRx),
    TapModel(tap_model::TapModel),
    /// Fault injection for the tests of what a panic does (mapped only when
    /// `TAPHOLD_FAILPOINT` asks): panics once its clock passes the deadline.
    Failpoint(Failpoint),
}

/// A role that panics at a given time: the tests' stand-in for a bug.
pub struct Failpoint {
    pub clock: dpdk::Clock,
    pub panic_at_ns: u64,
}

impl Failpoint {
    fn poll(&mut self) -> usize {
        if self.clock.now_ns() >= self.panic_at_ns {
            panic!("failpoint: worker panic (TAPHOLD_FAILPOINT)");
        }
        0
    }
}

impl Role {
    /// One poll; returns how much work it did (0 = idle).
    #[inline]
    pub fn poll(&mut self) -> usize {
        match self {
            Role::Ingress(r) => r.poll(),
            Role::TapRx(r) => r.poll(),
            Role::Egress(r) => r.poll(),
            Role::LinkRx(r) => r.poll(),
            Role::TapModel(r) => r.poll(),
            Role::Failpoint(r) => r.poll(),
        }
    }

    /// Called once after the quit flag, before the lcore returns: hand back
    /// what must outlive the loop (the hold ring's consumer, for accounting).
    pub fn finish(self) -> Option<egress::Egress> {
        match self {
            Role::Egress(e) => Some(e),
            Role::Ingress(mut i) => {
                // Frames parked for a next hop that never answered: counted.
                i.discard_parked();
                None
            }
            _ => None,
        }
    }
}
