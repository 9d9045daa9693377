//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Used by the classifier to verify what arrives on P, and by the release path to fix up
//! a message's UDP checksum after its addresses change. The release path must not touch
//! the payload, so it relies on [`update_sum`]: the checksum moves by exactly the
//! difference of the fields that changed, whatever the payload is.
//!
//! Sums here are *ones-complement sums folded to 16 bits*, not yet complemented; a
//! header verifies when the sum over it (checksum field included) is `0xFFFF`.

/// Ones-complement sum of `bytes` taken as big-endian 16-bit words; an odd final byte is
/// padded with a zero byte on the right (RFC 1071 §4.1).
///
/// The ones-complement sum does not depend on byte order (RFC 1071 §2 B): we add the bytes
/// as native little-endian 64-bit words with end-around carry, four independent
/// accumulators wide (32 bytes a step, no dependency between them), fold to 16 bits and
/// swap the two bytes at the end. Word boundaries stay at even offsets, so the padding rule
/// holds: a final odd byte lands in the low half of a little-endian 16-bit word, which is
/// the high (left) half after the swap.
#[inline]
pub fn data(bytes: &[u8]) -> u16 {
    let mut acc = [0u64; 4];
    let mut blocks = bytes.chunks_exact(32);
    for b in &mut blocks {
        for (i, a) in acc.iter_mut().enumerate() {
            *a = add_carry(*a, le64(&b[i * 8..i * 8 + 8]));
        }
    }
    let mut words = blocks.remainder().chunks_exact(8);
    for w in &mut words {
        acc[0] = add_carry(acc[0], le64(w));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 8];
    tail[..rest.len()].copy_from_slice(rest);
    acc[1] = add_carry(acc[1], u64::from_le_bytes(tail));
    let sum = add_carry(add_carry(acc[0], acc[1]), add_carry(acc[2], acc[3]));
    fold(sum).swap_bytes()
}

/// [`data`] of exactly 20 bytes: an IPv4 header without options, every message's. Two
/// 8-byte words and a 4-byte one with end-around carry, no loop and no tail copy (the
/// general form's zero-padded tail is a `memcpy` call; callgrind counted ~100
/// instructions per header for it against ~25 for this).
#[inline]
pub fn header20(h: &[u8; 20]) -> u16 {
    let a = le64(&h[0..8]);
    let b = le64(&h[8..16]);
    let c = u64::from(u32::from_le_bytes([h[16], h[17], h[18], h[19]]));
    fold(add_carry(add_carry(a, b), c)).swap_bytes()
}

#[inline(always)]
fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

/// `a + b` in ones-complement arithmetic on 64 bits: the carry out wraps to bit 0 (it
/// cannot carry again: after an overflow the sum is at most 2^64 - 2).
#[inline(always)]
fn add_carry(a: u64, b: u64) -> u64 {
    let (s, over) = a.overflowing_add(b);
    s + u64::from(over)
}

/// Sum of a 4-byte field (an IPv4 address) as two big-endian 16-bit words.
#[inline]
pub fn addr(a: [u8; 4]) -> u16 {
    fold(u64::from(u16::from_be_bytes([a[0], a[1]])) + u64::from(u16::from_be_bytes([a[2], a[3]])))
}

/// Ones-complement sum of partial sums (each from [`data`], [`pseudo_header_v4`] or a
/// single field).
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// Sum of the IPv4 pseudo-header that UDP and TCP checksums cover (RFC 768).
#[inline]
pub fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], protocol: u8, length: u16) -> u16 {
    combine(&[addr(src), addr(dst), u16::from(protocol), length])
}

/// The checksum field value for a sum: its ones complement.
#[inline]
pub fn finish(sum: u16) -> u16 {
    !sum
}

/// UDP sends a computed checksum of zero as `0xFFFF`, since zero means "no checksum"
/// (RFC 768). Both are the same number in ones-complement arithmetic.
#[inline]
pub fn udp_field(checksum: u16) -> u16 {
    if checksum == 0 {
        0xFFFF
    } else {
        checksum
    }
}

/// RFC 1624 eqn. 3: the new checksum after fields whose sum was `old_sum` now sum to
/// `new_sum`; `HC' = ~(~HC + ~m + m')`. This form, unlike eqn. 2, never yields a
/// negative zero for a checksum that was correct.
#[inline]
pub fn update_sum(checksum: u16, old_sum: u16, new_sum: u16) -> u16 {
    !combine(&[!checksum, !old_sum, new_sum])
}

