//! An append-only, checksummed, segmented journal of backup frames.
//!
//! The backup node writes every backup frame it accepts here before it acks it; the
//! appliance's local-journal secondary mode can use the same format. No DPDK.
//!
//! - A journal directory holds one *run* per (stream, epoch) of the appliance
//!   ([`runs`]): `DIR/stream-S/epoch-E/`. The appliance takes a new, larger epoch on
//!   every start, so a new run never collides with an earlier one's records, and acks,
//!   trimming and inspection are per run. A [`Journal`] is one run.
//! - A run is a directory of segment files `NNNNNNNNNNNNNNNNNNNN.journal` (20 digits:
//!   the seq of the segment's first record, or the previous segment's number + 1 when
//!   that record arrived out of order below it, so that names sort in creation order).
//!   A new segment starts with the first record after the current one has passed
//!   [`JournalConfig::segment_bytes`]; the full one is synced before the next is created,
//!   so only the last segment, the *active* one, can ever have a torn tail.
//! - When a segment is sealed, a line in the run's `seals` file records what it held
//!   (bytes, records, seq range, the next segment's name; [`seals`]), written after
//!   the next segment exists and before any record goes into it.
//! - A segment is a sequence of records ([`record`]): a 40-byte header naming the record's
//!   (stream, epoch, seq), the taphold PDU of the backup frame as received, a CRC-32.
//! - Sequence numbers may arrive out of order and duplicated ([`window`]): a seq already
//!   journaled is not written again; [`Journal::contiguous_seq`] is the highest `S` such
//!   that every seq from the start to `S` is journaled *and synced* — what an ack may claim.
//! - [`Journal::trim_below`] deletes whole segments below a watermark, after recording the
//!   trim point durably in the file `trim-floor`, so that a reopened journal knows the
//!   trimmed seqs were held.
//! - [`Journal::read`] and [`Journal::read_range`] read the record of a seq back, for a
//!   resend request or a takeover, through an in-memory index of each segment's blocks
//!   (seq range → byte range, [`index`]); every record read is checked against its CRC.
//! - [`inspect()`] reports on a journal without changing it.
//!
//! # What open does with what it finds
//!
//! [`Journal::open`] reads and verifies every record, then judges the run by the rules
//! below — the same ones [`inspect()`] reports by ([`ProblemKind::on_open`]). It never
//! deletes a byte: what it cuts from a segment it first copies to a file beside it.
//!
//! A seq may be missing below the highest seq held for ordinary reasons: the frame was
//! lost on the link, was sent before the node joined (its message covered by the
//! primary's released watermark), or was journaled but not yet synced when the writer
//! stopped. None of those was acked as journaled, and the journal cannot tell them
//! apart from each other by the seqs alone — nor, by the seqs and segment names alone,
//! from a deleted segment (a segment filling up just before a burst of frames is lost looks exactly
//! like the next segment deleted). So a gap is not damage by itself: open reports the
//! missing seqs ([`Recovery::missing`]) and the ack stops below them. Damage is what
//! the files themselves show:
//!
//! - **Opens on its own:** the active segment ends in a *torn write* — the file ends
//!   inside a record, or in zeros, and no valid record follows ([`record::Break::torn`]).
//!   That record was never whole on disk, so no sync covered it and no ack claimed it.
//!   The tail is moved to `<segment>.torn-<offset>` and the segment cut there
//!   ([`Recovery::tail_cut`]). Duplicate records open too (kept, counted once).
//! - **Refused unless [`JournalConfig::allow_holes`]** (records may have been synced
//!   and acked, and are gone or unreadable; the error carries a [`Refused`] listing
//!   them): a sealed segment that is missing (`seals` has its line, and its highest
//!   seq is not below the trim floor; or the segment the newest seal names as next),
//!   empty, or not the length it was sealed at; any bad record in a sealed segment; a
//!   bad record in the active segment that is not a torn write (a whole record failing
//!   its CRC, or valid records after it); `seals` unreadable, with a line that is not a
//!   seal, or without a line for a segment that has a later one (except the one a
//!   crash left unrecorded: the segment before an empty active one, whose line open
//!   writes); a trim floor above the highest seq the run ever held + 1 (in its records
//!   or its seals). With `allow_holes` the run opens with what reads: sealed segments
//!   are read around their damage and left as they are; the active segment's damaged
//!   tail is moved to `<segment>.damaged-<offset>`, the segment cut there, and the
//!   valid records found after the damage written back; an absurd floor is not
//!   believed. What was allowed is in [`Recovery::holes_allowed`], and stays reported
//!   (by inspect, and by the next open without the flag) until someone repairs the run.
//! - **Refused always:** a `*.journal` name that is not 20 digits, an unreadable
//!   `trim-floor`, a record of another run.
//!
//! Appending and reading do not allocate (the write buffer, bitmap window, segment
//! table, read buffer and a spare block index are allocated at open, the spare again at
//! each trim), apart from the segment table growing past its initial capacity, the
//! overflow set of [`window`], and a segment's block index when a second segment is
//! started between two trims; each call of [`Journal::flush`] / [`Journal::sync`]
//! is a `write` / `fdatasync` syscall, and a rollover adds an fdatasync of `seals`.
//! No arithmetic on a seq or a watermark can overflow, whatever the input.

mod index;
pub mod inspect;
pub mod record;
pub mod runs;
pub mod seals;
mod survey;
pub mod window;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

