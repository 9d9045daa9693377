//! `link_security: aead`: the payload of a backup frame encrypted and
//! authenticated, so that it never crosses the backup link (or lands in a
//! journal, unless configured) in clear.
//!
//! The cipher is XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`, which
//! picks its AVX2/SSE2 backend at run time) under a 256-bit *payload key* of
//! its own. Its 192-bit nonce holds the message's whole identity:
//! `stream (4) ‖ epoch (8) ‖ seq (8) ‖ 0 (4)`, big-endian. (stream, epoch, seq)
//! names one message for good (the epoch is new on every start of the
//! appliance), so a nonce is never used for two different plaintexts under one
//! key. A message is encrypted once: the same ciphertext goes out on every link
//! and in every re-launch (the same nonce, plaintext and associated data give
//! the same bytes, which is a retransmission, not a nonce reuse). A 96-bit nonce
//! (AES-256-GCM, ChaCha20-Poly1305) cannot hold the identity without a per-run
//! derived key; the extended nonce needs none.
//!
//! The associated data is the backup body's 8-byte prefix (source address and
//! port, payload length). The header is covered by the SipHash digest as for
//! every PDU, which is also all the tap check computes: it never decrypts.
//!
//! On the wire (docs/protocol.md): flag `ENCRYPTED`, content mode 0, body =
//! prefix ‖ ciphertext (payload_len bytes) ‖ 16-byte tag.

use core::fmt;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

use crate::WireError;

/// Bytes of the Poly1305 tag after the ciphertext.
pub const TAG_LEN: usize = 16;

/// The payload key (32 bytes), configured as 64 hex digits in a file of its own.
/// `Debug` does not print it.
#[derive(Clone)]
pub struct PayloadKey {
    cipher: XChaCha20Poly1305,
    /// A fingerprint for logs and configs (first byte of the key's SipHash id).
    id: u8,
}

impl PayloadKey {
    /// The key of 32 bytes.
    pub fn new(key: &[u8; 32]) -> PayloadKey {
        let mut half = [0u8; 16];
        half.copy_from_slice(&key[..16]);
        PayloadKey {
            cipher: XChaCha20Poly1305::new(key.into()),
            id: crate::digest::DigestKey(half).id(),
        }
    }

    /// Exactly 64 hex digits, most significant byte first; anything else is
    /// [`WireError::Malformed`].
    pub fn from_hex(s: &str) -> Result<PayloadKey, WireError> {
        let s = s.as_bytes();
        if s.len() != 64 {
            return Err(WireError::Malformed);
        }
        let mut k = [0u8; 32];
        for (b, pair) in k.iter_mut().zip(s.chunks_exact(2)) {
            let d = |c: u8| match c {
                b'0'..=b'9' => Ok(c - b'0'),
                b'a'..=b'f' => Ok(c - b'a' + 10),
                b'A'..=b'F' => Ok(c - b'A' + 10),
                _ => Err(WireError::Malformed),
            };
            *b = (d(pair[0])? << 4) | d(pair[1])?;
        }
        Ok(PayloadKey::new(&k))
    }

    /// A short fingerprint of the key, for logs (not a secret, not unique).
    pub fn fingerprint(&self) -> u8 {
        self.id
    }

    /// The nonce of message (stream, epoch, seq).
    pub fn nonce(stream: u32, epoch: u64, seq: u64) -> [u8; 24] {
        let mut n = [0u8; 24];
        n[..4].copy_from_slice(&stream.to_be_bytes());
        n[4..12].copy_from_slice(&epoch.to_be_bytes());
        n[12..20].copy_from_slice(&seq.to_be_bytes());
        n
    }

