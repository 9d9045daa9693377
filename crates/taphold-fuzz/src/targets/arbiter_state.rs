//! The arbiter's state file: a checkpoint line read back at start (and restored into a
//! fresh arbiter), from text or through the state file itself.
//!
//! Input: a mode byte, then the text. Mode bit 0 clear: the text is the line's body and
//! the target appends its correct CRC (so that the fuzzer reaches the fields and the
//! restore); set: the text is the whole file.

use taphold_arbiter::{Checkpoint, OnGap, StateError, StateFile};
use taphold_journal::record::crc;
use taphold_wire::{DeliveryRepr, Flags};

use super::{with_mode, Scratch, MAX_INPUT};
use crate::seeds::RUN;
use crate::{Material, Target};

pub const TARGET: Target = Target {
    name: "arbiter_state",
    run,
    seeds,
};

/// Checkpoints of an arbiter that took the messages' deliveries (through the `arbiter`
/// target's seeds), as bodies and as whole lines.
fn seeds(m: &Material) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    for events in super::arbiter::seeds(m) {
        let mut a = super::arbiter::arbiter(OnGap::Skip);
        super::arbiter::run_on(&mut a, &events);
        lines.push(a.checkpoint().encode());
    }
    let bodies: Vec<Vec<u8>> = lines
        .iter()
        .map(|l| l.rsplit_once(" crc32 ").unwrap().0.as_bytes().to_vec())
        .collect();
    let mut s = with_mode(0, bodies);
    s.extend(with_mode(
        1,
        lines.into_iter().map(String::into_bytes).collect(),
    ));
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
    let decoded = std::str::from_utf8(&text)
        .map_err(|_| "not text".to_string())
        .and_then(|t| Checkpoint::decode(t, RUN.stream));
    if let Ok(cp) = &decoded {
        assert_eq!(
            Checkpoint::decode(&cp.encode(), RUN.stream).as_ref(),
            Ok(cp)
        );
        let mut a = super::arbiter::arbiter(OnGap::Skip);
        if a.restore(cp).is_ok() {
            let mut after = a.checkpoint();
            let mut want = cp.clone();
            after.epochs.sort_by_key(|m| m.epoch);
            want.epochs.sort_by_key(|m| m.epoch);
            assert_eq!(
                after, want,
                "a restored arbiter's checkpoint is not what it was restored from"
            );
            // And it goes on from there: the next seqs of each epoch, and the last one.
            let mut events = Vec::new();
            for m in &cp.epochs {
                for seq in [
                    m.delivered.saturating_add(1),
                    m.delivered.saturating_add(2),
                    u64::MAX,
                ] {
                    let h = DeliveryRepr {
                        flags: Flags::EMPTY,
                        stream: RUN.stream,
                        epoch: m.epoch,
                        seq,
                        src_ip: [192, 0, 2, 11],
                        src_port: 40001,
                        release_ns: 1,
                    };
                    let dg = [&h.to_bytes()[..], b"order"].concat();
                    events.extend(super::arbiter::datagram(0, &dg));
                }
            }
            events.extend(super::arbiter::tick(100));
            super::arbiter::run_on(&mut a, &events);
        }
    }
    // The same bytes as the state file: the same verdict, and a damaged file untouched.
    let scratch = Scratch::new("arbiter_state");
    let path = StateFile::path_in(scratch.path(), RUN.stream);
    std::fs::write(&path, &text).expect("state file");
    match StateFile::open(scratch.path(), RUN.stream) {
        Ok((_, Some(cp))) => assert_eq!(decoded, Ok(cp)),
        Ok((_, None)) => panic!("a state file that exists read as none"),
        Err(StateError::Damaged { .. }) => {
            assert!(decoded.is_err(), "the file refused what decode accepts");
            assert_eq!(
                std::fs::read(&path).unwrap(),
                text,
                "a damaged state file was changed"
            );
        }
        Err(e) => panic!("state file: {e}"),
    }
}