pub use index::BLOCK_BYTES;
use index::{BlockIndex, BlockReader};
pub use inspect::{
    inspect, inspect_run, JournalReport, OnOpen, Problem, ProblemKind, Report, SegmentReport,
};
pub use record::{Defect, RecordRef};
use record::{RecordHeader, HEADER_LEN, MAX_PAYLOAD_LEN, OVERHEAD};
pub use runs::{list_runs, run_dir, RunId, Runs};
use seals::{Seal, SEALS_FILE};
pub use survey::{SetAside, DAMAGED_MARK, TORN_MARK};
use window::{Insert, SeqWindow};

/// Suffix of segment files.
pub const SEGMENT_SUFFIX: &str = ".journal";
/// The file holding the trim point: every seq below it was journaled, synced and trimmed.
pub const FLOOR_FILE: &str = "trim-floor";
/// Bytes the journal buffers before it writes them to the file.
const WRITE_BUFFER: usize = 256 * 1024;

/// When to fdatasync on its own (see [`Journal::maybe_sync`]). Both `None`: only on
/// [`Journal::sync`], segment rollover and close.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsyncPolicy {
    /// Sync once this many records are unsynced.
    pub every_records: Option<u32>,
    /// Sync once this long has passed since the last sync and a record is unsynced.
    pub every_us: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// The run's directory (see [`JournalConfig::for_run`]).
    pub dir: PathBuf,
    /// Whose records these are: every record is stamped with it, and a record of another
    /// run found here refuses the open.
    pub run: RunId,
    /// A segment is closed once it is at least this long.
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
    /// The first seq of the stream: seqs below it count as held (already delivered
    /// before this journal existed) and are never written. The appliance starts at 1.
    pub first_seq: u64,
    /// Open a run even when records may be missing or damaged (a sealed segment gone,
    /// empty or changed, a corrupt record that is not a torn write, an incomplete
    /// `seals`, a trim floor above everything held): what can be read is used, the
    /// damage is reported in [`Recovery::holes_allowed`], and nothing is deleted.
    /// Off by default: [`Journal::open`] refuses such a run ([`Refused`]).
    pub allow_holes: bool,
}

impl JournalConfig {
    /// A run whose segments live in `dir` itself.
    pub fn new(dir: impl Into<PathBuf>, run: RunId) -> JournalConfig {
        JournalConfig {
            dir: dir.into(),
            run,
            segment_bytes: 64 << 20,
            fsync: FsyncPolicy::default(),
            first_seq: 1,
            allow_holes: false,
        }
    }

    /// Run `run` of the journal directory `root`: its segments in
    /// `root/stream-S/epoch-E/`.
    pub fn for_run(root: &Path, run: RunId) -> JournalConfig {
        JournalConfig::new(run_dir(root, run), run)
    }
}

/// What [`Journal::open`] found, and what it did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Valid records in the journal after recovery.
    pub records: u64,
    /// Lowest and highest seq of those records.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Segment files.
    pub segments: usize,
    /// The end of the active segment, cut because it did not read as records: a
    /// torn write, or (only with [`JournalConfig::allow_holes`]) damage.
    pub tail_cut: Option<TailCut>,
    /// The same seq found in more than one record (kept; counted once).
    pub duplicate_records: u64,
    /// The contiguous point rebuilt from the records and the trim floor.
    pub contiguous_seq: u64,
    /// The trim floor believed (read from `trim-floor`; `None` when there is none, or
    /// when it was above everything the run held and holes were allowed).
    pub floor: Option<u64>,
    /// Seqs missing between the contiguous point and the highest seq held: the first
    /// 16 ranges, and how many seqs in all. Normal when frames were lost on the link,
    /// or journaled but not synced when the writer stopped: no ack claimed them.
    pub missing: Vec<(u64, u64)>,
    pub missing_seqs: u64,
    /// Damage the open went past because holes were allowed (each also in
    /// `journal inspect`); empty otherwise, since it refuses such a run.
    pub holes_allowed: Vec<Problem>,
}

/// Bytes cut from the end of the active segment at open. They are moved to a file of
/// their own first: open never deletes a byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailCut {
    pub segment: PathBuf,
    /// Where the segment now ends (before any salvaged records written back).
    pub offset: u64,
    pub defect: Defect,
    /// Bytes cut.
    pub bytes: u64,
    /// A torn write ([`record::Break::torn`]); otherwise damage.
    pub torn: bool,
    /// Where the bytes cut were moved: `<segment>.torn-<offset>` or
    /// `<segment>.damaged-<offset>`.
    pub set_aside: PathBuf,
    /// Valid records from after the damage written back after the cut (new seqs
    /// only).
    pub salvaged: u64,
}

impl std::fmt::Display for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "recovered {} records in {} segments (seq {}..{}, contiguous {})",
            self.records,
            self.segments,
            opt(self.first_seq),
            opt(self.last_seq),
            self.contiguous_seq
        )?;
        if let Some(t) = &self.tail_cut {
            write!(
                f,
                ", cut {} of {} bytes at {}:{} ({}), set aside in {}",
                if t.torn {
                    "a torn tail"
                } else {
                    "a DAMAGED tail"
                },
                t.bytes,
                t.segment.display(),
                t.offset,
                t.defect,
                t.set_aside.display()
            )?;
            if !t.torn {
                write!(f, ", {} valid records after the damage kept", t.salvaged)?;
            }
        }
        if self.missing_seqs > 0 {
            write!(
                f,
                ", {} seq(s) missing below the highest ({})",
                self.missing_seqs,
                inspect::ranges(&self.missing, self.missing_seqs)
            )?;
        }
        for p in &self.holes_allowed {
            write!(f, "; OPENED WITH HOLES ALLOWED despite {p}")?;
        }
        Ok(())
    }
}

