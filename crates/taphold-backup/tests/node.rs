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
        link: 0,
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
        from_node: false,
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
         digest_key: \"{KEY}\"\nallow_demo_key: true\nheartbeat_period_us: 10000\nidle: backoff\n\
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
    // Forged: right shape, wrong key, naming our key's id (bad_digest); and
    // naming its own (unknown_key).
    let forged_key = DigestKey([0x42; 16]);
    let mut forged = backup_pdu(6, STREAM, 0, &forged_key);
    input.push(frame(OURS, APPLIANCE, &forged));
    forged[4] = k.id();
    input.push(frame(OURS, APPLIANCE, &forged));
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
                                        // Issue 14: a backup frame launched on link 1 (re-sealed, authentic) is not
                                        // link 0's; a heartbeat FROM_NODE (a node's, sent back to it) is reflected.
    let mut other_link = backup(7);
    other_link[14 + 6] = 1;
    Packet::new_unchecked(&mut other_link[14..]).fill_digest(&k);
    input.push(other_link); // wrong_link
    let reflected = HeartbeatRepr {
        link: 0,
        from_node: true,
        epoch: EPOCH,
        seq: 1,
        timestamp_ns: 1,
        watermark: 0,
        stream: STREAM,
        echo_seq: 0,
        echo_timestamp_ns: 0,
    };
    let mut hb = [0u8; 72];
    reflected.emit(&mut hb, &k).unwrap();
    input.push(frame(OURS, APPLIANCE, &hb)); // reflected
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
        ("unknown_key", 1),
        ("not_for_us", 1),
        ("wrong_peer", 1),
        ("not_taphold", 1),
        ("runt", 1),
        ("wrong_stream", 1),
        ("malformed", 1),
        ("unexpected_type", 1),
        ("wrong_link", 2),
        ("reflected", 1),
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
            "backup.yaml:13: journal: unknown field `fsync_evry_records`",
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

// --- The destination side: port D, resend, trimming by confirmation, takeover ---

use std::net::SocketAddrV4;
use taphold_wire::delivery::DeliveryRepr;
use taphold_wire::emit::{emit_udp_headers, Endpoint, UDP_FRAME_HEADER_LEN};
use taphold_wire::taphold::{ResendRepr, TargetConfirmRepr};

const D_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0d, 1]);
const NEXT_HOP: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0e, 1]);
const ARBITER: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0f, 1]);
const D_IP: [u8; 4] = [198, 51, 100, 21];
const D_PORT: u16 = 9300;
const ARBITER_IP: [u8; 4] = [198, 51, 100, 30];
const REPLAY_TO: &str = "198.51.100.30:9200";

/// The destination section (and what goes with it) for `config`.
fn d_config(journal: &Path, journal_extra: &str, extra: &str) -> String {
    config(
        journal,
        &format!(
            "{journal_extra}destination:\n  port: net_pcap1\n  mac: {D_MAC}\n  ip: 198.51.100.21\n  \
             udp_port: {D_PORT}\n  peer_mac: {NEXT_HOP}\n  replay_to: {REPLAY_TO}\n{extra}"
        ),
    )
}

/// The node with its backup link on net_pcap0 and D on net_pcap1 (d_tx.pcap).
fn node_command_d(d: &Path, tag: &str, input: &Path, d_input: &Path, app: &[&str]) -> Command {
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
        "--vdev",
        &format!(
            "net_pcap1,rx_pcap={},tx_pcap={}",
            d_input.display(),
            d.join("d_tx.pcap").display()
        ),
        "--",
        "--config",
        &d.join("backup.yaml").display().to_string(),
    ]);
    c.args(app);
    c
}

fn payload_of(epoch: u64, seq: u64) -> Vec<u8> {
    format!("epoch {epoch} order {seq} SELL {} ABC", 3 * seq).into_bytes()
}

/// A backup PDU of (epoch, seq), full or digest-only, from 192.0.2.7:(40000 + seq).
fn pdu_of(epoch: u64, seq: u64, watermark: u64, digest_only: bool) -> Vec<u8> {
    let k = key();
    let p = payload_of(epoch, seq);
    let r = BackupRepr {
        link: 0,
        flags: Flags::EMPTY,
        stream: STREAM,
        epoch,
        seq,
        timestamp_ns: 7_000_000 + seq,
        watermark,
        src_ip: [192, 0, 2, 7],
        src_port: 40_000 + seq as u16,
        payload_len: p.len() as u16,
        content: if digest_only {
            Content::Digest(k.digest(&p))
        } else {
            Content::Full(&p)
        },
    };
    let mut buf = vec![0u8; r.buffer_len()];
    r.emit(&mut buf, &k).unwrap();
    buf
}

/// A run of `epoch` journaled by the library, as an earlier node process left it.
fn prebuilt_run(journal: &Path, epoch: u64, seqs: impl IntoIterator<Item = u64>, digest: &[u64]) {
    let mut cfg = JournalConfig::for_run(
        journal,
        RunId {
            stream: STREAM,
            epoch,
        },
    );
    cfg.segment_bytes = 4096;
    let (mut j, _) = Journal::open(cfg).unwrap();
    for s in seqs {
        j.append(s, 0, s, &pdu_of(epoch, s, 0, digest.contains(&s)))
            .unwrap();
    }
    j.close().unwrap();
}

