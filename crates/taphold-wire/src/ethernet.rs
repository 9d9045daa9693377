//! Ethernet II frames: the outer layer on every port.
//!
//! On P it carries IPv4 (messages, confirmations) and ARP; on each backup link Bk and its
//! tap Tk it carries the taphold PDU directly under [`EtherType::TAPHOLD`]. We never
//! see or write the FCS: the NIC strips and appends it, so lengths here exclude it.

use core::fmt;
use core::str::FromStr;

use crate::WireError;

/// Length of the Ethernet II header (no VLAN tag).
pub const HEADER_LEN: usize = 14;

/// Shortest legal Ethernet frame without its 4-byte FCS; shorter frames are padded.
pub const MIN_FRAME_LEN: usize = 60;

mod field {
    use core::ops::Range;

    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// A 48-bit MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xFF; 6]);

    /// Reads an address from the first six bytes of `bytes`. Crate-private: callers pass
    /// a field range they already checked, so the slice cannot be short.
    #[inline]
    pub(crate) fn from_bytes(bytes: &[u8]) -> EthernetAddress {
        let mut a = [0u8; 6];
        a.copy_from_slice(&bytes[..6]);
        EthernetAddress(a)
    }

    /// The six bytes, in wire order.
    #[inline]
    pub fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// Whether this is the broadcast address.
    #[inline]
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Whether the group bit is set (multicast or broadcast).
    #[inline]
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this can be a frame's source: not a group address.
    #[inline]
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// Parses `aa:bb:cc:dd:ee:ff` (either case, exactly two hex digits per byte), as written in
/// the configuration. Anything else is [`WireError::Malformed`].
impl FromStr for EthernetAddress {
    type Err = WireError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in out.iter_mut() {
            let part = parts.next().ok_or(WireError::Malformed)?;
            if part.len() != 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(WireError::Malformed);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| WireError::Malformed)?;
        }
        if parts.next().is_some() {
            return Err(WireError::Malformed);
        }
        Ok(EthernetAddress(out))
    }
}

/// The EtherType field. A newtype rather than an enum: unknown values are normal traffic
/// to count, not errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// ARP.
    pub const ARP: EtherType = EtherType(0x0806);
    /// IPv6.
    pub const IPV6: EtherType = EtherType(0x86DD);
    /// 802.1Q VLAN tag.
    pub const VLAN: EtherType = EtherType(0x8100);
    /// 802.1ad service tag (Q-in-Q).
    pub const QINQ: EtherType = EtherType(0x88A8);
    /// The taphold PDU on backup links (IEEE "local experimental" EtherType 1).
    pub const TAPHOLD: EtherType = EtherType(0x88B5);
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04x}", self.0)
    }
}

/// A view of an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking it. Accessors panic if it is shorter than
    /// [`HEADER_LEN`]; use only on buffers you sized yourself.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps a buffer after checking it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Frame<T>, WireError> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// [`WireError::Truncated`] if the buffer is shorter than the header.
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::DST])
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::SRC])
    }

    /// EtherType.
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        EtherType(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Everything after the header, Ethernet padding included.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.0);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.0);
    }

    /// Sets the EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&ethertype.0.to_be_bytes());
    }

    /// Everything after the header, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// The parsed meaning of an Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    /// Source address.
    pub src_addr: EthernetAddress,
    /// Destination address.
    pub dst_addr: EthernetAddress,
    /// EtherType.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<EthernetRepr, WireError> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// Bytes the header takes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header at the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        emit_header(buf, self.dst_addr, self.src_addr, self.ethertype)
    }
}

/// Writes a 14-byte Ethernet header at the start of `buf`; [`WireError::Truncated`] if
/// `buf` is shorter than that.
pub fn emit_header(
    buf: &mut [u8],
    dst: EthernetAddress,
    src: EthernetAddress,
    ethertype: EtherType,
) -> Result<(), WireError> {
    let header = buf.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
    let mut frame = Frame::new_unchecked(header);
    frame.set_dst_addr(dst);
    frame.set_src_addr(src);
    frame.set_ethertype(ethertype);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    static FRAME: [u8; 18] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // src
        0x88, 0xb5, // taphold
        0xde, 0xad, 0xbe, 0xef, // payload
    ];

    #[test]
    fn deconstruct() {
        let f = Frame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), EthernetAddress([2, 0, 0, 0, 0, 1]));
        assert_eq!(f.src_addr(), EthernetAddress([2, 0, 0, 0, 0, 2]));
        assert_eq!(f.ethertype(), EtherType::TAPHOLD);
        assert_eq!(f.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        let repr = EthernetRepr::parse(&f).unwrap();
        assert_eq!(repr.ethertype, EtherType::TAPHOLD);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 18];
        emit_header(
            &mut buf,
            EthernetAddress([2, 0, 0, 0, 0, 1]),
            EthernetAddress([2, 0, 0, 0, 0, 2]),
            EtherType::TAPHOLD,
        )
        .unwrap();
        Frame::new_unchecked(&mut buf[..])
            .payload_mut()
            .copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(buf, FRAME);
    }

    #[test]
    fn repr_round_trip() {
        let repr = EthernetRepr::parse(&Frame::new_checked(&FRAME[..]).unwrap()).unwrap();
        let mut buf = [0u8; HEADER_LEN];
        repr.emit(&mut buf).unwrap();
        assert_eq!(buf[..], FRAME[..HEADER_LEN]);
        assert_eq!(repr.buffer_len(), HEADER_LEN);
    }

    #[test]
    fn every_truncation_rejected() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Frame::new_checked(&FRAME[..len]).err(),
                Some(WireError::Truncated),
                "len {len}"
            );
            let mut buf = [0u8; HEADER_LEN];
            assert_eq!(
                emit_header(
                    &mut buf[..len],
                    EthernetAddress::BROADCAST,
                    EthernetAddress::BROADCAST,
                    EtherType::ARP
                ),
                Err(WireError::Truncated)
            );
        }
        assert!(Frame::new_checked(&FRAME[..HEADER_LEN]).is_ok());
    }

    #[test]
    fn address_text() {
        let a: EthernetAddress = "02:1A:ff:00:9c:0d".parse().unwrap();
        assert_eq!(a, EthernetAddress([0x02, 0x1a, 0xff, 0x00, 0x9c, 0x0d]));
        assert_eq!(a.to_string(), "02:1a:ff:00:9c:0d");
        for bad in [
            "",
            "02:1a:ff:00:9c",
            "02:1a:ff:00:9c:0d:11",
            "02:1a:ff:00:9c:0",
            "02:1a:ff:00:9c:0dd",
            "02-1a-ff-00-9c-0d",
            "02:1a:ff:00:9c:0g",
            "+2:1a:ff:00:9c:0d",
            "02:1a:ff:00:9c:",
        ] {
            assert_eq!(
                bad.parse::<EthernetAddress>(),
                Err(WireError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn address_classes() {
        assert!(EthernetAddress::BROADCAST.is_broadcast());
        assert!(EthernetAddress::BROADCAST.is_multicast());
        assert!(EthernetAddress([0x01, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(EthernetAddress([0x02, 0, 0, 0, 0, 1]).is_unicast());
        assert_eq!(EtherType::IPV4.to_string(), "0x0800");
    }

    proptest! {
        #[test]
        fn address_text_round_trip(b in any::<[u8; 6]>()) {
            let a = EthernetAddress(b);
            prop_assert_eq!(a.to_string().parse::<EthernetAddress>(), Ok(a));
        }

        #[test]
        fn address_parse_never_panics(s in "\\PC{0,24}") {
            let _ = s.parse::<EthernetAddress>();
        }
    }
}
