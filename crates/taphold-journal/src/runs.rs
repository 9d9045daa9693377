//! The runs of a journal directory: one per (stream, epoch) of the appliance.
//!
//! ```text
//! DIR/
//!   stream-1/
//!     epoch-1764460800/   00000000000000000001.journal ... trim-floor
//!     epoch-1764461234/   00000000000000000001.journal ...
//! ```
//!
//! The appliance numbers messages from 1 in every epoch, and takes a new, larger epoch on
//! every start. Keeping each epoch's records in a run of their own means a restarted
//! appliance's seq 1 is a new message, not a duplicate of the last run's seq 1; the
//! contiguous point, the trim floor and the acks are each run's own.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::SEGMENT_SUFFIX;

/// Which appliance run a journal run holds: stream and epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RunId {
    pub stream: u32,
    pub epoch: u64,
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream {} epoch {}", self.stream, self.epoch)
    }
}

const STREAM_PREFIX: &str = "stream-";
const EPOCH_PREFIX: &str = "epoch-";

/// The directory of run `run` in the journal directory `root`.
pub fn run_dir(root: &Path, run: RunId) -> PathBuf {
    root.join(format!("{STREAM_PREFIX}{}", run.stream))
        .join(format!("{EPOCH_PREFIX}{}", run.epoch))
}

/// `prefix` followed by a decimal number with no sign, no leading zero (but `0` itself)
/// and no other character.
fn parse_numbered<T: std::str::FromStr>(name: &str, prefix: &str) -> Option<T> {
    let digits = name.strip_prefix(prefix)?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    canonical.then(|| digits.parse().ok()).flatten()
}

/// What a journal directory holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runs {
    /// Every run, in (stream, epoch) order.
    pub runs: Vec<(RunId, PathBuf)>,
    /// Segment files outside any run: a journal written before epochs existed (protocol
    /// version 2), or files moved by hand. Opening refuses nothing because of them, but
    /// inspection reports each.
    pub stray: Vec<PathBuf>,
}

/// Lists the runs of the journal directory `root`. A missing `root` has no runs.
/// Entries that are neither runs nor segment files (a lock file, notes) are ignored.
pub fn list_runs(root: &Path) -> io::Result<Runs> {
    let mut out = Runs::default();
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        let Some(stream) = parse_numbered::<u32>(&name, STREAM_PREFIX) else {
            if name.ends_with(SEGMENT_SUFFIX) {
                out.stray.push(e.path());
            }
            continue;
        };
        if !e.file_type()?.is_dir() {
            continue;
        }
        for r in fs::read_dir(e.path())? {
            let r = r?;
            let rname = r.file_name();
            let rname = rname.to_string_lossy();
            match parse_numbered::<u64>(&rname, EPOCH_PREFIX) {
                Some(epoch) if r.file_type()?.is_dir() => {
                    out.runs.push((RunId { stream, epoch }, r.path()))
                }
                _ if rname.ends_with(SEGMENT_SUFFIX) => out.stray.push(r.path()),
                _ => {}
            }
        }
    }
    out.runs.sort();
    out.stray.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_round_trip_and_sort_by_number() {
        let root = tempfile::tempdir().unwrap();
        let ids = [
            RunId {
                stream: 2,
                epoch: 5,
            },
            RunId {
                stream: 1,
                epoch: 10,
            },
            RunId {
                stream: 1,
                epoch: 9,
            },
            RunId {
                stream: 1,
                epoch: 0,
            },
        ];
        for id in ids {
            fs::create_dir_all(run_dir(root.path(), id)).unwrap();
        }
        // Not runs: a padded number, a file, a stray segment, a lock file.
        fs::create_dir_all(root.path().join("stream-1/epoch-011")).unwrap();
        fs::write(root.path().join("stream-1/epoch-12"), b"").unwrap();
        fs::write(root.path().join("00000000000000000001.journal"), b"").unwrap();
        fs::write(root.path().join("lock"), b"").unwrap();
        let r = list_runs(root.path()).unwrap();
        let got: Vec<RunId> = r.runs.iter().map(|(id, _)| *id).collect();
        let mut want = ids.to_vec();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(r.runs[0].1, root.path().join("stream-1/epoch-0"));
        assert_eq!(
            r.stray,
            vec![root.path().join("00000000000000000001.journal")]
        );
        assert_eq!(
            list_runs(&root.path().join("absent")).unwrap(),
            Runs::default()
        );
    }

    #[test]
    fn numbered_names_are_canonical() {
        assert_eq!(parse_numbered::<u64>("epoch-0", EPOCH_PREFIX), Some(0));
        assert_eq!(parse_numbered::<u64>("epoch-42", EPOCH_PREFIX), Some(42));
        for bad in [
            "epoch-", "epoch-01", "epoch-+1", "epoch-1a", "epoc-1", "epoch--1",
        ] {
            assert_eq!(parse_numbered::<u64>(bad, EPOCH_PREFIX), None, "{bad}");
        }
        assert_eq!(
            parse_numbered::<u32>("stream-4294967296", STREAM_PREFIX),
            None
        );
    }
}
