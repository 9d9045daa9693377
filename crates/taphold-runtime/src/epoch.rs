//! The appliance's epoch: new and strictly larger on every start, persisted before the
//! first message is accepted.
//!
//! A message is (stream, epoch, seq) and seqs restart at 1 on every start, so the epoch
//! is what keeps a restarted appliance's seq 1 from being taken for the last run's seq 1
//! by a backup node's journal, an ack, or a destination. It lives in the state directory,
//! one small file per stream:
//!
//! ```text
//! taphold-epoch 1 stream 1 epoch 1764460800 crc32 5d0f41a2
//! ```
//!
//! The next epoch is `max(previous + 1, now in UNIX seconds)`: consecutive starts count
//! up, and a state directory that was lost (a rebuilt server) still yields an epoch above
//! every earlier one while the wall clock moves forward. The new value is written to a
//! temporary file, fsync'ed, renamed over the old one and the directory fsync'ed before
//! [`take_next`] returns: a crash at any point leaves the old or the new epoch, never a
//! torn one. A file that exists but does not read back as exactly this line (CRC
//! included) is an error naming it, never a silent restart at 1.
//!
//! The returned [`EpochLease`] holds an exclusive `flock` on `stream-S.lock` for as long
//! as it lives, so two appliances sharing a state directory cannot run the same stream.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The epoch of this run of the appliance for one stream, and the lock that makes it ours.
#[derive(Debug)]
pub struct EpochLease {
    pub stream: u32,
    pub epoch: u64,
    /// The epoch before this one (0 if none was recorded).
    pub previous: u64,
    /// The state file it was persisted in.
    pub path: PathBuf,
    /// Held open for the life of the lease: the flock goes with it.
    _lock: File,
}

/// Why no epoch could be taken.
#[derive(Debug)]
pub enum EpochError {
    /// The state file exists but is not a valid epoch record.
    Damaged { path: PathBuf, why: String },
    /// Another process holds the stream's lock.
    Locked { path: PathBuf },
    /// The file system refused.
    Io {
        path: PathBuf,
        what: &'static str,
        err: io::Error,
    },
}

impl fmt::Display for EpochError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EpochError::Damaged { path, why } => write!(
                f,
                "state file {}: damaged ({why}); refusing to start: the epoch it holds must never be reused. Restore it, or move it aside once you are sure no backup node or destination holds records of this stream's later epochs",
                path.display()
            ),
            EpochError::Locked { path } => write!(
                f,
                "state file {}: locked by another running appliance of the same stream",
                path.display()
            ),
            EpochError::Io { path, what, err } => {
                write!(f, "state file {}: cannot {what}: {err}", path.display())
            }
        }
    }
}

impl std::error::Error for EpochError {}

const MAGIC: &str = "taphold-epoch";
const FORMAT: u32 = 1;

/// The state file of `stream` in `dir`.
pub fn state_file(dir: &Path, stream: u32) -> PathBuf {
    dir.join(format!("stream-{stream}.epoch"))
}

fn lock_file(dir: &Path, stream: u32) -> PathBuf {
    dir.join(format!("stream-{stream}.lock"))
}

/// The line recorded for `epoch` of `stream`.
fn encode(stream: u32, epoch: u64) -> String {
    let body = format!("{MAGIC} {FORMAT} stream {stream} epoch {epoch}");
    let crc = crc32fast::hash(body.as_bytes());
    format!("{body} crc32 {crc:08x}\n")
}

/// The epoch recorded in `text` for `stream`, or why it is not one.
fn decode(text: &str, stream: u32) -> Result<u64, String> {
    let line = text
        .strip_suffix('\n')
        .ok_or("not one complete line (torn write?)")?;
    let (body, crc) = line.rsplit_once(" crc32 ").ok_or("no crc32 field")?;
    let crc = u32::from_str_radix(crc, 16).map_err(|_| format!("crc32 `{crc}` is not hex"))?;
    if crc32fast::hash(body.as_bytes()) != crc {
        return Err("crc32 mismatch".into());
    }
    let f: Vec<&str> = body.split(' ').collect();
    match f[..] {
        [MAGIC, v, "stream", s, "epoch", e] => {
            if v != FORMAT.to_string() {
                return Err(format!("format {v}, this build reads {FORMAT}"));
            }
            if s != stream.to_string() {
                return Err(format!("it is the file of stream {s}, not {stream}"));
            }
            e.parse()
                .map_err(|_| format!("epoch `{e}` is not a number"))
        }
        _ => Err("not a taphold epoch record".into()),
    }
}

