//! The journal through its public API, on real files.

use std::fs;
use std::path::{Path, PathBuf};

use taphold_journal::{
    inspect, inspect_run, read_records, segment_name, Appended, FsyncPolicy, Journal,
    JournalConfig, ProblemKind, RunId, FLOOR_FILE,
};

const RUN: RunId = RunId {
    stream: 1,
    epoch: 7,
};

fn cfg(dir: &Path) -> JournalConfig {
    JournalConfig::new(dir, RUN)
}

/// A payload that differs per seq and in length.
fn pdu(seq: u64) -> Vec<u8> {
    (0..(60 + seq % 40)).map(|i| (i * 7 + seq) as u8).collect()
}

fn append_all(j: &mut Journal, seqs: impl IntoIterator<Item = u64>) {
    for s in seqs {
        assert_eq!(
            j.append(s, 0, s * 10, &pdu(s)).unwrap(),
            Appended::Journaled,
            "seq {s}"
        );
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "journal"))
        .collect();
    v.sort();
    v
}

fn seqs(dir: &Path) -> Vec<u64> {
    read_records(dir).unwrap().iter().map(|r| r.seq).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn round_trip() {
    let t = tempfile::tempdir().unwrap();
    let (mut j, rec) = Journal::open(cfg(t.path())).unwrap();
    assert_eq!(rec.records, 0);
    assert_eq!(rec.segments, 0);
    append_all(&mut j, 1..=100);
    assert_eq!(j.contiguous_seq(), 0, "nothing is synced yet");
    assert_eq!(j.journaled_contiguous_seq(), 100);
    j.sync().unwrap();
    assert_eq!(j.contiguous_seq(), 100);
    assert_eq!(j.durable_seq(), 100);
    j.close().unwrap();

    let recs = read_records(t.path()).unwrap();
    assert_eq!(recs.len(), 100);
    for (i, r) in recs.iter().enumerate() {
        let s = i as u64 + 1;
        assert_eq!(
            (r.seq, r.stream, r.flags, r.timestamp_ns),
            (s, 1, 0, s * 10)
        );
        assert_eq!(r.pdu, pdu(s));
    }
    assert_eq!(segments(t.path()), [t.path().join(segment_name(1))]);

    let (j, rec) = Journal::open(cfg(t.path())).unwrap();
    assert_eq!(rec.records, 100);
    assert_eq!((rec.first_seq, rec.last_seq), (Some(1), Some(100)));
    assert_eq!(rec.torn_bytes_discarded, 0);
    assert_eq!(rec.contiguous_seq, 100);
    assert_eq!(j.contiguous_seq(), 100);
    assert!(inspect_run(t.path(), Some(RUN)).unwrap().is_clean());
}

#[test]
fn recovery_after_truncation_at_every_byte_of_the_last_record() {
    let t = tempfile::tempdir().unwrap();
    let good = t.path().join("good");
    let (mut j, _) = Journal::open(cfg(&good)).unwrap();
    append_all(&mut j, 1..=5);
    j.close().unwrap();
    let seg = segment_name(1);
    let len = fs::metadata(good.join(&seg)).unwrap().len();
    let last_start = read_records(&good).unwrap()[4].offset;

    for cut in last_start..len {
        let d = t.path().join(format!("cut{cut}"));
        copy_dir(&good, &d);
        fs::OpenOptions::new()
            .write(true)
            .open(d.join(&seg))
            .unwrap()
            .set_len(cut)
            .unwrap();
        let before = inspect_run(&d, Some(RUN)).unwrap();
        if cut > last_start {
            assert_eq!(before.problems.len(), 1, "cut {cut}");
            assert_eq!(before.problems[0].kind, ProblemKind::TornTail);
            assert_eq!(before.problems[0].offset, last_start);
            assert!(before.is_recoverable());
        }
        let (mut j, rec) = Journal::open(cfg(&d)).unwrap();
        assert_eq!(rec.records, 4, "cut {cut}");
        assert_eq!(rec.torn_bytes_discarded, cut - last_start, "cut {cut}");
        assert_eq!(rec.last_seq, Some(4));
        assert_eq!(j.contiguous_seq(), 4);
        assert_eq!(fs::metadata(d.join(&seg)).unwrap().len(), last_start);
        assert_eq!(seqs(&d), [1, 2, 3, 4]);
        assert!(inspect_run(&d, Some(RUN)).unwrap().is_clean(), "cut {cut}");
        // The lost record can be journaled again, and the journal stays clean.
        append_all(&mut j, [5]);
        j.close().unwrap();
        assert_eq!(seqs(&d), [1, 2, 3, 4, 5]);
        fs::remove_dir_all(&d).unwrap();
    }
}

#[test]
fn a_corrupt_tail_of_the_last_segment_is_discarded_and_reported() {
    let t = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(cfg(t.path())).unwrap();
    append_all(&mut j, 1..=3);
    j.close().unwrap();
    let recs = read_records(t.path()).unwrap();
    let seg = t.path().join(segment_name(1));
    let mut bytes = fs::read(&seg).unwrap();
    let len = bytes.len() as u64;
    // A flipped payload byte in record 3: its CRC fails.
    bytes[recs[2].offset as usize + 40] ^= 1;
    fs::write(&seg, &bytes).unwrap();
    let (_, rec) = Journal::open(cfg(t.path())).unwrap();
    assert_eq!(rec.records, 2);
    assert_eq!(rec.torn_bytes_discarded, len - recs[2].offset);
    let (file, off, _) = rec.torn_at.clone().unwrap();
    assert_eq!((file, off), (seg, recs[2].offset));
    let msg = rec.to_string();
    assert!(msg.contains("recovered 2 records"), "{msg}");
    assert!(msg.contains("discarded a torn tail of"), "{msg}");
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_an_error_naming_file_and_offset() {
    let t = tempfile::tempdir().unwrap();
    let mut c = cfg(t.path());
    c.segment_bytes = 500;
    let (mut j, _) = Journal::open(c.clone()).unwrap();
    append_all(&mut j, 1..=40);
    j.close().unwrap();
    let segs = segments(t.path());
    assert!(segs.len() > 3, "{segs:?}");
    let victim = &segs[1];
    let recs: Vec<_> = read_records(t.path())
        .unwrap()
        .into_iter()
        .filter(|r| &r.file == victim)
        .collect();
    let target = &recs[recs.len() / 2];
    let mut bytes = fs::read(victim).unwrap();
    bytes[target.offset as usize + 35] ^= 0x80;
    fs::write(victim, &bytes).unwrap();

    let err = Journal::open(c)
        .err()
        .expect("a corrupt sealed segment refuses to open");
    let msg = err.to_string();
    assert!(msg.contains(&victim.display().to_string()), "{msg}");
    assert!(
        msg.contains(&format!("byte offset {}", target.offset)),
        "{msg}"
    );
    // Nothing was changed.
    assert_eq!(fs::read(victim).unwrap(), bytes);
    let r = inspect_run(t.path(), Some(RUN)).unwrap();
    assert!(!r.is_clean() && !r.is_recoverable());
    assert_eq!(r.problems.len(), 1);
    assert_eq!(r.problems[0].kind, ProblemKind::Corrupt);
    assert_eq!(&r.problems[0].file, victim);
    assert_eq!(r.problems[0].offset, target.offset);
    assert!(read_records(t.path()).is_err());
}

#[test]
fn duplicates_out_of_order_and_the_contiguous_point() {
    let t = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(cfg(t.path())).unwrap();
    let order = [3u64, 1, 2, 2, 5, 1, 7, 3, 0];
    let got: Vec<Appended> = order
        .iter()
        .map(|&s| j.append(s, 0, 0, &pdu(s)).unwrap())
        .collect();
    use Appended::*;
    assert_eq!(
        got,
        [
            Journaled, Journaled, Journaled, Duplicate, Journaled, Duplicate, Journaled, Duplicate,
            Duplicate
        ]
    );
    assert_eq!(j.stats().duplicates, 4);
    assert_eq!(j.journaled_contiguous_seq(), 3);
    assert_eq!(j.contiguous_seq(), 0, "not synced");
    j.sync().unwrap();
    assert_eq!(j.contiguous_seq(), 3);
    assert_eq!(j.durable_seq(), 7);
    append_all(&mut j, [4]);
    assert_eq!(j.contiguous_seq(), 3, "4 closes the gap but is not synced");
    j.sync().unwrap();
    assert_eq!(j.contiguous_seq(), 5);
    append_all(&mut j, [6]);
    j.close().unwrap();
    assert_eq!(seqs(t.path()), [3, 1, 2, 5, 7, 4, 6]);

    // Reopened, the journal remembers what it holds.
    let (mut j, rec) = Journal::open(cfg(t.path())).unwrap();
    assert_eq!(rec.contiguous_seq, 7);
    assert_eq!(rec.duplicate_records, 0);
    assert_eq!(j.append(6, 0, 0, &pdu(6)).unwrap(), Duplicate);
    assert_eq!(j.append(8, 0, 0, &pdu(8)).unwrap(), Journaled);
}

#[test]
fn far_ahead_seqs_are_journaled_and_counted_once_the_gap_closes() {
    let t = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(cfg(t.path())).unwrap();
    let far = taphold_journal::window::WINDOW + 10;
    append_all(&mut j, [far, 2]);
    assert_eq!(j.stats().beyond_window, 1);
    append_all(&mut j, 3..far);
    j.sync().unwrap();
    assert_eq!(j.contiguous_seq(), 0);
    append_all(&mut j, [1]);
    j.sync().unwrap();
    assert_eq!(j.contiguous_seq(), far);
    assert_eq!(j.append(far, 0, 0, b"x").unwrap(), Appended::Duplicate);
}

#[test]
fn first_seq_other_than_one() {
    let t = tempfile::tempdir().unwrap();
    let mut c = cfg(t.path());
    c.first_seq = 1000;
    let (mut j, _) = Journal::open(c).unwrap();
    assert_eq!(j.append(999, 0, 0, b"x").unwrap(), Appended::Duplicate);
    append_all(&mut j, [1001, 1000]);
    j.sync().unwrap();
    assert_eq!(j.contiguous_seq(), 1001);
    j.close().unwrap();
    assert_eq!(segments(t.path()), [t.path().join(segment_name(1001))]);
}

#[test]
fn segments_roll_and_names_sort_in_creation_order() {
    let t = tempfile::tempdir().unwrap();
    let mut c = cfg(t.path());
    c.segment_bytes = 1;
    let (mut j, _) = Journal::open(c.clone()).unwrap();
    append_all(&mut j, [100, 50, 101, 7]);
    assert_eq!(j.segment_count(), 4);
    assert_eq!(j.stats().segments_created, 4);
    // Each rollover synced the segment it sealed.
    assert_eq!(j.stats().syncs, 3);
    j.close().unwrap();
    let names: Vec<String> = segments(t.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            segment_name(100),
            segment_name(101),
            segment_name(102),
            segment_name(103)
        ]
    );
    assert_eq!(seqs(t.path()), [100, 50, 101, 7]);
    let (_, rec) = Journal::open(c).unwrap();
    assert_eq!(rec.records, 4);
    assert_eq!(rec.segments, 4);
}

#[test]
fn trim_deletes_whole_sealed_segments_below_the_watermark() {
    let t = tempfile::tempdir().unwrap();
    let mut c = cfg(t.path());
    c.segment_bytes = 400;
    let (mut j, _) = Journal::open(c.clone()).unwrap();
    append_all(&mut j, 1..=60);
    j.sync().unwrap();
    let before = read_records(t.path()).unwrap();
    let n_before = j.segment_count();
    let deleted = j.trim_below(30).unwrap();
    assert!(deleted > 0);
    assert_eq!(j.segment_count(), n_before - deleted);
    assert_eq!(j.stats().segments_trimmed, deleted as u64);
    assert_eq!(
        fs::read_to_string(t.path().join(FLOOR_FILE))
            .unwrap()
            .trim(),
        "30"
    );
    let after = seqs(t.path());
    // Only whole segments below 30 went; every seq >= 30 is still there.
    for r in &before {
        let kept = after.contains(&r.seq);
        let seg_max = before
            .iter()
            .filter(|o| o.file == r.file)
            .map(|o| o.seq)
            .max()
            .unwrap();
        assert_eq!(kept, seg_max >= 30, "seq {}", r.seq);
    }
    // Trimming everything keeps the active segment.
    j.trim_below(u64::MAX).unwrap();
    assert_eq!(j.segment_count(), 1);
    assert!(seqs(t.path()).contains(&60));
    j.close().unwrap();
    let (j, rec) = Journal::open(c).unwrap();
    assert_eq!(rec.floor, Some(61));
    assert_eq!(j.contiguous_seq(), 60);
}

#[test]
fn trim_never_passes_the_contiguous_point_and_reopen_keeps_gaps() {
    let t = tempfile::tempdir().unwrap();
    let mut c = cfg(t.path());
    c.segment_bytes = 300;
    let (mut j, _) = Journal::open(c.clone()).unwrap();
    append_all(&mut j, 1..=20);
    append_all(&mut j, 22..=40); // 21 never arrives
    j.sync().unwrap();
    assert_eq!(j.contiguous_seq(), 20);
    j.trim_below(1000).unwrap();
    assert_eq!(j.floor(), 21, "clamped to contiguous + 1");
    let left = seqs(t.path());
    assert!(left.iter().all(|&s| s >= 21 || left.contains(&20)));
    assert!((22..=40).all(|s| left.contains(&s)));
    j.close().unwrap();
    // The floor says 1..=20 were held; 21 still is not.
    let (mut j, rec) = Journal::open(c).unwrap();
    assert_eq!(rec.contiguous_seq, 20);
    append_all(&mut j, [21]);
    j.sync().unwrap();
    assert_eq!(j.contiguous_seq(), 40);
}

#[test]
fn trim_with_nothing_synced_deletes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let mut c = cfg(t.path());
    c.segment_bytes = 1;
    let (mut j, _) = Journal::open(c).unwrap();
    // Rollover syncs sealed segments, but the contiguous point is 0 until 1 arrives.
    append_all(&mut j, [2, 3, 4]);
    assert_eq!(j.trim_below(100).unwrap(), 0);
    assert!(!t.path().join(FLOOR_FILE).exists());
}

