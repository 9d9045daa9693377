//! Gateway mode through the node's frame handling (`Intake`, no DPDK) into the journal
//! and out of it again: TCP backup frames (modes 2 and 3) journaled, flow acks verified,
//! counted and kept durably across a restart, and the flow tools (`flow_export.rs`) on
//! the journal this wrote — reassembly, holes, FIX decoding of raw and compact records,
//! and what `recover` calls acknowledged.

use super::*;
use crate::flow_export::{self, FlowOpts};
use crate::flows::{read_flow_acks, FlowKey};
use taphold_fix::compact::encode_compact;
use taphold_wire::taphold::{Content, Flags, FlowAckRepr, TcpSegmentRepr};

const KEY: &str = "5461706f6c642d64656d6f2d6b657931";
const OURS: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0c, 1]);
const APPLIANCE: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0b, 1]);
const EPOCH: u64 = 1_764_460_800;
const ENGINE: [u8; 4] = [10, 1, 0, 2];
const EXCHANGE: [u8; 4] = [10, 2, 0, 2];
const ISN: u32 = 4_294_967_000; // the stream wraps past 2^32 on the way

fn key() -> DigestKey {
    DigestKey::from_hex(KEY).unwrap()
}

fn intake(dir: &std::path::Path) -> Intake {
    let text = format!(
        "port: net_pcap0\nmac: {OURS}\npeer_mac: {APPLIANCE}\nlink: 0\nstream: 1\n\
         digest_key: \"{KEY}\"\nallow_demo_key: true\njournal:\n  dir: {}\n  segment_bytes: 4096\n",
        dir.display()
    );
    Intake::new(&Config::parse("t.yaml", &text).unwrap())
}

fn eth(pdu: &[u8]) -> Vec<u8> {
    let n = pdu.len();
    let mut f = vec![0u8; link::frame_len(n)];
    link::emit_frame(&mut f, OURS, APPLIANCE, n, |b| {
        b.copy_from_slice(pdu);
        Ok(0)
    })
    .unwrap();
    f
}

/// A FIX message with BodyLength and CheckSum (`|` is SOH).
fn fix(fields: &str) -> Vec<u8> {
    let body = fields.replace('|', "\u{1}");
    let mut m = format!("8=FIX.4.2\u{1}9={}\u{1}{body}", body.len()).into_bytes();
    let ck = m.iter().fold(0u32, |a, &b| a + u32::from(b)) % 256;
    m.extend_from_slice(format!("10={ck:03}\u{1}").as_bytes());
    m
}

fn logon() -> Vec<u8> {
    fix("35=A|34=1|49=CLIENT1|52=20261130-07:38:47.000|56=EXECUTOR|98=0|108=30|")
}

fn order(n: u32) -> Vec<u8> {
    fix(&format!(
        "35=D|34={n}|49=CLIENT1|52=20261130-07:38:48.{n:03}|56=EXECUTOR|11=ORD-{n}|21=1|38={}|40=2|44=101.25|54=1|55=IBM|59=0|60=20261130-07:38:48.000|",
        100 * n
    ))
}

/// A backup frame of the TCP segment `payload` at `tcp_seq`: mode 2, or mode 3 when
/// `compact` (its compact encoding).
fn segment(seq: u64, tcp_seq: u32, payload: &[u8], compact: bool, epoch: u64) -> Vec<u8> {
    let mut enc = vec![0u8; 2048];
    let content = if compact {
        let n = encode_compact(payload, &mut enc).unwrap();
        &enc[..n]
    } else {
        payload
    };
    let seg = TcpSegmentRepr {
        src_ip: ENGINE,
        src_port: 40000,
        payload_len: payload.len() as u16,
        dst_ip: EXCHANGE,
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
        timestamp_ns: 1000 + seq,
        watermark: 0,
        src_ip: ENGINE,
        src_port: 40000,
        payload_len: payload.len() as u16,
        content: if compact {
            Content::FixCompact(seg)
        } else {
            Content::Tcp(seg)
        },
    };
    let mut pdu = vec![0u8; b.buffer_len()];
    b.emit(&mut pdu, &key()).unwrap();
    eth(&pdu)
}

