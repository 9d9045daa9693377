//! The taphold PDU: backup frames, heartbeats, acks, confirmations, target confirmations
//! and resend requests.
//!
//! On each backup link Bk it rides directly in Ethernet ([`crate::EtherType::TAPHOLD`]):
//! ingress launches a *backup frame* per message, the tap Tk shows it back to tap-rx, and
//! the backup node answers with *acks* and *heartbeats*, which we also send. Towards the
//! source it rides in UDP on the primary port P as a *confirmation*. From the destination's
//! arbiter it rides in UDP too: a *target confirmation* (what was delivered, to the
//! appliance and the backup nodes) and a *resend request* (a gap, to a backup node). A [`Packet`] is a view
//! starting at the first byte of the taphold header, i.e. after Ethernet or after UDP.
//!
//! Every PDU is a 48-byte common header, a body whose length the type fixes, and an 8-byte
//! keyed digest over both (see [`crate::digest`]). `docs/protocol.md` is the same table
//! as the `field` module below.
//!
//! A message is named by (stream, epoch, seq): the epoch is new and larger on every start
//! of the appliance, so a seq is never reused, and every PDU carries all three.

use core::ops::BitOr;

use crate::bytes::{be16, be32, be64};
use crate::digest::{DigestKey, MacState};
use crate::payload::{PayloadKey, TAG_LEN};
use crate::WireError;

/// `"TH"`.
pub const MAGIC: u16 = 0x5448;
/// The only version this crate speaks (4: the digest binds the link, the origin and the
/// key id, and is SipHash-2-4; 3: the epoch joined the common header).
pub const VERSION: u8 = 4;
/// Length of the common header; the body starts here.
pub const HEADER_LEN: usize = 48;
/// Length of the digest trailer after the body.
pub const DIGEST_LEN: usize = 8;
/// Link value of PDUs that are not specific to one backup link (confirmations, target
/// confirmations, resend requests). A backup frame names the link it is launched on.
pub const ALL_LINKS: u8 = 0xFF;
/// Backup links are numbered `0..MAX_LINKS`.
pub const MAX_LINKS: u8 = 4;
/// Bytes of the original payload a confirmation echoes back to the source.
pub const ECHO_LEN: usize = 16;

/// Body length of a backup frame before its content.
pub const BACKUP_BODY_PREFIX_LEN: usize = 8;
/// Body length of a digest-only backup frame.
pub const BACKUP_DIGEST_BODY_LEN: usize = 16;
/// Body length of a heartbeat.
pub const HEARTBEAT_BODY_LEN: usize = 16;
/// Body length of an ack.
pub const ACK_BODY_LEN: usize = 8;
/// Body length of a confirmation.
pub const CONFIRM_BODY_LEN: usize = 24;
/// Body length of a target confirmation.
pub const TARGET_CONFIRM_BODY_LEN: usize = 8;
/// Body length of a resend request.
pub const RESEND_BODY_LEN: usize = 8;
/// Body length of a TCP-segment backup frame (content modes 2 and 3) before its content:
/// the flow prefix.
pub const TCP_BODY_PREFIX_LEN: usize = 20;
/// Body length of a flow ack.
pub const FLOW_ACK_BODY_LEN: usize = 20;

mod field {
    use core::ops::Range;

    pub const MAGIC: Range<usize> = 0..2;
    pub const VERSION: usize = 2;
    pub const TYPE: usize = 3;
    pub const KEY_ID: usize = 4;
    pub const FLAGS: usize = 5;
    pub const LINK: usize = 6;
    pub const CONTENT_MODE: usize = 7;
    pub const STREAM: Range<usize> = 8..12;
    pub const BODY_LEN: Range<usize> = 12..16;
    pub const EPOCH: Range<usize> = 16..24;
    pub const SEQ: Range<usize> = 24..32;
    pub const TIMESTAMP_NS: Range<usize> = 32..40;
    pub const WATERMARK: Range<usize> = 40..48;
    pub const BODY: usize = 48;

    /// Offsets within the body of a backup frame.
    pub mod backup {
        use core::ops::Range;

        pub const SRC_IP: Range<usize> = 0..4;
        pub const SRC_PORT: Range<usize> = 4..6;
        pub const PAYLOAD_LEN: Range<usize> = 6..8;
        /// Full copy: the payload from here; digest only: `DIGEST`.
        pub const CONTENT: usize = 8;
        pub const DIGEST: Range<usize> = 8..16;
    }

    /// Offsets within the body of a TCP-segment backup frame (content modes 2 and 3):
    /// the 20-byte flow prefix, then the content.
    pub mod tcp {
        use core::ops::Range;

        pub const SRC_IP: Range<usize> = 0..4;
        pub const SRC_PORT: Range<usize> = 4..6;
        pub const PAYLOAD_LEN: Range<usize> = 6..8;
        pub const DST_IP: Range<usize> = 8..12;
        pub const DST_PORT: Range<usize> = 12..14;
        pub const TCP_FLAGS: usize = 14;
        pub const RESERVED: usize = 15;
        pub const TCP_SEQ: Range<usize> = 16..20;
        pub const CONTENT: usize = 20;
    }

    /// Offsets within the body of a flow ack.
    pub mod flow_ack {
        use core::ops::Range;

        pub const SRC_IP: Range<usize> = 0..4;
        pub const SRC_PORT: Range<usize> = 4..6;
        pub const RESERVED1: Range<usize> = 6..8;
        pub const DST_IP: Range<usize> = 8..12;
        pub const DST_PORT: Range<usize> = 12..14;
        pub const RESERVED2: Range<usize> = 14..16;
        pub const ACKED: Range<usize> = 16..20;
    }

    /// Offsets within the body of a heartbeat.
    pub mod heartbeat {
        use core::ops::Range;

        pub const ECHO_SEQ: Range<usize> = 0..8;
        pub const ECHO_TIMESTAMP_NS: Range<usize> = 8..16;
    }

    /// Offsets within the body of an ack.
    pub mod ack {
        use core::ops::Range;

        pub const RECORDS: Range<usize> = 0..8;
    }

    /// Offsets within the body of a confirmation.
    pub mod confirm {
        use core::ops::Range;

        pub const PAYLOAD_LEN: Range<usize> = 0..2;
        pub const RESERVED: Range<usize> = 2..8;
        pub const ECHO: Range<usize> = 8..24;
    }

    /// Offsets within the body of a target confirmation.
    pub mod target_confirm {
        use core::ops::Range;

        pub const SKIPPED: Range<usize> = 0..8;
    }

    /// Offsets within the body of a resend request.
    pub mod resend {
        use core::ops::Range;

        pub const COUNT: Range<usize> = 0..4;
        pub const RESERVED: Range<usize> = 4..8;
    }
}

/// What a PDU is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MsgType {
    /// A copy (or digest) of one message, primary → backup node, seen again on the tap.
    Backup = 1,
    /// Liveness with sequence and timestamp, both ways on a backup link.
    Heartbeat = 2,
    /// Cumulative journaling acknowledgement, backup node → primary.
    Ack = 3,
    /// Message released, primary → source, in UDP.
    Confirm = 4,
    /// Cumulative "delivered to the application", destination's arbiter → primary and
    /// backup nodes, in UDP: what may be deleted.
    TargetConfirm = 5,
    /// "Send these seqs again", destination's arbiter → backup node, in UDP: a gap.
    Resend = 6,
    /// Gateway mode: the highest TCP acknowledgement the exchange sent on one protected
    /// flow, primary → backup node on a backup link, like a heartbeat.
    FlowAck = 7,
}

impl TryFrom<u8> for MsgType {
    type Error = WireError;

    /// [`WireError::UnknownType`] for anything but 1..=7.
    fn try_from(v: u8) -> Result<Self, WireError> {
        match v {
            1 => Ok(MsgType::Backup),
            2 => Ok(MsgType::Heartbeat),
            3 => Ok(MsgType::Ack),
            4 => Ok(MsgType::Confirm),
            5 => Ok(MsgType::TargetConfirm),
            6 => Ok(MsgType::Resend),
            7 => Ok(MsgType::FlowAck),
            _ => Err(WireError::UnknownType),
        }
    }
}

impl From<MsgType> for u8 {
    fn from(t: MsgType) -> u8 {
        t as u8
    }
}

/// What a backup frame carries of its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum ContentMode {
    /// The whole payload: the backup node can replay the message.
    #[default]
    Full = 0,
    /// Only a keyed digest of the payload: proof of sequence, not a replayable copy.
    Digest = 1,
    /// Gateway mode: one TCP segment of a protected flow — the flow prefix (5-tuple, TCP
    /// flags and sequence number) and the segment's payload.
    Tcp = 2,
    /// Gateway mode: the flow prefix and the compact encoding of the whole FIX messages
    /// the segment holds (crate `taphold-fix`); `payload_len` stays the original length.
    FixCompact = 3,
}

impl TryFrom<u8> for ContentMode {
    type Error = WireError;

    /// [`WireError::Malformed`] for anything but 0..=3.
    fn try_from(v: u8) -> Result<Self, WireError> {
        match v {
            0 => Ok(ContentMode::Full),
            1 => Ok(ContentMode::Digest),
            2 => Ok(ContentMode::Tcp),
            3 => Ok(ContentMode::FixCompact),
            _ => Err(WireError::Malformed),
        }
    }
}

/// The flags word. Undefined bits are refused on input ([`WireError::BadFlags`]) and
/// cannot be constructed, so a peer from a later version fails loudly instead of having
/// its meaning silently dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u16);

impl Flags {
    /// No flag.
    pub const EMPTY: Flags = Flags(0);
    /// The message may have been delivered already (set by the backup node on replay).
    pub const POSSIBLE_DUPLICATE: Flags = Flags(1 << 0);
    /// Released without backup protection (pass-through secondary mode).
    pub const UNPROTECTED: Flags = Flags(1 << 1);
    /// The backup frame was re-sent after failover to another backup link.
    pub const RETRANSMIT: Flags = Flags(1 << 2);
    /// Sent by a backup node (its heartbeats and acks); never set on what the appliance
    /// or the arbiter sends. Covered by the digest, so a PDU reflected back to its
    /// sender is refused by name ([`Packet::from_node`]).
    pub const FROM_NODE: Flags = Flags(1 << 3);
    /// A backup frame whose payload is encrypted and authenticated
    /// (`link_security: aead`, [`crate::payload`]); never on another type.
    pub const ENCRYPTED: Flags = Flags(1 << 4);
    /// Every flag a message can carry (the delivery header's too).
    pub const ALL: Flags = Flags(0b111);
    /// Every bit defined in a taphold PDU's flags byte.
    pub const PDU_ALL: Flags = Flags(0b1_1111);

    /// The flags for `bits`; [`WireError::BadFlags`] if an undefined bit is set.
    pub const fn from_bits(bits: u16) -> Result<Flags, WireError> {
        if bits & !Self::ALL.0 != 0 {
            Err(WireError::BadFlags)
        } else {
            Ok(Flags(bits))
        }
    }

    /// The wire value.
    #[inline]
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Whether every flag of `other` is set in `self`.
    #[inline]
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets of flags.
    #[inline]
    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// `self` without the flags of `other`.
    #[inline]
    pub const fn difference(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }

    /// Whether no flag is set.
    #[inline]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Flags {
    type Output = Flags;

    fn bitor(self, rhs: Flags) -> Flags {
        self.union(rhs)
    }
}

/// Length of the taphold PDU of a backup frame — header, body and digest, *not* the
/// Ethernet header in front of it (add [`crate::ethernet::HEADER_LEN`], then pad to
/// [`crate::ethernet::MIN_FRAME_LEN`]). Equals [`BackupRepr::buffer_len`]; saturates
/// instead of overflowing.
///
/// `payload_len` is the length of the content the frame carries: the payload in modes 0
/// (full) and 2 (tcp), the compact encoding's length in mode 3 (fix-compact); mode 1
/// ignores it.
#[inline]
pub const fn backup_frame_len(payload_len: usize, mode: ContentMode) -> usize {
    let (prefix, content) = match mode {
        ContentMode::Full => (BACKUP_BODY_PREFIX_LEN, payload_len),
        ContentMode::Digest => (BACKUP_BODY_PREFIX_LEN, 8),
        ContentMode::Tcp | ContentMode::FixCompact => (TCP_BODY_PREFIX_LEN, payload_len),
    };
    content.saturating_add(HEADER_LEN + prefix + DIGEST_LEN)
}