#[test]
fn fsync_policy_counters() {
    let t = tempfile::tempdir().unwrap();
    let mut c = cfg(t.path());
    c.fsync = FsyncPolicy {
        every_records: Some(3),
        every_us: None,
    };
    let (mut j, _) = Journal::open(c).unwrap();
    assert!(!j.maybe_sync(0).unwrap(), "nothing to sync");
    append_all(&mut j, [1]);
    assert!(!j.maybe_sync(1).unwrap());
    append_all(&mut j, [2]);
    assert!(!j.maybe_sync(2).unwrap());
    assert_eq!(j.unsynced_records(), 2);
    assert_eq!(j.contiguous_seq(), 0);
    append_all(&mut j, [3]);
    assert!(j.maybe_sync(3).unwrap());
    assert_eq!(j.contiguous_seq(), 3);
    assert_eq!(j.unsynced_records(), 0);
    assert_eq!((j.stats().syncs, j.stats().policy_syncs), (1, 1));
    // A duplicate is not a record to sync.
    assert_eq!(j.append(3, 0, 0, b"x").unwrap(), Appended::Duplicate);
    assert!(!j.maybe_sync(4).unwrap());

    let t = tempfile::tempdir().unwrap();
    let mut c = cfg(t.path());
    c.fsync = FsyncPolicy {
        every_records: None,
        every_us: Some(100),
    };
    let (mut j, _) = Journal::open(c).unwrap();
    let us = 1000;
    append_all(&mut j, [1]);
    assert!(
        j.maybe_sync(1_000 * us).unwrap(),
        "idle long enough: at once"
    );
    append_all(&mut j, [2]);
    assert!(
        !j.maybe_sync(1_050 * us).unwrap(),
        "50 us after the last sync"
    );
    append_all(&mut j, [3]);
    assert!(!j.maybe_sync(1_099 * us).unwrap());
    assert_eq!(j.contiguous_seq(), 1);
    assert!(
        j.maybe_sync(1_100 * us).unwrap(),
        "100 us after the last sync"
    );
    assert_eq!(j.contiguous_seq(), 3);
    assert_eq!(j.stats().policy_syncs, 2);

    // Neither: only explicit syncs.
    let t = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(cfg(t.path())).unwrap();
    append_all(&mut j, 1..=1000);
    assert!(!j.maybe_sync(u64::MAX).unwrap());
    assert_eq!(j.stats().syncs, 0);
}

