//! The IPv4 view and header Repr.
//!
//! Input: a mode byte, then the packet (what follows an Ethernet header). Mode bit 0
//! fills a correct header checksum first, so that the fuzzer gets past the checksum to
//! the fragment check and the Repr.

use taphold_wire::ipv4::{Ipv4Repr, Packet, HEADER_LEN};
use taphold_wire::WireError;

use super::with_mode;
use crate::{Material, Target};

pub const TARGET: Target = Target {
    name: "ipv4",
    run,
    seeds,
};

fn seeds(m: &Material) -> Vec<Vec<u8>> {
    let packets: Vec<Vec<u8>> = m
        .frame_sample()
        .into_iter()
        .filter(|f| f.len() > 14 && f[12..14] == [0x08, 0x00])
        .map(|f| f[14..].to_vec())
        .collect();
    let mut s = with_mode(0, packets.clone());
    s.extend(with_mode(1, packets.into_iter().take(8).collect()));
    s
}

pub fn run(data: &[u8]) {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let mut owned = bytes.to_vec();
    if mode & 1 != 0 && Packet::new_checked(&owned[..]).is_ok() {
        Packet::new_unchecked(&mut owned[..]).fill_checksum();
    }
    let bytes = &owned[..];
    let checked = Packet::new_checked(bytes);
    let Ok(p) = checked else {
        return;
    };
    let header_len = usize::from(p.header_len());
    let total_len = usize::from(p.total_len());
    assert!(HEADER_LEN <= header_len && header_len <= total_len && total_len <= bytes.len());
    assert_eq!(p.options().len(), header_len - HEADER_LEN);
    assert_eq!(p.payload(), &bytes[header_len..total_len]);

    let repr = Ipv4Repr::parse(&p);
    // Nothing past the total length (Ethernet padding) changes the result.
    let exact = Ipv4Repr::parse(&Packet::new_checked(&bytes[..total_len]).unwrap());
    assert_eq!(repr, exact, "bytes past the total length changed the parse");
    match repr {
        Err(WireError::BadChecksum) => assert!(!p.verify_checksum()),
        Err(WireError::Malformed) => assert!(p.is_fragment()),
        Err(e) => panic!("a checked packet refused with {e:?}"),
        Ok(r) => {
            assert!(p.verify_checksum() && !p.is_fragment());
            assert_eq!(usize::from(r.payload_len), total_len - header_len);
            // Emitted (without options) and parsed back: the same meaning.
            let mut out = vec![0u8; HEADER_LEN + usize::from(r.payload_len)];
            r.emit(&mut out).expect("fits");
            out[HEADER_LEN..].copy_from_slice(p.payload());
            let q = Packet::new_checked(&out[..]).expect("an emitted header checks");
            assert_eq!(Ipv4Repr::parse(&q), Ok(r));
            assert_eq!(q.payload(), p.payload());
        }
    }
}
