//! The backup node through the real binary: captures of what an appliance sends are fed
//! into the link port with net_pcap, everything the node sends back is recorded, and the
//! journal is checked with the library.
//!
//! Runs that start DPDK are serialised (one DPDK process at a time on a 2-core machine).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dpdk::testing::pcap;
use serde_json::Value;
use taphold_journal::{inspect, read_records, run_dir, Journal, JournalConfig, ProblemKind, RunId};
use taphold_wire::digest::DigestKey;
use taphold_wire::ethernet::{emit_header, EtherType, EthernetAddress};
use taphold_wire::taphold::{
    AckRepr, BackupRepr, Content, Flags, HeartbeatRepr, MsgType, Packet, ALL_LINKS,
};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const KEY: &str = "5461706f6c642d64656d6f2d6b657931";
const OURS: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0c, 1]);
const APPLIANCE: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0b, 1]);
const STREAM: u32 = 1;
/// The appliance's epoch in these captures (any value; a real one is UNIX seconds).
const EPOCH: u64 = 1_764_460_800;
const RUN: RunId = RunId {
    stream: STREAM,
    epoch: EPOCH,
};

fn key() -> DigestKey {
    DigestKey::from_hex(KEY).unwrap()
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_taphold-backup")
}

fn frame(dst: EthernetAddress, src: EthernetAddress, pdu: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14 + pdu.len()];
    emit_header(&mut f, dst, src, EtherType::TAPHOLD).unwrap();
    f[14..].copy_from_slice(pdu);
    f
}

fn payload(seq: u64) -> Vec<u8> {
    format!("order {seq} BUY 100 XYZ @ {}", 1000 + seq).into_bytes()
}

fn backup_pdu(seq: u64, stream: u32, watermark: u64, k: &DigestKey) -> Vec<u8> {
    backup_pdu_of(seq, stream, EPOCH, watermark, k)
}

fn backup_pdu_of(seq: u64, stream: u32, epoch: u64, watermark: u64, k: &DigestKey) -> Vec<u8> {
    let p = payload(seq);
    let r = BackupRepr {
        flags: Flags::EMPTY,
        stream,
        epoch,
        seq,
        timestamp_ns: 1_000_000 + seq,
        watermark,
        src_ip: [192, 0, 2, 7],
        src_port: 40000,
        payload_len: p.len() as u16,
        content: Content::Full(&p),
    };
    let mut buf = vec![0u8; r.buffer_len()];
    r.emit(&mut buf, k).unwrap();
    buf
}

fn backup(seq: u64) -> Vec<u8> {
    frame(
        OURS,
        APPLIANCE,
        &backup_pdu(seq, STREAM, seq.saturating_sub(3), &key()),
    )
}

fn heartbeat(link: u8, seq: u64, ts: u64, watermark: u64) -> Vec<u8> {
    heartbeat_of(EPOCH, link, seq, ts, watermark)
}

fn heartbeat_of(epoch: u64, link: u8, seq: u64, ts: u64, watermark: u64) -> Vec<u8> {
    let h = HeartbeatRepr {
        link,
        epoch,
        seq,
        timestamp_ns: ts,
        watermark,
        stream: STREAM,
        echo_seq: 0,
        echo_timestamp_ns: 0,
    };
    let mut buf = vec![0u8; h.buffer_len()];
    h.emit(&mut buf, &key()).unwrap();
    frame(OURS, APPLIANCE, &buf)
}

fn config(journal: &Path, extra: &str) -> String {
    format!(
        "port: net_pcap0\nmac: {OURS}\npeer_mac: {APPLIANCE}\nlink: 0\nstream: {STREAM}\n\
         digest_key: \"{KEY}\"\nheartbeat_period_us: 10000\nidle: backoff\n\
         journal:\n  dir: {}\n  segment_bytes: 65536\n  fsync_every_records: 1\n{extra}",
        journal.display()
    )
}

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("taphold-backup-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn node_command(d: &Path, tag: &str, input: &Path, app: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args([
        "--no-huge",
        "-m",
        "256",
        "--no-pci",
        "-l",
        "0",
        &format!("--file-prefix=taphold-backup-{tag}-{}", std::process::id()),
        "--log-level=*:warning",
        "--vdev",
        &format!(
            "net_pcap0,rx_pcap={},tx_pcap={}",
            input.display(),
            d.join("tx.pcap").display()
        ),
        "--",
        "--config",
        &d.join("backup.yaml").display().to_string(),
    ]);
    c.args(app);
    c
}

