//! IPv4 headers: what messages arrive in on P, and what released messages and
//! confirmations leave in.
//!
//! We accept options on input (the payload starts after them) but never write any: every
//! header we emit is 20 bytes, DF set, identification 0 (RFC 6864: atomic datagrams need
//! no identification).

use crate::bytes::be16;
use crate::checksum;
use crate::WireError;

/// Length of a header without options, the only kind we emit.
pub const HEADER_LEN: usize = 20;

/// IP protocol number of ICMP.
pub const PROTOCOL_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const PROTOCOL_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTOCOL_UDP: u8 = 17;

/// TTL of every datagram we send: released messages start a fresh hop count.
pub const DEFAULT_TTL: u8 = 64;

mod field {
    use core::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1FFF;

/// A view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn addr(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it. Accessors panic if it is shorter than the
    /// fields they read; use only on buffers you sized yourself.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check_len`]. Bytes after the total length
    /// (Ethernet padding) are allowed and ignored.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks, in order: 20 bytes present ([`WireError::Truncated`]); version 4
    /// ([`WireError::BadVersion`]); IHL ≥ 5 and total length ≥ header length
    /// ([`WireError::BadLength`]); header and total length present
    /// ([`WireError::Truncated`]). The checksum is separate: [`Packet::verify_checksum`].
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 4 {
            return Err(WireError::BadVersion);
        }
        let header_len = usize::from(self.header_len());
        let total_len = usize::from(self.total_len());
        if header_len < HEADER_LEN || total_len < header_len {
            return Err(WireError::BadLength);
        }
        if len < total_len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version (4).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4), options included.
    #[inline]
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0F) * 4
    }

    /// DSCP and ECN byte.
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Total length: header plus payload, without Ethernet padding.
    #[inline]
    pub fn total_len(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::LENGTH])
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::IDENT])
    }

    /// Don't-fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        be16(&self.buffer.as_ref()[field::FLG_OFF]) & FLAG_DF != 0
    }

    /// More-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        be16(&self.buffer.as_ref()[field::FLG_OFF]) & FLAG_MF != 0
    }

    /// Fragment offset, in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (be16(&self.buffer.as_ref()[field::FLG_OFF]) & OFFSET_MASK) << 3
    }

    /// Whether this is a fragment (MF set or nonzero offset): messages must be whole.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol number.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 4] {
        addr(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 4] {
        addr(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// Whether the header checksum is correct (options included).
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        let header = &self.buffer.as_ref()[..usize::from(self.header_len())];
        match <&[u8; HEADER_LEN]>::try_from(header) {
            // Every message's header: no options.
            Ok(h) => checksum::header20(h) == 0xFFFF,
            Err(_) => checksum::data(header) == 0xFFFF,
        }
    }

    /// The options, if any (IHL > 5).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.header_len())]
    }

    /// The payload: from the end of the options to the total length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[usize::from(self.header_len())..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 4 and the header length in bytes (a multiple of 4, 20..=60).
    #[inline]
    pub fn set_version_and_header_len(&mut self, header_len: u8) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) & 0x0F);
    }

    /// Sets DSCP and ECN.
    #[inline]
    pub fn set_dscp_ecn(&mut self, v: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = v;
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, v: u16) {
        self.buffer.as_mut()[field::IDENT].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the flags and fragment offset word: DF as given, MF clear, offset 0.
    #[inline]
    pub fn set_unfragmented(&mut self, dont_frag: bool) {
        let v = if dont_frag { FLAG_DF } else { 0 };
        self.buffer.as_mut()[field::FLG_OFF].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the time to live.
    #[inline]
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    /// Sets the protocol.
    #[inline]
    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a);
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a);
    }

    /// Computes and writes the header checksum over the header the IHL describes.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let header = &self.buffer.as_ref()[..usize::from(self.header_len())];
        let sum = checksum::finish(checksum::data(header));
        self.set_checksum(sum);
    }

    /// The payload, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = usize::from(self.header_len())..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

/// The parsed meaning of an IPv4 header, as far as taphold cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: [u8; 4],
    /// Destination address.
    pub dst_addr: [u8; 4],
    /// Protocol number.
    pub protocol: u8,
    /// Payload length (total length minus header length).
    pub payload_len: u16,
    /// Time to live.
    pub ttl: u8,
}

