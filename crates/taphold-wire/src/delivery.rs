//! The delivery header: what a destination with `framing: taphold` finds before the payload
//! of every released datagram.
//!
//! A bare payload cannot tell a destination which message it is: two copies of one message
//! (the appliance's and, after a takeover, the backup node's) look alike, and a missing one
//! leaves no trace. The header names the message by (stream, epoch, seq), says how it was
//! released (flags), where it came from, and when it left. Destinations that cannot change
//! keep `framing: raw` and receive the payload alone.
//!
//! The header sits at the start of the UDP payload; the message payload follows it to the
//! end of the datagram (its length is the UDP length − 8 − 40). `docs/protocol.md` has the
//! same table as the `field` module below.

use crate::bytes::{be16, be64};
use crate::taphold::Flags;
use crate::WireError;

/// `"TD"`: taphold delivery.
pub const MAGIC: u16 = 0x5444;
/// The only version this crate speaks.
pub const VERSION: u8 = 1;
/// Length of the header; the payload starts here. Even, so that prepending it keeps the
/// payload's 16-bit alignment in the UDP checksum.
pub const HEADER_LEN: usize = 40;

mod field {
    use core::ops::Range;

    pub const MAGIC: Range<usize> = 0..2;
    pub const VERSION: usize = 2;
    pub const HEADER_LEN: usize = 3;
    pub const FLAGS: Range<usize> = 4..6;
    pub const SRC_PORT: Range<usize> = 6..8;
    pub const STREAM: Range<usize> = 8..12;
    pub const SRC_IP: Range<usize> = 12..16;
    pub const EPOCH: Range<usize> = 16..24;
    pub const SEQ: Range<usize> = 24..32;
    pub const RELEASE_NS: Range<usize> = 32..40;
    pub const PAYLOAD: usize = 40;
}

