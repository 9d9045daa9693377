//! One reading of a run directory, and the rules that say what in it is damage.
//!
//! [`crate::Journal::open`] and [`crate::inspect_run`] both read a run through
//! [`survey`] and judge it with [`Survey::problems`], so what inspect reports and what
//! open refuses cannot drift apart. The rules are in the crate doc (`lib.rs`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::inspect::{Problem, ProblemKind};
use crate::record::{self, Break, RecordRef};
use crate::runs::RunId;
use crate::seals::{self, Seals, SEALS_FILE};
use crate::{list_segments, read_floor, segment_name, FLOOR_FILE};

/// Marks a file holding bytes [`crate::Journal::open`] cut from the end of a segment:
/// `<segment>.torn-<offset>` (a torn write) or `<segment>.damaged-<offset>`.
pub const TORN_MARK: &str = ".torn-";
pub const DAMAGED_MARK: &str = ".damaged-";

/// One segment file, read.
#[derive(Debug)]
pub(crate) struct SegmentScan {
    pub name: u64,
    pub path: PathBuf,
    /// The file's length.
    pub bytes: u64,
    /// Valid records read in order from the start, before any defect.
    pub records: u64,
    /// Valid records found after the defect ([`record::salvage`]).
    pub salvaged: u64,
    /// Lowest and highest seq of all of those.
    pub min_seq: Option<u64>,
    pub max_seq: Option<u64>,
    pub brk: Option<Break>,
    /// Sealed: a later segment exists, or `seals` has a line for it. Only the last
    /// segment can be unsealed: the active one, which the journal appends to.
    pub sealed: bool,
    /// The active segment's bytes, kept when they do not read to the end (open cuts
    /// them there and needs what it cuts).
    pub buf: Option<Vec<u8>>,
}

/// A file of bytes an earlier open cut from a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    pub path: PathBuf,
    pub bytes: u64,
    /// Damage (a `.damaged-` file) rather than a torn write (`.torn-`).
    pub damaged: bool,
}

/// What a record callback of [`survey`] is told about the record.
pub(crate) struct Seen<'a> {
    pub record: RecordRef<'a>,
    /// Index of its segment in [`Survey::segments`].
    pub segment: usize,
    /// In the active segment (the last one, unsealed).
    pub active: bool,
    /// Found after a defect by [`record::salvage`].
    pub salvaged: bool,
    /// Of another (stream, epoch) than the run's.
    pub foreign: bool,
}

#[derive(Debug)]
pub(crate) struct Survey {
    pub dir: PathBuf,
    /// In name order (creation order).
    pub segments: Vec<SegmentScan>,
    pub bad_names: Vec<PathBuf>,
    pub floor: Option<u64>,
    pub floor_error: Option<String>,
    pub seals: Option<Seals>,
    pub seals_error: Option<String>,
    pub set_aside: Vec<SetAside>,
    /// Records of another run: file, offset, stream, epoch.
    pub foreign: Vec<(PathBuf, u64, u32, u64)>,
    /// Highest seq of the run's records present.
    pub max_seq: Option<u64>,
}