#[test]
fn inspect_reports_segments_and_seq_ranges_without_changing_anything() {
    let t = tempfile::tempdir().unwrap();
    let mut c = cfg(t.path());
    c.segment_bytes = 600;
    let (mut j, _) = Journal::open(c).unwrap();
    append_all(&mut j, 1..=30);
    j.close().unwrap();
    let r = inspect_run(t.path(), Some(RUN)).unwrap();
    assert!(r.is_clean(), "{r}");
    assert_eq!(r.records, 30);
    assert_eq!((r.first_seq, r.last_seq), (Some(1), Some(30)));
    assert_eq!(r.segments.len(), segments(t.path()).len());
    assert_eq!(r.segments.iter().map(|s| s.records).sum::<u64>(), 30);
    let text = r.to_string();
    assert!(
        text.contains("30 records") && text.contains("no problems"),
        "{text}"
    );

    // A torn tail: reported, left in place.
    let last = segments(t.path()).pop().unwrap();
    let mut f = fs::OpenOptions::new().append(true).open(&last).unwrap();
    use std::io::Write;
    f.write_all(b"THJ2\0\0").unwrap();
    let len = fs::metadata(&last).unwrap().len();
    let r = inspect_run(t.path(), Some(RUN)).unwrap();
    assert_eq!(r.problems.len(), 1, "{r}");
    assert_eq!(r.problems[0].kind, ProblemKind::TornTail);
    assert_eq!(r.problems[0].offset, len - 6);
    assert_eq!(
        fs::metadata(&last).unwrap().len(),
        len,
        "inspect changes nothing"
    );
}

