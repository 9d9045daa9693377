//! A read-only report on a journal directory: what `taphold-backup journal inspect`
//! prints, run by run. Nothing is modified. The problems are the ones
//! [`crate::Journal::open`] acts on (the same rules, in `survey.rs`), each with what
//! open does about it ([`ProblemKind::on_open`]); besides them, each run's report says
//! which seqs are missing between its start and its highest seq, by range.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::runs::{list_runs, RunId};
use crate::survey::{survey, SetAside};
use crate::window::SeqWindow;
use crate::{parse_segment_name, read_floor};

/// Missing ranges a report keeps (the count of missing seqs is always whole).
pub const MISSING_RANGES_KEPT: usize = 64;
/// Missing ranges a report prints.
const MISSING_RANGES_SHOWN: usize = 10;

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentReport {
    pub file: PathBuf,
    pub bytes: u64,
    /// Valid records before the first defect (if any).
    pub records: u64,
    /// Valid records found after a defect (see [`crate::record::salvage`]).
    pub after_defect: u64,
    /// Lowest and highest seq among all of them.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// A later segment was started after it (or `seals` says it was sealed).
    pub sealed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The active segment ends in a torn write (the file ends inside a record, or in
    /// zeros, and nothing valid follows): opening cuts it and sets it aside.
    TornTail,
    /// A bad record that is not a torn write: in a sealed segment, or in the active
    /// one (a complete record that fails its checks, or valid records after it).
    Corrupt,
    /// A seq journaled more than once.
    DuplicateSeq,
    /// A `*.journal` file whose name is not 20 digits.
    BadName,
    /// `trim-floor` unreadable.
    BadFloor,
    /// A record of another (stream, epoch) than its run directory names.
    ForeignRecord,
    /// A segment file outside any run (a journal from before epochs, or a file moved by
    /// hand): no run will ever open it.
    Stray,
    /// The directory holds no journal at all (or is not a directory).
    NoJournal,
    /// A sealed segment is gone (its seal is in `seals`, and the trim floor does not
    /// explain it), or the segment being written is.
    MissingSegment,
    /// A sealed segment is 0 bytes long.
    EmptySegment,
    /// A sealed segment is not the length it was sealed at.
    ChangedSegment,
    /// `seals`, the record of sealed segments, is unreadable, has a line that is not
    /// a seal, or lacks a sealed segment: a missing segment could not be told.
    BadSeals,
    /// `trim-floor` is above the highest seq the run ever held + 1.
    FloorTooHigh,
    /// A `.damaged-` file: bytes an open that allowed holes cut from a segment.
    DamagedTail,
}

/// What [`crate::Journal::open`] does about a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOpen {
    /// Opens: a torn tail is cut and set aside; the rest changes nothing.
    Opens,
    /// Records may be missing or damaged: refuses unless
    /// [`crate::JournalConfig::allow_holes`].
    NeedsAllowHoles,
    /// Refuses whatever the config says.
    Refuses,
}