/// A view of a delivered datagram's UDP payload: the header, then the message payload.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it; accessors panic on a buffer shorter than
    /// [`HEADER_LEN`].
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check`]; every accessor is then meaningful.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// Validates, in this order: 40 bytes present — `Truncated`; magic — `BadMagic`;
    /// version — `BadVersion`; header length 40 — `BadLength`; flags — `BadFlags`.
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
        if usize::from(buf[field::HEADER_LEN]) != HEADER_LEN {
            return Err(WireError::BadLength);
        }
        Flags::from_bits(be16(&buf[field::FLAGS]))?;
        Ok(())
    }

    /// Flags: POSSIBLE_DUPLICATE, UNPROTECTED, RETRANSMIT (the taphold PDU's bits).
    #[inline]
    pub fn flags(&self) -> Flags {
        Flags::from_bits(be16(&self.buffer.as_ref()[field::FLAGS])).unwrap_or(Flags::EMPTY)
    }

    /// Stream id.
    #[inline]
    pub fn stream(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::STREAM];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The appliance's epoch when it accepted the message.
    #[inline]
    pub fn epoch(&self) -> u64 {
        be64(&self.buffer.as_ref()[field::EPOCH])
    }

    /// The message's sequence number within its (stream, epoch).
    #[inline]
    pub fn seq(&self) -> u64 {
        be64(&self.buffer.as_ref()[field::SEQ])
    }

    /// The message's original source IPv4 address.
    #[inline]
    pub fn src_ip(&self) -> [u8; 4] {
        let b = &self.buffer.as_ref()[field::SRC_IP];
        [b[0], b[1], b[2], b[3]]
    }

    /// The message's original source UDP port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    /// When it was released toward the destination, UNIX nanoseconds.
    #[inline]
    pub fn release_ns(&self) -> u64 {
        be64(&self.buffer.as_ref()[field::RELEASE_NS])
    }

    /// The message payload: everything after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

/// The parsed meaning of a delivery header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryRepr {
    /// How it was released: UNPROTECTED (secondary mode pass-through), POSSIBLE_DUPLICATE
    /// (replayed by a backup node), RETRANSMIT (re-sent on request).
    pub flags: Flags,
    /// Stream id.
    pub stream: u32,
    /// The appliance's epoch.
    pub epoch: u64,
    /// Sequence number within (stream, epoch), from 1.
    pub seq: u64,
    /// The original source address and port.
    pub src_ip: [u8; 4],
    /// The original source UDP port.
    pub src_port: u16,
    /// Release time, UNIX nanoseconds.
    pub release_ns: u64,
}

impl DeliveryRepr {
    /// Reads the header of a checked view.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<DeliveryRepr, WireError> {
        packet.check()?;
        Ok(DeliveryRepr {
            flags: packet.flags(),
            stream: packet.stream(),
            epoch: packet.epoch(),
            seq: packet.seq(),
            src_ip: packet.src_ip(),
            src_port: packet.src_port(),
            release_ns: packet.release_ns(),
        })
    }

    /// Bytes the header takes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header at the start of `buf` ([`WireError::Truncated`] if shorter than
    /// [`HEADER_LEN`]).
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let h = buf.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
        // Five 8-byte stores, as the taphold PDU header.
        let w0 = u64::from(MAGIC) << 48
            | u64::from(VERSION) << 40
            | (HEADER_LEN as u64) << 32
            | u64::from(self.flags.bits()) << 16
            | u64::from(self.src_port);
        let w1 = u64::from(self.stream) << 32 | u64::from(u32::from_be_bytes(self.src_ip));
        let words = [w0, w1, self.epoch, self.seq, self.release_ns];
        for (chunk, w) in h.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_be_bytes());
        }
        Ok(())
    }

    /// The header as bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        // Cannot fail: the array is exactly HEADER_LEN long.
        let _ = self.emit(&mut b);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Message 42 of stream 7, epoch 0x692b8900, from 10.0.0.99:40000, released
    /// unprotected at 1 s past the epoch, carrying "ORDER".
    static DELIVERED: [u8; 45] = [
        0x54, 0x44, // magic "TD"
        0x01, // version
        0x28, // header length 40
        0x00, 0x02, // flags: UNPROTECTED
        0x9c, 0x40, // source port 40000
        0x00, 0x00, 0x00, 0x07, // stream 7
        10, 0, 0, 99, // source IP
        0x00, 0x00, 0x00, 0x00, 0x69, 0x2b, 0x89, 0x00, // epoch
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, // seq 42
        0x00, 0x00, 0x00, 0x00, 0x3b, 0x9a, 0xca, 0x00, // release time 1 s
        b'O', b'R', b'D', b'E', b'R', // payload
    ];

    fn repr() -> DeliveryRepr {
        DeliveryRepr {
            flags: Flags::UNPROTECTED,
            stream: 7,
            epoch: 0x692b_8900,
            seq: 42,
            src_ip: [10, 0, 0, 99],
            src_port: 40000,
            release_ns: 1_000_000_000,
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&DELIVERED[..]).unwrap();
        assert_eq!(p.flags(), Flags::UNPROTECTED);
        assert_eq!(p.stream(), 7);
        assert_eq!(p.epoch(), 0x692b_8900);
        assert_eq!(p.seq(), 42);
        assert_eq!(p.src_ip(), [10, 0, 0, 99]);
        assert_eq!(p.src_port(), 40000);
        assert_eq!(p.release_ns(), 1_000_000_000);
        assert_eq!(p.payload(), b"ORDER");
        assert_eq!(DeliveryRepr::parse(&p), Ok(repr()));
    }

    #[test]
    fn construct() {
        let mut buf = [0xeeu8; 45];
        repr().emit(&mut buf).unwrap();
        buf[40..].copy_from_slice(b"ORDER");
        assert_eq!(buf, DELIVERED);
        assert_eq!(repr().to_bytes()[..], DELIVERED[..40]);
        assert_eq!(repr().buffer_len(), 40);
        for len in 0..40 {
            assert_eq!(
                repr().emit(&mut [0u8; 40][..len]),
                Err(WireError::Truncated)
            );
        }
    }

    #[test]
    fn refusals() {
        for len in 0..40 {
            assert_eq!(
                Packet::new_checked(&DELIVERED[..len]).err(),
                Some(WireError::Truncated)
            );
        }
        let edited = |at: usize, v: u8| {
            let mut b = DELIVERED;
            b[at] = v;
            Packet::new_checked(b.to_vec()).err()
        };
        assert_eq!(edited(0, 0x55), Some(WireError::BadMagic));
        assert_eq!(edited(2, 2), Some(WireError::BadVersion));
        assert_eq!(edited(3, 48), Some(WireError::BadLength));
        assert_eq!(edited(5, 0x08), Some(WireError::BadFlags));
        // An empty payload is a valid header (the payload length is the datagram's).
        assert!(Packet::new_checked(&DELIVERED[..40]).is_ok());
    }

    proptest! {
        #[test]
        fn round_trip(
            bits in 0u16..8, stream in any::<u32>(), epoch in any::<u64>(), seq in any::<u64>(),
            src_ip in any::<[u8; 4]>(), src_port in any::<u16>(), release_ns in any::<u64>(),
        ) {
            let r = DeliveryRepr {
                flags: Flags::from_bits(bits).unwrap(), stream, epoch, seq, src_ip, src_port,
                release_ns,
            };
            let b = r.to_bytes();
            prop_assert_eq!(DeliveryRepr::parse(&Packet::new_checked(&b[..]).unwrap()), Ok(r));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (DeliveryRepr::parse(&p), p.payload());
            }
        }
    }
}