/// A view of a taphold PDU.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it. Accessors panic if it is shorter than the
    /// fields they read, and read nonsense if its fields are invalid; use only on buffers
    /// you sized and filled yourself.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check`]: every accessor is then meaningful and
    /// cannot panic. The digest is not checked here (it needs the key):
    /// [`Packet::verify_digest`] or a `Repr::parse` does that.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// Validates everything but the digest, in this order (so that every prefix of a
    /// valid PDU is [`WireError::Truncated`]):
    /// 1. 48 header bytes present — `Truncated`;
    /// 2. magic — `BadMagic`; version — `BadVersion`; type — `UnknownType`;
    ///    flags — `BadFlags` (an undefined bit);
    /// 3. link 0..=3 for a backup frame, 0..=3 or 0xFF for heartbeats, acks and flow
    ///    acks, 0xFF for the other types; FROM_NODE set on acks, clear on every type but
    ///    heartbeats — `Malformed`;
    ///    content mode 0..=3 for backup frames, 0 otherwise — `Malformed`; ENCRYPTED
    ///    only on full-copy backup frames — `Malformed`;
    /// 4. body length as the type requires — `BadLength`;
    /// 5. body and digest present — `Truncated`;
    /// 6. full-copy backup: payload length = body length − 8, tcp backup: payload length
    ///    = body length − 20 — `BadLength`; tcp and fix-compact backup: reserved byte
    ///    zero — `Malformed`;
    ///    confirmation: reserved bytes zero — `Malformed`; resend request: seq ≥ 1,
    ///    count ≥ 1, seq + count − 1 ≤ 2^64 − 1, reserved bytes zero — `Malformed`;
    ///    flow ack: reserved bytes zero — `Malformed`.
    pub fn check(&self) -> Result<(), WireError> {
        let buf = self.buffer.as_ref();
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if be16(&buf[field::MAGIC]) != MAGIC {
            return Err(WireError::BadMagic);
        }
        if buf[field::VERSION] != VERSION {
            return Err(WireError::BadVersion);
        }
        let msg_type = MsgType::try_from(buf[field::TYPE])?;
        let flags = u16::from(buf[field::FLAGS]);
        if flags & !Flags::PDU_ALL.0 != 0 {
            return Err(WireError::BadFlags);
        }
        // A message flag only on the types that carry them (backup frames and
        // confirmations): the other Reprs have none to read them into, so one there
        // would be dropped without a trace (found by fuzzing).
        if flags & Flags::ALL.0 != 0 && !matches!(msg_type, MsgType::Backup | MsgType::Confirm) {
            return Err(WireError::BadFlags);
        }
        let from_node = flags & Flags::FROM_NODE.0 != 0;
        let encrypted = flags & Flags::ENCRYPTED.0 != 0;
        let link = buf[field::LINK];
        let link_ok = match msg_type {
            MsgType::Backup => link < MAX_LINKS && !from_node,
            MsgType::Confirm | MsgType::TargetConfirm | MsgType::Resend => {
                link == ALL_LINKS && !from_node
            }
            MsgType::Heartbeat => valid_link(link),
            MsgType::Ack => valid_link(link) && from_node,
            MsgType::FlowAck => valid_link(link) && !from_node,
        };
        if !link_ok {
            return Err(WireError::Malformed);
        }
        let mode = ContentMode::try_from(buf[field::CONTENT_MODE])?;
        if msg_type != MsgType::Backup && mode != ContentMode::Full {
            return Err(WireError::Malformed);
        }
        if encrypted && (msg_type != MsgType::Backup || mode != ContentMode::Full) {
            return Err(WireError::Malformed);
        }
        let tag_len = if encrypted { TAG_LEN } else { 0 };
        let body_len =
            usize::try_from(be32(&buf[field::BODY_LEN])).map_err(|_| WireError::BadLength)?;
        let body_ok = match (msg_type, mode) {
            (MsgType::Backup, ContentMode::Full) => (BACKUP_BODY_PREFIX_LEN + tag_len
                ..=BACKUP_BODY_PREFIX_LEN + usize::from(u16::MAX) + tag_len)
                .contains(&body_len),
            (MsgType::Backup, ContentMode::Digest) => body_len == BACKUP_DIGEST_BODY_LEN,
            (MsgType::Backup, ContentMode::Tcp | ContentMode::FixCompact) => (TCP_BODY_PREFIX_LEN
                ..=TCP_BODY_PREFIX_LEN + usize::from(u16::MAX))
                .contains(&body_len),
            (MsgType::FlowAck, _) => body_len == FLOW_ACK_BODY_LEN,
            (MsgType::Heartbeat, _) => body_len == HEARTBEAT_BODY_LEN,
            (MsgType::Ack, _) => body_len == ACK_BODY_LEN,
            (MsgType::Confirm, _) => body_len == CONFIRM_BODY_LEN,
            (MsgType::TargetConfirm, _) => body_len == TARGET_CONFIRM_BODY_LEN,
            (MsgType::Resend, _) => body_len == RESEND_BODY_LEN,
        };
        if !body_ok {
            return Err(WireError::BadLength);
        }
        if buf.len() < HEADER_LEN + body_len + DIGEST_LEN {
            return Err(WireError::Truncated);
        }
        let body = &buf[field::BODY..field::BODY + body_len];
        match (msg_type, mode) {
            (MsgType::Backup, ContentMode::Full)
                if usize::from(be16(&body[field::backup::PAYLOAD_LEN]))
                    != body_len - BACKUP_BODY_PREFIX_LEN - tag_len =>
            {
                Err(WireError::BadLength)
            }
            (MsgType::Backup, ContentMode::Tcp)
                if usize::from(be16(&body[field::tcp::PAYLOAD_LEN]))
                    != body_len - TCP_BODY_PREFIX_LEN =>
            {
                Err(WireError::BadLength)
            }
            (MsgType::Backup, ContentMode::Tcp | ContentMode::FixCompact)
                if body[field::tcp::RESERVED] != 0 =>
            {
                Err(WireError::Malformed)
            }
            (MsgType::FlowAck, _)
                if body[field::flow_ack::RESERVED1]
                    .iter()
                    .chain(&body[field::flow_ack::RESERVED2])
                    .any(|&b| b != 0) =>
            {
                Err(WireError::Malformed)
            }
            (MsgType::Confirm, _) if body[field::confirm::RESERVED].iter().any(|&b| b != 0) => {
                Err(WireError::Malformed)
            }
            (MsgType::Resend, _) => {
                let first = be64(&buf[field::SEQ]);
                let count = u64::from(be32(&body[field::resend::COUNT]));
                let ok = first != 0
                    && count != 0
                    && first.checked_add(count - 1).is_some()
                    && body[field::resend::RESERVED].iter().all(|&b| b == 0);
                if ok {
                    Ok(())
                } else {
                    Err(WireError::Malformed)
                }
            }
            _ => Ok(()),
        }
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Magic (`0x5448`).
    #[inline]
    pub fn magic(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::MAGIC])
    }

    /// Version (3).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    /// Message type. (On an unchecked view, an invalid type byte reads as `Backup`.)
    #[inline]
    pub fn msg_type(&self) -> MsgType {
        MsgType::try_from(self.buffer.as_ref()[field::TYPE]).unwrap_or(MsgType::Backup)
    }

    /// Flags, [`Flags::FROM_NODE`] included. (On an unchecked view, undefined bits are
    /// dropped.)
    #[inline]
    pub fn flags(&self) -> Flags {
        Flags(u16::from(self.buffer.as_ref()[field::FLAGS]) & Flags::PDU_ALL.0)
    }

    /// Whether a backup node sent it ([`Flags::FROM_NODE`]).
    #[inline]
    pub fn from_node(&self) -> bool {
        self.flags().contains(Flags::FROM_NODE)
    }

    /// The id of the key that sealed it ([`DigestKey::id`]).
    #[inline]
    pub fn key_id(&self) -> u8 {
        self.buffer.as_ref()[field::KEY_ID]
    }

    /// Backup-link index 0..=3, or [`ALL_LINKS`].
    #[inline]
    pub fn link(&self) -> u8 {
        self.buffer.as_ref()[field::LINK]
    }

    /// Content mode (always `Full` for other types than backup frames). (On an unchecked
    /// view, an invalid byte reads as `Full`.)
    #[inline]
    pub fn content_mode(&self) -> ContentMode {
        ContentMode::try_from(self.buffer.as_ref()[field::CONTENT_MODE]).unwrap_or_default()
    }

    /// Stream id.
    #[inline]
    pub fn stream(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::STREAM])
    }

    /// Body length field.
    #[inline]
    pub fn body_len(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::BODY_LEN])
    }

    /// The appliance's epoch: new and larger on every start, so that (stream, epoch, seq)
    /// names one message for good. Heartbeats and acks from the backup node carry the
    /// epoch of the run they speak for (0 before the node has heard the appliance).
    #[inline]
    pub fn epoch(&self) -> u64 {
        be64(&self.buffer.as_ref()[field::EPOCH])
    }

    /// Sequence number: the message's (backup, confirmation), the heartbeat's, or the
    /// cumulative journaled one (ack).
    #[inline]
    pub fn seq(&self) -> u64 {
        be64(&self.buffer.as_ref()[field::SEQ])
    }

    /// Sender's clock when emitted, in nanoseconds.
    #[inline]
    pub fn timestamp_ns(&self) -> u64 {
        be64(&self.buffer.as_ref()[field::TIMESTAMP_NS])
    }

    /// Highest sequence number released to the destination.
    #[inline]
    pub fn watermark(&self) -> u64 {
        be64(&self.buffer.as_ref()[field::WATERMARK])
    }

    /// Length of the PDU: header, body and digest. Padding after it is not counted.
    #[inline]
    pub fn total_len(&self) -> usize {
        (self.body_len() as usize).saturating_add(HEADER_LEN + DIGEST_LEN)
    }

    /// The body.
    #[inline]
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[field::BODY..field::BODY + self.body_len() as usize]
    }

    /// The digest trailer as received.
    #[inline]
    pub fn digest_field(&self) -> u64 {
        let at = field::BODY + self.body_len() as usize;
        be64(&self.buffer.as_ref()[at..at + DIGEST_LEN])
    }

    /// The digest the trailer should hold: keyed SipHash-2-4 of the header and body,
    /// read from byte 8 on and then the first 8 bytes (see [`MacState`]).
    #[inline]
    pub fn compute_digest(&self, key: &DigestKey) -> u64 {
        self.mac_state(key).finish(self.word0())
    }

    /// The digest's state after bytes `8 .. 48 + body length`: everything but the first
    /// word, which holds the link, the origin and the key id.
    #[inline]
    pub fn mac_state(&self, key: &DigestKey) -> MacState {
        let covered = HEADER_LEN + self.body_len() as usize;
        key.absorb(&self.buffer.as_ref()[WORD0_LEN..covered])
    }

    /// Bytes 0..8: magic, version, type, key id, flags, link, content mode.
    #[inline]
    pub fn word0(&self) -> [u8; 8] {
        let mut w = [0u8; 8];
        w.copy_from_slice(&self.buffer.as_ref()[..WORD0_LEN]);
        w
    }

    /// The digest the trailer should hold, and the *link-free* digest: the same with
    /// the link byte read as [`ALL_LINKS`]. One absorption for both. The hold ring keeps
    /// a backup frame's link-free digest, which is the same for the copies launched on
    /// every link, while the trailer's binds each copy to its own link.
    #[inline]
    pub fn digests(&self, key: &DigestKey) -> (u64, u64) {
        let state = self.mac_state(key);
        let w = self.word0();
        (state.finish(w), state.finish(link_free(w)))
    }

    /// [`WireError::BadDigest`] unless the trailer matches [`Packet::compute_digest`].
    #[inline]
    pub fn verify_digest(&self, key: &DigestKey) -> Result<(), WireError> {
        if self.compute_digest(key) == self.digest_field() {
            Ok(())
        } else {
            Err(WireError::BadDigest)
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags (e.g. RETRANSMIT before re-sending after failover); the digest must
    /// be refilled afterwards.
    #[inline]
    pub fn set_flags(&mut self, flags: Flags) {
        self.buffer.as_mut()[field::FLAGS] = flags.bits() as u8;
    }

    /// Sets the timestamp; the digest must be refilled afterwards.
    #[inline]
    pub fn set_timestamp_ns(&mut self, v: u64) {
        self.buffer.as_mut()[field::TIMESTAMP_NS].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the watermark; the digest must be refilled afterwards.
    #[inline]
    pub fn set_watermark(&mut self, v: u64) {
        self.buffer.as_mut()[field::WATERMARK].copy_from_slice(&v.to_be_bytes());
    }

    /// Computes the digest over header and body, writes it to the trailer, returns it.
    #[inline]
    pub fn fill_digest(&mut self, key: &DigestKey) -> u64 {
        let d = self.compute_digest(key);
        let at = field::BODY + self.body_len() as usize;
        self.buffer.as_mut()[at..at + DIGEST_LEN].copy_from_slice(&d.to_be_bytes());
        d
    }
}

/// The common header fields a Repr writes.
struct Header {
    key_id: u8,
    msg_type: MsgType,
    flags: Flags,
    link: u8,
    mode: ContentMode,
    stream: u32,
    body_len: usize,
    epoch: u64,
    seq: u64,
    timestamp_ns: u64,
    watermark: u64,
}

impl Header {
    /// Checks room for the whole PDU and writes the header; returns the body to fill.
    fn emit<'b>(&self, buf: &'b mut [u8]) -> Result<&'b mut [u8], WireError> {
        let total = HEADER_LEN + self.body_len + DIGEST_LEN;
        let pdu = buf.get_mut(..total).ok_or(WireError::Truncated)?;
        // Six 8-byte stores, one per 8-byte word of the header (magic .. content mode,
        // stream + body length, epoch, seq, timestamp, watermark): the digest then reads
        // each word back with one load that the store forwards, instead of stalling on a
        // load that spans several 1- and 2-byte stores.
        let w0 = u64::from(MAGIC) << 48
            | u64::from(VERSION) << 40
            | u64::from(u8::from(self.msg_type)) << 32
            | u64::from(self.key_id) << 24
            | u64::from(self.flags.bits() as u8) << 16
            | u64::from(self.link) << 8
            | u64::from(self.mode as u8);
        // body_len ≤ 65543 for every type, so it fits in u32.
        let w1 = u64::from(self.stream) << 32 | u64::from(self.body_len as u32);
        let words = [
            w0,
            w1,
            self.epoch,
            self.seq,
            self.timestamp_ns,
            self.watermark,
        ];
        for (chunk, w) in pdu[..field::BODY].chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_be_bytes());
        }
        Ok(&mut pdu[field::BODY..field::BODY + self.body_len])
    }
}

/// Writes the digest of a PDU whose header and body `emit` just wrote.
fn seal(buf: &mut [u8], key: &DigestKey) -> u64 {
    Packet::new_unchecked(buf).fill_digest(key)
}

/// Length of the first word of the header, which the digest reads last.
const WORD0_LEN: usize = 8;

/// `word0` with the link byte read as [`ALL_LINKS`].
#[inline]
fn link_free(mut word0: [u8; 8]) -> [u8; 8] {
    word0[field::LINK] = ALL_LINKS;
    word0
}

/// A backup frame sealed for one link, ready to be sealed for the others without
/// reading its payload again: [`BackupRepr::emit_sealing`].
#[derive(Clone, Copy, Debug)]
pub struct LinkSeal {
    state: MacState,
    word0: [u8; 8],
}

impl LinkSeal {
    /// The link-free digest (see [`Packet::digests`]): what the hold ring keeps.
    #[inline]
    pub fn link_free(&self) -> u64 {
        self.state.finish(link_free(self.word0))
    }

    /// Makes `pdu`, a copy of the sealed frame, the copy for `link`: writes the link
    /// byte and the trailer. Returns the trailer's digest. [`WireError::Malformed`] for a
    /// link outside 0..=3, [`WireError::Truncated`] for a PDU shorter than the frame.
    pub fn seal_for(&self, pdu: &mut [u8], link: u8) -> Result<u64, WireError> {
        if link >= MAX_LINKS {
            return Err(WireError::Malformed);
        }
        let mut w = self.word0;
        w[field::LINK] = link;
        let d = self.state.finish(w);
        let at = self.state_len_end();
        let trailer = pdu
            .get_mut(at..at + DIGEST_LEN)
            .ok_or(WireError::Truncated)?;
        trailer.copy_from_slice(&d.to_be_bytes());
        pdu[field::LINK] = link;
        Ok(d)
    }

    /// Where the trailer starts: 8 + the bytes absorbed.
    #[inline]
    fn state_len_end(&self) -> usize {
        WORD0_LEN + self.state.shared_len()
    }
}

/// Checks, type and digest, shared by every `Repr::parse`.
fn open<T: AsRef<[u8]>>(
    packet: &Packet<T>,
    want: MsgType,
    key: &DigestKey,
) -> Result<(), WireError> {
    packet.check()?;
    if packet.msg_type() != want {
        return Err(WireError::WrongType);
    }
    packet.verify_digest(key)
}

fn valid_link(link: u8) -> bool {
    link < MAX_LINKS || link == ALL_LINKS
}

