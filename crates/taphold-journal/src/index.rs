//! Random access to a run: where in which segment the record of a seq is.
//!
//! A resend request asks for a few seqs; a takeover replays from some seq on. Neither
//! may read the whole run to find them. Every segment therefore keeps, in memory, a
//! sparse index of **blocks**: runs of consecutive records in the file, each closed once
//! it reaches [`BLOCK_BYTES`], with the lowest and highest seq they hold. It is built
//! when the journal is opened (from the records open reads anyway) and as records are
//! appended; it costs 32 bytes per block, about 0.5 bytes per 100-byte record, so a run
//! grown to 100 GB under a destination that stopped confirming still indexes in ~50 MB.
//!
//! To read seq `S`, the journal looks for the blocks whose seq range holds `S` (one, on
//! a link that does not reorder), reads that block with one `pread` into a buffer kept
//! for the purpose, checks every record in it (magic, length, reserved, CRC, as
//! [`record::decode`]) and keeps a table of the block's seqs, so that the next seqs of
//! a range are found without reading again. A record that fails its checks, or a block
//! the file no longer holds, is an error naming the file and the byte offset.
//!
//! No allocation per read: the buffer and the table are allocated when the journal is
//! opened. A new segment's block list comes from a spare allocated off the write path
//! (at open, and at every trim).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::record::{self, RecordRef, MAX_RECORD_LEN, OVERHEAD};

/// A block is closed once it is at least this long.
pub const BLOCK_BYTES: u64 = 64 * 1024;

/// Most bytes one block can span: just under [`BLOCK_BYTES`], plus one whole record.
const MAX_BLOCK_BYTES: usize = BLOCK_BYTES as usize + MAX_RECORD_LEN;
/// Most records one block can hold.
const MAX_BLOCK_RECORDS: usize = MAX_BLOCK_BYTES / OVERHEAD + 1;

/// Consecutive records of one segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    /// Byte offset of the first record in the file.
    pub offset: u64,
    /// Bytes of the records, back to back from `offset`.
    pub bytes: u64,
    pub records: u32,
    pub min_seq: u64,
    pub max_seq: u64,
}

impl Block {
    pub fn holds(&self, seq: u64) -> bool {
        self.records > 0 && self.min_seq <= seq && seq <= self.max_seq
    }
}

/// The blocks of one segment, in file order.
#[derive(Debug, Default)]
pub(crate) struct BlockIndex {
    pub blocks: Vec<Block>,
}

impl BlockIndex {
    /// Room for every block of a segment of `segment_bytes` (closed once it is at least
    /// that long, so it can be one record longer), so that appending never grows it.
    pub fn sized_for(segment_bytes: u64) -> BlockIndex {
        let n = segment_bytes.saturating_add(MAX_RECORD_LEN as u64) / BLOCK_BYTES + 2;
        // A segment far larger than usual grows its list instead of reserving it all.
        BlockIndex {
            blocks: Vec::with_capacity(n.min(1 << 16) as usize),
        }
    }

    /// A record of `len` bytes holding `seq` at byte `offset`: it extends the last
    /// block when it follows that block directly and the block is still short of
    /// [`BLOCK_BYTES`]; otherwise it starts a block (so that a block is always records
    /// back to back, also around damage an open went past).
    pub fn add(&mut self, offset: u64, len: u64, seq: u64) {
        match self.blocks.last_mut() {
            Some(b) if b.bytes < BLOCK_BYTES && b.offset + b.bytes == offset => {
                b.bytes += len;
                b.records += 1;
                b.min_seq = b.min_seq.min(seq);
                b.max_seq = b.max_seq.max(seq);
            }
            _ => self.blocks.push(Block {
                offset,
                bytes: len,
                records: 1,
                min_seq: seq,
                max_seq: seq,
            }),
        }
    }

    /// Builds the index of the segment file `path` from what reads as records from its
    /// start (used after open rewrote the file).
    pub fn of_file(path: &Path) -> io::Result<BlockIndex> {
        let buf = std::fs::read(path)?;
        let mut ix = BlockIndex::default();
        record::scan(&buf, |r| {
            ix.add(r.offset, (OVERHEAD + r.payload.len()) as u64, r.header.seq)
        });
        Ok(ix)
    }
}

/// One table entry of a loaded block: a record's seq, and where it is in the buffer.
#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    at: u32,
    len: u32,
}

/// Which block is loaded: its segment's name, offset and length when it was read (an
/// append to the active segment lengthens its last block, which then reads again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loaded {
    segment: u64,
    offset: u64,
    bytes: u64,
}

/// The reading side of a journal: one block's bytes and table, and an open segment file.
pub(crate) struct BlockReader {
    buf: Vec<u8>,
    table: Vec<Entry>,
    loaded: Option<Loaded>,
    file: Option<(u64, File)>,
}

impl BlockReader {
    pub fn new() -> BlockReader {
        BlockReader {
            buf: Vec::with_capacity(MAX_BLOCK_BYTES),
            table: Vec::with_capacity(MAX_BLOCK_RECORDS),
            loaded: None,
            file: None,
        }
    }

    /// Forgets what it read and the file it holds (after a trim deleted segments).
    pub fn forget(&mut self) {
        self.loaded = None;
        self.file = None;
    }