/// Reads the run in `dir` without changing anything, calling `each` for every valid
/// record (salvaged ones included). With `run`, a record of another (stream, epoch)
/// is noted as foreign. Errors only when a file cannot be read.
pub(crate) fn survey(
    dir: &Path,
    run: Option<RunId>,
    mut each: impl FnMut(&Seen<'_>),
) -> io::Result<Survey> {
    let (files, bad_names) = list_segments(dir)?;
    let (floor, floor_error) = match read_floor(dir) {
        Ok(f) => (f, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let (seals, seals_error) = match seals::read(dir) {
        Ok(s) => (s, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let mut s = Survey {
        dir: dir.to_path_buf(),
        segments: Vec::with_capacity(files.len()),
        bad_names,
        floor,
        floor_error,
        seals,
        seals_error,
        set_aside: list_set_aside(dir)?,
        foreign: Vec::new(),
        max_seq: None,
    };
    for (i, (name, path)) in files.iter().enumerate() {
        let last = i + 1 == files.len();
        let sealed = !last || s.seals.as_ref().is_some_and(|x| x.get(*name).is_some());
        let active = !sealed;
        let buf = fs::read(path)?;
        let mut seg = SegmentScan {
            name: *name,
            path: path.clone(),
            bytes: buf.len() as u64,
            records: 0,
            salvaged: 0,
            min_seq: None,
            max_seq: None,
            brk: None,
            sealed,
            buf: None,
        };
        let mut note = |r: RecordRef<'_>, salvaged: bool, seg: &mut SegmentScan| {
            let foreign =
                run.is_some_and(|run| (r.header.stream, r.header.epoch) != (run.stream, run.epoch));
            if foreign {
                s.foreign
                    .push((path.clone(), r.offset, r.header.stream, r.header.epoch));
            } else {
                let q = r.header.seq;
                seg.min_seq = Some(seg.min_seq.map_or(q, |m| m.min(q)));
                seg.max_seq = Some(seg.max_seq.map_or(q, |m| m.max(q)));
                s.max_seq = Some(s.max_seq.map_or(q, |m| m.max(q)));
            }
            each(&Seen {
                record: r,
                segment: i,
                active,
                salvaged,
                foreign,
            });
        };
        let brk = record::scan(&buf, |r| {
            seg.records += 1;
            note(r, false, &mut seg);
        });
        if let Some(b) = brk {
            seg.salvaged =
                record::salvage(&buf, b.offset as usize + 1, |r| note(r, true, &mut seg));
            seg.brk = Some(b);
            if active {
                seg.buf = Some(buf);
            }
        }
        s.segments.push(seg);
    }
    Ok(s)
}

/// The `.torn-` and `.damaged-` files of `dir`, in name order.
fn list_set_aside(dir: &Path) -> io::Result<Vec<SetAside>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        let Some((seg, rest)) = name.split_once(crate::SEGMENT_SUFFIX) else {
            continue;
        };
        if crate::parse_segment_name(&format!("{seg}{}", crate::SEGMENT_SUFFIX)).is_none() {
            continue;
        }
        let damaged = rest.starts_with(DAMAGED_MARK);
        if damaged || rest.starts_with(TORN_MARK) {
            out.push(SetAside {
                path: e.path(),
                bytes: e.metadata()?.len(),
                damaged,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn range(min: Option<u64>, max: Option<u64>) -> String {
    match (min, max) {
        (Some(a), Some(b)) if a == b => format!("seq {a}"),
        (Some(a), Some(b)) => format!("seq {a}..{b}"),
        _ => "no seq".into(),
    }
}

impl Survey {
    /// The active segment: the last one, when it is not sealed.
    pub fn active(&self) -> Option<&SegmentScan> {
        self.segments.last().filter(|s| !s.sealed)
    }

    /// A sealed segment whose seal line a crash kept from being written: the
    /// one before an empty active segment (its line is written after the active
    /// segment's file is created, before any record goes into it). Open writes it.
    pub fn pending_seal(&self) -> Option<&SegmentScan> {
        let n = self.segments.len();
        let active = self.active().filter(|a| a.bytes == 0)?;
        let prev = self.segments[..n - 1].last()?;
        let recorded = self
            .seals
            .as_ref()
            .is_some_and(|x| x.get(prev.name).is_some());
        (!recorded && active.name > prev.name).then_some(prev)
    }

    /// The highest seq this run ever held: in its records, or in a sealed segment
    /// since trimmed.
    pub fn highest_ever(&self) -> Option<u64> {
        let sealed = self.seals.iter().flat_map(|x| x.seals.iter());
        let sealed = sealed.filter(|s| s.records > 0).map(|s| s.max_seq).max();
        self.max_seq.max(sealed)
    }

    /// Every problem of the run except duplicate seqs (the caller counts those), in
    /// the order: names, floor, seal record, segment by segment, missing segments,
    /// set-aside files.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut push = |kind, file: &Path, offset, detail: String| {
            out.push(Problem {
                kind,
                file: file.to_path_buf(),
                offset,
                detail,
            })
        };
        for b in &self.bad_names {
            push(
                ProblemKind::BadName,
                b,
                0,
                "want 20 digits and .journal".into(),
            );
        }
        let floor_file = self.dir.join(FLOOR_FILE);
        if let Some(e) = &self.floor_error {
            push(ProblemKind::BadFloor, &floor_file, 0, e.clone());
        }
        let seals_file = self.dir.join(SEALS_FILE);
        if let Some(e) = &self.seals_error {
            push(
                ProblemKind::BadSeals,
                &seals_file,
                0,
                format!("unreadable: {e}"),
            );
        }
        if let Some(x) = &self.seals {
            for (line, text) in &x.bad_lines {
                push(
                    ProblemKind::BadSeals,
                    &seals_file,
                    0,
                    format!("line {line} is not a seal: {text:?}"),
                );
            }
        }
        let pending = self.pending_seal().map(|s| s.name);
        let mut unrecorded = Vec::new();
        for seg in &self.segments {
            for (file, offset, stream, epoch) in &self.foreign {
                if file == &seg.path {
                    push(
                        ProblemKind::ForeignRecord,
                        file,
                        *offset,
                        format!("a record of stream {stream} epoch {epoch}"),
                    );
                }
            }
            if let Some(b) = seg.brk {
                let after = match b.valid_records_after {
                    0 => String::new(),
                    n => format!(", with {n} valid records after it (kept by an open that allows holes; they may have been synced and acked)"),
                };
                let tail = seg.bytes - b.offset;
                let (kind, detail) = if !seg.sealed && b.torn {
                    (
                        ProblemKind::TornTail,
                        format!(
                            "{}; {tail} bytes from here to the end of the file: a write cut short",
                            b.defect
                        ),
                    )
                } else {
                    let what = if seg.sealed {
                        "a sealed segment"
                    } else {
                        "the active segment, and not as a crash leaves it"
                    };
                    (
                        ProblemKind::Corrupt,
                        format!(
                            "{}; {tail} bytes from here to the end of the file, in {what}{after}",
                            b.defect
                        ),
                    )
                };
                push(kind, &seg.path, b.offset, detail);
            }
            if !seg.sealed {
                continue;
            }
            let seal = self.seals.as_ref().and_then(|x| x.get(seg.name));
            if seg.bytes == 0 {
                let was = seal.map_or(String::new(), |s| {
                    format!(
                        ": it was sealed with {} records, {} ({} bytes)",
                        s.records,
                        range(Some(s.min_seq), Some(s.max_seq)),
                        s.bytes
                    )
                });
                push(
                    ProblemKind::EmptySegment,
                    &seg.path,
                    0,
                    format!("0 bytes, though a later segment was started after it{was}"),
                );
            } else if let Some(s) = seal.filter(|s| s.bytes != seg.bytes) {
                push(
                    ProblemKind::ChangedSegment,
                    &seg.path,
                    seg.bytes.min(s.bytes),
                    format!(
                        "sealed at {} bytes with {} records, {}; now {} bytes with {} readable records, {}",
                        s.bytes,
                        s.records,
                        range(Some(s.min_seq), Some(s.max_seq)),
                        seg.bytes,
                        seg.records + seg.salvaged,
                        range(seg.min_seq, seg.max_seq)
                    ),
                );
            }
            if seal.is_none() && pending != Some(seg.name) {
                unrecorded.push(seg);
            }
        }
        match (&self.seals, unrecorded.first()) {
            (_, None) => {}
            (None, Some(first)) if self.seals_error.is_none() => push(
                ProblemKind::BadSeals,
                &seals_file,
                0,
                format!(
                    "missing, though {} segment(s) were sealed (the first: {}): whether a sealed segment is gone cannot be told (a run written before seals were recorded, or the file was deleted)",
                    unrecorded.len(),
                    first.path.display()
                ),
            ),
            (_, Some(_)) => {
                for seg in unrecorded {
                    push(
                        ProblemKind::BadSeals,
                        &seals_file,
                        0,
                        format!(
                            "no line for {}, though a later segment was started after it",
                            seg.path.display()
                        ),
                    );
                }
            }
        }
        if let Some(x) = &self.seals {
            let present = |name: u64| self.segments.iter().any(|s| s.name == name);
            let mut named: Vec<u64> = x.seals.iter().map(|s| s.name).collect();
            named.sort_unstable();
            named.dedup();
            for name in named {
                let s = x.get(name).expect("named from the seals");
                let trimmed = self.floor.is_some_and(|f| s.records == 0 || s.max_seq < f);
                if present(name) || trimmed {
                    continue;
                }
                push(
                    ProblemKind::MissingSegment,
                    &self.dir.join(segment_name(name)),
                    0,
                    format!(
                        "sealed with {} records, {} ({} bytes), and not trimmed (trim floor {}): they are gone",
                        s.records,
                        range(Some(s.min_seq), Some(s.max_seq)),
                        s.bytes,
                        self.floor.map_or("none".into(), |f| f.to_string())
                    ),
                );
            }
            if let Some(newest) = x.newest() {
                if !present(newest.next) && x.get(newest.next).is_none() {
                    push(
                        ProblemKind::MissingSegment,
                        &self.dir.join(segment_name(newest.next)),
                        0,
                        format!(
                            "the segment started after {} (the one being written, newer than every seal) is gone, and what it held with it",
                            segment_name(newest.name)
                        ),
                    );
                }
            }
        }
        if let Some(f) = self.floor {
            let highest = self.highest_ever();
            let limit = highest.unwrap_or(0).saturating_add(1);
            if f > limit {
                push(
                    ProblemKind::FloorTooHigh,
                    &floor_file,
                    0,
                    format!(
                        "{f} is above {limit}, one past the highest seq this run ever held ({}): believed, it would count seqs never journaled as held",
                        highest.map_or("none".into(), |h| h.to_string())
                    ),
                );
            }
        }
        for a in self.set_aside.iter().filter(|a| a.damaged) {
            push(
                ProblemKind::DamagedTail,
                &a.path,
                0,
                format!("{} bytes cut from the end of a segment by an open that allowed holes: records in them may have been acked; look at them, then remove the file", a.bytes),
            );
        }
        out
    }
}
