//! TCP byte-stream reassembly by sequence number, for the backup node's
//! `journal export --flow` and `recover`.
//!
//! The journal holds a flow's segments in the order the appliance launched them (with
//! its retransmissions, overlaps and, across a restart, several epochs). [`Reassembler`]
//! places each by its TCP sequence number — serial arithmetic on wrapping u32, unwrapped
//! against the highest end seen so a flow may run past 2^32 bytes — relative to the SYN
//! when one was seen (data starts at ISN + 1), else to the lowest sequence number.
//! The first copy of a byte wins; a later copy that differs is a *conflict*, reported
//! by sequence range; bytes nobody sent are *holes*, named by sequence range.
//!
//! A segment may also be *opaque*: a range whose bytes the node does not have (a compact
//! FIX message of content mode 3 — its extent is known, not its bytes). It takes part in
//! "first copy wins" like any other, under the caller's id.

use core::ops::Range;

/// Refuse to lay out a stream longer than this: the node holds it in memory (about
/// five bytes per byte of stream).
pub const MAX_SPAN: i64 = 1 << 30;

/// What one [`Reassembler::push`] was, as far as it can tell before the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentOutcome {
    /// Placed.
    Placed,
    /// Before the SYN's sequence number + 1: not part of the byte stream, ignored.
    BeforeStart,
}

#[derive(Debug, Clone)]
struct Insert {
    pos: i64,
    len: u32,
    data: Option<Vec<u8>>,
    id: usize,
}

/// Collects a flow's segments, then lays out its byte stream ([`Reassembler::finish`]).
#[derive(Debug, Clone, Default)]
pub struct Reassembler {
    inserts: Vec<Insert>,
    /// Unwrapping reference: `ref_seq` is at position `ref_pos`.
    reference: Option<(u32, i64)>,
    syn_pos: Option<i64>,
}

/// A run of the laid-out stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Run {
    /// Bytes held: `seq` is the TCP sequence number of the first.
    Bytes { seq: u32, data: Vec<u8> },
    /// Bytes of opaque insert `id` (only those it won).
    Opaque {
        seq: u32,
        len: u32,
        id: usize,
        /// Every byte of the insert is here (none taken by an earlier copy).
        whole: bool,
    },
    /// Bytes nobody sent: sequence numbers `from .. to` (wrapping).
    Hole { from: u32, to: u32 },
}

/// A flow's byte stream as far as the segments tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassembled {
    /// TCP sequence number of the stream's first byte (ISN + 1 with a SYN).
    pub start_seq: u32,
    /// The first sequence number after the last byte.
    pub end_seq: u32,
    /// The stream, in order.
    pub runs: Vec<Run>,
    /// Later copies that differ from the first, as `(seq, len)` ranges.
    pub conflicts: Vec<(u32, u32)>,
    /// Bytes received more than once (retransmissions and overlaps).
    pub duplicate_bytes: u64,
    /// Segments before the stream's start (before the SYN), ignored.
    pub before_start: u64,
}

impl Reassembled {
    /// The holes, as `(from, to)` sequence ranges.
    pub fn holes(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.runs.iter().filter_map(|r| match *r {
            Run::Hole { from, to } => Some((from, to)),
            _ => None,
        })
    }

    /// Bytes held (not holes).
    pub fn held_bytes(&self) -> u64 {
        self.runs
            .iter()
            .map(|r| match r {
                Run::Bytes { data, .. } => data.len() as u64,
                Run::Opaque { len, .. } => u64::from(*len),
                Run::Hole { .. } => 0,
            })
            .sum()
    }
}