fn flow_ack(seq: u64, acked: u32, link: u8, epoch: u64, k: &DigestKey) -> Vec<u8> {
    let a = FlowAckRepr {
        link,
        stream: 1,
        epoch,
        seq,
        timestamp_ns: 5000 + seq,
        watermark: 0,
        src_ip: ENGINE,
        src_port: 40000,
        dst_ip: EXCHANGE,
        dst_port: 9878,
        acked,
    };
    let mut pdu = vec![0u8; a.buffer_len()];
    a.emit(&mut pdu, k).unwrap();
    eth(&pdu)
}

fn flow() -> FlowKey {
    "10.1.0.2:40000-10.2.0.2:9878".parse().unwrap()
}

/// The byte stream the engine sent: a Logon and orders 2..=6.
fn messages() -> Vec<Vec<u8>> {
    let mut m = vec![logon()];
    m.extend((2..=6).map(order));
    m
}

fn sync(i: &mut Intake) {
    let r = i.run.as_mut().unwrap();
    r.journal.sync().unwrap();
    r.flow_acks.sync().unwrap();
}

/// Journals the flow as the appliance would send it: the Logon in full (mode 2),
/// orders 2 and 3 compact (mode 3), order 4 with the first half of order 5 in full (not
/// whole messages: the fallback), the rest of order 5 in full, a retransmission of the
/// segment before, and order 6 compact; flow acks up to the end of order 5's first
/// half. Returns the TCP sequence numbers where each message starts and the acked.
fn journal_the_flow(dir: &std::path::Path, skip_seq: Option<u64>) -> (Vec<u32>, u32, Intake) {
    journal_the_flow_acked(dir, skip_seq, false)
}

/// As [`journal_the_flow`]; `at_end`: the last flow ack is exactly the end of order 4.
fn journal_the_flow_acked(
    dir: &std::path::Path,
    skip_seq: Option<u64>,
    at_end: bool,
) -> (Vec<u32>, u32, Intake) {
    let m = messages();
    let start = ISN.wrapping_add(1);
    let mut at = vec![start];
    for x in &m {
        at.push(at.last().unwrap().wrapping_add(x.len() as u32));
    }
    let half = m[4].len() / 2;
    let c = [m[3].clone(), m[4][..half].to_vec()].concat();
    let segs: Vec<(u32, Vec<u8>, bool)> = vec![
        (at[0], m[0].clone(), false),
        (at[1], [m[1].clone(), m[2].clone()].concat(), true),
        (at[3], c.clone(), false),
        (
            at[4].wrapping_add(half as u32),
            m[4][half..].to_vec(),
            false,
        ),
        (at[3], c.clone(), false),
        (at[5], m[5].clone(), true),
    ];
    let acked = if at_end {
        at[4]
    } else {
        at[4].wrapping_add(half as u32)
    };
    let mut i = intake(dir);
    for (n, (tcp_seq, p, compact)) in segs.iter().enumerate() {
        let seq = n as u64 + 1;
        if Some(seq) == skip_seq {
            continue;
        }
        i.handle(&segment(seq, *tcp_seq, p, *compact, EPOCH), 10)
            .unwrap();
    }
    let k = key();
    // The exchange's acks as they advance, then an old one.
    for (s, a) in [(1, at[1]), (2, at[3]), (3, acked), (4, at[1])] {
        i.handle(&flow_ack(s, a, 0, EPOCH, &k), 20).unwrap();
    }
    sync(&mut i);
    (at, acked, i)
}

