//! ARP over Ethernet/IPv4.
//!
//! The primary port P is driven by DPDK, so no kernel answers ARP for its address: the
//! source would never learn where to send messages. The classifier hands us requests for
//! our IP ([`crate::Classified::ArpRequest`]) and [`reply_in_place`] turns the received
//! frame into the reply, so answering costs no buffer and no copy.

use crate::bytes::be16;
use crate::ethernet::{self, EtherType, EthernetAddress, Frame};
use crate::WireError;

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

/// Length of an ARP frame: Ethernet header and ARP packet, before padding to
/// [`ethernet::MIN_FRAME_LEN`].
pub const FRAME_LEN: usize = ethernet::HEADER_LEN + PACKET_LEN;

/// Hardware type of Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;

mod field {
    use core::ops::Range;

    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// The ARP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Who has this IP? (1)
    Request,
    /// I have it. (2)
    Reply,
    /// Anything else (RARP, InARP...): never answered.
    Unknown(u16),
}

impl From<u16> for Operation {
    fn from(v: u16) -> Self {
        match v {
            1 => Operation::Request,
            2 => Operation::Reply,
            other => Operation::Unknown(other),
        }
    }
}

impl From<Operation> for u16 {
    fn from(op: Operation) -> u16 {
        match op {
            Operation::Request => 1,
            Operation::Reply => 2,
            Operation::Unknown(other) => other,
        }
    }
}

/// A view of an ARP packet (after the Ethernet header).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn ip(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it. Accessors panic if it is shorter than
    /// [`PACKET_LEN`]; use only on buffers you sized yourself.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after checking it holds a whole Ethernet/IPv4 ARP packet.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// [`WireError::Truncated`] if the buffer is shorter than [`PACKET_LEN`].
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < PACKET_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Hardware type (1 = Ethernet).
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::HTYPE])
    }

    /// Protocol type (an EtherType; 0x0800 = IPv4).
    #[inline]
    pub fn protocol_type(&self) -> EtherType {
        EtherType(be16(&self.buffer.as_ref()[field::PTYPE]))
    }

    /// Hardware address length.
    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length.
    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Whether the packet is ARP for IPv4 over Ethernet, the only kind this layout fits.
    #[inline]
    pub fn is_ethernet_ipv4(&self) -> bool {
        self.hardware_type() == HTYPE_ETHERNET
            && self.protocol_type() == EtherType::IPV4
            && self.hardware_len() == 6
            && self.protocol_len() == 4
    }

    /// Operation.
    #[inline]
    pub fn operation(&self) -> Operation {
        Operation::from(be16(&self.buffer.as_ref()[field::OPER]))
    }

    /// Sender hardware address.
    #[inline]
    pub fn source_hardware_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::SHA])
    }

    /// Sender protocol address.
    #[inline]
    pub fn source_protocol_addr(&self) -> [u8; 4] {
        ip(&self.buffer.as_ref()[field::SPA])
    }

    /// Target hardware address.
    #[inline]
    pub fn target_hardware_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::THA])
    }

    /// Target protocol address.
    #[inline]
    pub fn target_protocol_addr(&self) -> [u8; 4] {
        ip(&self.buffer.as_ref()[field::TPA])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets hardware type, protocol type and both address lengths for Ethernet/IPv4.
    #[inline]
    pub fn set_ethernet_ipv4(&mut self) {
        let b = self.buffer.as_mut();
        b[field::HTYPE].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        b[field::PTYPE].copy_from_slice(&EtherType::IPV4.0.to_be_bytes());
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
    }

    /// Sets the operation.
    #[inline]
    pub fn set_operation(&mut self, op: Operation) {
        self.buffer.as_mut()[field::OPER].copy_from_slice(&u16::from(op).to_be_bytes());
    }

    /// Sets the sender hardware address.
    #[inline]
    pub fn set_source_hardware_addr(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&a.0);
    }

    /// Sets the sender protocol address.
    #[inline]
    pub fn set_source_protocol_addr(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&a);
    }

    /// Sets the target hardware address.
    #[inline]
    pub fn set_target_hardware_addr(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&a.0);
    }

    /// Sets the target protocol address.
    #[inline]
    pub fn set_target_protocol_addr(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&a);
    }
}

