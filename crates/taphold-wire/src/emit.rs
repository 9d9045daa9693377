//! Output builders for the primary port: released messages and confirmations.
//!
//! Release is zero-copy: the message's own buffer leaves for the destination after its
//! headers are rewritten in place. The new headers end exactly where the payload starts,
//! so the payload never moves and is never read again — its UDP checksum is carried over
//! by RFC 1624 incremental update, which only needs the fields that changed.

use crate::bytes::be16;
use crate::checksum;
use crate::classify::MessageMeta;
use crate::ethernet::{self, EtherType, EthernetAddress};
use crate::ipv4::{self, Ipv4Repr, PROTOCOL_UDP};
use crate::udp;
use crate::WireError;

/// Ethernet, IPv4 without options, and UDP headers: where the payload of every UDP frame
/// we send starts.
pub const UDP_FRAME_HEADER_LEN: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN;

/// One end of a UDP conversation on P.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// MAC address (for the peer: its next hop's).
    pub mac: EthernetAddress,
    /// IPv4 address.
    pub ip: [u8; 4],
    /// UDP port.
    pub port: u16,
}

// Offsets in an untagged frame of the fields release reads before overwriting them.
const IP_SRC: core::ops::Range<usize> = 26..30;
const IP_DST: core::ops::Range<usize> = 30..34;