/// [`update_sum`] for a single 16-bit field going from `old` to `new`.
#[inline]
pub fn update(checksum: u16, old: u16, new: u16) -> u16 {
    update_sum(checksum, old, new)
}

#[inline(always)]
fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    // The loop leaves acc < 2^16.
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The 20-byte form is the general one.
        #[test]
        fn header20_is_data(h in proptest::array::uniform20(any::<u8>())) {
            prop_assert_eq!(header20(&h), data(&h));
        }
    }

    #[test]
    fn header20_extremes() {
        for b in [0u8, 0xFF, 0x80, 0x01] {
            let h = [b; 20];
            assert_eq!(header20(&h), data(&h));
        }
    }

    /// The textbook definition, one 16-bit word at a time, for comparison.
    fn naive(bytes: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in bytes.chunks(2) {
            let w = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            acc += u32::from(w);
            acc = (acc & 0xFFFF) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2, checksum 220d.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(data(&bytes), 0xddf2);
        assert_eq!(finish(data(&bytes)), 0x220d);
    }

    #[test]
    fn odd_length_pads_right() {
        assert_eq!(data(&[0xab]), 0xab00);
        assert_eq!(data(&[0x01, 0x02, 0x03]), 0x0402);
        assert_eq!(data(&[]), 0);
    }

    #[test]
    fn ipv4_header_example() {
        // A classic capture: 45 00 00 73 00 00 40 00 40 11 [b8 61] c0 a8 00 01 c0 a8 00 c7
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(finish(data(&h)), 0xb861);
        h[10] = 0xb8;
        h[11] = 0x61;
        assert_eq!(data(&h), 0xFFFF);
    }

    #[test]
    fn pseudo_header_matches_bytes() {
        let src = [10, 0, 0, 1];
        let dst = [192, 168, 1, 200];
        let bytes = [10, 0, 0, 1, 192, 168, 1, 200, 0, 17, 0x01, 0x2c];
        assert_eq!(pseudo_header_v4(src, dst, 17, 300), data(&bytes));
    }

    #[test]
    fn udp_field_never_zero() {
        assert_eq!(udp_field(0), 0xFFFF);
        assert_eq!(udp_field(0x1234), 0x1234);
    }

    proptest! {
        #[test]
        fn matches_naive(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(data(&bytes), naive(&bytes));
        }

        /// Jumbo lengths, every alignment of the tail, and all-0xFF runs (the carries).
        #[test]
        fn matches_naive_long(
            bytes in proptest::collection::vec(any::<u8>(), 0..9100),
            ones in 0usize..9100,
        ) {
            prop_assert_eq!(data(&bytes), naive(&bytes));
            let ff = vec![0xffu8; ones];
            prop_assert_eq!(data(&ff), naive(&ff));
        }

        #[test]
        fn addr_is_data(a in any::<[u8; 4]>()) {
            prop_assert_eq!(addr(a), data(&a));
        }

        #[test]
        fn split_at_even_offsets_combines(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            cut in 0usize..100,
        ) {
            let cut = (cut * 2).min(bytes.len() & !1);
            let (a, b) = bytes.split_at(cut);
            prop_assert_eq!(combine(&[data(a), data(b)]), data(&bytes));
        }

        /// Changing any 16-bit word of a checksummed header and updating incrementally
        /// gives what a full recompute gives.
        #[test]
        fn incremental_equals_full(
            mut words in proptest::collection::vec(any::<u16>(), 2..40),
            idx in any::<proptest::sample::Index>(),
            new in any::<u16>(),
        ) {
            // Word 0 plays IPv4's version/IHL word: never zero, never changed, so the
            // data is never all-zero (the one case where ±0 could differ).
            words[0] = 0x4500;
            let i = 1 + idx.index(words.len() - 1);
            let bytes = |w: &[u16]| -> Vec<u8> { w.iter().flat_map(|x| x.to_be_bytes()).collect() };
            let before = finish(data(&bytes(&words)));
            let old = words[i];
            words[i] = new;
            let after = finish(data(&bytes(&words)));
            prop_assert_eq!(update(before, old, new), after);
        }
    }
}
