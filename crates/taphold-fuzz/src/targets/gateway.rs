//! Gateway mode's classifier and forwarding rewrite (config/gateway.yaml's rules).
//!
//! Input: a mode byte, then a frame received on P. Mode bit 0 fills correct IPv4 and
//! TCP checksums first, so the fuzzer reaches what lies past them.
//!
//! Whatever is not dropped must survive the forwarding rewrite, which may change the
//! MACs, the TTL and the IPv4 checksum and nothing else, and leave a valid header
//! checksum; a protected segment's payload lies inside the frame and its checksum is
//! right.

use taphold_wire::ethernet::EthernetAddress;
use taphold_wire::gateway::PORT_P;
use taphold_wire::gateway::{
    classify_gateway, forward_in_place, GatewayClass, GatewayRules, Ipv4Prefix, ProtectRule, Route,
};
use taphold_wire::{ipv4, tcp};

use super::with_mode;
use crate::{Material, Target};

pub const TARGET: Target = Target {
    name: "gateway",
    run,
    seeds,
};

const OURS: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const NEXT: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0e, 2]);
const ROUTES: [Route; 2] = [
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
];
const PROTECT: [ProtectRule; 1] = [ProtectRule {
    dst: Ipv4Prefix {
        addr: [10, 71, 2, 0],
        len: 24,
    },
    ports: (9878, 9879),
}];

fn seeds(m: &Material) -> Vec<Vec<u8>> {
    let mut s = with_mode(0, m.gateway_frames.clone());
    s.extend(with_mode(
        1,
        m.gateway_frames.iter().take(16).cloned().collect(),
    ));
    s
}

fn fill_checksums(f: &mut [u8]) {
    if f.len() < 34 || f[12..14] != [0x08, 0x00] {
        return;
    }
    let Ok(ip) = ipv4::Packet::new_checked(&f[14..]) else {
        return;
    };
    let (h, total) = (usize::from(ip.header_len()), usize::from(ip.total_len()));
    let (src, dst, proto) = (ip.src_addr(), ip.dst_addr(), ip.protocol());
    ipv4::Packet::new_unchecked(&mut f[14..]).fill_checksum();
    if proto == ipv4::PROTOCOL_TCP && 14 + total <= f.len() {
        let seg = &mut f[14 + h..14 + total];
        if tcp::Packet::new_checked(&*seg).is_ok() {
            tcp::Packet::new_unchecked(seg).fill_checksum(src, dst);
        }
    }
}

pub fn run(data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut f = data[1..].to_vec();
    if data[0] & 1 != 0 {
        fill_checksums(&mut f);
    }
    let rules = GatewayRules {
        mac: OURS,
        ip: [10, 71, 1, 1],
        also: &[[10, 71, 2, 1]],
        elsewhere: &[],
        routes: &ROUTES,
        protect: &PROTECT,
        forward_other: data[0] & 2 == 0,
        max_payload: 1400,
    };
    let class = classify_gateway(&f, &rules);
    match class {
        GatewayClass::Protected(m) => {
            let (off, len) = (usize::from(m.payload_off), usize::from(m.payload_len));
            assert!(off + len <= f.len() && len <= 1400);
            let ip = ipv4::Packet::new_checked(&f[14..]).unwrap();
            let h = usize::from(ip.header_len());
            let seg = &f[14 + h..14 + usize::from(ip.total_len())];
            assert!(tcp::Packet::new_checked(seg)
                .unwrap()
                .verify_checksum(ip.src_addr(), ip.dst_addr()));
            assert_eq!(&seg[seg.len() - len..], &f[off..off + len]);
        }
        GatewayClass::Forward { .. } | GatewayClass::Return { .. } => {}
        _ => return,
    }
    let before = f.clone();
    forward_in_place(&mut f, OURS, NEXT).expect("what is routed can be forwarded");
    assert_eq!(&f[0..6], &NEXT.0);
    assert_eq!(&f[6..12], &OURS.0);
    assert_eq!(f[22], before[22] - 1);
    assert!(ipv4::Packet::new_unchecked(&f[14..]).verify_checksum());
    for (i, (a, b)) in before.iter().zip(&f).enumerate().skip(12) {
        assert!(a == b || [22, 24, 25].contains(&i), "byte {i} changed");
    }
}