#[test]
fn flow_acks_are_verified_counted_and_kept_across_a_restart() {
    let d = tempfile::tempdir().unwrap();
    let (at, acked, mut i) = journal_the_flow(d.path(), None);
    assert_eq!(i.counters.journaled, 6);
    assert_eq!(i.counters.flow_acks, 4);
    assert_eq!(
        i.counters.flow_acks_advanced, 3,
        "the old one does not go back"
    );
    assert!(i.last_heard_ns.is_some());
    // Refused like a heartbeat would be: forged, another stream's, another link's, an
    // earlier epoch's; none of them changes what is kept.
    let forged = flow_ack(
        5,
        acked.wrapping_add(100),
        0,
        EPOCH,
        &DigestKey::from_hex("00112233445566778899aabbccddeeff").unwrap(),
    );
    // Another key: refused by its key id (or, were the ids to collide, by the digest).
    assert!(matches!(
        i.handle(&forged, 30),
        Err(Ok(Refusal::UnknownKey | Refusal::BadDigest))
    ));
    assert!(matches!(
        i.handle(&flow_ack(6, acked.wrapping_add(100), 2, EPOCH, &key()), 30),
        Err(Ok(Refusal::WrongLink))
    ));
    assert!(matches!(
        i.handle(
            &flow_ack(7, acked.wrapping_add(100), 0, EPOCH - 1, &key()),
            30
        ),
        Err(Ok(Refusal::StaleEpoch))
    ));
    let mut pdu = flow_ack(8, acked.wrapping_add(100), 0, EPOCH, &key());
    pdu[14 + 11] = 2; // stream 2: the digest is now wrong too, so refused first by it
    assert!(i.handle(&pdu, 30).is_err());
    assert_eq!(i.counters.flow_acks, 4);
    let rdir = taphold_journal::run_dir(
        d.path(),
        RunId {
            stream: 1,
            epoch: EPOCH,
        },
    );
    assert_eq!(read_flow_acks(&rdir).unwrap().flows, vec![(flow(), acked)]);
    // kill -9: nothing is closed. A new node on the same directory knows the flow's
    // highest acked once the appliance's epoch names the run, and keeps it.
    std::mem::forget(i);
    let mut j = intake(d.path());
    j.open_held().unwrap();
    j.handle(&flow_ack(9, at[1], 0, EPOCH, &key()), 40).unwrap();
    assert_eq!(j.counters.flow_acks_advanced, 0);
    j.handle(&flow_ack(10, at[6], 0, EPOCH, &key()), 40)
        .unwrap();
    sync(&mut j);
    assert_eq!(j.counters.flow_acks_advanced, 1);
    assert_eq!(read_flow_acks(&rdir).unwrap().flows, vec![(flow(), at[6])]);
    // A new epoch's acks go to its own run.
    j.handle(&flow_ack(1, 5, 0, EPOCH + 1, &key()), 50).unwrap();
    sync(&mut j);
    let r2 = taphold_journal::run_dir(
        d.path(),
        RunId {
            stream: 1,
            epoch: EPOCH + 1,
        },
    );
    assert_eq!(read_flow_acks(&r2).unwrap().flows, vec![(flow(), 5)]);
    assert_eq!(read_flow_acks(&rdir).unwrap().flows, vec![(flow(), at[6])]);
}

