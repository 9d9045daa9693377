//! The run's record of sealed segments: the file `seals`, one line per segment sealed.
//!
//! Segment names alone cannot tell a deleted segment from frames that never arrived:
//! a segment that filled up just before a burst of frames was lost on the link leaves
//! exactly the names and seqs that deleting the next segment does. So each time the
//! journal seals a segment it appends what the segment held:
//!
//! ```text
//! 00000000000000000001 65560 412 1 412 00000000000000000413
//! name                 bytes records min_seq max_seq next
//! ```
//!
//! `next` is the name of the segment created after it. The line is written (and
//! fdatasynced) after the next segment's file exists and before any record goes into
//! it, so a run never has a record past a seal that is not in `seals`, and the last
//! line's `next` always names the segment being written. Lines are never removed:
//! a trimmed segment's line stays, its `max_seq` below the trim floor. Against this,
//! [`crate::Journal::open`] and [`crate::inspect()`] find a sealed segment that is gone,
//! cut, or empty.
//!
//! A crash while a line is being written leaves a partial last line (no newline): the
//! segment it describes is then still the last one, unsealed, and the line is
//! ignored (and cut by the next open, which seals that segment again later).

use std::fs;
use std::io;
use std::path::Path;

/// The file name.
pub const SEALS_FILE: &str = "seals";
/// Longest line: six 20-digit numbers, five spaces and a newline.
pub const MAX_LINE: usize = 6 * 20 + 6;

/// What one sealed segment held when it was sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    /// The segment's number (its file name).
    pub name: u64,
    pub bytes: u64,
    pub records: u64,
    /// Lowest and highest seq in it (both 0 when it held no record).
    pub min_seq: u64,
    pub max_seq: u64,
    /// The number of the segment created after it.
    pub next: u64,
}

/// Writes the decimal digits of `v` into `out` from its start, `width` digits at
/// least (zero-padded); returns how many. No allocation: rollover calls it.
fn put(out: &mut [u8], v: u64, width: usize) -> usize {
    let mut digits = [0u8; 20];
    let mut n = 0;
    let mut v = v;
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let w = n.max(width);
    for (i, d) in out[..w].iter_mut().enumerate() {
        let k = w - 1 - i;
        *d = if k < n { digits[k] } else { b'0' };
    }
    w
}

impl Seal {
    /// The line for this seal, newline included, into `out`; returns its length.
    pub fn encode(&self, out: &mut [u8; MAX_LINE]) -> usize {
        let mut n = 0;
        let fields = [
            (self.name, 20),
            (self.bytes, 1),
            (self.records, 1),
            (self.min_seq, 1),
            (self.max_seq, 1),
            (self.next, 20),
        ];
        for (i, (v, width)) in fields.into_iter().enumerate() {
            if i > 0 {
                out[n] = b' ';
                n += 1;
            }
            n += put(&mut out[n..], v, width);
        }
        out[n] = b'\n';
        n + 1
    }

    /// One line, without its newline.
    pub fn parse(line: &str) -> Option<Seal> {
        let mut f = line.split(' ').map(|w| {
            if w.is_empty() || !w.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            w.parse::<u64>().ok()
        });
        let mut next = || f.next().flatten();
        let s = Seal {
            name: next()?,
            bytes: next()?,
            records: next()?,
            min_seq: next()?,
            max_seq: next()?,
            next: next()?,
        };
        if f.next().is_some() || s.min_seq > s.max_seq || s.next <= s.name {
            return None;
        }
        Some(s)
    }
}

/// The `seals` file of a run, read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seals {
    /// Every well-formed line, in file order (creation order).
    pub seals: Vec<Seal>,
    /// Lines that are not seals: (1-based line number, the line).
    pub bad_lines: Vec<(usize, String)>,
    /// Bytes of the complete lines; anything after them is a partial last line.
    pub complete_len: u64,
    /// Bytes of a partial last line (a crash while it was written), if any.
    pub torn_len: u64,
}

