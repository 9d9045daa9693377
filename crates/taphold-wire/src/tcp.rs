//! TCP headers, as gateway mode sees them: a protected order-entry session's segments
//! are held and backed up by their payload and sequence number, and the exchange's
//! acknowledgements in the return direction are its confirmation (seed 004).
//!
//! taphold never terminates TCP: it reads these fields, checks the checksum of what it
//! backs up, and forwards every segment byte-identical but for the Ethernet and IPv4
//! fields a router changes.

use crate::bytes::{be16, be32};
use crate::checksum;
use crate::ipv4::PROTOCOL_TCP;
use crate::WireError;

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;

/// The flag bits of byte 13.
pub mod flags {
    /// No more data from the sender.
    pub const FIN: u8 = 0x01;
    /// Synchronise sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push.
    pub const PSH: u8 = 0x08;
    /// The acknowledgement number is significant.
    pub const ACK: u8 = 0x10;
    /// The urgent pointer is significant.
    pub const URG: u8 = 0x20;
}

mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ: Range<usize> = 4..8;
    pub const ACK: Range<usize> = 8..12;
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

/// A view of a TCP segment: the IPv4 payload, exactly (its length is the IPv4
/// total length minus the IPv4 header, so there is no length field to check).
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

    /// Wraps a buffer after [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks: 20 bytes present ([`WireError::Truncated`]); data offset ≥ 5 words
    /// ([`WireError::Malformed`]); the header it announces present
    /// ([`WireError::Truncated`]).
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = usize::from(self.header_len());
        if header_len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if len < header_len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// The buffer back.
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

    /// Sequence number of the first payload byte (of the SYN, on a SYN).
    #[inline]
    pub fn seq_number(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::SEQ])
    }

    /// Acknowledgement number: the next byte the sender expects (if ACK is set).
    #[inline]
    pub fn ack_number(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::ACK])
    }

    /// Header length in bytes, options included (data offset × 4).
    #[inline]
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::DATA_OFFSET] >> 4) * 4
    }

    /// The flags byte ([`flags`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Receive window.
    #[inline]
    pub fn window(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::WINDOW])
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::URGENT])
    }

    /// The payload: everything after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[usize::from(self.header_len())..]
    }

    /// Whether the checksum over the pseudo-header and the whole segment is right.
    /// TCP's checksum is mandatory: zero is not "none" as in UDP.
    pub fn verify_checksum(&self, src_addr: [u8; 4], dst_addr: [u8; 4]) -> bool {
        let segment = self.buffer.as_ref();
        let Ok(len) = u16::try_from(segment.len()) else {
            return false;
        };
        checksum::combine(&[
            checksum::pseudo_header_v4(src_addr, dst_addr, PROTOCOL_TCP, len),
            checksum::data(segment),
        ]) == 0xFFFF
    }

    /// Sequence space the segment takes: its payload, plus one each for SYN and FIN.
    pub fn segment_len(&self) -> u32 {
        let f = self.flags();
        self.payload().len() as u32
            + u32::from(f & flags::SYN != 0)
            + u32::from(f & flags::FIN != 0)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, v: u32) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the acknowledgement number.
    pub fn set_ack_number(&mut self, v: u32) {
        self.buffer.as_mut()[field::ACK].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the header length (a multiple of 4, 20..=60).
    pub fn set_header_len(&mut self, len: u8) {
        self.buffer.as_mut()[field::DATA_OFFSET] = (len / 4) << 4;
    }

    /// Sets the flags byte.
    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS] = v;
    }

    /// Sets the window.
    pub fn set_window(&mut self, v: u16) {
        self.buffer.as_mut()[field::WINDOW].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the urgent pointer.
    pub fn set_urgent(&mut self, v: u16) {
        self.buffer.as_mut()[field::URGENT].copy_from_slice(&v.to_be_bytes());
    }

    /// Computes and writes the checksum over the pseudo-header and the whole buffer.
    pub fn fill_checksum(&mut self, src_addr: [u8; 4], dst_addr: [u8; 4]) {
        self.set_checksum(0);
        let segment = self.buffer.as_ref();
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(src_addr, dst_addr, PROTOCOL_TCP, segment.len() as u16),
            checksum::data(segment),
        ]);
        self.set_checksum(!sum);
    }
}

/// Serial-number arithmetic (RFC 1982) on 32-bit TCP sequence numbers: whether `a`
/// comes after `b` in sequence space, across the wrap.
#[inline]
pub fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYN of 10.1.0.2:40000 → 10.2.0.2:9878 with an MSS option, as Linux sends it.
    fn syn() -> Vec<u8> {
        let mut b = vec![0u8; 24];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_src_port(40000);
        p.set_dst_port(9878);
        p.set_seq_number(0xFFFF_FFF0);
        p.set_ack_number(0);
        p.set_header_len(24);
        p.set_flags(flags::SYN);
        p.set_window(64240);
        p.set_urgent(0);
        b[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]);
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.fill_checksum([10, 1, 0, 2], [10, 2, 0, 2]);
        b
    }

    #[test]
    fn fields_round_trip() {
        let b = syn();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.src_port(), 40000);
        assert_eq!(p.dst_port(), 9878);
        assert_eq!(p.seq_number(), 0xFFFF_FFF0);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.flags(), flags::SYN);
        assert_eq!(p.window(), 64240);
        assert!(p.payload().is_empty());
        assert_eq!(p.segment_len(), 1);
        assert!(p.verify_checksum([10, 1, 0, 2], [10, 2, 0, 2]));
    }

    #[test]
    fn checksum_catches_every_single_bit_flip() {
        let mut b = syn();
        b.extend_from_slice(b"8=FIX.4.2\x019=5\x0135=0\x0110=000\x01");
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.fill_checksum([10, 1, 0, 2], [10, 2, 0, 2]);
        for i in 0..b.len() * 8 {
            let mut c = b.clone();
            c[i / 8] ^= 1 << (i % 8);
            let p = Packet::new_unchecked(&c[..]);
            assert!(!p.verify_checksum([10, 1, 0, 2], [10, 2, 0, 2]), "bit {i}");
        }
        // And the pseudo-header: another address is another segment.
        let p = Packet::new_unchecked(&b[..]);
        assert!(!p.verify_checksum([10, 1, 0, 3], [10, 2, 0, 2]));
    }

    #[test]
    fn refuses_short_and_bad_offsets() {
        let b = syn();
        assert_eq!(
            Packet::new_checked(&b[..19]).unwrap_err(),
            WireError::Truncated
        );
        // Announces 24 bytes of header, 22 present.
        assert_eq!(
            Packet::new_checked(&b[..22]).unwrap_err(),
            WireError::Truncated
        );
        for off in 0..5u8 {
            let mut c = b.clone();
            c[12] = off << 4;
            assert_eq!(
                Packet::new_checked(&c[..]).unwrap_err(),
                WireError::Malformed
            );
        }
    }

    #[test]
    fn serial_arithmetic_wraps() {
        assert!(seq_after(1, 0));
        assert!(!seq_after(0, 1));
        assert!(!seq_after(5, 5));
        assert!(seq_after(3, 0xFFFF_FFF0));
        assert!(!seq_after(0xFFFF_FFF0, 3));
    }

    #[test]
    fn segment_len_counts_syn_and_fin() {
        let mut b = syn();
        b.extend_from_slice(b"abc");
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_flags(flags::SYN | flags::FIN | flags::ACK);
        assert_eq!(Packet::new_checked(&b[..]).unwrap().segment_len(), 5);
    }
}