fn lines(p: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn opts(dir: &std::path::Path, out: &std::path::Path, decode: bool) -> FlowOpts {
    FlowOpts {
        dir: dir.into(),
        flow: flow(),
        decode_fix: decode,
        out: Some(out.into()),
    }
}

#[test]
fn export_reassembles_the_stream_and_decodes_raw_and_compact_fix() {
    let d = tempfile::tempdir().unwrap();
    let (at, _, i) = journal_the_flow(d.path(), None);
    drop(i);
    let o = tempfile::tempdir().unwrap();
    let m = messages();
    // The byte stream: raw bytes as sent, compact messages rebuilt (shorter: fields
    // dropped), so compare message by message.
    let out = o.path().join("stream");
    let rep = flow_export::run_flow_for_test(&opts(d.path(), &out, false), false);
    assert!(rep.holes.is_empty() && rep.conflicts.is_empty(), "{rep:?}");
    assert_eq!(rep.rebuilt, 3);
    let bytes = std::fs::read(&out).unwrap();
    let got: Vec<Vec<u8>> = taphold_fix::split(&bytes)
        .map(|p| match p {
            taphold_fix::Piece::Message { message, .. } => message.raw().to_vec(),
            taphold_fix::Piece::Bad { error, .. } => panic!("{error}"),
        })
        .collect();
    assert_eq!(got.len(), 6);
    for (n, (g, w)) in got.iter().zip(&m).enumerate() {
        let (g, w) = (
            taphold_fix::Message::parse_at(g).unwrap().summary(),
            taphold_fix::Message::parse_at(w).unwrap().summary(),
        );
        assert_eq!(g.msg_seq_num(), w.msg_seq_num(), "message {n}");
        assert_eq!(g.cl_ord_id, w.cl_ord_id);
        assert_eq!(g.order_qty, w.order_qty);
    }
    // Raw messages come out byte for byte.
    assert_eq!(got[0], m[0]);
    assert_eq!(got[3], m[3]);
    assert_eq!(got[4], m[4]);

    let out = o.path().join("fix.jsonl");
    let rep = flow_export::run_flow_for_test(&opts(d.path(), &out, true), false);
    assert!(rep.bad.is_empty(), "{:?}", rep.bad);
    let v = lines(&out);
    assert_eq!(v.len(), 6);
    for (n, x) in v.iter().enumerate() {
        assert_eq!(x["msg_seq_num"], n as u64 + 1);
        assert_eq!(x["tcp_seq"], at[n]);
        assert_eq!(x["tcp_end"], at[n + 1]);
        assert_eq!(x["rebuilt"], matches!(n, 1 | 2 | 5));
        assert_eq!(x["flow"], "10.1.0.2:40000-10.2.0.2:9878");
        if n > 0 {
            assert_eq!(x["msg_type"], "D");
            assert_eq!(x["cl_ord_id"], format!("ORD-{}", n + 1));
            assert_eq!(x["order_qty"], format!("{}", 100 * (n + 1)));
            assert_eq!(x["side"], "1");
            assert_eq!(x["symbol"], "IBM");
            assert_eq!(x["price"], "101.25");
        }
    }
    assert_eq!(v[3]["raw"], String::from_utf8(m[3].clone()).unwrap());
}

#[test]
fn recover_names_what_the_exchange_never_acknowledged() {
    let d = tempfile::tempdir().unwrap();
    let (at, acked, i) = journal_the_flow(d.path(), None);
    drop(i);
    let o = tempfile::tempdir().unwrap();
    let out = o.path().join("recover.jsonl");
    let rep = flow_export::run_flow_for_test(&opts(d.path(), &out, true), true);
    assert_eq!((rep.acknowledged, rep.unacknowledged), (4, 2));
    let v = lines(&out);
    let acks: Vec<bool> = v[..6]
        .iter()
        .map(|x| x["acknowledged"].as_bool().unwrap())
        .collect();
    // Acked up to the middle of order 5: the Logon and orders 2..4 are acknowledged.
    assert_eq!(acks, [true, true, true, true, false, false]);
    for x in &v[..4] {
        assert!(x.get("resend").is_none());
    }
    for x in &v[4..6] {
        let r = x["resend"].as_str().unwrap().as_bytes();
        let s = taphold_fix::Message::parse_at(r).unwrap().summary();
        assert!(s.poss_dup());
        assert_eq!(s.msg_seq_num(), x["msg_seq_num"].as_u64());
        assert_eq!(s.orig_sending_time, s.sending_time);
    }
    let summary = &v[6];
    assert_eq!(summary["summary"], true);
    assert_eq!(summary["acked"], acked);
    assert_eq!(summary["first_tcp_seq"], at[0]);
    assert_eq!(summary["last_tcp_seq"], at[6]);
    assert_eq!(
        (
            summary["acknowledged"].as_u64(),
            summary["unacknowledged"].as_u64()
        ),
        (Some(4), Some(2))
    );
}

#[test]
fn a_lost_segment_is_a_hole_named_by_sequence_range() {
    let d = tempfile::tempdir().unwrap();
    // Node seq 4 (the second half of order 5) never reached the node.
    let (at, _, i) = journal_the_flow(d.path(), Some(4));
    drop(i);
    let o = tempfile::tempdir().unwrap();
    let out = o.path().join("fix.jsonl");
    let rep = flow_export::run_flow_for_test(&opts(d.path(), &out, true), true);
    let half = (messages()[4].len() / 2) as u32;
    assert_eq!(
        rep.holes,
        vec![format!(
            "connection 0: tcp seq {}..{}",
            at[4].wrapping_add(half),
            at[5]
        )]
    );
    // Order 5 is cut: named, not decoded; order 6 after the hole still is.
    assert_eq!(
        rep.bad,
        vec![format!(
            "connection 0: tcp seq {}..{}: truncated",
            at[4],
            at[4].wrapping_add(half)
        )]
    );
    let v = lines(&out);
    let seqs: Vec<u64> = v.iter().filter_map(|x| x["msg_seq_num"].as_u64()).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 6]);
}