fn ip4(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

/// Rewrites a message frame that [`crate::classify()`] accepted so that it leaves for `to`
/// from `from`, in place. Returns where the new frame starts: it is
/// `frame[start..start + UDP_FRAME_HEADER_LEN + meta.payload_len]`.
///
/// The new 42-byte Ethernet/IPv4/UDP header ends exactly at `meta.payload_off` (with IP
/// options on input, it starts later than 0). IPv4: IHL 5, DSCP/ECN 0, id 0, DF, TTL 64,
/// checksum computed. UDP checksum: updated incrementally from `meta.udp_checksum` if the
/// source sent one, else computed in full. Payload bytes are never written.
///
/// [`WireError::Malformed`] if `meta` cannot describe an untagged UDP frame
/// (`payload_off < 42`) or disagrees with the UDP length in the frame;
/// [`WireError::Truncated`] if the frame is shorter than `payload_off + payload_len`;
/// [`WireError::BadLength`] if the datagram would not fit an IPv4 total length.
/// The frame is untouched on error.
pub fn rewrite_released(
    frame: &mut [u8],
    meta: &MessageMeta,
    from: &Endpoint,
    to: &Endpoint,
) -> Result<usize, WireError> {
    rewrite_released_framed(frame, meta, from, to, &[])
}

/// As [`rewrite_released`], with `prefix` (the delivery header of `framing: taphold`, see
/// [`crate::delivery`]) between the UDP header and the payload: the new frame is
/// `frame[start..start + 42 + prefix.len() + payload_len]` and the prefix ends exactly at
/// `meta.payload_off`. The caller makes the room: `frame` is the classified frame with
/// exactly `prefix.len()` bytes in front of it (an mbuf prepend into its headroom), and
/// `meta.payload_off` counts them.
///
/// The UDP checksum is still updated incrementally, without reading the payload: the
/// prefix's own sum and the new length (twice: pseudo-header and UDP header) join the
/// changed fields. `prefix` must be of even length, so the payload keeps its 16-bit
/// alignment in the sum ([`WireError::Malformed`] otherwise).
pub fn rewrite_released_framed(
    frame: &mut [u8],
    meta: &MessageMeta,
    from: &Endpoint,
    to: &Endpoint,
    prefix: &[u8],
) -> Result<usize, WireError> {
    let off = usize::from(meta.payload_off);
    let len = usize::from(meta.payload_len);
    if prefix.len() & 1 != 0 {
        return Err(WireError::Malformed);
    }
    let header_end = off.checked_sub(prefix.len()).ok_or(WireError::Malformed)?;
    let start = header_end
        .checked_sub(UDP_FRAME_HEADER_LEN)
        .ok_or(WireError::Malformed)?;
    if frame.len() < off + len {
        return Err(WireError::Truncated);
    }
    let old_udp_len = u16::try_from(len + udp::HEADER_LEN).map_err(|_| WireError::BadLength)?;
    let new_len = len + prefix.len() + udp::HEADER_LEN;
    if new_len + ipv4::HEADER_LEN > usize::from(u16::MAX) {
        return Err(WireError::BadLength);
    }
    // Cannot truncate: checked just above.
    let udp_len = new_len as u16;

    // Read what the old headers said before the new ones (or the prefix) overwrite them:
    // they end at the old payload offset, `off`, whatever the prefix.
    let old_udp = &frame[off - udp::HEADER_LEN..off];
    if be16(&old_udp[4..6]) != old_udp_len {
        return Err(WireError::Malformed);
    }
    // The old frame starts after the room made for the prefix.
    let old = prefix.len();
    let udp_checksum = if meta.udp_checksum != 0 {
        // Protocol and payload are unchanged; addresses, ports and (with a prefix) the
        // length move, and the prefix joins the sum.
        let old = checksum::combine(&[
            checksum::addr(ip4(&frame[old + IP_SRC.start..old + IP_SRC.end])),
            checksum::addr(ip4(&frame[old + IP_DST.start..old + IP_DST.end])),
            be16(&old_udp[0..2]),
            be16(&old_udp[2..4]),
            old_udp_len,
            old_udp_len,
        ]);
        let new = checksum::combine(&[
            checksum::addr(from.ip),
            checksum::addr(to.ip),
            from.port,
            to.port,
            udp_len,
            udp_len,
            // `framing: raw` has no prefix: skip the call.
            if prefix.is_empty() {
                0
            } else {
                checksum::data(prefix)
            },
        ]);
        checksum::udp_field(checksum::update_sum(meta.udp_checksum, old, new))
    } else {
        let sum = checksum::combine(&[
            checksum::data(prefix),
            checksum::data(&frame[off..off + len]),
        ]);
        udp_checksum_over(from, to, udp_len, sum)
    };

    frame[header_end..off].copy_from_slice(prefix);
    write_headers(
        &mut frame[start..header_end],
        from,
        to,
        udp_len,
        udp_checksum,
    )?;
    Ok(start)
}

/// Writes the 42-byte Ethernet/IPv4/UDP headers for a payload already at
/// `frame[42..42 + payload_len]`, both checksums computed in full. Returns the frame
/// length, `42 + payload_len` (padding to 60 is the caller's). Used for confirmations.
///
/// [`WireError::BadLength`] if the datagram would not fit an IPv4 total length;
/// [`WireError::Truncated`] if `frame` is too short.
pub fn emit_udp_headers(
    frame: &mut [u8],
    from: &Endpoint,
    to: &Endpoint,
    payload_len: usize,
) -> Result<usize, WireError> {
    if payload_len > usize::from(u16::MAX) - udp::HEADER_LEN - ipv4::HEADER_LEN {
        return Err(WireError::BadLength);
    }
    let total = UDP_FRAME_HEADER_LEN + payload_len;
    let frame = frame.get_mut(..total).ok_or(WireError::Truncated)?;
    // Cannot fail: checked just above.
    let udp_len = (payload_len + udp::HEADER_LEN) as u16;
    let (headers, payload) = frame.split_at_mut(UDP_FRAME_HEADER_LEN);
    let udp_checksum = full_udp_checksum(from, to, udp_len, payload);
    write_headers(headers, from, to, udp_len, udp_checksum)?;
    Ok(total)
}

fn full_udp_checksum(from: &Endpoint, to: &Endpoint, udp_len: u16, payload: &[u8]) -> u16 {
    udp_checksum_over(from, to, udp_len, checksum::data(payload))
}

/// The UDP checksum field for a datagram whose payload sums to `payload_sum`.
fn udp_checksum_over(from: &Endpoint, to: &Endpoint, udp_len: u16, payload_sum: u16) -> u16 {
    let sum = checksum::combine(&[
        checksum::pseudo_header_v4(from.ip, to.ip, PROTOCOL_UDP, udp_len),
        from.port,
        to.port,
        udp_len,
        payload_sum,
    ]);
    checksum::udp_field(checksum::finish(sum))
}

/// Writes Ethernet, IPv4 and UDP headers into `headers`, exactly 42 bytes.
fn write_headers(
    headers: &mut [u8],
    from: &Endpoint,
    to: &Endpoint,
    udp_len: u16,
    udp_checksum: u16,
) -> Result<(), WireError> {
    if headers.len() != UDP_FRAME_HEADER_LEN {
        return Err(WireError::Truncated);
    }
    let (eth, rest) = headers.split_at_mut(ethernet::HEADER_LEN);
    let (ip, udp_hdr) = rest.split_at_mut(ipv4::HEADER_LEN);
    ethernet::emit_header(eth, to.mac, from.mac, EtherType::IPV4)?;
    Ipv4Repr {
        src_addr: from.ip,
        dst_addr: to.ip,
        protocol: PROTOCOL_UDP,
        payload_len: udp_len,
        ttl: ipv4::DEFAULT_TTL,
    }
    .emit(ip)?;
    // Stale bytes from the old headers may be here, so no `new_checked`: the length
    // (8 bytes) is what matters, and the check above proves it.
    let mut udp = udp::Packet::new_unchecked(udp_hdr);
    udp.set_src_port(from.port);
    udp.set_dst_port(to.port);
    udp.set_len(udp_len);
    udp.set_checksum(udp_checksum);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{classify, Classified, PrimaryAddr};
    use proptest::prelude::*;

    const US: Endpoint = Endpoint {
        mac: EthernetAddress([0x02, 0, 0, 0, 0, 0x01]),
        ip: [10, 0, 0, 1],
        port: 9000,
    };
    const SOURCE: Endpoint = Endpoint {
        mac: EthernetAddress([0x02, 0, 0, 0, 0, 0x99]),
        ip: [10, 0, 0, 99],
        port: 40000,
    };
    const DEST: Endpoint = Endpoint {
        mac: EthernetAddress([0x02, 0, 0, 0, 0, 0x77]),
        ip: [10, 0, 1, 7],
        port: 7000,
    };

    fn as_primary(e: &Endpoint) -> PrimaryAddr {
        PrimaryAddr {
            mac: e.mac,
            ip: e.ip,
            udp_port: e.port,
            max_payload: 9000,
        }
    }

    /// A frame from `src` to `dst` carrying `payload`, with `options` in its IP header,
    /// `padding` after it, and a UDP checksum if asked.
    fn incoming(
        src: &Endpoint,
        dst: &Endpoint,
        payload: &[u8],
        options: &[u8],
        with_checksum: bool,
        padding: usize,
    ) -> Vec<u8> {
        let mut f = vec![0u8; UDP_FRAME_HEADER_LEN + payload.len()];
        f[42..].copy_from_slice(payload);
        emit_udp_headers(&mut f, src, dst, payload.len()).unwrap();
        f[18] = 0x12; // a nonzero id and TTL 3, as if from a router
        f[22] = 3;
        if !options.is_empty() {
            let ihl = 20 + options.len();
            let mut g = f[..34].to_vec();
            g[14] = 0x40 | (ihl / 4) as u8;
            let total = u16::from_be_bytes([g[16], g[17]]) + options.len() as u16;
            g[16..18].copy_from_slice(&total.to_be_bytes());
            g.extend_from_slice(options);
            g.extend_from_slice(&f[34..]);
            f = g;
        }
        crate::ipv4::Packet::new_unchecked(&mut f[14..]).fill_checksum();
        if !with_checksum {
            let at = f.len() - payload.len() - 2;
            f[at] = 0;
            f[at + 1] = 0;
        }
        f.resize(f.len() + padding, 0);
        f
    }

    fn meta_of(f: &[u8], ours: &Endpoint) -> MessageMeta {
        match classify(f, &as_primary(ours)) {
            Classified::Message(m) => m,
            other => panic!("{other:?}"),
        }
    }

    /// Releasing must give a frame that the destination would classify as a message from
    /// us, with the same payload and a UDP checksum equal to a full computation.
    fn check_release(frame: &mut [u8], payload: &[u8]) {
        let meta = meta_of(frame, &US);
        let start = rewrite_released(frame, &meta, &US, &DEST).unwrap();
        assert_eq!(start + UDP_FRAME_HEADER_LEN, usize::from(meta.payload_off));
        let out = &frame[start..start + UDP_FRAME_HEADER_LEN + payload.len()];
        let m = meta_of(out, &DEST);
        assert_eq!(m.src_mac, US.mac);
        assert_eq!(m.src_ip, US.ip);
        assert_eq!(m.src_port, US.port);
        assert_eq!(&out[42..], payload);
        let mut full = out.to_vec();
        emit_udp_headers(&mut full, &US, &DEST, payload.len()).unwrap();
        assert_eq!(
            out,
            &full[..],
            "header bytes equal a fresh build, checksums included"
        );
    }

    #[test]
    fn construct_udp_frame() {
        let mut f = [0u8; 46];
        f[42..].copy_from_slice(b"ACK!");
        assert_eq!(emit_udp_headers(&mut f, &US, &SOURCE, 4), Ok(46));
        let expected: [u8; 46] = [
            0x02, 0, 0, 0, 0, 0x99, // to the source
            0x02, 0, 0, 0, 0, 0x01, // from us
            0x08, 0x00, //
            0x45, 0x00, 0x00, 0x20, // IHL 5, total 32
            0x00, 0x00, 0x40, 0x00, // id 0, DF
            0x40, 0x11, 0x26, 0x6a, // TTL 64, UDP, checksum
            10, 0, 0, 1, 10, 0, 0, 99, //
            0x23, 0x28, 0x9c, 0x40, // 9000 → 40000
            0x00, 0x0c, 0x9f, 0xa5, // length 12, checksum
            b'A', b'C', b'K', b'!',
        ];
        assert_eq!(f, expected);
    }

    #[test]
    fn release_with_checksum() {
        let payload = b"BUY 100 XYZ @ 42.00";
        check_release(&mut incoming(&SOURCE, &US, payload, &[], true, 0), payload);
    }

    #[test]
    fn release_without_checksum_computes_one() {
        let payload = b"SELL";
        let mut f = incoming(&SOURCE, &US, payload, &[], false, 20);
        assert_eq!(meta_of(&f, &US).udp_checksum, 0);
        check_release(&mut f, payload);
    }

    #[test]
    fn release_after_ip_options_starts_later() {
        let payload = b"odd length payload!";
        let mut f = incoming(&SOURCE, &US, payload, &[1, 1, 1, 1, 1, 1, 1, 0], true, 3);
        let meta = meta_of(&f, &US);
        assert_eq!(meta.payload_off, 50);
        let start = rewrite_released(&mut f.clone(), &meta, &US, &DEST).unwrap();
        assert_eq!(start, 8);
        check_release(&mut f, payload);
    }

    #[test]
    fn release_never_writes_the_payload_or_before_start() {
        let payload = b"untouchable";
        let mut f = incoming(&SOURCE, &US, payload, &[1, 1, 1, 0], true, 0);
        let before = f.clone();
        let meta = meta_of(&f, &US);
        let start = rewrite_released(&mut f, &meta, &US, &DEST).unwrap();
        assert_eq!(f[..start], before[..start]);
        assert_eq!(
            f[usize::from(meta.payload_off)..],
            before[usize::from(meta.payload_off)..]
        );
    }

    #[test]
    fn release_refuses_bad_meta() {
        let f = incoming(&SOURCE, &US, b"abc", &[], true, 0);
        let meta = meta_of(&f, &US);
        let mut g = f.clone();
        let short = MessageMeta {
            payload_off: 41,
            ..meta
        };
        assert_eq!(
            rewrite_released(&mut g, &short, &US, &DEST),
            Err(WireError::Malformed)
        );
        let longer = MessageMeta {
            payload_len: 4,
            ..meta
        };
        let mut g = f.clone();
        g.push(0);
        assert_eq!(
            rewrite_released(&mut g, &longer, &US, &DEST),
            Err(WireError::Malformed)
        );
        assert_eq!(g[..f.len()], f[..], "untouched on error");
        for len in 0..f.len() {
            let mut g = f.clone();
            assert_eq!(
                rewrite_released(&mut g[..len], &meta, &US, &DEST),
                Err(WireError::Truncated)
            );
            assert_eq!(g, f, "untouched on error");
        }
    }

    /// `f` with `room` zero bytes in front, as an mbuf prepend gives; and its meta.
    fn with_room(f: &[u8], room: usize) -> (Vec<u8>, MessageMeta) {
        let meta = meta_of(f, &US);
        let mut g = vec![0u8; room];
        g.extend_from_slice(f);
        let meta = MessageMeta {
            payload_off: meta.payload_off + room as u16,
            ..meta
        };
        (g, meta)
    }

    #[test]
    fn framed_release_puts_the_header_before_the_untouched_payload() {
        let header = crate::delivery::DeliveryRepr {
            flags: crate::taphold::Flags::EMPTY,
            stream: 1,
            epoch: 77,
            seq: 5,
            src_ip: SOURCE.ip,
            src_port: SOURCE.port,
            release_ns: 123,
        }
        .to_bytes();
        for with_checksum in [true, false] {
            let payload = b"BUY 100 XYZ @ 42.00";
            let f = incoming(&SOURCE, &US, payload, &[], with_checksum, 6);
            let (mut g, meta) = with_room(&f, header.len());
            let start = rewrite_released_framed(&mut g, &meta, &US, &DEST, &header).unwrap();
            assert_eq!(start, 0, "the 40 bytes of room are taken exactly");
            let out = &g[start..start + 42 + header.len() + payload.len()];
            let m = meta_of(out, &DEST);
            assert_eq!(usize::from(m.payload_len), header.len() + payload.len());
            let d = crate::delivery::Packet::new_checked(&out[42..]).unwrap();
            assert_eq!(d.seq(), 5);
            assert_eq!(d.epoch(), 77);
            assert_eq!(d.payload(), payload);
            let mut full = out.to_vec();
            emit_udp_headers(&mut full, &US, &DEST, header.len() + payload.len()).unwrap();
            assert_eq!(out, &full[..], "checksums equal a fresh build");
        }
    }

    #[test]
    fn framed_release_refuses_odd_prefixes_and_no_room() {
        let f = incoming(&SOURCE, &US, b"abc", &[], true, 0);
        let (mut g, meta) = with_room(&f, 3);
        assert_eq!(
            rewrite_released_framed(&mut g, &meta, &US, &DEST, &[0; 3]),
            Err(WireError::Malformed)
        );
        let mut g = f.clone();
        let meta = meta_of(&f, &US);
        assert_eq!(
            rewrite_released_framed(&mut g, &meta, &US, &DEST, &[0; 2]),
            Err(WireError::Malformed),
            "no room before the old headers"
        );
        assert_eq!(g, f, "untouched on error");
    }

    #[test]
    fn emit_refuses() {
        for len in 0..46 {
            let mut f = [0u8; 46];
            assert_eq!(
                emit_udp_headers(&mut f[..len], &US, &SOURCE, 4),
                Err(WireError::Truncated)
            );
        }
        let mut f = [0u8; 64];
        assert_eq!(
            emit_udp_headers(&mut f, &US, &SOURCE, 65536 - 28),
            Err(WireError::BadLength)
        );
        assert_eq!(
            emit_udp_headers(&mut f, &US, &SOURCE, 65535 - 28),
            Err(WireError::Truncated)
        );
        assert_eq!(
            emit_udp_headers(&mut f, &US, &SOURCE, usize::MAX),
            Err(WireError::BadLength)
        );
    }

    fn endpoint() -> impl Strategy<Value = Endpoint> {
        (any::<[u8; 6]>(), any::<[u8; 4]>(), any::<u16>()).prop_map(|(mut mac, ip, port)| {
            mac[0] &= 0xfe; // unicast: the destination's classifier wants its own MAC
            Endpoint {
                mac: EthernetAddress(mac),
                ip,
                port,
            }
        })
    }

    proptest! {
        /// The incremental UDP checksum equals a full recompute, for any payload and any
        /// change of addresses and ports.
        #[test]
        fn incremental_checksum_equals_full(
            payload in proptest::collection::vec(any::<u8>(), 1..700),
            src in endpoint(),
            us in endpoint(),
            to in endpoint(),
            with_checksum in any::<bool>(),
            options in 0usize..3,
        ) {
            let opts = vec![1u8; options * 4];
            let mut f = incoming(&src, &us, &payload, &opts, with_checksum, 0);
            let meta = match classify(&f, &as_primary(&us)) {
                Classified::Message(m) => m,
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            };
            let start = rewrite_released(&mut f, &meta, &us, &to).unwrap();
            let out = f[start..].to_vec();
            let mut full = out.clone();
            emit_udp_headers(&mut full, &us, &to, payload.len()).unwrap();
            prop_assert_eq!(&out, &full);
            let udp = udp::Packet::new_checked(&out[34..]).unwrap();
            prop_assert!(udp.checksum() != 0);
            prop_assert!(udp.verify_checksum(us.ip, to.ip));
        }

        /// With a prefix, the incremental checksum still equals a full recompute.
        #[test]
        fn framed_incremental_checksum_equals_full(
            payload in proptest::collection::vec(any::<u8>(), 1..700),
            prefix_words in proptest::collection::vec(any::<u16>(), 0..24),
            src in endpoint(),
            us in endpoint(),
            to in endpoint(),
            with_checksum in any::<bool>(),
            options in 0usize..3,
        ) {
            let prefix: Vec<u8> = prefix_words.iter().flat_map(|w| w.to_be_bytes()).collect();
            let opts = vec![1u8; options * 4];
            let f = incoming(&src, &us, &payload, &opts, with_checksum, 0);
            let meta = match classify(&f, &as_primary(&us)) {
                Classified::Message(m) => m,
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            };
            let mut g = vec![0u8; prefix.len()];
            g.extend_from_slice(&f);
            let meta = MessageMeta { payload_off: meta.payload_off + prefix.len() as u16, ..meta };
            let start = rewrite_released_framed(&mut g, &meta, &us, &to, &prefix).unwrap();
            let out = g[start..].to_vec();
            prop_assert_eq!(&out[42..42 + prefix.len()], &prefix[..]);
            prop_assert_eq!(&out[42 + prefix.len()..], &payload[..]);
            let mut full = out.clone();
            emit_udp_headers(&mut full, &us, &to, prefix.len() + payload.len()).unwrap();
            prop_assert_eq!(&out, &full);
        }
    }
}
