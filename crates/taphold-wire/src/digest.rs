//! The keyed digest that authenticates every taphold PDU.
//!
//! A message is released when its backup frame comes back intact on the tap. "Intact" is
//! checked by this digest, and it is *keyed* (SipHash-2-4 with a 128-bit secret shared by
//! the appliance and the backup nodes) so that only a frame we built can match: a stray,
//! replayed-from-elsewhere or forged frame on the tap or backup link cannot produce a
//! matching digest without the key, and so can never confirm a message.
//!
//! SipHash-2-4 is the variant its designers propose as a MAC (protocol versions 2 and 3
//! used the reduced-round 1-3 for speed; docs/decisions/0007 says why version 4 went
//! back, with the measured cost). The MAC input of a PDU is its bytes from offset 8 on,
//! then its first 8 bytes ([`MacState`]): what differs between the copies of one backup
//! frame on several links sits in that first word, so the payload is absorbed once and
//! each link's copy is finished from the saved state.
//!
//! Each key has an id ([`DigestKey::id`], in every PDU) and a receiver holds the keys of
//! one use in a [`KeyRing`]: the current one and, during a rotation, the next.
//!
//! The implementation is our own, on 8-byte little-endian words (the message is read one
//! `u64` at a time, not byte by byte); the tests check it against the `siphasher` crate and
//! the reference vectors of both variants.

use core::fmt;

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

    /// The protocol's digest of `bytes`: keyed SipHash-2-4 (since protocol version 4;
    /// versions 2 and 3 used SipHash-1-3, see docs/decisions/0007).
    #[inline]
    pub fn digest(&self, bytes: &[u8]) -> u64 {
        siphash::<2, 4>(&self.0, bytes)
    }

    /// Keyed SipHash-2-4 of `bytes` (the same as [`DigestKey::digest`]; the name kept
    /// for the benchmarks that compare the two variants).
    #[inline]
    pub fn digest_siphash24(&self, bytes: &[u8]) -> u64 {
        siphash::<2, 4>(&self.0, bytes)
    }

    /// Keyed SipHash-1-3 of `bytes`: protocol versions 2 and 3's digest, kept for tests
    /// and comparison benchmarks only.
    #[inline]
    pub fn digest_siphash13(&self, bytes: &[u8]) -> u64 {
        siphash::<1, 3>(&self.0, bytes)
    }

    /// The key's id (header byte 4 of every PDU sealed with it): the low byte of the
    /// key's own SipHash-2-4 of `"taphold key id"`. Derived, so that it cannot be
    /// configured wrong, and one-way, so that it says nothing about the key. A receiver
    /// holding two keys (a rotation) picks the one the PDU names.
    pub fn id(&self) -> u8 {
        self.digest(KEY_ID_LABEL) as u8
    }

    /// The state of the digest after `shared`, the bytes that come before the last
    /// 8 of the MAC input: see [`MacState`].
    #[inline]
    pub fn absorb(&self, shared: &[u8]) -> MacState {
        absorb::<2>(&self.0, shared)
    }
}

/// The keys of one use (the backup links, or the arbiter's PDUs): the one that seals
/// what we send, and up to one more that a PDU may name during a rotation.
///
/// A rotation with nothing lost: every receiver is given the next key (accepted at once,
/// by its id, beside the current one); each sender starts sealing with it at
/// `next_from_ns` (or at once if that is 0); once every sender has switched, the old key
/// is removed. Ids are checked distinct when the ring is made
/// ([`KeyRing::with_next`]), so the id alone picks the key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyRing {
    current: DigestKey,
    current_id: u8,
    next: Option<(DigestKey, u8)>,
    /// UNIX ns from which `next` seals; u64::MAX: never (accepted only).
    next_from_ns: u64,
}

impl KeyRing {
    /// One key, sealing and accepted.
    pub fn single(key: DigestKey) -> KeyRing {
        KeyRing {
            current: key,
            current_id: key.id(),
            next: None,
            next_from_ns: u64::MAX,
        }
    }

    /// `current`, and `next` accepted at once and sealing from `next_from_ns` (UNIX ns;
    /// `None`: never, accepted only). Err(id) if the two keys have the same id (then
    /// regenerate the next key: one in 256 does).
    pub fn with_next(
        current: DigestKey,
        next: DigestKey,
        next_from_ns: Option<u64>,
    ) -> Result<KeyRing, u8> {
        let (a, b) = (current.id(), next.id());
        if a == b {
            return Err(a);
        }
        Ok(KeyRing {
            current,
            current_id: a,
            next: Some((next, b)),
            next_from_ns: next_from_ns.unwrap_or(u64::MAX),
        })
    }

