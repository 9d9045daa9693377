//! The Ethernet II view: every port's outer layer. Also the MAC address text form the
//! configs use.

use taphold_wire::ethernet::{EthernetAddress, EthernetRepr, Frame, HEADER_LEN};

use crate::{Material, Target};

pub const TARGET: Target = Target {
    name: "ethernet",
    run,
    seeds,
};

fn seeds(m: &Material) -> Vec<Vec<u8>> {
    let mut s = m.frame_sample();
    s.push(b"02:00:00:00:00:01".to_vec());
    s.push(b"ff:ff:ff:ff:ff:ff".to_vec());
    s
}

pub fn run(data: &[u8]) {
    match Frame::new_checked(data) {
        Err(_) => assert!(
            data.len() < HEADER_LEN,
            "a {}-byte frame refused",
            data.len()
        ),
        Ok(frame) => {
            let repr = EthernetRepr::parse(&frame).expect("a checked frame parses");
            assert_eq!(frame.payload(), &data[HEADER_LEN..]);
            let mut header = [0u8; HEADER_LEN];
            repr.emit(&mut header).expect("a header fits 14 bytes");
            assert_eq!(
                header,
                data[..HEADER_LEN],
                "the header emits back to its bytes"
            );
            let dst = frame.dst_addr();
            assert_ne!(dst.is_unicast(), dst.is_multicast());
            assert!(!dst.is_broadcast() || dst.is_multicast());
            assert_eq!(dst.to_string().parse::<EthernetAddress>(), Ok(dst));
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(a) = text.parse::<EthernetAddress>() {
            assert_eq!(a.to_string().parse::<EthernetAddress>(), Ok(a));
            assert!(
                text.eq_ignore_ascii_case(&a.to_string()),
                "{text:?} read as {a}"
            );
        }
    }
}