#[test]
fn bad_segment_names_refuse_to_open() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("12.journal"), b"").unwrap();
    let e = Journal::open(cfg(t.path())).err().unwrap();
    assert!(e.to_string().contains("12.journal"), "{e}");
    let r = inspect_run(t.path(), Some(RUN)).unwrap();
    assert_eq!(r.problems[0].kind, ProblemKind::BadName);
}

#[test]
fn two_epochs_in_one_directory_never_collide() {
    let root = tempfile::tempdir().unwrap();
    let first = RunId {
        stream: 1,
        epoch: 100,
    };
    let second = RunId {
        stream: 1,
        epoch: 101,
    };
    let (mut j, _) = Journal::open(JournalConfig::for_run(root.path(), first)).unwrap();
    append_all(&mut j, 1..=50);
    j.close().unwrap();
    // The next start of the appliance numbers from 1 again: every seq is new here.
    let (mut j, rec) = Journal::open(JournalConfig::for_run(root.path(), second)).unwrap();
    assert_eq!(rec.records, 0, "a new epoch starts an empty run");
    append_all(&mut j, 1..=20);
    j.sync().unwrap();
    assert_eq!(j.contiguous_seq(), 20, "its contiguous point is its own");
    j.close().unwrap();
    // Reopening the first run finds it as it was.
    let (j, rec) = Journal::open(JournalConfig::for_run(root.path(), first)).unwrap();
    assert_eq!(rec.records, 50);
    assert_eq!(j.contiguous_seq(), 50);
    drop(j);

    let r = inspect(root.path()).unwrap();
    assert!(r.is_clean(), "{r}");
    assert_eq!(r.runs.len(), 2);
    assert_eq!(r.run(first).unwrap().records, 50);
    assert_eq!(r.run(second).unwrap().records, 20);
    assert_eq!(r.records(), 70);
    let text = r.to_string();
    assert!(
        text.contains("run stream 1 epoch 100") && text.contains("run stream 1 epoch 101"),
        "{text}"
    );
    let records = read_records(&taphold_journal::run_dir(root.path(), second)).unwrap();
    assert!(records.iter().all(|r| (r.stream, r.epoch) == (1, 101)));
}