/// `a` is at or after `b` in serial arithmetic.
pub fn seq_ge(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

impl Reassembler {
    /// Nothing yet.
    pub fn new() -> Reassembler {
        Reassembler::default()
    }

    fn position(&mut self, seq: u32, len: u32) -> i64 {
        let pos = match self.reference {
            None => 0,
            Some((r, rp)) => rp + i64::from(seq.wrapping_sub(r) as i32),
        };
        let end = pos + i64::from(len);
        match self.reference {
            Some((_, rp)) if end <= rp => {}
            _ => self.reference = Some((seq.wrapping_add(len), end)),
        }
        pos
    }

    /// A segment's bytes at `seq`. `syn`: the segment has SYN set (its data, if any,
    /// starts at `seq + 1`). Returns what it was.
    pub fn push(&mut self, seq: u32, syn: bool, data: &[u8]) -> SegmentOutcome {
        self.add(seq, syn, data.len() as u32, Some(data.to_vec()), 0)
    }

    /// An opaque range of `len` bytes at `seq` (see the module docs), under `id`.
    pub fn push_opaque(&mut self, seq: u32, len: u32, id: usize) -> SegmentOutcome {
        self.add(seq, false, len, None, id)
    }

    fn add(
        &mut self,
        seq: u32,
        syn: bool,
        len: u32,
        data: Option<Vec<u8>>,
        id: usize,
    ) -> SegmentOutcome {
        let seq = if syn {
            let p = self.position(seq, 1);
            self.syn_pos = Some(p);
            seq.wrapping_add(1)
        } else {
            seq
        };
        let pos = self.position(seq, len);
        if len > 0 {
            self.inserts.push(Insert { pos, len, data, id });
        }
        match self.syn_pos {
            Some(s) if pos <= s => SegmentOutcome::BeforeStart,
            _ => SegmentOutcome::Placed,
        }
    }

    /// Lays the stream out. `Err` if it would span more than [`MAX_SPAN`] bytes.
    pub fn finish(self) -> Result<Reassembled, String> {
        let start = match self.syn_pos {
            Some(s) => s + 1,
            None => self.inserts.iter().map(|i| i.pos).min().unwrap_or(0),
        };
        let end = self
            .inserts
            .iter()
            .map(|i| i.pos + i64::from(i.len))
            .max()
            .unwrap_or(start)
            .max(start);
        let span = end - start;
        if span > MAX_SPAN {
            return Err(format!("the flow spans {span} bytes, more than {MAX_SPAN}"));
        }
        // The sequence number of position `start`.
        let start_seq = match (self.reference, self.syn_pos) {
            (Some((r, rp)), _) => r.wrapping_sub((rp - start) as u32),
            (None, _) => 0,
        };
        let seq_at = |pos: i64| start_seq.wrapping_add((pos - start) as u32);
        const NONE: u32 = u32::MAX;
        let n = span as usize;
        let mut owner = vec![NONE; n];
        let mut bytes = vec![0u8; n];
        let mut conflicts: Vec<(u32, u32)> = Vec::new();
        let mut duplicate_bytes = 0u64;
        let mut before_start = 0u64;
        for (k, ins) in self.inserts.iter().enumerate() {
            let r = clip(ins.pos, ins.len, start, end);
            if r.is_empty() {
                before_start += 1;
                continue;
            }
            let mut conflict_at: Option<i64> = None;
            let flush = |c: &mut Option<i64>, upto: i64, out: &mut Vec<(u32, u32)>| {
                if let Some(from) = c.take() {
                    out.push((seq_at(from), (upto - from) as u32));
                }
            };
            for p in r.clone() {
                let i = (p - start) as usize;
                let mine = ins.data.as_ref().map(|d| d[(p - ins.pos) as usize]);
                if owner[i] == NONE {
                    owner[i] = k as u32;
                    if let Some(b) = mine {
                        bytes[i] = b;
                    }
                    flush(&mut conflict_at, p, &mut conflicts);
                    continue;
                }
                duplicate_bytes += 1;
                let first_has = self.inserts[owner[i] as usize].data.is_some();
                let differs = matches!(mine, Some(b) if first_has && b != bytes[i]);
                if differs {
                    conflict_at.get_or_insert(p);
                } else {
                    flush(&mut conflict_at, p, &mut conflicts);
                }
            }
            flush(&mut conflict_at, r.end, &mut conflicts);
        }
        // Walk the owners into runs.
        let mut runs = Vec::new();
        let mut i = 0usize;
        while i < n {
            let o = owner[i];
            let mut j = i + 1;
            if o == NONE {
                while j < n && owner[j] == NONE {
                    j += 1;
                }
                runs.push(Run::Hole {
                    from: seq_at(start + i as i64),
                    to: seq_at(start + j as i64),
                });
            } else if self.inserts[o as usize].data.is_some() {
                while j < n && owner[j] != NONE && self.inserts[owner[j] as usize].data.is_some() {
                    j += 1;
                }
                runs.push(Run::Bytes {
                    seq: seq_at(start + i as i64),
                    data: bytes[i..j].to_vec(),
                });
            } else {
                while j < n && owner[j] == o {
                    j += 1;
                }
                let ins = &self.inserts[o as usize];
                runs.push(Run::Opaque {
                    seq: seq_at(start + i as i64),
                    len: (j - i) as u32,
                    id: ins.id,
                    whole: (j - i) as u32 == ins.len && start + i as i64 == ins.pos,
                });
            }
            i = j;
        }
        Ok(Reassembled {
            start_seq,
            end_seq: seq_at(end),
            runs,
            conflicts,
            duplicate_bytes,
            before_start,
        })
    }
}

fn clip(pos: i64, len: u32, start: i64, end: i64) -> Range<i64> {
    let a = pos.max(start);
    let b = (pos + i64::from(len)).min(end);
    if a < b {
        a..b
    } else {
        a..a
    }
}
