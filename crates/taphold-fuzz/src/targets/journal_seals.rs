//! The text of a journal run: `seals` lines and segment file names.

use taphold_journal::seals::{Seal, MAX_LINE};
use taphold_journal::{parse_segment_name, segment_name};

use crate::{Material, Target};

pub const TARGET: Target = Target {
    name: "journal_seals",
    run,
    seeds,
};

/// The `seals` file and the segment names of a run the journal wrote.
fn seeds(m: &Material) -> Vec<Vec<u8>> {
    let files = m.journal_run();
    let mut s: Vec<Vec<u8>> = files
        .iter()
        .filter(|(name, _)| name == "seals")
        .map(|(_, b)| b.clone())
        .collect();
    s.push(
        files
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes(),
    );
    s
}

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.split('\n') {
        if let Some(s) = Seal::parse(line) {
            assert!(s.min_seq <= s.max_seq && s.name < s.next);
            let mut buf = [0u8; MAX_LINE];
            let n = s.encode(&mut buf);
            assert_eq!(buf[n - 1], b'\n');
            let again = std::str::from_utf8(&buf[..n - 1]).expect("a seal line is ASCII");
            assert_eq!(Seal::parse(again), Some(s), "{again:?}");
        }
        if let Some(n) = parse_segment_name(line) {
            assert_eq!(segment_name(n), line);
        }
    }
}