/// A UDP datagram from the arbiter (port 9500) to D's `port` carrying `pdu`.
fn to_d(pdu: &[u8], port: u16) -> Vec<u8> {
    let mut f = vec![0u8; UDP_FRAME_HEADER_LEN + pdu.len()];
    f[UDP_FRAME_HEADER_LEN..].copy_from_slice(pdu);
    let from = Endpoint {
        mac: ARBITER,
        ip: ARBITER_IP,
        port: 9500,
    };
    let to = Endpoint {
        mac: D_MAC,
        ip: D_IP,
        port,
    };
    emit_udp_headers(&mut f, &from, &to, pdu.len()).unwrap();
    f
}

fn confirm_with(epoch: u64, seq: u64, k: &DigestKey, stream: u32, port: u16) -> Vec<u8> {
    let c = TargetConfirmRepr {
        stream,
        epoch,
        seq,
        timestamp_ns: 1,
        highest_seen: seq,
        skipped: 0,
    };
    let mut b = vec![0u8; c.buffer_len()];
    c.emit(&mut b, k).unwrap();
    to_d(&b, port)
}

fn confirm(epoch: u64, seq: u64) -> Vec<u8> {
    confirm_with(epoch, seq, &key(), STREAM, D_PORT)
}

fn resend(epoch: u64, seq: u64, count: u32) -> Vec<u8> {
    let r = ResendRepr {
        stream: STREAM,
        epoch,
        seq,
        count,
        timestamp_ns: 2,
        delivered: seq - 1,
    };
    let mut b = vec![0u8; r.buffer_len()];
    r.emit(&mut b, &key()).unwrap();
    to_d(&b, D_PORT)
}

fn arp_request(target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0u8; 42];
    emit_header(&mut f, EthernetAddress::BROADCAST, ARBITER, EtherType::ARP).unwrap();
    taphold_wire::arp::ArpRepr {
        operation: taphold_wire::arp::Operation::Request,
        source_hardware_addr: ARBITER,
        source_protocol_addr: ARBITER_IP,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    }
    .emit(&mut f[14..])
    .unwrap();
    f
}

/// A delivery datagram the node sent on D: the IP/UDP ends, the header, the payload.
#[derive(Debug)]
struct Delivered {
    dst_mac: EthernetAddress,
    from: SocketAddrV4,
    to: SocketAddrV4,
    header: DeliveryRepr,
    payload: Vec<u8>,
}

fn delivered(f: &[u8]) -> Delivered {
    let ip = taphold_wire::ipv4::Packet::new_checked(&f[14..]).unwrap();
    assert!(ip.verify_checksum());
    let udp = taphold_wire::udp::Packet::new_checked(ip.payload()).unwrap();
    assert!(udp.verify_checksum(ip.src_addr(), ip.dst_addr()));
    let d = taphold_wire::delivery::Packet::new_checked(udp.payload()).unwrap();
    Delivered {
        dst_mac: EthernetAddress(f[0..6].try_into().unwrap()),
        from: SocketAddrV4::new(ip.src_addr().into(), udp.src_port()),
        to: SocketAddrV4::new(ip.dst_addr().into(), udp.dst_port()),
        header: DeliveryRepr::parse(&d).unwrap(),
        payload: d.payload().to_vec(),
    }
}

/// Each segment file of run `epoch` and its seqs.
fn layout(journal: &Path, epoch: u64) -> Vec<Vec<u64>> {
    let dir = run_dir(
        journal,
        RunId {
            stream: STREAM,
            epoch,
        },
    );
    let mut files: Vec<(PathBuf, Vec<u64>)> = Vec::new();
    for r in read_records(&dir).unwrap() {
        match files.iter_mut().find(|(f, _)| *f == r.file) {
            Some((_, v)) => v.push(r.seq),
            None => files.push((r.file.clone(), vec![r.seq])),
        }
    }
    files.sort();
    files.into_iter().map(|(_, v)| v).collect()
}

/// What trimming below `bound` leaves of `before`: whole segments below it go,
/// the last one too (a run that takes no more records).
fn left_after(before: &[Vec<u64>], bound: u64) -> Vec<u64> {
    let mut v: Vec<u64> = before
        .iter()
        .filter(|seqs| seqs.iter().any(|&s| s >= bound))
        .flatten()
        .copied()
        .collect();
    v.sort();
    v
}

fn sorted_seqs(journal: &Path, epoch: u64) -> Vec<u64> {
    let mut v: Vec<u64> = layout(journal, epoch).into_iter().flatten().collect();
    v.sort();
    v
}

const EPOCH_A: u64 = EPOCH - 86_400;

