//! The appliance's backup-link frames: how they are built, and what a frame
//! received on a link means, decided once, here, for every role.
//!
//! Building: [`backup_frame`] (ingress's launches, egress's re-launches and
//! journal hand-off), [`link_frame`] (heartbeats, the harness's node), and
//! [`confirmation_frame`] (egress's datagram to a message's source). Judging: [`tap_copy`] says what a frame seen on a tap is
//! (tap-rx), [`from_node`] what a frame from the backup node is (link-rx).
//! Both are pure functions of the bytes and the link's identity, so the
//! roles' polls only act on the verdict, and every field a peer can set is
//! checked here and tested with arbitrary values.

use dpdk::{Mbuf, Mempool};
use taphold_wire::digest::{DigestKey, KeyRing};
use taphold_wire::emit::{emit_udp_headers, Endpoint, UDP_FRAME_HEADER_LEN};
use taphold_wire::ethernet::{EthernetAddress, MIN_FRAME_LEN};
use taphold_wire::link::{emit_frame, frame_len, pdu_of};
use taphold_wire::payload::PayloadKey;
use taphold_wire::taphold::{
    AckRepr, BackupRepr, ConfirmRepr, FlowAckRepr, HeartbeatRepr, LinkSeal, MsgType, Packet,
    TargetConfirmRepr,
};
use taphold_wire::WireError;

/// A frame of ours on a backup link, from `src` to `dst`, in a new mbuf: the
/// PDU `emit` writes into its `pdu_len` bytes (returning its digest), framed
/// by `taphold_wire::link`. Returns the frame and the digest, or None if the
/// pool is empty or the PDU could not be written (counted by the caller).
pub fn link_frame(
    pool: &Mempool,
    src: EthernetAddress,
    dst: EthernetAddress,
    pdu_len: usize,
    emit: impl FnOnce(&mut [u8]) -> Result<u64, WireError>,
) -> Option<(Mbuf, u64)> {
    let mut m = pool.alloc()?;
    let buf = m.append(u16::try_from(frame_len(pdu_len)).ok()?)?;
    let (_, digest) = emit_frame(buf, dst, src, pdu_len, emit).ok()?;
    Some((m, digest))
}

/// A backup frame from `src` to `dst`, for the link `repr` names. Returns the
/// frame and what seals its copies for the other links ([`LinkSeal::seal_for`];
/// [`LinkSeal::link_free`] is the digest the hold ring keeps), or None if the
/// pool is empty (or the PDU cannot be built, never for a classified message).
pub fn backup_frame(
    pool: &Mempool,
    repr: &BackupRepr,
    (key, aead): (&DigestKey, Option<&PayloadKey>),
    src: EthernetAddress,
    dst: EthernetAddress,
) -> Option<(Mbuf, LinkSeal)> {
    let mut m = pool.alloc()?;
    let buf = m.append(u16::try_from(frame_len(repr.buffer_len())).ok()?)?;
    let mut seal = None;
    emit_frame(buf, dst, src, repr.buffer_len(), |b| {
        let s = repr.emit_sealing_with(b, key, aead)?;
        seal = Some(s);
        Ok(s.link_free())
    })
    .ok()?;
    Some((m, seal?))
}

/// A confirmation to a message's source, in a new mbuf: the PDU in a UDP
/// datagram from our primary address `ours` to `source`, padded to the
/// Ethernet minimum. None if the pool is empty (or the PDU cannot be written,
/// never for a released message): the caller counts it.
pub fn confirmation_frame(
    pool: &Mempool,
    repr: &ConfirmRepr,
    key: &DigestKey,
    ours: &Endpoint,
    source: &Endpoint,
) -> Option<Mbuf> {
    let mut m = pool.alloc()?;
    let pdu = repr.buffer_len();
    let len = UDP_FRAME_HEADER_LEN + pdu;
    let buf = m.append(len.max(MIN_FRAME_LEN) as u16)?;
    buf[len..].fill(0);
    repr.emit(&mut buf[UDP_FRAME_HEADER_LEN..len], key).ok()?;
    emit_udp_headers(buf, ours, source, pdu).ok()?;
    Some(m)
}