/// Why [`Journal::open`] refused a run: damage that may have cost records, with holes
/// not allowed. It is the inner error of the `io::Error` open returns
/// ([`Refused::of`]), so that a caller can name its own setting for
/// [`JournalConfig::allow_holes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub dir: PathBuf,
    pub run: RunId,
    pub problems: Vec<Problem>,
}

impl Refused {
    /// The refusal inside an error [`Journal::open`] returned, if that is what it is.
    pub fn of(e: &io::Error) -> Option<&Refused> {
        e.get_ref().and_then(|e| e.downcast_ref::<Refused>())
    }

    /// The problems, one per line, indented.
    pub fn problem_lines(&self) -> String {
        let lines: Vec<String> = self.problems.iter().map(|p| format!("  {p}")).collect();
        lines.join("\n")
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: refusing to open run {}: records may be missing or damaged:\n{}\nNothing was changed. Opening with allow_holes uses what can be read, reports what is missing, and deletes nothing.",
            self.dir.display(),
            self.run,
            self.problem_lines()
        )
    }
}

impl std::error::Error for Refused {}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// What [`Journal::read_range`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeRead {
    /// Seqs of the range this run holds a record of: each given to the callback.
    pub found: u64,
    /// The others: never appended, trimmed, or above the highest seq held.
    pub missing: u64,
}

/// The result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Written (buffered) as a new record.
    Journaled,
    /// The seq was already journaled (or is below the start): nothing written.
    Duplicate,
}

/// Counters since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Records appended since open.
    pub appended: u64,
    /// Bytes of records appended since open.
    pub appended_bytes: u64,
    /// Appends skipped because the seq was already journaled.
    pub duplicates: u64,
    /// fdatasync calls (policy, explicit, rollover).
    pub syncs: u64,
    /// Syncs made by [`Journal::maybe_sync`].
    pub policy_syncs: u64,
    pub segments_created: u64,
    pub segments_trimmed: u64,
    /// Seqs that arrived more than [`window::WINDOW`] ahead of the contiguous point.
    pub beyond_window: u64,
    /// Of those, seqs the window could not remember ([`window::OVERFLOW_CAP`]).
    pub untracked: u64,
    /// Seqs never journaled here but covered by the primary's released
    /// watermark ([`Journal::note_released`]): frames this node never got
    /// (before it joined, while it was down, or lost on the link) whose
    /// messages had already been delivered.
    pub covered_by_watermark: u64,
}

struct Segment {
    /// The number in the file name.
    name: u64,
    bytes: u64,
    records: u64,
    /// Lowest and highest seq in it (meaningless when `records == 0`).
    min_seq: u64,
    max_seq: u64,
    /// Where its records are ([`index`]).
    index: BlockIndex,
}

pub struct Journal {
    cfg: JournalConfig,
    /// Oldest first; the last one is the active segment.
    segments: Vec<Segment>,
    /// The active segment's file, once one exists.
    active: Option<File>,
    /// Bytes appended but not yet written to `active`.
    wbuf: Vec<u8>,
    /// Scratch for segment paths (kept so that rollover does not allocate).
    path: PathBuf,
    window: SeqWindow,
    /// `window.contiguous()` as of the last sync.
    synced_contiguous: u64,
    /// Highest seq ever written, and its value as of the last sync.
    max_written: u64,
    durable: u64,
    unsynced: u32,
    last_sync_ns: u64,
    floor: u64,
    records_total: u64,
    stats: JournalStats,
    /// `seals`, once it exists (open for appending), and its path.
    seals: Option<File>,
    seals_path: PathBuf,
    /// The highest released watermark noted ([`Journal::note_released`]).
    released: u64,
    /// Reads records back ([`Journal::read`]).
    reader: BlockReader,
    /// The block index the next segment gets: allocated off the write path.
    spare_index: Option<BlockIndex>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The segment file name of number `n`.
pub fn segment_name(n: u64) -> String {
    format!("{n:020}{SEGMENT_SUFFIX}")
}

/// The number of a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Segment files (number and path) in name order.
pub(crate) type SegmentFiles = Vec<(u64, PathBuf)>;

/// Segment files of `dir` in name order, and `*.journal` files with malformed names.
pub(crate) fn list_segments(dir: &Path) -> io::Result<(SegmentFiles, Vec<PathBuf>)> {
    let mut segs = Vec::new();
    let mut bad = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        match parse_segment_name(name) {
            Some(n) => segs.push((n, e.path())),
            None if name.ends_with(SEGMENT_SUFFIX) => bad.push(e.path()),
            None => {}
        }
    }
    segs.sort();
    bad.sort();
    Ok((segs, bad))
}

