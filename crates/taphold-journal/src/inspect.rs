//! A read-only report on a journal directory: what `taphold-backup journal inspect`
//! prints, run by run. Nothing is modified; what [`crate::Journal::open`] would repair (a
//! torn tail of the last segment) is reported as a problem of its own kind.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::record;
use crate::runs::{list_runs, RunId};
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
    /// A record of another (stream, epoch) than its run directory names: opening refuses.
    ForeignRecord,
    /// A segment file outside any run (a journal from before epochs, or a file moved by
    /// hand): no run will ever open it.
    Stray,
    /// The directory holds no journal at all.
    NoJournal,
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
            ProblemKind::ForeignRecord => "record of another run (opening the journal refuses)",
            ProblemKind::Stray => "segment outside any run (never opened)",
            ProblemKind::NoJournal => "not a journal",
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

/// One run of a journal directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The run's (stream, epoch), when `dir` was found as a run.
    pub run: Option<RunId>,
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
        match self.run {
            Some(run) => writeln!(f, "run {run}: {}", self.dir.display())?,
            None => writeln!(f, "journal {}", self.dir.display())?,
        }
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

/// What a whole journal directory holds: every run's report, and what lies outside runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalReport {
    pub root: PathBuf,
    pub runs: Vec<Report>,
    /// Problems of the directory itself (stray segments, no journal at all).
    pub problems: Vec<Problem>,
}

impl JournalReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.runs.iter().all(Report::is_clean)
    }

    /// Whether every run would open (only torn tails and duplicates), and nothing but
    /// runs is here.
    pub fn is_recoverable(&self) -> bool {
        self.problems.is_empty() && self.runs.iter().all(Report::is_recoverable)
    }

    /// Every problem, of the directory and of each run.
    pub fn all_problems(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .chain(self.runs.iter().flat_map(|r| r.problems.iter()))
    }

    /// The report of run `run`, if the directory has it.
    pub fn run(&self, run: RunId) -> Option<&Report> {
        self.runs.iter().find(|r| r.run == Some(run))
    }

    /// Records in every run.
    pub fn records(&self) -> u64 {
        self.runs.iter().map(|r| r.records).sum()
    }
}

impl fmt::Display for JournalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "journal {}: {} run(s), {} records",
            self.root.display(),
            self.runs.len(),
            self.records()
        )?;
        for r in &self.runs {
            writeln!(f, "{r}")?;
        }
        let n = self.problems.len() + self.runs.iter().map(|r| r.problems.len()).sum::<usize>();
        if !self.problems.is_empty() {
            writeln!(f, "{} problem(s) outside runs:", self.problems.len())?;
            for p in &self.problems {
                writeln!(f, "  {p}")?;
            }
        }
        if n == 0 {
            write!(f, "journal clean")
        } else {
            write!(f, "journal has {n} problem(s)")
        }
    }
}

/// Reads every run of the journal directory `root` ([`inspect_run`] each) without
/// modifying anything. A directory with no run at all is a problem of its own
/// ([`ProblemKind::NoJournal`]): a typo in the path must not read as "clean". Errors
/// only when `root` or a file cannot be read.
pub fn inspect(root: &Path) -> io::Result<JournalReport> {
    // An absent or unreadable root is an error, not an empty journal.
    fs::read_dir(root)?;
    let found = list_runs(root)?;
    let mut report = JournalReport {
        root: root.to_path_buf(),
        runs: Vec::new(),
        problems: Vec::new(),
    };
    for file in found.stray {
        report.problems.push(Problem {
            kind: ProblemKind::Stray,
            file,
            offset: 0,
            detail: "segments live in stream-S/epoch-E run directories; a journal from before epochs (protocol version 2) must be moved aside".into(),
        });
    }
    if found.runs.is_empty() {
        report.problems.push(Problem {
            kind: ProblemKind::NoJournal,
            file: root.to_path_buf(),
            offset: 0,
            detail: "no stream-S/epoch-E run directory here".into(),
        });
    }
    for (run, dir) in found.runs {
        report.runs.push(inspect_run(&dir, Some(run))?);
    }
    Ok(report)
}

/// Reads every segment of the run in `dir` and reports segments, records, seq ranges and
/// every problem, without modifying anything; with `run`, a record of another (stream,
/// epoch) is a problem. Errors only when the directory or a file cannot be read.
pub fn inspect_run(dir: &Path, run: Option<RunId>) -> io::Result<Report> {
    let (files, bad) = list_segments(dir)?;
    let mut report = Report {
        run,
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
        let mut foreign = Vec::new();
        let brk = record::scan(&buf, |r| {
            if let Some(run) = run {
                if (r.header.stream, r.header.epoch) != (run.stream, run.epoch) {
                    foreign.push((r.offset, r.header.stream, r.header.epoch));
                }
            }
            let s = r.header.seq;
            seg.records += 1;
            seg.first_seq = Some(seg.first_seq.map_or(s, |v| v.min(s)));
            seg.last_seq = Some(seg.last_seq.map_or(s, |v| v.max(s)));
            if !seen.insert(s) {
                dups.push((r.offset, s));
            }
        });
        for (offset, stream, epoch) in foreign {
            report.problems.push(Problem {
                kind: ProblemKind::ForeignRecord,
                file: path.clone(),
                offset,
                detail: format!("a record of stream {stream} epoch {epoch}"),
            });
        }
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
