//! The primary-port classifier: the first thing ingress does with every frame from P.
//!
//! It decides, without allocating or copying, whether a frame is a *message* to hold and
//! back up, an ARP request to answer, or something to drop — and if so, exactly why, so
//! that each refusal has its own counter ([`DropReason::as_str`]). Only what passes here
//! ever reaches the hold ring, so it is strict: one untagged, unfragmented IPv4 UDP
//! datagram to our address and port, with correct checksums.

use crate::arp;
use crate::ethernet::{self, EtherType, EthernetAddress, Frame};
use crate::ipv4;
use crate::udp;

/// Our address on the primary port, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimaryAddr {
    /// P's MAC address.
    pub mac: EthernetAddress,
    /// P's IPv4 address: messages are sent to it, ARP asks for it.
    pub ip: [u8; 4],
    /// The UDP port messages are sent to.
    pub udp_port: u16,
    /// Largest message payload we accept (bounded by what a backup frame can carry).
    pub max_payload: u16,
}

/// Where a message sits in its frame, and who sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageMeta {
    /// Ethernet source.
    pub src_mac: EthernetAddress,
    /// IPv4 source.
    pub src_ip: [u8; 4],
    /// UDP source port.
    pub src_port: u16,
    /// Offset of the UDP payload in the frame (42 without IP options).
    pub payload_off: u16,
    /// Length of the UDP payload, 1..=`max_payload`.
    pub payload_len: u16,
    /// UDP checksum field as received (0: the source sent none). Kept so that release
    /// can update it incrementally instead of summing the payload again.
    pub udp_checksum: u16,
}

/// What a frame received on P is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classified {
    /// A message to hold and back up.
    Message(MessageMeta),
    /// An ARP request for our IP: answer with [`crate::arp::reply_in_place`].
    ArpRequest,
    /// A datagram to our control port (see [`classify_with_control`]): a taphold PDU
    /// for us (a target confirmation), not a message. Checked like a message (IPv4 and
    /// UDP checksums, lengths); its PDU is the caller's to check.
    Control(MessageMeta),
    /// Anything else, with the counter it goes to.
    Drop(DropReason),
}

/// Why a frame received on P was dropped. Each is a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than an Ethernet header, or than the ARP/IPv4 header it announces.
    Runt,
    /// IP total length beyond the bytes present, or UDP length beyond the IP payload.
    Truncated,
    /// Ethernet destination neither our MAC nor broadcast.
    NotForUsMac,
    /// VLAN-tagged (802.1Q or 802.1ad): P is configured untagged.
    Vlan,
    /// IPv6: messages come over IPv4.
    Ipv6,
    /// Any other EtherType.
    UnknownEtherType,
    /// An ARP request for another IP.
    ArpNotForUs,
    /// ARP that is not an Ethernet/IPv4 request: replies, other opcodes, other formats.
    ArpOther,
    /// IPv4 version ≠ 4, IHL < 5, or total length < header length.
    Ipv4BadHeader,
    /// IPv4 header checksum wrong.
    Ipv4BadChecksum,
    /// An IPv4 fragment (MF set or nonzero offset): we never reassemble.
    Ipv4Fragment,
    /// IPv4 destination not our IP.
    Ipv4NotForUs,
    /// Not UDP (ICMP, TCP, ...).
    IpProtoOther,
    /// UDP length < 8, or different from the IP payload length.
    UdpBadLength,
    /// UDP checksum present and wrong.
    UdpBadChecksum,
    /// UDP destination port not ours.
    UdpWrongPort,
    /// Zero-length UDP payload: no message.
    EmptyPayload,
    /// Payload longer than `max_payload`.
    Oversize,
    /// Gateway mode: TTL 1 or 0, nothing left to forward it with (no ICMP is sent).
    TtlExpired,
    /// Gateway mode: no configured route covers the destination.
    NoRoute,
    /// Gateway mode: a protected flow's TCP header is short or its data offset wrong.
    TcpBadHeader,
    /// Gateway mode: a protected flow's TCP checksum is wrong (it is not backed up,
    /// and not forwarded: the destination would discard it anyway).
    TcpBadChecksum,
    /// Gateway mode: routable, protected by no rule, and `gateway.other: refuse`.
    RefusedByRule,
    /// Gateway mode: IPv4 to the appliance's own address (it answers ARP only).
    Ipv4ToUs,
}

