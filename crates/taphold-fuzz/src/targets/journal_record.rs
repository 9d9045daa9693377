//! Journal records in a segment's bytes: decode, the scan open and inspect make of a
//! segment, and the salvage that finds records past damage.

use taphold_journal::record::{self, Defect, RecordHeader, OVERHEAD};

use crate::{Material, Target};

pub const TARGET: Target = Target {
    name: "journal_record",
    run,
    seeds,
};

/// The segment files of a run the journal wrote, and the first record of each alone.
fn seeds(m: &Material) -> Vec<Vec<u8>> {
    let mut s = Vec::new();
    for (name, bytes) in m.journal_run() {
        if name.ends_with(".journal") && !bytes.is_empty() {
            if let Ok((_, len)) = record::decode(&bytes, 0) {
                s.push(bytes[..len].to_vec());
            }
            s.push(bytes);
        }
    }
    s
}

pub fn run(data: &[u8]) {
    if let Ok((r, len)) = record::decode(data, 0) {
        assert!(len <= data.len() && len == OVERHEAD + r.payload.len());
        // The record encodes back to its bytes.
        let h: RecordHeader = r.header;
        let mut again = h.encode(r.payload.len()).to_vec();
        again.extend_from_slice(r.payload);
        again
            .extend_from_slice(&record::crc(&again[..record::HEADER_LEN], r.payload).to_be_bytes());
        assert_eq!(again, data[..len], "a record encodes back to other bytes");
        // Every proper prefix is a torn write, never another defect: what open relies on
        // to tell a crash from damage.
        for n in 0..len {
            assert_eq!(
                record::decode(&data[..n], 0).map(|(_, l)| l),
                Err(Defect::Truncated),
                "{n}-byte prefix"
            );
        }
    }

    let mut records = Vec::new();
    let brk = record::scan(data, |r| {
        records.push((r.offset, r.header.seq, r.payload.len()))
    });
    // Records are contiguous from the start of the segment.
    let mut end = 0u64;
    for &(offset, _, payload) in &records {
        assert_eq!(offset, end, "scan skipped bytes");
        end = offset + (OVERHEAD + payload) as u64;
    }
    match brk {
        None => assert_eq!(end, data.len() as u64, "scan stopped early without a break"),
        Some(b) => {
            assert_eq!(b.offset, end, "the break is not where the records stop");
            assert!(b.offset < data.len() as u64);
            let after = record::salvage(data, b.offset as usize + 1, |r| {
                assert!(r.offset > b.offset);
            });
            assert_eq!(after, b.valid_records_after);
            if b.torn {
                assert_eq!(b.valid_records_after, 0);
            }
        }
    }
    // Salvage from the start walks the same records, then what lies past the break.
    let salvaged = record::salvage(data, 0, |_| {});
    let after = brk.map_or(0, |b| b.valid_records_after);
    assert_eq!(salvaged, records.len() as u64 + after);
}