impl ProblemKind {
    pub fn on_open(self) -> OnOpen {
        use ProblemKind::*;
        match self {
            TornTail | DuplicateSeq | Stray | DamagedTail => OnOpen::Opens,
            Corrupt | MissingSegment | EmptySegment | ChangedSegment | BadSeals | FloorTooHigh => {
                OnOpen::NeedsAllowHoles
            }
            BadName | BadFloor | ForeignRecord | NoJournal => OnOpen::Refuses,
        }
    }
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
        const HOLES: &str =
            "opening refuses unless holes are allowed: allow_holes, journal.open_with_holes";
        let what = match self.kind {
            ProblemKind::TornTail => {
                "torn tail (recoverable: opening the journal cuts it and sets it aside)".into()
            }
            ProblemKind::Corrupt => format!("CORRUPT ({HOLES})"),
            ProblemKind::DuplicateSeq => "duplicate seq".into(),
            ProblemKind::BadName => "not a segment name (opening the journal refuses)".into(),
            ProblemKind::BadFloor => "unreadable trim floor (opening the journal refuses)".into(),
            ProblemKind::ForeignRecord => {
                "record of another run (opening the journal refuses)".into()
            }
            ProblemKind::Stray => "segment outside any run (never opened)".into(),
            ProblemKind::NoJournal => "not a journal".into(),
            ProblemKind::MissingSegment => format!("MISSING segment ({HOLES})"),
            ProblemKind::EmptySegment => format!("EMPTY sealed segment ({HOLES})"),
            ProblemKind::ChangedSegment => {
                format!("sealed segment CHANGED since it was sealed ({HOLES})")
            }
            ProblemKind::BadSeals => format!("record of sealed segments INCOMPLETE ({HOLES})"),
            ProblemKind::FloorTooHigh => {
                format!("trim floor ABOVE everything the run held ({HOLES})")
            }
            ProblemKind::DamagedTail => {
                "damaged tail set aside (opening goes on; look at it, then remove it)".into()
            }
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
    /// Where the continuity check starts: the trim floor, or 1.
    pub start_seq: u64,
    /// Seqs missing from `start_seq` to `last_seq`: the first
    /// [`MISSING_RANGES_KEPT`] ranges, and how many seqs in all. A gap no damage
    /// explains is normal (frames lost on the link, sent before this node joined, or
    /// journaled but not synced when it stopped): no ack claimed those seqs.
    pub missing: Vec<(u64, u64)>,
    pub missing_seqs: u64,
    /// Files of bytes an open cut from a segment: torn writes (not a problem) and
    /// damage (each also a [`ProblemKind::DamagedTail`]).
    pub set_aside: Vec<SetAside>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Whether opening the journal would succeed as it is configured by default
    /// (only torn tails, duplicates and set-aside damage).
    pub fn is_recoverable(&self) -> bool {
        self.problems
            .iter()
            .all(|p| p.kind.on_open() == OnOpen::Opens)
    }

    /// Whether opening with [`crate::JournalConfig::allow_holes`] would succeed.
    pub fn opens_with_holes_allowed(&self) -> bool {
        self.problems
            .iter()
            .all(|p| p.kind.on_open() != OnOpen::Refuses)
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// `a..b, c, ...`: the ranges, and `...` when they do not hold all `of` seqs.
pub(crate) fn ranges(shown: &[(u64, u64)], of: u64) -> String {
    let mut text: Vec<String> = shown
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}..{b}")
            }
        })
        .collect();
    let held = shown
        .iter()
        .fold(0u64, |n, &(a, b)| n.saturating_add(b - a + 1));
    if held < of {
        text.push("...".into());
    }
    text.join(", ")
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
                "  {}  {} bytes  {} records{}  seq {}..{}{}",
                s.file.file_name().unwrap_or_default().to_string_lossy(),
                s.bytes,
                s.records,
                match s.after_defect {
                    0 => String::new(),
                    n => format!(" (+{n} after a defect)"),
                },
                opt(s.first_seq),
                opt(s.last_seq),
                if s.sealed { "" } else { "  (active)" }
            )?;
        }
        for a in &self.set_aside {
            writeln!(
                f,
                "  {}  {} bytes  set aside by an open ({})",
                a.path.file_name().unwrap_or_default().to_string_lossy(),
                a.bytes,
                if a.damaged { "damage" } else { "a torn write" }
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
        if let Some(last) = self.last_seq.filter(|&l| l >= self.start_seq) {
            if self.missing_seqs == 0 {
                writeln!(f, "no seq missing from {} to {last}", self.start_seq)?;
            } else {
                let shown = &self.missing[..self.missing.len().min(MISSING_RANGES_SHOWN)];
                writeln!(
                    f,
                    "{} seq(s) missing from {} to {last}: {}",
                    self.missing_seqs,
                    self.start_seq,
                    ranges(shown, self.missing_seqs)
                )?;
            }
        }
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
/// modifying anything. A directory with no run at all, or a `root` that is not a
/// directory, is a problem of its own ([`ProblemKind::NoJournal`]): a typo in the path
/// must not read as "clean". Errors only when `root` is absent or cannot be read.
pub fn inspect(root: &Path) -> io::Result<JournalReport> {
    let mut report = JournalReport {
        root: root.to_path_buf(),
        runs: Vec::new(),
        problems: Vec::new(),
    };
    // An absent or unreadable root is an error, not an empty journal.
    if !fs::metadata(root)?.is_dir() {
        let name = root.file_name().unwrap_or_default().to_string_lossy();
        let what = if parse_segment_name(&name).is_some() {
            "a segment file, not a journal directory: inspect takes the directory `journal.dir` names, which holds stream-S/epoch-E/ run directories"
        } else {
            "a file, not a journal directory: inspect takes the directory `journal.dir` names"
        };
        report.problems.push(Problem {
            kind: ProblemKind::NoJournal,
            file: root.to_path_buf(),
            offset: 0,
            detail: what.into(),
        });
        return Ok(report);
    }
    let found = list_runs(root)?;
    for file in found.stray {
        report.problems.push(Problem {
            kind: ProblemKind::Stray,
            file,
            offset: 0,
            detail: "segments live in stream-S/epoch-E run directories; a journal from before epochs (protocol version 2) must be moved aside".into(),
        });
    }
    if found.runs.is_empty() {
        let entries = fs::read_dir(root)?.count();
        let run_like = root
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("epoch-"))
            || root.join(crate::FLOOR_FILE).exists()
            || root.join(crate::seals::SEALS_FILE).exists();
        let detail = if run_like {
            format!(
                "no stream-S/epoch-E run directory here: this looks like one run's directory; inspect takes the journal directory two levels up ({})",
                root.parent().and_then(Path::parent).unwrap_or(root).display()
            )
        } else if entries == 0 {
            "an empty directory: no stream-S/epoch-E run directory here".into()
        } else {
            format!("no stream-S/epoch-E run directory here, among {entries} entries")
        };
        report.problems.push(Problem {
            kind: ProblemKind::NoJournal,
            file: root.to_path_buf(),
            offset: 0,
            detail,
        });
    }
    for (run, dir) in found.runs {
        report.runs.push(inspect_run(&dir, Some(run))?);
    }
    Ok(report)
}

/// Reads every segment of the run in `dir` and reports segments, records, seq ranges,
/// the seqs missing, and every problem, without modifying anything; with `run`, a
/// record of another (stream, epoch) is a problem. Errors only when the directory or
/// a file cannot be read.
pub fn inspect_run(dir: &Path, run: Option<RunId>) -> io::Result<Report> {
    let start = read_floor(dir).ok().flatten().unwrap_or(0).max(1);
    let mut window = SeqWindow::new(start - 1);
    let mut seen = HashSet::new();
    let mut dups = Vec::new();
    let mut records = 0u64;
    let mut first_seq: Option<u64> = None;
    let mut last_seq: Option<u64> = None;
    let sv = survey(dir, run, |r| {
        let s = r.record.header.seq;
        if !r.salvaged {
            records += 1;
            first_seq = Some(first_seq.map_or(s, |v| v.min(s)));
            last_seq = Some(last_seq.map_or(s, |v| v.max(s)));
        }
        if !seen.insert(s) {
            dups.push((r.segment, r.record.offset, s));
        }
        if !r.foreign {
            window.insert(s);
        }
    })?;
    let mut problems = sv.problems();
    for (segment, offset, s) in dups {
        problems.push(Problem {
            kind: ProblemKind::DuplicateSeq,
            file: sv.segments[segment].path.clone(),
            offset,
            detail: format!("seq {s} is journaled again here"),
        });
    }
    let (missing, missing_seqs) = match sv.max_seq {
        Some(top) => window.gaps(top, MISSING_RANGES_KEPT),
        None => (Vec::new(), 0),
    };
    let segments = sv
        .segments
        .iter()
        .map(|s| SegmentReport {
            file: s.path.clone(),
            bytes: s.bytes,
            records: s.records,
            after_defect: s.salvaged,
            first_seq: s.min_seq,
            last_seq: s.max_seq,
            sealed: s.sealed,
        })
        .collect();
    Ok(Report {
        run,
        dir: dir.to_path_buf(),
        segments,
        problems,
        records,
        first_seq,
        last_seq,
        floor: sv.floor,
        start_seq: start,
        missing,
        missing_seqs,
        set_aside: sv.set_aside,
    })
}