impl DropReason {
    /// Every reason, in [`DropReason::index`] order.
    pub const ALL: [DropReason; 24] = [
        DropReason::Runt,
        DropReason::Truncated,
        DropReason::NotForUsMac,
        DropReason::Vlan,
        DropReason::Ipv6,
        DropReason::UnknownEtherType,
        DropReason::ArpNotForUs,
        DropReason::ArpOther,
        DropReason::Ipv4BadHeader,
        DropReason::Ipv4BadChecksum,
        DropReason::Ipv4Fragment,
        DropReason::Ipv4NotForUs,
        DropReason::IpProtoOther,
        DropReason::UdpBadLength,
        DropReason::UdpBadChecksum,
        DropReason::UdpWrongPort,
        DropReason::EmptyPayload,
        DropReason::Oversize,
        DropReason::TtlExpired,
        DropReason::NoRoute,
        DropReason::TcpBadHeader,
        DropReason::TcpBadChecksum,
        DropReason::RefusedByRule,
        DropReason::Ipv4ToUs,
    ];

    /// The reasons only gateway mode's classifier ([`crate::gateway`]) gives.
    pub const GATEWAY_ONLY: [DropReason; 6] = [
        DropReason::TtlExpired,
        DropReason::NoRoute,
        DropReason::TcpBadHeader,
        DropReason::TcpBadChecksum,
        DropReason::RefusedByRule,
        DropReason::Ipv4ToUs,
    ];

    /// Number of reasons: the length of a counter array indexed by [`DropReason::index`].
    pub const COUNT: usize = Self::ALL.len();

    /// The counter name, snake_case.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::Truncated => "truncated",
            DropReason::NotForUsMac => "not_for_us_mac",
            DropReason::Vlan => "vlan",
            DropReason::Ipv6 => "ipv6",
            DropReason::UnknownEtherType => "unknown_ethertype",
            DropReason::ArpNotForUs => "arp_not_for_us",
            DropReason::ArpOther => "arp_other",
            DropReason::Ipv4BadHeader => "ipv4_bad_header",
            DropReason::Ipv4BadChecksum => "ipv4_bad_checksum",
            DropReason::Ipv4Fragment => "ipv4_fragment",
            DropReason::Ipv4NotForUs => "ipv4_not_for_us",
            DropReason::IpProtoOther => "ip_proto_other",
            DropReason::UdpBadLength => "udp_bad_length",
            DropReason::UdpBadChecksum => "udp_bad_checksum",
            DropReason::UdpWrongPort => "udp_wrong_port",
            DropReason::EmptyPayload => "empty_payload",
            DropReason::Oversize => "oversize",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::NoRoute => "no_route",
            DropReason::TcpBadHeader => "tcp_bad_header",
            DropReason::TcpBadChecksum => "tcp_bad_checksum",
            DropReason::RefusedByRule => "refused_by_rule",
            DropReason::Ipv4ToUs => "ipv4_to_us",
        }
    }

    /// Dense index `0..COUNT`, for a counter array.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Classifies one frame received on P (FCS already stripped).
///
/// Never panics; a [`Classified::Message`] always satisfies
/// `payload_off + payload_len <= frame.len()`.
pub fn classify(frame: &[u8], ours: &PrimaryAddr) -> Classified {
    classify_with_control(frame, ours, 0)
}

/// [`classify`], with a second UDP port of ours, `control_port` (0: none), whose
/// datagrams are [`Classified::Control`] instead of messages.
pub fn classify_with_control(frame: &[u8], ours: &PrimaryAddr, control_port: u16) -> Classified {
    classify_offloaded(frame, ours, control_port, false)
}