/// What a backup frame carries of its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content<'a> {
    /// The payload itself.
    Full(&'a [u8]),
    /// Keyed digest of the payload.
    Digest(u64),
    /// Mode 2: a TCP segment of a protected flow, its payload in full.
    Tcp(TcpSegmentRepr<'a>),
    /// Mode 3: a TCP segment of a protected flow, its FIX messages compacted
    /// (`content` is the compact encoding, `payload_len` the original length).
    FixCompact(TcpSegmentRepr<'a>),
}

impl<'a> Content<'a> {
    /// The content of a UDP message's `payload` in `mode` (listener mode).
    ///
    /// The gateway modes [`ContentMode::Tcp`] and [`ContentMode::FixCompact`] need the
    /// flow's fields, which a bare payload does not have: build [`Content::Tcp`] or
    /// [`Content::FixCompact`] instead. Asked for them here, this gives a full copy
    /// (configuration refuses those modes for a listener, so it does not happen).
    pub fn new(mode: ContentMode, payload: &'a [u8], key: &DigestKey) -> Content<'a> {
        match mode {
            ContentMode::Digest => Content::Digest(key.digest(payload)),
            ContentMode::Full | ContentMode::Tcp | ContentMode::FixCompact => {
                Content::Full(payload)
            }
        }
    }

    /// The mode this content is sent in.
    pub fn mode(&self) -> ContentMode {
        match self {
            Content::Full(_) => ContentMode::Full,
            Content::Digest(_) => ContentMode::Digest,
            Content::Tcp(_) => ContentMode::Tcp,
            Content::FixCompact(_) => ContentMode::FixCompact,
        }
    }

    /// The TCP segment of a gateway-mode backup frame (modes 2 and 3).
    pub fn tcp_segment(&self) -> Option<&TcpSegmentRepr<'a>> {
        match self {
            Content::Tcp(s) | Content::FixCompact(s) => Some(s),
            Content::Full(_) | Content::Digest(_) => None,
        }
    }
}

/// The body of a gateway-mode backup frame (content modes 2 and 3): one TCP segment of a
/// protected flow, engine → exchange. The flow prefix is 20 bytes (`field::tcp`); what
/// follows is the segment's payload (mode 2) or its compact FIX encoding (mode 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegmentRepr<'a> {
    /// The segment's IPv4 source (the trading engine).
    pub src_ip: [u8; 4],
    /// Its TCP source port.
    pub src_port: u16,
    /// Length of the segment's TCP payload, in both modes: the bytes of the flow's byte
    /// stream it carries from `tcp_seq`.
    pub payload_len: u16,
    /// IPv4 destination (the exchange's gateway).
    pub dst_ip: [u8; 4],
    /// TCP destination port.
    pub dst_port: u16,
    /// The segment's TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10,
    /// URG 0x20, ...).
    pub tcp_flags: u8,
    /// The segment's TCP sequence number.
    pub tcp_seq: u32,
    /// Mode 2: the payload (`payload_len` bytes); mode 3: the compact encoding.
    pub content: &'a [u8],
}

impl<'a> TcpSegmentRepr<'a> {
    /// Reads the body of a checked mode-2/3 backup frame (at least the 20-byte prefix;
    /// [`WireError::Truncated`] otherwise, [`WireError::Malformed`] for a reserved byte).
    pub fn parse_body(body: &'a [u8]) -> Result<TcpSegmentRepr<'a>, WireError> {
        if body.len() < TCP_BODY_PREFIX_LEN {
            return Err(WireError::Truncated);
        }
        if body[field::tcp::RESERVED] != 0 {
            return Err(WireError::Malformed);
        }
        Ok(TcpSegmentRepr {
            src_ip: ip4(&body[field::tcp::SRC_IP]),
            src_port: be16(&body[field::tcp::SRC_PORT]),
            payload_len: be16(&body[field::tcp::PAYLOAD_LEN]),
            dst_ip: ip4(&body[field::tcp::DST_IP]),
            dst_port: be16(&body[field::tcp::DST_PORT]),
            tcp_flags: body[field::tcp::TCP_FLAGS],
            tcp_seq: be32(&body[field::tcp::TCP_SEQ]),
            content: &body[field::tcp::CONTENT..],
        })
    }

    /// Body length: prefix and content.
    pub fn body_len(&self) -> usize {
        TCP_BODY_PREFIX_LEN + self.content.len()
    }

    /// Writes the 20-byte flow prefix at the start of `body` (the content is the
    /// caller's: this lets the appliance write the prefix in front of bytes already in
    /// place). [`WireError::Truncated`] if `body` is shorter than 20.
    pub fn emit_prefix(&self, body: &mut [u8]) -> Result<(), WireError> {
        let prefix = body
            .get_mut(..TCP_BODY_PREFIX_LEN)
            .ok_or(WireError::Truncated)?;
        // Three stores: (src_ip, src_port, payload_len), (dst_ip, dst_port, flags, 0),
        // tcp_seq.
        let w0 = u64::from(u32::from_be_bytes(self.src_ip)) << 32
            | u64::from(self.src_port) << 16
            | u64::from(self.payload_len);
        let w1 = u64::from(u32::from_be_bytes(self.dst_ip)) << 32
            | u64::from(self.dst_port) << 16
            | u64::from(self.tcp_flags) << 8;
        prefix[0..8].copy_from_slice(&w0.to_be_bytes());
        prefix[8..16].copy_from_slice(&w1.to_be_bytes());
        prefix[field::tcp::TCP_SEQ].copy_from_slice(&self.tcp_seq.to_be_bytes());
        Ok(())
    }

    /// The first byte of the flow's byte stream after this segment's payload
    /// (`tcp_seq + payload_len`, wrapping), not counting SYN or FIN.
    pub fn end_seq(&self) -> u32 {
        self.tcp_seq.wrapping_add(u32::from(self.payload_len))
    }
}

fn ip4(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

/// A backup frame: one message, as launched on one backup link (the copies on the
/// other links differ in the link byte and the digest only: [`LinkSeal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupRepr<'a> {
    /// The backup link it is launched on, 0..=3.
    pub link: u8,
    /// Flags.
    pub flags: Flags,
    /// Stream id.
    pub stream: u32,
    /// The appliance's epoch (see [`Packet::epoch`]).
    pub epoch: u64,
    /// Message sequence number.
    pub seq: u64,
    /// Our clock when emitted.
    pub timestamp_ns: u64,
    /// Highest seq released to the destination.
    pub watermark: u64,
    /// The message's original source IPv4 address.
    pub src_ip: [u8; 4],
    /// The message's original source UDP port.
    pub src_port: u16,
    /// Length of the message payload (also in digest-only mode).
    pub payload_len: u16,
    /// The payload or its digest.
    pub content: Content<'a>,
}

impl<'a> BackupRepr<'a> {
    /// Reads a backup frame: checks as [`Packet::check`], then [`WireError::WrongType`]
    /// for another type, then [`WireError::BadDigest`].
    pub fn parse(packet: &Packet<&'a [u8]>, key: &DigestKey) -> Result<BackupRepr<'a>, WireError> {
        open(packet, MsgType::Backup, key)?;
        Self::read(packet)
    }

    /// Reads a backup frame whose digest was verified when it was received and whose
    /// bytes have been protected since (a journal record, CRC-checked): checks as
    /// [`Packet::check`] and the type, but not the digest, which needs the key. Never
    /// use on bytes fresh from a wire.
    pub fn parse_verified_earlier(packet: &Packet<&'a [u8]>) -> Result<BackupRepr<'a>, WireError> {
        packet.check()?;
        if packet.msg_type() != MsgType::Backup {
            return Err(WireError::WrongType);
        }
        Self::read(packet)
    }

    /// The fields of a checked backup frame.
    fn read(packet: &Packet<&'a [u8]>) -> Result<BackupRepr<'a>, WireError> {
        let buf: &'a [u8] = packet.buffer;
        let body = &buf[field::BODY..field::BODY + packet.body_len() as usize];
        let payload_len = be16(&body[field::backup::PAYLOAD_LEN]);
        let content = match packet.content_mode() {
            // Encrypted: the ciphertext (the tag after it is `Packet::payload_tag`).
            ContentMode::Full => {
                Content::Full(&body[field::backup::CONTENT..][..usize::from(payload_len)])
            }
            ContentMode::Digest => Content::Digest(be64(&body[field::backup::DIGEST])),
            ContentMode::Tcp => Content::Tcp(TcpSegmentRepr::parse_body(body)?),
            ContentMode::FixCompact => Content::FixCompact(TcpSegmentRepr::parse_body(body)?),
        };
        let ip = &body[field::backup::SRC_IP];
        Ok(BackupRepr {
            link: packet.link(),
            flags: packet.flags(),
            stream: packet.stream(),
            epoch: packet.epoch(),
            seq: packet.seq(),
            timestamp_ns: packet.timestamp_ns(),
            watermark: packet.watermark(),
            src_ip: [ip[0], ip[1], ip[2], ip[3]],
            src_port: be16(&body[field::backup::SRC_PORT]),
            payload_len,
            content,
        })
    }

    fn tag_len(&self) -> usize {
        if self.flags.contains(Flags::ENCRYPTED) {
            TAG_LEN
        } else {
            0
        }
    }

    fn body_len(&self) -> usize {
        match self.content {
            Content::Full(p) => BACKUP_BODY_PREFIX_LEN + p.len() + self.tag_len(),
            Content::Digest(_) => BACKUP_DIGEST_BODY_LEN,
            Content::Tcp(s) | Content::FixCompact(s) => s.body_len(),
        }
    }

    /// Bytes the PDU takes (saturating, for a full payload too long to be valid).
    pub fn buffer_len(&self) -> usize {
        match self.content {
            Content::Full(p) => {
                backup_frame_len(p.len(), ContentMode::Full).saturating_add(self.tag_len())
            }
            Content::Digest(_) => backup_frame_len(0, ContentMode::Digest),
            Content::Tcp(s) | Content::FixCompact(s) => {
                backup_frame_len(s.content.len(), self.content.mode())
            }
        }
    }

    /// Writes the PDU at the start of `buf` and returns its digest.
    /// [`WireError::BadLength`] if a full copy's or a tcp segment's content length is
    /// not `payload_len`, or a fix-compact content is longer than 65535;
    /// [`WireError::Malformed`] if a tcp or fix-compact segment's `src_ip`, `src_port`
    /// or `payload_len` differ from this frame's (they are the same bytes on the wire),
    /// for a link outside 0..=3 or the FROM_NODE flag;
    /// [`WireError::Truncated`] if `buf` is shorter than [`BackupRepr::buffer_len`].
    pub fn emit(&self, buf: &mut [u8], key: &DigestKey) -> Result<u64, WireError> {
        self.emit_sealing(buf, key)?;
        Ok(Packet::new_unchecked(&*buf).digest_field())
    }

    /// [`BackupRepr::emit`], returning what seals copies of the frame for other links
    /// without reading the payload again ([`LinkSeal::seal_for`]).
    pub fn emit_sealing(&self, buf: &mut [u8], key: &DigestKey) -> Result<LinkSeal, WireError> {
        self.emit_sealing_with(buf, key, None)
    }

    /// [`BackupRepr::emit_sealing`]; with `aead` (and the ENCRYPTED flag, which
    /// must go together) the payload is encrypted in place after it is copied, the
    /// tag written after it, and the digest then covers the ciphertext.
    pub fn emit_sealing_with(
        &self,
        buf: &mut [u8],
        key: &DigestKey,
        aead: Option<&PayloadKey>,
    ) -> Result<LinkSeal, WireError> {
        match self.content {
            Content::Full(p) | Content::Tcp(TcpSegmentRepr { content: p, .. })
                if p.len() != usize::from(self.payload_len) =>
            {
                return Err(WireError::BadLength);
            }
            Content::FixCompact(s) if s.content.len() > usize::from(u16::MAX) => {
                return Err(WireError::BadLength);
            }
            _ => {}
        }
        if let Some(s) = self.content.tcp_segment() {
            if s.src_ip != self.src_ip
                || s.src_port != self.src_port
                || s.payload_len != self.payload_len
            {
                return Err(WireError::Malformed);
            }
        }
        let encrypted = self.flags.contains(Flags::ENCRYPTED);
        if self.link >= MAX_LINKS
            || self.flags.contains(Flags::FROM_NODE)
            || encrypted != aead.is_some()
            || (encrypted && !matches!(self.content, Content::Full(_)))
        {
            return Err(WireError::Malformed);
        }
        let header = Header {
            key_id: key.id(),
            msg_type: MsgType::Backup,
            flags: self.flags,
            link: self.link,
            mode: self.content.mode(),
            stream: self.stream,
            body_len: self.body_len(),
            epoch: self.epoch,
            seq: self.seq,
            timestamp_ns: self.timestamp_ns,
            watermark: self.watermark,
        };
        let body = header.emit(buf)?;
        // src_ip, src_port, payload_len: one 8-byte store (see `Header::emit`).
        let prefix = u64::from(u32::from_be_bytes(self.src_ip)) << 32
            | u64::from(self.src_port) << 16
            | u64::from(self.payload_len);
        body[..field::backup::CONTENT].copy_from_slice(&prefix.to_be_bytes());
        match self.content {
            Content::Full(p) => {
                let (prefix, rest) = body.split_at_mut(field::backup::CONTENT);
                let (text, tag) = rest.split_at_mut(p.len());
                text.copy_from_slice(p);
                if let Some(a) = aead {
                    let t = a.seal((self.stream, self.epoch, self.seq), prefix, text);
                    tag.copy_from_slice(&t);
                }
            }
            Content::Digest(d) => body[field::backup::DIGEST].copy_from_slice(&d.to_be_bytes()),
            Content::Tcp(s) | Content::FixCompact(s) => {
                s.emit_prefix(body)?;
                body[field::tcp::CONTENT..].copy_from_slice(s.content);
            }
        }
        let p = Packet::new_unchecked(&*buf);
        let seal = LinkSeal {
            state: p.mac_state(key),
            word0: p.word0(),
        };
        seal.seal_for(buf, self.link)?;
        Ok(seal)
    }
}

/// A heartbeat, on one backup link, in either direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatRepr {
    /// Backup link it was sent on (0..=3), or [`ALL_LINKS`].
    pub link: u8,
    /// Sent by the backup node ([`Flags::FROM_NODE`]); false from the appliance.
    pub from_node: bool,
    /// The appliance's epoch; from the backup node, that of the run it journals.
    pub epoch: u64,
    /// Heartbeat sequence number (per sender and link).
    pub seq: u64,
    /// Sender's clock when emitted.
    pub timestamp_ns: u64,
    /// Highest seq released to the destination (primary) or journaled (backup node).
    pub watermark: u64,
    /// Stream id.
    pub stream: u32,
    /// Last heartbeat seq received from the peer, 0 if none.
    pub echo_seq: u64,
    /// That heartbeat's timestamp: the peer measures its round trip without our clock.
    pub echo_timestamp_ns: u64,
}

impl HeartbeatRepr {
    /// Reads a heartbeat: checks as [`Packet::check`], then [`WireError::WrongType`],
    /// then [`WireError::BadDigest`].
    pub fn parse(packet: &Packet<&[u8]>, key: &DigestKey) -> Result<HeartbeatRepr, WireError> {
        open(packet, MsgType::Heartbeat, key)?;
        let body = packet.body();
        Ok(HeartbeatRepr {
            link: packet.link(),
            from_node: packet.from_node(),
            epoch: packet.epoch(),
            seq: packet.seq(),
            timestamp_ns: packet.timestamp_ns(),
            watermark: packet.watermark(),
            stream: packet.stream(),
            echo_seq: be64(&body[field::heartbeat::ECHO_SEQ]),
            echo_timestamp_ns: be64(&body[field::heartbeat::ECHO_TIMESTAMP_NS]),
        })
    }

    /// Bytes the PDU takes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + HEARTBEAT_BODY_LEN + DIGEST_LEN
    }

    /// Writes the PDU at the start of `buf` and returns its digest.
    /// [`WireError::Malformed`] for a link outside 0..=3 and 0xFF;
    /// [`WireError::Truncated`] if `buf` is too short.
    pub fn emit(&self, buf: &mut [u8], key: &DigestKey) -> Result<u64, WireError> {
        if !valid_link(self.link) {
            return Err(WireError::Malformed);
        }
        let header = Header {
            key_id: key.id(),
            msg_type: MsgType::Heartbeat,
            flags: if self.from_node {
                Flags::FROM_NODE
            } else {
                Flags::EMPTY
            },
            link: self.link,
            mode: ContentMode::Full,
            stream: self.stream,
            body_len: HEARTBEAT_BODY_LEN,
            epoch: self.epoch,
            seq: self.seq,
            timestamp_ns: self.timestamp_ns,
            watermark: self.watermark,
        };
        let body = header.emit(buf)?;
        body[field::heartbeat::ECHO_SEQ].copy_from_slice(&self.echo_seq.to_be_bytes());
        body[field::heartbeat::ECHO_TIMESTAMP_NS]
            .copy_from_slice(&self.echo_timestamp_ns.to_be_bytes());
        Ok(seal(buf, key))
    }
}

/// A cumulative ack from the backup node: health, not a release gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckRepr {
    /// Backup link it was sent on (0..=3), or [`ALL_LINKS`].
    pub link: u8,
    /// Stream id.
    pub stream: u32,
    /// The epoch of the run this ack speaks for.
    pub epoch: u64,
    /// Every backup frame of that epoch with seq ≤ this is journaled.
    pub seq: u64,
    /// Backup node's clock when emitted.
    pub timestamp_ns: u64,
    /// The primary's released watermark as the backup node last saw it.
    pub watermark: u64,
    /// Total backup frames journaled by the backup node.
    pub records: u64,
}

impl AckRepr {
    /// Reads an ack: checks as [`Packet::check`], then [`WireError::WrongType`], then
    /// [`WireError::BadDigest`].
    pub fn parse(packet: &Packet<&[u8]>, key: &DigestKey) -> Result<AckRepr, WireError> {
        open(packet, MsgType::Ack, key)?;
        Ok(AckRepr {
            link: packet.link(),
            stream: packet.stream(),
            epoch: packet.epoch(),
            seq: packet.seq(),
            timestamp_ns: packet.timestamp_ns(),
            watermark: packet.watermark(),
            records: be64(&packet.body()[field::ack::RECORDS]),
        })
    }

    /// Bytes the PDU takes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + ACK_BODY_LEN + DIGEST_LEN
    }

    /// Writes the PDU at the start of `buf` and returns its digest.
    /// [`WireError::Malformed`] for a link outside 0..=3 and 0xFF;
    /// [`WireError::Truncated`] if `buf` is too short.
    pub fn emit(&self, buf: &mut [u8], key: &DigestKey) -> Result<u64, WireError> {
        if !valid_link(self.link) {
            return Err(WireError::Malformed);
        }
        let header = Header {
            key_id: key.id(),
            msg_type: MsgType::Ack,
            flags: Flags::FROM_NODE,
            link: self.link,
            mode: ContentMode::Full,
            stream: self.stream,
            body_len: ACK_BODY_LEN,
            epoch: self.epoch,
            seq: self.seq,
            timestamp_ns: self.timestamp_ns,
            watermark: self.watermark,
        };
        let body = header.emit(buf)?;
        body[field::ack::RECORDS].copy_from_slice(&self.records.to_be_bytes());
        Ok(seal(buf, key))
    }
}

/// A confirmation to the source that its message was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfirmRepr {
    /// Flags (UNPROTECTED if released without backup).
    pub flags: Flags,
    /// Stream id.
    pub stream: u32,
    /// The appliance's epoch when it accepted the message.
    pub epoch: u64,
    /// Sequence number we gave the message.
    pub seq: u64,
    /// Our clock when emitted.
    pub timestamp_ns: u64,
    /// Highest seq released to the destination.
    pub watermark: u64,
    /// Length of the confirmed message's payload.
    pub payload_len: u16,
    /// The first 16 bytes of the payload, zero-padded, so the source can match the
    /// confirmation to its own message ([`ConfirmRepr::echo_of`]).
    pub echo: [u8; ECHO_LEN],
}