    /// Encrypts `payload` in place and returns the tag. `ad`: the associated data.
    pub fn seal(
        &self,
        (stream, epoch, seq): (u32, u64, u64),
        ad: &[u8],
        payload: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let nonce = Self::nonce(stream, epoch, seq);
        let tag = self
            .cipher
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), ad, payload)
            // Only for a payload longer than the cipher's 256 GiB limit.
            .unwrap_or_default();
        tag.into()
    }

    /// Decrypts `ciphertext` in place if `tag` authenticates it;
    /// [`WireError::BadDigest`] (and `ciphertext` unchanged) otherwise.
    pub fn open(
        &self,
        (stream, epoch, seq): (u32, u64, u64),
        ad: &[u8],
        ciphertext: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), WireError> {
        let nonce = Self::nonce(stream, epoch, seq);
        self.cipher
            .decrypt_in_place_detached(
                XNonce::from_slice(&nonce),
                ad,
                ciphertext,
                Tag::from_slice(tag),
            )
            .map_err(|_| WireError::BadDigest)
    }
}

impl fmt::Debug for PayloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PayloadKey(fingerprint {:#04x})", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn vector_from_an_independent_implementation() {
        // tools/vectors/taphold_v4.py (HChaCha20 written from the draft, then the
        // `cryptography` package's ChaCha20Poly1305): stream 7, epoch 0x692b8900,
        // seq 42, prefix 0a000063 9c40 0005, payload "ORDER".
        let k = PayloadKey::from_hex(KEY_HEX).unwrap();
        let ad = [10, 0, 0, 99, 0x9c, 0x40, 0x00, 0x05];
        let mut p = *b"ORDER";
        let tag = k.seal((7, 0x692b_8900, 42), &ad, &mut p);
        let want_ct: [u8; 5] = VECTOR_CT;
        assert_eq!(p, want_ct);
        assert_eq!(tag, VECTOR_TAG);
        k.open((7, 0x692b_8900, 42), &ad, &mut p, &tag).unwrap();
        assert_eq!(&p, b"ORDER");
    }

    // tools/vectors/taphold_v4.py.
    const VECTOR_CT: [u8; 5] = [0x72, 0x77, 0x97, 0xe8, 0xad];
    const VECTOR_TAG: [u8; TAG_LEN] = [
        0x53, 0x48, 0x5e, 0x3e, 0x08, 0xe3, 0xad, 0x6e, 0x74, 0x84, 0xeb, 0x12, 0x60, 0xe5, 0xf2,
        0x20,
    ];

    #[test]
    fn every_part_of_the_identity_and_the_prefix_matters() {
        let k = PayloadKey::from_hex(KEY_HEX).unwrap();
        let ad = [1u8; 8];
        let mut c = *b"payload bytes";
        let tag = k.seal((1, 2, 3), &ad, &mut c);
        for (id, ad2) in [
            ((2, 2, 3), ad),
            ((1, 3, 3), ad),
            ((1, 2, 4), ad),
            ((1, 2, 3), [2u8; 8]),
        ] {
            let mut x = c;
            assert_eq!(k.open(id, &ad2, &mut x, &tag), Err(WireError::BadDigest));
            assert_eq!(x, c, "left as it was");
        }
        let other = PayloadKey::new(&[9; 32]);
        let mut x = c;
        assert_eq!(
            other.open((1, 2, 3), &ad, &mut x, &tag),
            Err(WireError::BadDigest)
        );
        assert!(!format!("{k:?}").contains("0001"));
        assert_eq!(
            PayloadKey::from_hex(&KEY_HEX[2..]).err(),
            Some(WireError::Malformed)
        );
    }

    proptest! {
        #[test]
        fn round_trip_and_any_flip_is_refused(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            seq in any::<u64>(),
            at in any::<proptest::sample::Index>(),
        ) {
            let k = PayloadKey::new(&[3; 32]);
            let ad = [4u8; 8];
            let mut c = payload.clone();
            let tag = k.seal((5, 6, seq), &ad, &mut c);
            if !payload.is_empty() {
                prop_assert_ne!(&c, &payload);
                let mut bad = c.clone();
                let i = at.index(bad.len());
                bad[i] ^= 1;
                prop_assert_eq!(k.open((5, 6, seq), &ad, &mut bad, &tag), Err(WireError::BadDigest));
            }
            k.open((5, 6, seq), &ad, &mut c, &tag).unwrap();
            prop_assert_eq!(c, payload);
        }
    }
}
