//! The on-disk record: a fixed 40-byte header, the backup frame's taphold PDU, and a
//! CRC-32 trailer. `docs/backup-node.md` has the same table.
//!
//! | Offset | Len | Field | Rule |
//! |---:|---:|---|---|
//! | 0 | 4 | magic | `0x54484A32` ("THJ2") |
//! | 4 | 4 | record length | whole record: 40 + payload + 4, at most [`MAX_RECORD_LEN`] |
//! | 8 | 8 | seq | the backup frame's sequence number |
//! | 16 | 4 | stream | its stream id |
//! | 20 | 2 | flags | its taphold flags |
//! | 22 | 2 | reserved | zero |
//! | 24 | 8 | timestamp_ns | the writer's clock (UNIX ns) when it received the frame |
//! | 32 | 8 | epoch | the appliance's epoch: (stream, epoch, seq) names the message |
//! | 40 | n | payload | the taphold PDU, header to digest trailer inclusive |
//! | 40 + n | 4 | crc | CRC-32 (IEEE, as zlib) of bytes `[0, 40 + n)` |
//!
//! Version 1 records (`THJ1`, 32-byte header, no epoch) predate epochs; a journal of them
//! is refused by its magic.
//!
//! All integers are big-endian, like the wire protocol, so `hexdump -C` of a segment
//! reads `THJ2` at every record start.

use core::ops::Range;

/// `"THJ2"`.
pub const MAGIC: u32 = 0x5448_4A32;
/// `"THJ1"`: a version 1 record, from before epochs.
pub const MAGIC_V1: u32 = 0x5448_4A31;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 40;
/// Bytes after the payload.
pub const TRAILER_LEN: usize = 4;
/// Header and trailer together: the length of a record with an empty payload.
pub const OVERHEAD: usize = HEADER_LEN + TRAILER_LEN;
/// Largest payload: the largest taphold PDU (48-byte header, 8 + 65535 body, 8 digest).
pub const MAX_PAYLOAD_LEN: usize = 48 + 8 + 65535 + 8;
/// Largest record.
pub const MAX_RECORD_LEN: usize = OVERHEAD + MAX_PAYLOAD_LEN;

mod field {
    use core::ops::Range;

    pub const MAGIC: Range<usize> = 0..4;
    pub const RECORD_LEN: Range<usize> = 4..8;
    pub const SEQ: Range<usize> = 8..16;
    pub const STREAM: Range<usize> = 16..20;
    pub const FLAGS: Range<usize> = 20..22;
    pub const RESERVED: Range<usize> = 22..24;
    pub const TIMESTAMP_NS: Range<usize> = 24..32;
    pub const EPOCH: Range<usize> = 32..40;
}

fn be<const N: usize>(b: &[u8], r: Range<usize>) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[r]);
    a
}

/// The fixed fields of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub seq: u64,
    pub stream: u32,
    pub epoch: u64,
    pub flags: u16,
    pub timestamp_ns: u64,
}

impl RecordHeader {
    /// The 40 header bytes of a record carrying `payload_len` bytes.
    pub fn encode(&self, payload_len: usize) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[field::MAGIC].copy_from_slice(&MAGIC.to_be_bytes());
        h[field::RECORD_LEN].copy_from_slice(&((OVERHEAD + payload_len) as u32).to_be_bytes());
        h[field::SEQ].copy_from_slice(&self.seq.to_be_bytes());
        h[field::STREAM].copy_from_slice(&self.stream.to_be_bytes());
        h[field::FLAGS].copy_from_slice(&self.flags.to_be_bytes());
        h[field::TIMESTAMP_NS].copy_from_slice(&self.timestamp_ns.to_be_bytes());
        h[field::EPOCH].copy_from_slice(&self.epoch.to_be_bytes());
        h
    }
}

/// CRC-32 of a record's header and payload.
pub fn crc(header: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header);
    h.update(payload);
    h.finalize()
}

/// One valid record, borrowed from the segment bytes it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub header: RecordHeader,
    /// The taphold PDU as it was received.
    pub payload: &'a [u8],
    /// Byte offset of the record in its segment file.
    pub offset: u64,
}