impl ConfirmRepr {
    /// The echo of `payload`: its first 16 bytes, zero-padded.
    pub fn echo_of(payload: &[u8]) -> [u8; ECHO_LEN] {
        let mut echo = [0u8; ECHO_LEN];
        for (e, p) in echo.iter_mut().zip(payload) {
            *e = *p;
        }
        echo
    }

    /// Reads a confirmation: checks as [`Packet::check`], then
    /// [`WireError::WrongType`], then [`WireError::BadDigest`].
    pub fn parse(packet: &Packet<&[u8]>, key: &DigestKey) -> Result<ConfirmRepr, WireError> {
        open(packet, MsgType::Confirm, key)?;
        let body = packet.body();
        let mut echo = [0u8; ECHO_LEN];
        echo.copy_from_slice(&body[field::confirm::ECHO]);
        Ok(ConfirmRepr {
            flags: packet.flags(),
            stream: packet.stream(),
            epoch: packet.epoch(),
            seq: packet.seq(),
            timestamp_ns: packet.timestamp_ns(),
            watermark: packet.watermark(),
            payload_len: be16(&body[field::confirm::PAYLOAD_LEN]),
            echo,
        })
    }

    /// Bytes the PDU takes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + CONFIRM_BODY_LEN + DIGEST_LEN
    }

    /// Writes the PDU at the start of `buf` and returns its digest.
    /// [`WireError::Truncated`] if `buf` is too short.
    pub fn emit(&self, buf: &mut [u8], key: &DigestKey) -> Result<u64, WireError> {
        if self.flags.contains(Flags::FROM_NODE) {
            return Err(WireError::Malformed);
        }
        let header = Header {
            key_id: key.id(),
            msg_type: MsgType::Confirm,
            flags: self.flags,
            link: ALL_LINKS,
            mode: ContentMode::Full,
            stream: self.stream,
            body_len: CONFIRM_BODY_LEN,
            epoch: self.epoch,
            seq: self.seq,
            timestamp_ns: self.timestamp_ns,
            watermark: self.watermark,
        };
        let body = header.emit(buf)?;
        // payload_len and the reserved zeros: one 8-byte store (see `Header::emit`).
        body[field::confirm::PAYLOAD_LEN.start..field::confirm::RESERVED.end]
            .copy_from_slice(&(u64::from(self.payload_len) << 48).to_be_bytes());
        body[field::confirm::ECHO].copy_from_slice(&self.echo);
        Ok(seal(buf, key))
    }
}

/// A target confirmation: every message of (stream, epoch) up to `seq` has been delivered
/// to the application (or skipped by the arbiter's gap policy: `skipped` says how many),
/// so its backup copies may be deleted. Cumulative; sent by the destination's arbiter to
/// the appliance and to each backup node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetConfirmRepr {
    /// Stream id.
    pub stream: u32,
    /// The epoch whose messages it confirms.
    pub epoch: u64,
    /// Delivered through: every seq of the epoch ≤ this.
    pub seq: u64,
    /// The arbiter's clock when emitted.
    pub timestamp_ns: u64,
    /// The highest seq of the epoch the arbiter has received from any input (≥ `seq`
    /// while a gap waits).
    pub highest_seen: u64,
    /// How many seqs ≤ `seq` the arbiter gave up on and skipped (its gap policy).
    pub skipped: u64,
}

impl TargetConfirmRepr {
    /// Reads a target confirmation: checks as [`Packet::check`], then
    /// [`WireError::WrongType`], then [`WireError::BadDigest`].
    pub fn parse(packet: &Packet<&[u8]>, key: &DigestKey) -> Result<TargetConfirmRepr, WireError> {
        open(packet, MsgType::TargetConfirm, key)?;
        Ok(TargetConfirmRepr {
            stream: packet.stream(),
            epoch: packet.epoch(),
            seq: packet.seq(),
            timestamp_ns: packet.timestamp_ns(),
            highest_seen: packet.watermark(),
            skipped: be64(&packet.body()[field::target_confirm::SKIPPED]),
        })
    }

    /// Bytes the PDU takes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + TARGET_CONFIRM_BODY_LEN + DIGEST_LEN
    }

    /// Writes the PDU at the start of `buf` and returns its digest.
    /// [`WireError::Truncated`] if `buf` is too short.
    pub fn emit(&self, buf: &mut [u8], key: &DigestKey) -> Result<u64, WireError> {
        let header = Header {
            key_id: key.id(),
            msg_type: MsgType::TargetConfirm,
            flags: Flags::EMPTY,
            link: ALL_LINKS,
            mode: ContentMode::Full,
            stream: self.stream,
            body_len: TARGET_CONFIRM_BODY_LEN,
            epoch: self.epoch,
            seq: self.seq,
            timestamp_ns: self.timestamp_ns,
            watermark: self.highest_seen,
        };
        let body = header.emit(buf)?;
        body[field::target_confirm::SKIPPED].copy_from_slice(&self.skipped.to_be_bytes());
        Ok(seal(buf, key))
    }
}

/// A resend request: the arbiter misses seqs `seq .. seq + count` of (stream, epoch) and
/// asks a backup node for them; the node answers each it holds from its journal, as a
/// delivery datagram flagged RETRANSMIT, to the request's source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResendRepr {
    /// Stream id.
    pub stream: u32,
    /// The epoch of the missing messages.
    pub epoch: u64,
    /// The first missing seq (≥ 1).
    pub seq: u64,
    /// How many consecutive seqs from `seq` (≥ 1).
    pub count: u32,
    /// The arbiter's clock when emitted.
    pub timestamp_ns: u64,
    /// The arbiter's delivered-through seq of the epoch, as in a target confirmation.
    pub delivered: u64,
}

impl ResendRepr {
    /// Reads a resend request: checks as [`Packet::check`] (which refuses seq 0, count 0
    /// and a range past 2^64 − 1 as [`WireError::Malformed`]), then
    /// [`WireError::WrongType`], then [`WireError::BadDigest`].
    pub fn parse(packet: &Packet<&[u8]>, key: &DigestKey) -> Result<ResendRepr, WireError> {
        open(packet, MsgType::Resend, key)?;
        Ok(ResendRepr {
            stream: packet.stream(),
            epoch: packet.epoch(),
            seq: packet.seq(),
            count: be32(&packet.body()[field::resend::COUNT]),
            timestamp_ns: packet.timestamp_ns(),
            delivered: packet.watermark(),
        })
    }

    /// The seqs asked for.
    pub fn seqs(&self) -> core::ops::RangeInclusive<u64> {
        self.seq
            ..=self
                .seq
                .saturating_add(u64::from(self.count).saturating_sub(1))
    }

    /// Bytes the PDU takes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + RESEND_BODY_LEN + DIGEST_LEN
    }

    /// Writes the PDU at the start of `buf` and returns its digest.
    /// [`WireError::Malformed`] for seq 0, count 0 or a range past 2^64 − 1;
    /// [`WireError::Truncated`] if `buf` is too short.
    pub fn emit(&self, buf: &mut [u8], key: &DigestKey) -> Result<u64, WireError> {
        if self.seq == 0
            || self.count == 0
            || self.seq.checked_add(u64::from(self.count) - 1).is_none()
        {
            return Err(WireError::Malformed);
        }
        let header = Header {
            key_id: key.id(),
            msg_type: MsgType::Resend,
            flags: Flags::EMPTY,
            link: ALL_LINKS,
            mode: ContentMode::Full,
            stream: self.stream,
            body_len: RESEND_BODY_LEN,
            epoch: self.epoch,
            seq: self.seq,
            timestamp_ns: self.timestamp_ns,
            watermark: self.delivered,
        };
        let body = header.emit(buf)?;
        // count and the reserved zeros: one 8-byte store (see `Header::emit`).
        body[..RESEND_BODY_LEN].copy_from_slice(&(u64::from(self.count) << 32).to_be_bytes());
        Ok(seal(buf, key))
    }
}

/// A flow ack (type 7): in gateway mode, the highest TCP acknowledgement number the
/// exchange sent on one protected flow (the next byte it expects), as the appliance saw it
/// in the return direction — the target's confirmation of the flow's bytes below it.
/// Appliance → backup node on a backup link, like a heartbeat; the node keeps the
/// highest per flow and (stream, epoch) run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowAckRepr {
    /// Backup link it is sent on (0..=3), or [`ALL_LINKS`].
    pub link: u8,
    /// Stream id.
    pub stream: u32,
    /// The appliance's epoch.
    pub epoch: u64,
    /// The flow ack's own sequence number within (stream, epoch): 1, 2, 3, ...
    pub seq: u64,
    /// The appliance's clock when emitted.
    pub timestamp_ns: u64,
    /// Highest seq released to the destination, as in heartbeats.
    pub watermark: u64,
    /// The protected flow's source (trading engine).
    pub src_ip: [u8; 4],
    /// Its TCP source port.
    pub src_port: u16,
    /// The exchange.
    pub dst_ip: [u8; 4],
    /// The exchange's TCP port.
    pub dst_port: u16,
    /// Highest TCP acknowledgement number of the flow (serial arithmetic, wrapping u32).
    pub acked: u32,
}

impl FlowAckRepr {
    /// Reads a flow ack: checks as [`Packet::check`], then [`WireError::WrongType`],
    /// then [`WireError::BadDigest`].
    pub fn parse(packet: &Packet<&[u8]>, key: &DigestKey) -> Result<FlowAckRepr, WireError> {
        open(packet, MsgType::FlowAck, key)?;
        let body = packet.body();
        Ok(FlowAckRepr {
            link: packet.link(),
            stream: packet.stream(),
            epoch: packet.epoch(),
            seq: packet.seq(),
            timestamp_ns: packet.timestamp_ns(),
            watermark: packet.watermark(),
            src_ip: ip4(&body[field::flow_ack::SRC_IP]),
            src_port: be16(&body[field::flow_ack::SRC_PORT]),
            dst_ip: ip4(&body[field::flow_ack::DST_IP]),
            dst_port: be16(&body[field::flow_ack::DST_PORT]),
            acked: be32(&body[field::flow_ack::ACKED]),
        })
    }

