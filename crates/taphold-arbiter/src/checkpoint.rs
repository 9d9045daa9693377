//! What a restarted arbiter resumes from: each epoch's delivered-through seq.
//!
//! [`Checkpoint`] is the data and its one-line text form, for an application that stores it
//! itself, in the same transaction as the effects of the messages it covers (the only way to
//! exactly-once across a crash). [`StateFile`] is the default store: one small file per
//! stream in the state directory, the house style of the appliance's epoch file:
//!
//! ```text
//! taphold-arbiter 1 stream 7 floor 0 epochs 2 epoch 1764460800 delivered 42 skipped 0 epoch 1764460900 delivered 7 skipped 0 crc32 5d0f41a2
//! ```
//!
//! Written to a temporary file, fsync'ed, renamed over the old one and the directory
//! fsync'ed: a crash leaves the old or the new state, never a torn one. A file that exists
//! but does not read back as exactly such a line (CRC included) is an error naming it,
//! never a silent restart at seq 1 (which would deliver everything again).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// One epoch's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EpochMark {
    pub epoch: u64,
    /// Every seq ≤ this was delivered or skipped; the next expected is this + 1.
    pub delivered: u64,
    /// How many of them were skipped.
    pub skipped: u64,
}

/// The arbiter's progress on one stream: its epochs, and the floor at or below which an
/// epoch is refused as stale (finished and forgotten).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    pub stream: u32,
    pub floor: u64,
    pub epochs: Vec<EpochMark>,
}

const MAGIC: &str = "taphold-arbiter";
const FORMAT: u32 = 1;

impl Checkpoint {
    /// The one-line text form, newline-terminated, CRC-protected.
    pub fn encode(&self) -> String {
        let mut body = format!(
            "{MAGIC} {FORMAT} stream {} floor {} epochs {}",
            self.stream,
            self.floor,
            self.epochs.len()
        );
        for m in &self.epochs {
            body += &format!(
                " epoch {} delivered {} skipped {}",
                m.epoch, m.delivered, m.skipped
            );
        }
        let crc = crc32fast::hash(body.as_bytes());
        format!("{body} crc32 {crc:08x}\n")
    }

    /// Reads the text form back, for `stream`; says why it is not one.
    pub fn decode(text: &str, stream: u32) -> Result<Checkpoint, String> {
        let line = text
            .strip_suffix('\n')
            .ok_or("not one complete line (torn write?)")?;
        if line.contains('\n') {
            return Err("more than one line".into());
        }
        let (body, crc) = line.rsplit_once(" crc32 ").ok_or("no crc32 field")?;
        let crc = u32::from_str_radix(crc, 16).map_err(|_| format!("crc32 `{crc}` is not hex"))?;
        if crc32fast::hash(body.as_bytes()) != crc {
            return Err("crc32 mismatch".into());
        }
        let f: Vec<&str> = body.split(' ').collect();
        let num = |what: &str, v: &str| -> Result<u64, String> {
            v.parse()
                .map_err(|_| format!("{what} `{v}` is not a number"))
        };
        let (v, s, floor, n, rest) = match f[..] {
            [MAGIC, v, "stream", s, "floor", floor, "epochs", n, ref rest @ ..] => {
                (v, s, floor, n, rest)
            }
            _ => return Err("not a taphold-arbiter state record".into()),
        };
        if v != FORMAT.to_string() {
            return Err(format!("format {v}, this build reads {FORMAT}"));
        }
        if s != stream.to_string() {
            return Err(format!("it is the state of stream {s}, not {stream}"));
        }
        let floor = num("floor", floor)?;
        let n = num("epochs", n)?;
        if rest.len() as u64 != n.saturating_mul(6) {
            return Err(format!(
                "says {n} epochs, holds {} words of them",
                rest.len()
            ));
        }
        let mut epochs = Vec::with_capacity(rest.len() / 6);
        for e in rest.chunks_exact(6) {
            match *e {
                ["epoch", ep, "delivered", d, "skipped", sk] => {
                    let m = EpochMark {
                        epoch: num("epoch", ep)?,
                        delivered: num("delivered", d)?,
                        skipped: num("skipped", sk)?,
                    };
                    if m.skipped > m.delivered {
                        return Err(format!(
                            "epoch {}: skipped {} > delivered {}",
                            m.epoch, m.skipped, m.delivered
                        ));
                    }
                    if epochs.iter().any(|o: &EpochMark| o.epoch == m.epoch) {
                        return Err(format!("epoch {} twice", m.epoch));
                    }
                    epochs.push(m);
                }
                _ => return Err("an epoch entry is not `epoch E delivered D skipped S`".into()),
            }
        }
        Ok(Checkpoint {
            stream,
            floor,
            epochs,
        })
    }
}