impl Ipv4Repr {
    /// Reads a checked packet: [`WireError::BadChecksum`] if the header checksum is
    /// wrong, [`WireError::Malformed`] if it is a fragment (we never reassemble).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Ipv4Repr, WireError> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(WireError::BadChecksum);
        }
        if packet.is_fragment() {
            return Err(WireError::Malformed);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.total_len() - u16::from(packet.header_len()),
            ttl: packet.ttl(),
        })
    }

    /// Bytes the emitted header takes: always 20, we write no options.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header at the start of `buf` (DSCP 0, id 0, DF, checksum filled).
    /// [`WireError::Truncated`] if `buf` is shorter than 20 bytes;
    /// [`WireError::BadLength`] if the total length would not fit 16 bits.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let header = buf.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
        let total = self
            .payload_len
            .checked_add(HEADER_LEN as u16)
            .ok_or(WireError::BadLength)?;
        let mut p = Packet::new_unchecked(header);
        p.set_version_and_header_len(HEADER_LEN as u8);
        p.set_dscp_ecn(0);
        p.set_total_len(total);
        p.set_ident(0);
        p.set_unfragmented(true);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        // The checksum from the values just written, not by reading the header back: the
        // same sum `fill_checksum` takes, without loads that would wait on those stores.
        let sum = checksum::combine(&[
            0x4500,
            total,
            0,
            FLAG_DF,
            u16::from(self.ttl) << 8 | u16::from(self.protocol),
            checksum::addr(self.src_addr),
            checksum::addr(self.dst_addr),
        ]);
        p.set_checksum(checksum::finish(sum));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10.0.0.99 → 10.0.0.1, UDP, 8 bytes of payload, DF, TTL 64, id 0.
    static PACKET: [u8; 28] = [
        0x45, 0x00, 0x00, 0x1c, // version/IHL, DSCP, total length 28
        0x00, 0x00, 0x40, 0x00, // id 0, DF
        0x40, 0x11, 0x26, 0x6e, // TTL 64, UDP, checksum
        10, 0, 0, 99, // src
        10, 0, 0, 1, // dst
        1, 2, 3, 4, 5, 6, 7, 8, // payload
    ];

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: [10, 0, 0, 99],
            dst_addr: [10, 0, 0, 1],
            protocol: PROTOCOL_UDP,
            payload_len: 8,
            ttl: 64,
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.dscp_ecn(), 0);
        assert_eq!(p.total_len(), 28);
        assert_eq!(p.ident(), 0);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), PROTOCOL_UDP);
        assert_eq!(p.checksum(), 0x266e);
        assert!(p.verify_checksum());
        assert_eq!(p.src_addr(), [10, 0, 0, 99]);
        assert_eq!(p.dst_addr(), [10, 0, 0, 1]);
        assert_eq!(p.options(), &[] as &[u8]);
        assert_eq!(p.payload(), &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn construct_and_round_trip() {
        let mut buf = [0u8; 28];
        repr().emit(&mut buf).unwrap();
        buf[20..].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(buf, PACKET);
        let parsed = Ipv4Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap();
        assert_eq!(parsed, repr());
        assert_eq!(parsed.buffer_len(), HEADER_LEN);
    }

    #[test]
    fn options_and_padding() {
        // IHL 6: one 4-byte option (NOPs + EOL); 4 bytes of Ethernet padding after.
        let mut buf = [0u8; 32];
        buf[..20].copy_from_slice(&PACKET[..20]);
        buf[0] = 0x46;
        buf[2..4].copy_from_slice(&28u16.to_be_bytes());
        buf[20..24].copy_from_slice(&[1, 1, 1, 0]);
        buf[24..28].copy_from_slice(&[9, 9, 9, 9]);
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.fill_checksum();
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &[9, 9, 9, 9]);
        assert_eq!(Ipv4Repr::parse(&p).unwrap().payload_len, 4);
    }

    proptest::proptest! {
        /// `emit`'s checksum, taken from the values, is what `fill_checksum` computes from
        /// the bytes.
        #[test]
        fn emit_checksum_equals_fill(
            src in proptest::prelude::any::<[u8; 4]>(),
            dst in proptest::prelude::any::<[u8; 4]>(),
            protocol in proptest::prelude::any::<u8>(),
            ttl in proptest::prelude::any::<u8>(),
            payload_len in 0u16..=65515,
        ) {
            let repr = Ipv4Repr { src_addr: src, dst_addr: dst, protocol, payload_len, ttl };
            let mut a = [0u8; 20];
            repr.emit(&mut a).unwrap();
            let mut b = a;
            Packet::new_unchecked(&mut b[..]).fill_checksum();
            proptest::prop_assert_eq!(a, b);
            proptest::prop_assert!(Packet::new_unchecked(&a[..]).verify_checksum());
        }
    }

    #[test]
    fn every_truncation_rejected() {
        for len in 0..PACKET.len() {
            assert_eq!(
                Packet::new_checked(&PACKET[..len]).err(),
                Some(WireError::Truncated),
                "len {len}"
            );
        }
        let mut buf = [0u8; HEADER_LEN];
        for len in 0..HEADER_LEN {
            assert_eq!(repr().emit(&mut buf[..len]), Err(WireError::Truncated));
        }
    }

    #[test]
    fn bad_fields_rejected() {
        let mut b = PACKET;
        b[0] = 0x65;
        assert_eq!(
            Packet::new_checked(&b[..]).err(),
            Some(WireError::BadVersion)
        );
        let mut b = PACKET;
        b[0] = 0x44; // IHL 4
        assert_eq!(
            Packet::new_checked(&b[..]).err(),
            Some(WireError::BadLength)
        );
        let mut b = PACKET;
        b[3] = 19; // total < header
        assert_eq!(
            Packet::new_checked(&b[..]).err(),
            Some(WireError::BadLength)
        );
        let mut b = PACKET;
        b[0] = 0x4f; // IHL 15: 60 bytes claimed, 28 present
        b[3] = 60;
        assert_eq!(
            Packet::new_checked(&b[..]).err(),
            Some(WireError::Truncated)
        );
        let mut b = PACKET;
        b[11] ^= 1;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(!p.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&p), Err(WireError::BadChecksum));
        let mut b = PACKET;
        b[6] = 0x20; // MF
        Packet::new_unchecked(&mut b[..]).fill_checksum();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.is_fragment());
        assert_eq!(Ipv4Repr::parse(&p), Err(WireError::Malformed));
        let mut b = PACKET;
        b[6] = 0x00;
        b[7] = 0x01; // offset 8
        Packet::new_unchecked(&mut b[..]).fill_checksum();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.frag_offset(), 8);
        assert_eq!(Ipv4Repr::parse(&p), Err(WireError::Malformed));
        let big = Ipv4Repr {
            payload_len: u16::MAX - 19,
            ..repr()
        };
        assert_eq!(big.emit(&mut [0u8; 20]), Err(WireError::BadLength));
    }
}