#[test]
fn a_record_of_another_run_refuses_the_open_and_is_named_by_inspect() {
    let root = tempfile::tempdir().unwrap();
    let a = RunId {
        stream: 1,
        epoch: 5,
    };
    let b = RunId {
        stream: 1,
        epoch: 6,
    };
    let (mut j, _) = Journal::open(JournalConfig::for_run(root.path(), a)).unwrap();
    append_all(&mut j, 1..=3);
    j.close().unwrap();
    // Someone moves run a's segment into run b's directory.
    let (da, db) = (
        taphold_journal::run_dir(root.path(), a),
        taphold_journal::run_dir(root.path(), b),
    );
    fs::create_dir_all(&db).unwrap();
    fs::rename(da.join(segment_name(1)), db.join(segment_name(1))).unwrap();
    let e = Journal::open(JournalConfig::for_run(root.path(), b))
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("stream 1 epoch 5") && e.to_string().contains("not to this run"),
        "{e}"
    );
    assert!(
        fs::metadata(db.join(segment_name(1))).unwrap().len() > 0,
        "nothing truncated"
    );
    let r = inspect(root.path()).unwrap();
    let rb = r.run(b).unwrap();
    assert_eq!(rb.problems.len(), 3, "{r}");
    assert!(rb
        .problems
        .iter()
        .all(|p| p.kind == ProblemKind::ForeignRecord));
}

#[test]
fn inspect_says_when_a_directory_is_no_journal() {
    let root = tempfile::tempdir().unwrap();
    let r = inspect(root.path()).unwrap();
    assert!(!r.is_clean());
    assert_eq!(r.problems[0].kind, ProblemKind::NoJournal);
    assert!(r.to_string().contains("not a journal"), "{r}");
    // Segments of a journal from before epochs sit in the root: stray.
    fs::write(root.path().join(segment_name(1)), b"THJ1").unwrap();
    let r = inspect(root.path()).unwrap();
    assert!(r.problems.iter().any(|p| p.kind == ProblemKind::Stray));
    assert!(inspect(&root.path().join("absent")).is_err());
}