/// Why the bytes at some offset are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    /// The file ends inside the header or inside the length the header claims.
    Truncated,
    /// The first four bytes are not `THJ2`.
    BadMagic,
    /// The first four bytes are `THJ1`: a version 1 record, from a journal written
    /// before epochs.
    OldVersion,
    /// The record length is below 44 or above [`MAX_RECORD_LEN`].
    BadLength,
    /// The reserved field is not zero.
    BadReserved,
    /// The CRC does not match the header and payload.
    BadCrc,
}

impl core::fmt::Display for Defect {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Defect::Truncated => "record cut short by the end of the file",
            Defect::BadMagic => "no record magic (THJ2)",
            Defect::OldVersion => {
                "a version 1 record (THJ1): a journal from before epochs, which this version does not read"
            }
            Defect::BadLength => "record length out of range",
            Defect::BadReserved => "reserved field not zero",
            Defect::BadCrc => "CRC mismatch",
        })
    }
}

/// Decodes the record at the start of `buf` (which starts at file offset `offset`).
/// Returns the record and its length.
pub fn decode(buf: &[u8], offset: u64) -> Result<(RecordRef<'_>, usize), Defect> {
    if buf.len() < HEADER_LEN {
        // A partial header is torn if what is there agrees with a header.
        let n = buf.len().min(4);
        if buf[..n] != MAGIC.to_be_bytes()[..n] {
            return Err(Defect::BadMagic);
        }
        return Err(Defect::Truncated);
    }
    match u32::from_be_bytes(be(buf, field::MAGIC)) {
        MAGIC => {}
        MAGIC_V1 => return Err(Defect::OldVersion),
        _ => return Err(Defect::BadMagic),
    }
    let len = u32::from_be_bytes(be(buf, field::RECORD_LEN)) as usize;
    if !(OVERHEAD..=MAX_RECORD_LEN).contains(&len) {
        return Err(Defect::BadLength);
    }
    if u16::from_be_bytes(be(buf, field::RESERVED)) != 0 {
        return Err(Defect::BadReserved);
    }
    if buf.len() < len {
        return Err(Defect::Truncated);
    }
    let payload = &buf[HEADER_LEN..len - TRAILER_LEN];
    let stored = u32::from_be_bytes(be(buf, len - TRAILER_LEN..len));
    if crc(&buf[..HEADER_LEN], payload) != stored {
        return Err(Defect::BadCrc);
    }
    let header = RecordHeader {
        seq: u64::from_be_bytes(be(buf, field::SEQ)),
        stream: u32::from_be_bytes(be(buf, field::STREAM)),
        epoch: u64::from_be_bytes(be(buf, field::EPOCH)),
        flags: u16::from_be_bytes(be(buf, field::FLAGS)),
        timestamp_ns: u64::from_be_bytes(be(buf, field::TIMESTAMP_NS)),
    };
    Ok((
        RecordRef {
            header,
            payload,
            offset,
        },
        len,
    ))
}

/// Where a segment's bytes stop being records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Break {
    /// Offset of the first byte that is not part of a valid record.
    pub offset: u64,
    pub defect: Defect,
    /// Valid records found further on by searching for the magic ([`salvage`]).
    pub valid_records_after: u64,
    /// Whether the bytes from `offset` to the end are what a write cut short by a
    /// crash leaves, and nothing else: the file ends inside a record whose bytes so
    /// far agree with a record ([`Defect::Truncated`]), or (a crash that extended the
    /// file before its data reached the disk) every byte left is zero; and no valid
    /// record follows. A record like that was never whole on disk, so no sync
    /// covered it and no ack claimed it. Anything else is damage.
    pub torn: bool,
}

