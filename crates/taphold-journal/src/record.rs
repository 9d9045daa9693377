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
//! reads `THJ1` at every record start.

use core::ops::Range;

/// `"THJ2"`.
pub const MAGIC: u32 = 0x5448_4A32;
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
    /// The 32 header bytes of a record carrying `payload_len` bytes.
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
    if u32::from_be_bytes(be(buf, field::MAGIC)) != MAGIC {
        return Err(Defect::BadMagic);
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
    /// Valid records found further on by searching for the magic (they are not
    /// trusted: they follow an invalid region).
    pub valid_records_after: u64,
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
                return Some(Break {
                    offset: off as u64,
                    defect,
                    valid_records_after: count_valid_after(buf, off + 1),
                })
            }
        }
    }
    None
}

/// Valid records anywhere in `buf[from..]`, found by searching for the magic.
fn count_valid_after(buf: &[u8], from: usize) -> u64 {
    let magic = MAGIC.to_be_bytes();
    let mut n = 0;
    let mut off = from;
    while off + HEADER_LEN <= buf.len() {
        if buf[off..off + 4] == magic {
            if let Ok((_, len)) = decode(&buf[off..], off as u64) {
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
    }
}