#[test]
fn no_such_flow_and_bad_options() {
    let d = tempfile::tempdir().unwrap();
    let (_, _, i) = journal_the_flow(d.path(), None);
    drop(i);
    let o = tempfile::tempdir().unwrap();
    let mut op = opts(d.path(), &o.path().join("x"), true);
    op.flow = "10.1.0.2:40001-10.2.0.2:9878".parse().unwrap();
    let rep = flow_export::run_flow_for_test(&op, true);
    assert_eq!(
        rep.problems,
        vec!["no segment of flow 10.1.0.2:40001-10.2.0.2:9878 in the journal".to_string()]
    );
    let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(FlowOpts::parse(&a(&["d"]), "u")
        .unwrap_err()
        .contains("--flow is required"));
    assert!(FlowOpts::parse(&a(&["d", "--flow", "x"]), "u")
        .unwrap_err()
        .contains("not a flow"));
    assert!(FlowOpts::parse(
        &a(&["d", "--flow", "1.2.3.4:1-5.6.7.8:2", "--decode", "ouch"]),
        "u"
    )
    .is_err());
    assert!(FlowOpts::parse(&a(&["--flow", "1.2.3.4:1-5.6.7.8:2"]), "u").is_err());
}

#[test]
fn a_message_whose_last_byte_is_just_below_acked_is_acknowledged() {
    let d = tempfile::tempdir().unwrap();
    let (at, acked, i) = journal_the_flow_acked(d.path(), None, true);
    assert_eq!(acked, at[4]);
    drop(i);
    let o = tempfile::tempdir().unwrap();
    let out = o.path().join("recover.jsonl");
    let rep = flow_export::run_flow_for_test(&opts(d.path(), &out, true), true);
    assert_eq!((rep.acknowledged, rep.unacknowledged), (4, 2));
    let v = lines(&out);
    assert_eq!(v[3]["tcp_end"], acked);
    assert_eq!(v[3]["acknowledged"], true);
    assert_eq!(v[4]["acknowledged"], false);
}

#[test]
fn a_reconnect_is_a_new_connection_with_its_own_acks() {
    // The same 4-tuple again after the engine reconnected: a new ISN far away, its SYN
    // not journaled (the appliance backs up data segments only).
    let d = tempfile::tempdir().unwrap();
    let mut i = intake(d.path());
    let first = order(2);
    let second = order(3);
    let isn2: u32 = 2_000_000_000;
    i.handle(&segment(1, 1000, &first, false, EPOCH), 1)
        .unwrap();
    i.handle(&segment(2, isn2, &second, true, EPOCH), 2)
        .unwrap();
    i.handle(&flow_ack(1, 1000 + first.len() as u32, 0, EPOCH, &key()), 3)
        .unwrap();
    i.handle(&flow_ack(2, isn2, 0, EPOCH, &key()), 3).unwrap();
    // A third connection "behind" the first in serial arithmetic: its acks are kept too.
    let third = order(4);
    let isn3: u32 = 1000u32.wrapping_sub(1 << 29);
    i.handle(&segment(3, isn3, &third, false, EPOCH), 4)
        .unwrap();
    i.handle(
        &flow_ack(3, isn3.wrapping_add(third.len() as u32), 0, EPOCH, &key()),
        5,
    )
    .unwrap();
    assert_eq!(i.counters.flow_acks_advanced, 3);
    sync(&mut i);
    drop(i);
    let o = tempfile::tempdir().unwrap();
    let out = o.path().join("r.jsonl");
    let rep = flow_export::run_flow_for_test(&opts(d.path(), &out, true), true);
    assert_eq!(rep.connections, 3);
    assert!(rep.holes.is_empty(), "{:?}", rep.holes);
    let v = lines(&out);
    // Each connection takes the acks of its own sequence space: order 2 (connection 0)
    // is acknowledged, order 3 (connection 1, acked only at its start) is not, order 4
    // (connection 2) is.
    let rows: Vec<(u64, u64, bool)> = v
        .iter()
        .filter(|x| x.get("msg_seq_num").is_some())
        .map(|x| {
            (
                x["connection"].as_u64().unwrap(),
                x["msg_seq_num"].as_u64().unwrap(),
                x["acknowledged"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [(0, 2, true), (1, 3, false), (2, 4, true)]);
}
