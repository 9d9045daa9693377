//! Taphold PDUs on a backup link: an Ethernet header (EtherType 0x88B5), the
//! PDU, zero padding to the Ethernet minimum.
//!
//! Every frame the appliance and the backup node put on a backup link is built
//! by [`emit_frame`], and every frame they take from one is opened by
//! [`pdu_of`], which checks the addresses a frame of that direction must
//! carry. One definition for both ends.

use crate::ethernet::{self, EtherType, EthernetAddress, MIN_FRAME_LEN};
use crate::WireError;

/// The length of the frame carrying a PDU of `pdu_len` bytes.
#[inline]
pub const fn frame_len(pdu_len: usize) -> usize {
    let n = ethernet::HEADER_LEN + pdu_len;
    if n < MIN_FRAME_LEN {
        MIN_FRAME_LEN
    } else {
        n
    }
}

/// Writes a frame from `src` to `dst` at the start of `buf`: the header, the
/// PDU that `emit` writes into the `pdu_len` bytes it is given (returning its
/// digest), and zero padding up to [`frame_len`]. Returns the frame's length
/// and the digest. [`WireError::Truncated`] if `buf` is shorter than the frame.
pub fn emit_frame(
    buf: &mut [u8],
    dst: EthernetAddress,
    src: EthernetAddress,
    pdu_len: usize,
    emit: impl FnOnce(&mut [u8]) -> Result<u64, WireError>,
) -> Result<(usize, u64), WireError> {
    let len = frame_len(pdu_len);
    let frame = buf.get_mut(..len).ok_or(WireError::Truncated)?;
    ethernet::emit_header(frame, dst, src, EtherType::TAPHOLD)?;
    let end = ethernet::HEADER_LEN + pdu_len;
    let digest = emit(&mut frame[ethernet::HEADER_LEN..end])?;
    frame[end..].fill(0);
    Ok((len, digest))
}

/// Re-addresses a frame built by [`emit_frame`] (from `src` to `dst` now):
/// how one backup frame's bytes go out on several links. A buffer shorter
/// than the addresses is left alone (never a frame of ours).
#[inline]
pub fn readdress(frame: &mut [u8], dst: EthernetAddress, src: EthernetAddress) {
    if let Some(h) = frame.get_mut(..12) {
        h[..6].copy_from_slice(&dst.0);
        h[6..].copy_from_slice(&src.0);
    }
}

/// Why a frame taken from a backup link is not a taphold frame for us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotOurs {
    /// Shorter than an Ethernet header.
    Runt,
    /// Not EtherType 0x88B5.
    NotTaphold,
    /// Not addressed to us.
    NotForUs,
    /// Not from the peer this link pairs us with.
    WrongPeer,
}

/// The bytes after the Ethernet header of `frame`, if it is a taphold frame
/// from `src` to `dst`; else why not. (The PDU itself is checked by
/// `taphold::Packet`.)
#[inline]
pub fn open_frame(
    frame: &[u8],
    dst: EthernetAddress,
    src: EthernetAddress,
) -> Result<&[u8], NotOurs> {
    if frame.len() < ethernet::HEADER_LEN {
        Err(NotOurs::Runt)
    } else if frame[12..14] != EtherType::TAPHOLD.0.to_be_bytes() {
        Err(NotOurs::NotTaphold)
    } else if frame[0..6] != dst.0 {
        Err(NotOurs::NotForUs)
    } else if frame[6..12] != src.0 {
        Err(NotOurs::WrongPeer)
    } else {
        Ok(&frame[ethernet::HEADER_LEN..])
    }
}

/// The taphold PDU bytes of a frame whatever its addresses: for frames whose
/// path is already known (one we built, or the replay harness's view of the
/// fibre). None if it is not a taphold frame.
#[inline]
pub fn pdu(frame: &[u8]) -> Option<&[u8]> {
    (frame.len() >= ethernet::HEADER_LEN && frame[12..14] == EtherType::TAPHOLD.0.to_be_bytes())
        .then(|| &frame[ethernet::HEADER_LEN..])
}

/// [`open_frame`], for a caller that counts every refusal alike.
#[inline]
pub fn pdu_of(frame: &[u8], dst: EthernetAddress, src: EthernetAddress) -> Option<&[u8]> {
    open_frame(frame, dst, src).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taphold::{AckRepr, Packet};
    use crate::DigestKey;

    const A: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xa]);
    const B: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xb]);

    fn ack() -> AckRepr {
        AckRepr {
            link: 0,
            stream: 1,
            epoch: 2,
            seq: 3,
            timestamp_ns: 4,
            watermark: 5,
            records: 6,
        }
    }

    #[test]
    fn a_frame_round_trips_and_is_padded() {
        let a = ack();
        let k = DigestKey([1; 16]);
        let mut buf = [0xeeu8; 100];
        let (len, d) = emit_frame(&mut buf, B, A, a.buffer_len(), |b| a.emit(b, &k)).unwrap();
        assert_eq!(len, 14 + 64);
        assert_eq!(len, frame_len(a.buffer_len()));
        assert!(
            buf[len..].iter().all(|&b| b == 0xee),
            "nothing written past the frame"
        );
        let pdu = pdu_of(&buf[..len], B, A).unwrap();
        let p = Packet::new_checked(pdu).unwrap();
        assert_eq!(p.digest_field(), d);
        assert_eq!(AckRepr::parse(&p, &k), Ok(a));
        assert_eq!(pdu_of(&buf[..len], A, B), None, "the other direction");
        assert_eq!(pdu_of(&buf[..13], B, A), None);
        let mut ipv4 = buf;
        ipv4[12..14].copy_from_slice(&[8, 0]);
        assert_eq!(pdu_of(&ipv4[..len], B, A), None);
        let f = &buf[..len];
        assert_eq!(open_frame(&f[..13], B, A), Err(NotOurs::Runt));
        assert_eq!(open_frame(&ipv4[..len], B, A), Err(NotOurs::NotTaphold));
        assert_eq!(open_frame(f, A, A), Err(NotOurs::NotForUs));
        assert_eq!(open_frame(f, B, B), Err(NotOurs::WrongPeer));
        assert_eq!(open_frame(f, B, A), Ok(&f[14..]));
        let mut other = buf;
        readdress(&mut other[..len], A, B);
        assert_eq!(
            pdu_of(&other[..len], A, B),
            Some(&f[14..]),
            "same PDU, other way"
        );
        readdress(&mut other[..5], B, A); // too short: untouched, no panic
        assert_eq!(super::pdu(&other[..len]), Some(&f[14..]), "any addresses");
        assert_eq!(super::pdu(&ipv4[..len]), None);
        assert_eq!(super::pdu(&f[..13]), None);
    }

    #[test]
    fn short_pdus_are_padded_to_the_ethernet_minimum() {
        assert_eq!(frame_len(10), 60);
        let mut buf = [0xeeu8; 60];
        let (len, _) = emit_frame(&mut buf, B, A, 10, |b| {
            b.fill(7);
            Ok(9)
        })
        .unwrap();
        assert_eq!(len, 60);
        assert_eq!(&buf[14..24], &[7; 10]);
        assert!(buf[24..].iter().all(|&b| b == 0), "zero padding");
        assert_eq!(
            emit_frame(&mut [0u8; 59], B, A, 10, |_| Ok(0)),
            Err(WireError::Truncated)
        );
    }
}