/// The trim floor recorded in `dir`, if any.
pub(crate) fn read_floor(dir: &Path) -> io::Result<Option<u64>> {
    let p = dir.join(FLOOR_FILE);
    match fs::read_to_string(&p) {
        Ok(s) => s
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| invalid(format!("{}: not a number: {:?}", p.display(), s.trim()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Appends `seal` to `seals` (creating it, and syncing the directory, the first time)
/// and fdatasyncs it. No allocation: rollover calls it.
fn write_seal(dir: &Path, path: &Path, file: &mut Option<File>, seal: &Seal) -> io::Result<()> {
    let mut line = [0u8; seals::MAX_LINE];
    let n = seal.encode(&mut line);
    let created = file.is_none();
    let f = match file {
        Some(f) => f,
        None => file.insert(OpenOptions::new().append(true).create(true).open(path)?),
    };
    f.write_all(&line[..n])?;
    f.sync_data()?;
    if created {
        sync_dir(dir)?;
    }
    Ok(())
}

/// A run read by [`Journal::open`], before it decides anything.
struct Loaded {
    survey: survey::Survey,
    window: SeqWindow,
    records: u64,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    max_written: u64,
    duplicate_records: u64,
    /// Records found after damage in the active segment, with seqs not held
    /// elsewhere: (offset, length), to write back after the cut.
    salvage: Vec<(u64, usize)>,
    /// Each segment's block index, from the records as they are in the files.
    indexes: Vec<BlockIndex>,
}

impl Loaded {
    /// Reads the run in `cfg.dir`, counting seqs below `floor` (and below
    /// `cfg.first_seq`) as held.
    fn read(cfg: &JournalConfig, floor: Option<u64>) -> io::Result<Loaded> {
        let start = cfg.first_seq.max(floor.unwrap_or(0)).max(1);
        let mut window = SeqWindow::new(start - 1);
        let (mut records, mut dups, mut max_written) = (0u64, 0u64, 0u64);
        let (mut first_seq, mut last_seq) = (None::<u64>, None::<u64>);
        let mut salvage = Vec::new();
        let mut indexes: Vec<BlockIndex> = Vec::new();
        let survey = survey::survey(&cfg.dir, Some(cfg.run), |r| {
            if r.foreign {
                return;
            }
            let s = r.record.header.seq;
            if indexes.len() <= r.segment {
                indexes.resize_with(r.segment + 1, BlockIndex::default);
            }
            let len = (OVERHEAD + r.record.payload.len()) as u64;
            indexes[r.segment].add(r.record.offset, len, s);
            records += 1;
            first_seq = Some(first_seq.map_or(s, |f| f.min(s)));
            last_seq = Some(last_seq.map_or(s, |l| l.max(s)));
            max_written = max_written.max(s);
            // A seq below the start, or a second record of a seq, is kept on disk
            // but changes nothing; only the latter is unexpected.
            let fresh = window.insert(s) == Insert::New;
            if !fresh && s >= start {
                dups += 1;
            }
            if r.salvaged && r.active && fresh {
                salvage.push((r.record.offset, OVERHEAD + r.record.payload.len()));
            }
        })?;
        Ok(Loaded {
            survey,
            window,
            records,
            first_seq,
            last_seq,
            max_written,
            duplicate_records: dups,
            salvage,
            indexes,
        })
    }
}

/// Copies `bytes` (cut from `segment` at `offset`) to a new file beside it, synced
/// with its directory entry: `<segment>.torn-<offset>` or `.damaged-<offset>`, with
/// `.1`, `.2`... when an earlier open already left one of that name.
fn set_aside(segment: &Path, offset: u64, torn: bool, bytes: &[u8]) -> io::Result<PathBuf> {
    let mark = if torn { TORN_MARK } else { DAMAGED_MARK };
    let base = format!(
        "{}{mark}{offset}",
        segment.file_name().unwrap_or_default().to_string_lossy()
    );
    let dir = segment.parent().unwrap_or(Path::new("."));
    for n in 0u32.. {
        let name = if n == 0 {
            base.clone()
        } else {
            format!("{base}.{n}")
        };
        let path = dir.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                f.write_all(bytes)?;
                f.sync_all()?;
                sync_dir(dir)?;
                return Ok(path);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("u32::MAX files of one name")
}

impl Journal {
    /// Opens (creating the directory if needed) and recovers the journal in `cfg.dir`:
    /// the rules are in the crate doc. A run with damage that may have cost records
    /// is refused with a [`Refused`] inside the error, unless
    /// [`JournalConfig::allow_holes`].
    pub fn open(cfg: JournalConfig) -> io::Result<(Journal, Recovery)> {
        if cfg.segment_bytes == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "segment_bytes must be at least 1",
            ));
        }
        fs::create_dir_all(&cfg.dir)?;
        let (_, bad) = list_segments(&cfg.dir)?;
        if let Some(b) = bad.first() {
            return Err(invalid(format!(
                "{}: not a segment name (want 20 digits{SEGMENT_SUFFIX})",
                b.display()
            )));
        }
        let mut floor = read_floor(&cfg.dir)?;
        let mut l = Loaded::read(&cfg, floor)?;
        if let Some((path, offset, stream, epoch)) = l.survey.foreign.first() {
            return Err(invalid(format!(
                "{}: the record at byte offset {offset} belongs to stream {stream} epoch {epoch}, not to this run ({}): refusing to open a journal whose files were moved between runs",
                path.display(),
                cfg.run
            )));
        }
        // Names, floor and foreign records refused above; what is left may have cost
        // records.
        let damage: Vec<Problem> = l
            .survey
            .problems()
            .into_iter()
            .filter(|p| p.kind.on_open() != OnOpen::Opens)
            .collect();
        if !damage.is_empty() && !cfg.allow_holes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                Refused {
                    dir: cfg.dir.clone(),
                    run: cfg.run,
                    problems: damage,
                },
            ));
        }
        if damage.iter().any(|p| p.kind == ProblemKind::FloorTooHigh) {
            // Not believed: the seqs below it are what the records say.
            floor = None;
            l = Loaded::read(&cfg, None)?;
        }

        // From here on the run opens; repairs only add files or cut what was copied.
        let seals_path = cfg.dir.join(SEALS_FILE);
        if let Some(x) = l.survey.seals.as_ref().filter(|x| x.torn_len > 0) {
            // A partial line: a seal a crash interrupted, of a segment still active.
            let f = OpenOptions::new().write(true).open(&seals_path)?;
            f.set_len(x.complete_len)?;
            f.sync_all()?;
        }
        let mut seals = match l.survey.seals {
            Some(_) => Some(OpenOptions::new().append(true).open(&seals_path)?),
            None => None,
        };
        if let Some(p) = l.survey.pending_seal() {
            let next = l.survey.segments.last().expect("an active segment").name;
            let seal = Seal {
                name: p.name,
                bytes: p.bytes,
                records: p.records + p.salvaged,
                min_seq: p.min_seq.unwrap_or(0),
                max_seq: p.max_seq.unwrap_or(0),
                next,
            };
            write_seal(&cfg.dir, &seals_path, &mut seals, &seal)?;
        }
        let mut rec = Recovery {
            segments: l.survey.segments.len(),
            floor,
            duplicate_records: l.duplicate_records,
            records: l.records,
            first_seq: l.first_seq,
            last_seq: l.last_seq,
            ..Recovery::default()
        };
        let mut segments = Vec::with_capacity(l.survey.segments.len().max(1024));
        let mut active = None;
        l.indexes
            .resize_with(l.survey.segments.len(), BlockIndex::default);
        for (seg, index) in l.survey.segments.iter_mut().zip(l.indexes.drain(..)) {
            let mut s = Segment {
                name: seg.name,
                bytes: seg.bytes,
                records: seg.records + seg.salvaged,
                min_seq: seg.min_seq.unwrap_or(u64::MAX),
                max_seq: seg.max_seq.unwrap_or(0),
                index,
            };
            if !seg.sealed {
                if let (Some(b), Some(buf)) = (seg.brk, seg.buf.take()) {
                    // The bytes go to a file of their own before the segment is cut;
                    // valid records from after damage are written back after the cut.
                    let cut = &buf[b.offset as usize..];
                    let aside = set_aside(&seg.path, b.offset, b.torn, cut)?;
                    let mut f = OpenOptions::new().write(true).open(&seg.path)?;
                    f.set_len(b.offset)?;
                    let mut end = b.offset;
                    {
                        use std::io::Seek;
                        f.seek(io::SeekFrom::Start(end))?;
                    }
                    for &(off, len) in &l.salvage {
                        f.write_all(&buf[off as usize..off as usize + len])?;
                        end += len as u64;
                    }
                    f.sync_all()?;
                    // Records lost with the damage, or dropped as duplicates, are not
                    // in the segment any more.
                    let dropped = seg.salvaged - l.salvage.len() as u64;
                    s.records -= dropped;
                    rec.records -= dropped;
                    s.bytes = end;
                    // The records written back moved: index the file as it is now.
                    s.index = BlockIndex::of_file(&seg.path)?;
                    rec.tail_cut = Some(TailCut {
                        segment: seg.path.clone(),
                        offset: b.offset,
                        defect: b.defect,
                        bytes: cut.len() as u64,
                        torn: b.torn,
                        set_aside: aside,
                        salvaged: l.salvage.len() as u64,
                    });
                }
                let f = OpenOptions::new().append(true).open(&seg.path)?;
                // What survived is on disk from now on, whatever the previous run synced.
                f.sync_data()?;
                active = Some(f);
            }
            segments.push(s);
        }
        rec.contiguous_seq = l.window.contiguous();
        (rec.missing, rec.missing_seqs) = l.window.gaps(l.max_written, 16);
        if cfg.allow_holes {
            rec.holes_allowed = damage;
        }
        let path = PathBuf::with_capacity(cfg.dir.as_os_str().len() + 64);
        let stats = JournalStats {
            beyond_window: l.window.beyond_window,
            untracked: l.window.untracked,
            ..JournalStats::default()
        };
        Ok((
            Journal {
                synced_contiguous: l.window.contiguous(),
                window: l.window,
                segments,
                active,
                wbuf: Vec::with_capacity(WRITE_BUFFER + record::MAX_RECORD_LEN),
                path,
                max_written: l.max_written,
                durable: l.max_written,
                unsynced: 0,
                last_sync_ns: 0,
                floor: floor.unwrap_or(0),
                records_total: rec.records,
                stats,
                seals,
                seals_path,
                released: 0,
                reader: BlockReader::new(),
                spare_index: Some(BlockIndex::sized_for(cfg.segment_bytes)),
                cfg,
            },
            rec,
        ))
    }

    pub fn config(&self) -> &JournalConfig {
        &self.cfg
    }

    /// Appends one backup frame (buffered: [`Journal::flush`] writes it, [`Journal::sync`]
    /// makes it durable). A seq already journaled is skipped and counted.
    pub fn append(
        &mut self,
        seq: u64,
        flags: u16,
        timestamp_ns: u64,
        pdu: &[u8],
    ) -> io::Result<Appended> {
        if pdu.len() > MAX_PAYLOAD_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a {}-byte PDU is longer than any taphold PDU ({MAX_PAYLOAD_LEN})",
                    pdu.len()
                ),
            ));
        }
        if self.window.contains(seq) {
            self.stats.duplicates += 1;
            return Ok(Appended::Duplicate);
        }
        let full = self
            .segments
            .last()
            .is_none_or(|s| s.bytes >= self.cfg.segment_bytes);
        if self.active.is_none() || full {
            self.roll(seq)?;
        }
        let header = RecordHeader {
            seq,
            stream: self.cfg.run.stream,
            epoch: self.cfg.run.epoch,
            flags,
            timestamp_ns,
        }
        .encode(pdu.len());
        let len = HEADER_LEN + pdu.len() + record::TRAILER_LEN;
        if self.wbuf.len() + len > self.wbuf.capacity() {
            self.flush()?;
        }
        self.wbuf.extend_from_slice(&header);
        self.wbuf.extend_from_slice(pdu);
        self.wbuf
            .extend_from_slice(&record::crc(&header, pdu).to_be_bytes());
        if self.wbuf.len() >= WRITE_BUFFER {
            self.flush()?;
        }
        self.window.insert(seq);
        self.stats.beyond_window = self.window.beyond_window;
        self.stats.untracked = self.window.untracked;
        let seg = self.segments.last_mut().expect("roll made a segment");
        seg.index.add(seg.bytes, len as u64, seq);
        seg.bytes += len as u64;
        seg.records += 1;
        seg.min_seq = seg.min_seq.min(seq);
        seg.max_seq = seg.max_seq.max(seq);
        self.max_written = self.max_written.max(seq);
        if self.released > self.window.contiguous() {
            // A watermark heard earlier may cover more now that this seq is held.
            self.cover();
        }
        self.unsynced = self.unsynced.saturating_add(1);
        self.records_total += 1;
        self.stats.appended += 1;
        self.stats.appended_bytes += len as u64;
        Ok(Appended::Journaled)
    }

    fn set_path(&mut self, n: u64) {
        // Formats into the kept PathBuf: no allocation while it has room.
        let mut name = [0u8; 20 + SEGMENT_SUFFIX.len()];
        let mut v = n;
        for d in name[..20].iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        name[20..].copy_from_slice(SEGMENT_SUFFIX.as_bytes());
        self.path.clear();
        self.path.push(&self.cfg.dir);
        self.path
            .push(std::str::from_utf8(&name).expect("ASCII digits"));
    }

    /// Seals the active segment (written and synced) and starts a new one for `seq`;
    /// then records the seal in `seals`. In that order, a record in a segment implies
    /// the seal of the one before it is on disk.
    fn roll(&mut self, seq: u64) -> io::Result<()> {
        let n = match self.segments.last() {
            Some(s) => match s.name.checked_add(1) {
                Some(next) => seq.max(next),
                // No name sorts after it: keep writing where we are.
                None if self.active.is_some() => return Ok(()),
                None => return Err(invalid("no segment name is left after u64::MAX".into())),
            },
            None => seq,
        };
        let sealing = self.active.is_some();
        if sealing {
            self.sync()?;
        }
        self.set_path(n);
        let f = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&self.path)?;
        // The new name must survive a crash for the records synced into it to.
        sync_dir(&self.cfg.dir)?;
        if sealing {
            let s = self.segments.last().expect("sealing a segment");
            let held = s.records > 0;
            let seal = Seal {
                name: s.name,
                bytes: s.bytes,
                records: s.records,
                min_seq: if held { s.min_seq } else { 0 },
                max_seq: if held { s.max_seq } else { 0 },
                next: n,
            };
            write_seal(&self.cfg.dir, &self.seals_path, &mut self.seals, &seal)?;
        }
        self.active = Some(f);
        // The spare is allocated off the write path (open, trim); a second roll
        // between two trims allocates here.
        let index = self
            .spare_index
            .take()
            .unwrap_or_else(|| BlockIndex::sized_for(self.cfg.segment_bytes));
        self.segments.push(Segment {
            name: n,
            bytes: 0,
            records: 0,
            min_seq: u64::MAX,
            max_seq: 0,
            index,
        });
        self.stats.segments_created += 1;
        Ok(())
    }

    /// Writes the buffered records to the active segment (a `write` syscall; not durable).
    pub fn flush(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let f = self
            .active
            .as_mut()
            .expect("records are only buffered with an active segment");
        f.write_all(&self.wbuf)?;
        self.wbuf.clear();
        Ok(())
    }

    /// Writes and fdatasyncs everything appended so far; the contiguous point and the
    /// durable seq then cover it.
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        if let Some(f) = &self.active {
            f.sync_data()?;
        }
        self.stats.syncs += 1;
        self.unsynced = 0;
        self.synced_contiguous = self.window.contiguous();
        self.durable = self.max_written;
        Ok(())
    }

    /// Applies the fsync policy at time `now_ns` (any monotonic clock in ns): syncs when
    /// a record is unsynced and either `every_records` records are, or `every_us` has
    /// passed since the last policy sync. Returns whether it synced.
    pub fn maybe_sync(&mut self, now_ns: u64) -> io::Result<bool> {
        if self.unsynced == 0 {
            return Ok(false);
        }
        let p = self.cfg.fsync;
        let due = p.every_records.is_some_and(|n| self.unsynced >= n)
            || p.every_us.is_some_and(|us| {
                now_ns.saturating_sub(self.last_sync_ns) >= us.saturating_mul(1000)
            });
        if !due {
            return Ok(false);
        }
        self.sync()?;
        self.last_sync_ns = now_ns;
        self.stats.policy_syncs += 1;
        Ok(true)
    }

    /// Highest seq whose record was on disk at the last sync (0: none).
    pub fn durable_seq(&self) -> u64 {
        self.durable
    }

    /// Highest `S` such that every seq from the start to `S` is journaled and synced:
    /// what a cumulative ack may claim.
    pub fn contiguous_seq(&self) -> u64 {
        self.synced_contiguous
    }

    /// The primary has released every seq `<= watermark` to the destination:
    /// the cumulative ack may cover them without this journal holding them.
    /// This is what lets a node that joins mid-stream (a standby put in
    /// service by a failover, or a node restarted after a gap) ack again; it
    /// never covers a seq above the watermark that is not journaled and synced.
    ///
    /// Nor does it cover a seq above the highest one this run holds (journaled, or
    /// below its start): the primary only releases what it launched, so a genuine
    /// watermark beyond that means frames still on their way (covered as they are
    /// journaled, or by the next watermark once later frames arrive), and one that is
    /// not genuine must not make the ack claim, or the window treat as duplicates,
    /// seqs nobody has seen. The watermark is remembered, and applied as far as the
    /// journal grows.
    pub fn note_released(&mut self, watermark: u64) {
        self.released = self.released.max(watermark);
        self.cover();
    }

    /// Covers the released watermark as far as the highest seq held.
    fn cover(&mut self) {
        let held = self.max_written.max(self.window.contiguous());
        let to = self.released.min(held);
        let covered = self.window.raise_base(to);
        self.stats.covered_by_watermark = self.stats.covered_by_watermark.saturating_add(covered);
        self.synced_contiguous = self.synced_contiguous.max(to.min(self.window.contiguous()));
    }

    /// As [`Journal::contiguous_seq`], counting records not yet synced.
    pub fn journaled_contiguous_seq(&self) -> u64 {
        self.window.contiguous()
    }

    /// Whether `seq` is journaled (synced or not).
    pub fn contains(&self, seq: u64) -> bool {
        self.window.contains(seq)
    }

    /// The highest seq of a record this run holds or held (0: none): where what a
    /// takeover can replay ends.
    pub fn highest_seq(&self) -> u64 {
        self.max_written
    }

    /// The record of `seq`, read back from its segment ([`index`]): its header (flags,
    /// the writer's timestamp) and the PDU as it was appended. `None` when the run
    /// holds no record of it: never appended, trimmed, or below the run's start or a
    /// released watermark without a record. Records still buffered are written to the
    /// file first.
    ///
    /// Every record of the block the seq is in is checked as it is read (magic,
    /// length, reserved field, CRC): one that fails, or a segment shorter than what
    /// was written to it, is an `InvalidData` error naming the file and the byte
    /// offset. A seq journaled twice (a crash between a write and its ack) reads as
    /// its first record in file order.
    pub fn read(&mut self, seq: u64) -> io::Result<Option<RecordRef<'_>>> {
        Ok(if self.locate(seq)? {
            self.reader.find(seq)
        } else {
            None
        })
    }

    /// Calls `each` with the record of every seq in `seqs` this run holds, in seq
    /// order (as [`Journal::read`]); counts the others. Consecutive seqs of one block
    /// cost one read of it. Stops at the first damaged record, with its error.
    pub fn read_range(
        &mut self,
        seqs: RangeInclusive<u64>,
        mut each: impl FnMut(RecordRef<'_>),
    ) -> io::Result<RangeRead> {
        let (from, to) = (*seqs.start(), *seqs.end());
        let mut r = RangeRead::default();
        if from > to {
            return Ok(r);
        }
        // Above the highest seq held nothing is read: a request may name any range.
        let last = to.min(self.max_written);
        if from <= last {
            for seq in from..=last {
                if let Some(rec) = self.read(seq)? {
                    each(rec);
                    r.found += 1;
                }
            }
        }
        r.missing = (to - from).saturating_add(1) - r.found;
        Ok(r)
    }

    /// Loads the block holding the first record of `seq` in file order; whether
    /// there is one.
    fn locate(&mut self, seq: u64) -> io::Result<bool> {
        if seq == 0 || seq > self.max_written {
            return Ok(false);
        }
        let active = self.segments.len().saturating_sub(1);
        for i in 0..self.segments.len() {
            let s = &self.segments[i];
            if s.records == 0 || seq < s.min_seq || seq > s.max_seq {
                continue;
            }
            let name = s.name;
            for j in 0..self.segments[i].index.blocks.len() {
                let b = self.segments[i].index.blocks[j];
                if !b.holds(seq) {
                    continue;
                }
                if i == active {
                    // The block may end in records still in the write buffer.
                    self.flush()?;
                }
                self.set_path(name);
                self.reader.load(name, &self.path, &b)?;
                if self.reader.find(seq).is_some() {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Records on disk with a seq above `seq` (each record once, a seq journaled twice
    /// twice): what a destination has not confirmed yet when `seq` is its
    /// delivered-through. Reads only the blocks that straddle `seq`.
    pub fn records_above(&mut self, seq: u64) -> io::Result<u64> {
        let mut n = 0u64;
        let active = self.segments.len().saturating_sub(1);
        for i in 0..self.segments.len() {
            let name = self.segments[i].name;
            for j in 0..self.segments[i].index.blocks.len() {
                let b = self.segments[i].index.blocks[j];
                if b.min_seq > seq {
                    n += u64::from(b.records);
                } else if b.max_seq > seq {
                    if i == active {
                        self.flush()?;
                    }
                    self.set_path(name);
                    self.reader.load(name, &self.path, &b)?;
                    n += self.reader.count_above(seq);
                }
            }
        }
        Ok(n)
    }

    /// Allocates the next segment's block index if a roll took it.
    fn replenish_spare(&mut self) {
        if self.spare_index.is_none() {
            self.spare_index = Some(BlockIndex::sized_for(self.cfg.segment_bytes));
        }
    }

    /// Records appended but not yet synced.
    pub fn unsynced_records(&self) -> u32 {
        self.unsynced
    }

    /// Records recovered at open plus records appended since.
    pub fn records_total(&self) -> u64 {
        self.records_total
    }

    /// Records currently in the journal's segments (trimmed ones excluded).
    pub fn records_on_disk(&self) -> u64 {
        self.segments.iter().map(|s| s.records).sum()
    }

    /// Bytes of the journal's segments, buffered ones included.
    pub fn bytes_on_disk(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The trim floor: every seq below it was trimmed or never needed (0: none).
    pub fn floor(&self) -> u64 {
        self.floor
    }

    pub fn stats(&self) -> JournalStats {
        self.stats
    }

    /// Deletes every sealed segment (never the active one) whose every seq is below
    /// `watermark`, clamped to `contiguous_seq() + 1` so that only journaled, synced,
    /// contiguous records are ever removed. The clamped watermark is first recorded in
    /// `trim-floor` (written, synced, renamed into place). Returns the segments deleted.
    pub fn trim_below(&mut self, watermark: u64) -> io::Result<usize> {
        let bound = watermark.min(self.synced_contiguous.saturating_add(1));
        let sealed = self.segments.len().saturating_sub(1);
        let doomed = |s: &Segment| s.records == 0 || s.max_seq < bound;
        if !self.segments[..sealed].iter().any(doomed) {
            self.replenish_spare();
            return Ok(0);
        }
        if bound > self.floor {
            let tmp = self.cfg.dir.join(format!("{FLOOR_FILE}.tmp"));
            let mut f = File::create(&tmp)?;
            writeln!(f, "{bound}")?;
            f.sync_all()?;
            fs::rename(&tmp, self.cfg.dir.join(FLOOR_FILE))?;
            sync_dir(&self.cfg.dir)?;
            self.floor = bound;
        }
        let mut deleted = 0;
        let mut i = 0;
        // What was read from a segment about to go is forgotten with it.
        self.reader.forget();
        while i + 1 < self.segments.len() {
            if doomed(&self.segments[i]) {
                fs::remove_file(self.cfg.dir.join(segment_name(self.segments[i].name)))?;
                let gone = self.segments.remove(i);
                if self.spare_index.is_none() {
                    let mut ix = gone.index;
                    ix.blocks.clear();
                    self.spare_index = Some(ix);
                }
                deleted += 1;
            } else {
                i += 1;
            }
        }
        sync_dir(&self.cfg.dir)?;
        self.replenish_spare();
        self.stats.segments_trimmed += deleted as u64;
        Ok(deleted)
    }

    /// As [`Journal::trim_below`], for a run that takes no more records (an earlier
    /// epoch of the appliance): when the active segment's every seq is below the
    /// bound too, it is sealed first (an empty segment takes its place, so the run's
    /// files stay what open expects) and goes with the others. Without that, each
    /// earlier run would keep its last segment for ever.
    pub fn trim_below_all(&mut self, watermark: u64) -> io::Result<usize> {
        let bound = watermark.min(self.synced_contiguous.saturating_add(1));
        let covered = self
            .segments
            .last()
            .is_some_and(|s| s.records > 0 && s.max_seq < bound);
        if covered && self.wbuf.is_empty() && self.unsynced == 0 {
            // `roll` names the new segment after the last one.
            self.roll(0)?;
        }
        self.trim_below(watermark)
    }

    /// Syncs and closes.
    pub fn close(mut self) -> io::Result<()> {
        self.sync()
    }
}

/// One record read back, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub stream: u32,
    pub epoch: u64,
    pub flags: u16,
    pub timestamp_ns: u64,
    /// The taphold PDU.
    pub pdu: Vec<u8>,
    pub file: PathBuf,
    pub offset: u64,
}

/// Where a segment stops being records: its file, the byte offset and the defect.
pub type Unreadable = (PathBuf, u64, Defect);

/// Every record of the run in `dir`, segment by segment in file order. Any defect is an
/// error naming the file and offset (open the journal first to recover a torn tail).
/// This is what a takeover replays from.
pub fn read_records(dir: &Path) -> io::Result<Vec<Record>> {
    let (records, unreadable) = read_valid_records(dir)?;
    match unreadable.first() {
        Some((file, offset, defect)) => Err(invalid(format!(
            "{}: bad record at byte offset {offset}: {defect}",
            file.display()
        ))),
        None => Ok(records),
    }
}

/// Every valid record of the run in `dir`, in file order, and where each segment
/// stopped being readable (a torn tail, corruption): what an export or a report can
/// still use without changing anything. Errors only when a file cannot be read.
pub fn read_valid_records(dir: &Path) -> io::Result<(Vec<Record>, Vec<Unreadable>)> {
    let (files, _) = list_segments(dir)?;
    let mut out = Vec::new();
    let mut unreadable = Vec::new();
    for (_, path) in files {
        let buf = fs::read(&path)?;
        let brk = record::scan(&buf, |r| {
            out.push(Record {
                seq: r.header.seq,
                stream: r.header.stream,
                epoch: r.header.epoch,
                flags: r.header.flags,
                timestamp_ns: r.header.timestamp_ns,
                pdu: r.payload.to_vec(),
                file: path.clone(),
                offset: r.offset,
            })
        });
        if let Some(b) = brk {
            unreadable.push((path.clone(), b.offset, b.defect));
        }
    }
    Ok((out, unreadable))
}