    /// Bytes the PDU takes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + FLOW_ACK_BODY_LEN + DIGEST_LEN
    }

    /// Writes the PDU at the start of `buf` and returns its digest.
    /// [`WireError::Malformed`] for a link outside 0..=3 and 0xFF;
    /// [`WireError::Truncated`] if `buf` is too short.
    pub fn emit(&self, buf: &mut [u8], key: &DigestKey) -> Result<u64, WireError> {
        if !valid_link(self.link) {
            return Err(WireError::Malformed);
        }
        let header = Header {
            key_id: key.id(),
            msg_type: MsgType::FlowAck,
            flags: Flags::EMPTY,
            link: self.link,
            mode: ContentMode::Full,
            stream: self.stream,
            body_len: FLOW_ACK_BODY_LEN,
            epoch: self.epoch,
            seq: self.seq,
            timestamp_ns: self.timestamp_ns,
            watermark: self.watermark,
        };
        let body = header.emit(buf)?;
        let w0 = u64::from(u32::from_be_bytes(self.src_ip)) << 32 | u64::from(self.src_port) << 16;
        let w1 = u64::from(u32::from_be_bytes(self.dst_ip)) << 32 | u64::from(self.dst_port) << 16;
        body[0..8].copy_from_slice(&w0.to_be_bytes());
        body[8..16].copy_from_slice(&w1.to_be_bytes());
        body[field::flow_ack::ACKED].copy_from_slice(&self.acked.to_be_bytes());
        Ok(seal(buf, key))
    }
}