/// The parsed meaning of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    /// Operation.
    pub operation: Operation,
    /// Sender hardware address.
    pub source_hardware_addr: EthernetAddress,
    /// Sender protocol address.
    pub source_protocol_addr: [u8; 4],
    /// Target hardware address.
    pub target_hardware_addr: EthernetAddress,
    /// Target protocol address.
    pub target_protocol_addr: [u8; 4],
}

impl ArpRepr {
    /// Reads a packet; [`WireError::Malformed`] if it is not ARP for IPv4 over Ethernet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<ArpRepr, WireError> {
        packet.check_len()?;
        if !packet.is_ethernet_ipv4() {
            return Err(WireError::Malformed);
        }
        Ok(ArpRepr {
            operation: packet.operation(),
            source_hardware_addr: packet.source_hardware_addr(),
            source_protocol_addr: packet.source_protocol_addr(),
            target_hardware_addr: packet.target_hardware_addr(),
            target_protocol_addr: packet.target_protocol_addr(),
        })
    }

    /// Bytes the packet takes.
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet at the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        let b = buf.get_mut(..PACKET_LEN).ok_or(WireError::Truncated)?;
        let mut p = Packet::new_unchecked(b);
        p.set_ethernet_ipv4();
        p.set_operation(self.operation);
        p.set_source_hardware_addr(self.source_hardware_addr);
        p.set_source_protocol_addr(self.source_protocol_addr);
        p.set_target_hardware_addr(self.target_hardware_addr);
        p.set_target_protocol_addr(self.target_protocol_addr);
        Ok(())
    }
}

