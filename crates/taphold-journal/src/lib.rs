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
//!   so only the last segment can ever have a torn tail.
//! - A segment is a sequence of records ([`record`]): a 40-byte header naming the record's
//!   (stream, epoch, seq), the taphold PDU of the backup frame as received, a CRC-32.
//! - [`Journal::open`] scans and verifies every record. A torn or corrupt tail of the
//!   *last* segment (a crash mid-write) is truncated away and reported in [`Recovery`];
//!   a bad record anywhere else is an error naming the file and offset.
//! - Sequence numbers may arrive out of order and duplicated ([`window`]): a seq already
//!   journaled is not written again; [`Journal::contiguous_seq`] is the highest `S` such
//!   that every seq from the start to `S` is journaled *and synced* — what an ack may claim.
//! - [`Journal::trim_below`] deletes whole segments below a watermark, after recording the
//!   trim point durably in the file `trim-floor`, so that a reopened journal knows the
//!   trimmed seqs were held.
//! - [`inspect`] reports on a journal without changing it.
//!
//! Appending does not allocate (the write buffer, bitmap window and segment table are
//! allocated at open), apart from the segment table growing past its initial capacity and
//! the overflow set of [`window`]; each call of [`Journal::flush`] / [`Journal::sync`]
//! is a `write` / `fdatasync` syscall.

pub mod inspect;
pub mod record;
pub mod runs;
pub mod window;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use inspect::{
    inspect, inspect_run, JournalReport, Problem, ProblemKind, Report, SegmentReport,
};
pub use record::{Defect, RecordRef};
use record::{RecordHeader, HEADER_LEN, MAX_PAYLOAD_LEN};
pub use runs::{list_runs, run_dir, RunId, Runs};
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
        }
    }

    /// Run `run` of the journal directory `root`: its segments in
    /// `root/stream-S/epoch-E/`.
    pub fn for_run(root: &Path, run: RunId) -> JournalConfig {
        JournalConfig::new(run_dir(root, run), run)
    }
}

/// What [`Journal::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Valid records in the journal after recovery.
    pub records: u64,
    /// Lowest and highest seq of those records.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Segment files.
    pub segments: usize,
    /// Bytes cut from the end of the last segment (a torn or corrupt tail).
    pub torn_bytes_discarded: u64,
    /// Where the cut was, and why.
    pub torn_at: Option<(PathBuf, u64, Defect)>,
    /// Records that checked out *after* the torn region of the last segment and were
    /// discarded with it. Nonzero only after corruption of the middle of the last
    /// segment, or a crash that wrote pages out of order; never acked data unless the
    /// disk lost synced bytes. Logged as a warning.
    pub valid_records_discarded: u64,
    /// The same seq found in more than one record (kept; counted once).
    pub duplicate_records: u64,
    /// The contiguous point rebuilt from the records and the trim floor.
    pub contiguous_seq: u64,
    /// The trim floor read from `trim-floor`, if any.
    pub floor: Option<u64>,
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
        if let Some((file, off, why)) = &self.torn_at {
            write!(
                f,
                ", discarded a torn tail of {} bytes at {}:{off} ({why})",
                self.torn_bytes_discarded,
                file.display()
            )?;
        }
        if self.valid_records_discarded > 0 {
            write!(
                f,
                ", {} valid-looking records after the tear discarded with it",
                self.valid_records_discarded
            )?;
        }
        Ok(())
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
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

