//! The primary-port classifier, and the release rewrite of what it accepts.
//!
//! Input: a mode byte, the destination's IPv4 address (4 bytes) and UDP port (2), the
//! port the appliance sends from (2), then a frame received on P. Mode bit 0 fills
//! correct IPv4 and UDP checksums into the frame first (so that the fuzzer reaches what
//! lies past them); bit 1 adds a control port (9001).
//!
//! Whatever the classifier accepts as a message is checked against the wire views, then
//! rewritten for the destination (with and without the delivery header, as release
//! does, UDP checksum updated incrementally) and classified again as the destination
//! would: it must be a message carrying the same payload.

use taphold_wire::classify::{
    classify_with_control, Classified, DropReason, MessageMeta, PrimaryAddr,
};
use taphold_wire::ethernet::{EthernetAddress, Frame};
use taphold_wire::ipv4::Ipv4Repr;
use taphold_wire::udp::UdpRepr;
use taphold_wire::{arp, delivery, ipv4, udp, DeliveryRepr, Endpoint, Flags};

use crate::seeds::PRIMARY;
use crate::{Material, Target};

pub const TARGET: Target = Target {
    name: "classify",
    run,
    seeds,
};

const CONTROL_PORT: u16 = 9001;
const DEST_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0x0d, 0x01]);
const PREFIX: usize = 9;

fn seeds(m: &Material) -> Vec<Vec<u8>> {
    m.frame_sample()
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let mut s = vec![(i % 4) as u8, 203, 0, 113, 5, 0x1b, 0x58, 0x23, 0x28];
            s.extend_from_slice(&f);
            s
        })
        .collect()
}

pub fn run(data: &[u8]) {
    if data.len() < PREFIX {
        return;
    }
    let mode = data[0];
    let to = Endpoint {
        mac: DEST_MAC,
        ip: [data[1], data[2], data[3], data[4]],
        port: u16::from_be_bytes([data[5], data[6]]),
    };
    let from = Endpoint {
        mac: PRIMARY.mac,
        ip: PRIMARY.ip,
        port: u16::from_be_bytes([data[7], data[8]]),
    };
    let mut frame = data[PREFIX..].to_vec();
    if mode & 1 != 0 {
        fill_checksums(&mut frame);
    }
    let control = if mode & 2 != 0 { CONTROL_PORT } else { 0 };
    match classify_with_control(&frame, &PRIMARY, control) {
        Classified::Drop(r) => {
            assert!(r.index() < DropReason::COUNT && !r.as_str().is_empty());
            assert_eq!(DropReason::ALL[r.index()], r);
        }
        Classified::ArpRequest => {
            let mut f = frame.clone();
            arp::reply_in_place(&mut f, PRIMARY.mac, PRIMARY.ip)
                .expect("an accepted ARP request is answered");
        }
        Classified::Control(m) => {
            let payload = check_message(&frame, &m);
            assert_eq!(udp_dst_port(&frame, &m), CONTROL_PORT);
            assert!(!payload.is_empty());
        }
        Classified::Message(m) => {
            let payload = check_message(&frame, &m).to_vec();
            assert_eq!(udp_dst_port(&frame, &m), PRIMARY.udp_port);
            released(&frame, &m, &from, &to, &[], &payload);
            let header = DeliveryRepr {
                flags: Flags::EMPTY,
                stream: 7,
                epoch: 9,
                seq: 1,
                src_ip: m.src_ip,
                src_port: m.src_port,
                release_ns: 5,
            }
            .to_bytes();
            released(&frame, &m, &from, &to, &header, &payload);
        }
    }
}