#[test]
fn port_d_answers_arp_and_resend_requests_and_trims_only_what_is_confirmed() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = Dir::new("dport");
    let journal = d.0.join("journal");
    // An earlier run, A, on disk: 60 never arrived, 70 journaled digest-only.
    prebuilt_run(&journal, EPOCH_A, (1..=100).filter(|&s| s != 60), &[70]);
    let before_a = layout(&journal, EPOCH_A);
    assert!(before_a.len() > 3);
    // The appliance now, epoch EPOCH, releasing as it goes: under `released` this
    // would be trimmed; under `delivered`, without a confirmation of it, never.
    let mut input = vec![heartbeat(0, 1, 1_000, 0)];
    input.extend((1..=150).map(|s| frame(OURS, APPLIANCE, &pdu_of(EPOCH, s, s - 1, false))));
    let d_input = vec![
        arp_request(D_IP),
        arp_request([198, 51, 100, 99]),
        resend(EPOCH_A, 55, 11),
        resend(EPOCH_A, 68, 5),
        confirm(EPOCH_A, 80),
        confirm_with(EPOCH_A, 100, &DigestKey([7; 16]), STREAM, D_PORT),
        confirm_with(EPOCH_A, 100, &key(), STREAM + 1, D_PORT),
        confirm_with(EPOCH_A, 100, &key(), STREAM, D_PORT + 1),
    ];
    let (in_pcap, d_pcap) = (d.0.join("in.pcap"), d.0.join("d_in.pcap"));
    pcap::write(&in_pcap, &input).unwrap();
    pcap::write(&d_pcap, &d_input).unwrap();
    std::fs::write(
        d.0.join("backup.yaml"),
        d_config(
            &journal,
            "  trim_below: delivered\n  alert_unconfirmed_records: 100\n",
            "trim_interval_ms: 50\n",
        ),
    )
    .unwrap();
    let stats = d.0.join("stats.json");
    let o = node_command_d(
        &d.0,
        "dport",
        &in_pcap,
        &d_pcap,
        &[
            "--exit-when-idle-ms",
            "400",
            "--stats-json",
            &stats.display().to_string(),
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{}\n{stderr}", o.status);
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();

    // What went out on D: the ARP reply, then the answers in order.
    let out = pcap::read(&d.0.join("d_tx.pcap")).unwrap();
    let arp = &out[0];
    assert_eq!(arp.len(), 60, "padded");
    assert_eq!((&arp[0..6], &arp[6..12]), (&ARBITER.0[..], &D_MAC.0[..]));
    assert_eq!(&arp[12..14], &[0x08, 0x06]);
    assert_eq!(&arp[20..22], &[0, 2], "a reply");
    assert_eq!(&arp[28..32], &D_IP);
    let answers: Vec<Delivered> = out[1..].iter().map(|f| delivered(f)).collect();
    let seqs: Vec<u64> = answers.iter().map(|a| a.header.seq).collect();
    let want: Vec<u64> = (55..=65)
        .chain(68..=72)
        .filter(|s| ![60, 70].contains(s))
        .collect();
    assert_eq!(seqs, want);
    for a in &answers {
        let q = a.header.seq;
        assert_eq!(
            a.header,
            DeliveryRepr {
                flags: Flags::RETRANSMIT,
                stream: STREAM,
                epoch: EPOCH_A,
                seq: q,
                src_ip: [192, 0, 2, 7],
                src_port: 40_000 + q as u16,
                release_ns: 7_000_000 + q,
            }
        );
        assert_eq!(a.payload, payload_of(EPOCH_A, q));
        assert_eq!(a.dst_mac, ARBITER, "back where the request came from");
        assert_eq!(a.to, "198.51.100.30:9500".parse().unwrap());
        assert_eq!(a.from, "198.51.100.21:9300".parse().unwrap());
    }
    assert_eq!(n(&s, "resend.requests"), 2);
    assert_eq!(n(&s, "resend.answered"), want.len() as u64);
    assert_eq!(n(&s, "resend.missing"), 1, "60: {s:#}");
    assert_eq!(n(&s, "resend.digest_only"), 1, "70");
    for (k, v) in [
        ("destination.arp_replies", 1),
        ("destination.target_confirms", 1),
        ("destination.refused.unknown_key", 1),
        ("destination.refused.bad_digest", 0),
        ("destination.refused.wrong_stream", 1),
        ("destination.dropped.udp_wrong_port", 1),
        ("destination.dropped.arp_not_for_us", 1),
        ("destination.frames_rx", d_input.len() as u64),
    ] {
        assert_eq!(n(&s, k), v, "{k}: {s:#}");
    }

    // Trimming: run A below its confirmation (81), whole segments; the current run,
    // unconfirmed, untouched however far the primary released.
    assert_eq!(sorted_seqs(&journal, EPOCH_A), left_after(&before_a, 81));
    assert!(sorted_seqs(&journal, EPOCH_A).contains(&81));
    assert_eq!(sorted_seqs(&journal, EPOCH), (1..=150).collect::<Vec<_>>());
    assert_eq!(n(&s, "watermark"), 149);
    let runs = s["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{s:#}");
    assert_eq!(runs[0]["epoch"], EPOCH_A);
    assert_eq!(runs[0]["delivered_through"], 80);
    assert_eq!(runs[1]["current"], true);
    assert_eq!(runs[1]["delivered_through"], Value::Null);
    assert_eq!(runs[1]["unconfirmed_records"], 150);
    let left_a = sorted_seqs(&journal, EPOCH_A);
    assert_eq!(
        runs[0]["unconfirmed_records"],
        left_a.iter().filter(|&&q| q > 80).count() as u64
    );
    assert_eq!(
        n(&s, "journal_total.records"),
        150 + left_a.len() as u64,
        "{s:#}"
    );
    assert_eq!(n(&s, "hot_path_allocations"), 0, "the poll loop allocated");
    // More unconfirmed than alert_unconfirmed_records: ALERT, and nothing deleted.
    assert_eq!(s["alert"]["alerting"], true, "{s:#}");
    assert_eq!(n(&s, "alert.alerts"), 1);
    assert!(
        stderr.contains("ALERT:") && stderr.contains("not confirmed delivered by the destination"),
        "{stderr}"
    );
    // Nothing of D on the backup link, nothing of the backup link on D.
    let (acks, _) = sent(&pcap::read(&d.0.join("tx.pcap")).unwrap());
    assert_eq!(acks.last().unwrap().seq, 150);
}

/// Frames of a pcap file with their timestamps (ns), either resolution.
fn pcap_timed(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let buf = std::fs::read(path).unwrap();
    let magic = u32::from_le_bytes(buf[0..4].try_into().unwrap());
    let scale = if magic == 0xa1b2_3c4d { 1 } else { 1000 };
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= buf.len() {
        let w = |i: usize| u32::from_le_bytes(buf[off + i..off + i + 4].try_into().unwrap());
        let (s, frac, len) = (w(0) as u64, w(4) as u64, w(8) as usize);
        if off + 16 + len > buf.len() {
            break;
        }
        out.push((
            s * 1_000_000_000 + frac * scale,
            buf[off + 16..][..len].to_vec(),
        ));
        off += 16 + len;
    }
    out
}

fn control(what: &str, sock: &Path) -> (Option<i32>, String, String) {
    let o = Command::new(bin())
        .args([what, "--control", &sock.display().to_string()])
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Stops a node with SIGTERM and returns its output.
fn stop(child: std::process::Child) -> std::process::Output {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    child.wait_with_output().unwrap()
}

#[test]
fn takeover_on_command_replays_above_delivered_paced_and_names_what_it_cannot() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = Dir::new("takeover");
    let journal = d.0.join("journal");
    // What the node journaled before the primary died: run A 1..=40, run B 1..=60
    // without 45..=47 (lost on the link) and with 50 digest-only.
    prebuilt_run(&journal, EPOCH_A, 1..=40, &[]);
    prebuilt_run(
        &journal,
        EPOCH,
        (1..=60).filter(|s| !(45..=47).contains(s)),
        &[50],
    );
    let (in_pcap, d_pcap) = (d.0.join("in.pcap"), d.0.join("d_in.pcap"));
    pcap::write(&in_pcap, &[]).unwrap();
    pcap::write(&d_pcap, &[confirm(EPOCH_A, 30), confirm(EPOCH, 20)]).unwrap();
    let sock = d.0.join("c.sock");
    std::fs::write(
        d.0.join("backup.yaml"),
        d_config(
            &journal,
            "",
            &format!(
                "takeover:\n  rate_per_s: 400\ncontrol_socket: {}\n",
                sock.display()
            ),
        ),
    )
    .unwrap();
    let child = node_command_d(
        &d.0,
        "takeover",
        &in_pcap,
        &d_pcap,
        &["--duration-ms", "30000"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let t0 = Instant::now();
    // Up, and the confirmations heard.
    let status = loop {
        assert!(t0.elapsed() < Duration::from_secs(20), "no control socket");
        if sock.exists() {
            let (code, out, err) = control("status", &sock);
            assert_eq!(code, Some(0), "{err}");
            let v: Value = serde_json::from_str(&out).unwrap();
            if v["runs"][1]["delivered_through"] == 20 && v["runs"][0]["delivered_through"] == 30 {
                break v;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status["stopped_by"], Value::Null);
    assert_eq!(status["runs"][0]["epoch"], EPOCH_A);
    assert_eq!(status["runs"][1]["highest_seq"], 60);
    assert_eq!(status["takeover"], Value::Null);

    // A command it does not know: a clear error, and the node is still there.
    let mut raw = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    use std::io::{Read, Write};
    raw.write_all(b"take over please\n").unwrap();
    let mut reply = String::new();
    raw.read_to_string(&mut reply).unwrap();
    let v: Value = serde_json::from_str(&reply).unwrap();
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains("unknown command `take over please`") && e.contains("`takeover`"),
        "{e}"
    );

    // The takeover: the reply is the report, once the replay is done.
    let asked = Instant::now();
    let (code, out, err) = control("takeover", &sock);
    let took = asked.elapsed();
    assert_eq!(code, Some(0), "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    let r = &r["takeover"];
    assert_eq!(r["state"], "done", "{r:#}");
    assert_eq!(r["trigger"], "command");
    assert_eq!(r["replay_to"], REPLAY_TO);
    assert_eq!(r["replayed"], 10 + 36);
    assert_eq!(r["unreplayable_seqs"], 4);
    let (ra, rb) = (&r["runs"][0], &r["runs"][1]);
    assert_eq!(
        (ra["epoch"].as_u64(), ra["from"].as_u64()),
        (Some(EPOCH_A), Some(31))
    );
    assert_eq!(
        (
            ra["replayed"].as_u64(),
            ra["first_seq"].as_u64(),
            ra["last_seq"].as_u64()
        ),
        (Some(10), Some(31), Some(40))
    );
    assert_eq!(ra["unreplayable"].as_array().unwrap().len(), 0);
    assert_eq!(
        (
            rb["replayed"].as_u64(),
            rb["first_seq"].as_u64(),
            rb["last_seq"].as_u64()
        ),
        (Some(36), Some(21), Some(60))
    );
    let listed: Vec<(u64, u64, &str, Value)> = rb["unreplayable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["from"].as_u64().unwrap(),
                u["to"].as_u64().unwrap(),
                u["reason"].as_str().unwrap(),
                u["src"].clone(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (45, 47, "not_received", Value::Null),
            (50, 50, "digest_only", Value::from("192.0.2.7:40050")),
        ]
    );
    // Paced: 46 at 400/s take at least 45/400 s.
    assert!(took >= Duration::from_millis(45 * 1000 / 400), "{took:?}");
    assert!(
        r["replay_ms"].as_f64().unwrap() >= 45.0 * 1000.0 / 400.0,
        "{r:#}"
    );
    // A second takeover is allowed once the first is done (the arbiter drops
    // duplicates); status now carries the report.
    let (_, out, _) = control("status", &sock);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["takeover"]["replayed"], 46);

    let o = stop(child);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(
        log.contains(
            "CANNOT replay 4 seq(s): 45..47 (not received), 50 (digest only, from 192.0.2.7:40050)"
        ),
        "{log}"
    );
    assert!(!sock.exists(), "the socket is removed at exit");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let summary: Value = serde_json::from_str(&stdout[stdout.find("{\n").unwrap()..]).unwrap();
    assert_eq!(summary["takeover"]["replayed"], 46);
    assert_eq!(n(&summary, "hot_path_allocations"), 0);

    // On D: exactly the seqs above delivered that can be, in order, flagged
    // POSSIBLE_DUPLICATE, to replay_to through the next hop, paced.
    let out = pcap_timed(&d.0.join("d_tx.pcap"));
    let got: Vec<(u64, u64)> = out
        .iter()
        .map(|(_, f)| {
            let x = delivered(f);
            assert_eq!(x.header.flags, Flags::POSSIBLE_DUPLICATE);
            assert_eq!(x.payload, payload_of(x.header.epoch, x.header.seq));
            assert_eq!(x.header.src_port, 40_000 + x.header.seq as u16);
            assert_eq!(x.dst_mac, NEXT_HOP);
            assert_eq!(x.to, REPLAY_TO.parse().unwrap());
            (x.header.epoch, x.header.seq)
        })
        .collect();
    let want: Vec<(u64, u64)> = (31..=40)
        .map(|q| (EPOCH_A, q))
        .chain(
            (21..=60)
                .filter(|q| !(45..=47).contains(q) && *q != 50)
                .map(|q| (EPOCH, q)),
        )
        .collect();
    assert_eq!(got, want);
    let span = out.last().unwrap().0 - out[0].0;
    assert!(
        span >= 40 * 1_000_000_000 / 400,
        "{span} ns for 46 at 400/s"
    );

    // No node there: exit 2, and says so.
    let (code, _, err) = control("status", &d.0.join("none.sock"));
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot reach the node"), "{err}");
    let o = Command::new(bin()).args(["takeover"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs --control PATH"));
}

#[test]
fn the_node_takes_over_on_its_own_once_the_primary_falls_silent() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = Dir::new("auto");
    let journal = d.0.join("journal");
    let mut input = vec![heartbeat(0, 1, 1_000, 0)];
    input.extend((1..=30).map(|s| frame(OURS, APPLIANCE, &pdu_of(EPOCH, s, 0, false))));
    let (in_pcap, d_pcap) = (d.0.join("in.pcap"), d.0.join("d_in.pcap"));
    pcap::write(&in_pcap, &input).unwrap();
    // The destination confirmed 10 (it may come before the run is open: counted).
    pcap::write(&d_pcap, &[confirm(EPOCH, 10)]).unwrap();
    std::fs::write(
        d.0.join("backup.yaml"),
        d_config(
            &journal,
            "",
            "takeover:\n  rate_per_s: 2000\n  auto_after_ms: 300\n",
        ),
    )
    .unwrap();
    let stats = d.0.join("stats.json");
    let t0 = Instant::now();
    let o = node_command_d(
        &d.0,
        "auto",
        &in_pcap,
        &d_pcap,
        &[
            "--exit-when-idle-ms",
            "600",
            "--stats-json",
            &stats.display().to_string(),
        ],
    )
    .output()
    .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    assert!(t0.elapsed() >= Duration::from_millis(300));
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let r = &s["takeover"];
    assert_eq!(r["trigger"], "auto", "{s:#}");
    assert_eq!(r["state"], "done");
    assert_eq!(r["replayed"], 20);
    assert_eq!(r["runs"][0]["first_seq"], 11);
    assert_eq!(r["runs"][0]["last_seq"], 30);
    assert!(
        log.contains("TAKEOVER (auto)") && log.contains("fence it"),
        "{log}"
    );
    let seqs: Vec<u64> = pcap::read(&d.0.join("d_tx.pcap"))
        .unwrap()
        .iter()
        .map(|f| {
            let x = delivered(f);
            assert_eq!(x.header.flags, Flags::POSSIBLE_DUPLICATE);
            x.header.seq
        })
        .collect();
    assert_eq!(seqs, (11..=30).collect::<Vec<_>>(), "once, in order");
    // The primary was silent at least auto_after_ms before it fired.
    let heard = s["primary"]["last_heard_ns"].as_u64().unwrap();
    assert!(
        r["started_ns"].as_u64().unwrap() - heard >= 300_000_000,
        "{r:#}"
    );
}

#[test]
fn destination_config_errors_name_field_and_line_before_dpdk_starts() {
    let d = Dir::new("dconfig");
    let input = d.0.join("in.pcap");
    pcap::write(&input, &[]).unwrap();
    let journal = d.0.join("journal");
    let good = d_config(&journal, "  trim_below: delivered\n", "");
    let line =
        |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let no_dest = config(&journal, "  trim_below: delivered\n");
    for (text, want) in [
        (
            no_dest.clone(),
            format!(
                "backup.yaml:{}: journal.trim_below: `delivered`",
                line(&no_dest, "trim_below")
            ),
        ),
        (
            good.replace("replay_to: 198.51.100.30:9200", "replay_to: nowhere"),
            format!(
                "backup.yaml:{}: destination.replay_to:",
                line(&good, "replay_to")
            ),
        ),
        (
            good.replace("ip: 198.51.100.21", "ip: 224.0.0.1"),
            format!(
                "backup.yaml:{}: destination.ip: 224.0.0.1 cannot be our address",
                line(&good, "ip: 198")
            ),
        ),
        (
            format!("{good}takeover:\n  rate_per_s: 0\n"),
            format!(
                "backup.yaml:{}: takeover.rate_per_s: 0 is not a rate",
                good.lines().count() + 2
            ),
        ),
    ] {
        std::fs::write(d.0.join("backup.yaml"), &text).unwrap();
        // Bounded, so that a config wrongly accepted fails here instead of hanging.
        let o = node_command(&d.0, "dconfig", &input, &["--duration-ms", "2000"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(&want), "want `{want}` in:\n{err}");
    }
}

/// While the node runs, its state is read through rte_telemetry and the
/// Prometheus endpoint, and what they say is what its exit summary says.
#[test]
fn live_state_through_telemetry_and_metrics_matches_the_summary() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = Dir::new("live");
    std::fs::write(
        d.0.join("backup.yaml"),
        config(&d.0.join("journal"), "stats_interval_ms: 100\n"),
    )
    .unwrap();
    let input: Vec<Vec<u8>> = (1..=50).map(backup).collect();
    let in_pcap = d.0.join("in.pcap");
    pcap::write(&in_pcap, &input).unwrap();
    let stats = d.0.join("stats.json");
    let prefix = format!("taphold-backup-live-{}", std::process::id());
    let mut child = node_command(
        &d.0,
        "live",
        &in_pcap,
        &[
            "--duration-ms",
            "4000",
            "--metrics-listen",
            "127.0.0.1:0",
            "--stats-json",
            &stats.display().to_string(),
        ],
    )
    .env("RUST_LOG", "info")
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    let mut line = String::new();
    while addr.is_none() {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut err, &mut line).unwrap() > 0,
            "the node exited before serving metrics"
        );
        addr = line
            .split("metrics on http://")
            .nth(1)
            .and_then(|r| r.split("/metrics").next())
            .map(str::to_string);
    }
    let addr = addr.unwrap();
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    // The status is published every stats interval (100 ms here).
    let deadline = Instant::now() + Duration::from_secs(3);
    let live = loop {
        let text = dpdk::testing::telemetry::query(&prefix, "/taphold_backup/stats").unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let st = v["/taphold_backup/stats"].clone();
        if st["journaled"].as_u64() == Some(50) {
            break st;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let journal: Value = serde_json::from_str(
        &dpdk::testing::telemetry::query(&prefix, "/taphold_backup/journal").unwrap(),
    )
    .unwrap();
    let metrics = {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let sum: Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(live["journaled"], sum["journaled"]);
    assert_eq!(live["backup_frames"], sum["backup_frames"]);
    assert_eq!(
        journal["/taphold_backup/journal"]["current_records"], sum["journal"]["records"],
        "{journal:#}"
    );
    let body = metrics.split_once("\r\n\r\n").unwrap().1;
    let scraped = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let journaled = scraped
        .samples
        .iter()
        .find(|s| s.metric == "taphold_backup_journaled")
        .unwrap_or_else(|| panic!("{body}"));
    assert!(
        matches!(journaled.value, prometheus_parse::Value::Untyped(v) if v == 50.0),
        "{:?}",
        journaled.value
    );
}

/// Gateway mode: FIX orders as TCP segments (content mode 2) of one flow, each followed
/// by the appliance's flow ack of the exchange's acknowledgement one order behind.
/// Returns the frames and where each order starts in the flow (`at[k]`: order k+1).
fn gateway_capture(orders: u32) -> (Vec<Vec<u8>>, Vec<u32>) {
    use taphold_wire::taphold::{FlowAckRepr, TcpSegmentRepr};
    let k = key();
    let fix = |n: u32| -> Vec<u8> {
        let body = format!(
            "35=D\u{1}34={n}\u{1}49=ENGINE\u{1}52=20261130-07:38:48.000\u{1}56=EXCH\u{1}11=C{n}\u{1}38=10\u{1}40=2\u{1}44=9.5\u{1}54=1\u{1}55=IBM\u{1}59=0\u{1}"
        );
        let mut m = format!("8=FIX.4.2\u{1}9={}\u{1}{body}", body.len()).into_bytes();
        let ck = m.iter().fold(0u32, |a, &b| a + u32::from(b)) % 256;
        m.extend_from_slice(format!("10={ck:03}\u{1}").as_bytes());
        m
    };
    let mut at = vec![u32::MAX - 5_000]; // wraps on the way
    let mut frames = vec![heartbeat(0, 1, 1, 0)];
    for n in 1..=orders {
        let m = fix(n);
        let tcp_seq = *at.last().unwrap();
        at.push(tcp_seq.wrapping_add(m.len() as u32));
        let seg = TcpSegmentRepr {
            src_ip: [10, 1, 0, 2],
            src_port: 40000,
            payload_len: m.len() as u16,
            dst_ip: [10, 2, 0, 2],
            dst_port: 9878,
            tcp_flags: 0x18,
            tcp_seq,
            content: &m,
        };
        let b = BackupRepr {
            link: 0,
            flags: Flags::EMPTY,
            stream: STREAM,
            epoch: EPOCH,
            seq: u64::from(n),
            timestamp_ns: u64::from(n),
            watermark: 0,
            src_ip: [10, 1, 0, 2],
            src_port: 40000,
            payload_len: m.len() as u16,
            content: Content::Tcp(seg),
        };
        let mut buf = vec![0u8; b.buffer_len()];
        b.emit(&mut buf, &k).unwrap();
        frames.push(frame(OURS, APPLIANCE, &buf));
        let a = FlowAckRepr {
            link: 0,
            stream: STREAM,
            epoch: EPOCH,
            seq: u64::from(n),
            timestamp_ns: u64::from(n),
            watermark: 0,
            src_ip: [10, 1, 0, 2],
            src_port: 40000,
            dst_ip: [10, 2, 0, 2],
            dst_port: 9878,
            acked: at[at.len() - 2], // the end of the order before
        };
        let mut buf = vec![0u8; a.buffer_len()];
        a.emit(&mut buf, &k).unwrap();
        frames.push(frame(OURS, APPLIANCE, &buf));
    }
    (frames, at)
}

/// The highest acked the node kept for the gateway flow (flow-acks, as documented).
fn kept_acked(journal: &Path) -> Option<u32> {
    let b = std::fs::read(run_dir(journal, RUN).join("flow-acks")).ok()?;
    b.chunks_exact(20)
        .map(|r| u32::from_be_bytes([r[12], r[13], r[14], r[15]]))
        .next_back()
}

#[test]
fn flow_acks_are_counted_kept_and_survive_kill_9() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // A clean run: every flow ack counted, the last one kept.
    let d = Dir::new("flowack");
    let journal = d.0.join("journal");
    std::fs::write(d.0.join("backup.yaml"), config(&journal, "")).unwrap();
    let (frames, at) = gateway_capture(50);
    let s = run_node(&d, "clean", &frames);
    assert_eq!(n(&s, "flow_acks"), 50);
    // Each one advanced (the first names the flow), so each was written.
    assert_eq!(n(&s, "flow_acks_advanced"), 50);
    assert_eq!(n(&s, "journaled"), 50);
    assert_eq!(kept_acked(&journal), Some(at[49]));
    let o = Command::new(bin())
        .args([
            "recover",
            &journal.display().to_string(),
            "--flow",
            "10.1.0.2:40000-10.2.0.2:9878",
            "--decode",
            "fix",
        ])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let unacked: Vec<u64> = v
        .iter()
        .filter(|x| x["acknowledged"] == false)
        .map(|x| x["msg_seq_num"].as_u64().unwrap())
        .collect();
    assert_eq!(unacked, [50], "only the last order was never acknowledged");
    drop(d);

    // kill -9 mid-stream: every flow ack before the last acked backup frame is on disk.
    let d = Dir::new("flowack-kill");
    let journal = d.0.join("journal");
    std::fs::write(d.0.join("backup.yaml"), config(&journal, "")).unwrap();
    const ORDERS: u32 = 20_000;
    let (frames, at) = gateway_capture(ORDERS);
    let in_pcap = d.0.join("in.pcap");
    pcap::write(&in_pcap, &frames).unwrap();
    let tx = d.0.join("tx.pcap");
    let prefix = format!("taphold-backup-flowkill-{}", std::process::id());
    let mut child = node_command(&d.0, "flowkill", &in_pcap, &["--exit-when-idle-ms", "2000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
    let acked_seq = acks.iter().map(|a| a.seq).max().unwrap();
    assert!(
        acked_seq > 2 && acked_seq < u64::from(ORDERS),
        "killed mid-stream: {acked_seq}"
    );
    // Backup frame `acked_seq` followed flow ack `acked_seq - 1` (acked = the end of
    // order acked_seq - 2): synced no later than the journal that acked it.
    let kept = kept_acked(&journal).expect("flow-acks kept");
    let want = at[acked_seq as usize - 2];
    let offset = |x: u32| x.wrapping_sub(at[0]);
    assert!(
        offset(kept) >= offset(want),
        "kept {kept} < {want} (ack {acked_seq})"
    );
    eprintln!("killed after ack {acked_seq}; flow acks kept up to {kept}");
    // And `journal flows` reads it back as that flow's acked.
    let o = Command::new(bin())
        .args(["journal", "flows", &journal.display().to_string()])
        .output()
        .unwrap();
    let v: Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(v["acked"], kept);
}

/// Issue 14: a node given a key that is not the appliance's refuses every frame
/// and says so loudly: an ALERT (`wrong_key`) after a few in a row, counted in the
/// summary, not only a `bad_digest` count.
#[test]
fn a_wrong_key_is_refused_loudly() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = Dir::new("wrong-key");
    let other = DigestKey([0x42; 16]);
    let mut input = Vec::new();
    for seq in 1..=12u64 {
        // Half naming the node's key id (a digest mismatch), half their own.
        let mut pdu = backup_pdu(seq, STREAM, 0, &other);
        if seq % 2 == 0 {
            pdu[4] = key().id();
        }
        input.push(frame(OURS, APPLIANCE, &pdu));
    }
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
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(n(&s, "journaled"), 0);
    assert_eq!(n(&s, "refused.bad_digest"), 6, "{s:#}");
    assert_eq!(n(&s, "refused.unknown_key"), 6, "{s:#}");
    assert_eq!(
        n(&s, "wrong_key_alerts"),
        1,
        "once per run of failures: {s:#}"
    );
    assert!(stderr.contains("ALERT wrong_key"), "{stderr}");
}

/// An encrypted backup frame of `seq` (`link_security: aead`), in Ethernet.
fn backup_encrypted(seq: u64, aead: &taphold_wire::payload::PayloadKey) -> Vec<u8> {
    let p = payload(seq);
    let r = BackupRepr {
        link: 0,
        flags: Flags::ENCRYPTED,
        stream: STREAM,
        epoch: EPOCH,
        seq,
        timestamp_ns: 1_000_000 + seq,
        watermark: seq.saturating_sub(3),
        src_ip: [192, 0, 2, 7],
        src_port: 40000,
        payload_len: p.len() as u16,
        content: Content::Full(&p),
    };
    let mut buf = vec![0u8; r.buffer_len()];
    r.emit_sealing_with(&mut buf, &key(), Some(aead)).unwrap();
    frame(OURS, APPLIANCE, &buf)
}

/// Issue 14 item 3 on the node: encrypted backup frames are decrypted before
/// they are journaled (each record is then the very frame the appliance would
/// have sent in clear), or with `journal_ciphertext` journaled as received and
/// read back by `journal export --payload-key-file`; a frame whose payload tag
/// fails under the node's payload key is refused (`bad_payload_tag`).
#[test]
fn encrypted_backup_frames_are_journaled_in_clear_or_as_received() {
    use std::os::unix::fs::PermissionsExt;
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = Dir::new("aead");
    let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let aead = taphold_wire::payload::PayloadKey::from_hex(hex).unwrap();
    let kf = d.0.join("payload.key");
    std::fs::write(&kf, hex).unwrap();
    std::fs::set_permissions(&kf, std::fs::Permissions::from_mode(0o600)).unwrap();
    let other = taphold_wire::payload::PayloadKey::new(&[7; 32]);
    let mut input: Vec<Vec<u8>> = (1..=10).map(|s| backup_encrypted(s, &aead)).collect();
    input.push(backup_encrypted(11, &other)); // authentic, but not our payload key
    let in_pcap = d.0.join("in.pcap");
    pcap::write(&in_pcap, &input).unwrap();
    for ciphertext in [false, true] {
        let journal = d.0.join(format!("journal-{ciphertext}"));
        let extra = format!(
            "payload_key_file: {}\njournal_ciphertext: {ciphertext}\n",
            kf.display()
        );
        std::fs::write(d.0.join("backup.yaml"), config(&journal, &extra)).unwrap();
        let stats = d.0.join("stats.json");
        let o = node_command(
            &d.0,
            &format!("aead-{ciphertext}"),
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
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{stderr}");
        let s: Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
        let recs = read_records(&run_dir(&journal, RUN)).unwrap();
        if ciphertext {
            assert_eq!(n(&s, "journaled"), 11, "{s:#}");
            for r in &recs {
                assert!(!r
                    .pdu
                    .windows(8)
                    .any(|w| payload(r.seq).windows(8).any(|x| x == w)));
            }
            // Export: refused without the key, the payloads with it.
            let (out, err, code) = export(&journal, &[]);
            assert_ne!(code, Some(0), "{out}{err}");
            assert!(err.contains("--payload-key-file"), "{err}");
            let (out, err, code) =
                export(&journal, &["--payload-key-file", &kf.display().to_string()]);
            assert!(err.contains("does not open"), "seq 11: {err}");
            assert_eq!(code, Some(1), "{err}");
            assert_eq!(out.lines().count(), 10, "{out}");
            // "order 3 BUY 100 XYZ @ 1003", base64: the payload in clear.
            assert!(
                out.contains("b3JkZXIgMyBCVVkgMTAwIFhZWiBAIDEwMDM="),
                "{out}"
            );
        } else {
            assert_eq!(n(&s, "journaled"), 10, "{s:#}");
            assert_eq!(n(&s, "refused.bad_payload_tag"), 1, "{s:#}");
            let mut seqs: Vec<u64> = recs.iter().map(|r| r.seq).collect();
            seqs.sort();
            assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
            for r in &recs {
                assert_eq!(
                    r.pdu,
                    backup(r.seq)[14..],
                    "seq {}: the frame in clear",
                    r.seq
                );
            }
        }
    }
}
