//! A whole journal run directory, as the backup node finds it at start: segment files,
//! `seals`, `trim-floor`, files set aside by earlier opens. Inspect, the export's reader
//! and open must each give an answer or an error, never panic, and agree: a run opens
//! exactly when inspect says it would (with or without `allow_holes`); once open, every
//! record it holds reads back, a new record appends, and the run reopens.
//!
//! Input: a list of files, each `[name length: u8][name][content length: u16 BE]
//! [content]`, written into the run directory `stream-7/epoch-9/` of an empty journal.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use taphold_journal::{inspect, inspect_run, read_valid_records, run_dir, Journal, JournalConfig};

use super::{Scratch, MAX_INPUT};
use crate::seeds::RUN;
use crate::{Material, Target};

pub const TARGET: Target = Target {
    name: "journal_run",
    run,
    seeds,
};

/// Most seqs read back after an open (a fuzzed run can claim any seq range).
const MAX_READS: u64 = 512;

fn seeds(m: &Material) -> Vec<Vec<u8>> {
    let files = m.journal_run();
    let mut s = vec![encode(&files)];
    // The active segment alone, and without `seals` (what a run before its first seal
    // looks like, and what a lost `seals` looks like).
    if let Some(last) = files.iter().rfind(|(n, _)| n.ends_with(".journal")) {
        s.push(encode(std::slice::from_ref(last)));
    }
    let no_seals: Vec<_> = files
        .iter()
        .filter(|(n, _)| n != "seals")
        .cloned()
        .collect();
    s.push(encode(&no_seals));
    // What a crash leaves: the active segment cut inside a record, or followed by zeros
    // (a file extended before its data reached the disk); and a sealed segment damaged.
    let segments: Vec<&String> = files
        .iter()
        .map(|(n, _)| n)
        .filter(|n| n.ends_with(".journal"))
        .collect();
    let (first, active) = (segments.first().cloned(), segments.last().cloned());
    let edited = |f: &dyn Fn(&String, &mut Vec<u8>)| {
        let mut files = files.clone();
        for (n, b) in files.iter_mut() {
            f(n, b);
        }
        encode(&files)
    };
    s.push(edited(&|n, b| {
        if Some(n) == active {
            b.truncate(b.len().saturating_sub(7));
        }
    }));
    s.push(edited(&|n, b| {
        if Some(n) == active {
            b.extend_from_slice(&[0; 64]);
        }
    }));
    s.push(edited(&|n, b| {
        if Some(n) == first && b.len() > 60 {
            b[60] ^= 0x40;
        }
    }));
    s
}

/// The input format of [`run`] for these files.
pub fn encode(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, content) in files {
        let content = &content[..content.len().min(usize::from(u16::MAX))];
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(content.len() as u16).to_be_bytes());
        out.extend_from_slice(content);
    }
    out
}

/// The files an input names (names that are not one plain file name are skipped).
fn decode(mut data: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut files = Vec::new();
    while let Some((&n, rest)) = data.split_first() {
        let n = usize::from(n);
        if rest.len() < n + 2 {
            break;
        }
        let (name, rest) = rest.split_at(n);
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let rest = &rest[2..];
        let content = &rest[..len.min(rest.len())];
        data = &rest[content.len()..];
        let plain = !name.is_empty()
            && name != b"."
            && name != b".."
            && !name.iter().any(|&b| b == b'/' || b == 0);
        if plain && !files.iter().any(|(n, _)| *n == name) {
            files.push((name, content));
        }
    }
    files
}

fn write_run(root: &Path, files: &[(&[u8], &[u8])]) -> PathBuf {
    let _ = fs::remove_dir_all(root);
    let dir = run_dir(root, RUN);
    fs::create_dir_all(&dir).expect("run directory");
    for (name, content) in files {
        fs::write(dir.join(OsStr::from_bytes(name)), content).expect("run file");
    }
    dir
}

fn config(dir: &Path, allow_holes: bool) -> JournalConfig {
    let mut cfg = JournalConfig::new(dir, RUN);
    cfg.segment_bytes = 4096;
    cfg.allow_holes = allow_holes;
    cfg
}

pub fn run(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let files = decode(data);
    let scratch = Scratch::new("journal_run");
    let root = scratch.path();
    let dir = write_run(root, &files);

    let report = inspect(root).expect("inspect reads a readable directory");
    let run = match report.run(RUN) {
        Some(r) => r.clone(),
        None => inspect_run(&dir, Some(RUN)).expect("inspect_run"),
    };
    read_valid_records(&dir).expect("the export's reader reads a readable run");

    let opened = Journal::open(config(&dir, false));
    assert_eq!(
        opened.is_ok(),
        run.is_recoverable(),
        "open {} what inspect judged {}: {:?}\n{run}",
        if opened.is_ok() {
            "accepted"
        } else {
            "refused"
        },
        if run.is_recoverable() {
            "recoverable"
        } else {
            "not recoverable"
        },
        opened.as_ref().err()
    );
    let (journal, allow_holes) = match opened {
        Ok((j, _)) => (j, false),
        Err(_) => {
            drop(opened);
            let dir = write_run(root, &files);
            let again = Journal::open(config(&dir, true));
            assert_eq!(
                again.is_ok(),
                run.opens_with_holes_allowed(),
                "open with holes allowed {} what inspect judged {}: {:?}\n{run}",
                if again.is_ok() { "accepted" } else { "refused" },
                if run.opens_with_holes_allowed() {
                    "openable"
                } else {
                    "refused"
                },
                again.as_ref().err()
            );
            match again {
                Ok((j, _)) => (j, true),
                Err(_) => return,
            }
        }
    };
    opened_run(journal, root, &dir, allow_holes);
}

/// What must hold of a run that opened.
fn opened_run(mut j: Journal, root: &Path, dir: &Path, allow_holes: bool) {
    let highest = j.highest_seq();
    let from = highest.saturating_sub(MAX_READS).max(1);
    for seq in from..=highest {
        let held = j.contains(seq);
        match j.read(seq) {
            Ok(Some(r)) => {
                assert!(
                    held,
                    "seq {seq} reads back but the journal says it does not hold it"
                );
                assert_eq!(r.header.seq, seq);
                assert_eq!((r.header.stream, r.header.epoch), (RUN.stream, RUN.epoch));
            }
            Ok(None) => {}
            // Opened past damage: a sealed segment is read around it and left as it is,
            // so a block of it can still fail its CRC when read.
            Err(_) if allow_holes => {}
            Err(e) => panic!("seq {seq} (held: {held}) of a run that opened cleanly: {e}"),
        }
    }
    // A new record after everything held appends, survives a close, and the run reopens
    // holding it; and inspect then finds nothing that would stop an open.
    if highest < u64::MAX - 1 && !allow_holes {
        let seq = highest + 1;
        j.append(seq, 0, 1, b"fuzz").expect("append after open");
        j.sync().expect("sync");
        j.close().expect("close");
        let (j, _) = Journal::open(config(dir, false)).expect("a run reopens after an append");
        assert!(
            j.contains(seq),
            "seq {seq} appended, synced and closed, is gone"
        );
        drop(j);
        let report = inspect(root).expect("inspect");
        let run = report.run(RUN).expect("the run is still there");
        assert!(run.is_recoverable(), "an open left problems:\n{run}");
    }
}