/// Turns an authentic ENCRYPTED backup frame (its digest checked by the caller,
/// with `key`) into the plain frame, in place: the payload decrypted, the tag
/// dropped, ENCRYPTED cleared, the body length and the digest (under `key`; with
/// none, the trailer is zero: a record read with `parse_verified_earlier` only)
/// made the plain frame's. Returns the plain frame's length. [`WireError::BadDigest`]
/// if the tag does not authenticate the ciphertext (the buffer then unchanged);
/// [`WireError::WrongType`] for anything but an encrypted backup frame.
pub fn decrypt_backup_frame(
    buf: &mut [u8],
    aead: &PayloadKey,
    key: Option<&DigestKey>,
) -> Result<usize, WireError> {
    let p = Packet::new_checked(&*buf)?;
    if p.msg_type() != MsgType::Backup || !p.flags().contains(Flags::ENCRYPTED) {
        return Err(WireError::WrongType);
    }
    let id = (p.stream(), p.epoch(), p.seq());
    let flags = p.flags().difference(Flags::ENCRYPTED);
    let body_len = p.body_len() as usize;
    let body = &mut buf[field::BODY..field::BODY + body_len];
    let (prefix, rest) = body.split_at_mut(field::backup::CONTENT);
    let plen = rest.len() - TAG_LEN;
    let (text, tag) = rest.split_at_mut(plen);
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(tag);
    aead.open(id, prefix, text, &t)?;
    let plain_body = body_len - TAG_LEN;
    buf[field::BODY_LEN].copy_from_slice(&(plain_body as u32).to_be_bytes());
    let mut q = Packet::new_unchecked(&mut *buf);
    q.set_flags(flags);
    match key {
        Some(k) => {
            q.fill_digest(k);
        }
        None => {
            let at = HEADER_LEN + plain_body;
            buf[at..at + DIGEST_LEN].fill(0);
        }
    }
    Ok(HEADER_LEN + plain_body + DIGEST_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> DigestKey {
        DigestKey::from_hex("000102030405060708090a0b0c0d0e0f").unwrap()
    }

    /// The sample epoch: 2025-11-30T00:00:00Z in UNIX seconds, as an appliance that
    /// floors its epochs at the wall clock would take it.
    const EPOCH: u64 = 0x692b_8900;

    /// Message 42 of stream 7, epoch [`EPOCH`], payload "ORDER" from 10.0.0.99:40000,
    /// full copy.
    static BACKUP_FULL: [u8; 69] = [
        0x54, 0x48, 0x04, 0x01, 0xff, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00,
        0x0d, 0x00, 0x00, 0x00, 0x00, 0x69, 0x2b, 0x89, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x2a, 0x00, 0x00, 0x00, 0x00, 0x3b, 0x9a, 0xca, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x29, 0x0a, 0x00, 0x00, 0x63, 0x9c, 0x40, 0x00, 0x05, 0x4f, 0x52, 0x44, 0x45,
        0x52, 0xae, 0x2a, 0xb0, 0x35, 0xaa, 0xd0, 0x78, 0x8f,
    ];

    /// The same message, digest only, re-sent after failover.
    static BACKUP_DIGEST: [u8; 72] = [
        0x54, 0x48, 0x04, 0x01, 0xff, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00,
        0x10, 0x00, 0x00, 0x00, 0x00, 0x69, 0x2b, 0x89, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x2a, 0x00, 0x00, 0x00, 0x00, 0x3b, 0x9a, 0xca, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x29, 0x0a, 0x00, 0x00, 0x63, 0x9c, 0x40, 0x00, 0x05, 0x21, 0x09, 0x7d, 0xad,
        0xf2, 0x94, 0x5c, 0x6e, 0xaa, 0xca, 0x10, 0x9b, 0xb7, 0xe3, 0xa4, 0xb0,
    ];

    /// Heartbeat 5 on link 1, echoing the peer's heartbeat 4.
    static HEARTBEAT: [u8; 72] = [
        0x54, 0x48, 0x04, 0x02, 0xff, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00,
        0x10, 0x00, 0x00, 0x00, 0x00, 0x69, 0x2b, 0x89, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x29, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x05, 0xdc, 0xe1, 0x56, 0x9d, 0xe6, 0x1f, 0x47, 0x67, 0x9b,
    ];

    /// The backup node's heartbeat 5 on link 1: the same with FROM_NODE.
    static NODE_HEARTBEAT: [u8; 72] = [
        0x54, 0x48, 0x04, 0x02, 0xff, 0x08, 0x01, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00,
        0x10, 0x00, 0x00, 0x00, 0x00, 0x69, 0x2b, 0x89, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x29, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x05, 0xdc, 0x37, 0x88, 0x3e, 0x0d, 0x3c, 0xe2, 0xc1, 0x3a,
    ];

    /// Ack on link 0: everything of the epoch up to 42 journaled, 43 records.
    static ACK: [u8; 64] = [
        0x54, 0x48, 0x04, 0x03, 0xff, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00,
        0x08, 0x00, 0x00, 0x00, 0x00, 0x69, 0x2b, 0x89, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0b, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x29, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2b, 0x92, 0xff, 0xff, 0x57,
        0x5d, 0x6d, 0x92, 0x5c,
    ];

    /// Confirmation of message 42, released unprotected.
    static CONFIRM: [u8; 80] = [
        0x54, 0x48, 0x04, 0x04, 0xff, 0x02, 0xff, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00,
        0x18, 0x00, 0x00, 0x00, 0x00, 0x69, 0x2b, 0x89, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0f, 0xa0, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x2a, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x4f, 0x52, 0x44, 0x45,
        0x52, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc6, 0x2c, 0x34,
        0xc0, 0xf8, 0x5f, 0xc7, 0xf4,
    ];

    fn backup_full() -> BackupRepr<'static> {
        BackupRepr {
            link: 1,
            flags: Flags::EMPTY,
            stream: 7,
            epoch: EPOCH,
            seq: 42,
            timestamp_ns: 1_000_000_000,
            watermark: 41,
            src_ip: [10, 0, 0, 99],
            src_port: 40000,
            payload_len: 5,
            content: Content::Full(b"ORDER"),
        }
    }

    fn backup_digest() -> BackupRepr<'static> {
        BackupRepr {
            link: 0,
            flags: Flags::RETRANSMIT,
            content: Content::new(ContentMode::Digest, b"ORDER", &key()),
            ..backup_full()
        }
    }

    fn heartbeat() -> HeartbeatRepr {
        HeartbeatRepr {
            link: 1,
            from_node: false,
            epoch: EPOCH,
            seq: 5,
            timestamp_ns: 2000,
            watermark: 41,
            stream: 7,
            echo_seq: 4,
            echo_timestamp_ns: 1500,
        }
    }

    fn ack() -> AckRepr {
        AckRepr {
            link: 0,
            stream: 7,
            epoch: EPOCH,
            seq: 42,
            timestamp_ns: 3000,
            watermark: 41,
            records: 43,
        }
    }

    fn confirm() -> ConfirmRepr {
        ConfirmRepr {
            flags: Flags::UNPROTECTED,
            stream: 7,
            epoch: EPOCH,
            seq: 42,
            timestamp_ns: 4000,
            watermark: 42,
            payload_len: 5,
            echo: ConfirmRepr::echo_of(b"ORDER"),
        }
    }

    /// Every sample PDU, for the tests that treat them alike.
    /// Target confirmation: stream 7, epoch [`EPOCH`], delivered through 42, highest seen
    /// 45, nothing skipped. Every vector here comes from tools/vectors/taphold_v4.py
    /// (an independent SipHash-2-4 in Python); key 00..0f, key id 0xff.
    static TARGET_CONFIRM: [u8; 64] = [
        0x54, 0x48, 0x04, 0x05, 0xff, 0x00, 0xff, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00,
        0x08, 0x00, 0x00, 0x00, 0x00, 0x69, 0x2b, 0x89, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x13, 0x88, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x2d, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x57, 0x5d, 0x2c,
        0xb6, 0x80, 0x91, 0x34,
    ];

    /// Resend request: seqs 43 and 44 of stream 7, epoch [`EPOCH`], delivered through 42.
    static RESEND: [u8; 64] = [
        0x54, 0x48, 0x04, 0x06, 0xff, 0x00, 0xff, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00,
        0x08, 0x00, 0x00, 0x00, 0x00, 0x69, 0x2b, 0x89, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x2b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x17, 0x70, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x2a, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x8e, 0xf6, 0xd9, 0x4b,
        0x97, 0x04, 0x65, 0x27,
    ];

    /// Gateway mode, content mode 2: message 43 of stream 7, epoch [`EPOCH`], the TCP
    /// segment at seq 0x01020304 (flags PSH|ACK) of flow 10.1.0.2:40000-10.2.0.2:9878,
    /// payload "ORDER", launched on link 0. Digest computed independently
    /// (tools/vectors/taphold_v4.py).
    static BACKUP_TCP: [u8; 81] = [
        0x54, 0x48, 0x04, 0x01, // version 4, type: backup
        0xff, 0x00, 0x00, 0x02, // key id, flags, link 0, content mode: tcp
        0x00, 0x00, 0x00, 0x07, // stream 7
        0x00, 0x00, 0x00, 0x19, // body length 25
        0x00, 0x00, 0x00, 0x00, 0x69, 0x2b, 0x89, 0x00, // epoch
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2b, // seq 43
        0x00, 0x00, 0x00, 0x00, 0x3b, 0x9a, 0xca, 0x00, // timestamp 1 s
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, // watermark 42
        10, 1, 0, 2, // source IP
        0x9c, 0x40, // source port 40000
        0x00, 0x05, // payload length 5
        10, 2, 0, 2, // destination IP
        0x26, 0x96, // destination port 9878
        0x18, // TCP flags PSH|ACK
        0x00, // reserved
        0x01, 0x02, 0x03, 0x04, // TCP seq
        b'O', b'R', b'D', b'E', b'R', // payload
        0xc5, 0xe7, 0x20, 0x17, 0x04, 0x20, 0x5a, 0x6b, // digest
    ];

    /// Flow ack 1 on link 0: the exchange acknowledged flow 10.1.0.2:40000-10.2.0.2:9878
    /// up to 0x01020309 (the segment above).
    static FLOW_ACK: [u8; 76] = [
        0x54, 0x48, 0x04, 0x07, // version 4, type: flow ack
        0xff, 0x00, 0x00, 0x00, // key id, flags, link 0, mode
        0x00, 0x00, 0x00, 0x07, // stream 7
        0x00, 0x00, 0x00, 0x14, // body length 20
        0x00, 0x00, 0x00, 0x00, 0x69, 0x2b, 0x89, 0x00, // epoch
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // seq 1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1b, 0x58, // timestamp 7000
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2b, // watermark 43
        10, 1, 0, 2, 0x9c, 0x40, 0x00, 0x00, // source, port, reserved
        10, 2, 0, 2, 0x26, 0x96, 0x00, 0x00, // destination, port, reserved
        0x01, 0x02, 0x03, 0x09, // acked
        0x2c, 0xde, 0x9a, 0x8d, 0xf5, 0x04, 0xec, 0x53, // digest
    ];

    fn tcp_segment(content: &'static [u8]) -> TcpSegmentRepr<'static> {
        TcpSegmentRepr {
            src_ip: [10, 1, 0, 2],
            src_port: 40000,
            payload_len: 5,
            dst_ip: [10, 2, 0, 2],
            dst_port: 9878,
            tcp_flags: 0x18,
            tcp_seq: 0x0102_0304,
            content,
        }
    }

    fn backup_tcp() -> BackupRepr<'static> {
        BackupRepr {
            flags: Flags::EMPTY,
            stream: 7,
            epoch: EPOCH,
            seq: 43,
            timestamp_ns: 1_000_000_000,
            watermark: 42,
            link: 0,
            src_ip: [10, 1, 0, 2],
            src_port: 40000,
            payload_len: 5,
            content: Content::Tcp(tcp_segment(b"ORDER")),
        }
    }

    fn flow_ack() -> FlowAckRepr {
        FlowAckRepr {
            link: 0,
            stream: 7,
            epoch: EPOCH,
            seq: 1,
            timestamp_ns: 7000,
            watermark: 43,
            src_ip: [10, 1, 0, 2],
            src_port: 40000,
            dst_ip: [10, 2, 0, 2],
            dst_port: 9878,
            acked: 0x0102_0309,
        }
    }

    fn samples() -> [&'static [u8]; 10] {
        [
            &BACKUP_FULL,
            &BACKUP_DIGEST,
            &HEARTBEAT,
            &NODE_HEARTBEAT,
            &ACK,
            &CONFIRM,
            &TARGET_CONFIRM,
            &RESEND,
            &BACKUP_TCP,
            &FLOW_ACK,
        ]
    }

    #[test]
    fn tcp_backup_and_flow_ack_vectors() {
        let k = key();
        let mut buf = vec![0u8; BACKUP_TCP.len()];
        assert_eq!(backup_tcp().buffer_len(), BACKUP_TCP.len());
        assert_eq!(backup_frame_len(5, ContentMode::Tcp), BACKUP_TCP.len());
        backup_tcp().emit(&mut buf, &k).unwrap();
        assert_eq!(&buf[..], &BACKUP_TCP[..]);
        let p = Packet::new_checked(&BACKUP_TCP[..]).unwrap();
        assert_eq!(p.content_mode(), ContentMode::Tcp);
        let b = BackupRepr::parse(&p, &k).unwrap();
        assert_eq!(b, backup_tcp());
        let seg = b.content.tcp_segment().unwrap();
        assert_eq!(seg.end_seq(), 0x0102_0309);
        assert_eq!(
            BackupRepr::parse_verified_earlier(&p).unwrap(),
            backup_tcp()
        );

        let mut buf = vec![0u8; FLOW_ACK.len()];
        assert_eq!(flow_ack().buffer_len(), FLOW_ACK.len());
        flow_ack().emit(&mut buf, &k).unwrap();
        assert_eq!(&buf[..], &FLOW_ACK[..]);
        let p = Packet::new_checked(&FLOW_ACK[..]).unwrap();
        assert_eq!(p.msg_type(), MsgType::FlowAck);
        assert_eq!(FlowAckRepr::parse(&p, &k).unwrap(), flow_ack());
        // Each refuses the other's type.
        assert_eq!(BackupRepr::parse(&p, &k).err(), Some(WireError::WrongType));
        let p = Packet::new_checked(&BACKUP_TCP[..]).unwrap();
        assert_eq!(FlowAckRepr::parse(&p, &k).err(), Some(WireError::WrongType));
    }

    #[test]
    fn fix_compact_round_trip() {
        let k = key();
        // Compact content of any length, independent of the original payload length.
        for content in [
            &b""[..],
            b"x",
            b"a compact encoding longer than the payload",
        ] {
            let seg = TcpSegmentRepr {
                payload_len: 300,
                content,
                ..tcp_segment(b"")
            };
            let b = BackupRepr {
                payload_len: 300,
                content: Content::FixCompact(seg),
                ..backup_tcp()
            };
            let mut buf = vec![0u8; b.buffer_len()];
            assert_eq!(
                b.buffer_len(),
                backup_frame_len(content.len(), ContentMode::FixCompact)
            );
            b.emit(&mut buf, &k).unwrap();
            let p = Packet::new_checked(&buf[..]).unwrap();
            assert_eq!(p.content_mode(), ContentMode::FixCompact);
            assert_eq!(p.body_len() as usize, 20 + content.len());
            assert_eq!(BackupRepr::parse(&p, &k).unwrap(), b);
        }
    }

    #[test]
    fn tcp_backup_rules() {
        let k = key();
        // Reserved byte of the flow prefix (body offset 15 = PDU offset 63).
        for mode in [2, 3] {
            let mut v = edited(&BACKUP_TCP, 7, mode);
            v[63] = 1;
            assert_eq!(
                Packet::new_checked(&v[..]).err(),
                Some(WireError::Malformed)
            );
        }
        // Mode 2: payload_len must be body length − 20.
        let v = edited(&BACKUP_TCP, 55, 4);
        assert_eq!(
            Packet::new_checked(&v[..]).err(),
            Some(WireError::BadLength)
        );
        // Mode 3 does not tie payload_len to the body.
        let mut v = edited(&BACKUP_TCP, 7, 3);
        v[55] = 200;
        assert!(Packet::new_checked(&v[..]).is_ok());
        // Body shorter than the prefix.
        for len in [0u32, 8, 16, 19] {
            let mut v = BACKUP_TCP.to_vec();
            v[12..16].copy_from_slice(&len.to_be_bytes());
            assert_eq!(
                Packet::new_checked(&v[..]).err(),
                Some(WireError::BadLength),
                "body {len}"
            );
        }
        // Every TCP flags byte is allowed (ECE/CWR included).
        for f in [0u8, 0x02, 0x11, 0xff] {
            let v = edited(&BACKUP_TCP, 62, f);
            assert!(Packet::new_checked(&v[..]).is_ok());
        }
        // Emit refuses inconsistent frames.
        let mut buf = [0u8; 128];
        let wrong_len = BackupRepr {
            payload_len: 4,
            content: Content::Tcp(TcpSegmentRepr {
                payload_len: 4,
                ..tcp_segment(b"ORDER")
            }),
            ..backup_tcp()
        };
        assert_eq!(wrong_len.emit(&mut buf, &k), Err(WireError::BadLength));
        let other_src = BackupRepr {
            src_port: 1,
            ..backup_tcp()
        };
        assert_eq!(other_src.emit(&mut buf, &k), Err(WireError::Malformed));
        let other_ip = BackupRepr {
            content: Content::FixCompact(TcpSegmentRepr {
                src_ip: [1, 2, 3, 4],
                ..tcp_segment(b"c")
            }),
            ..backup_tcp()
        };
        assert_eq!(other_ip.emit(&mut buf, &k), Err(WireError::Malformed));
        assert_eq!(
            backup_tcp().emit(&mut buf[..80], &k),
            Err(WireError::Truncated)
        );
        // The body reader refuses a short body and a reserved byte on its own too.
        assert_eq!(
            TcpSegmentRepr::parse_body(&BACKUP_TCP[48..67]).err(),
            Some(WireError::Truncated)
        );
        let mut body = BACKUP_TCP[48..73].to_vec();
        body[15] = 0x80;
        assert_eq!(
            TcpSegmentRepr::parse_body(&body).err(),
            Some(WireError::Malformed)
        );
        // A listener asked for a gateway mode gets a full copy, never a half-built frame.
        assert_eq!(
            Content::new(ContentMode::Tcp, b"x", &k),
            Content::Full(b"x")
        );
        assert_eq!(Content::Full(b"x").tcp_segment(), None);
    }

    #[test]
    fn flow_ack_rules() {
        let k = key();
        // Any link index or 0xFF, like heartbeats.
        for link in [0, 1, 2, 3, 0xff] {
            let v = edited(&FLOW_ACK, 6, link);
            assert!(Packet::new_checked(&v[..]).is_ok(), "link {link}");
        }
        let mut buf = [0u8; 76];
        for link in [4, 0xfe] {
            let f = FlowAckRepr { link, ..flow_ack() };
            assert_eq!(f.emit(&mut buf, &k), Err(WireError::Malformed));
        }
        // Reserved bytes: body 6, 7, 14, 15.
        for at in [48 + 6, 48 + 7, 48 + 14, 48 + 15] {
            let v = edited(&FLOW_ACK, at, 1);
            assert_eq!(
                Packet::new_checked(&v[..]).err(),
                Some(WireError::Malformed),
                "byte {at}"
            );
        }
        for len in [0u32, 16, 19, 21, 24] {
            let mut v = FLOW_ACK.to_vec();
            v[12..16].copy_from_slice(&len.to_be_bytes());
            assert_eq!(
                Packet::new_checked(&v[..]).err(),
                Some(WireError::BadLength)
            );
        }
        let v = edited(&FLOW_ACK, 70, 0);
        let p = Packet::new_checked(&v[..]).unwrap();
        assert_eq!(FlowAckRepr::parse(&p, &k).err(), Some(WireError::BadDigest));
        assert_eq!(
            flow_ack().emit(&mut buf[..75], &k),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn target_confirmation_and_resend_vectors() {
        let k = key();
        let tc = TargetConfirmRepr {
            stream: 7,
            epoch: EPOCH,
            seq: 42,
            timestamp_ns: 5000,
            highest_seen: 45,
            skipped: 0,
        };
        let p = Packet::new_checked(&TARGET_CONFIRM[..]).unwrap();
        assert_eq!(p.msg_type(), MsgType::TargetConfirm);
        assert_eq!(TargetConfirmRepr::parse(&p, &k), Ok(tc));
        let mut buf = [0u8; 64];
        assert_eq!(tc.buffer_len(), 64);
        tc.emit(&mut buf, &k).unwrap();
        assert_eq!(buf, TARGET_CONFIRM);

        let rr = ResendRepr {
            stream: 7,
            epoch: EPOCH,
            seq: 43,
            count: 2,
            timestamp_ns: 6000,
            delivered: 42,
        };
        let p = Packet::new_checked(&RESEND[..]).unwrap();
        assert_eq!(ResendRepr::parse(&p, &k), Ok(rr));
        assert_eq!(rr.seqs(), 43..=44);
        rr.emit(&mut buf, &k).unwrap();
        assert_eq!(buf, RESEND);
        // One is not the other, and neither is a confirmation.
        assert_eq!(TargetConfirmRepr::parse(&p, &k), Err(WireError::WrongType));
        assert_eq!(
            ConfirmRepr::parse(&Packet::new_checked(&TARGET_CONFIRM[..]).unwrap(), &k),
            Err(WireError::WrongType)
        );
    }

    #[test]
    fn a_resend_request_names_a_real_range() {
        let k = key();
        let base = ResendRepr {
            stream: 7,
            epoch: EPOCH,
            seq: 43,
            count: 2,
            timestamp_ns: 6000,
            delivered: 42,
        };
        let mut buf = [0u8; 64];
        for bad in [
            ResendRepr { seq: 0, ..base },
            ResendRepr { count: 0, ..base },
            ResendRepr {
                seq: u64::MAX,
                count: 2,
                ..base
            },
        ] {
            assert_eq!(bad.emit(&mut buf, &k), Err(WireError::Malformed), "{bad:?}");
        }
        let last = ResendRepr {
            seq: u64::MAX,
            count: 1,
            ..base
        };
        last.emit(&mut buf, &k).unwrap();
        assert_eq!(
            ResendRepr::parse(&Packet::new_checked(&buf[..]).unwrap(), &k),
            Ok(last)
        );
        // The same on the wire: seq 0, count 0, reserved bytes set (digest left stale:
        // the structure is refused before the digest is looked at).
        for (at, value) in [(31, 0u8), (51, 0), (52, 1), (55, 1)] {
            let mut v = RESEND.to_vec();
            if at == 31 {
                v[24..32].fill(0);
            } else {
                v[at] = value;
            }
            assert_eq!(
                Packet::new_checked(&v[..]).err(),
                Some(WireError::Malformed),
                "byte {at}"
            );
        }
        // A link other than 0xFF is malformed for both new types.
        for pdu in [&TARGET_CONFIRM[..], &RESEND[..]] {
            assert_eq!(
                Packet::new_checked(&edited(pdu, 6, 0)[..]).err(),
                Some(WireError::Malformed)
            );
        }
    }

    /// A copy of `bytes` with one byte changed (the digest is left as it was).
    fn edited(bytes: &[u8], at: usize, value: u8) -> Vec<u8> {
        let mut v = bytes.to_vec();
        v[at] = value;
        v
    }

    #[test]
    fn deconstruct_backup_full() {
        let p = Packet::new_checked(&BACKUP_FULL[..]).unwrap();
        assert_eq!(p.magic(), MAGIC);
        assert_eq!(p.version(), 4);
        assert_eq!(p.msg_type(), MsgType::Backup);
        assert_eq!(p.key_id(), 0xff);
        assert_eq!(p.key_id(), key().id());
        assert_eq!(p.flags(), Flags::EMPTY);
        assert!(!p.from_node());
        assert_eq!(p.link(), 1);
        assert_eq!(p.content_mode(), ContentMode::Full);
        assert_eq!(p.stream(), 7);
        assert_eq!(p.body_len(), 13);
        assert_eq!(p.epoch(), EPOCH);
        assert_eq!(p.seq(), 42);
        assert_eq!(p.timestamp_ns(), 1_000_000_000);
        assert_eq!(p.watermark(), 41);
        assert_eq!(p.body(), &BACKUP_FULL[48..61]);
        assert_eq!(p.digest_field(), 0xae2a_b035_aad0_788f);
        assert_eq!(p.total_len(), 69);
        assert_eq!(p.compute_digest(&key()), p.digest_field());
        assert_eq!(p.verify_digest(&key()), Ok(()));
        assert_eq!(BackupRepr::parse(&p, &key()), Ok(backup_full()));
    }

    #[test]
    fn deconstruct_backup_digest() {
        let p = Packet::new_checked(&BACKUP_DIGEST[..]).unwrap();
        assert_eq!(p.flags(), Flags::RETRANSMIT);
        assert_eq!(p.content_mode(), ContentMode::Digest);
        assert_eq!(p.body_len(), 16);
        assert_eq!(p.total_len(), 72);
        let r = BackupRepr::parse(&p, &key()).unwrap();
        assert_eq!(r.content, Content::Digest(0x2109_7dad_f294_5c6e));
        assert_eq!(r.content, Content::Digest(key().digest(b"ORDER")));
        assert_eq!(r.payload_len, 5);
        assert_eq!(r, backup_digest());
    }

    #[test]
    fn deconstruct_heartbeat_ack_confirm() {
        let p = Packet::new_checked(&HEARTBEAT[..]).unwrap();
        assert_eq!(p.msg_type(), MsgType::Heartbeat);
        assert_eq!(p.link(), 1);
        assert_eq!(p.seq(), 5);
        assert_eq!(HeartbeatRepr::parse(&p, &key()), Ok(heartbeat()));
        let p = Packet::new_checked(&NODE_HEARTBEAT[..]).unwrap();
        assert!(p.from_node());
        assert_eq!(
            HeartbeatRepr::parse(&p, &key()),
            Ok(HeartbeatRepr {
                from_node: true,
                ..heartbeat()
            })
        );

        let p = Packet::new_checked(&ACK[..]).unwrap();
        assert_eq!(p.msg_type(), MsgType::Ack);
        assert_eq!(p.link(), 0);
        assert!(p.from_node());
        assert_eq!(AckRepr::parse(&p, &key()), Ok(ack()));

        let p = Packet::new_checked(&CONFIRM[..]).unwrap();
        assert_eq!(p.msg_type(), MsgType::Confirm);
        assert_eq!(p.flags(), Flags::UNPROTECTED);
        assert_eq!(&p.body()[8..13], b"ORDER");
        assert_eq!(ConfirmRepr::parse(&p, &key()), Ok(confirm()));
    }

    #[test]
    fn construct_each_type() {
        fn check(emitted: (Result<u64, WireError>, Vec<u8>), expected: &[u8]) {
            let (digest, buf) = emitted;
            assert_eq!(&buf[..], expected);
            let at = expected.len() - DIGEST_LEN;
            assert_eq!(digest.unwrap().to_be_bytes(), expected[at..]);
        }
        fn run(
            len: usize,
            f: impl Fn(&mut [u8]) -> Result<u64, WireError>,
        ) -> (Result<u64, WireError>, Vec<u8>) {
            let mut buf = vec![0u8; len];
            let d = f(&mut buf);
            (d, buf)
        }
        let k = key();
        check(run(69, |b| backup_full().emit(b, &k)), &BACKUP_FULL);
        check(run(72, |b| backup_digest().emit(b, &k)), &BACKUP_DIGEST);
        check(run(72, |b| heartbeat().emit(b, &k)), &HEARTBEAT);
        let node_hb = HeartbeatRepr {
            from_node: true,
            ..heartbeat()
        };
        check(run(72, |b| node_hb.emit(b, &k)), &NODE_HEARTBEAT);
        check(run(64, |b| ack().emit(b, &k)), &ACK);
        check(run(80, |b| confirm().emit(b, &k)), &CONFIRM);
        assert_eq!(backup_full().buffer_len(), 69);
        assert_eq!(backup_digest().buffer_len(), 72);
        assert_eq!(heartbeat().buffer_len(), 72);
        assert_eq!(ack().buffer_len(), 64);
        assert_eq!(confirm().buffer_len(), 80);
        assert_eq!(backup_frame_len(5, ContentMode::Full), 69);
        assert_eq!(backup_frame_len(5, ContentMode::Digest), 72);
        assert_eq!(backup_frame_len(usize::MAX, ContentMode::Full), usize::MAX);
    }

    #[test]
    fn emit_leaves_the_rest_of_the_buffer() {
        let mut buf = [0xeeu8; 88];
        ack().emit(&mut buf, &key()).unwrap();
        assert_eq!(buf[..64], ACK);
        assert!(buf[64..].iter().all(|&b| b == 0xee));
    }

    #[test]
    fn padding_after_trailer_ignored() {
        for pdu in samples() {
            let mut padded = pdu.to_vec();
            padded.extend_from_slice(&[0xaa; 20]);
            let p = Packet::new_checked(&padded[..]).unwrap();
            assert_eq!(p.total_len(), pdu.len());
            assert_eq!(p.verify_digest(&key()), Ok(()));
        }
    }

    #[test]
    fn every_truncation_rejected() {
        for pdu in samples() {
            for len in 0..pdu.len() {
                assert_eq!(
                    Packet::new_checked(&pdu[..len]).err(),
                    Some(WireError::Truncated),
                    "type {} len {len}",
                    pdu[3]
                );
            }
        }
        let k = key();
        for len in 0..69 {
            assert_eq!(
                backup_full().emit(&mut [0u8; 69][..len], &k),
                Err(WireError::Truncated)
            );
        }
        for len in 0..72 {
            let mut buf = [0u8; 72];
            assert_eq!(
                backup_digest().emit(&mut buf[..len], &k),
                Err(WireError::Truncated)
            );
            assert_eq!(
                heartbeat().emit(&mut buf[..len], &k),
                Err(WireError::Truncated)
            );
        }
        for len in 0..64 {
            assert_eq!(
                ack().emit(&mut [0u8; 64][..len], &k),
                Err(WireError::Truncated)
            );
        }
        for len in 0..80 {
            assert_eq!(
                confirm().emit(&mut [0u8; 80][..len], &k),
                Err(WireError::Truncated)
            );
        }
    }

    #[test]
    fn bad_header_fields_rejected() {
        let cases: &[(usize, u8, WireError)] = &[
            (0, 0x55, WireError::BadMagic),
            (1, 0x49, WireError::BadMagic),
            (2, 0, WireError::BadVersion),
            // Version 1 (SipHash-2-4 digests) and 2 (no epoch): refused by version, not
            // as corrupt.
            (2, 2, WireError::BadVersion),
            // Version 3: SipHash-1-3 and nothing bound but the header and body.
            (2, 3, WireError::BadVersion),
            (2, 5, WireError::BadVersion),
            (3, 0, WireError::UnknownType),
            (3, 8, WireError::UnknownType),
            (3, 0xff, WireError::UnknownType),
            (5, 0x20, WireError::BadFlags),
            (5, 0x80, WireError::BadFlags),
            (5, 0xff, WireError::BadFlags),
            (6, 4, WireError::Malformed),
            (6, 0xfe, WireError::Malformed),
        ];
        for pdu in samples() {
            for &(at, value, err) in cases {
                let v = edited(pdu, at, value);
                assert_eq!(
                    Packet::new_checked(&v[..]).err(),
                    Some(err),
                    "type {} byte {at} = {value:#x}",
                    pdu[3]
                );
            }
        }
    }

    #[test]
    fn link_rules() {
        // A backup frame names the link it is launched on: 0..=3, never 0xFF.
        for pdu in [&BACKUP_FULL[..], &BACKUP_DIGEST] {
            for link in 0..4 {
                assert!(Packet::new_checked(&edited(pdu, 6, link)[..]).is_ok());
            }
            assert_eq!(
                Packet::new_checked(&edited(pdu, 6, ALL_LINKS)[..]).err(),
                Some(WireError::Malformed)
            );
            let r = BackupRepr {
                link: ALL_LINKS,
                ..backup_full()
            };
            assert_eq!(r.emit(&mut [0u8; 69], &key()), Err(WireError::Malformed));
        }
        // Confirmations are for no link.
        for link in 0..4 {
            let v = edited(&CONFIRM, 6, link);
            assert_eq!(
                Packet::new_checked(&v[..]).err(),
                Some(WireError::Malformed)
            );
        }
        // Heartbeats and acks: any link index, or 0xFF.
        for pdu in [&HEARTBEAT[..], &NODE_HEARTBEAT, &ACK] {
            for link in [0, 1, 2, 3, 0xff] {
                let v = edited(pdu, 6, link);
                assert!(Packet::new_checked(&v[..]).is_ok(), "link {link}");
            }
        }
        for link in [4, 0x10, 0xfe] {
            let mut buf = [0u8; 72];
            let h = HeartbeatRepr {
                link,
                ..heartbeat()
            };
            assert_eq!(h.emit(&mut buf, &key()), Err(WireError::Malformed));
            let a = AckRepr { link, ..ack() };
            assert_eq!(a.emit(&mut buf, &key()), Err(WireError::Malformed));
        }
    }

    /// Found by fuzzing (crates/taphold-fuzz/regressions/pdu/): a heartbeat, ack, target
    /// confirmation or resend request with a defined flag set passed the checks, and
    /// its Repr, which has no flags, dropped them without a trace. They carry none.
    #[test]
    fn flags_only_on_types_that_carry_them() {
        for pdu in [&HEARTBEAT[..], &ACK, &TARGET_CONFIRM, &RESEND] {
            for flag in [
                Flags::POSSIBLE_DUPLICATE,
                Flags::UNPROTECTED,
                Flags::RETRANSMIT,
            ] {
                let v = edited(pdu, 5, flag.bits() as u8);
                assert_eq!(
                    Packet::new_checked(&v[..]).err(),
                    Some(WireError::BadFlags),
                    "type {} flag {flag:?}",
                    pdu[3]
                );
            }
        }
        for pdu in [&BACKUP_FULL[..], &BACKUP_DIGEST, &CONFIRM] {
            let v = edited(pdu, 5, Flags::ALL.bits() as u8);
            assert!(Packet::new_checked(&v[..]).is_ok(), "type {}", pdu[3]);
        }
        // The fuzzer's inputs as it found them (digests under its own key), in the version
        // this build speaks (they were found in version 3).
        for hex in [
            "544803020001010000010006000000100101010101010120010101010101011a01010101010101190101010101010118010101010101011b010101010101011c19455f6947582b2e",
            "544803030001ff0001014000000000080000000000000009009797979797979797979797979797979797979797979797979797970000000000006500000000000000010000010065010100",
            "544803050001ff00000000070000000800000000000000090000000000000064000000000000000100000000000000780000000000000002ce6a0bd8eb17d1ae",
            "544803060001ff00000000070000000800000000000000090000000000000065000000000000000100000000000000640000001300000000f3a851fd57a29df0",
        ] {
            let mut v: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            v[2] = VERSION;
            assert_eq!(Packet::new_checked(&v[..]).err(), Some(WireError::BadFlags));
        }
    }

    #[test]
    fn origin_rules() {
        // FROM_NODE: required on acks, allowed on heartbeats, refused on the rest.
        let ack_from_appliance = edited(&ACK, 5, 0);
        assert_eq!(
            Packet::new_checked(&ack_from_appliance[..]).err(),
            Some(WireError::Malformed)
        );
        for pdu in [&BACKUP_FULL[..], &CONFIRM, &TARGET_CONFIRM, &RESEND] {
            let v = edited(pdu, 5, pdu[5] | 0x08);
            assert_eq!(
                Packet::new_checked(&v[..]).err(),
                Some(WireError::Malformed),
                "type {}",
                pdu[3]
            );
        }
        let c = ConfirmRepr {
            flags: Flags::FROM_NODE,
            ..confirm()
        };
        assert_eq!(c.emit(&mut [0u8; 80], &key()), Err(WireError::Malformed));
    }

    #[test]
    fn the_digest_binds_link_origin_and_key_id() {
        // The first word is covered like the rest: an appliance heartbeat made a
        // node's, a backup frame moved to another link, a key id changed — each is a
        // digest mismatch, though each still parses.
        let k = key();
        for (pdu, at, value) in [
            (&HEARTBEAT[..], 5, 0x08),
            (&NODE_HEARTBEAT[..], 5, 0x00),
            (&BACKUP_FULL[..], 6, 0),
            (&BACKUP_FULL[..], 6, 3),
            (&BACKUP_DIGEST[..], 6, 1),
            (&ACK[..], 6, 1),
            (&HEARTBEAT[..], 6, 2),
            (&BACKUP_FULL[..], 4, 0x00),
            (&CONFIRM[..], 4, 0x01),
        ] {
            let v = edited(pdu, at, value);
            let p = Packet::new_checked(&v[..]).unwrap();
            assert_eq!(
                p.verify_digest(&k),
                Err(WireError::BadDigest),
                "type {} byte {at}",
                pdu[3]
            );
        }
    }

    #[test]
    fn one_absorption_seals_every_link() {
        let k = key();
        let mut a = [0u8; 69];
        let seal = backup_full().emit_sealing(&mut a, &k).unwrap();
        assert_eq!(a, BACKUP_FULL);
        // The copy for link 0, sealed from the state: the independent vector.
        let mut b = a;
        let d = seal.seal_for(&mut b, 0).unwrap();
        let on_0 = BackupRepr {
            link: 0,
            ..backup_full()
        };
        let mut c = [0u8; 69];
        assert_eq!(on_0.emit(&mut c, &k), Ok(d));
        assert_eq!(b, c);
        assert_eq!(&b[61..], &[0x6e, 0x64, 0x82, 0x8a, 0x3d, 0x08, 0x75, 0xdc]);
        // Every copy has the same link-free digest, and it is no copy's trailer.
        let free = seal.link_free();
        for link in 0..4 {
            let mut x = a;
            let t = seal.seal_for(&mut x, link).unwrap();
            let p = Packet::new_checked(&x[..]).unwrap();
            assert_eq!(p.digests(&k), (t, free));
            assert_ne!(t, free);
        }
        assert_eq!(seal.seal_for(&mut b, 4), Err(WireError::Malformed));
        assert_eq!(seal.seal_for(&mut b[..68], 1), Err(WireError::Truncated));
    }

    #[test]
    fn an_encrypted_backup_frame_round_trips_and_its_rules_hold() {
        let k = key();
        let aead = PayloadKey::new(&[5; 32]);
        let r = BackupRepr {
            flags: Flags::ENCRYPTED,
            ..backup_full()
        };
        assert_eq!(r.buffer_len(), 69 + TAG_LEN);
        let mut buf = vec![0u8; r.buffer_len()];
        // The key and the flag go together.
        assert_eq!(r.emit(&mut buf, &k), Err(WireError::Malformed));
        assert_eq!(
            backup_full()
                .emit_sealing_with(&mut buf, &k, Some(&aead))
                .err(),
            Some(WireError::Malformed)
        );
        let seal = r.emit_sealing_with(&mut buf, &k, Some(&aead)).unwrap();
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(p.flags().contains(Flags::ENCRYPTED));
        assert_eq!(p.body_len() as usize, 8 + 5 + TAG_LEN);
        assert_eq!(p.verify_digest(&k), Ok(()));
        assert!(!buf.windows(5).any(|w| w == b"ORDER"), "no plaintext");
        let parsed = BackupRepr::parse(&p, &k).unwrap();
        assert_eq!(parsed.payload_len, 5);
        assert_ne!(parsed.content, Content::Full(b"ORDER"));
        // Every link's copy carries the same ciphertext.
        let mut other = buf.clone();
        seal.seal_for(&mut other, 3).unwrap();
        assert_eq!(
            other[48..48 + 8 + 5 + TAG_LEN],
            buf[48..48 + 8 + 5 + TAG_LEN]
        );
        // Decrypted in place: the plain frame, byte for byte.
        let mut plain = buf.clone();
        let n = decrypt_backup_frame(&mut plain, &aead, Some(&k)).unwrap();
        assert_eq!(&plain[..n], &BACKUP_FULL[..]);
        // A wrong payload key or a flipped ciphertext byte: refused, unchanged.
        let mut x = buf.clone();
        assert_eq!(
            decrypt_backup_frame(&mut x, &PayloadKey::new(&[6; 32]), Some(&k)),
            Err(WireError::BadDigest)
        );
        assert_eq!(x, buf);
        x[58] ^= 1;
        assert_eq!(
            decrypt_backup_frame(&mut x, &aead, Some(&k)),
            Err(WireError::BadDigest)
        );
        assert_eq!(
            decrypt_backup_frame(&mut BACKUP_FULL.to_vec(), &aead, Some(&k)),
            Err(WireError::WrongType)
        );
        // ENCRYPTED anywhere but a full backup frame, or a body without the tag.
        for pdu in [&BACKUP_DIGEST[..], &HEARTBEAT, &ACK, &CONFIRM] {
            let v = edited(pdu, 5, pdu[5] | 0x10);
            assert_eq!(
                Packet::new_checked(&v[..]).err(),
                Some(WireError::Malformed)
            );
        }
        let v = edited(&BACKUP_FULL, 5, 0x10);
        assert_eq!(
            Packet::new_checked(&v[..]).err(),
            Some(WireError::BadLength)
        );
    }

    #[test]
    fn content_mode_rules() {
        for mode in [4, 0xff] {
            let v = edited(&BACKUP_FULL, 7, mode);
            assert_eq!(
                Packet::new_checked(&v[..]).err(),
                Some(WireError::Malformed)
            );
        }
        // Modes 2 and 3 exist, but a 13-byte body is shorter than their flow prefix.
        for mode in [2, 3] {
            let v = edited(&BACKUP_FULL, 7, mode);
            assert_eq!(
                Packet::new_checked(&v[..]).err(),
                Some(WireError::BadLength)
            );
        }
        for pdu in [&FLOW_ACK[..]] {
            for mode in [1, 2, 3, 0xff] {
                let v = edited(pdu, 7, mode);
                assert_eq!(
                    Packet::new_checked(&v[..]).err(),
                    Some(WireError::Malformed)
                );
            }
        }
        for pdu in [&HEARTBEAT[..], &NODE_HEARTBEAT, &ACK, &CONFIRM] {
            for mode in [1, 2, 0xff] {
                let v = edited(pdu, 7, mode);
                assert_eq!(
                    Packet::new_checked(&v[..]).err(),
                    Some(WireError::Malformed)
                );
            }
        }
    }

    #[test]
    fn bad_lengths_rejected() {
        let with_body_len = |pdu: &[u8], len: u32| {
            let mut v = pdu.to_vec();
            v[12..16].copy_from_slice(&len.to_be_bytes());
            v
        };
        // Fixed-size bodies: one off either way, and absurd.
        for (pdu, good) in [
            (&BACKUP_DIGEST[..], 16u32),
            (&HEARTBEAT, 16),
            (&ACK, 8),
            (&CONFIRM, 24),
        ] {
            for bad in [0, good - 1, good + 1, u32::MAX] {
                let v = with_body_len(pdu, bad);
                assert_eq!(
                    Packet::new_checked(&v[..]).err(),
                    Some(WireError::BadLength)
                );
            }
        }
        // Full backup: body shorter than its prefix, or longer than a u16 payload.
        for bad in [0, 7, 8 + 65536, u32::MAX] {
            let v = with_body_len(&BACKUP_FULL, bad);
            assert_eq!(
                Packet::new_checked(&v[..]).err(),
                Some(WireError::BadLength)
            );
        }
        // Full backup: payload length disagreeing with the body length.
        for payload_len in [0u16, 4, 6, 0xffff] {
            let mut v = BACKUP_FULL.to_vec();
            v[54..56].copy_from_slice(&payload_len.to_be_bytes());
            assert_eq!(
                Packet::new_checked(&v[..]).err(),
                Some(WireError::BadLength)
            );
        }
        // A body length that fits the type but not the buffer.
        let v = with_body_len(&BACKUP_FULL, 14);
        assert_eq!(
            Packet::new_checked(&v[..]).err(),
            Some(WireError::Truncated)
        );
        // Emit refuses a full copy whose length is not payload_len.
        let r = BackupRepr {
            payload_len: 4,
            ..backup_full()
        };
        assert_eq!(r.emit(&mut [0u8; 100], &key()), Err(WireError::BadLength));
    }

    #[test]
    fn confirm_reserved_must_be_zero() {
        for at in 50..56 {
            let v = edited(&CONFIRM, at, 1);
            assert_eq!(
                Packet::new_checked(&v[..]).err(),
                Some(WireError::Malformed),
                "byte {at}"
            );
        }
    }

    #[test]
    fn bad_digest_rejected() {
        // Any bit flipped in the covered bytes that leaves the header valid, or in the
        // trailer, is a digest mismatch.
        for pdu in samples() {
            let covered_fields = [4].into_iter().chain(8..12).chain(16..pdu.len());
            for at in covered_fields {
                let v = edited(pdu, at, pdu[at] ^ 0x01);
                let p = match Packet::new_checked(&v[..]) {
                    Ok(p) => p,
                    // Body bytes with rules of their own (lengths, reserved) fail earlier.
                    Err(_) => continue,
                };
                assert_eq!(
                    p.verify_digest(&key()),
                    Err(WireError::BadDigest),
                    "byte {at}"
                );
            }
        }
        let wrong_key = DigestKey([0x55; 16]);
        let p = Packet::new_checked(&BACKUP_FULL[..]).unwrap();
        assert_eq!(BackupRepr::parse(&p, &wrong_key), Err(WireError::BadDigest));
        let p = Packet::new_checked(&HEARTBEAT[..]).unwrap();
        assert_eq!(
            HeartbeatRepr::parse(&p, &wrong_key),
            Err(WireError::BadDigest)
        );
        let p = Packet::new_checked(&ACK[..]).unwrap();
        assert_eq!(AckRepr::parse(&p, &wrong_key), Err(WireError::BadDigest));
        let p = Packet::new_checked(&CONFIRM[..]).unwrap();
        assert_eq!(
            ConfirmRepr::parse(&p, &wrong_key),
            Err(WireError::BadDigest)
        );
    }

    #[test]
    fn parse_refuses_other_types() {
        let k = key();
        let hb = Packet::new_checked(&HEARTBEAT[..]).unwrap();
        let bk = Packet::new_checked(&BACKUP_FULL[..]).unwrap();
        assert_eq!(BackupRepr::parse(&hb, &k), Err(WireError::WrongType));
        assert_eq!(HeartbeatRepr::parse(&bk, &k), Err(WireError::WrongType));
        assert_eq!(AckRepr::parse(&bk, &k), Err(WireError::WrongType));
        assert_eq!(ConfirmRepr::parse(&bk, &k), Err(WireError::WrongType));
    }

    #[test]
    fn a_journaled_backup_frame_reads_without_the_key() {
        let p = Packet::new_checked(&BACKUP_FULL[..]).unwrap();
        assert_eq!(BackupRepr::parse_verified_earlier(&p), Ok(backup_full()));
        let hb = Packet::new_checked(&HEARTBEAT[..]).unwrap();
        assert_eq!(
            BackupRepr::parse_verified_earlier(&hb),
            Err(WireError::WrongType)
        );
        let short = Packet::new_unchecked(&BACKUP_FULL[..40]);
        assert_eq!(
            BackupRepr::parse_verified_earlier(&short),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn parse_checks_unchecked_views() {
        // A Repr never trusts the view: garbage through new_unchecked is refused.
        let short = Packet::new_unchecked(&BACKUP_FULL[..40]);
        assert_eq!(BackupRepr::parse(&short, &key()), Err(WireError::Truncated));
    }

    #[test]
    fn resend_after_failover() {
        // The same backup frame goes out again with RETRANSMIT and a fresh timestamp.
        let mut v = BACKUP_FULL.to_vec();
        let mut p = Packet::new_checked(&mut v[..]).unwrap();
        p.set_flags(p.flags().union(Flags::RETRANSMIT));
        p.set_timestamp_ns(2_000_000_000);
        p.set_watermark(42);
        assert_eq!(p.verify_digest(&key()), Err(WireError::BadDigest));
        let d = p.fill_digest(&key());
        assert_eq!(p.digest_field(), d);
        let p = Packet::new_checked(&v[..]).unwrap();
        let r = BackupRepr::parse(&p, &key()).unwrap();
        assert_eq!(
            r,
            BackupRepr {
                flags: Flags::RETRANSMIT,
                timestamp_ns: 2_000_000_000,
                watermark: 42,
                ..backup_full()
            }
        );
    }

    #[test]
    fn flags_ops() {
        let f = Flags::POSSIBLE_DUPLICATE | Flags::RETRANSMIT;
        assert_eq!(f.bits(), 0b101);
        assert!(f.contains(Flags::RETRANSMIT));
        assert!(f.contains(Flags::EMPTY));
        assert!(!f.contains(Flags::UNPROTECTED));
        assert!(!f.contains(Flags::ALL));
        assert_eq!(f.union(Flags::UNPROTECTED), Flags::ALL);
        assert_eq!(f.difference(Flags::RETRANSMIT), Flags::POSSIBLE_DUPLICATE);
        assert!(Flags::EMPTY.is_empty());
        assert_eq!(Flags::from_bits(7), Ok(Flags::ALL));
        assert_eq!(Flags::from_bits(8), Err(WireError::BadFlags));
        assert!(Flags::PDU_ALL.contains(Flags::FROM_NODE | Flags::ALL));
        assert_eq!(MsgType::try_from(4), Ok(MsgType::Confirm));
        assert_eq!(MsgType::try_from(5), Ok(MsgType::TargetConfirm));
        assert_eq!(MsgType::try_from(6), Ok(MsgType::Resend));
        assert_eq!(MsgType::try_from(7), Ok(MsgType::FlowAck));
        assert_eq!(MsgType::try_from(8), Err(WireError::UnknownType));
        assert_eq!(u8::from(MsgType::Ack), 3);
        assert_eq!(u8::from(MsgType::FlowAck), 7);
        assert_eq!(ContentMode::try_from(2), Ok(ContentMode::Tcp));
        assert_eq!(ContentMode::try_from(3), Ok(ContentMode::FixCompact));
        assert_eq!(ContentMode::try_from(4), Err(WireError::Malformed));
    }

    #[test]
    fn echo_pads_and_cuts() {
        assert_eq!(ConfirmRepr::echo_of(b""), [0; 16]);
        let long: [u8; 20] = core::array::from_fn(|i| i as u8 + 1);
        let e = ConfirmRepr::echo_of(&long);
        assert_eq!(e[..], long[..16]);
    }

    fn any_flags() -> impl Strategy<Value = Flags> {
        (0u16..8).prop_map(|b| Flags::from_bits(b).unwrap())
    }

    fn any_backup_link() -> impl Strategy<Value = u8> {
        0u8..4
    }

    fn any_link() -> impl Strategy<Value = u8> {
        prop_oneof![0u8..4, Just(ALL_LINKS)]
    }

    proptest! {
        #[test]
        fn tcp_segment_and_flow_ack_round_trip(
            flags in any_flags(),
            epoch in any::<u64>(),
            seq in any::<u64>(),
            src_ip in any::<[u8; 4]>(),
            src_port in any::<u16>(),
            dst_ip in any::<[u8; 4]>(),
            dst_port in any::<u16>(),
            tcp_flags in any::<u8>(),
            tcp_seq in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 0..1600),
            compact_len in any::<u16>(),
            compact in any::<bool>(),
            link in any_link(),
            backup_link in any_backup_link(),
            k in any::<[u8; 16]>(),
        ) {
            let key = DigestKey(k);
            // Mode 3: the content is shorter or longer than payload_len says.
            let (payload_len, content) = if compact {
                (compact_len, &payload[..])
            } else {
                (payload.len() as u16, &payload[..])
            };
            let seg = TcpSegmentRepr {
                src_ip, src_port, payload_len, dst_ip, dst_port, tcp_flags, tcp_seq, content,
            };
            let repr = BackupRepr {
                flags, stream: 7, epoch, seq, timestamp_ns: 1, watermark: 2, link: backup_link,
                src_ip, src_port, payload_len,
                content: if compact { Content::FixCompact(seg) } else { Content::Tcp(seg) },
            };
            let mut buf = vec![0u8; repr.buffer_len()];
            prop_assert_eq!(repr.buffer_len(), backup_frame_len(payload.len(), repr.content.mode()));
            repr.emit(&mut buf, &key).unwrap();
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(p.total_len(), buf.len());
            prop_assert_eq!(BackupRepr::parse(&p, &key), Ok(repr));
            let fa = FlowAckRepr {
                link, stream: 7, epoch, seq, timestamp_ns: 3, watermark: 4,
                src_ip, src_port, dst_ip, dst_port, acked: tcp_seq,
            };
            let mut buf = vec![0u8; fa.buffer_len()];
            fa.emit(&mut buf, &key).unwrap();
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(FlowAckRepr::parse(&p, &key), Ok(fa));
        }

        #[test]
        fn backup_round_trip(
            link in any_backup_link(),
            flags in any_flags(),
            stream in any::<u32>(),
            epoch in any::<u64>(),
            seq in any::<u64>(),
            ts in any::<u64>(),
            wm in any::<u64>(),
            src_ip in any::<[u8; 4]>(),
            src_port in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..1600),
            digest_only in any::<bool>(),
            k in any::<[u8; 16]>(),
        ) {
            let key = DigestKey(k);
            let mode = if digest_only { ContentMode::Digest } else { ContentMode::Full };
            let repr = BackupRepr {
                link, flags, stream, epoch, seq, timestamp_ns: ts, watermark: wm, src_ip, src_port,
                payload_len: payload.len() as u16,
                content: Content::new(mode, &payload, &key),
            };
            let mut buf = vec![0u8; repr.buffer_len()];
            prop_assert_eq!(repr.buffer_len(), backup_frame_len(payload.len(), mode));
            let d = repr.emit(&mut buf, &key).unwrap();
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(p.digest_field(), d);
            prop_assert_eq!(p.total_len(), buf.len());
            prop_assert_eq!(BackupRepr::parse(&p, &key), Ok(repr));
        }

        #[test]
        fn heartbeat_ack_confirm_round_trip(
            link in any_link(),
            flags in any_flags(),
            from_node in any::<bool>(),
            a in any::<u64>(), b in any::<u64>(), c in any::<u64>(),
            d in any::<u64>(), e in any::<u64>(),
            stream in any::<u32>(),
            len in any::<u16>(),
            echo in any::<[u8; 16]>(),
        ) {
            let key = key();
            let mut buf = [0u8; 80];
            let h = HeartbeatRepr {
                link, from_node, epoch: e ^ d, seq: a, timestamp_ns: b, watermark: c, stream, echo_seq: d,
                echo_timestamp_ns: e,
            };
            h.emit(&mut buf, &key).unwrap();
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(HeartbeatRepr::parse(&p, &key), Ok(h));

            let ack = AckRepr { link, stream, epoch: e, seq: a, timestamp_ns: b, watermark: c, records: d };
            ack.emit(&mut buf, &key).unwrap();
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(AckRepr::parse(&p, &key), Ok(ack));

            let conf = ConfirmRepr {
                flags, stream, epoch: d, seq: a, timestamp_ns: b, watermark: c, payload_len: len,
                echo,
            };
            conf.emit(&mut buf, &key).unwrap();
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(ConfirmRepr::parse(&p, &key), Ok(conf));

            let tc = TargetConfirmRepr {
                stream, epoch: e, seq: a, timestamp_ns: b, highest_seen: c, skipped: d,
            };
            tc.emit(&mut buf, &key).unwrap();
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(TargetConfirmRepr::parse(&p, &key), Ok(tc));

            let rr = ResendRepr {
                stream, epoch: e, seq: a, count: u32::from(len), timestamp_ns: b, delivered: c,
            };
            let valid = a != 0 && len != 0 && a.checked_add(u64::from(len) - 1).is_some();
            match rr.emit(&mut buf, &key) {
                Ok(_) => {
                    prop_assert!(valid);
                    let p = Packet::new_checked(&buf[..]).unwrap();
                    prop_assert_eq!(ResendRepr::parse(&p, &key), Ok(rr));
                }
                Err(err) => {
                    prop_assert!(!valid);
                    prop_assert_eq!(err, WireError::Malformed);
                }
            }
        }

        /// Arbitrary bytes, and valid PDUs with one byte changed, never panic, and
        /// whatever is accepted stays inside the buffer.
        #[test]
        fn never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            which in 0usize..8,
            at in any::<proptest::sample::Index>(),
            value in any::<u8>(),
            use_sample in any::<bool>(),
        ) {
            let v = if use_sample {
                let pdu = samples()[which];
                edited(pdu, at.index(pdu.len()), value)
            } else {
                bytes
            };
            if let Ok(p) = Packet::new_checked(&v[..]) {
                prop_assert!(p.total_len() <= v.len());
                let _ = (p.body(), p.digest_field(), p.msg_type(), p.flags());
                let k = key();
                let _ = BackupRepr::parse(&p, &k);
                let _ = HeartbeatRepr::parse(&p, &k);
                let _ = AckRepr::parse(&p, &k);
                let _ = ConfirmRepr::parse(&p, &k);
                let _ = TargetConfirmRepr::parse(&p, &k);
                if let Ok(r) = ResendRepr::parse(&p, &k) {
                    prop_assert!(r.seq >= 1 && r.count >= 1);
                    prop_assert!(r.seq.checked_add(u64::from(r.count) - 1).is_some());
                }
            }
        }
    }
}