    /// Whether the loaded block is `b` of segment `segment`, as long as it is now.
    fn is_loaded(&self, segment: u64, b: &Block) -> bool {
        self.loaded
            == Some(Loaded {
                segment,
                offset: b.offset,
                bytes: b.bytes,
            })
    }

    /// Reads block `b` of segment `segment` (file `path`) and checks every record in it.
    pub fn load(&mut self, segment: u64, path: &Path, b: &Block) -> io::Result<()> {
        if self.is_loaded(segment, b) {
            return Ok(());
        }
        self.loaded = None;
        if self.file.as_ref().is_none_or(|(n, _)| *n != segment) {
            self.file = None;
            self.file = Some((segment, File::open(path)?));
        }
        let len = usize::try_from(b.bytes)
            .ok()
            .filter(|&l| l <= MAX_BLOCK_BYTES)
            .ok_or_else(|| damaged(path, b.offset, "the index names a block longer than any"))?;
        self.buf.clear();
        self.buf.resize(len, 0);
        let (_, f) = self.file.as_ref().expect("opened above");
        f.read_exact_at(&mut self.buf, b.offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                damaged(
                    path,
                    b.offset,
                    &format!(
                        "the file ends before the {} bytes of records it held from here: cut since the journal was opened",
                        b.bytes
                    ),
                )
            } else {
                io::Error::new(e.kind(), format!("{}: {e}", path.display()))
            }
        })?;
        self.table.clear();
        let mut at = 0usize;
        let mut sorted = true;
        while at < len {
            let (r, n) = record::decode(&self.buf[at..], b.offset + at as u64)
                .map_err(|d| damaged(path, b.offset + at as u64, &d.to_string()))?;
            let seq = r.header.seq;
            sorted &= self.table.last().is_none_or(|e| e.seq <= seq);
            self.table.push(Entry {
                seq,
                at: at as u32,
                len: n as u32,
            });
            at += n;
        }
        if self.table.len() != b.records as usize {
            return Err(damaged(
                path,
                b.offset,
                &format!(
                    "{} records where {} were written",
                    self.table.len(),
                    b.records
                ),
            ));
        }
        if !sorted {
            // By seq, and for a seq held twice the first in the file first.
            self.table.sort_unstable_by_key(|e| (e.seq, e.at));
        }
        self.loaded = Some(Loaded {
            segment,
            offset: b.offset,
            bytes: b.bytes,
        });
        Ok(())
    }

    /// The record of `seq` in the loaded block, if it holds one (the first in the file).
    pub fn find(&self, seq: u64) -> Option<RecordRef<'_>> {
        let base = self.loaded?.offset;
        let i = self.table.partition_point(|e| e.seq < seq);
        let e = self.table.get(i).filter(|e| e.seq == seq)?;
        let at = e.at as usize;
        // Checked when the block was loaded.
        record::decode(&self.buf[at..at + e.len as usize], base + at as u64)
            .ok()
            .map(|(r, _)| r)
    }

    /// Records of the loaded block with a seq above `seq`.
    pub fn count_above(&self, seq: u64) -> u64 {
        self.table.iter().filter(|e| e.seq > seq).count() as u64
    }
}

/// The index says one thing, the file another: an error naming both.
fn damaged(path: &Path, offset: u64, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{}: byte offset {offset}: cannot read the record there: {what}",
            path.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_close_at_their_size_and_at_a_gap_in_the_file() {
        let mut ix = BlockIndex::default();
        let len = 1000;
        let mut off = 0;
        for seq in 1..=70 {
            ix.add(off, len, seq);
            off += len;
        }
        // 66 records make 66 000 bytes ≥ 64 KiB: the 67th starts a block.
        assert_eq!(ix.blocks.len(), 2);
        assert_eq!(
            ix.blocks[0],
            Block {
                offset: 0,
                bytes: 66_000,
                records: 66,
                min_seq: 1,
                max_seq: 66
            }
        );
        assert_eq!((ix.blocks[1].min_seq, ix.blocks[1].max_seq), (67, 70));
        // A record that does not follow the last one (damage skipped) starts a block.
        ix.add(off + 10, len, 71);
        assert_eq!(ix.blocks.len(), 3);
        // Out of order: the range widens.
        ix.add(off + 10 + len, len, 5);
        assert_eq!((ix.blocks[2].min_seq, ix.blocks[2].max_seq), (5, 71));
        let c: Vec<u64> = ix
            .blocks
            .iter()
            .filter(|b| b.holds(5))
            .map(|b| b.offset)
            .collect();
        assert_eq!(c, [0, off + 10]);
    }

    #[test]
    fn sized_for_holds_every_block_of_a_full_segment() {
        for seg in [4096u64, 65_536, 64 << 20] {
            let mut ix = BlockIndex::sized_for(seg);
            let cap = ix.blocks.capacity();
            let (mut off, mut seq) = (0u64, 1u64);
            // Smallest records close blocks at exactly BLOCK_BYTES; the segment is
            // closed once it reaches its size, after one more (largest) record.
            while off < seg {
                ix.add(off, OVERHEAD as u64, seq);
                off += OVERHEAD as u64;
                seq += 1;
            }
            ix.add(off, MAX_RECORD_LEN as u64, seq);
            assert!(ix.blocks.len() <= cap, "{seg}: {} > {cap}", ix.blocks.len());
        }
    }
}
