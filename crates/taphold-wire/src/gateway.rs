//! Gateway mode's classifier and forwarding rewrite: the appliance as the IPv4 next hop
//! between a trading engine and an exchange (seed 000 ¶14: the device "can be a router,
//! switch").
//!
//! Every frame from P is one of: an ARP request for our address (answered), an ARP
//! reply to us (learned), a *protected* TCP segment (engine → exchange, matching a
//! `protect` rule: held until its backup frame's tap copy returns), *return* traffic of
//! a protected flow (exchange → engine: forwarded at once, its acknowledgement number
//! read as the exchange's confirmation), other routable IPv4 (forwarded at once, or
//! refused, by rule), or something dropped and counted ([`DropReason`]).
//!
//! Forwarding changes only what a router changes: both Ethernet addresses, the TTL
//! (decremented) and the IPv4 header checksum (updated incrementally, RFC 1624). The
//! IPv4 payload — TCP header, options and data — leaves byte-identical.
//!
//! Like [`crate::classify`], this reads without allocating or copying, and never panics.

use crate::arp;
use crate::checksum;
use crate::classify::DropReason;
use crate::ethernet::{self, EtherType, EthernetAddress, Frame};
use crate::ipv4;
use crate::tcp;
use crate::WireError;

/// An IPv4 prefix, `addr/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Prefix {
    /// The network address (host bits are ignored).
    pub addr: [u8; 4],
    /// Prefix length, 0..=32.
    pub len: u8,
}

impl Ipv4Prefix {
    /// Whether `ip` is inside the prefix.
    #[inline]
    pub fn contains(&self, ip: [u8; 4]) -> bool {
        let mask = match self.len {
            0 => 0,
            l => u32::MAX << (32 - u32::from(l.min(32))),
        };
        u32::from_be_bytes(ip) & mask == u32::from_be_bytes(self.addr) & mask
    }
}

/// A route: destinations in `prefix` go to `via`, or are on the segment of port
/// `port` themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The destinations it covers.
    pub prefix: Ipv4Prefix,
    /// The next hop; None: directly connected (the destination is its own next hop).
    pub via: Option<[u8; 4]>,
    /// The port its prefix (or its `via` router) is reached on: [`PORT_P`] or
    /// [`PORT_Q`].
    pub port: u8,
}

/// The primary port P.
pub const PORT_P: u8 = 0;
/// The optional second gateway port Q (`gateway.port2`).
pub const PORT_Q: u8 = 1;

/// A protection rule: TCP to `dst` on ports `ports.0..=ports.1` is held and backed up
/// (for example an exchange's FIX order-entry gateways).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtectRule {
    /// The protected destinations.
    pub dst: Ipv4Prefix,
    /// First and last protected destination port.
    pub ports: (u16, u16),
}

impl ProtectRule {
    #[inline]
    fn covers(&self, ip: [u8; 4], port: u16) -> bool {
        self.dst.contains(ip) && (self.ports.0..=self.ports.1).contains(&port)
    }
}

/// The port `next_hop` is reached on: that of the longest directly connected
/// route in `routes` containing it, P if none does.
pub fn port_of(routes: &[Route], next_hop: [u8; 4]) -> u8 {
    routes
        .iter()
        .filter(|r| r.via.is_none() && r.prefix.contains(next_hop))
        .max_by_key(|r| r.prefix.len)
        .map_or(PORT_P, |r| r.port)
}

/// What the classifier needs to know: our address and the configured rules.
#[derive(Debug, Clone, Copy)]
pub struct GatewayRules<'a> {
    /// The MAC of the port the frame came in on (P's, or Q's with two ports).
    pub mac: EthernetAddress,
    /// That port's IPv4 address: ARP asks for it; nothing else is for it.
    pub ip: [u8; 4],
    /// More addresses of ours on this port, answered like `ip` (the gateway
    /// address of each subnet we route for, when they share one segment).
    pub also: &'a [[u8; 4]],
    /// Our addresses on the other port (two-port gateway): IPv4 to them is to
    /// us, but ARP for them is not answered here.
    pub elsewhere: &'a [[u8; 4]],
    /// Routes, longest prefix wins.
    pub routes: &'a [Route],
    /// Protection rules (at most 255).
    pub protect: &'a [ProtectRule],
    /// Routable traffic no rule protects (and that is no return traffic): forwarded
    /// if true, refused ([`DropReason::RefusedByRule`]) if false.
    pub forward_other: bool,
    /// Largest protected segment payload (what one backup frame can carry).
    pub max_payload: u16,
}

