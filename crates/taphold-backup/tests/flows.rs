//! `journal flows`, `journal export --flow` and `recover` through the real binary, on a
//! journal written with the journal library and frames from the wire encoders, and a
//! `flow-acks` file written byte by byte as docs/backup-node.md lays it out.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use taphold_fix::compact::encode_compact;
use taphold_journal::{run_dir, Journal, JournalConfig, RunId};
use taphold_wire::digest::DigestKey;
use taphold_wire::taphold::{BackupRepr, Content, Flags, TcpSegmentRepr};

const KEY: &str = "5461706f6c642d64656d6f2d6b657931";
const FLOW: &str = "10.1.0.2:40000-10.2.0.2:9878";
const RUN1: RunId = RunId {
    stream: 1,
    epoch: 1_764_460_800,
};
const RUN2: RunId = RunId {
    stream: 1,
    epoch: 1_764_460_900,
};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_taphold-backup")
}

fn fix(fields: &str) -> Vec<u8> {
    let body = fields.replace('|', "\u{1}");
    let mut m = format!("8=FIX.4.4\u{1}9={}\u{1}{body}", body.len()).into_bytes();
    let ck = m.iter().fold(0u32, |a, &b| a + u32::from(b)) % 256;
    m.extend_from_slice(format!("10={ck:03}\u{1}").as_bytes());
    m
}

fn order(n: u32) -> Vec<u8> {
    fix(&format!(
        "35=D|34={n}|49=ENGINE|52=20261130-07:38:48.{n:03}|56=EXCH|11=C{n}|38=10|40=2|44=9.5|54=2|55=MSFT|59=0|60=20261130-07:38:48.000|"
    ))
}

fn frame(seq: u64, epoch: u64, tcp_seq: u32, payload: &[u8], compact: bool) -> Vec<u8> {
    let mut enc = vec![0u8; 4096];
    let content = if compact {
        let n = encode_compact(payload, &mut enc).unwrap();
        &enc[..n]
    } else {
        payload
    };
    let seg = TcpSegmentRepr {
        src_ip: [10, 1, 0, 2],
        src_port: 40000,
        payload_len: payload.len() as u16,
        dst_ip: [10, 2, 0, 2],
        dst_port: 9878,
        tcp_flags: 0x18,
        tcp_seq,
        content,
    };
    let b = BackupRepr {
        link: 0,
        flags: Flags::EMPTY,
        stream: 1,
        epoch,
        seq,
        timestamp_ns: seq,
        watermark: 0,
        src_ip: [10, 1, 0, 2],
        src_port: 40000,
        payload_len: payload.len() as u16,
        content: if compact {
            Content::FixCompact(seg)
        } else {
            Content::Tcp(seg)
        },
    };
    let mut pdu = vec![0u8; b.buffer_len()];
    b.emit(&mut pdu, &DigestKey::from_hex(KEY).unwrap())
        .unwrap();
    pdu
}

/// The `flow-acks` record of docs/backup-node.md.
fn flow_ack_record(acked: u32) -> Vec<u8> {
    let mut r = vec![10, 1, 0, 2, 0x9c, 0x40, 10, 2, 0, 2, 0x26, 0x96];
    r.extend_from_slice(&acked.to_be_bytes());
    let crc = crc32(&r);
    r.extend_from_slice(&crc.to_be_bytes());
    r
}