/// Who we are on one backup link: what a frame must name to be ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkIdentity {
    /// The link's index (its confirmation bit).
    pub link: usize,
    /// Our MAC on the link, and the backup node's.
    pub ours: EthernetAddress,
    pub peer: EthernetAddress,
    pub stream: u32,
    /// This run's epoch.
    pub epoch: u64,
}

/// What a frame seen on link k's tap is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapCopy {
    /// An intact copy of a backup frame we launched on this link (of this
    /// run): confirm `seq` on the link if the hold ring has it in flight with
    /// `digest`, the frame's link-free digest.
    Backup { seq: u64, digest: u64 },
    /// An intact copy of our heartbeat `seq` on this link.
    Heartbeat { seq: u64 },
    /// An intact copy of one of our flow acks on this link (gateway mode): it
    /// confirms nothing, and is counted.
    FlowAck,
    /// Not a frame we launch on this link at all (a stray frame on the tap
    /// port); a damaged copy of ours keeps its Ethernet header.
    NotTaphold,
    /// Ours by its header, but not a valid taphold PDU.
    Malformed(WireError),
    /// A taphold frame of another stream, or a heartbeat of another link.
    Foreign,
    /// A backup frame launched on another link, shown on this link's tap
    /// (re-addressed, or a tap wired to the wrong fibre): it never confirms
    /// this link.
    WrongLink,
    /// Its own digest does not match its bytes: damaged, or not made with our key.
    Corrupt,
    /// It names a key id we hold no key of: another deployment's, or a
    /// rotation the appliance was not given.
    UnknownKey,
    /// Authentic, but of another epoch: an earlier run's frame, replayed.
    WrongEpoch,
    /// A PDU that never travels our way on a tap (ack, confirmation).
    UnexpectedType,
}

/// Judges a frame seen on the tap of `id`'s link. The digest of a backup
/// frame is computed once, here; the hold ring then matches it against what
/// was launched.
pub fn tap_copy(frame: &[u8], id: &LinkIdentity, keys: &KeyRing) -> TapCopy {
    let Some(bytes) = pdu_of(frame, id.peer, id.ours) else {
        return TapCopy::NotTaphold;
    };
    let p = match Packet::new_checked(bytes) {
        Ok(p) => p,
        Err(e) => return TapCopy::Malformed(e),
    };
    let Some(key) = keys.for_id(p.key_id()) else {
        return TapCopy::UnknownKey;
    };
    match p.msg_type() {
        MsgType::Backup => {
            if p.stream() != id.stream {
                return TapCopy::Foreign;
            }
            if usize::from(p.link()) != id.link {
                return TapCopy::WrongLink;
            }
            // One pass over the bytes for both: the trailer binds the copy to
            // this link; the hold ring matches the link-free digest.
            let (bound, digest) = p.digests(key);
            if bound != p.digest_field() {
                return TapCopy::Corrupt;
            }
            if p.epoch() != id.epoch {
                return TapCopy::WrongEpoch;
            }
            TapCopy::Backup {
                seq: p.seq(),
                digest,
            }
        }
        MsgType::Heartbeat => match HeartbeatRepr::parse(&p, key) {
            Ok(h) if h.link as usize != id.link || h.stream != id.stream || h.from_node => {
                TapCopy::Foreign
            }
            Ok(h) if h.epoch != id.epoch => TapCopy::WrongEpoch,
            Ok(h) => TapCopy::Heartbeat { seq: h.seq },
            Err(e) => TapCopy::Malformed(e),
        },
        MsgType::FlowAck => match FlowAckRepr::parse(&p, key) {
            Ok(a) if a.link as usize != id.link || a.stream != id.stream => TapCopy::Foreign,
            Ok(a) if a.epoch != id.epoch => TapCopy::WrongEpoch,
            Ok(_) => TapCopy::FlowAck,
            Err(WireError::BadDigest) => TapCopy::Corrupt,
            Err(e) => TapCopy::Malformed(e),
        },
        _ => TapCopy::UnexpectedType,
    }
}