impl Journal {
    /// Opens (creating the directory if needed) and recovers the journal in `cfg.dir`.
    pub fn open(cfg: JournalConfig) -> io::Result<(Journal, Recovery)> {
        if cfg.segment_bytes == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "segment_bytes must be at least 1",
            ));
        }
        fs::create_dir_all(&cfg.dir)?;
        let (files, bad) = list_segments(&cfg.dir)?;
        if let Some(b) = bad.first() {
            return Err(invalid(format!(
                "{}: not a segment name (want 20 digits{SEGMENT_SUFFIX})",
                b.display()
            )));
        }
        let floor = read_floor(&cfg.dir)?;
        let start = cfg.first_seq.max(floor.unwrap_or(0)).max(1);
        let mut window = SeqWindow::new(start - 1);
        let mut rec = Recovery {
            segments: files.len(),
            floor,
            ..Recovery::default()
        };
        let mut segments = Vec::with_capacity(files.len().max(1024));
        let mut max_written = 0;
        for (i, (name, path)) in files.iter().enumerate() {
            let last = i + 1 == files.len();
            let buf = fs::read(path)?;
            let mut seg = Segment {
                name: *name,
                bytes: buf.len() as u64,
                records: 0,
                min_seq: u64::MAX,
                max_seq: 0,
            };
            let mut foreign = None;
            let brk = record::scan(&buf, |r| {
                if (r.header.stream, r.header.epoch) != (cfg.run.stream, cfg.run.epoch) {
                    foreign.get_or_insert((r.offset, r.header.stream, r.header.epoch));
                    return;
                }
                let s = r.header.seq;
                seg.records += 1;
                seg.min_seq = seg.min_seq.min(s);
                seg.max_seq = seg.max_seq.max(s);
                rec.records += 1;
                rec.first_seq = Some(rec.first_seq.map_or(s, |f| f.min(s)));
                rec.last_seq = Some(rec.last_seq.map_or(s, |l| l.max(s)));
                max_written = max_written.max(s);
                // A seq below the start, or a second record of a seq, is kept on disk
                // but changes nothing; only the latter is unexpected.
                if window.insert(s) == Insert::Duplicate && s >= start {
                    rec.duplicate_records += 1;
                }
            });
            if let Some((offset, stream, epoch)) = foreign {
                return Err(invalid(format!(
                    "{}: the record at byte offset {offset} belongs to stream {stream} epoch {epoch}, not to this run ({}): refusing to open a journal whose files were moved between runs",
                    path.display(),
                    cfg.run
                )));
            }
            if let Some(b) = brk {
                if !last {
                    return Err(invalid(format!(
                        "{}: corrupt record at byte offset {} ({}) in a sealed segment; {} valid records follow it. Not the last segment, so not a torn write: refusing to open (run `taphold-backup journal inspect {}`)",
                        path.display(),
                        b.offset,
                        b.defect,
                        b.valid_records_after,
                        cfg.dir.display()
                    )));
                }
                let f = OpenOptions::new().write(true).open(path)?;
                f.set_len(b.offset)?;
                f.sync_all()?;
                rec.torn_bytes_discarded = buf.len() as u64 - b.offset;
                rec.torn_at = Some((path.clone(), b.offset, b.defect));
                rec.valid_records_discarded = b.valid_records_after;
                seg.bytes = b.offset;
            }
            segments.push(seg);
        }
        rec.contiguous_seq = window.contiguous();
        let active = match segments.last() {
            Some(s) => {
                let f = OpenOptions::new()
                    .append(true)
                    .open(cfg.dir.join(segment_name(s.name)))?;
                // What survived is on disk from now on, whatever the previous run synced.
                f.sync_data()?;
                Some(f)
            }
            None => None,
        };
        let path = PathBuf::with_capacity(cfg.dir.as_os_str().len() + 64);
        let stats = JournalStats {
            beyond_window: window.beyond_window,
            untracked: window.untracked,
            ..JournalStats::default()
        };
        Ok((
            Journal {
                synced_contiguous: window.contiguous(),
                window,
                segments,
                active,
                wbuf: Vec::with_capacity(WRITE_BUFFER + record::MAX_RECORD_LEN),
                path,
                max_written,
                durable: max_written,
                unsynced: 0,
                last_sync_ns: 0,
                floor: floor.unwrap_or(0),
                records_total: rec.records,
                stats,
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
        seg.bytes += len as u64;
        seg.records += 1;
        seg.min_seq = seg.min_seq.min(seq);
        seg.max_seq = seg.max_seq.max(seq);
        self.max_written = self.max_written.max(seq);
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

    /// Seals the active segment (written and synced) and starts a new one for `seq`.
    fn roll(&mut self, seq: u64) -> io::Result<()> {
        if self.active.is_some() {
            self.sync()?;
        }
        let n = match self.segments.last() {
            Some(s) => seq.max(s.name + 1),
            None => seq,
        };
        self.set_path(n);
        let f = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&self.path)?;
        // The new name must survive a crash for the records synced into it to.
        sync_dir(&self.cfg.dir)?;
        self.active = Some(f);
        self.segments.push(Segment {
            name: n,
            bytes: 0,
            records: 0,
            min_seq: u64::MAX,
            max_seq: 0,
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
            || p.every_us
                .is_some_and(|us| now_ns.saturating_sub(self.last_sync_ns) >= us * 1000);
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
    pub fn note_released(&mut self, watermark: u64) {
        self.stats.covered_by_watermark += self.window.raise_base(watermark);
        self.synced_contiguous = self
            .synced_contiguous
            .max(watermark.min(self.window.contiguous()));
    }

    /// As [`Journal::contiguous_seq`], counting records not yet synced.
    pub fn journaled_contiguous_seq(&self) -> u64 {
        self.window.contiguous()
    }

    /// Whether `seq` is journaled (synced or not).
    pub fn contains(&self, seq: u64) -> bool {
        self.window.contains(seq)
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
        while i + 1 < self.segments.len() {
            if doomed(&self.segments[i]) {
                fs::remove_file(self.cfg.dir.join(segment_name(self.segments[i].name)))?;
                self.segments.remove(i);
                deleted += 1;
            } else {
                i += 1;
            }
        }
        sync_dir(&self.cfg.dir)?;
        self.stats.segments_trimmed += deleted as u64;
        Ok(deleted)
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
