//! The appliance's persisted epoch: the state file read at every start.
//!
//! Input: a mode byte, then the text. Mode bit 0 clear: the text is the line's body and
//! the target appends its correct CRC; set: the text is the whole file.

use taphold_journal::record::crc;
use taphold_runtime::epoch::{state_file, take_next, EpochError};

use super::{with_mode, Scratch, MAX_INPUT};
use crate::{Material, Target};

pub const TARGET: Target = Target {
    name: "epoch_file",
    run,
    seeds,
};

const STREAM: u32 = 7;
/// 2026-01-01T00:00:00Z, the captures' clock.
const NOW: u64 = 1_767_225_600;

/// The file `take_next` writes, read back (bodies and whole lines).
fn seeds(_: &Material) -> Vec<Vec<u8>> {
    let scratch = Scratch::new("epoch_seeds");
    let mut lines = Vec::new();
    for now in [1, NOW] {
        drop(take_next(scratch.path(), STREAM, now).expect("an epoch for the seeds"));
        lines.push(std::fs::read(state_file(scratch.path(), STREAM)).expect("epoch file"));
    }
    let bodies = lines
        .iter()
        .map(|l| {
            let l = String::from_utf8_lossy(l);
            l.rsplit_once(" crc32 ").unwrap().0.as_bytes().to_vec()
        })
        .collect();
    let mut s = with_mode(0, bodies);
    s.extend(with_mode(1, lines));
    s
}

pub fn run(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let Some((&mode, text)) = data.split_first() else {
        return;
    };
    let text = if mode & 1 == 0 {
        let Ok(body) = std::str::from_utf8(text) else {
            return;
        };
        format!("{body} crc32 {:08x}\n", crc(body.as_bytes(), &[])).into_bytes()
    } else {
        text.to_vec()
    };
    let scratch = Scratch::new("epoch_file");
    let path = state_file(scratch.path(), STREAM);
    std::fs::write(&path, &text).expect("epoch file");
    match take_next(scratch.path(), STREAM, NOW) {
        Ok(lease) => {
            assert!(lease.epoch > lease.previous && lease.epoch >= NOW);
            let epoch = lease.epoch;
            drop(lease);
            // Strictly larger on every start, even with the clock standing still.
            let next = take_next(scratch.path(), STREAM, NOW).expect("the epoch just written");
            assert_eq!(next.previous, epoch);
            assert!(next.epoch > epoch);
        }
        Err(EpochError::Damaged { .. }) => {
            let now = std::fs::read(&path).expect("the damaged file is still there");
            assert_eq!(now, text, "a damaged epoch file was changed");
        }
        Err(e) => panic!("epoch file: {e}"),
    }
}