/// What a frame from link k's backup node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromNode {
    /// A cumulative ack of this run that claims nothing beyond what exists.
    Ack { seq: u64 },
    /// The node's heartbeat `seq`, echoing our heartbeat `echo_seq`.
    Heartbeat {
        seq: u64,
        timestamp_ns: u64,
        echo_seq: u64,
    },
    /// Not from the node to us, or of another stream or link.
    Foreign,
    /// Not a valid taphold PDU, or its digest does not match.
    Malformed,
    /// It names a key id we hold no key of.
    UnknownKey,
    /// An authentic ack for another run.
    AckWrongEpoch,
    /// An authentic ack of this run beyond anything it launched or released.
    AckBeyondLaunched,
    /// An authentic heartbeat from a node still speaking for another run.
    HeartbeatWrongEpoch,
    /// An authentic heartbeat of ours (not FROM_NODE) sent back to us: a
    /// reflector on the link, not a live backup node.
    Reflected,
    /// A PDU the node never sends (backup frame, confirmation).
    UnexpectedType,
}

/// Judges a frame received on `id`'s backup link. `highest_ackable` is the
/// highest seq this epoch launched on any link or released: an ack beyond it
/// vouches for messages that do not exist.
pub fn from_node(
    frame: &[u8],
    id: &LinkIdentity,
    keys: &KeyRing,
    highest_ackable: u64,
) -> FromNode {
    let Some(bytes) = pdu_of(frame, id.ours, id.peer) else {
        return FromNode::Foreign;
    };
    let Ok(p) = Packet::new_checked(bytes) else {
        return FromNode::Malformed;
    };
    let Some(key) = keys.for_id(p.key_id()) else {
        return FromNode::UnknownKey;
    };
    match p.msg_type() {
        MsgType::Ack => match AckRepr::parse(&p, key) {
            Ok(a) if a.link as usize != id.link || a.stream != id.stream => FromNode::Foreign,
            Ok(a) if a.epoch != id.epoch => FromNode::AckWrongEpoch,
            Ok(a) if a.seq > highest_ackable => FromNode::AckBeyondLaunched,
            Ok(a) => FromNode::Ack { seq: a.seq },
            Err(_) => FromNode::Malformed,
        },
        MsgType::Heartbeat => match HeartbeatRepr::parse(&p, key) {
            Ok(h) if !h.from_node => FromNode::Reflected,
            Ok(h) if h.link as usize != id.link || h.stream != id.stream => FromNode::Foreign,
            Ok(h) if h.epoch != id.epoch => FromNode::HeartbeatWrongEpoch,
            Ok(h) => FromNode::Heartbeat {
                seq: h.seq,
                timestamp_ns: h.timestamp_ns,
                echo_seq: h.echo_seq,
            },
            Err(_) => FromNode::Malformed,
        },
        _ => FromNode::UnexpectedType,
    }
}

/// What a datagram to our target-confirm port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetConfirm {
    /// The arbiter delivered everything of this run through `seq`.
    Delivered { seq: u64 },
    /// Not a taphold PDU, or not a target confirmation.
    Malformed,
    /// Its digest does not match: damaged, or not made with our key.
    Corrupt,
    /// It names a key id we hold no arbiter key of.
    UnknownKey,
    /// Authentic, of another stream.
    Foreign,
    /// Authentic, of another epoch (an earlier run's, still being confirmed).
    OtherEpoch,
    /// Claims seqs this run never released: not believed.
    BeyondReleased,
}

