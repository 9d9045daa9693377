//! The ARP view, and the in-place reply the appliance sends for its own address.

use taphold_wire::arp::{self, ArpRepr, Operation, Packet, PACKET_LEN};
use taphold_wire::ethernet::{self, Frame};

use crate::seeds::PRIMARY;
use crate::{Material, Target};

pub const TARGET: Target = Target {
    name: "arp",
    run,
    seeds,
};

/// ARP frames of the captures, whole (the reply is built from the whole frame).
fn seeds(m: &Material) -> Vec<Vec<u8>> {
    m.frames
        .iter()
        .filter(|f| f.len() >= 14 && f[12..14] == [0x08, 0x06])
        .cloned()
        .collect()
}

/// The input is a whole Ethernet frame: the ARP view reads what follows its header (or
/// the input itself when shorter), the reply rewrites the frame.
pub fn run(data: &[u8]) {
    let body = data.get(ethernet::HEADER_LEN..).unwrap_or(data);
    match Packet::new_checked(body) {
        Err(_) => assert!(body.len() < PACKET_LEN),
        Ok(p) => {
            if let Ok(repr) = ArpRepr::parse(&p) {
                assert!(p.is_ethernet_ipv4());
                let mut out = [0u8; PACKET_LEN];
                repr.emit(&mut out).expect("28 bytes fit");
                assert_eq!(
                    out,
                    body[..PACKET_LEN],
                    "the packet emits back to its bytes"
                );
                let back = ArpRepr::parse(&Packet::new_checked(&out[..]).unwrap());
                assert_eq!(back, Ok(repr));
                assert_eq!(
                    u16::from(Operation::from(u16::from(repr.operation))),
                    u16::from(repr.operation)
                );
            }
        }
    }

    let mut frame = data.to_vec();
    match arp::reply_in_place(&mut frame, PRIMARY.mac, PRIMARY.ip) {
        Err(_) => assert_eq!(frame, data, "a refused request is left untouched"),
        Ok(len) => {
            assert_eq!(len, arp::FRAME_LEN);
            assert_eq!(
                frame[len..],
                data[len..],
                "nothing after the reply is written"
            );
            let req = ArpRepr::parse(&Packet::new_checked(&data[14..]).unwrap()).unwrap();
            assert_eq!(req.operation, Operation::Request);
            assert_eq!(req.target_protocol_addr, PRIMARY.ip);
            let eth = Frame::new_checked(&frame[..len]).unwrap();
            assert_eq!(eth.dst_addr(), req.source_hardware_addr);
            assert_eq!(eth.src_addr(), PRIMARY.mac);
            let reply = ArpRepr::parse(&Packet::new_checked(eth.payload()).unwrap()).unwrap();
            assert_eq!(reply.operation, Operation::Reply);
            assert_eq!(reply.source_hardware_addr, PRIMARY.mac);
            assert_eq!(reply.source_protocol_addr, PRIMARY.ip);
            assert_eq!(reply.target_hardware_addr, req.source_hardware_addr);
            assert_eq!(reply.target_protocol_addr, req.source_protocol_addr);
        }
    }
}