impl GatewayRules<'_> {
    /// Whether `ip` is one of our addresses on this port.
    #[inline]
    pub fn is_ours(&self, ip: [u8; 4]) -> bool {
        ip == self.ip || self.also.contains(&ip)
    }

    /// Whether `ip` is one of our addresses on any port.
    #[inline]
    pub fn is_ours_anywhere(&self, ip: [u8; 4]) -> bool {
        self.is_ours(ip) || self.elsewhere.contains(&ip)
    }

    /// The port a next hop is reached on: that of the longest directly
    /// connected route containing it (validation puts every `via` inside one
    /// on the route's port), P if none does.
    pub fn port_of(&self, next_hop: [u8; 4]) -> u8 {
        port_of(self.routes, next_hop)
    }

    /// The next hop for `dst`: the longest matching route's.
    pub fn next_hop(&self, dst: [u8; 4]) -> Option<[u8; 4]> {
        self.routes
            .iter()
            .filter(|r| r.prefix.contains(dst))
            .max_by_key(|r| r.prefix.len)
            .map(|r| r.via.unwrap_or(dst))
    }

    /// The index of the first rule protecting (`ip`, `port`).
    fn protecting(&self, ip: [u8; 4], port: u16) -> Option<u8> {
        self.protect
            .iter()
            .position(|r| r.covers(ip, port))
            .map(|i| i as u8)
    }
}

/// A protected TCP flow, named in the protected direction (engine → exchange).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// The engine's address.
    pub src_ip: [u8; 4],
    /// The engine's port.
    pub src_port: u16,
    /// The exchange's address.
    pub dst_ip: [u8; 4],
    /// The exchange's port.
    pub dst_port: u16,
}

impl core::fmt::Display for FlowKey {
    /// `10.1.0.2:40000-10.2.0.2:9878`, the name the CLI takes.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d] = self.src_ip;
        let [e, g, h, i] = self.dst_ip;
        write!(
            f,
            "{a}.{b}.{c}.{d}:{}-{e}.{g}.{h}.{i}:{}",
            self.src_port, self.dst_port
        )
    }
}

/// A protected segment: where it is and what its backup frame carries of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentMeta {
    /// Its flow.
    pub flow: FlowKey,
    /// Ethernet source (the engine's, or its router's).
    pub src_mac: EthernetAddress,
    /// TCP sequence number.
    pub tcp_seq: u32,
    /// TCP flags byte.
    pub tcp_flags: u8,
    /// Offset of the TCP payload in the frame.
    pub payload_off: u16,
    /// Length of the TCP payload (0 for a pure ACK, a SYN, a FIN, an RST).
    pub payload_len: u16,
    /// Where to send it.
    pub next_hop: [u8; 4],
    /// The index of the protect rule it matched (the first that does).
    pub rule: u8,
}

/// What a frame from P is, in gateway mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayClass {
    /// An ARP request for one of our addresses, `ip`: answer with
    /// [`crate::arp::reply_in_place`].
    ArpRequest {
        /// The address asked for.
        ip: [u8; 4],
    },
    /// An ARP reply (or gratuitous ARP) addressed to us: `ip` is at `mac`.
    ArpReply {
        /// The sender's protocol address.
        ip: [u8; 4],
        /// Its hardware address.
        mac: EthernetAddress,
    },
    /// A segment of a protected flow: held, backed up, then forwarded.
    Protected(SegmentMeta),
    /// A segment of a protected flow's return direction: forwarded at once. `ack` is
    /// the exchange's acknowledgement number if the ACK flag is set and the checksum
    /// is right (a corrupted segment confirms nothing).
    Return {
        /// The flow, in the protected direction.
        flow: FlowKey,
        /// What the exchange acknowledges, if anything.
        ack: Option<u32>,
        /// Where to send it.
        next_hop: [u8; 4],
    },
    /// Other routable IPv4: forwarded at once.
    Forward {
        /// Where to send it.
        next_hop: [u8; 4],
    },
    /// Anything else, with the counter it goes to.
    Drop(DropReason),
}

