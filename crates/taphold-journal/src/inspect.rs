//! A read-only report on a journal directory: what `taphold-backup journal inspect`
//! prints. Nothing is modified; what [`crate::Journal::open`] would repair (a torn tail
//! of the last segment) is reported as a problem of its own kind.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::record;
use crate::{list_segments, read_floor};

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentReport {
    pub file: PathBuf,
    pub bytes: u64,
    /// Valid records before the first defect (if any).
    pub records: u64,
    /// Lowest and highest seq among them.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The last segment ends in a torn or corrupt tail: opening the journal truncates it.
    TornTail,
    /// A bad record in a sealed segment: opening the journal refuses.
    Corrupt,
    /// A seq journaled more than once.
    DuplicateSeq,
    /// A `*.journal` file whose name is not 20 digits: opening refuses.
    BadName,
    /// `trim-floor` unreadable.
    BadFloor,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    pub file: PathBuf,
    /// Byte offset in `file` (0 when the problem is the whole file).
    pub offset: u64,
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ProblemKind::TornTail => "torn tail (recoverable: opening the journal discards it)",
            ProblemKind::Corrupt => "CORRUPT (opening the journal refuses)",
            ProblemKind::DuplicateSeq => "duplicate seq",
            ProblemKind::BadName => "not a segment name (opening the journal refuses)",
            ProblemKind::BadFloor => "unreadable trim floor (opening the journal refuses)",
        };
        write!(
            f,
            "{}: byte offset {}: {what}: {}",
            self.file.display(),
            self.offset,
            self.detail
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub dir: PathBuf,
    pub segments: Vec<SegmentReport>,
    pub problems: Vec<Problem>,
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The trim floor, if one was recorded.
    pub floor: Option<u64>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Whether opening the journal would succeed (only torn tails and duplicates).
    pub fn is_recoverable(&self) -> bool {
        self.problems
            .iter()
            .all(|p| matches!(p.kind, ProblemKind::TornTail | ProblemKind::DuplicateSeq))
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "journal {}", self.dir.display())?;
        for s in &self.segments {
            writeln!(
                f,
                "  {}  {} bytes  {} records  seq {}..{}",
                s.file.file_name().unwrap_or_default().to_string_lossy(),
                s.bytes,
                s.records,
                opt(s.first_seq),
                opt(s.last_seq)
            )?;
        }
        writeln!(
            f,
            "{} segments, {} records, seq {}..{}, trim floor {}",
            self.segments.len(),
            self.records,
            opt(self.first_seq),
            opt(self.last_seq),
            opt(self.floor)
        )?;
        if self.problems.is_empty() {
            write!(f, "no problems")
        } else {
            writeln!(f, "{} problem(s):", self.problems.len())?;
            for (i, p) in self.problems.iter().enumerate() {
                if i > 0 {
                    writeln!(f)?;
                }
                write!(f, "  {p}")?;
            }
            Ok(())
        }
    }
}

/// Reads every segment of the journal in `dir` and reports segments, records, seq
/// ranges and every problem, without modifying anything. Errors only when the
/// directory or a file cannot be read.
pub fn inspect(dir: &Path) -> io::Result<Report> {
    let (files, bad) = list_segments(dir)?;
    let mut report = Report {
        dir: dir.to_path_buf(),
        segments: Vec::new(),
        problems: Vec::new(),
        records: 0,
        first_seq: None,
        last_seq: None,
        floor: None,
    };
    for b in bad {
        report.problems.push(Problem {
            kind: ProblemKind::BadName,
            file: b,
            offset: 0,
            detail: "want 20 digits and .journal".into(),
        });
    }
    match read_floor(dir) {
        Ok(f) => report.floor = f,
        Err(e) => report.problems.push(Problem {
            kind: ProblemKind::BadFloor,
            file: dir.join(crate::FLOOR_FILE),
            offset: 0,
            detail: e.to_string(),
        }),
    }
    let mut seen = HashSet::new();
    for (i, (_, path)) in files.iter().enumerate() {
        let last = i + 1 == files.len();
        let buf = fs::read(path)?;
        let mut seg = SegmentReport {
            file: path.clone(),
            bytes: buf.len() as u64,
            records: 0,
            first_seq: None,
            last_seq: None,
        };
        let mut dups = Vec::new();
        let brk = record::scan(&buf, |r| {
            let s = r.header.seq;
            seg.records += 1;
            seg.first_seq = Some(seg.first_seq.map_or(s, |v| v.min(s)));
            seg.last_seq = Some(seg.last_seq.map_or(s, |v| v.max(s)));
            if !seen.insert(s) {
                dups.push((r.offset, s));
            }
        });
        for (offset, s) in dups {
            report.problems.push(Problem {
                kind: ProblemKind::DuplicateSeq,
                file: path.clone(),
                offset,
                detail: format!("seq {s} is journaled again here"),
            });
        }
        if let Some(b) = brk {
            report.problems.push(Problem {
                kind: if last {
                    ProblemKind::TornTail
                } else {
                    ProblemKind::Corrupt
                },
                file: path.clone(),
                offset: b.offset,
                detail: format!(
                    "{}; {} bytes from here to the end of the file{}",
                    b.defect,
                    buf.len() as u64 - b.offset,
                    if b.valid_records_after > 0 {
                        format!(
                            ", with {} valid-looking records after it",
                            b.valid_records_after
                        )
                    } else {
                        String::new()
                    }
                ),
            });
        }
        report.records += seg.records;
        if let Some(s) = seg.first_seq {
            report.first_seq = Some(report.first_seq.map_or(s, |v| v.min(s)));
        }
        if let Some(s) = seg.last_seq {
            report.last_seq = Some(report.last_seq.map_or(s, |v| v.max(s)));
        }
        report.segments.push(seg);
    }
    Ok(report)
}