/// [`classify_with_control`] for a frame whose IPv4 header and UDP checksums the receiving
/// device has already verified good (`checksums_verified`: receive checksum offload, see
/// `dpdk::Mbuf::rx_checksums_good`): the two software checksums, the classifier's only
/// pass over the payload and most of its cost, are skipped. Every other check is made.
/// With `checksums_verified` false it is [`classify_with_control`].
pub fn classify_offloaded(
    frame: &[u8],
    ours: &PrimaryAddr,
    control_port: u16,
    checksums_verified: bool,
) -> Classified {
    match classify_inner(frame, ours, control_port, checksums_verified) {
        Ok(c) => c,
        Err(reason) => Classified::Drop(reason),
    }
}

fn classify_inner(
    frame: &[u8],
    ours: &PrimaryAddr,
    control_port: u16,
    verified: bool,
) -> Result<Classified, DropReason> {
    let eth = Frame::new_checked(frame).map_err(|_| DropReason::Runt)?;
    let dst = eth.dst_addr();
    if dst != ours.mac && !dst.is_broadcast() {
        return Err(DropReason::NotForUsMac);
    }
    match eth.ethertype() {
        EtherType::IPV4 => {
            classify_ipv4(eth.src_addr(), eth.payload(), ours, control_port, verified)
        }
        EtherType::ARP => classify_arp(eth.payload(), ours),
        EtherType::VLAN | EtherType::QINQ => Err(DropReason::Vlan),
        EtherType::IPV6 => Err(DropReason::Ipv6),
        _ => Err(DropReason::UnknownEtherType),
    }
}

fn classify_arp(bytes: &[u8], ours: &PrimaryAddr) -> Result<Classified, DropReason> {
    let arp = arp::Packet::new_checked(bytes).map_err(|_| DropReason::Runt)?;
    if !arp.is_ethernet_ipv4() || arp.operation() != arp::Operation::Request {
        return Err(DropReason::ArpOther);
    }
    if arp.target_protocol_addr() != ours.ip {
        return Err(DropReason::ArpNotForUs);
    }
    Ok(Classified::ArpRequest)
}