/// Classifies one frame received on P (or Q, with Q's rules) in gateway mode.
///
/// A [`GatewayClass::Protected`] segment always satisfies
/// `payload_off + payload_len <= frame.len()` and has a correct TCP checksum.
pub fn classify_gateway(frame: &[u8], rules: &GatewayRules) -> GatewayClass {
    match classify_inner(frame, rules) {
        Ok(c) => c,
        Err(reason) => GatewayClass::Drop(reason),
    }
}

fn classify_inner(frame: &[u8], rules: &GatewayRules) -> Result<GatewayClass, DropReason> {
    let eth = Frame::new_checked(frame).map_err(|_| DropReason::Runt)?;
    let dst = eth.dst_addr();
    match eth.ethertype() {
        EtherType::ARP if dst == rules.mac || dst.is_broadcast() => {
            classify_arp(eth.payload(), rules)
        }
        // Routed traffic is addressed to our MAC; a broadcast is not for routing.
        EtherType::IPV4 if dst == rules.mac => classify_ipv4(eth.src_addr(), eth.payload(), rules),
        EtherType::ARP | EtherType::IPV4 => Err(DropReason::NotForUsMac),
        EtherType::VLAN | EtherType::QINQ => Err(DropReason::Vlan),
        EtherType::IPV6 => Err(DropReason::Ipv6),
        _ => Err(DropReason::UnknownEtherType),
    }
}

fn classify_arp(bytes: &[u8], rules: &GatewayRules) -> Result<GatewayClass, DropReason> {
    let arp = arp::Packet::new_checked(bytes).map_err(|_| DropReason::Runt)?;
    if !arp.is_ethernet_ipv4() {
        return Err(DropReason::ArpOther);
    }
    match arp.operation() {
        arp::Operation::Request if rules.is_ours(arp.target_protocol_addr()) => {
            Ok(GatewayClass::ArpRequest {
                ip: arp.target_protocol_addr(),
            })
        }
        arp::Operation::Request => Err(DropReason::ArpNotForUs),
        arp::Operation::Reply if rules.is_ours(arp.target_protocol_addr()) => {
            let mac = arp.source_hardware_addr();
            // A reply claiming a broadcast or multicast MAC is not a neighbour.
            if mac.0[0] & 1 != 0 {
                return Err(DropReason::ArpOther);
            }
            Ok(GatewayClass::ArpReply {
                ip: arp.source_protocol_addr(),
                mac,
            })
        }
        arp::Operation::Reply => Err(DropReason::ArpNotForUs),
        arp::Operation::Unknown(_) => Err(DropReason::ArpOther),
    }
}