/// CRC-32 (IEEE), bit by bit: independent of the node's.
fn crc32(b: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in b {
        c ^= u32::from(x);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Two runs of the appliance: orders 1..=3 in run 1 (order 2 compact, order 3 sent
/// twice), orders 4 and 5 in run 2 after a restart (the TCP session survived: the same
/// flow), the exchange's acks up to the end of order 4 in run 2.
fn journal(root: &Path) -> Vec<u32> {
    let m: Vec<Vec<u8>> = (1..=5).map(order).collect();
    let mut at = vec![1_000_001u32];
    for x in &m {
        at.push(at.last().unwrap() + x.len() as u32);
    }
    let mut j = Journal::open(JournalConfig::for_run(root, RUN1)).unwrap().0;
    j.append(1, 0, 1, &frame(1, RUN1.epoch, at[0], &m[0], false))
        .unwrap();
    j.append(2, 0, 2, &frame(2, RUN1.epoch, at[1], &m[1], true))
        .unwrap();
    j.append(3, 0, 3, &frame(3, RUN1.epoch, at[2], &m[2], false))
        .unwrap();
    j.append(4, 4, 4, &frame(4, RUN1.epoch, at[2], &m[2], false))
        .unwrap();
    j.close().unwrap();
    std::fs::write(
        run_dir(root, RUN1).join("flow-acks"),
        flow_ack_record(at[1]),
    )
    .unwrap();
    let mut j = Journal::open(JournalConfig::for_run(root, RUN2)).unwrap().0;
    j.append(1, 0, 5, &frame(1, RUN2.epoch, at[3], &m[3], false))
        .unwrap();
    j.append(2, 0, 6, &frame(2, RUN2.epoch, at[4], &m[4], true))
        .unwrap();
    j.close().unwrap();
    let acks = [flow_ack_record(at[3]), flow_ack_record(at[4])].concat();
    std::fs::write(run_dir(root, RUN2).join("flow-acks"), acks).unwrap();
    at
}

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn json_lines(o: &Output) -> Vec<Value> {
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn flows_export_and_recover_from_the_command_line() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_str().unwrap();
    let at = journal(d.path());

    let o = run(&["journal", "flows", root]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = json_lines(&o);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["flow"], FLOW);
    assert_eq!(v[0]["epochs"], serde_json::json!([RUN1.epoch, RUN2.epoch]));
    assert_eq!(v[0]["segments"], 6);
    assert_eq!(v[0]["compact_segments"], 2);
    assert_eq!(v[0]["first_tcp_seq"], at[0]);
    assert_eq!(v[0]["last_tcp_seq"], at[5]);
    assert_eq!(v[0]["acked"], at[4]);
    assert_eq!(v[0]["holes"], serde_json::json!([]));

    // The byte stream: raw orders byte for byte, compact ones rebuilt.
    let out = d.path().join("stream.bin");
    let o = run(&[
        "journal",
        "export",
        root,
        "--flow",
        FLOW,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("2 compact message(s) rebuilt"), "{stderr}");
    let bytes = std::fs::read(&out).unwrap();
    let msgs: Vec<Vec<u8>> = taphold_fix::split(&bytes)
        .map(|p| match p {
            taphold_fix::Piece::Message { message, .. } => message.raw().to_vec(),
            taphold_fix::Piece::Bad { error, .. } => panic!("{error}"),
        })
        .collect();
    assert_eq!(msgs.len(), 5);
    for n in [0, 2, 3] {
        assert_eq!(
            msgs[n],
            order(n as u32 + 1),
            "order {} byte for byte",
            n + 1
        );
    }
    for n in [1, 4] {
        assert!(
            msgs[n].len() < order(n as u32 + 1).len(),
            "rebuilt without field 60"
        );
    }

    let o = run(&["journal", "export", root, "--flow", FLOW, "--decode", "fix"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = json_lines(&o);
    let seqs: Vec<u64> = v
        .iter()
        .map(|x| x["msg_seq_num"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    let rebuilt: Vec<bool> = v.iter().map(|x| x["rebuilt"].as_bool().unwrap()).collect();
    assert_eq!(rebuilt, [false, true, false, false, true]);
    assert_eq!(v[2]["raw"].as_str().unwrap().as_bytes(), &order(3)[..]);
    assert_eq!(v[1]["cl_ord_id"], "C2");
    assert_eq!(v[1]["symbol"], "MSFT");
    assert_eq!(v[1]["side"], "2");

    let o = run(&["recover", root, "--flow", FLOW, "--decode", "fix"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = json_lines(&o);
    let acked: Vec<bool> = v[..5]
        .iter()
        .map(|x| x["acknowledged"].as_bool().unwrap())
        .collect();
    assert_eq!(acked, [true, true, true, true, false]);
    assert_eq!(v[5]["summary"], true);
    assert_eq!(v[5]["unacknowledged"], 1);
    let resend = v[4]["resend"].as_str().unwrap();
    assert!(resend.contains("\u{1}43=Y\u{1}"), "{resend}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("4 acknowledged by the exchange, 1 not"));
}

#[test]
fn a_hole_and_bad_usage_are_named() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_str().unwrap();
    let at = journal(d.path());
    // Run 2's first segment (order 4) is gone: a hole, exit 1.
    let seg = run_dir(d.path(), RUN2);
    for e in std::fs::read_dir(&seg).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "journal") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let mut j = Journal::open(JournalConfig::for_run(d.path(), RUN2))
        .unwrap()
        .0;
    j.append(2, 0, 6, &frame(2, RUN2.epoch, at[4], &order(5), true))
        .unwrap();
    j.close().unwrap();
    let o = run(&["recover", root, "--flow", FLOW, "--decode", "fix"]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("hole: connection 0: tcp seq {}..{}", at[3], at[4])),
        "{stderr}"
    );
    for (args, want) in [
        (
            vec!["recover", root, "--flow", FLOW],
            "recover needs --decode fix",
        ),
        (vec!["recover", root], "--flow is required"),
        (
            vec!["journal", "export", root, "--flow", "nonsense"],
            "not a flow",
        ),
        (
            vec!["journal", "flows"],
            "usage: taphold-backup journal flows DIR",
        ),
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(want),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = run(&["journal", "flows", "/nonexistent/journal"]);
    assert_eq!(o.status.code(), Some(2));
}