impl Seals {
    /// The seal of segment `name`, if it was sealed (the last line of it wins).
    pub fn get(&self, name: u64) -> Option<&Seal> {
        self.seals.iter().rev().find(|s| s.name == name)
    }

    /// The seal written last: its `next` is the segment being written.
    pub fn newest(&self) -> Option<&Seal> {
        self.seals.iter().max_by_key(|s| s.name)
    }
}

/// Reads `dir/seals`; `None` when there is none (no segment was ever sealed).
pub fn read(dir: &Path) -> io::Result<Option<Seals>> {
    let bytes = match fs::read(dir.join(SEALS_FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut out = Seals {
        complete_len: complete as u64,
        torn_len: (bytes.len() - complete) as u64,
        ..Seals::default()
    };
    if complete == 0 {
        return Ok(Some(out));
    }
    // Every complete line, without the final newline's empty remainder.
    for (i, line) in bytes[..complete - 1].split(|&b| b == b'\n').enumerate() {
        match std::str::from_utf8(line).ok().and_then(Seal::parse) {
            Some(s) => out.seals.push(s),
            None => out
                .bad_lines
                .push((i + 1, String::from_utf8_lossy(line).into_owned())),
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_line_is_the_documented_text_and_parses_back() {
        let s = Seal {
            name: 1,
            bytes: 65560,
            records: 412,
            min_seq: 1,
            max_seq: 412,
            next: 413,
        };
        let mut buf = [0u8; MAX_LINE];
        let n = s.encode(&mut buf);
        assert_eq!(
            &buf[..n],
            b"00000000000000000001 65560 412 1 412 00000000000000000413\n"
        );
        assert_eq!(
            Seal::parse(std::str::from_utf8(&buf[..n - 1]).unwrap()),
            Some(s)
        );
        for bad in [
            "",
            "1 2 3 4 5",
            "1 2 3 4 5 6 7",
            "1 2 3 5 4 6",
            "7 2 3 4 5 6",
            "1 2 3 4 5 +6",
            "1  2 3 4 5 6",
        ] {
            assert_eq!(Seal::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_partial_last_line_is_set_apart_and_bad_lines_are_named() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(read(t.path()).unwrap(), None);
        fs::write(
            t.path().join(SEALS_FILE),
            "00000000000000000001 10 1 1 1 00000000000000000002\nnonsense\n00000000000000000002 10 1 2 2 00000000000000000003\n0000000000",
        )
        .unwrap();
        let s = read(t.path()).unwrap().unwrap();
        assert_eq!(s.seals.len(), 2);
        assert_eq!(s.bad_lines, [(2, "nonsense".to_string())]);
        assert_eq!(s.torn_len, 10);
        assert_eq!(s.newest().unwrap().next, 3);
        assert_eq!(s.get(2).unwrap().max_seq, 2);
    }

    proptest! {
        #[test]
        fn any_seal_round_trips(v in any::<[u64; 6]>()) {
            let mut s = Seal { name: v[0], bytes: v[1], records: v[2], min_seq: v[3].min(v[4]), max_seq: v[3].max(v[4]), next: v[5] };
            if s.next <= s.name {
                s.next = s.name.saturating_add(1);
            }
            let mut buf = [0u8; MAX_LINE];
            let n = s.encode(&mut buf);
            let text = std::str::from_utf8(&buf[..n - 1]).unwrap();
            let want = (s.next > s.name).then_some(s);
            prop_assert_eq!(Seal::parse(text), want);
        }

        #[test]
        fn any_file_reads_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let t = tempfile::tempdir().unwrap();
            fs::write(t.path().join(SEALS_FILE), &bytes).unwrap();
            let s = read(t.path()).unwrap().unwrap();
            prop_assert_eq!(s.complete_len + s.torn_len, bytes.len() as u64);
        }
    }
}