fn classify_ipv4(
    src_mac: EthernetAddress,
    bytes: &[u8],
    rules: &GatewayRules,
) -> Result<GatewayClass, DropReason> {
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
    if !ip.verify_checksum() {
        return Err(DropReason::Ipv4BadChecksum);
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if rules.is_ours_anywhere(dst) {
        return Err(DropReason::Ipv4ToUs);
    }
    if ip.ttl() <= 1 {
        return Err(DropReason::TtlExpired);
    }
    let next_hop = rules.next_hop(dst).ok_or(DropReason::NoRoute)?;
    // Bytes after the IPv4 total length (Ethernet padding) are not the segment's.
    let datagram = &bytes[header_len..total_len];
    let tcp_ports = (ip.protocol() == ipv4::PROTOCOL_TCP && datagram.len() >= 4)
        .then(|| (be16(&datagram[0..2]), be16(&datagram[2..4])));

    if let Some((sport, dport)) = tcp_ports {
        if let Some(rule) = rules.protecting(dst, dport) {
            if ip.is_fragment() {
                // A fragment cannot be backed up as a segment; we never reassemble.
                return Err(DropReason::Ipv4Fragment);
            }
            let seg = tcp::Packet::new_checked(datagram).map_err(|_| DropReason::TcpBadHeader)?;
            if seg.payload().len() > usize::from(rules.max_payload) {
                return Err(DropReason::Oversize);
            }
            if !seg.verify_checksum(src, dst) {
                return Err(DropReason::TcpBadChecksum);
            }
            let payload_off = ethernet::HEADER_LEN + header_len + usize::from(seg.header_len());
            return Ok(GatewayClass::Protected(SegmentMeta {
                flow: FlowKey {
                    src_ip: src,
                    src_port: sport,
                    dst_ip: dst,
                    dst_port: dport,
                },
                src_mac,
                tcp_seq: seg.seq_number(),
                tcp_flags: seg.flags(),
                // Both fit u16: at most 14 + 60 + 60, and ≤ max_payload.
                payload_off: payload_off as u16,
                payload_len: seg.payload().len() as u16,
                next_hop,
                rule,
            }));
        }
        if rules.protecting(src, sport).is_some() {
            let flow = FlowKey {
                src_ip: dst,
                src_port: dport,
                dst_ip: src,
                dst_port: sport,
            };
            let ack = tcp::Packet::new_checked(datagram)
                .ok()
                .filter(|s| !ip.is_fragment() && s.flags() & tcp::flags::ACK != 0)
                .filter(|s| s.verify_checksum(src, dst))
                .map(|s| s.ack_number());
            return Ok(GatewayClass::Return {
                flow,
                ack,
                next_hop,
            });
        }
    }
    if rules.forward_other {
        Ok(GatewayClass::Forward { next_hop })
    } else {
        Err(DropReason::RefusedByRule)
    }
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// Rewrites a frame the classifier said to forward (or a protected segment, once
/// released) for its next hop, in place: Ethernet destination `next_hop_mac`, source
/// `our_mac`, TTL one less, IPv4 checksum updated incrementally. Nothing else changes.
///
/// [`WireError::Truncated`] if the frame is not an untagged IPv4 frame with a full
/// header; [`WireError::Malformed`] if the TTL is already ≤ 1 (the classifier drops
/// those). The frame is untouched on error.
pub fn forward_in_place(
    frame: &mut [u8],
    our_mac: EthernetAddress,
    next_hop_mac: EthernetAddress,
) -> Result<(), WireError> {
    if frame.len() < ethernet::HEADER_LEN + ipv4::HEADER_LEN {
        return Err(WireError::Truncated);
    }
    let mut ip = ipv4::Packet::new_unchecked(&mut frame[ethernet::HEADER_LEN..]);
    let ttl = ip.ttl();
    if ttl <= 1 {
        return Err(WireError::Malformed);
    }
    // TTL shares a 16-bit word with the protocol: only the high byte changes.
    let proto = u16::from(ip.protocol());
    let old = u16::from(ttl) << 8 | proto;
    let new = u16::from(ttl - 1) << 8 | proto;
    let sum = checksum::update(ip.checksum(), old, new);
    ip.set_ttl(ttl - 1);
    ip.set_checksum(sum);
    let mut eth = Frame::new_unchecked(&mut frame[..]);
    eth.set_dst_addr(next_hop_mac);
    eth.set_src_addr(our_mac);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethernet::EthernetRepr;
    use crate::ipv4::Ipv4Repr;

    const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
    const ENGINE_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x0e]);
    const OUR_IP: [u8; 4] = [10, 71, 1, 1];
    const ENGINE: [u8; 4] = [10, 71, 1, 2];
    const EXCHANGE: [u8; 4] = [10, 71, 2, 2];

    const ROUTES: [Route; 3] = [
        Route {
            prefix: Ipv4Prefix {
                addr: [10, 71, 1, 0],
                len: 24,
            },
            via: None,
            port: PORT_P,
        },
        Route {
            prefix: Ipv4Prefix {
                addr: [10, 71, 2, 0],
                len: 24,
            },
            via: None,
            port: PORT_P,
        },
        Route {
            prefix: Ipv4Prefix {
                addr: [10, 0, 0, 0],
                len: 8,
            },
            via: Some([10, 71, 2, 254]),
            port: PORT_P,
        },
    ];
    const PROTECT: [ProtectRule; 1] = [ProtectRule {
        dst: Ipv4Prefix {
            addr: [10, 71, 2, 0],
            len: 24,
        },
        ports: (9878, 9880),
    }];

    fn rules(forward_other: bool) -> GatewayRules<'static> {
        GatewayRules {
            mac: OUR_MAC,
            ip: OUR_IP,
            also: &[[10, 71, 2, 1]],
            elsewhere: &[],
            routes: &ROUTES,
            protect: &PROTECT,
            forward_other,
            max_payload: 1400,
        }
    }

    /// An Ethernet/IPv4/TCP frame to our MAC, checksums right.
    fn tcp_frame(
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        flags: u8,
        data: &[u8],
    ) -> Vec<u8> {
        let seg_len = tcp::HEADER_LEN + data.len();
        let mut b = vec![0u8; ethernet::HEADER_LEN + ipv4::HEADER_LEN + seg_len];
        EthernetRepr {
            src_addr: ENGINE_MAC,
            dst_addr: OUR_MAC,
            ethertype: EtherType::IPV4,
        }
        .emit(&mut b)
        .unwrap();
        Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            protocol: ipv4::PROTOCOL_TCP,
            payload_len: seg_len as u16,
            ttl: 64,
        }
        .emit(&mut b[14..])
        .unwrap();
        let s = &mut b[34..];
        s[20..].copy_from_slice(data);
        let mut t = tcp::Packet::new_unchecked(s);
        t.set_src_port(sport);
        t.set_dst_port(dport);
        t.set_seq_number(1000);
        t.set_ack_number(5000);
        t.set_header_len(20);
        t.set_flags(flags);
        t.set_window(512);
        t.fill_checksum(src, dst);
        b
    }

    #[test]
    fn prefixes() {
        let p = Ipv4Prefix {
            addr: [10, 71, 2, 0],
            len: 24,
        };
        assert!(p.contains([10, 71, 2, 255]));
        assert!(!p.contains([10, 71, 3, 0]));
        let all = Ipv4Prefix {
            addr: [0; 4],
            len: 0,
        };
        assert!(all.contains([255, 1, 2, 3]));
        let host = Ipv4Prefix {
            addr: [1, 2, 3, 4],
            len: 32,
        };
        assert!(host.contains([1, 2, 3, 4]) && !host.contains([1, 2, 3, 5]));
    }

    #[test]
    fn longest_prefix_wins() {
        let r = rules(true);
        assert_eq!(r.next_hop([10, 71, 2, 9]), Some([10, 71, 2, 9]));
        assert_eq!(r.next_hop([10, 9, 9, 9]), Some([10, 71, 2, 254]));
        assert_eq!(r.next_hop([192, 0, 2, 1]), None);
    }

    #[test]
    fn order_to_the_exchange_is_protected() {
        let data = b"8=FIX.4.2\x019=5\x0135=0\x0110=000\x01";
        let f = tcp_frame(
            ENGINE,
            40000,
            EXCHANGE,
            9878,
            tcp::flags::ACK | tcp::flags::PSH,
            data,
        );
        let GatewayClass::Protected(m) = classify_gateway(&f, &rules(false)) else {
            panic!("not protected: {:?}", classify_gateway(&f, &rules(false)))
        };
        assert_eq!(m.flow.to_string(), "10.71.1.2:40000-10.71.2.2:9878");
        assert_eq!(m.tcp_seq, 1000);
        assert_eq!(m.payload_len as usize, data.len());
        assert_eq!(&f[m.payload_off as usize..], &data[..]);
        assert_eq!(m.next_hop, EXCHANGE);
        assert_eq!(m.src_mac, ENGINE_MAC);
    }

    #[test]
    fn pure_ack_of_a_protected_flow_is_protected_too() {
        // It must not overtake held data of its flow: ingress decides how to hold it.
        let f = tcp_frame(ENGINE, 40000, EXCHANGE, 9880, tcp::flags::ACK, &[]);
        match classify_gateway(&f, &rules(false)) {
            GatewayClass::Protected(m) => assert_eq!(m.payload_len, 0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn return_traffic_carries_the_exchange_ack() {
        let f = tcp_frame(EXCHANGE, 9878, ENGINE, 40000, tcp::flags::ACK, b"exec");
        assert_eq!(
            classify_gateway(&f, &rules(false)),
            GatewayClass::Return {
                flow: FlowKey {
                    src_ip: ENGINE,
                    src_port: 40000,
                    dst_ip: EXCHANGE,
                    dst_port: 9878
                },
                ack: Some(5000),
                next_hop: ENGINE,
            }
        );
        // A corrupted one is still forwarded, but confirms nothing.
        let mut bad = f.clone();
        *bad.last_mut().unwrap() ^= 1;
        match classify_gateway(&bad, &rules(false)) {
            GatewayClass::Return { ack, .. } => assert_eq!(ack, None),
            other => panic!("{other:?}"),
        }
        // Without ACK set the number means nothing.
        let syn = tcp_frame(EXCHANGE, 9878, ENGINE, 40000, tcp::flags::SYN, &[]);
        match classify_gateway(&syn, &rules(false)) {
            GatewayClass::Return { ack, .. } => assert_eq!(ack, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_traffic_by_rule() {
        let f = tcp_frame(ENGINE, 40000, EXCHANGE, 22, tcp::flags::ACK, b"ssh");
        assert_eq!(
            classify_gateway(&f, &rules(true)),
            GatewayClass::Forward { next_hop: EXCHANGE }
        );
        assert_eq!(
            classify_gateway(&f, &rules(false)),
            GatewayClass::Drop(DropReason::RefusedByRule)
        );
    }

    #[test]
    fn drops_by_name() {
        let r = rules(true);
        let mut seen = Vec::new();
        let mut drop = |f: &[u8]| match classify_gateway(f, &r) {
            GatewayClass::Drop(d) => {
                seen.push(d);
                d
            }
            other => panic!("{other:?}"),
        };
        let good = tcp_frame(ENGINE, 40000, EXCHANGE, 9878, tcp::flags::ACK, b"x");
        // No route.
        let f = tcp_frame(ENGINE, 40000, [192, 0, 2, 1], 9878, tcp::flags::ACK, b"x");
        assert_eq!(drop(&f), DropReason::NoRoute);
        // To us.
        let f = tcp_frame(ENGINE, 40000, OUR_IP, 9878, tcp::flags::ACK, b"x");
        assert_eq!(drop(&f), DropReason::Ipv4ToUs);
        // TTL 1.
        let mut f = good.clone();
        let mut ip = ipv4::Packet::new_unchecked(&mut f[14..]);
        ip.set_ttl(1);
        ip.fill_checksum();
        assert_eq!(drop(&f), DropReason::TtlExpired);
        // Bad TCP checksum on a protected flow.
        let mut f = good.clone();
        *f.last_mut().unwrap() ^= 0x40;
        assert_eq!(drop(&f), DropReason::TcpBadChecksum);
        // Bad IPv4 checksum.
        let mut f = good.clone();
        f[24] ^= 1;
        assert_eq!(drop(&f), DropReason::Ipv4BadChecksum);
        // Not our MAC.
        let mut f = good.clone();
        f[5] = 0x99;
        assert_eq!(drop(&f), DropReason::NotForUsMac);
        // A bad data offset.
        let mut f = good.clone();
        f[34 + 12] = 4 << 4;
        let mut t = tcp::Packet::new_unchecked(&mut f[34..]);
        t.fill_checksum(ENGINE, EXCHANGE);
        assert_eq!(drop(&f), DropReason::TcpBadHeader);
        // Oversize for one backup frame.
        let big = vec![b'x'; 1401];
        let f = tcp_frame(ENGINE, 40000, EXCHANGE, 9878, tcp::flags::ACK, &big);
        assert_eq!(drop(&f), DropReason::Oversize);
        // Runt.
        assert_eq!(drop(&good[..10]), DropReason::Runt);
        // Truncated below the IPv4 total length.
        assert_eq!(drop(&good[..good.len() - 1]), DropReason::Truncated);
        // A fragment of a protected flow.
        let mut f = good.clone();
        let mut ip = ipv4::Packet::new_unchecked(&mut f[14..]);
        ip.set_unfragmented(false);
        f[14 + 6] |= 0x20; // MF
        let mut ip = ipv4::Packet::new_unchecked(&mut f[14..]);
        ip.fill_checksum();
        assert_eq!(drop(&f), DropReason::Ipv4Fragment);
        let refused = tcp_frame(ENGINE, 40000, EXCHANGE, 22, tcp::flags::ACK, b"x");
        assert_eq!(
            classify_gateway(&refused, &rules(false)),
            GatewayClass::Drop(DropReason::RefusedByRule)
        );
        seen.push(DropReason::RefusedByRule);
        for r in DropReason::GATEWAY_ONLY {
            assert!(seen.contains(&r), "no test frame for {}", r.as_str());
        }
    }

    #[test]
    fn every_truncation_is_dropped_or_consistent() {
        let f = tcp_frame(
            ENGINE,
            40000,
            EXCHANGE,
            9878,
            tcp::flags::ACK,
            b"8=FIX.4.2\x01",
        );
        for n in 0..f.len() {
            match classify_gateway(&f[..n], &rules(true)) {
                GatewayClass::Drop(_) => {}
                other => panic!("{n}: {other:?}"),
            }
        }
    }

    #[test]
    fn arp() {
        let r = rules(true);
        let mut f = vec![0u8; arp::FRAME_LEN];
        EthernetRepr {
            src_addr: ENGINE_MAC,
            dst_addr: OUR_MAC,
            ethertype: EtherType::ARP,
        }
        .emit(&mut f)
        .unwrap();
        let mut a = arp::ArpRepr {
            operation: arp::Operation::Reply,
            source_hardware_addr: ENGINE_MAC,
            source_protocol_addr: ENGINE,
            target_hardware_addr: OUR_MAC,
            target_protocol_addr: OUR_IP,
        };
        a.emit(&mut f[14..]).unwrap();
        assert_eq!(
            classify_gateway(&f, &r),
            GatewayClass::ArpReply {
                ip: ENGINE,
                mac: ENGINE_MAC
            }
        );
        a.operation = arp::Operation::Request;
        a.emit(&mut f[14..]).unwrap();
        assert_eq!(
            classify_gateway(&f, &r),
            GatewayClass::ArpRequest { ip: OUR_IP }
        );
        // The other subnet's gateway address is ours too.
        a.target_protocol_addr = [10, 71, 2, 1];
        a.emit(&mut f[14..]).unwrap();
        assert_eq!(
            classify_gateway(&f, &r),
            GatewayClass::ArpRequest { ip: [10, 71, 2, 1] }
        );
        a.target_protocol_addr = EXCHANGE;
        a.emit(&mut f[14..]).unwrap();
        assert_eq!(
            classify_gateway(&f, &r),
            GatewayClass::Drop(DropReason::ArpNotForUs)
        );
        // A reply claiming a multicast MAC is refused.
        a.operation = arp::Operation::Reply;
        a.target_protocol_addr = OUR_IP;
        a.source_hardware_addr = EthernetAddress([1, 0, 0x5e, 0, 0, 1]);
        a.emit(&mut f[14..]).unwrap();
        assert_eq!(
            classify_gateway(&f, &r),
            GatewayClass::Drop(DropReason::ArpOther)
        );
    }

    /// Two ports: each port's rules answer ARP for its own addresses only,
    /// IPv4 to an address on either port is to us, and a next hop's port is
    /// that of its directly connected route.
    #[test]
    fn two_ports_answer_arp_per_port_and_route_by_port() {
        const Q_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);
        const Q_IP: [u8; 4] = [10, 71, 2, 1];
        let routes = [
            Route {
                prefix: Ipv4Prefix {
                    addr: [10, 71, 1, 0],
                    len: 24,
                },
                via: None,
                port: PORT_P,
            },
            Route {
                prefix: Ipv4Prefix {
                    addr: [10, 71, 2, 0],
                    len: 24,
                },
                via: None,
                port: PORT_Q,
            },
            Route {
                prefix: Ipv4Prefix {
                    addr: [10, 0, 0, 0],
                    len: 8,
                },
                via: Some([10, 71, 2, 254]),
                port: PORT_Q,
            },
        ];
        let p = GatewayRules {
            also: &[],
            elsewhere: &[Q_IP],
            routes: &routes,
            ..rules(true)
        };
        let q = GatewayRules {
            mac: Q_MAC,
            ip: Q_IP,
            also: &[],
            elsewhere: &[OUR_IP],
            ..p
        };
        assert_eq!(p.port_of(ENGINE), PORT_P);
        assert_eq!(p.port_of(EXCHANGE), PORT_Q);
        assert_eq!(p.port_of([10, 71, 2, 254]), PORT_Q);
        assert_eq!(p.next_hop([10, 9, 9, 9]), Some([10, 71, 2, 254]));
        // Not on any connected route: P.
        assert_eq!(p.port_of([192, 0, 2, 1]), PORT_P);

        let arp_to = |mac: EthernetAddress, target: [u8; 4]| {
            let mut f = vec![0u8; arp::FRAME_LEN];
            EthernetRepr {
                src_addr: ENGINE_MAC,
                dst_addr: mac,
                ethertype: EtherType::ARP,
            }
            .emit(&mut f)
            .unwrap();
            arp::ArpRepr {
                operation: arp::Operation::Request,
                source_hardware_addr: ENGINE_MAC,
                source_protocol_addr: ENGINE,
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: target,
            }
            .emit(&mut f[14..])
            .unwrap();
            f
        };
        let ask_p = arp_to(EthernetAddress::BROADCAST, OUR_IP);
        let ask_q = arp_to(EthernetAddress::BROADCAST, Q_IP);
        assert_eq!(
            classify_gateway(&ask_p, &p),
            GatewayClass::ArpRequest { ip: OUR_IP }
        );
        assert_eq!(
            classify_gateway(&ask_q, &q),
            GatewayClass::ArpRequest { ip: Q_IP }
        );
        // Asked on the wrong port: not answered there.
        assert_eq!(
            classify_gateway(&ask_q, &p),
            GatewayClass::Drop(DropReason::ArpNotForUs)
        );
        assert_eq!(
            classify_gateway(&ask_p, &q),
            GatewayClass::Drop(DropReason::ArpNotForUs)
        );
        // IPv4 to Q's address arriving on P is to us, not routed.
        let f = tcp_frame(ENGINE, 40000, Q_IP, 9878, tcp::flags::ACK, b"x");
        assert_eq!(
            classify_gateway(&f, &p),
            GatewayClass::Drop(DropReason::Ipv4ToUs)
        );
        // On Q, only frames to Q's MAC are routed.
        assert_eq!(
            classify_gateway(&f, &q),
            GatewayClass::Drop(DropReason::NotForUsMac)
        );
        let mut r = tcp_frame(EXCHANGE, 9878, ENGINE, 40000, tcp::flags::ACK, b"");
        r[0..6].copy_from_slice(&Q_MAC.0);
        match classify_gateway(&r, &q) {
            GatewayClass::Return { next_hop, .. } => {
                assert_eq!(next_hop, ENGINE);
                assert_eq!(q.port_of(next_hop), PORT_P);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn forwarding_changes_only_macs_ttl_and_ip_checksum() {
        let f = tcp_frame(ENGINE, 40000, EXCHANGE, 9878, tcp::flags::ACK, b"order");
        let next = EthernetAddress([0x02, 0, 0, 0, 0, 0x0f]);
        let mut g = f.clone();
        forward_in_place(&mut g, OUR_MAC, next).unwrap();
        assert_eq!(&g[0..6], &next.0);
        assert_eq!(&g[6..12], &OUR_MAC.0);
        let ip = ipv4::Packet::new_unchecked(&g[14..]);
        assert_eq!(ip.ttl(), 63);
        assert!(ip.verify_checksum());
        let changed: Vec<usize> = (12..f.len()).filter(|&i| f[i] != g[i]).collect();
        // TTL (byte 22) and the IPv4 checksum (24, 25); nothing else after the MACs.
        assert!(
            changed.iter().all(|i| [22, 24, 25].contains(i)),
            "{changed:?}"
        );
        // TTL 1 cannot be forwarded.
        let mut h = f.clone();
        h[22] = 1;
        assert_eq!(
            forward_in_place(&mut h, OUR_MAC, next),
            Err(WireError::Malformed)
        );
        assert_eq!(
            forward_in_place(&mut h[..20], OUR_MAC, next),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn incremental_checksum_matches_full_recompute_for_every_ttl() {
        for ttl in 2..=255u8 {
            let mut f = tcp_frame(ENGINE, 40000, EXCHANGE, 9878, 0, b"");
            let mut ip = ipv4::Packet::new_unchecked(&mut f[14..]);
            ip.set_ttl(ttl);
            ip.fill_checksum();
            forward_in_place(&mut f, OUR_MAC, ENGINE_MAC).unwrap();
            let mut full = f.clone();
            let mut ip = ipv4::Packet::new_unchecked(&mut full[14..]);
            ip.fill_checksum();
            assert_eq!(f, full, "ttl {ttl}");
        }
    }
}