/// What the node sent, parsed: acks and heartbeats (every frame must be one).
fn sent(frames: &[Vec<u8>]) -> (Vec<AckRepr>, Vec<HeartbeatRepr>) {
    let (mut acks, mut hbs) = (Vec::new(), Vec::new());
    for f in frames {
        assert!(f.len() >= 60, "padded to 60 bytes");
        assert_eq!(&f[0..6], &APPLIANCE.0, "to the appliance");
        assert_eq!(&f[6..12], &OURS.0, "from us");
        assert_eq!(&f[12..14], &[0x88, 0xB5]);
        let p = Packet::new_checked(&f[14..]).unwrap();
        match p.msg_type() {
            MsgType::Ack => acks.push(AckRepr::parse(&p, &key()).unwrap()),
            MsgType::Heartbeat => hbs.push(HeartbeatRepr::parse(&p, &key()).unwrap()),
            t => panic!("the node sent a {t:?}"),
        }
    }
    (acks, hbs)
}

fn n(v: &Value, path: &str) -> u64 {
    let mut cur = v;
    for p in path.split('.') {
        cur = &cur[p];
    }
    cur.as_u64()
        .unwrap_or_else(|| panic!("{path} missing in {v:#}"))
}

#[test]
fn offline_replay_journals_each_valid_frame_once_acks_and_answers_heartbeats() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = Dir::new("offline");
    let k = key();
    let mut input = vec![heartbeat(0, 7, 111_000, 0)];
    input.extend([1, 2, 3].map(backup));
    input.push(backup(2)); // duplicate
    input.push(backup(5)); // reordered
    input.push(backup(4));
    // Corrupted on the way: one payload bit.
    let mut corrupt = backup(6);
    let last = corrupt.len() - 10;
    corrupt[last] ^= 1;
    input.push(corrupt);
    // Forged: right shape, wrong key.
    let forged_key = DigestKey([0x42; 16]);
    input.push(frame(
        OURS,
        APPLIANCE,
        &backup_pdu(6, STREAM, 0, &forged_key),
    ));
    input.push(backup(6));
    // Foreign frames.
    let other = EthernetAddress([2, 0, 0, 0, 0x0d, 9]);
    input.push(frame(other, APPLIANCE, &backup_pdu(7, STREAM, 0, &k))); // not_for_us
    input.push(frame(OURS, other, &backup_pdu(7, STREAM, 0, &k))); // wrong_peer
    let mut ipv4 = backup(7);
    ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
    input.push(ipv4); // not_taphold
    input.push(vec![0xff; 10]); // runt
    input.push(frame(OURS, APPLIANCE, &backup_pdu(7, 2, 0, &k))); // wrong_stream
    let mut bad_magic = backup(7);
    bad_magic[14] = 0x55;
    input.push(bad_magic); // malformed
    let ack = AckRepr {
        link: 0,
        stream: STREAM,
        epoch: EPOCH,
        seq: 3,
        timestamp_ns: 5,
        watermark: 0,
        records: 3,
    };
    let mut buf = [0u8; 64];
    ack.emit(&mut buf, &k).unwrap();
    input.push(frame(OURS, APPLIANCE, &buf)); // unexpected_type
    input.push(heartbeat(2, 99, 5, 0)); // wrong_link
    let mut rest: Vec<u64> = (7..=20).collect();
    rest.swap(4, 5); // 12 before 11
    input.extend(rest.into_iter().map(backup));
    input.push(backup(20));
    input.push(backup(20));
    input.push(heartbeat(ALL_LINKS, 8, 222_000, 15));

    let in_pcap = d.0.join("in.pcap");
    pcap::write(&in_pcap, &input).unwrap();
    let journal = d.0.join("journal");
    std::fs::write(d.0.join("backup.yaml"), config(&journal, "")).unwrap();
    let stats = d.0.join("stats.json");
    let o = node_command(
        &d.0,
        "offline",
        &in_pcap,
        &[
            "--exit-when-idle-ms",
            "300",
            "--stats-json",
            &stats.display().to_string(),
        ],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{}\n{stdout}\n{stderr}", o.status);
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();

    // The journal: exactly the valid frames, once each, as received.
    let report = inspect(&journal).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.records(), 20);
    assert_eq!(report.runs.len(), 1, "one run: {report}");
    let recs = read_records(&run_dir(&journal, RUN)).unwrap();
    let seqs: Vec<u64> = recs.iter().map(|r| r.seq).collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    assert_eq!(sorted, (1..=20).collect::<Vec<_>>(), "once each: {seqs:?}");
    for r in &recs {
        assert_eq!(
            r.pdu,
            backup(r.seq)[14..],
            "seq {}: the PDU as received",
            r.seq
        );
        assert_eq!((r.stream, r.epoch), (STREAM, EPOCH));
    }

    // Counters by reason.
    assert_eq!(n(&s, "frames_rx"), input.len() as u64);
    assert_eq!(n(&s, "journaled"), 20);
    assert_eq!(n(&s, "duplicates"), 3);
    for (reason, count) in [
        ("bad_digest", 2),
        ("not_for_us", 1),
        ("wrong_peer", 1),
        ("not_taphold", 1),
        ("runt", 1),
        ("wrong_stream", 1),
        ("malformed", 1),
        ("unexpected_type", 1),
        ("wrong_link", 1),
        ("multi_segment", 0),
    ] {
        assert_eq!(
            n(&s, &format!("refused.{reason}")),
            count,
            "{reason}: {s:#}"
        );
    }
    assert_eq!(n(&s, "heartbeats_received"), 2);
    assert_eq!(n(&s, "watermark"), 17);
    assert_eq!(n(&s, "hot_path_allocations"), 0, "the poll loop allocated");

    // What the node sent: cumulative acks up to 20, heartbeats echoing the appliance's.
    let (acks, hbs) = sent(&pcap::read(&d.0.join("tx.pcap")).unwrap());
    assert!(!acks.is_empty());
    assert!(acks.windows(2).all(|w| w[0].seq < w[1].seq), "acks advance");
    let last = acks.last().unwrap();
    assert_eq!(
        (last.seq, last.records, last.link, last.stream, last.epoch),
        (20, 20, 0, STREAM, EPOCH)
    );
    assert!(
        acks.iter().all(|a| a.epoch == EPOCH),
        "acks speak for the run"
    );
    assert!(hbs.iter().all(|h| h.epoch == EPOCH), "as do heartbeats");
    assert_eq!(n(&s, "acks_sent"), acks.len() as u64);
    assert_eq!(n(&s, "last_ack_seq"), 20);
    assert!(hbs.len() >= 2, "{hbs:?}");
    assert_eq!(n(&s, "heartbeats_sent"), hbs.len() as u64);
    assert!(hbs.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    assert_eq!(hbs[0].seq, 1);
    assert!(hbs
        .iter()
        .any(|h| (h.echo_seq, h.echo_timestamp_ns) == (7, 111_000)));
    let last_hb = hbs.last().unwrap();
    assert_eq!((last_hb.echo_seq, last_hb.echo_timestamp_ns), (8, 222_000));
    assert_eq!((last_hb.link, last_hb.watermark), (0, 17));
    // A run of 300 ms idle at a 10 ms period sends periodic heartbeats too.
    assert!(hbs.len() >= 10, "{} heartbeats", hbs.len());

    // A second run over the same journal recovers it, journals nothing again, and acks
    // what it holds at once.
    let o = node_command(&d.0, "offline2", &in_pcap, &["--exit-when-idle-ms", "100"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    let s: Value = serde_json::from_str(&out[out.find("{\n").unwrap()..]).unwrap();
    assert_eq!(n(&s, "journal.recovered_records"), 20);
    assert_eq!(n(&s, "journaled"), 0);
    assert_eq!(n(&s, "duplicates"), 23);
    assert_eq!(read_records(&run_dir(&journal, RUN)).unwrap().len(), 20);
}

/// Runs the node over `input` until idle; returns its summary.
fn run_node(d: &Dir, tag: &str, input: &[Vec<u8>]) -> Value {
    let in_pcap = d.0.join(format!("{tag}.pcap"));
    pcap::write(&in_pcap, input).unwrap();
    let stats = d.0.join(format!("{tag}.json"));
    let o = node_command(
        &d.0,
        tag,
        &in_pcap,
        &[
            "--exit-when-idle-ms",
            "200",
            "--stats-json",
            &stats.display().to_string(),
        ],
    )
    .output()
    .unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::copy(d.0.join("tx.pcap"), d.0.join(format!("{tag}.tx.pcap"))).unwrap();
    serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap()
}

fn export(journal: &Path, extra: &[&str]) -> (String, String, Option<i32>) {
    let o = Command::new(bin())
        .args(["journal", "export", &journal.display().to_string()])
        .args(extra)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.code(),
    )
}

/// The bug: after a restart of the appliance, a journal that already holds the
/// previous run's seqs 1..N took the new run's 1..N for duplicates and stored nothing,
/// while the tap confirmed them. With epochs, every message of the new run is new.
#[test]
fn a_journal_holding_an_earlier_run_journals_every_message_of_the_next() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = Dir::new("epochs");
    let k = key();
    let journal = d.0.join("journal");
    std::fs::write(d.0.join("backup.yaml"), config(&journal, "")).unwrap();
    let first = EPOCH;
    let second = EPOCH + 7;
    let frames = |epoch: u64, seqs: std::ops::RangeInclusive<u64>| -> Vec<Vec<u8>> {
        seqs.map(|s| frame(OURS, APPLIANCE, &backup_pdu_of(s, STREAM, epoch, 0, &k)))
            .collect()
    };

    let s1 = run_node(&d, "run1", &frames(first, 1..=30));
    assert_eq!(n(&s1, "journaled"), 30);
    assert_eq!(n(&s1, "run.epoch"), first);

    // The appliance restarted: a new epoch, seqs from 1 again; the node restarted too
    // (a new process on the same journal). A late frame of the old run comes last.
    let mut input = vec![heartbeat_of(second, 0, 1, 1_000, 0)];
    input.extend(frames(second, 1..=40));
    input.extend(frames(first, 31..=31));
    let s2 = run_node(&d, "run2", &input);
    assert_eq!(
        n(&s2, "journaled"),
        40,
        "every message of the new run: {s2:#}"
    );
    assert_eq!(n(&s2, "duplicates"), 0, "{s2:#}");
    assert_eq!(n(&s2, "refused.stale_epoch"), 1, "{s2:#}");
    assert_eq!(n(&s2, "run.epoch"), second);
    assert_eq!(n(&s2, "journal.recovered_records"), 0, "a run of its own");
    let (acks, hbs) = sent(&pcap::read(&d.0.join("run2.tx.pcap")).unwrap());
    assert!(
        acks.iter().all(|a| a.epoch == second),
        "no ack speaks for the old run's records: {acks:?}"
    );
    assert_eq!(acks.last().unwrap().seq, 40);
    assert!(hbs.iter().all(|h| h.epoch == second || h.epoch == 0));

    // inspect: two runs, each complete.
    let r = inspect(&journal).unwrap();
    assert!(r.is_clean(), "{r}");
    let r1 = r
        .run(RunId {
            stream: STREAM,
            epoch: first,
        })
        .unwrap();
    let r2 = r
        .run(RunId {
            stream: STREAM,
            epoch: second,
        })
        .unwrap();
    assert_eq!(
        (r1.records, r1.first_seq, r1.last_seq),
        (30, Some(1), Some(30))
    );
    assert_eq!(
        (r2.records, r2.first_seq, r2.last_seq),
        (40, Some(1), Some(40))
    );

    // export: both runs, each complete and in order, payloads as sent.
    let (out, err, code) = export(&journal, &[]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<(u64, u64)> = lines.iter().map(|v| (n(v, "epoch"), n(v, "seq"))).collect();
    let want: Vec<(u64, u64)> = (1..=30)
        .map(|s| (first, s))
        .chain((1..=40).map(|s| (second, s)))
        .collect();
    assert_eq!(ids, want);
    use base64::Engine;
    for v in &lines {
        let p = base64::engine::general_purpose::STANDARD
            .decode(v["payload"].as_str().unwrap())
            .unwrap();
        assert_eq!(p, payload(n(v, "seq")));
        assert_eq!(v["src_ip"], "192.0.2.7");
        assert_eq!(n(v, "src_port"), 40000);
        assert_eq!(v["replayable"], true);
        assert_eq!(n(v, "stream"), 1);
    }
    // Filters.
    let (out, _, _) = export(&journal, &["--epoch", &second.to_string(), "--from", "35"]);
    let seqs: Vec<u64> = out
        .lines()
        .map(|l| n(&serde_json::from_str(l).unwrap(), "seq"))
        .collect();
    assert_eq!(seqs, [35, 36, 37, 38, 39, 40]);
    // pcap: as delivered, with the delivery header.
    let pc = d.0.join("export.pcap");
    let (_, err, code) = export(
        &journal,
        &[
            "--epoch",
            &first.to_string(),
            "--format",
            "pcap",
            "--out",
            &pc.display().to_string(),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let delivered = pcap::read(&pc).unwrap();
    assert_eq!(delivered.len(), 30);
    for (i, f) in delivered.iter().enumerate() {
        let h = taphold_wire::delivery::Packet::new_checked(&f[42..]).unwrap();
        assert_eq!((h.epoch(), h.seq()), (first, i as u64 + 1));
        assert_eq!(h.payload(), payload(i as u64 + 1));
    }
    assert!(
        std::fs::read(&pc).unwrap()[..4] == 0xa1b2_3c4du32.to_le_bytes(),
        "ns pcap"
    );
}

/// Frames of a pcap file, tolerating a torn last record (the writer was killed).
fn pcap_frames_tolerant(path: &Path) -> Vec<Vec<u8>> {
    let buf = std::fs::read(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= buf.len() {
        let caplen = u32::from_le_bytes(buf[off + 8..off + 12].try_into().unwrap()) as usize;
        if off + 16 + caplen > buf.len() {
            break;
        }
        out.push(buf[off + 16..off + 16 + caplen].to_vec());
        off += 16 + caplen;
    }
    out
}

#[test]
fn kill_9_mid_stream_loses_nothing_that_was_acked() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = Dir::new("kill");
    const FRAMES: u64 = 60_000;
    let input: Vec<Vec<u8>> = (1..=FRAMES).map(backup).collect();
    let in_pcap = d.0.join("in.pcap");
    pcap::write(&in_pcap, &input).unwrap();
    let journal = d.0.join("journal");
    std::fs::write(d.0.join("backup.yaml"), config(&journal, "")).unwrap();
    let tx = d.0.join("tx.pcap");
    let prefix = format!("taphold-backup-kill-{}", std::process::id());
    let mut child = node_command(&d.0, "kill", &in_pcap, &["--exit-when-idle-ms", "2000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until a good number of acks went out, then kill without warning.
    let t0 = Instant::now();
    loop {
        let len = std::fs::metadata(&tx).map(|m| m.len()).unwrap_or(0);
        if len > 24 + 200 * (16 + 70) {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no acks after 60 s");
        assert!(child.try_wait().unwrap().is_none(), "exited early");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for base in ["/var/run/dpdk", "/run/dpdk"] {
        let _ = std::fs::remove_dir_all(Path::new(base).join(&prefix));
    }

    let (acks, _) = sent(&pcap_frames_tolerant(&tx));
    let acked = acks.iter().map(|a| a.seq).max().unwrap();
    assert!(
        acked > 0 && acked < FRAMES,
        "killed mid-stream: acked {acked}"
    );

    // inspect: clean, or only a torn tail of the last segment.
    let o = Command::new(bin())
        .args(["journal", "inspect", &journal.display().to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let report = inspect(&journal).unwrap();
    assert!(report.is_recoverable(), "{report}");
    assert!(
        report
            .all_problems()
            .all(|p| p.kind == ProblemKind::TornTail),
        "{report}"
    );
    assert_eq!(
        o.status.code(),
        Some(if report.is_clean() { 0 } else { 1 }),
        "{text}"
    );

    // Reopen: recovers cleanly, and every acked seq is there.
    let mut cfg = JournalConfig::for_run(&journal, RUN);
    cfg.segment_bytes = 65536;
    let (j, rec) = Journal::open(cfg).unwrap();
    assert_eq!(rec.duplicate_records, 0);
    assert_eq!(
        rec.tail_cut.is_some(),
        !report.is_clean(),
        "a torn tail is cut, set aside and reported: {rec}"
    );
    assert!(rec.tail_cut.as_ref().is_none_or(|t| t.torn), "{rec}");
    assert!(rec.holes_allowed.is_empty());
    assert!(
        j.contiguous_seq() >= acked,
        "{} < {acked}",
        j.contiguous_seq()
    );
    eprintln!("killed after ack {acked} of {FRAMES} frames; reopened: {rec}");
    drop(j);
    assert!(inspect(&journal).unwrap().is_clean());
    let held: BTreeSet<u64> = read_records(&run_dir(&journal, RUN))
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    for s in 1..=acked {
        assert!(held.contains(&s), "acked seq {s} lost");
    }
}

fn make_journal(dir: &Path) {
    let mut cfg = JournalConfig::for_run(dir, RUN);
    cfg.segment_bytes = 4096;
    let (mut j, _) = Journal::open(cfg).unwrap();
    for s in 1..=200 {
        j.append(s, 0, s, &backup(s)[14..]).unwrap();
    }
    j.close().unwrap();
}

#[test]
fn journal_inspect_exit_code_and_message() {
    let d = Dir::new("inspect");
    let good = d.0.join("good");
    make_journal(&good);
    let o = Command::new(bin())
        .args(["journal", "inspect", &good.display().to_string()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("200 records") && out.contains("no problems"),
        "{out}"
    );

    // A flipped byte in a sealed segment.
    let bad = d.0.join("bad");
    make_journal(&bad);
    let recs = read_records(&run_dir(&bad, RUN)).unwrap();
    let victim = recs[recs.len() / 3].clone();
    let mut bytes = std::fs::read(&victim.file).unwrap();
    bytes[victim.offset as usize + 50] ^= 0x10;
    std::fs::write(&victim.file, &bytes).unwrap();
    let o = Command::new(bin())
        .args(["journal", "inspect", &bad.display().to_string()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let name = victim.file.display().to_string();
    assert!(
        out.contains(&format!("{name}: byte offset {}", victim.offset)),
        "{out}"
    );
    assert!(
        out.contains("CORRUPT") && out.contains("CRC mismatch"),
        "{out}"
    );

    // Usage and unreadable directories: exit 2.
    let o = Command::new(bin())
        .args(["journal", "list"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = Command::new(bin())
        .args(["journal", "inspect", "/nonexistent/journal"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn config_errors_name_field_and_line_before_dpdk_starts() {
    let d = Dir::new("config");
    let input = d.0.join("in.pcap");
    pcap::write(&input, &[]).unwrap();
    let journal = d.0.join("journal");
    let good = config(&journal, "");
    for (edit, want) in [
        (
            good.replace("link: 0", "link: 7"),
            "backup.yaml:4: link: 7 is not a link index",
        ),
        (
            good.replace("  fsync_every_records: 1", "  fsync_evry_records: 1"),
            "backup.yaml:12: journal: unknown field `fsync_evry_records`",
        ),
        (
            good.replace(&format!("peer_mac: {APPLIANCE}"), "peer_mac: nope"),
            "backup.yaml:3: peer_mac: `nope` is not a MAC address",
        ),
    ] {
        assert_ne!(edit, good);
        std::fs::write(d.0.join("backup.yaml"), &edit).unwrap();
        let o = node_command(&d.0, "config", &input, &[]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(want), "want `{want}` in:\n{err}");
    }
}

/// A run of frames 1..=200 in 4096-byte segments, with its third segment deleted.
/// Returns the deleted file and the seqs it held.
fn journal_with_a_deleted_segment(journal: &Path) -> (PathBuf, Vec<u64>) {
    make_journal(journal);
    let dir = run_dir(journal, RUN);
    let recs = read_records(&dir).unwrap();
    let mut files: Vec<PathBuf> = recs.iter().map(|r| r.file.clone()).collect();
    files.dedup();
    assert!(files.len() > 4, "{files:?}");
    let victim = files[2].clone();
    let lost = recs
        .iter()
        .filter(|r| r.file == victim)
        .map(|r| r.seq)
        .collect();
    std::fs::remove_file(&victim).unwrap();
    (victim, lost)
}

#[test]
fn a_run_with_a_deleted_segment_stops_the_node_unless_open_with_holes() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = Dir::new("holes");
    let journal = d.0.join("journal");
    let (victim, lost) = journal_with_a_deleted_segment(&journal);
    // The appliance, still in the same epoch, goes on from 201 (releasing nothing
    // yet, so that no watermark covers the hole).
    let k = key();
    let mut input = vec![heartbeat(0, 1, 1_000, 0)];
    input.extend((201..=210).map(|s| frame(OURS, APPLIANCE, &backup_pdu(s, STREAM, 0, &k))));
    let in_pcap = d.0.join("in.pcap");
    pcap::write(&in_pcap, &input).unwrap();

    std::fs::write(d.0.join("backup.yaml"), config(&journal, "")).unwrap();
    let o = node_command(&d.0, "holes", &in_pcap, &["--exit-when-idle-ms", "200"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&victim.display().to_string())
            && err.contains("MISSING segment")
            && err.contains("journal.open_with_holes: true"),
        "the refusal names the file and the flag:\n{err}"
    );
    assert_eq!(
        read_records(&run_dir(&journal, RUN)).unwrap().len(),
        200 - lost.len()
    );
    // Stopped cleanly for all that: the mbufs of the burst freed, EAL cleaned up.
    assert!(!err.contains("leaking"), "{err}");
    let prefix = format!("taphold-backup-holes-{}", std::process::id());
    for base in ["/var/run/dpdk", "/run/dpdk"] {
        assert!(
            !Path::new(base).join(&prefix).exists(),
            "{base}/{prefix} left behind"
        );
    }

    // With the flag: it opens, journals what comes, and says what is missing.
    std::fs::write(
        d.0.join("backup.yaml"),
        config(&journal, "  open_with_holes: true\n"),
    )
    .unwrap();
    let s = run_node(&d, "holes2", &input);
    assert_eq!(n(&s, "journaled"), 10, "{s:#}");
    assert_eq!(n(&s, "journal.missing_seqs"), lost.len() as u64, "{s:#}");
    let allowed = s["journal"]["holes_allowed"].as_array().unwrap();
    assert_eq!(allowed.len(), 1, "{s:#}");
    assert!(allowed[0].as_str().unwrap().contains("MISSING segment"));
    // The ack stops below the hole.
    assert_eq!(n(&s, "last_ack_seq"), lost[0] - 1, "{s:#}");
    let report = inspect(&journal).unwrap();
    assert!(
        report
            .all_problems()
            .all(|p| p.kind == ProblemKind::MissingSegment),
        "{report}"
    );
    // An export is short of those records, and says so.
    let (out, err, code) = export(&journal, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("MISSING segment") && err.contains(&victim.display().to_string()),
        "{err}"
    );
    assert_eq!(out.lines().count(), 210 - lost.len());
}

#[test]
fn a_watermark_of_u64_max_neither_panics_nor_drops_later_frames() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = Dir::new("wmax");
    let journal = d.0.join("journal");
    std::fs::write(d.0.join("backup.yaml"), config(&journal, "")).unwrap();
    let k = key();
    let mut input = vec![heartbeat(0, 1, 1_000, u64::MAX)];
    input.extend((1..=10).map(backup));
    input.push(frame(
        OURS,
        APPLIANCE,
        &backup_pdu(11, STREAM, u64::MAX, &k),
    ));
    input.push(heartbeat(0, 2, 2_000, 1 << 63));
    input.extend((12..=20).map(backup));
    input.push(heartbeat(0, 3, 3_000, u64::MAX));
    let s = run_node(&d, "wmax", &input);
    assert_eq!(
        n(&s, "journaled"),
        20,
        "every genuine frame journaled: {s:#}"
    );
    assert_eq!(n(&s, "duplicates"), 0, "{s:#}");
    assert_eq!(n(&s, "watermark_absurd"), 4, "{s:#}");
    assert_eq!(n(&s, "watermark"), 17, "the genuine ones: {s:#}");
    assert_eq!(n(&s, "last_ack_seq"), 20, "{s:#}");
    assert_eq!(n(&s, "journal.covered_by_watermark"), 0, "{s:#}");
    let (acks, _) = sent(&pcap::read(&d.0.join("wmax.tx.pcap")).unwrap());
    assert!(
        acks.iter().all(|a| a.seq <= 20),
        "never over-acked: {acks:?}"
    );
}
