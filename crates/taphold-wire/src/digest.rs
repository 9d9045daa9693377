//! The keyed digest that authenticates every taphold PDU.
//!
//! A message is released when its backup frame comes back intact on the tap. "Intact" is
//! checked by this digest, and it is *keyed* (SipHash-2-4 with a 128-bit secret shared by
//! the primary and the backup node) so that only a frame we built can match: a stray,
//! replayed-from-elsewhere or forged frame on the tap or backup link cannot produce a
//! matching digest without the key, and so can never confirm a message. SipHash is a
//! short-input PRF built for exactly this, and costs tens of nanoseconds per frame.

use core::fmt;

use siphasher::sip::SipHasher24;

use crate::WireError;

/// The 128-bit SipHash key, configured as 32 hex digits.
///
/// `Debug` does not print the key, so it cannot leak into logs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DigestKey(pub [u8; 16]);

impl DigestKey {
    /// Parses exactly 32 hex digits (either case), most significant byte first;
    /// anything else is [`WireError::Malformed`].
    pub fn from_hex(s: &str) -> Result<DigestKey, WireError> {
        let s = s.as_bytes();
        if s.len() != 32 {
            return Err(WireError::Malformed);
        }
        let mut key = [0u8; 16];
        for (k, pair) in key.iter_mut().zip(s.chunks_exact(2)) {
            *k = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Ok(DigestKey(key))
    }

    /// Keyed SipHash-2-4 of `bytes`.
    #[inline]
    pub fn digest(&self, bytes: &[u8]) -> u64 {
        SipHasher24::new_with_key(&self.0).hash(bytes)
    }
}

impl fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DigestKey(..)")
    }
}

fn hex_digit(c: u8) -> Result<u8, WireError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(WireError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const REFERENCE_KEY: &str = "000102030405060708090a0b0c0d0e0f";

    #[test]
    fn siphash_reference_vector() {
        // Aumasson & Bernstein, "SipHash" appendix A: key 00..0f, message 00..0e.
        let key = DigestKey::from_hex(REFERENCE_KEY).unwrap();
        let msg: [u8; 15] = core::array::from_fn(|i| i as u8);
        assert_eq!(key.digest(&msg), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn keyed() {
        let a = DigestKey([1; 16]);
        let b = DigestKey([2; 16]);
        assert_ne!(a.digest(b"order"), b.digest(b"order"));
        assert_ne!(a.digest(b"order"), a.digest(b"ordes"));
    }

    #[test]
    fn hex_parsing() {
        let k = DigestKey::from_hex("00112233445566778899AABBCCDDeeff").unwrap();
        assert_eq!(
            k.0,
            [
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff
            ]
        );
        for bad in [
            "",
            "0011223344556677889900aabbccddee0",
            "0011223344556677889900aabbccdd",
            "0011223344556677889900aabbccddeg",
            "0x11223344556677889900aabbccddee",
            " 011223344556677889900aabbccddee",
            "001122334455667788990éaabbccdde",
        ] {
            assert_eq!(
                DigestKey::from_hex(bad),
                Err(WireError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_hides_key() {
        assert_eq!(format!("{:?}", DigestKey([0xab; 16])), "DigestKey(..)");
    }

    proptest! {
        #[test]
        fn hex_never_panics(s in "\\PC{0,40}") {
            let _ = DigestKey::from_hex(&s);
        }

        #[test]
        fn hex_round_trip(k in any::<[u8; 16]>()) {
            let s: String = k.iter().map(|b| format!("{b:02x}")).collect();
            prop_assert_eq!(DigestKey::from_hex(&s), Ok(DigestKey(k)));
        }
    }
}