/// Why the state file could not be used.
#[derive(Debug)]
pub enum StateError {
    /// The file exists but is not a valid record.
    Damaged { path: PathBuf, why: String },
    /// Another arbiter of the same stream holds the lock.
    Locked { path: PathBuf },
    /// The file system refused.
    Io {
        path: PathBuf,
        what: &'static str,
        err: io::Error,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Damaged { path, why } => write!(
                f,
                "state file {}: damaged ({why}); refusing to start: resuming at seq 1 would deliver again what was delivered. Restore it, or move it aside once the application knows where each epoch stands",
                path.display()
            ),
            StateError::Locked { path } => write!(
                f,
                "state file {}: locked by another running arbiter of the same stream",
                path.display()
            ),
            StateError::Io { path, what, err } => {
                write!(f, "state file {}: cannot {what}: {err}", path.display())
            }
        }
    }
}

impl std::error::Error for StateError {}

/// The state file of one stream, locked for as long as this lives.
#[derive(Debug)]
pub struct StateFile {
    dir: PathBuf,
    path: PathBuf,
    stream: u32,
    /// Held open for the life of the value: the flock goes with it.
    _lock: File,
}

impl StateFile {
    /// The state file of `stream` in `dir`.
    pub fn path_in(dir: &Path, stream: u32) -> PathBuf {
        dir.join(format!("arbiter-stream-{stream}.state"))
    }

