//! UDP headers: messages arrive in UDP on P, and released messages and confirmations
//! leave in it.
//!
//! A zero checksum means the sender did not compute one (RFC 768); we accept that on
//! input, and always send one.

use crate::bytes::be16;
use crate::checksum;
use crate::ipv4::PROTOCOL_UDP;
use crate::WireError;

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
    pub const PAYLOAD: usize = 8;
}

/// A view of a UDP datagram (after the IPv4 header).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it. Accessors panic if it is shorter than the
    /// fields they read; use only on buffers you sized yourself.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check_len`]. Bytes after the UDP length are
    /// allowed and ignored.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks: 8 bytes present ([`WireError::Truncated`]); length field ≥ 8
    /// ([`WireError::BadLength`]); length field's bytes present
    /// ([`WireError::Truncated`]).
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let claimed = usize::from(self.len());
        if claimed < HEADER_LEN {
            return Err(WireError::BadLength);
        }
        if len < claimed {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::DST_PORT])
    }

    /// Length field: header plus payload.
    #[inline]
    pub fn len(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// Whether the datagram carries no payload.
    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// Checksum field (0: none computed).
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// Whether the checksum is correct for these IPv4 addresses; true when it is absent.
    pub fn verify_checksum(&self, src_addr: [u8; 4], dst_addr: [u8; 4]) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let len = self.len();
        let datagram = &self.buffer.as_ref()[..usize::from(len)];
        checksum::combine(&[
            checksum::pseudo_header_v4(src_addr, dst_addr, PROTOCOL_UDP, len),
            checksum::data(datagram),
        ]) == 0xFFFF
    }

    /// The payload, up to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..usize::from(self.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    /// Computes the checksum over pseudo-header, header and payload (up to the length
    /// field) and writes it; a computed zero is sent as `0xFFFF`.
    pub fn fill_checksum(&mut self, src_addr: [u8; 4], dst_addr: [u8; 4]) {
        self.set_checksum(0);
        let len = self.len();
        let datagram = &self.buffer.as_ref()[..usize::from(len)];
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(src_addr, dst_addr, PROTOCOL_UDP, len),
            checksum::data(datagram),
        ]);
        self.set_checksum(checksum::udp_field(checksum::finish(sum)));
    }

    /// The payload, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[field::PAYLOAD..end]
    }
}

/// The parsed meaning of a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl UdpRepr {
    /// Reads a checked datagram; [`WireError::BadChecksum`] if a checksum is present and
    /// wrong for these addresses.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &Packet<T>,
        src_addr: [u8; 4],
        dst_addr: [u8; 4],
    ) -> Result<UdpRepr, WireError> {
        packet.check_len()?;
        if !packet.verify_checksum(src_addr, dst_addr) {
            return Err(WireError::BadChecksum);
        }
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
        })
    }

    /// Bytes the header takes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header for a payload already at `buf[8..8 + payload_len]`, checksum
    /// filled. [`WireError::Truncated`] if `buf` is shorter than that;
    /// [`WireError::BadLength`] if the length would not fit 16 bits.
    pub fn emit(
        &self,
        buf: &mut [u8],
        src_addr: [u8; 4],
        dst_addr: [u8; 4],
        payload_len: usize,
    ) -> Result<(), WireError> {
        let len = payload_len
            .checked_add(HEADER_LEN)
            .and_then(|l| u16::try_from(l).ok())
            .ok_or(WireError::BadLength)?;
        let datagram = buf
            .get_mut(..usize::from(len))
            .ok_or(WireError::Truncated)?;
        let mut p = Packet::new_unchecked(datagram);
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len(len);
        p.fill_checksum(src_addr, dst_addr);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: [u8; 4] = [192, 168, 1, 1];
    const DST: [u8; 4] = [192, 168, 1, 2];

    /// 192.168.1.1:1024 → 192.168.1.2:53, payload "abcd".
    static DATAGRAM: [u8; 12] = [
        0x04, 0x00, // src port 1024
        0x00, 0x35, // dst port 53
        0x00, 0x0c, // length 12
        0xb3, 0x86, // checksum
        b'a', b'b', b'c', b'd',
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!(p.src_port(), 1024);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 12);
        assert!(!p.is_empty());
        assert_eq!(p.checksum(), 0xb386);
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(SRC, [192, 168, 1, 3]));
        assert_eq!(p.payload(), b"abcd");
    }

    #[test]
    fn construct_and_round_trip() {
        let mut buf = [0u8; 12];
        buf[8..].copy_from_slice(b"abcd");
        let repr = UdpRepr {
            src_port: 1024,
            dst_port: 53,
        };
        repr.emit(&mut buf, SRC, DST, 4).unwrap();
        assert_eq!(buf, DATAGRAM);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(UdpRepr::parse(&p, SRC, DST), Ok(repr));
        assert_eq!(repr.buffer_len(), HEADER_LEN);
    }

    #[test]
    fn zero_checksum_means_absent() {
        let mut b = DATAGRAM;
        b[6] = 0;
        b[7] = 0;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum(SRC, [1, 2, 3, 4]));
    }

    #[test]
    fn padding_after_length_ignored() {
        let mut b = [0u8; 20];
        b[..12].copy_from_slice(&DATAGRAM);
        b[12..].fill(0xee);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload(), b"abcd");
        assert!(p.verify_checksum(SRC, DST));
    }

    #[test]
    fn every_truncation_rejected() {
        for len in 0..DATAGRAM.len() {
            assert_eq!(
                Packet::new_checked(&DATAGRAM[..len]).err(),
                Some(WireError::Truncated),
                "len {len}"
            );
            let mut buf = DATAGRAM;
            let repr = UdpRepr {
                src_port: 1,
                dst_port: 2,
            };
            assert_eq!(
                repr.emit(&mut buf[..len], SRC, DST, 4),
                Err(WireError::Truncated)
            );
        }
    }

    #[test]
    fn bad_fields_rejected() {
        let mut b = DATAGRAM;
        b[5] = 7;
        assert_eq!(
            Packet::new_checked(&b[..]).err(),
            Some(WireError::BadLength)
        );
        let mut b = DATAGRAM;
        b[9] ^= 0x01;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(UdpRepr::parse(&p, SRC, DST), Err(WireError::BadChecksum));
        let repr = UdpRepr {
            src_port: 1,
            dst_port: 2,
        };
        assert_eq!(
            repr.emit(&mut [0u8; 8], SRC, DST, 65528),
            Err(WireError::BadLength)
        );
        assert_eq!(
            repr.emit(&mut [0u8; 8], SRC, DST, usize::MAX),
            Err(WireError::BadLength)
        );
    }

    proptest! {
        #[test]
        fn emit_then_verify(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            src in any::<[u8; 4]>(),
            dst in any::<[u8; 4]>(),
            sp in any::<u16>(),
            dp in any::<u16>(),
        ) {
            let mut buf = vec![0u8; 8 + payload.len()];
            buf[8..].copy_from_slice(&payload);
            let repr = UdpRepr { src_port: sp, dst_port: dp };
            repr.emit(&mut buf, src, dst, payload.len()).unwrap();
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(p.checksum() != 0);
            prop_assert_eq!(UdpRepr::parse(&p, src, dst), Ok(repr));
            prop_assert_eq!(p.payload(), &payload[..]);
        }
    }
}