/// The verdict on a target confirmation `payload` (the UDP payload), for
/// stream `stream`, epoch `epoch`, with seqs up to `released` released.
pub fn target_confirm(
    payload: &[u8],
    stream: u32,
    epoch: u64,
    released: u64,
    keys: &KeyRing,
) -> TargetConfirm {
    let Ok(p) = Packet::new_checked(payload) else {
        return TargetConfirm::Malformed;
    };
    let Some(key) = keys.for_id(p.key_id()) else {
        return TargetConfirm::UnknownKey;
    };
    match TargetConfirmRepr::parse(&p, key) {
        Err(WireError::BadDigest) => TargetConfirm::Corrupt,
        Err(_) => TargetConfirm::Malformed,
        Ok(t) if t.stream != stream => TargetConfirm::Foreign,
        Ok(t) if t.epoch != epoch => TargetConfirm::OtherEpoch,
        Ok(t) if t.seq > released => TargetConfirm::BeyondReleased,
        Ok(t) => TargetConfirm::Delivered { seq: t.seq },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use taphold_wire::ethernet::{self, EtherType};
    use taphold_wire::taphold::{Content, Flags};

    const KEY: DigestKey = DigestKey([7; 16]);

    fn ring() -> KeyRing {
        KeyRing::single(KEY)
    }
    const US: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0b, 1]);
    const NODE: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0c, 1]);

    fn id() -> LinkIdentity {
        LinkIdentity {
            link: 1,
            ours: US,
            peer: NODE,
            stream: 7,
            epoch: 100,
        }
    }

    fn frame(dst: EthernetAddress, src: EthernetAddress, pdu: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + pdu.len()];
        ethernet::emit_header(&mut f, dst, src, EtherType::TAPHOLD).unwrap();
        f[14..].copy_from_slice(pdu);
        f
    }

    fn backup(stream: u32, epoch: u64, seq: u64, key: &DigestKey) -> Vec<u8> {
        backup_on(1, stream, epoch, seq, key)
    }

    fn backup_on(link: u8, stream: u32, epoch: u64, seq: u64, key: &DigestKey) -> Vec<u8> {
        let r = BackupRepr {
            link,
            flags: Flags::EMPTY,
            stream,
            epoch,
            seq,
            timestamp_ns: 1,
            watermark: 0,
            src_ip: [10, 0, 0, 1],
            src_port: 9,
            payload_len: 3,
            content: Content::Full(b"abc"),
        };
        let mut b = vec![0u8; r.buffer_len()];
        r.emit(&mut b, key).unwrap();
        frame(NODE, US, &b)
    }

    fn ack(link: u8, stream: u32, epoch: u64, seq: u64) -> Vec<u8> {
        let a = AckRepr {
            link,
            stream,
            epoch,
            seq,
            timestamp_ns: 0,
            watermark: 0,
            records: 0,
        };
        let mut b = vec![0u8; a.buffer_len()];
        a.emit(&mut b, &KEY).unwrap();
        frame(US, NODE, &b)
    }

    fn heartbeat(
        link: u8,
        stream: u32,
        epoch: u64,
        dst: EthernetAddress,
        src: EthernetAddress,
    ) -> Vec<u8> {
        // From the node when it goes to us.
        let from_node = dst == US;
        let h = HeartbeatRepr {
            link,
            from_node,
            epoch,
            seq: 3,
            timestamp_ns: 4,
            watermark: 0,
            stream,
            echo_seq: 2,
            echo_timestamp_ns: 1,
        };
        let mut b = vec![0u8; h.buffer_len()];
        h.emit(&mut b, &KEY).unwrap();
        frame(dst, src, &b)
    }

    #[test]
    fn tap_copies_by_case() {
        let good = backup(7, 100, 5, &KEY);
        let TapCopy::Backup { seq: 5, digest } = tap_copy(&good, &id(), &ring()) else {
            panic!("{:?}", tap_copy(&good, &id(), &ring()))
        };
        let p = Packet::new_checked(&good[14..]).unwrap();
        // The link-free digest, which every link's copy shares, not the trailer.
        assert_eq!((p.digest_field(), digest), p.digests(&KEY));
        assert_ne!(digest, p.digest_field());
        let TapCopy::Backup { digest: d0, .. } = tap_copy(
            &backup_on(0, 7, 100, 5, &KEY),
            &LinkIdentity { link: 0, ..id() },
            &ring(),
        ) else {
            panic!()
        };
        assert_eq!(d0, digest);
        // Launched on link 0, shown on link 1's tap: never confirms link 1,
        // re-addressed (named) or with the link byte rewritten (the digest).
        assert_eq!(
            tap_copy(&backup_on(0, 7, 100, 5, &KEY), &id(), &ring()),
            TapCopy::WrongLink
        );
        let mut moved = backup_on(0, 7, 100, 5, &KEY);
        moved[14 + 6] = 1;
        assert_eq!(tap_copy(&moved, &id(), &ring()), TapCopy::Corrupt);
        assert_eq!(
            tap_copy(&backup(8, 100, 5, &KEY), &id(), &ring()),
            TapCopy::Foreign
        );
        assert_eq!(
            tap_copy(&backup(7, 99, 5, &KEY), &id(), &ring()),
            TapCopy::WrongEpoch
        );
        assert_eq!(
            tap_copy(&backup(7, 100, 5, &DigestKey([8; 16])), &id(), &ring()),
            TapCopy::UnknownKey
        );
        let mut flipped = good.clone();
        flipped[30] ^= 1; // inside the epoch field: damaged, not another run's
        assert_eq!(tap_copy(&flipped, &id(), &ring()), TapCopy::Corrupt);
        let mut other_mac = good.clone();
        other_mac[5] ^= 1;
        assert_eq!(tap_copy(&other_mac, &id(), &ring()), TapCopy::NotTaphold);
        assert_eq!(
            tap_copy(&good[..40], &id(), &ring()),
            TapCopy::Malformed(WireError::Truncated)
        );
        assert_eq!(
            tap_copy(&heartbeat(1, 7, 100, NODE, US), &id(), &ring()),
            TapCopy::Heartbeat { seq: 3 }
        );
        assert_eq!(
            tap_copy(&heartbeat(0, 7, 100, NODE, US), &id(), &ring()),
            TapCopy::Foreign
        );
        assert_eq!(
            tap_copy(&heartbeat(1, 7, 1, NODE, US), &id(), &ring()),
            TapCopy::WrongEpoch
        );
        let mut a = ack(1, 7, 100, 1);
        a[0..6].copy_from_slice(&NODE.0);
        a[6..12].copy_from_slice(&US.0);
        assert_eq!(tap_copy(&a, &id(), &ring()), TapCopy::UnexpectedType);
    }

    #[test]
    fn node_frames_by_case() {
        let j = |f: &[u8], h: u64| from_node(f, &id(), &ring(), h);
        assert_eq!(j(&ack(1, 7, 100, 10), 10), FromNode::Ack { seq: 10 });
        assert_eq!(j(&ack(1, 7, 100, 11), 10), FromNode::AckBeyondLaunched);
        assert_eq!(j(&ack(1, 7, 99, 1), 10), FromNode::AckWrongEpoch);
        assert_eq!(j(&ack(2, 7, 100, 1), 10), FromNode::Foreign);
        assert_eq!(j(&ack(1, 8, 100, 1), 10), FromNode::Foreign);
        assert_eq!(
            j(&heartbeat(1, 7, 100, US, NODE), 0),
            FromNode::Heartbeat {
                seq: 3,
                timestamp_ns: 4,
                echo_seq: 2
            }
        );
        assert_eq!(
            j(&heartbeat(1, 7, 0, US, NODE), 0),
            FromNode::HeartbeatWrongEpoch
        );
        // Our own heartbeat reflected back unchanged is not from the node.
        assert_eq!(j(&heartbeat(1, 7, 100, NODE, US), 0), FromNode::Foreign);
        // Reflected with the addresses swapped: refused by name.
        let mut reflected = heartbeat(1, 7, 100, NODE, US);
        reflected[0..6].copy_from_slice(&US.0);
        reflected[6..12].copy_from_slice(&NODE.0);
        assert_eq!(j(&reflected, 0), FromNode::Reflected);
        // ... and with FROM_NODE set as well: the digest.
        reflected[14 + 5] |= 0x08;
        assert_eq!(j(&reflected, 0), FromNode::Malformed);
        let mut bad = ack(1, 7, 100, 1);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(j(&bad, 10), FromNode::Malformed);
        assert_eq!(j(&[0u8; 10], 10), FromNode::Foreign);
    }

    proptest! {
        /// Authentic PDUs with arbitrary field values: the verdict follows the
        /// fields exactly, and an ack is taken only if it is ours, of this
        /// epoch, and within what exists.
        #[test]
        fn any_ack_field_values(
            link in 0u8..4, stream in prop_oneof![Just(7u32), any::<u32>()],
            epoch in prop_oneof![Just(100u64), any::<u64>()], seq in any::<u64>(),
            highest in any::<u64>(),
        ) {
            let v = from_node(&ack(link, stream, epoch, seq), &id(), &ring(), highest);
            let want = if link != 1 || stream != 7 {
                FromNode::Foreign
            } else if epoch != 100 {
                FromNode::AckWrongEpoch
            } else if seq > highest {
                FromNode::AckBeyondLaunched
            } else {
                FromNode::Ack { seq }
            };
            prop_assert_eq!(v, want);
        }

        #[test]
        fn any_backup_field_values(
            stream in prop_oneof![Just(7u32), any::<u32>()],
            epoch in prop_oneof![Just(100u64), any::<u64>()], seq in any::<u64>(),
        ) {
            let v = tap_copy(&backup(stream, epoch, seq, &KEY), &id(), &ring());
            if stream != 7 {
                prop_assert_eq!(v, TapCopy::Foreign);
            } else if epoch != 100 {
                prop_assert_eq!(v, TapCopy::WrongEpoch);
            } else {
                let ok = matches!(v, TapCopy::Backup { seq: s, .. } if s == seq);
                prop_assert!(ok, "{:?}", v);
            }
        }

        /// Arbitrary bytes, and valid frames with any byte changed: never a
        /// panic, and a damaged frame never passes as a good one.
        #[test]
        fn never_panics_and_damage_never_passes(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            at in any::<proptest::sample::Index>(), x in 1u8..=255, which in 0usize..3,
        ) {
            let _ = tap_copy(&bytes, &id(), &ring());
            let _ = from_node(&bytes, &id(), &ring(), u64::MAX);
            let good = match which {
                0 => backup(7, 100, 5, &KEY),
                1 => ack(1, 7, 100, 5),
                _ => heartbeat(1, 7, 100, US, NODE),
            };
            let mut f = good.clone();
            let i = at.index(f.len());
            f[i] ^= x;
            let passed = match which {
                0 => matches!(tap_copy(&f, &id(), &ring()), TapCopy::Backup { .. }),
                1 => matches!(from_node(&f, &id(), &ring(), u64::MAX), FromNode::Ack { .. }),
                _ => matches!(from_node(&f, &id(), &ring(), u64::MAX), FromNode::Heartbeat { .. }),
            };
            prop_assert!(!passed, "byte {} changed, still accepted", i);
        }
    }

    fn target_confirm_pdu(stream: u32, epoch: u64, seq: u64, key: &DigestKey) -> Vec<u8> {
        let t = TargetConfirmRepr {
            stream,
            epoch,
            seq,
            timestamp_ns: 1,
            highest_seen: seq,
            skipped: 0,
        };
        let mut b = vec![0u8; t.buffer_len()];
        t.emit(&mut b, key).unwrap();
        b
    }

    #[test]
    fn a_target_confirmation_counts_only_for_this_run_and_what_it_released() {
        let v = |pdu: &[u8]| target_confirm(pdu, 7, 100, 50, &ring());
        assert_eq!(
            v(&target_confirm_pdu(7, 100, 50, &KEY)),
            TargetConfirm::Delivered { seq: 50 }
        );
        assert_eq!(
            v(&target_confirm_pdu(7, 100, 51, &KEY)),
            TargetConfirm::BeyondReleased
        );
        assert_eq!(
            v(&target_confirm_pdu(7, 99, 3, &KEY)),
            TargetConfirm::OtherEpoch
        );
        assert_eq!(
            v(&target_confirm_pdu(8, 100, 3, &KEY)),
            TargetConfirm::Foreign
        );
        let other_key = DigestKey([8; 16]);
        assert_eq!(
            v(&target_confirm_pdu(7, 100, 3, &other_key)),
            TargetConfirm::UnknownKey
        );
        let mut flipped = target_confirm_pdu(7, 100, 3, &KEY);
        flipped[20] ^= 1;
        assert_eq!(v(&flipped), TargetConfirm::Corrupt);
        assert_eq!(v(b"ORDER 1"), TargetConfirm::Malformed);
        // Another keyed PDU of ours is not a target confirmation.
        assert_eq!(v(&backup(7, 100, 3, &KEY)[14..]), TargetConfirm::Malformed);
    }

    proptest! {
        /// Any damage to a good target confirmation is refused; arbitrary bytes
        /// never panic.
        #[test]
        fn damaged_target_confirmations_never_count(
            bytes in proptest::collection::vec(any::<u8>(), 0..100),
            at in any::<proptest::sample::Index>(), x in 1u8..=255,
        ) {
            let _ = target_confirm(&bytes, 7, 100, u64::MAX, &ring());
            let mut f = target_confirm_pdu(7, 100, 5, &KEY);
            let i = at.index(f.len());
            f[i] ^= x;
            let counted = matches!(
                target_confirm(&f, 7, 100, u64::MAX, &ring()),
                TargetConfirm::Delivered { .. }
            );
            prop_assert!(!counted, "byte {} changed, still counted", i);
        }
    }
}