/// A message the classifier accepted, read again through the views: returns its payload.
fn check_message<'a>(frame: &'a [u8], m: &MessageMeta) -> &'a [u8] {
    let off = usize::from(m.payload_off);
    let len = usize::from(m.payload_len);
    assert!(off + len <= frame.len(), "the payload lies past the frame");
    assert!(len >= 1 && len <= usize::from(PRIMARY.max_payload));
    let eth = Frame::new_checked(frame).expect("an accepted frame has a header");
    assert!(eth.dst_addr() == PRIMARY.mac || eth.dst_addr().is_broadcast());
    assert_eq!(eth.src_addr(), m.src_mac);
    let ip = ipv4::Packet::new_checked(eth.payload()).expect("an accepted frame's IPv4 checks");
    let ip_repr = Ipv4Repr::parse(&ip).expect("an accepted frame's IPv4 parses");
    assert_eq!(ip_repr.dst_addr, PRIMARY.ip);
    assert_eq!(ip_repr.src_addr, m.src_ip);
    assert_eq!(ip_repr.protocol, ipv4::PROTOCOL_UDP);
    let dgram = udp::Packet::new_checked(ip.payload()).expect("an accepted datagram checks");
    assert_eq!(
        usize::from(dgram.len()),
        ip.payload().len(),
        "UDP length is the IP payload"
    );
    let udp_repr = UdpRepr::parse(&dgram, ip_repr.src_addr, ip_repr.dst_addr)
        .expect("an accepted datagram's checksum holds");
    assert_eq!(udp_repr.src_port, m.src_port);
    assert_eq!(dgram.checksum(), m.udp_checksum);
    assert_eq!(dgram.payload(), &frame[off..off + len]);
    &frame[off..off + len]
}

fn udp_dst_port(frame: &[u8], m: &MessageMeta) -> u16 {
    let at = usize::from(m.payload_off) - udp::HEADER_LEN + 2;
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

/// Rewrites the message for `to` as release does, with `prefix` before the payload, and
/// classifies the result as the destination would.
fn released(
    frame: &[u8],
    m: &MessageMeta,
    from: &Endpoint,
    to: &Endpoint,
    prefix: &[u8],
    payload: &[u8],
) {
    let mut buf = vec![0u8; prefix.len()];
    buf.extend_from_slice(frame);
    let mut meta = *m;
    meta.payload_off += prefix.len() as u16;
    let start = taphold_wire::rewrite_released_framed(&mut buf, &meta, from, to, prefix)
        .expect("an accepted message is released");
    let end = start + taphold_wire::UDP_FRAME_HEADER_LEN + prefix.len() + payload.len();
    let out = &buf[start..end];
    let dest = PrimaryAddr {
        mac: to.mac,
        ip: to.ip,
        udp_port: to.port,
        max_payload: u16::MAX,
    };
    match classify_with_control(out, &dest, 0) {
        Classified::Message(r) => {
            let got = &out[usize::from(r.payload_off)..][..usize::from(r.payload_len)];
            assert_eq!(&got[..prefix.len()], prefix);
            assert_eq!(&got[prefix.len()..], payload, "release changed the payload");
            assert_eq!(r.src_ip, from.ip);
            assert_eq!(r.src_port, from.port);
            assert_eq!(r.src_mac, from.mac);
            if !prefix.is_empty() {
                let d = delivery::Packet::new_checked(got).expect("the delivery header checks");
                assert_eq!(d.payload(), payload);
            }
        }
        other => panic!(
            "a released message ({}-byte prefix) reads at the destination as {other:?}",
            prefix.len()
        ),
    }
}

/// Fills correct IPv4 header and UDP checksums into an untagged IPv4 frame, as far as
/// its lengths allow (a UDP checksum of 0, "none", is left alone).
fn fill_checksums(frame: &mut [u8]) {
    if frame.len() < 14 + ipv4::HEADER_LEN || frame[12..14] != [0x08, 0x00] {
        return;
    }
    let ip_bytes = &mut frame[14..];
    let ihl = usize::from(ip_bytes[0] & 0x0f) * 4;
    if ihl < ipv4::HEADER_LEN || ip_bytes.len() < ihl {
        return;
    }
    ipv4::Packet::new_unchecked(&mut ip_bytes[..]).fill_checksum();
    let ip = ipv4::Packet::new_unchecked(&ip_bytes[..]);
    let total = usize::from(ip.total_len());
    if ip.protocol() != ipv4::PROTOCOL_UDP || total < ihl || total > ip_bytes.len() {
        return;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let dgram = &mut ip_bytes[ihl..total];
    if udp::Packet::new_checked(&dgram[..]).is_ok_and(|u| u.checksum() != 0) {
        udp::Packet::new_unchecked(dgram).fill_checksum(src, dst);
    }
}