    /// The key that seals what we send at `now_ns`.
    #[inline]
    pub fn sealing(&self, now_ns: u64) -> &DigestKey {
        match &self.next {
            // u64::MAX: never (no clock reaches it).
            Some((k, _)) if now_ns >= self.next_from_ns && self.next_from_ns != u64::MAX => k,
            _ => &self.current,
        }
    }

    /// The key a PDU naming key id `id` was sealed with, if we hold it.
    #[inline]
    pub fn for_id(&self, id: u8) -> Option<&DigestKey> {
        if id == self.current_id {
            return Some(&self.current);
        }
        match &self.next {
            Some((k, i)) if *i == id => Some(k),
            _ => None,
        }
    }

    /// The current key (the one sealing before any switch).
    pub fn current(&self) -> &DigestKey {
        &self.current
    }

    /// Every key held.
    pub fn keys(&self) -> impl Iterator<Item = &DigestKey> {
        core::iter::once(&self.current).chain(self.next.as_ref().map(|(k, _)| k))
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyRing(id {:#04x}", self.current_id)?;
        if let Some((_, id)) = self.next {
            write!(f, ", next id {id:#04x} from {} ns", self.next_from_ns)?;
        }
        f.write_str(")")
    }
}

/// What [`DigestKey::id`] hashes.
const KEY_ID_LABEL: &[u8] = b"taphold key id";

/// SipHash over `shared || last8`, stopped before `last8`: the taphold MAC input is a
/// PDU's bytes from offset 8 on, then its first 8 bytes (magic .. content mode, which
/// hold the link index, the origin flag and the key id). So the one backup frame
/// launched on several links is absorbed once and finished per link, a finish being
/// at most two compressions and the finalization, whatever the payload length.
#[derive(Clone, Copy, Debug)]
pub struct MacState {
    v: [u64; 4],
    /// The 0..=7 bytes of `shared` after its last whole word.
    tail: [u8; 8],
    tail_len: usize,
    /// Length of `shared`.
    len: usize,
}

impl MacState {
    /// The digest of `shared || last8` (SipHash-2-4).
    #[inline]
    pub fn finish(&self, last8: [u8; 8]) -> u64 {
        finish::<2, 4>(self, last8)
    }

    /// How many bytes were absorbed.
    #[inline]
    pub fn shared_len(&self) -> usize {
        self.len
    }
}

#[inline]
fn word(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[inline(always)]
fn compress<const C: usize>(v: &mut [u64; 4], m: u64) {
    v[3] ^= m;
    for _ in 0..C {
        sip_round(v);
    }
    v[0] ^= m;
}

#[inline]
fn absorb<const C: usize>(key: &[u8; 16], bytes: &[u8]) -> MacState {
    let k0 = word(&key[..8]);
    let k1 = word(&key[8..]);
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        compress::<C>(&mut v, word(w));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 8];
    tail[..rest.len()].copy_from_slice(rest);
    MacState {
        v,
        tail,
        tail_len: rest.len(),
        len: bytes.len(),
    }
}

#[inline]
fn finalize<const C: usize, const D: usize>(mut v: [u64; 4], last: u64) -> u64 {
    compress::<C>(&mut v, last);
    v[2] ^= 0xff;
    for _ in 0..D {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[inline]
fn finish<const C: usize, const D: usize>(s: &MacState, last8: [u8; 8]) -> u64 {
    let mut v = s.v;
    let mut buf = [0u8; 16];
    buf[..s.tail_len].copy_from_slice(&s.tail[..s.tail_len]);
    buf[s.tail_len..s.tail_len + 8].copy_from_slice(&last8);
    compress::<C>(&mut v, word(&buf[..8]));
    // The final word: the tail_len bytes left, then the total length's low byte.
    let mut last = [0u8; 8];
    last[..s.tail_len].copy_from_slice(&buf[8..8 + s.tail_len]);
    last[7] = (s.len + 8) as u8;
    finalize::<C, D>(v, u64::from_le_bytes(last))
}

impl fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DigestKey(..)")
    }
}

#[inline(always)]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash-C-D (Aumasson & Bernstein) of `bytes` under the 16-byte `key`, as specified:
/// the key and the message are read as little-endian 64-bit words, the last word carries
/// the remaining bytes and the length modulo 256 in its top byte.
#[inline]
fn siphash<const C: usize, const D: usize>(key: &[u8; 16], bytes: &[u8]) -> u64 {
    let s = absorb::<C>(key, bytes);
    let mut last = s.tail;
    last[7] = bytes.len() as u8;
    finalize::<C, D>(s.v, u64::from_le_bytes(last))
}

/// SipHash-1-3 of `shared || last8` through [`MacState`]'s path: for the tests and the
/// benchmark that compare the variants.
#[doc(hidden)]
pub fn split_siphash13(key: &DigestKey, shared: &[u8], last8: [u8; 8]) -> u64 {
    finish::<1, 3>(&absorb::<1>(&key.0, shared), last8)
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
    fn siphash24_reference_vector() {
        // Aumasson & Bernstein, "SipHash" appendix A: key 00..0f, message 00..0e.
        let key = DigestKey::from_hex(REFERENCE_KEY).unwrap();
        let msg: [u8; 15] = core::array::from_fn(|i| i as u8);
        assert_eq!(key.digest_siphash24(&msg), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn siphash13_vectors() {
        // Key 00..0f, message 00..len-1, as in the paper's appendix. The reference paper
        // gives vectors for SipHash-2-4 only; these were computed with the `siphasher` crate
        // (an independent implementation, also checked against ours in `matches_siphasher`).
        // Length 0 is the SipHash-1-3 vector Rust's own std tests use.
        let key = DigestKey::from_hex(REFERENCE_KEY).unwrap();
        let msg: [u8; 64] = core::array::from_fn(|i| i as u8);
        for (len, want) in [
            (0, 0xabac_0158_050f_c4dc),
            (8, 0x3690_9511_8d29_9a8e),
            (15, 0xd320_d86d_2a51_9956),
            (63, 0x9d19_9062_b7bb_b3a8),
        ] {
            assert_eq!(key.digest_siphash13(&msg[..len]), want, "length {len}");
        }
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
    fn key_ids_are_derived_and_differ() {
        // Python: siphash24(key, b"taphold key id") & 0xff (docs/protocol.md).
        let a = DigestKey::from_hex(REFERENCE_KEY).unwrap();
        assert_eq!(a.id(), a.digest(b"taphold key id") as u8);
        let ids: std::collections::BTreeSet<u8> =
            (0..64u8).map(|i| DigestKey([i; 16]).id()).collect();
        assert!(ids.len() > 40, "{} distinct ids of 64 keys", ids.len());
    }

    #[test]
    fn a_key_ring_picks_by_id_and_switches_at_its_time() {
        let (a, b) = (DigestKey([1; 16]), DigestKey([2; 16]));
        assert_ne!(a.id(), b.id());
        let r = KeyRing::single(a);
        assert_eq!(r.for_id(a.id()), Some(&a));
        assert_eq!(r.for_id(b.id()), None);
        assert_eq!(r.sealing(u64::MAX), &a);
        let r = KeyRing::with_next(a, b, Some(1000)).unwrap();
        assert_eq!(r.for_id(a.id()), Some(&a));
        assert_eq!(r.for_id(b.id()), Some(&b));
        assert_eq!(r.sealing(999), &a);
        assert_eq!(r.sealing(1000), &b);
        let r = KeyRing::with_next(a, b, None).unwrap();
        assert_eq!(r.sealing(u64::MAX), &a);
        assert_eq!(r.keys().count(), 2);
        // Two keys with one id cannot share a ring.
        let clash = (3..=255u8)
            .map(|i| DigestKey([i; 16]))
            .find(|k| k.id() == a.id())
            .unwrap();
        assert_eq!(KeyRing::with_next(a, clash, None), Err(a.id()));
        assert!(!format!("{r:?}").contains("01, 01"));
    }

    #[test]
    fn debug_hides_key() {
        assert_eq!(format!("{:?}", DigestKey([0xab; 16])), "DigestKey(..)");
    }

    proptest! {
        /// Our word-at-a-time implementation is SipHash, bit for bit, at every length.
        #[test]
        fn matches_siphasher(
            key in any::<[u8; 16]>(),
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            use siphasher::sip::{SipHasher13, SipHasher24};
            let k = DigestKey(key);
            prop_assert_eq!(
                k.digest_siphash13(&bytes),
                SipHasher13::new_with_key(&key).hash(&bytes)
            );
            prop_assert_eq!(k.digest(&bytes), SipHasher24::new_with_key(&key).hash(&bytes));
            prop_assert_eq!(
                k.digest_siphash24(&bytes),
                SipHasher24::new_with_key(&key).hash(&bytes)
            );
        }

        /// Absorbing a prefix and finishing with 8 more bytes is SipHash of the
        /// concatenation, for every split of the tail.
        #[test]
        fn split_is_siphash_of_the_concatenation(
            key in any::<[u8; 16]>(),
            shared in proptest::collection::vec(any::<u8>(), 0..100),
            last8 in any::<[u8; 8]>(),
        ) {
            use siphasher::sip::{SipHasher13, SipHasher24};
            let k = DigestKey(key);
            let mut all = shared.clone();
            all.extend_from_slice(&last8);
            prop_assert_eq!(
                k.absorb(&shared).finish(last8),
                SipHasher24::new_with_key(&key).hash(&all)
            );
            prop_assert_eq!(
                split_siphash13(&k, &shared, last8),
                SipHasher13::new_with_key(&key).hash(&all)
            );
        }

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
