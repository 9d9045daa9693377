//! The UDP view and Repr (checksum over the IPv4 pseudo-header).
//!
//! Input: a mode byte, the source and destination IPv4 addresses (8 bytes), then the
//! datagram. Mode bit 0 fills a correct checksum first.

use taphold_wire::udp::{Packet, UdpRepr, HEADER_LEN};
use taphold_wire::WireError;

use super::with_mode;
use crate::{Material, Target};

pub const TARGET: Target = Target {
    name: "udp",
    run,
    seeds,
};

/// The captures' UDP datagrams with their addresses (IPv4 without options, UDP).
fn seeds(m: &Material) -> Vec<Vec<u8>> {
    let datagrams: Vec<Vec<u8>> = m
        .frame_sample()
        .into_iter()
        .filter(|f| f.len() >= 42 && f[12..14] == [0x08, 0x00] && f[14] == 0x45 && f[23] == 17)
        .map(|f| {
            let mut s = f[26..34].to_vec();
            s.extend_from_slice(&f[34..]);
            s
        })
        .collect();
    let mut s = with_mode(0, datagrams.clone());
    s.extend(with_mode(1, datagrams.into_iter().take(8).collect()));
    s
}

pub fn run(data: &[u8]) {
    if data.len() < 9 {
        return;
    }
    let mode = data[0];
    let src = [data[1], data[2], data[3], data[4]];
    let dst = [data[5], data[6], data[7], data[8]];
    let mut owned = data[9..].to_vec();
    if mode & 1 != 0 && Packet::new_checked(&owned[..]).is_ok() {
        Packet::new_unchecked(&mut owned[..]).fill_checksum(src, dst);
    }
    let bytes = &owned[..];
    let Ok(p) = Packet::new_checked(bytes) else {
        return;
    };
    let len = usize::from(p.len());
    assert!(HEADER_LEN <= len && len <= bytes.len());
    assert_eq!(p.payload(), &bytes[HEADER_LEN..len]);
    let repr = UdpRepr::parse(&p, src, dst);
    let exact = UdpRepr::parse(&Packet::new_checked(&bytes[..len]).unwrap(), src, dst);
    assert_eq!(repr, exact, "bytes past the UDP length changed the parse");
    match repr {
        Err(WireError::BadChecksum) => assert!(!p.verify_checksum(src, dst)),
        Err(e) => panic!("a checked datagram refused with {e:?}"),
        Ok(r) => {
            let mut out = vec![0u8; len];
            out[HEADER_LEN..].copy_from_slice(p.payload());
            r.emit(&mut out, src, dst, len - HEADER_LEN).expect("fits");
            let q = Packet::new_checked(&out[..]).expect("an emitted datagram checks");
            assert_eq!(UdpRepr::parse(&q, src, dst), Ok(r));
            assert_ne!(
                q.checksum(),
                0,
                "an emitted checksum is never 0 (no checksum)"
            );
            if p.checksum() != 0 {
                // One's complement has two zeros, but a sum over a pseudo-header (protocol
                // 17) is never +0: a valid checksum has one value, the one emit computes.
                assert_eq!(
                    q.checksum(),
                    p.checksum(),
                    "a valid checksum recomputed differs"
                );
            }
        }
    }
}
