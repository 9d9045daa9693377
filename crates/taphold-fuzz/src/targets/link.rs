//! Backup-link framing: the Ethernet header and padding around a taphold PDU, opened by
//! both ends with the addresses a frame of that direction must carry.

use taphold_wire::ethernet::{EthernetAddress, HEADER_LEN, MIN_FRAME_LEN};
use taphold_wire::link::{self, NotOurs};
use taphold_wire::taphold::Packet;

use crate::{Material, Target};

pub const TARGET: Target = Target {
    name: "link",
    run,
    seeds,
};

/// The backup node's and the appliance's ends of the link.
const NODE: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0xb0, 0x01]);
const APPLIANCE: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0xa0, 0x01]);

fn seeds(m: &Material) -> Vec<Vec<u8>> {
    let mut s: Vec<Vec<u8>> = m
        .pdus()
        .into_iter()
        .map(|pdu| {
            let mut f = vec![0u8; link::frame_len(pdu.len())];
            let (len, _) = link::emit_frame(&mut f, NODE, APPLIANCE, pdu.len(), |b| {
                b.copy_from_slice(&pdu);
                Ok(0)
            })
            .expect("a seed frame emits");
            f.truncate(len);
            f
        })
        .collect();
    s.extend(m.frame_sample().into_iter().take(8));
    s
}

pub fn run(data: &[u8]) {
    let opened = link::open_frame(data, NODE, APPLIANCE);
    assert_eq!(link::pdu_of(data, NODE, APPLIANCE), opened.ok());
    match opened {
        Err(NotOurs::Runt) => assert!(data.len() < HEADER_LEN),
        Err(NotOurs::NotTaphold) => assert_eq!(link::pdu(data), None),
        Err(NotOurs::NotForUs) => assert_ne!(data[..6], NODE.0),
        Err(NotOurs::WrongPeer) => assert_ne!(data[6..12], APPLIANCE.0),
        Ok(pdu) => {
            assert_eq!(link::pdu(data), Some(pdu));
            assert_eq!(pdu, &data[HEADER_LEN..]);
            // A PDU that checks, framed again: the same PDU comes out of the new frame, and
            // the frame is padded with zeros to the Ethernet minimum.
            if let Ok(p) = Packet::new_checked(pdu) {
                let pdu = &pdu[..p.total_len()];
                let mut f = vec![0xAA; link::frame_len(pdu.len()) + 3];
                let (len, _) = link::emit_frame(&mut f, NODE, APPLIANCE, pdu.len(), |b| {
                    b.copy_from_slice(pdu);
                    Ok(0)
                })
                .expect("fits");
                assert_eq!(len, (HEADER_LEN + pdu.len()).max(MIN_FRAME_LEN));
                assert!(f[HEADER_LEN + pdu.len()..len].iter().all(|&b| b == 0));
                assert_eq!(f[len..], [0xAA; 3], "nothing written past the frame");
                let back = link::open_frame(&f[..len], NODE, APPLIANCE).expect("ours");
                assert_eq!(&back[..pdu.len()], pdu);
                // Re-addressed for the other direction, the other end opens it.
                link::readdress(&mut f, APPLIANCE, NODE);
                assert!(link::open_frame(&f[..len], APPLIANCE, NODE).is_ok());
                assert_eq!(
                    link::open_frame(&f[..len], NODE, APPLIANCE),
                    Err(NotOurs::NotForUs)
                );
            }
        }
    }
}