/// Calls `each` for every valid record from the start of `buf`, in file order, and
/// says where (if anywhere) the records stop before the end of `buf`.
pub fn scan(buf: &[u8], mut each: impl FnMut(RecordRef<'_>)) -> Option<Break> {
    let mut off = 0usize;
    while off < buf.len() {
        match decode(&buf[off..], off as u64) {
            Ok((r, len)) => {
                each(r);
                off += len;
            }
            Err(defect) => {
                let after = salvage(buf, off + 1, |_| {});
                let zeros = buf[off..].iter().all(|&b| b == 0);
                return Some(Break {
                    offset: off as u64,
                    defect,
                    valid_records_after: after,
                    torn: after == 0 && (defect == Defect::Truncated || zeros),
                });
            }
        }
    }
    None
}

/// Calls `each` for every valid record in `buf[from..]`, found by searching for the
/// magic rather than by position: what can still be read after a defect. Each one
/// checks out on its own (magic, length, reserved field, CRC over all of it), which
/// bytes that are not a record pass by chance with odds of about 2^-64. Returns how
/// many it found.
pub fn salvage(buf: &[u8], from: usize, mut each: impl FnMut(RecordRef<'_>)) -> u64 {
    let magic = MAGIC.to_be_bytes();
    let mut n = 0;
    let mut off = from;
    while off.saturating_add(HEADER_LEN) <= buf.len() {
        if buf[off..off + 4] == magic {
            if let Ok((r, len)) = decode(&buf[off..], off as u64) {
                each(r);
                n += 1;
                off += len;
                continue;
            }
        }
        off += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, payload: &[u8]) -> Vec<u8> {
        let h = RecordHeader {
            seq,
            stream: 7,
            epoch: 0x0a0b,
            flags: 4,
            timestamp_ns: 99,
        }
        .encode(payload.len());
        let mut v = h.to_vec();
        v.extend_from_slice(payload);
        v.extend_from_slice(&crc(&h, payload).to_be_bytes());
        v
    }

    #[test]
    fn layout_is_the_documented_table() {
        let r = record(0x0102030405060708, b"abc");
        assert_eq!(&r[0..4], b"THJ2");
        assert_eq!(&r[4..8], &47u32.to_be_bytes());
        assert_eq!(&r[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&r[16..20], &7u32.to_be_bytes());
        assert_eq!(&r[20..22], &4u16.to_be_bytes());
        assert_eq!(&r[22..24], &[0, 0]);
        assert_eq!(&r[24..32], &99u64.to_be_bytes());
        assert_eq!(&r[32..40], &0x0a0bu64.to_be_bytes());
        assert_eq!(&r[40..43], b"abc");
        // CRC-32 (IEEE) check value of "123456789" is 0xCBF43926.
        assert_eq!(crc(b"1234", b"56789"), 0xCBF4_3926);
        let (d, len) = decode(&r, 0).unwrap();
        assert_eq!(len, r.len());
        assert_eq!(d.header.seq, 0x0102030405060708);
        assert_eq!(d.header.epoch, 0x0a0b);
        assert_eq!(d.payload, b"abc");
    }

    #[test]
    fn every_prefix_is_truncated_and_every_flip_is_refused() {
        let r = record(5, b"payload bytes");
        for cut in 0..r.len() {
            assert_eq!(decode(&r[..cut], 0).err(), Some(Defect::Truncated), "{cut}");
        }
        for at in 0..r.len() {
            let mut v = r.clone();
            v[at] ^= 0x40;
            assert!(decode(&v, 0).is_err(), "flip at {at}");
        }
    }

    #[test]
    fn a_break_is_torn_only_when_a_crash_could_have_left_it() {
        let whole = [record(1, b"a"), record(2, b"bb")].concat();
        let cut = &whole[..whole.len() - 3];
        let b = scan(cut, |_| {}).unwrap();
        assert!(b.torn && b.defect == Defect::Truncated);
        let mut zeros = whole.clone();
        zeros.extend([0u8; 100]);
        assert!(
            scan(&zeros, |_| {}).unwrap().torn,
            "zeros: an unwritten extent"
        );
        let mut flipped = whole.clone();
        let at = flipped.len() - 6;
        flipped[at] ^= 1;
        let b = scan(&flipped, |_| {}).unwrap();
        assert!(
            !b.torn && b.defect == Defect::BadCrc,
            "a whole record failing its CRC"
        );
        let mut with_after = record(1, b"a");
        with_after.extend(b"junk");
        with_after.extend(record(2, b"bb"));
        with_after.extend(&record(3, b"c")[..10]);
        let b = scan(&with_after, |_| {}).unwrap();
        assert!(!b.torn && b.valid_records_after == 1);
        let mut v1 = record(1, b"a");
        v1[3] = b'1';
        assert_eq!(decode(&v1, 0).err(), Some(Defect::OldVersion));
    }

    #[test]
    fn scan_stops_at_the_first_defect_and_counts_what_follows() {
        let mut buf = record(1, b"a");
        buf.extend(record(2, b"bb"));
        let bad_at = buf.len();
        buf.extend(b"garbage!");
        buf.extend(record(3, b"ccc"));
        let mut seen = Vec::new();
        let b = scan(&buf, |r| seen.push(r.header.seq)).unwrap();
        assert_eq!(seen, [1, 2]);
        assert_eq!(b.offset, bad_at as u64);
        assert_eq!(b.defect, Defect::BadMagic);
        assert_eq!(b.valid_records_after, 1);
        let mut found = Vec::new();
        assert_eq!(
            salvage(&buf, bad_at, |r| found.push((r.header.seq, r.offset))),
            1
        );
        assert_eq!(found, [(3, (bad_at + 8) as u64)]);
    }

    proptest::proptest! {
        /// Arbitrary bytes never panic decode, scan or salvage, and whatever they
        /// accept is a record that lies inside the buffer.
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            if let Ok((r, len)) = decode(&buf, 0) {
                proptest::prop_assert!((OVERHEAD..=buf.len()).contains(&len));
                proptest::prop_assert_eq!(r.payload.len(), len - OVERHEAD);
            }
            let mut end = 0u64;
            let b = scan(&buf, |r| {
                assert_eq!(r.offset, end);
                end += (OVERHEAD + r.payload.len()) as u64;
            });
            match b {
                Some(b) => proptest::prop_assert_eq!(b.offset, end),
                None => proptest::prop_assert_eq!(end, buf.len() as u64),
            }
            salvage(&buf, 0, |r| assert!(r.offset as usize + OVERHEAD + r.payload.len() <= buf.len()));
        }

        /// Valid records with any field values, then damaged anywhere: every record
        /// before the damage reads back as written, and nothing panics.
        #[test]
        fn damaged_records_read_back_up_to_the_damage(
            recs in proptest::collection::vec(
                (proptest::prelude::any::<(u64, u32, u64, u16, u64)>(), proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)),
                1..8),
            at in proptest::prelude::any::<proptest::sample::Index>(),
            how in 0u8..3,
        ) {
            let mut buf = Vec::new();
            let mut starts = Vec::new();
            for ((seq, stream, epoch, flags, ts), payload) in &recs {
                starts.push(buf.len());
                let h = RecordHeader { seq: *seq, stream: *stream, epoch: *epoch, flags: *flags, timestamp_ns: *ts }
                    .encode(payload.len());
                buf.extend_from_slice(&h);
                buf.extend_from_slice(payload);
                buf.extend_from_slice(&crc(&h, payload).to_be_bytes());
            }
            let i = at.index(buf.len());
            match how {
                0 => buf[i] ^= 0x5a,
                1 => buf.truncate(i),
                _ => buf.insert(i, 0xee),
            }
            let intact = starts.iter().filter(|&&s| s < i).count().saturating_sub(1);
            let mut seen = Vec::new();
            scan(&buf, |r| seen.push((r.header.seq, r.header.stream, r.header.epoch, r.header.flags, r.header.timestamp_ns, r.payload.to_vec())));
            proptest::prop_assert!(seen.len() >= intact);
            for (k, got) in seen.iter().take(intact).enumerate() {
                let ((seq, stream, epoch, flags, ts), payload) = &recs[k];
                proptest::prop_assert_eq!(got, &(*seq, *stream, *epoch, *flags, *ts, payload.clone()));
            }
        }
    }
}