    /// Opens (creating `dir` if missing) and locks the state of `stream`; returns the
    /// checkpoint it holds, `None` if there is none yet.
    pub fn open(dir: &Path, stream: u32) -> Result<(StateFile, Option<Checkpoint>), StateError> {
        let io_err = |path: &Path, what, err| StateError::Io {
            path: path.to_path_buf(),
            what,
            err,
        };
        fs::create_dir_all(dir).map_err(|e| io_err(dir, "create the state directory", e))?;
        let lock_path = dir.join(format!("arbiter-stream-{stream}.lock"));
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
                StateError::Locked { path: lock_path }
            } else {
                io_err(&lock_path, "lock", err)
            });
        }
        let path = Self::path_in(dir, stream);
        let cp = match fs::read(&path) {
            Ok(bytes) => {
                let damaged = |why: String| StateError::Damaged {
                    path: path.clone(),
                    why,
                };
                let text = String::from_utf8(bytes).map_err(|_| damaged("not text".into()))?;
                Some(Checkpoint::decode(&text, stream).map_err(damaged)?)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&path, "read", e)),
        };
        Ok((
            StateFile {
                dir: dir.to_path_buf(),
                path,
                stream,
                _lock: lock,
            },
            cp,
        ))
    }

    /// Writes `cp` durably (temporary file, fsync, rename, directory fsync).
    pub fn write(&self, cp: &Checkpoint) -> Result<(), StateError> {
        if cp.stream != self.stream {
            return Err(StateError::Damaged {
                path: self.path.clone(),
                why: format!(
                    "asked to write stream {}'s state into stream {}'s file",
                    cp.stream, self.stream
                ),
            });
        }
        let tmp = self
            .dir
            .join(format!("arbiter-stream-{}.state.tmp", self.stream));
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(cp.encode().as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(|err| StateError::Io {
            path: self.path.clone(),
            what: "persist the checkpoint",
            err,
        })
    }

    /// Where the state lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp() -> Checkpoint {
        Checkpoint {
            stream: 7,
            floor: 3,
            epochs: vec![
                EpochMark {
                    epoch: 1_764_460_800,
                    delivered: 42,
                    skipped: 2,
                },
                EpochMark {
                    epoch: 1_764_460_900,
                    delivered: 7,
                    skipped: 0,
                },
            ],
        }
    }

    #[test]
    fn round_trips_and_reads_as_documented() {
        let text = cp().encode();
        assert!(text.starts_with("taphold-arbiter 1 stream 7 floor 3 epochs 2 epoch 1764460800 delivered 42 skipped 2 epoch 1764460900 delivered 7 skipped 0 crc32 "), "{text}");
        assert_eq!(Checkpoint::decode(&text, 7), Ok(cp()));
        let empty = Checkpoint {
            stream: 7,
            floor: 0,
            epochs: vec![],
        };
        assert_eq!(Checkpoint::decode(&empty.encode(), 7), Ok(empty));
    }

    #[test]
    fn every_damage_is_named() {
        let good = cp().encode();
        let resealed =
            |body: &str| format!("{body} crc32 {:08x}\n", crc32fast::hash(body.as_bytes()));
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "torn"),
            (good.trim_end().to_string(), "torn"),
            (good.replace("delivered 42", "delivered 43"), "crc32 mismatch"),
            (good.replace("crc32", "crc"), "no crc32"),
            (good.replace("\n", "\nx\n"), "more than one line"),
            (cp().encode().replace("stream 7", "stream 8"), "crc32 mismatch"),
            (
                resealed("taphold-arbiter 1 stream 8 floor 0 epochs 0"),
                "stream 8, not 7",
            ),
            (resealed("taphold-arbiter 2 stream 7 floor 0 epochs 0"), "format 2"),
            (resealed("taphold-epoch 1 stream 7 epoch 5"), "not a taphold-arbiter"),
            (
                resealed("taphold-arbiter 1 stream 7 floor 0 epochs 2 epoch 1 delivered 1 skipped 0"),
                "says 2 epochs",
            ),
            (
                resealed("taphold-arbiter 1 stream 7 floor 0 epochs 1 epoch 1 delivered x skipped 0"),
                "delivered `x` is not a number",
            ),
            (
                resealed("taphold-arbiter 1 stream 7 floor 0 epochs 1 epoch 1 delivered 1 skipped 2"),
                "skipped 2 > delivered 1",
            ),
            (
                resealed("taphold-arbiter 1 stream 7 floor 0 epochs 2 epoch 1 delivered 1 skipped 0 epoch 1 delivered 2 skipped 0"),
                "epoch 1 twice",
            ),
            (
                resealed("taphold-arbiter 1 stream 7 floor 0 epochs 1 epoch 1 seen 1 skipped 0"),
                "an epoch entry",
            ),
        ];
        for (text, why) in cases {
            let e = Checkpoint::decode(&text, 7).unwrap_err();
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_state_file_persists_locks_and_names_damage() {
        let d = tempfile::tempdir().unwrap();
        let (f, none) = StateFile::open(d.path(), 7).unwrap();
        assert_eq!(none, None);
        f.write(&cp()).unwrap();
        assert_eq!(
            fs::read_to_string(StateFile::path_in(d.path(), 7)).unwrap(),
            cp().encode()
        );
        // A second arbiter of the stream is refused while the first lives.
        let e = StateFile::open(d.path(), 7).unwrap_err();
        assert!(matches!(e, StateError::Locked { .. }), "{e}");
        drop(f);
        let (f, back) = StateFile::open(d.path(), 7).unwrap();
        assert_eq!(back, Some(cp()));
        // Another stream's checkpoint is not written into this file.
        assert!(f.write(&Checkpoint { stream: 8, ..cp() }).is_err());
        drop(f);
        // Damage: an error naming the file, which is left as it was.
        let p = StateFile::path_in(d.path(), 7);
        fs::write(&p, "taphold-arbiter 1 stream 7 flo").unwrap();
        let e = StateFile::open(d.path(), 7).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, StateError::Damaged { .. }), "{msg}");
        assert!(
            msg.contains(&p.display().to_string()) && msg.contains("torn"),
            "{msg}"
        );
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            "taphold-arbiter 1 stream 7 flo"
        );
        fs::write(&p, [0xff, 0xfe]).unwrap();
        assert!(StateFile::open(d.path(), 7)
            .unwrap_err()
            .to_string()
            .contains("not text"));
        // An unusable directory is named.
        let file = d.path().join("plain");
        fs::write(&file, b"").unwrap();
        let e = StateFile::open(&file, 7).unwrap_err();
        assert!(e.to_string().contains("plain"), "{e}");
    }
}