/// Takes the next epoch of `stream` in the state directory `dir` (created if missing),
/// persists it durably and locks the stream, at `now_unix_s` (the wall clock, seconds).
pub fn take_next(dir: &Path, stream: u32, now_unix_s: u64) -> Result<EpochLease, EpochError> {
    let io_err = |path: &Path, what, err| EpochError::Io {
        path: path.to_path_buf(),
        what,
        err,
    };
    fs::create_dir_all(dir).map_err(|e| io_err(dir, "create the state directory", e))?;

    let lock_path = lock_file(dir, stream);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| io_err(&lock_path, "open", e))?;
    // SAFETY: flock on a descriptor we own and keep open; it only changes lock state.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = io::Error::last_os_error();
        return Err(if err.kind() == io::ErrorKind::WouldBlock {
            EpochError::Locked { path: lock_path }
        } else {
            io_err(&lock_path, "lock", err)
        });
    }

    let path = state_file(dir, stream);
    let previous = match fs::read(&path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| EpochError::Damaged {
                path: path.clone(),
                why: "not text".into(),
            })?;
            decode(&text, stream).map_err(|why| EpochError::Damaged {
                path: path.clone(),
                why,
            })?
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io_err(&path, "read", e)),
    };
    let epoch = previous
        .checked_add(1)
        .ok_or_else(|| EpochError::Damaged {
            path: path.clone(),
            why: "the epoch is exhausted (u64::MAX)".into(),
        })?
        .max(now_unix_s);

    let tmp = dir.join(format!("stream-{stream}.epoch.tmp"));
    let write = || -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(encode(stream, epoch).as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| io_err(&path, "persist the new epoch", e))?;
    Ok(EpochLease {
        stream,
        epoch,
        previous,
        path,
        _lock: lock,
    })
}

/// Seconds since the UNIX epoch by the wall clock (0 if the clock is before 1970).
pub fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_start_takes_a_larger_epoch_and_persists_it() {
        let d = tempfile::tempdir().unwrap();
        let a = take_next(d.path(), 1, 1000).unwrap();
        assert_eq!((a.previous, a.epoch), (0, 1000));
        drop(a);
        let b = take_next(d.path(), 1, 1000).unwrap();
        assert_eq!((b.previous, b.epoch), (1000, 1001), "same second: count up");
        drop(b);
        let c = take_next(d.path(), 1, 500).unwrap();
        assert_eq!(c.epoch, 1002, "a clock that went back never lowers it");
        drop(c);
        let e = take_next(d.path(), 1, 5000).unwrap();
        assert_eq!(e.epoch, 5000, "the wall clock floors it");
        assert_eq!(
            fs::read_to_string(state_file(d.path(), 1)).unwrap(),
            encode(1, 5000)
        );
        // Streams are independent.
        let other = take_next(d.path(), 2, 7).unwrap();
        assert_eq!(other.epoch, 7);
    }

    #[test]
    fn a_lost_state_directory_still_yields_a_larger_epoch_while_time_moves_on() {
        let d = tempfile::tempdir().unwrap();
        let before = take_next(d.path(), 1, unix_now_s()).unwrap().epoch;
        fs::remove_dir_all(d.path()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let after = take_next(d.path(), 1, unix_now_s()).unwrap().epoch;
        assert!(after > before, "{after} > {before}");
    }

    #[test]
    fn a_second_holder_of_the_stream_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let held = take_next(d.path(), 3, 1).unwrap();
        let e = take_next(d.path(), 3, 1).unwrap_err();
        assert!(matches!(e, EpochError::Locked { .. }), "{e}");
        assert!(e.to_string().contains("stream-3.lock"), "{e}");
        drop(held);
        assert_eq!(take_next(d.path(), 3, 1).unwrap().epoch, 2);
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it_and_is_left_alone() {
        let good = encode(1, 77);
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "torn"),
            (good.trim_end().to_string(), "torn"),
            (good.replace("77", "78"), "crc32 mismatch"),
            (good.replace("crc32", "crc"), "no crc32"),
            ("garbage\n".into(), "no crc32"),
            (encode(2, 77), "stream 2, not 1"),
            (
                {
                    let body = "taphold-epoch 9 stream 1 epoch 77";
                    format!("{body} crc32 {:08x}\n", crc32fast::hash(body.as_bytes()))
                },
                "format 9",
            ),
            (
                {
                    let body = "taphold-epoch 1 stream 1 epoch x";
                    format!("{body} crc32 {:08x}\n", crc32fast::hash(body.as_bytes()))
                },
                "not a number",
            ),
        ];
        for (text, why) in cases {
            let d = tempfile::tempdir().unwrap();
            let p = state_file(d.path(), 1);
            fs::write(&p, &text).unwrap();
            let e = take_next(d.path(), 1, 1).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, EpochError::Damaged { .. }), "{text:?}: {msg}");
            assert!(msg.contains(&p.display().to_string()), "{msg}");
            assert!(msg.contains(why), "{text:?}: {msg}");
            assert_eq!(fs::read_to_string(&p).unwrap(), text, "left as it was");
        }
        let d = tempfile::tempdir().unwrap();
        fs::write(state_file(d.path(), 1), [0xff, 0xfe]).unwrap();
        assert!(take_next(d.path(), 1, 1)
            .unwrap_err()
            .to_string()
            .contains("not text"));
    }

    #[test]
    fn an_unusable_directory_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("plain-file");
        fs::write(&file, b"").unwrap();
        let e = take_next(&file, 1, 1).unwrap_err();
        assert!(matches!(e, EpochError::Io { .. }), "{e}");
        assert!(e.to_string().contains("plain-file"), "{e}");
    }
}
