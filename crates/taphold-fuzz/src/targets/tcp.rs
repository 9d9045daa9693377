//! The TCP view (gateway mode reads protected segments and the exchange's ACKs).
//!
//! Input: a mode byte, the source and destination IPv4 addresses (8 bytes), then the
//! segment. Mode bit 0 fills a correct checksum first.

use taphold_wire::tcp::{Packet, HEADER_LEN};

use super::with_mode;
use crate::{Material, Target};

pub const TARGET: Target = Target {
    name: "tcp",
    run,
    seeds,
};

/// gateway.pcap's TCP segments with their addresses (IPv4 without options).
fn seeds(m: &Material) -> Vec<Vec<u8>> {
    let segments: Vec<Vec<u8>> = m
        .gateway_frames
        .iter()
        .filter(|f| f.len() >= 54 && f[12..14] == [0x08, 0x00] && f[14] == 0x45 && f[23] == 6)
        .map(|f| {
            let total = usize::from(u16::from_be_bytes([f[16], f[17]])).min(f.len() - 14);
            let mut s = f[26..34].to_vec();
            s.extend_from_slice(&f[34..14 + total.max(20)]);
            s
        })
        .collect();
    let mut s = with_mode(0, segments.clone());
    s.extend(with_mode(1, segments.into_iter().take(8).collect()));
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
    let checked = Packet::new_checked(&owned[..]).is_ok();
    if mode & 1 != 0 && checked && u16::try_from(owned.len()).is_ok() {
        Packet::new_unchecked(&mut owned[..]).fill_checksum(src, dst);
        assert!(Packet::new_unchecked(&owned[..]).verify_checksum(src, dst));
    }
    let Ok(p) = Packet::new_checked(&owned[..]) else {
        return;
    };
    let h = usize::from(p.header_len());
    assert!(HEADER_LEN <= h && h <= owned.len());
    assert_eq!(p.payload(), &owned[h..]);
    assert!(p.segment_len() as usize >= p.payload().len());
    // Any single bit flipped in a segment with a right checksum makes it wrong.
    if p.verify_checksum(src, dst) && !owned.is_empty() {
        let i = usize::from(data[0] >> 1) % owned.len();
        let mut flipped = owned.clone();
        flipped[i] ^= 1 << (data[0] as usize % 8);
        assert!(!Packet::new_unchecked(&flipped[..]).verify_checksum(src, dst));
    }
}