fn classify_ipv4(
    src_mac: EthernetAddress,
    bytes: &[u8],
    ours: &PrimaryAddr,
    control_port: u16,
    verified: bool,
) -> Result<Classified, DropReason> {
    // The IPv4 view's own check folds "runt" and "truncated" into one error; the
    // counters distinguish them, so the length checks are spelled out here.
    if bytes.len() < ipv4::HEADER_LEN {
        return Err(DropReason::Runt);
    }
    let ip = ipv4::Packet::new_unchecked(bytes);
    let header_len = usize::from(ip.header_len());
    if ip.version() != 4 || header_len < ipv4::HEADER_LEN {
        return Err(DropReason::Ipv4BadHeader);
    }
    if bytes.len() < header_len {
        return Err(DropReason::Runt);
    }
    let total_len = usize::from(ip.total_len());
    if total_len < header_len {
        return Err(DropReason::Ipv4BadHeader);
    }
    if total_len > bytes.len() {
        return Err(DropReason::Truncated);
    }
    // From here the view is as valid as `new_checked` would make it.
    if !verified && !ip.verify_checksum() {
        return Err(DropReason::Ipv4BadChecksum);
    }
    if ip.is_fragment() {
        return Err(DropReason::Ipv4Fragment);
    }
    if ip.dst_addr() != ours.ip {
        return Err(DropReason::Ipv4NotForUs);
    }
    if ip.protocol() != ipv4::PROTOCOL_UDP {
        return Err(DropReason::IpProtoOther);
    }

    let datagram = ip.payload();
    if datagram.len() < udp::HEADER_LEN {
        return Err(DropReason::UdpBadLength);
    }
    let udp = udp::Packet::new_unchecked(datagram);
    let udp_len = usize::from(udp.len());
    if udp_len < udp::HEADER_LEN {
        return Err(DropReason::UdpBadLength);
    }
    if udp_len > datagram.len() {
        return Err(DropReason::Truncated);
    }
    if udp_len < datagram.len() {
        return Err(DropReason::UdpBadLength);
    }
    let control = control_port != 0 && udp.dst_port() == control_port;
    if udp.dst_port() != ours.udp_port && !control {
        return Err(DropReason::UdpWrongPort);
    }
    let payload_len = udp_len - udp::HEADER_LEN;
    if payload_len == 0 {
        return Err(DropReason::EmptyPayload);
    }
    if payload_len > usize::from(ours.max_payload) {
        return Err(DropReason::Oversize);
    }
    // Last: the only check that reads the whole payload.
    let src_ip = ip.src_addr();
    if !verified && !udp.verify_checksum(src_ip, ip.dst_addr()) {
        return Err(DropReason::UdpBadChecksum);
    }

    // Both fit u16: the offset is at most 14 + 60 + 8, the length is ≤ max_payload.
    let payload_off = ethernet::HEADER_LEN + header_len + udp::HEADER_LEN;
    let meta = MessageMeta {
        src_mac,
        src_ip,
        src_port: udp.src_port(),
        payload_off: payload_off as u16,
        payload_len: payload_len as u16,
        udp_checksum: udp.checksum(),
    };
    Ok(if control {
        Classified::Control(meta)
    } else {
        Classified::Message(meta)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum;
    use proptest::prelude::*;

    const OURS: PrimaryAddr = PrimaryAddr {
        mac: EthernetAddress([0x02, 0, 0, 0, 0, 0x01]),
        ip: [10, 0, 0, 1],
        udp_port: 9000,
        max_payload: 1400,
    };
    const SRC_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x99]);

    /// A message frame as the source would send it; fields to vary per test.
    #[derive(Clone)]
    struct Msg {
        dst_mac: EthernetAddress,
        ethertype: u16,
        options: Vec<u8>,
        flags_frag: u16,
        protocol: u8,
        dst_ip: [u8; 4],
        dst_port: u16,
        payload: Vec<u8>,
        with_checksum: bool,
        padding: usize,
    }

    impl Msg {
        fn new(payload: &[u8]) -> Msg {
            Msg {
                dst_mac: OURS.mac,
                ethertype: 0x0800,
                options: Vec::new(),
                flags_frag: 0x4000,
                protocol: 17,
                dst_ip: OURS.ip,
                dst_port: OURS.udp_port,
                payload: payload.to_vec(),
                with_checksum: true,
                padding: 0,
            }
        }

        fn build(&self) -> Vec<u8> {
            let ihl = 20 + self.options.len();
            let udp_len = 8 + self.payload.len();
            let mut f = Vec::new();
            f.extend_from_slice(&self.dst_mac.0);
            f.extend_from_slice(&SRC_MAC.0);
            f.extend_from_slice(&self.ethertype.to_be_bytes());
            f.push(0x40 | (ihl / 4) as u8);
            f.push(0);
            f.extend_from_slice(&((ihl + udp_len) as u16).to_be_bytes());
            f.extend_from_slice(&[0x12, 0x34]);
            f.extend_from_slice(&self.flags_frag.to_be_bytes());
            f.extend_from_slice(&[64, self.protocol, 0, 0]);
            f.extend_from_slice(&[10, 0, 0, 99]);
            f.extend_from_slice(&self.dst_ip);
            f.extend_from_slice(&self.options);
            f.extend_from_slice(&40000u16.to_be_bytes());
            f.extend_from_slice(&self.dst_port.to_be_bytes());
            f.extend_from_slice(&(udp_len as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0]);
            f.extend_from_slice(&self.payload);
            fix_ip_checksum(&mut f);
            if self.with_checksum {
                let mut u = udp::Packet::new_unchecked(&mut f[14 + ihl..]);
                u.fill_checksum([10, 0, 0, 99], self.dst_ip);
            }
            f.resize(f.len() + self.padding, 0);
            f
        }
    }

    fn fix_ip_checksum(f: &mut [u8]) {
        ipv4::Packet::new_unchecked(&mut f[14..]).fill_checksum();
    }

    fn drop_of(f: &[u8]) -> DropReason {
        match classify(f, &OURS) {
            Classified::Drop(r) => r,
            other => panic!("expected a drop, got {other:?}"),
        }
    }

    fn arp_frame(op: u8, target: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&SRC_MAC.0);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, op]);
        f.extend_from_slice(&SRC_MAC.0);
        f.extend_from_slice(&[10, 0, 0, 99]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target);
        f.resize(60, 0);
        f
    }

    #[test]
    fn message_with_checksum() {
        let f = Msg::new(b"NEW ORDER 1").build();
        assert_eq!(
            classify(&f, &OURS),
            Classified::Message(MessageMeta {
                src_mac: SRC_MAC,
                src_ip: [10, 0, 0, 99],
                src_port: 40000,
                payload_off: 42,
                payload_len: 11,
                udp_checksum: u16::from_be_bytes([f[40], f[41]]),
            })
        );
        assert_ne!(f[40..42], [0, 0]);
        assert_eq!(&f[42..], b"NEW ORDER 1");
    }

    #[test]
    fn a_datagram_to_the_control_port_is_control_and_checked_like_a_message() {
        let to_control = Msg {
            dst_port: 9001,
            ..Msg::new(b"TH target confirmation")
        }
        .build();
        let Classified::Control(meta) = classify_with_control(&to_control, &OURS, 9001) else {
            panic!("{:?}", classify_with_control(&to_control, &OURS, 9001));
        };
        assert_eq!(
            &to_control[meta.payload_off as usize..],
            b"TH target confirmation"
        );
        // Without a control port it is a wrong port; a message stays a message.
        assert_eq!(
            classify(&to_control, &OURS),
            Classified::Drop(DropReason::UdpWrongPort)
        );
        let message = Msg::new(b"NEW ORDER 1").build();
        assert!(matches!(
            classify_with_control(&message, &OURS, 9001),
            Classified::Message(_)
        ));
        // Damage is refused before it is called control.
        let mut bad = to_control.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(
            classify_with_control(&bad, &OURS, 9001),
            Classified::Drop(DropReason::UdpBadChecksum)
        );
    }

    /// Receive checksum offload: with the device's word that both checksums are good,
    /// the software checksums are skipped (a frame whose UDP or IPv4 checksum is wrong is
    /// then taken as the device vouched), and every other check still holds; without it,
    /// the verdict is classify's.
    #[test]
    fn offloaded_checksums_skip_only_the_checksums() {
        let good = Msg::new(b"NEW ORDER 1").build();
        let verdict = classify(&good, &OURS);
        assert!(matches!(verdict, Classified::Message(_)));
        assert_eq!(classify_offloaded(&good, &OURS, 0, true), verdict);
        let mut bad_udp = good.clone();
        *bad_udp.last_mut().unwrap() ^= 1;
        let mut bad_ip = good.clone();
        bad_ip[24] ^= 1; // the IPv4 header checksum
        for f in [&bad_udp, &bad_ip] {
            assert!(matches!(
                classify_offloaded(f, &OURS, 0, true),
                Classified::Message(_)
            ));
            assert_eq!(classify_offloaded(f, &OURS, 0, false), classify(f, &OURS));
            assert!(matches!(classify(f, &OURS), Classified::Drop(_)));
        }
        // Addresses, port, lengths are still checked.
        let other_port = Msg {
            dst_port: 9001,
            ..Msg::new(b"x")
        }
        .build();
        assert_eq!(
            classify_offloaded(&other_port, &OURS, 0, true),
            Classified::Drop(DropReason::UdpWrongPort)
        );
        let mut truncated = good.clone();
        truncated.truncate(good.len() - 3);
        assert_eq!(
            classify_offloaded(&truncated, &OURS, 0, true),
            classify(&truncated, &OURS)
        );
    }

    #[test]
    fn message_without_checksum() {
        let f = Msg {
            with_checksum: false,
            ..Msg::new(b"x")
        }
        .build();
        match classify(&f, &OURS) {
            Classified::Message(m) => {
                assert_eq!(m.udp_checksum, 0);
                assert_eq!((m.payload_off, m.payload_len), (42, 1));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn message_with_ip_options_and_padding() {
        let f = Msg {
            options: vec![0x94, 0x04, 0, 0, 1, 1, 1, 0], // router alert, NOPs, EOL
            padding: 9,
            dst_mac: EthernetAddress::BROADCAST,
            ..Msg::new(b"abc")
        }
        .build();
        match classify(&f, &OURS) {
            Classified::Message(m) => {
                assert_eq!((m.payload_off, m.payload_len), (50, 3));
                assert_eq!(&f[50..53], b"abc");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn payload_at_the_limits() {
        let f = Msg::new(&[7; 1400]).build();
        assert!(matches!(classify(&f, &OURS), Classified::Message(m) if m.payload_len == 1400));
        let f = Msg::new(&[7; 1401]).build();
        assert_eq!(drop_of(&f), DropReason::Oversize);
    }

    #[test]
    fn arp_requests() {
        assert_eq!(
            classify(&arp_frame(1, OURS.ip), &OURS),
            Classified::ArpRequest
        );
        assert_eq!(
            drop_of(&arp_frame(1, [10, 0, 0, 2])),
            DropReason::ArpNotForUs
        );
        assert_eq!(drop_of(&arp_frame(2, OURS.ip)), DropReason::ArpOther);
        assert_eq!(drop_of(&arp_frame(3, OURS.ip)), DropReason::ArpOther);
        let mut f = arp_frame(1, OURS.ip);
        f[15] = 6; // hardware type 6 (IEEE 802)
        assert_eq!(drop_of(&f), DropReason::ArpOther);
        assert_eq!(drop_of(&arp_frame(1, OURS.ip)[..41]), DropReason::Runt);
    }

    /// One crafted frame per reason, each refused for exactly that reason.
    #[test]
    fn every_drop_reason() {
        let good = Msg::new(b"ORDER");
        let base = good.build();
        let mut seen = Vec::new();
        let mut expect = |f: &[u8], r: DropReason| {
            assert_eq!(drop_of(f), r, "{}", r.as_str());
            seen.push(r);
        };

        expect(&base[..13], DropReason::Runt);
        expect(&base[..14 + 19], DropReason::Runt);
        let mut f = base.clone();
        f[14] = 0x46; // IHL 6 claims 24 bytes; only 20 present before the end
        expect(&f[..14 + 22], DropReason::Runt);

        let mut f = base.clone();
        f[17] += 1; // IP total length one past the frame
        fix_ip_checksum(&mut f);
        expect(&f, DropReason::Truncated);
        let mut f = base.clone();
        f[39] += 1; // UDP length one past the IP payload
        expect(&f, DropReason::Truncated);

        let other_mac = Msg {
            dst_mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
            ..good.clone()
        };
        expect(&other_mac.build(), DropReason::NotForUsMac);
        let multicast = Msg {
            dst_mac: EthernetAddress([1, 0, 0x5e, 0, 0, 1]),
            ..good.clone()
        };
        assert_eq!(drop_of(&multicast.build()), DropReason::NotForUsMac);

        expect(
            &Msg {
                ethertype: 0x8100,
                ..good.clone()
            }
            .build(),
            DropReason::Vlan,
        );
        assert_eq!(
            drop_of(
                &Msg {
                    ethertype: 0x88a8,
                    ..good.clone()
                }
                .build()
            ),
            DropReason::Vlan
        );
        expect(
            &Msg {
                ethertype: 0x86dd,
                ..good.clone()
            }
            .build(),
            DropReason::Ipv6,
        );
        expect(
            &Msg {
                ethertype: 0x88b5,
                ..good.clone()
            }
            .build(),
            DropReason::UnknownEtherType,
        );

        expect(&arp_frame(1, [10, 0, 0, 2]), DropReason::ArpNotForUs);
        expect(&arp_frame(2, OURS.ip), DropReason::ArpOther);

        let mut f = base.clone();
        f[14] = 0x65; // version 6 inside an IPv4 EtherType
        expect(&f, DropReason::Ipv4BadHeader);
        let mut f = base.clone();
        f[14] = 0x44; // IHL 4
        assert_eq!(drop_of(&f), DropReason::Ipv4BadHeader);
        let mut f = base.clone();
        f[16] = 0;
        f[17] = 19; // total length < header length
        fix_ip_checksum(&mut f);
        assert_eq!(drop_of(&f), DropReason::Ipv4BadHeader);

        let mut f = base.clone();
        f[24] ^= 0xff;
        expect(&f, DropReason::Ipv4BadChecksum);

        expect(
            &Msg {
                flags_frag: 0x2000,
                ..good.clone()
            }
            .build(),
            DropReason::Ipv4Fragment,
        );
        let offset = Msg {
            flags_frag: 0x0001,
            ..good.clone()
        };
        assert_eq!(drop_of(&offset.build()), DropReason::Ipv4Fragment);

        expect(
            &Msg {
                dst_ip: [10, 0, 0, 2],
                ..good.clone()
            }
            .build(),
            DropReason::Ipv4NotForUs,
        );
        expect(
            &Msg {
                protocol: 6,
                ..good.clone()
            }
            .build(),
            DropReason::IpProtoOther,
        );

        let mut f = base.clone();
        f[38] = 0;
        f[39] = 7; // UDP length < 8
        expect(&f, DropReason::UdpBadLength);
        let mut f = base.clone();
        f[39] -= 1; // UDP length one short of the IP payload
        assert_eq!(drop_of(&f), DropReason::UdpBadLength);
        let mut f = base[..14 + 20 + 4].to_vec();
        f[17] = 24; // IP payload of 4 bytes: no room for a UDP header
        fix_ip_checksum(&mut f);
        assert_eq!(drop_of(&f), DropReason::UdpBadLength);

        let mut f = base.clone();
        f[44] ^= 0x01; // one payload bit
        expect(&f, DropReason::UdpBadChecksum);

        expect(
            &Msg {
                dst_port: 9001,
                ..good.clone()
            }
            .build(),
            DropReason::UdpWrongPort,
        );
        expect(&Msg::new(b"").build(), DropReason::EmptyPayload);
        expect(&Msg::new(&[0; 1401]).build(), DropReason::Oversize);

        // Gateway mode's own reasons have theirs in gateway.rs.
        for r in DropReason::ALL {
            if DropReason::GATEWAY_ONLY.contains(&r) {
                continue;
            }
            assert!(seen.contains(&r), "no test frame for {}", r.as_str());
        }
    }

    #[test]
    fn reasons_are_dense_and_named() {
        assert_eq!(DropReason::COUNT, DropReason::ALL.len());
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            let name = r.as_str();
            assert!(name
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'));
            for other in &DropReason::ALL[i + 1..] {
                assert_ne!(name, other.as_str());
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Classified::Message(m) = classify(&bytes, &OURS) {
                prop_assert!(usize::from(m.payload_off) + usize::from(m.payload_len) <= bytes.len());
            }
        }

        /// Valid frames with one byte changed exercise the deep paths random bytes rarely
        /// reach; whatever is accepted is still inside the frame and checksums right.
        #[test]
        fn mutated_messages_never_panic(
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            at in any::<proptest::sample::Index>(),
            value in any::<u8>(),
            cut in any::<proptest::sample::Index>(),
        ) {
            let mut f = Msg::new(&payload).build();
            let i = at.index(f.len());
            f[i] = value;
            let len = cut.index(f.len() + 1);
            if let Classified::Message(m) = classify(&f[..len], &OURS) {
                let end = usize::from(m.payload_off) + usize::from(m.payload_len);
                prop_assert!(end <= len);
                let s = checksum::data(&f[14..usize::from(m.payload_off) - 8]);
                prop_assert_eq!(s, 0xFFFF);
            }
        }
    }
}
