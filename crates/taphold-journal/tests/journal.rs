//! The journal through its public API, on real files.

use std::fs;
use std::path::{Path, PathBuf};

use taphold_journal::seals::SEALS_FILE;
use taphold_journal::{
    inspect, inspect_run, read_records, segment_name, Appended, FsyncPolicy, Journal,
    JournalConfig, ProblemKind, Refused, Report, RunId, FLOOR_FILE,
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
    (0..(60 + seq % 40))
        .map(|i| (i * 7).wrapping_add(seq) as u8)
        .collect()
}

fn append_all(j: &mut Journal, seqs: impl IntoIterator<Item = u64>) {
    for s in seqs {
        assert_eq!(
            j.append(s, 0, s.wrapping_mul(10), &pdu(s)).unwrap(),
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

fn allow(mut c: JournalConfig) -> JournalConfig {
    c.allow_holes = true;
    c
}

fn kinds(r: &Report) -> Vec<ProblemKind> {
    r.problems.iter().map(|p| p.kind).collect()
}

/// A closed run of `seqs` in segments of about `segment_bytes`; its segment files.
fn build(dir: &Path, segment_bytes: u64, seqs: impl IntoIterator<Item = u64>) -> Vec<PathBuf> {
    let mut c = cfg(dir);
    c.segment_bytes = segment_bytes;
    let (mut j, _) = Journal::open(c).unwrap();
    append_all(&mut j, seqs);
    j.close().unwrap();
    segments(dir)
}

/// The seqs of the records in one segment file.
fn seqs_in(dir: &Path, seg: &Path) -> Vec<u64> {
    read_records(dir)
        .unwrap()
        .into_iter()
        .filter(|r| r.file == seg)
        .map(|r| r.seq)
        .collect()
}

/// The refusal inside an open's error, or a panic saying what open did instead.
fn refused(c: JournalConfig) -> Refused {
    match Journal::open(c) {
        Ok((_, rec)) => panic!("opened: {rec}"),
        Err(e) => Refused::of(&e)
            .unwrap_or_else(|| panic!("not a refusal: {e}"))
            .clone(),
    }
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
    assert_eq!(rec.tail_cut, None);
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
        let torn = fs::read(d.join(&seg)).unwrap()[last_start as usize..].to_vec();
        let (mut j, rec) = Journal::open(cfg(&d)).unwrap();
        assert_eq!(rec.records, 4, "cut {cut}");
        match &rec.tail_cut {
            None => assert_eq!(cut, last_start),
            Some(t) => {
                assert_eq!(t.bytes, cut - last_start, "cut {cut}");
                assert!(t.torn && t.offset == last_start, "{t:?}");
                assert_eq!(
                    fs::read(&t.set_aside).unwrap(),
                    torn,
                    "set aside, not deleted"
                );
            }
        }
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
fn a_corrupt_last_record_refuses_unless_holes_are_allowed_and_is_set_aside() {
    let t = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(cfg(t.path())).unwrap();
    append_all(&mut j, 1..=3);
    j.close().unwrap();
    let recs = read_records(t.path()).unwrap();
    let seg = t.path().join(segment_name(1));
    let mut bytes = fs::read(&seg).unwrap();
    // A flipped payload byte in record 3, which is whole: not what a crash leaves,
    // and it may have been synced and acked.
    bytes[recs[2].offset as usize + 40] ^= 1;
    fs::write(&seg, &bytes).unwrap();
    let r = inspect_run(t.path(), Some(RUN)).unwrap();
    assert_eq!(kinds(&r), [ProblemKind::Corrupt], "{r}");
    assert!(!r.is_recoverable() && r.opens_with_holes_allowed());
    let e = Journal::open(cfg(t.path())).err().expect("refused");
    let why = Refused::of(&e).expect("a refusal");
    assert_eq!(why.problems[0].offset, recs[2].offset);
    assert_eq!(fs::read(&seg).unwrap(), bytes, "nothing changed");

    let (_, rec) = Journal::open(allow(cfg(t.path()))).unwrap();
    assert_eq!(rec.records, 2);
    let cut = rec.tail_cut.clone().unwrap();
    assert!(!cut.torn);
    assert_eq!((cut.segment, cut.offset), (seg.clone(), recs[2].offset));
    assert_eq!(
        fs::read(&cut.set_aside).unwrap(),
        &bytes[recs[2].offset as usize..]
    );
    let msg = rec.to_string();
    assert!(
        msg.contains("recovered 2 records") && msg.contains("DAMAGED tail"),
        "{msg}"
    );
    let r = inspect_run(t.path(), Some(RUN)).unwrap();
    assert_eq!(kinds(&r), [ProblemKind::DamagedTail], "{r}");
    assert!(r.is_recoverable(), "set aside: it opens from now on");
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
    let r = inspect_run(t.path(), Some(RUN)).unwrap();
    assert!(r.is_clean(), "trimmed segments are not missing ones: {r}");
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

// ---- Damage: what inspect says, and what open does -------------------------------

#[test]
fn a_middle_segment_truncated_to_zero_is_named_and_refused() {
    let t = tempfile::tempdir().unwrap();
    let segs = build(t.path(), 500, 1..=40);
    assert!(segs.len() >= 4, "{segs:?}");
    let lost = seqs_in(t.path(), &segs[1]);
    fs::File::create(&segs[1]).unwrap(); // truncated to 0 bytes
    let r = inspect_run(t.path(), Some(RUN)).unwrap();
    assert_eq!(kinds(&r), [ProblemKind::EmptySegment], "{r}");
    assert_eq!(r.problems[0].file, segs[1]);
    let (a, b) = (lost[0], *lost.last().unwrap());
    assert_eq!(
        (r.missing.clone(), r.missing_seqs),
        (vec![(a, b)], b - a + 1),
        "{r}"
    );
    let text = r.to_string();
    assert!(
        text.contains("EMPTY sealed segment") && text.contains(&format!("{a}..{b}")),
        "{text}"
    );
    assert!(!r.is_recoverable() && r.opens_with_holes_allowed());

    let why = refused(cfg(t.path()));
    assert_eq!(why.problems.len(), 1);
    assert_eq!(why.problems[0].kind, ProblemKind::EmptySegment);
    let msg = why.to_string();
    assert!(
        msg.contains(&segs[1].display().to_string()) && msg.contains("allow_holes"),
        "{msg}"
    );

    // Allowed: it opens with what is there, says what is missing, acks below it.
    let (mut j, rec) = Journal::open(allow(cfg(t.path()))).unwrap();
    assert_eq!(rec.holes_allowed.len(), 1);
    assert_eq!(
        (rec.missing.clone(), rec.missing_seqs),
        (vec![(a, b)], b - a + 1)
    );
    assert_eq!(j.contiguous_seq(), a - 1);
    assert!(
        rec.to_string().contains("OPENED WITH HOLES ALLOWED"),
        "{rec}"
    );
    append_all(&mut j, [41]);
    j.close().unwrap();
    assert_eq!(
        fs::metadata(&segs[1]).unwrap().len(),
        0,
        "nothing deleted or rewritten"
    );
}

#[test]
fn a_deleted_middle_segment_is_named_and_refused() {
    let t = tempfile::tempdir().unwrap();
    let segs = build(t.path(), 500, 1..=40);
    let lost = seqs_in(t.path(), &segs[2]);
    fs::remove_file(&segs[2]).unwrap();
    let r = inspect_run(t.path(), Some(RUN)).unwrap();
    assert_eq!(kinds(&r), [ProblemKind::MissingSegment], "{r}");
    let p = &r.problems[0];
    assert_eq!(p.file, segs[2]);
    let (a, b) = (lost[0], *lost.last().unwrap());
    assert!(
        p.detail
            .contains(&format!("{} records, seq {a}..{b}", lost.len())),
        "{p}"
    );
    assert_eq!(r.missing, [(a, b)]);
    assert!(p.to_string().contains("MISSING segment"), "{p}");

    let why = refused(cfg(t.path()));
    assert_eq!(why.problems[0].kind, ProblemKind::MissingSegment);
    assert!(why.to_string().contains(&segs[2].display().to_string()));
    let (j, rec) = Journal::open(allow(cfg(t.path()))).unwrap();
    assert_eq!(rec.missing, [(a, b)]);
    assert_eq!(j.contiguous_seq(), a - 1, "never acks over the hole");
    drop(j);
    // Still reported: allowing holes once does not make them go away.
    assert_eq!(
        kinds(&inspect_run(t.path(), Some(RUN)).unwrap()),
        [ProblemKind::MissingSegment]
    );
}

#[test]
fn a_deleted_first_or_active_segment_is_named_too() {
    let t = tempfile::tempdir().unwrap();
    let segs = build(t.path(), 500, 1..=40);
    fs::remove_file(&segs[0]).unwrap();
    let r = inspect_run(t.path(), Some(RUN)).unwrap();
    assert_eq!(kinds(&r), [ProblemKind::MissingSegment], "{r}");
    assert_eq!(r.missing[0].0, 1);
    refused(cfg(t.path()));

    let t = tempfile::tempdir().unwrap();
    let segs = build(t.path(), 500, 1..=40);
    let last = segs.last().unwrap();
    let lost = seqs_in(t.path(), last);
    fs::remove_file(last).unwrap();
    let r = inspect_run(t.path(), Some(RUN)).unwrap();
    assert_eq!(kinds(&r), [ProblemKind::MissingSegment], "{r}");
    assert_eq!(&r.problems[0].file, last);
    assert!(r.problems[0].detail.contains("being written"), "{r}");
    refused(cfg(t.path()));
    // Allowed, it starts a new segment rather than append to a sealed one.
    let (mut j, rec) = Journal::open(allow(cfg(t.path()))).unwrap();
    assert_eq!(rec.last_seq, Some(lost[0] - 1));
    append_all(&mut j, lost.iter().copied());
    j.close().unwrap();
    assert!(seqs(t.path()).ends_with(&lost));
}

#[test]
fn a_byte_flip_mid_file_in_the_last_segment_refuses_and_loses_nothing() {
    let t = tempfile::tempdir().unwrap();
    let segs = build(t.path(), 4000, 1..=60);
    let last = segs.last().unwrap().clone();
    let recs: Vec<_> = read_records(t.path())
        .unwrap()
        .into_iter()
        .filter(|r| r.file == last)
        .collect();
    assert!(recs.len() >= 5, "{}", recs.len());
    let victim = &recs[recs.len() / 2];
    let after = (recs.len() - recs.len() / 2 - 1) as u64;
    let mut bytes = fs::read(&last).unwrap();
    bytes[victim.offset as usize + 50] ^= 0x08;
    fs::write(&last, &bytes).unwrap();

    let r = inspect_run(t.path(), Some(RUN)).unwrap();
    assert_eq!(kinds(&r), [ProblemKind::Corrupt], "{r}");
    let p = &r.problems[0];
    assert_eq!((&p.file, p.offset), (&last, victim.offset));
    assert!(
        p.detail
            .contains(&format!("with {after} valid records after it")),
        "{p}"
    );
    assert_eq!(
        r.missing,
        [(victim.seq, victim.seq)],
        "only the damaged record: {r}"
    );

    // Synced, maybe acked records follow the damage: no cut without permission.
    let why = refused(cfg(t.path()));
    assert_eq!(why.problems[0].offset, victim.offset);
    assert_eq!(fs::read(&last).unwrap(), bytes, "nothing truncated");
    assert!(fs::read_dir(t.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".damaged-")));

    // Allowed: the damaged bytes are set aside, every valid record after them kept.
    let (mut j, rec) = Journal::open(allow(cfg(t.path()))).unwrap();
    let cut = rec.tail_cut.clone().unwrap();
    assert!(!cut.torn && cut.salvaged == after, "{rec}");
    assert_eq!(
        fs::read(&cut.set_aside).unwrap(),
        &bytes[victim.offset as usize..]
    );
    assert_eq!(rec.records, 59);
    assert_eq!(
        (rec.missing.clone(), rec.missing_seqs),
        (vec![(victim.seq, victim.seq)], 1)
    );
    assert_eq!(j.contiguous_seq(), victim.seq - 1);
    // The records written back after the cut moved: they read from where they are.
    for s in 1..=60u64 {
        let got = j.read(s).unwrap().map(|r| r.payload.to_vec());
        assert_eq!(got, (s != victim.seq).then(|| pdu(s)), "seq {s}");
    }
    append_all(&mut j, [victim.seq]);
    assert_eq!(
        j.read(victim.seq).unwrap().unwrap().payload,
        pdu(victim.seq)
    );
    j.sync().unwrap();
    assert_eq!(
        j.contiguous_seq(),
        60,
        "the lost one journaled again closes the gap"
    );
    j.close().unwrap();
    let mut held = seqs(t.path());
    held.sort();
    assert_eq!(held, (1..=60).collect::<Vec<_>>());
    let r = inspect_run(t.path(), Some(RUN)).unwrap();
    assert_eq!(kinds(&r), [ProblemKind::DamagedTail], "{r}");
    assert_eq!(r.missing_seqs, 0);
    assert!(r.is_recoverable());
    Journal::open(cfg(t.path())).expect("opens without the flag now");
}

#[test]
fn a_torn_tail_opens_by_itself_and_is_set_aside() {
    for zeros in [false, true] {
        let t = tempfile::tempdir().unwrap();
        let segs = build(t.path(), 500, 1..=30);
        let last = segs.last().unwrap();
        let len = fs::metadata(last).unwrap().len();
        let torn: Vec<u8> = if zeros {
            vec![0; 300] // an extent allocated, its data never written
        } else {
            let r = read_records(t.path()).unwrap().pop().unwrap();
            // A copy of the last record, cut short.
            fs::read(last).unwrap()[r.offset as usize..][..50].to_vec()
        };
        let mut f = fs::OpenOptions::new().append(true).open(last).unwrap();
        use std::io::Write;
        f.write_all(&torn).unwrap();
        let r = inspect_run(t.path(), Some(RUN)).unwrap();
        assert_eq!(kinds(&r), [ProblemKind::TornTail], "{r}");
        assert!(r.is_recoverable());
        let (_, rec) = Journal::open(cfg(t.path())).unwrap();
        let cut = rec.tail_cut.clone().unwrap();
        assert!(cut.torn && cut.offset == len && cut.bytes == torn.len() as u64);
        assert_eq!(fs::read(&cut.set_aside).unwrap(), torn);
        assert_eq!(rec.records, 30);
        let r = inspect_run(t.path(), Some(RUN)).unwrap();
        assert!(r.is_clean(), "a torn write set aside is no problem: {r}");
        assert_eq!(r.set_aside.len(), 1);
        assert!(r.to_string().contains("a torn write"), "{r}");
    }
}

#[test]
fn an_absurd_trim_floor_is_named_and_refused() {
    for absurd in [u64::MAX, 1_000_000, 42] {
        let t = tempfile::tempdir().unwrap();
        build(t.path(), 500, 1..=40);
        fs::write(t.path().join(FLOOR_FILE), format!("{absurd}\n")).unwrap();
        let r = inspect_run(t.path(), Some(RUN)).unwrap();
        assert_eq!(kinds(&r), [ProblemKind::FloorTooHigh], "{absurd}: {r}");
        assert!(
            r.problems[0]
                .detail
                .contains("highest seq this run ever held (40)"),
            "{r}"
        );
        let why = refused(cfg(t.path()));
        assert_eq!(why.problems[0].kind, ProblemKind::FloorTooHigh);
        assert!(why.to_string().contains(FLOOR_FILE));
        // Allowed, the floor is not believed: the records say what is held.
        let (mut j, rec) = Journal::open(allow(cfg(t.path()))).unwrap();
        assert_eq!((rec.floor, rec.contiguous_seq), (None, 40));
        assert_eq!(j.append(41, 0, 0, b"x").unwrap(), Appended::Journaled);
    }
    // One past the highest seq is what trimming everything writes: fine.
    let t = tempfile::tempdir().unwrap();
    build(t.path(), 500, 1..=40);
    fs::write(t.path().join(FLOOR_FILE), "41\n").unwrap();
    assert!(inspect_run(t.path(), Some(RUN)).unwrap().is_clean());
    let (_, rec) = Journal::open(cfg(t.path())).unwrap();
    assert_eq!(rec.contiguous_seq, 40);
}

#[test]
fn an_empty_directory_is_no_journal_and_opens_as_a_new_run() {
    let root = tempfile::tempdir().unwrap();
    let r = inspect(root.path()).unwrap();
    assert!(!r.is_clean() && !r.is_recoverable());
    assert_eq!(r.problems.len(), 1);
    assert_eq!(r.problems[0].kind, ProblemKind::NoJournal);
    assert!(r.to_string().contains("an empty directory"), "{r}");
    // As a run's directory, empty is a new run with nothing in it.
    let (mut j, rec) = Journal::open(cfg(root.path())).unwrap();
    assert_eq!((rec.records, rec.segments, rec.tail_cut), (0, 0, None));
    append_all(&mut j, [1]);
    j.close().unwrap();
    let (_, rec) = Journal::open(JournalConfig::for_run(root.path(), RUN)).unwrap();
    assert_eq!(rec.records, 0, "the run's own directory, created");
    assert!(inspect(root.path()).unwrap().run(RUN).is_some());
}

#[test]
fn a_directory_or_file_that_is_not_a_journal_says_so() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("notes.txt"), b"hello").unwrap();
    fs::create_dir(root.path().join("stream-x")).unwrap();
    let r = inspect(root.path()).unwrap();
    assert_eq!(r.problems.len(), 1, "{r}");
    assert_eq!(r.problems[0].kind, ProblemKind::NoJournal);
    assert!(
        r.to_string()
            .contains("not a journal: no stream-S/epoch-E run directory here, among 2 entries"),
        "{r}"
    );
    // As a run's directory it is a new, empty run; what else is there is left alone.
    let (j, rec) = Journal::open(cfg(root.path())).unwrap();
    assert_eq!((rec.records, rec.segments), (0, 0));
    drop(j);
    assert_eq!(fs::read(root.path().join("notes.txt")).unwrap(), b"hello");

    // A file: named as one, and no run can be made under it.
    let file = root.path().join("notes.txt");
    let r = inspect(&file).unwrap();
    assert_eq!(r.problems[0].kind, ProblemKind::NoJournal);
    assert!(
        r.to_string().contains("a file, not a journal directory"),
        "{r}"
    );
    assert!(Journal::open(JournalConfig::for_run(&file, RUN)).is_err());
    let seg = root.path().join(segment_name(1));
    fs::write(&seg, b"x").unwrap();
    assert!(inspect(&seg)
        .unwrap()
        .to_string()
        .contains("a segment file, not a journal directory"));

    // One run's directory given instead of the journal's.
    let t = tempfile::tempdir().unwrap();
    let dir = taphold_journal::run_dir(t.path(), RUN);
    build(&dir, 500, 1..=20);
    let r = inspect(&dir).unwrap();
    assert!(
        r.to_string()
            .contains("this looks like one run's directory"),
        "{r}"
    );

    // A segment that is not records at all (text, or a version 1 journal): nothing
    // in it reads, and opening must not cut it away as if it were a torn write.
    for (what, bytes) in [
        (
            "text",
            b"This is not a journal, it is a note long enough to hold a header.\n".to_vec(),
        ),
        ("v1", {
            let mut v = b"THJ1".to_vec();
            v.extend([0u8, 0, 0, 60]);
            v.extend([7u8; 52]);
            v
        }),
    ] {
        let t = tempfile::tempdir().unwrap();
        let seg = t.path().join(segment_name(1));
        fs::write(&seg, &bytes).unwrap();
        let r = inspect_run(t.path(), Some(RUN)).unwrap();
        assert_eq!(kinds(&r), [ProblemKind::Corrupt], "{what}: {r}");
        if what == "v1" {
            assert!(r.to_string().contains("version 1"), "{r}");
        }
        refused(cfg(t.path()));
        assert_eq!(fs::read(&seg).unwrap(), bytes, "{what}: untouched");
    }
}

// ---- Gaps that are not damage: the run opens ---------------------------------------

#[test]
fn frames_lost_right_where_a_segment_starts_are_a_gap_not_damage() {
    // Exactly what deleting a segment would look like by names alone: the segment
    // before is full at 20, the next one starts at 31. The seals say nothing was
    // sealed in between, so nothing is missing from the journal: the link lost them.
    let t = tempfile::tempdir().unwrap();
    let mut c = cfg(t.path());
    c.segment_bytes = 1;
    let (mut j, _) = Journal::open(c.clone()).unwrap();
    append_all(&mut j, 1..=20);
    append_all(&mut j, 31..=40);
    j.close().unwrap();
    assert!(segments(t.path()).contains(&t.path().join(segment_name(31))));
    let r = inspect_run(t.path(), Some(RUN)).unwrap();
    assert!(r.is_clean(), "{r}");
    assert_eq!((r.missing.clone(), r.missing_seqs), (vec![(21, 30)], 10));
    assert!(
        r.to_string()
            .contains("10 seq(s) missing from 1 to 40: 21..30"),
        "{r}"
    );
    let (j, rec) = Journal::open(c).unwrap();
    assert_eq!(
        (rec.missing.clone(), rec.missing_seqs),
        (vec![(21, 30)], 10)
    );
    assert!(rec.holes_allowed.is_empty());
    assert_eq!(j.contiguous_seq(), 20);
}

#[test]
fn a_node_joining_mid_stream_and_trimmed_runs_open_and_inspect_clean() {
    // Records from 5000 on (the watermark covered the rest), trimmed below 5020.
    let t = tempfile::tempdir().unwrap();
    let mut c = cfg(t.path());
    c.segment_bytes = 400;
    let (mut j, _) = Journal::open(c.clone()).unwrap();
    append_all(&mut j, 5000..=5040);
    j.note_released(4999);
    j.sync().unwrap();
    assert_eq!(j.contiguous_seq(), 5040);
    assert!(j.trim_below(5020).unwrap() > 0);
    j.close().unwrap();
    let r = inspect_run(t.path(), Some(RUN)).unwrap();
    assert!(r.is_clean(), "{r}");
    assert_eq!(r.missing_seqs, 0, "nothing missing above the floor: {r}");
    let (j, rec) = Journal::open(c).unwrap();
    assert_eq!(rec.contiguous_seq, 5040);
    assert_eq!(j.contiguous_seq(), 5040);
}

#[test]
fn a_crash_between_creating_a_segment_and_recording_the_seal_recovers() {
    let t = tempfile::tempdir().unwrap();
    let segs = build(t.path(), 500, 1..=40);
    // The last seal line never reached the disk, nor any record of the new segment.
    let seals = t.path().join(SEALS_FILE);
    let text = fs::read_to_string(&seals).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let last_line = lines.pop().unwrap().to_string();
    fs::write(
        &seals,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let last = segs.last().unwrap();
    let lost = seqs_in(t.path(), last);
    fs::File::create(last).unwrap();
    let r = inspect_run(t.path(), Some(RUN)).unwrap();
    assert!(r.is_clean(), "{r}");
    let (_, rec) = Journal::open(cfg(t.path())).unwrap();
    assert_eq!(rec.last_seq, Some(lost[0] - 1));
    assert_eq!(
        fs::read_to_string(&seals).unwrap().lines().last(),
        Some(last_line.as_str()),
        "open wrote the seal"
    );

    // A partial line (a crash while writing it) is ignored and cut.
    let mut f = fs::OpenOptions::new().append(true).open(&seals).unwrap();
    use std::io::Write;
    f.write_all(b"0000000000000000004").unwrap();
    assert!(inspect_run(t.path(), Some(RUN)).unwrap().is_clean());
    Journal::open(cfg(t.path())).unwrap();
    assert!(fs::read_to_string(&seals).unwrap().ends_with('\n'));

    // A lost `seals` file: whether a segment is gone cannot be told any more.
    fs::remove_file(&seals).unwrap();
    let r = inspect_run(t.path(), Some(RUN)).unwrap();
    assert_eq!(kinds(&r), [ProblemKind::BadSeals], "{r}");
    refused(cfg(t.path()));
    Journal::open(allow(cfg(t.path()))).unwrap();
}

#[test]
fn a_sealed_segment_cut_at_a_record_boundary_is_named() {
    let t = tempfile::tempdir().unwrap();
    let segs = build(t.path(), 500, 1..=40);
    let recs: Vec<_> = read_records(t.path())
        .unwrap()
        .into_iter()
        .filter(|r| r.file == segs[1])
        .collect();
    // Cut after its first record: every byte left reads as records.
    let keep = recs[1].offset;
    fs::OpenOptions::new()
        .write(true)
        .open(&segs[1])
        .unwrap()
        .set_len(keep)
        .unwrap();
    let r = inspect_run(t.path(), Some(RUN)).unwrap();
    assert_eq!(kinds(&r), [ProblemKind::ChangedSegment], "{r}");
    assert_eq!(r.missing[0].0, recs[1].seq);
    refused(cfg(t.path()));
}

#[test]
fn released_watermarks_cover_nothing_beyond_what_the_run_holds() {
    let t = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(cfg(t.path())).unwrap();
    // A standby that has seen nothing covers nothing, whatever the watermark.
    j.note_released(u64::MAX);
    assert_eq!((j.contiguous_seq(), j.stats().covered_by_watermark), (0, 0));
    // Frames arrive: journaled, not taken for duplicates; covered up to the highest.
    append_all(&mut j, [100, 101]);
    assert_eq!(j.contiguous_seq(), 101, "1..=99 released, 100 and 101 held");
    assert_eq!(j.stats().covered_by_watermark, 99);
    append_all(&mut j, [150]);
    assert_eq!(j.journaled_contiguous_seq(), 150);
    assert_eq!(j.append(u64::MAX, 0, 0, b"x").unwrap(), Appended::Journaled);
    assert_eq!(j.append(u64::MAX, 0, 0, b"x").unwrap(), Appended::Duplicate);
    j.sync().unwrap();
    j.close().unwrap();
    let (j, _) = Journal::open(cfg(t.path())).unwrap();
    assert_eq!(j.contiguous_seq(), 0, "the watermark is not journaled");
}

#[test]
fn seqs_at_the_top_of_u64_roll_segments_without_overflow() {
    let t = tempfile::tempdir().unwrap();
    let mut c = cfg(t.path());
    c.segment_bytes = 1;
    let (mut j, _) = Journal::open(c.clone()).unwrap();
    append_all(&mut j, [u64::MAX - 1, u64::MAX, 3, 4]);
    // No name sorts after u64::MAX: 3 and 4 went into that segment.
    assert_eq!(j.segment_count(), 2);
    j.note_released(u64::MAX);
    j.sync().unwrap();
    assert_eq!(j.contiguous_seq(), u64::MAX);
    assert_eq!(
        j.trim_below(u64::MAX).unwrap(),
        1,
        "the sealed one, all below"
    );
    assert_eq!(j.floor(), u64::MAX);
    j.close().unwrap();
    let (j, rec) = Journal::open(c).unwrap();
    assert_eq!((rec.records, rec.floor), (3, Some(u64::MAX)));
    assert_eq!(j.contiguous_seq(), u64::MAX);
    assert!(inspect_run(t.path(), Some(RUN)).unwrap().is_clean());
}

// ---- Crafted run directories: no panic, and inspect's verdict is what open does ----

#[test]
fn trim_below_all_lets_a_finished_run_go_to_its_last_segment() {
    let t = tempfile::tempdir().unwrap();
    let mut c = cfg(t.path());
    c.segment_bytes = 2000;
    let (mut j, _) = Journal::open(c.clone()).unwrap();
    append_all(&mut j, 1..=100);
    j.sync().unwrap();
    let n = segments(t.path()).len();
    // Not all of the active segment below the bound: as trim_below.
    let last_first = *seqs_in(t.path(), segments(t.path()).last().unwrap())
        .first()
        .unwrap();
    j.trim_below_all(last_first + 1).unwrap();
    assert_eq!(segments(t.path()).len(), 1);
    assert_eq!(seqs(t.path())[0], last_first);
    // All of it: sealed, an empty segment in its place, and gone.
    assert_eq!(j.trim_below_all(101).unwrap(), 1);
    let left = segments(t.path());
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(fs::metadata(&left[0]).unwrap().len(), 0);
    assert!(seqs(t.path()).is_empty());
    assert_eq!(j.read(100).unwrap(), None);
    assert_eq!(j.records_on_disk(), 0);
    assert!(n > 2);
    j.close().unwrap();
    assert!(inspect_run(t.path(), Some(RUN)).unwrap().is_clean());
    let (mut j, rec) = Journal::open(c).unwrap();
    assert_eq!((rec.records, j.contiguous_seq()), (0, 100));
    // Nothing below it held any more, the run still takes what comes.
    append_all(&mut j, [101]);
    assert_eq!(j.read(101).unwrap().unwrap().payload, pdu(101));
}

/// Every seq of `0..=top + 2` read back: the first record appended of it, or none.
fn reads_as(j: &mut Journal, want: &std::collections::BTreeMap<u64, Vec<u8>>, top: u64) {
    for s in 0..=top + 2 {
        let got = j.read(s).unwrap().map(|r| {
            assert_eq!((r.header.seq, r.header.stream, r.header.epoch), (s, 1, 7));
            r.payload.to_vec()
        });
        assert_eq!(got.as_ref(), want.get(&s), "seq {s}");
    }
}

#[test]
fn every_record_reads_back_by_seq_across_segments_and_blocks() {
    let t = tempfile::tempdir().unwrap();
    let mut c = cfg(t.path());
    // Segments of several blocks each, so that both boundaries are crossed.
    c.segment_bytes = 150_000;
    let (mut j, _) = Journal::open(c.clone()).unwrap();
    // In order, with a hole at 1000..=1009 and some reordering.
    let mut order: Vec<u64> = (1..=4000).filter(|s| !(1000..1010).contains(s)).collect();
    order.swap(10, 20);
    order.swap(2500, 2990);
    append_all(&mut j, order.iter().copied());
    let want: std::collections::BTreeMap<u64, Vec<u8>> =
        order.iter().map(|&s| (s, pdu(s))).collect();
    assert!(segments(t.path()).len() >= 3);
    assert_eq!(j.highest_seq(), 4000);
    // Nothing flushed yet for most of them: read flushes what it needs.
    reads_as(&mut j, &want, 4000);
    let r = j.read(77).unwrap().unwrap();
    assert_eq!((r.header.flags, r.header.timestamp_ns), (0, 770));

    // A range: in seq order, holes and what lies above the highest seq counted.
    let mut got = Vec::new();
    let rr = j
        .read_range(995..=4010, |r| got.push(r.header.seq))
        .unwrap();
    let expect: Vec<u64> = (995..=4000).filter(|s| !(1000..1010).contains(s)).collect();
    assert_eq!(got, expect);
    assert_eq!((rr.found, rr.missing), (expect.len() as u64, 10 + 10));
    let (hi, lo) = (5, 4);
    let rr = j.read_range(hi..=lo, |_| panic!("empty range")).unwrap();
    assert_eq!((rr.found, rr.missing), (0, 0));
    let rr = j.read_range(0..=u64::MAX, |_| {}).unwrap();
    assert_eq!((rr.found, rr.missing), (3990, u64::MAX - 3990));
    j.close().unwrap();

    // Reopened: the index is rebuilt from the files.
    let (mut j, _) = Journal::open(c).unwrap();
    reads_as(&mut j, &want, 4000);
    // Appends after the reopen extend the active segment's last block.
    append_all(&mut j, 1000..1010);
    let mut want = want;
    want.extend((1000..1010).map(|s| (s, pdu(s))));
    reads_as(&mut j, &want, 4000);
}

#[test]
fn a_damaged_or_cut_record_is_an_error_naming_file_and_offset() {
    let t = tempfile::tempdir().unwrap();
    let segs = build(t.path(), 4000, 1..=120);
    let (mut j, _) = Journal::open(cfg(t.path())).unwrap();
    let recs = read_records(t.path()).unwrap();
    let victim = recs.iter().find(|r| r.seq == 30).unwrap().clone();
    assert_ne!(Some(&victim.file), segs.last(), "in a sealed segment");
    // Damaged on disk after the open: the read checks the CRC.
    let mut bytes = fs::read(&victim.file).unwrap();
    bytes[victim.offset as usize + 60] ^= 0x01;
    fs::write(&victim.file, &bytes).unwrap();
    let e = j.read(30).unwrap_err().to_string();
    assert!(
        e.contains(&victim.file.display().to_string())
            && e.contains(&format!("byte offset {}", victim.offset))
            && e.contains("CRC mismatch"),
        "{e}"
    );
    // Another record of that block is refused too: the block is not believed.
    let neighbour = recs
        .iter()
        .find(|r| r.file == victim.file && r.seq != 30)
        .unwrap();
    assert!(j.read(neighbour.seq).is_err());
    // A range stops at the damage with the same error.
    assert!(j.read_range(1..=120, |_| {}).is_err());
    // Records of other segments still read.
    assert_eq!(j.read(120).unwrap().unwrap().payload, pdu(120));

    // A segment cut shorter than what the index holds.
    let other = recs.iter().find(|r| r.seq == 70).unwrap().clone();
    assert_ne!(other.file, victim.file);
    let f = fs::OpenOptions::new()
        .write(true)
        .open(&other.file)
        .unwrap();
    f.set_len(other.offset + 10).unwrap();
    let e = j.read(70).unwrap_err().to_string();
    assert!(
        e.contains(&other.file.display().to_string()) && e.contains("the file ends before"),
        "{e}"
    );
}

#[test]
fn trimmed_and_covered_seqs_read_as_none_and_records_above_counts_what_is_left() {
    let t = tempfile::tempdir().unwrap();
    let mut c = cfg(t.path());
    c.segment_bytes = 2000;
    let (mut j, _) = Journal::open(c.clone()).unwrap();
    append_all(&mut j, (1..=100).filter(|s| *s != 60));
    j.sync().unwrap();
    assert_eq!(j.records_above(0).unwrap(), 99);
    assert_eq!(j.records_above(59).unwrap(), 40);
    assert_eq!(j.records_above(55).unwrap(), 44);
    assert_eq!(j.records_above(100).unwrap(), 0);
    assert!(j.trim_below(50).unwrap() > 0);
    let kept = j.records_on_disk();
    assert_eq!(j.records_above(0).unwrap(), kept);
    let first_kept = (1..=100).find(|&s| j.read(s).unwrap().is_some()).unwrap();
    assert!(first_kept <= 50 && first_kept > 1, "{first_kept}");
    for s in first_kept..=100 {
        assert_eq!(j.read(s).unwrap().is_some(), s != 60, "seq {s}");
    }
    // A watermark covering the hole makes it contiguous, not readable.
    j.note_released(70);
    assert_eq!(j.read(60).unwrap(), None);
    assert_eq!(j.records_above(59).unwrap(), 40);
}

#[test]
fn out_of_order_and_duplicate_records_in_one_block_read_by_seq() {
    let t = tempfile::tempdir().unwrap();
    // Two records of seq 5 on disk, as a crash between a write and its ack leaves
    // them: the first in the file is the one read.
    let mut c = cfg(t.path());
    c.segment_bytes = 1 << 20;
    let (mut j, _) = Journal::open(c.clone()).unwrap();
    append_all(&mut j, [9, 3, 5, 1, 7]);
    j.close().unwrap();
    let mut first = fs::read(t.path().join(segment_name(9))).unwrap();
    let rec5 = read_records(t.path())
        .unwrap()
        .into_iter()
        .find(|r| r.seq == 5)
        .unwrap();
    let mut second = RecordHeaderBytes::of(5, 1, &[0xee; 70]);
    first.append(&mut second);
    fs::write(t.path().join(segment_name(9)), &first).unwrap();
    let (mut j, rec) = Journal::open(c).unwrap();
    assert_eq!(rec.duplicate_records, 1);
    assert_eq!(j.read(5).unwrap().unwrap().payload, rec5.pdu);
    let mut got = Vec::new();
    j.read_range(1..=9, |r| got.push(r.header.seq)).unwrap();
    assert_eq!(got, [1, 3, 5, 7, 9]);
    assert_eq!(j.records_above(4).unwrap(), 4);
}

/// A whole record's bytes, as the journal writes them.
struct RecordHeaderBytes;

impl RecordHeaderBytes {
    fn of(seq: u64, flags: u16, pdu: &[u8]) -> Vec<u8> {
        let h = taphold_journal::record::RecordHeader {
            seq,
            stream: RUN.stream,
            epoch: RUN.epoch,
            flags,
            timestamp_ns: 1,
        }
        .encode(pdu.len());
        [
            &h[..],
            pdu,
            &taphold_journal::record::crc(&h, pdu).to_be_bytes(),
        ]
        .concat()
    }
}

mod random_access {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        /// Any appends (reordered, duplicated, far apart), any segment size, read back
        /// before and after a reopen: each seq reads as the first record appended of it.
        #[test]
        fn reads_match_a_model(
            seqs in proptest::collection::vec(prop_oneof![1u64..300, 70_000u64..70_010], 1..200),
            // Segment rolls fsync: a few per case, not hundreds.
            segment_bytes in prop_oneof![Just(9000u64), Just(200_000u64)],
            reopen in any::<bool>(),
        ) {
            let t = tempfile::tempdir().unwrap();
            let mut c = cfg(t.path());
            c.segment_bytes = segment_bytes;
            let (mut j, _) = Journal::open(c.clone()).unwrap();
            let mut want = BTreeMap::new();
            for &s in &seqs {
                let fresh = j.append(s, 0, s, &pdu(s)).unwrap() == Appended::Journaled;
                prop_assert_eq!(fresh, !want.contains_key(&s));
                want.entry(s).or_insert_with(|| pdu(s));
            }
            if reopen {
                j.close().unwrap();
                j = Journal::open(c).unwrap().0;
            }
            let top = *want.keys().last().unwrap();
            for s in (0..=300).chain(69_998..=70_012) {
                let got = j.read(s).unwrap().map(|r| r.payload.to_vec());
                prop_assert_eq!(got.as_ref(), want.get(&s), "seq {}", s);
            }
            let mut got = Vec::new();
            let rr = j.read_range(0..=top + 5, |r| got.push(r.header.seq)).unwrap();
            prop_assert_eq!(&got, &want.keys().copied().collect::<Vec<_>>());
            prop_assert_eq!(rr.found + rr.missing, top + 6);
            prop_assert_eq!(j.records_above(0).unwrap(), want.len() as u64);
        }
    }
}

mod crafted {
    use super::*;
    use proptest::prelude::*;
    use taphold_journal::record::{crc, RecordHeader};

    #[derive(Debug, Clone)]
    enum Chunk {
        /// A valid record of this run (or, `true`, of another).
        Record(u64, bool),
        /// Bytes that are probably not a record.
        Junk(Vec<u8>),
        /// A record cut short.
        Cut(u64, usize),
    }

    fn record(seq: u64, foreign: bool) -> Vec<u8> {
        let p = pdu(seq);
        let h = RecordHeader {
            seq,
            stream: RUN.stream,
            epoch: if foreign { RUN.epoch + 1 } else { RUN.epoch },
            flags: 0,
            timestamp_ns: seq,
        }
        .encode(p.len());
        [&h[..], &p, &crc(&h, &p).to_be_bytes()].concat()
    }

    fn seq() -> impl Strategy<Value = u64> {
        prop_oneof![1u64..60, (u64::MAX - 3)..=u64::MAX]
    }

    fn chunk() -> impl Strategy<Value = Chunk> {
        prop_oneof![
            6 => (seq(), proptest::bool::weighted(0.05)).prop_map(|(s, f)| Chunk::Record(s, f)),
            1 => proptest::collection::vec(any::<u8>(), 0..60).prop_map(Chunk::Junk),
            1 => (seq(), 0usize..120).prop_map(|(s, n)| Chunk::Cut(s, n)),
        ]
    }

    fn floor() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            seq().prop_map(|f| Some(format!("{f}\n"))),
            any::<u64>().prop_map(|f| Some(format!("{f}\n"))),
            Just(Some("nonsense\n".to_string())),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn crafted_runs_never_panic_and_open_does_what_inspect_says(
            segs in proptest::collection::vec(
                (1u64..4, proptest::collection::vec(chunk(), 0..6)), 0..4),
            floor in floor(),
            seals in prop_oneof![
                Just(None),
                proptest::collection::vec(any::<u8>(), 0..80).prop_map(Some),
            ],
            write_seals in any::<bool>(),
        ) {
            let t = tempfile::tempdir().unwrap();
            let mut name = 0u64;
            let mut seal_lines = String::new();
            let mut prev: Option<(u64, usize)> = None;
            for (step, chunks) in &segs {
                name += step;
                let mut bytes = Vec::new();
                for c in chunks {
                    match c {
                        Chunk::Record(s, f) => bytes.extend(record(*s, *f)),
                        Chunk::Junk(j) => bytes.extend(j),
                        Chunk::Cut(s, n) => {
                            let r = record(*s, false);
                            bytes.extend(&r[..(*n).min(r.len() - 1)]);
                        }
                    }
                }
                if let Some((p, len)) = prev {
                    seal_lines.push_str(&format!("{p:020} {len} 1 1 1 {name:020}\n"));
                }
                prev = Some((name, bytes.len()));
                fs::write(t.path().join(segment_name(name)), &bytes).unwrap();
            }
            if let Some(f) = &floor {
                fs::write(t.path().join(FLOOR_FILE), f).unwrap();
            }
            match (&seals, write_seals) {
                (Some(junk), _) => fs::write(t.path().join(SEALS_FILE), junk).unwrap(),
                (None, true) if !seal_lines.is_empty() => {
                    fs::write(t.path().join(SEALS_FILE), &seal_lines).unwrap()
                }
                _ => {}
            }
            let bytes_before: u64 = segments(t.path())
                .iter()
                .map(|p| fs::metadata(p).unwrap().len())
                .sum();

            let report = inspect_run(t.path(), Some(RUN)).unwrap();
            let _ = report.to_string();
            let _ = inspect(t.path()).unwrap().to_string();
            let plain = Journal::open(cfg(t.path()));
            prop_assert_eq!(plain.is_ok(), report.is_recoverable(), "{}\n{:?}", report, plain.as_ref().err());
            drop(plain);
            let allowed = Journal::open(allow(cfg(t.path())));
            prop_assert_eq!(allowed.is_ok(), report.opens_with_holes_allowed(), "{}\n{:?}", report, allowed.as_ref().err());
            if let Ok((mut j, rec)) = allowed {
                let _ = rec.to_string();
                // Every record that reads from the start of its file reads by seq.
                let (valid, _) = taphold_journal::read_valid_records(t.path()).unwrap();
                for r in &valid {
                    let got = j.read(r.seq).unwrap();
                    prop_assert!(got.is_some(), "seq {} in {}", r.seq, r.file.display());
                }
                j.note_released(u64::MAX);
                j.append(30, 0, 0, &pdu(30)).unwrap();
                j.sync().unwrap();
                j.close().unwrap();
                // Never a byte deleted: what was cut is in a set-aside file.
                let after: u64 = fs::read_dir(t.path())
                    .unwrap()
                    .map(|e| e.unwrap())
                    .filter(|e| e.file_name().to_string_lossy().contains(".journal"))
                    .map(|e| e.metadata().unwrap().len())
                    .sum();
                prop_assert!(after >= bytes_before, "{} < {}", after, bytes_before);
                let again = inspect_run(t.path(), Some(RUN)).unwrap();
                prop_assert!(again.opens_with_holes_allowed(), "{}", again);
            }
        }
    }
}