/// Turns a received ARP request frame (whole Ethernet frame) into our reply, in place.
///
/// The reply goes to the requester's hardware address (RFC 826), from `our_mac`, and says
/// `our_ip` is at `our_mac`. Returns the reply's length, [`FRAME_LEN`]; anything after it
/// in the buffer is left as is, and padding to [`ethernet::MIN_FRAME_LEN`] is the caller's.
///
/// Refuses, leaving the frame untouched: [`WireError::Truncated`] if shorter than
/// [`FRAME_LEN`]; [`WireError::Malformed`] if it is not an Ethernet/IPv4 ARP request whose
/// target is `our_ip` (we answer only for ourselves).
pub fn reply_in_place(
    frame: &mut [u8],
    our_mac: EthernetAddress,
    our_ip: [u8; 4],
) -> Result<usize, WireError> {
    let frame = frame.get_mut(..FRAME_LEN).ok_or(WireError::Truncated)?;
    if Frame::new_unchecked(&*frame).ethertype() != EtherType::ARP {
        return Err(WireError::Malformed);
    }
    let (eth, arp) = frame.split_at_mut(ethernet::HEADER_LEN);
    let mut arp = Packet::new_unchecked(arp);
    if !arp.is_ethernet_ipv4()
        || arp.operation() != Operation::Request
        || arp.target_protocol_addr() != our_ip
    {
        return Err(WireError::Malformed);
    }
    let requester_mac = arp.source_hardware_addr();
    let requester_ip = arp.source_protocol_addr();
    arp.set_operation(Operation::Reply);
    arp.set_target_hardware_addr(requester_mac);
    arp.set_target_protocol_addr(requester_ip);
    arp.set_source_hardware_addr(our_mac);
    arp.set_source_protocol_addr(our_ip);
    let mut eth = Frame::new_unchecked(eth);
    eth.set_dst_addr(requester_mac);
    eth.set_src_addr(our_mac);
    Ok(FRAME_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
    const OUR_IP: [u8; 4] = [10, 0, 0, 1];
    const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x99]);
    const PEER_IP: [u8; 4] = [10, 0, 0, 99];

    /// A request from 10.0.0.99 for 10.0.0.1, broadcast, padded to 60 bytes.
    fn request() -> [u8; 60] {
        let mut f = [0u8; 60];
        f[..FRAME_LEN].copy_from_slice(&[
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // eth dst
            0x02, 0x00, 0x00, 0x00, 0x00, 0x99, // eth src
            0x08, 0x06, // ARP
            0x00, 0x01, // htype
            0x08, 0x00, // ptype
            0x06, 0x04, // hlen plen
            0x00, 0x01, // request
            0x02, 0x00, 0x00, 0x00, 0x00, 0x99, // sha
            10, 0, 0, 99, // spa
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tha
            10, 0, 0, 1, // tpa
        ]);
        f
    }

    #[test]
    fn deconstruct() {
        let f = request();
        let p = Packet::new_checked(&f[ethernet::HEADER_LEN..]).unwrap();
        assert_eq!(p.hardware_type(), 1);
        assert_eq!(p.protocol_type(), EtherType::IPV4);
        assert_eq!(p.hardware_len(), 6);
        assert_eq!(p.protocol_len(), 4);
        assert_eq!(p.operation(), Operation::Request);
        assert_eq!(p.source_hardware_addr(), PEER_MAC);
        assert_eq!(p.source_protocol_addr(), PEER_IP);
        assert_eq!(p.target_hardware_addr(), EthernetAddress([0; 6]));
        assert_eq!(p.target_protocol_addr(), OUR_IP);
    }

    #[test]
    fn construct_and_round_trip() {
        let f = request();
        let repr = ArpRepr::parse(&Packet::new_checked(&f[14..]).unwrap()).unwrap();
        assert_eq!(
            repr,
            ArpRepr {
                operation: Operation::Request,
                source_hardware_addr: PEER_MAC,
                source_protocol_addr: PEER_IP,
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: OUR_IP,
            }
        );
        let mut buf = [0u8; PACKET_LEN];
        repr.emit(&mut buf).unwrap();
        assert_eq!(buf[..], f[14..FRAME_LEN]);
        assert_eq!(repr.buffer_len(), PACKET_LEN);
    }

    #[test]
    fn reply_rewrites_everything_it_must() {
        let mut f = request();
        assert_eq!(reply_in_place(&mut f, OUR_MAC, OUR_IP), Ok(FRAME_LEN));
        let expected: [u8; FRAME_LEN] = [
            0x02, 0x00, 0x00, 0x00, 0x00, 0x99, // eth dst: the requester
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // eth src: us
            0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, //
            0x00, 0x02, // reply
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // sha: us
            10, 0, 0, 1, // spa: us
            0x02, 0x00, 0x00, 0x00, 0x00, 0x99, // tha: requester
            10, 0, 0, 99, // tpa: requester
        ];
        assert_eq!(f[..FRAME_LEN], expected);
        assert_eq!(f[FRAME_LEN..], [0u8; 18]);
    }

    #[test]
    fn reply_refuses() {
        for len in 0..FRAME_LEN {
            let mut f = request();
            assert_eq!(
                reply_in_place(&mut f[..len], OUR_MAC, OUR_IP),
                Err(WireError::Truncated)
            );
            assert_eq!(f, request(), "untouched");
            assert_eq!(
                Packet::new_checked(&request()[14..14 + len.min(PACKET_LEN - 1)]).err(),
                Some(WireError::Truncated)
            );
        }
        let cases: [(usize, u8); 6] = [
            (13, 0x00), // ethertype 0x0800
            (15, 0x06), // htype 6
            (17, 0xdd), // ptype 0x08dd
            (18, 0x08), // hlen 8
            (21, 0x02), // a reply, not a request
            (41, 0x02), // target 10.0.0.2, not us
        ];
        for (at, v) in cases {
            let mut f = request();
            f[at] = v;
            let before = f;
            assert_eq!(
                reply_in_place(&mut f, OUR_MAC, OUR_IP),
                Err(WireError::Malformed),
                "byte {at}"
            );
            assert_eq!(f, before, "untouched");
        }
        let mut f = request();
        f[15] = 6;
        assert_eq!(
            ArpRepr::parse(&Packet::new_checked(&f[14..]).unwrap()),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn operation_codes() {
        assert_eq!(Operation::from(3), Operation::Unknown(3));
        assert_eq!(u16::from(Operation::Unknown(3)), 3);
        assert_eq!(u16::from(Operation::Reply), 2);
    }
}
