//! The destination side of the node without DPDK: what the intake does with frames
//! from port D, what it answers from the journal, what it trims, what a takeover
//! replays. Frames are built with taphold_wire, as an arbiter would.

use super::*;
use crate::destination::{self, DestRefusal, RESEND_QUEUE};
use crate::takeover::{Pacer, Phase, Reason};
use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use taphold_wire::arp::{ArpRepr, Operation};
use taphold_wire::delivery::{self as dlv, DeliveryRepr};
use taphold_wire::emit::{emit_udp_headers, UDP_FRAME_HEADER_LEN};
use taphold_wire::ethernet::{emit_header, EtherType};
use taphold_wire::taphold::{Content, Flags, ResendRepr, TargetConfirmRepr};

const KEY: &str = "5461706f6c642d64656d6f2d6b657931";
const OURS: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0c, 1]);
const APPLIANCE: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0b, 1]);
const D_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0d, 1]);
const NEXT_HOP: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0e, 1]);
const ARBITER: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0x0f, 1]);
const D_IP: [u8; 4] = [198, 51, 100, 21];
const D_PORT: u16 = 9300;
const ARBITER_IP: [u8; 4] = [198, 51, 100, 30];
const SRC_IP: [u8; 4] = [192, 0, 2, 7];
const EPOCH_A: u64 = 1_764_460_800;
const EPOCH_B: u64 = 1_764_470_000;

fn key() -> DigestKey {
    DigestKey::from_hex(KEY).unwrap()
}

fn intake_with(dir: &std::path::Path, journal_extra: &str) -> Intake {
    let text = format!(
        "port: net_pcap0\nmac: {OURS}\npeer_mac: {APPLIANCE}\nlink: 0\nstream: 1\n\
         digest_key: \"{KEY}\"\nallow_demo_key: true\njournal:\n  dir: {}\n  segment_bytes: 4096\n{journal_extra}\
         destination:\n  port: net_pcap1\n  mac: {D_MAC}\n  ip: 198.51.100.21\n  udp_port: {D_PORT}\n  \
         peer_mac: {NEXT_HOP}\n  replay_to: 198.51.100.30:9200\n",
        dir.display()
    );
    Intake::new(&Config::parse("t.yaml", &text).unwrap())
}

fn payload(seq: u64) -> Vec<u8> {
    format!("order {seq} SELL {} ABC", 7 * seq).into_bytes()
}

/// A backup frame of seq (full unless `digest_only`), watermark `w`.
fn backup(epoch: u64, seq: u64, w: u64, digest_only: bool) -> Vec<u8> {
    let k = key();
    let p = payload(seq);
    let r = BackupRepr {
        link: 0,
        flags: Flags::EMPTY,
        stream: 1,
        epoch,
        seq,
        timestamp_ns: 5_000_000 + seq,
        watermark: w,
        src_ip: SRC_IP,
        src_port: 40_000 + seq as u16,
        payload_len: p.len() as u16,
        content: if digest_only {
            Content::Digest(k.digest(&p))
        } else {
            Content::Full(&p)
        },
    };
    let mut pdu = vec![0u8; r.buffer_len()];
    r.emit(&mut pdu, &k).unwrap();
    let mut f = vec![0u8; link::frame_len(pdu.len())];
    link::emit_frame(&mut f, OURS, APPLIANCE, pdu.len(), |b| {
        b.copy_from_slice(&pdu);
        Ok(0)
    })
    .unwrap();
    f
}

/// Journals `seqs` of `epoch` (watermark 0 unless given), synced.
fn journal(
    i: &mut Intake,
    epoch: u64,
    seqs: impl IntoIterator<Item = u64>,
    w: u64,
    digest: &[u64],
) {
    for s in seqs {
        i.handle(&backup(epoch, s, w, digest.contains(&s)), s)
            .unwrap();
    }
    i.run.as_mut().unwrap().journal.sync().unwrap();
}

/// A UDP datagram from the arbiter to our D address carrying `pdu`.
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

fn confirm_pdu(epoch: u64, seq: u64, k: &DigestKey, stream: u32) -> Vec<u8> {
    let c = TargetConfirmRepr {
        stream,
        epoch,
        seq,
        timestamp_ns: 1,
        highest_seen: seq + 3,
        skipped: 0,
    };
    let mut b = vec![0u8; c.buffer_len()];
    c.emit(&mut b, k).unwrap();
    b
}

fn confirm(epoch: u64, seq: u64) -> Vec<u8> {
    to_d(&confirm_pdu(epoch, seq, &key(), 1), D_PORT)
}

fn resend(epoch: u64, seq: u64, count: u32) -> Vec<u8> {
    let r = ResendRepr {
        stream: 1,
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

/// A datagram we sent, parsed: UDP ends, and the delivery header and payload.
#[derive(Debug)]
struct Out {
    from: ([u8; 4], u16),
    to: ([u8; 4], u16, EthernetAddress),
    header: DeliveryRepr,
    payload: Vec<u8>,
}

fn parse_out(f: &[u8]) -> Out {
    let ip = taphold_wire::ipv4::Packet::new_checked(&f[14..]).unwrap();
    assert!(ip.verify_checksum());
    let udp = taphold_wire::udp::Packet::new_checked(ip.payload()).unwrap();
    assert!(
        udp.verify_checksum(ip.src_addr(), ip.dst_addr()),
        "UDP checksum"
    );
    let d = dlv::Packet::new_checked(udp.payload()).unwrap();
    Out {
        from: (ip.src_addr(), udp.src_port()),
        to: (
            ip.dst_addr(),
            udp.dst_port(),
            EthernetAddress([f[0], f[1], f[2], f[3], f[4], f[5]]),
        ),
        header: DeliveryRepr::parse(&d).unwrap(),
        payload: d.payload().to_vec(),
    }
}

/// A sender into a Vec, with `room` frames of room in all.
fn sink<'a>(
    out: &'a mut Vec<Vec<u8>>,
    room: &'a mut usize,
) -> impl FnMut(&Delivery<'_>, &Endpoint) -> destination::Offer + 'a {
    let ours = Endpoint {
        mac: D_MAC,
        ip: D_IP,
        port: D_PORT,
    };
    move |d, to| {
        if *room == 0 {
            return destination::Offer::NoRoom;
        }
        *room -= 1;
        let mut f = vec![0u8; d.frame_len()];
        let n = write_delivery(&mut f, d, &ours, to).unwrap();
        assert_eq!(n, f.len());
        out.push(f);
        destination::Offer::Taken
    }
}

#[test]
fn a_resend_request_is_answered_from_the_journal_in_order_and_what_is_lacking_counted() {
    let t = tempfile::tempdir().unwrap();
    let mut i = intake_with(t.path(), "");
    // 1..=30 but 10 and 11 (lost on the link); 20 digest-only.
    journal(
        &mut i,
        EPOCH_A,
        (1..=30).filter(|s| !(10..=11).contains(s)),
        0,
        &[20],
    );
    assert_eq!(
        i.handle_dest(&mut resend(EPOCH_A, 8, 30), 7),
        DestAction::Done
    );
    assert!(i.resends_pending());
    let (mut out, mut room) = (Vec::new(), 5usize);
    // Five at a time (a tx burst with room for five): the rest waits, in order.
    assert_eq!(i.answer_resends(5, sink(&mut out, &mut room)), 5);
    assert!(i.resends_pending());
    let mut room = usize::MAX;
    i.answer_resends(64, sink(&mut out, &mut room));
    assert!(!i.resends_pending());
    let want: Vec<u64> = (8..=30).filter(|s| ![10, 11, 20].contains(s)).collect();
    let got: Vec<u64> = out.iter().map(|f| parse_out(f).header.seq).collect();
    assert_eq!(got, want, "in order, each seq held in full once");
    for f in &out {
        let o = parse_out(f);
        let s = o.header.seq;
        assert_eq!(
            o.header,
            DeliveryRepr {
                flags: Flags::RETRANSMIT,
                stream: 1,
                epoch: EPOCH_A,
                seq: s,
                src_ip: SRC_IP,
                src_port: 40_000 + s as u16,
                release_ns: 5_000_000 + s,
            }
        );
        assert_eq!(o.payload, payload(s), "seq {s}: the payload byte for byte");
        assert_eq!(o.from, (D_IP, D_PORT), "from our D address");
        assert_eq!(o.to, (ARBITER_IP, 9500, ARBITER), "to the request's source");
    }
    let c = i.resend;
    assert_eq!((c.requests, c.answered), (1, want.len() as u64));
    // 10, 11 never received; 31..=37 above the highest held.
    assert_eq!((c.missing, c.digest_only, c.unreadable), (2 + 7, 1, 0));

    // A run we do not hold: every seq missing, counted.
    i.handle_dest(&mut resend(EPOCH_A + 1, 1, 4), 8);
    let mut room = usize::MAX;
    i.answer_resends(64, sink(&mut out, &mut room));
    assert_eq!((i.resend.unknown_run, i.resend.missing), (1, 9 + 4));
    // More requests than the queue holds: the rest refused, counted (asked again).
    for _ in 0..RESEND_QUEUE + 3 {
        i.handle_dest(&mut resend(EPOCH_A, 1, 1), 9);
    }
    assert_eq!(i.resend.queue_full, 3);
    // A request for 2^32 - 1 seqs does not make the node look them all up.
    let mut i2 = intake_with(&t.path().join("x"), "");
    journal(&mut i2, EPOCH_A, 1..=3, 0, &[]);
    i2.handle_dest(&mut resend(EPOCH_A, 2, u32::MAX), 1);
    let (mut out2, mut room) = (Vec::new(), usize::MAX);
    i2.answer_resends(64, sink(&mut out2, &mut room));
    assert_eq!(out2.len(), 2);
    assert_eq!(i2.resend.missing, u64::from(u32::MAX) - 2);
}

#[test]
fn frames_on_d_are_judged_by_reason_and_arp_is_answered() {
    let t = tempfile::tempdir().unwrap();
    let mut i = intake_with(t.path(), "");
    let k = key();
    let reason = |i: &Intake, name: &str| -> u64 {
        let j = i.dest_counters.json();
        j["refused"][name]
            .as_u64()
            .or(j["dropped"][name].as_u64())
            .unwrap()
    };
    // Wrong key, wrong stream, not a PDU, a PDU of a type not sent on D, wrong port.
    i.handle_dest(
        &mut to_d(&confirm_pdu(EPOCH_A, 5, &DigestKey([9; 16]), 1), D_PORT),
        1,
    );
    i.handle_dest(&mut to_d(&confirm_pdu(EPOCH_A, 5, &k, 2), D_PORT), 1);
    let mut damaged = confirm_pdu(EPOCH_A, 5, &k, 1);
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    i.handle_dest(&mut to_d(&damaged, D_PORT), 1);
    i.handle_dest(&mut to_d(b"hello, node", D_PORT), 1);
    let b = backup(EPOCH_A, 1, 0, false);
    i.handle_dest(&mut to_d(&b[14..], D_PORT), 1);
    i.handle_dest(&mut confirm(EPOCH_A, 5)[..].to_vec(), 1);
    i.handle_dest(&mut to_d(&confirm_pdu(EPOCH_A, 5, &k, 1), D_PORT + 1), 1);
    let mut cut = confirm(EPOCH_A, 6);
    let n = cut.len();
    cut[n - 1] ^= 1; // the digest's last byte: UDP checksum wrong first
    i.handle_dest(&mut cut, 1);
    for (name, n) in [
        ("unknown_key", 1),
        ("bad_digest", 1),
        ("wrong_stream", 1),
        ("malformed", 1),
        ("unexpected_type", 1),
        ("udp_wrong_port", 1),
        ("udp_bad_checksum", 1),
    ] {
        assert_eq!(reason(&i, name), n, "{name}: {}", i.dest_counters.json());
    }
    assert_eq!(i.dest_counters.target_confirms, 1);
    assert_eq!(i.confirmations.delivered(EPOCH_A), Some(5));
    // A reordered older confirmation changes nothing.
    i.handle_dest(&mut confirm(EPOCH_A, 3), 2);
    assert_eq!(i.confirmations.delivered(EPOCH_A), Some(5));
    assert_eq!(i.dest_counters.target_confirms_stale, 1);

    // ARP: a request for our IP is answered in place; for another IP, counted.
    let arp = |target: [u8; 4]| {
        let mut f = vec![0u8; 60];
        emit_header(&mut f, EthernetAddress::BROADCAST, ARBITER, EtherType::ARP).unwrap();
        ArpRepr {
            operation: Operation::Request,
            source_hardware_addr: ARBITER,
            source_protocol_addr: ARBITER_IP,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        }
        .emit(&mut f[14..])
        .unwrap();
        f
    };
    let mut f = arp(D_IP);
    let DestAction::Reply(len) = i.handle_dest(&mut f, 3) else {
        panic!("not answered")
    };
    assert_eq!(len, 42);
    let r = ArpRepr::parse(&taphold_wire::arp::Packet::new_checked(&f[14..42]).unwrap()).unwrap();
    assert_eq!(r.operation, Operation::Reply);
    assert_eq!(
        (r.source_hardware_addr, r.source_protocol_addr),
        (D_MAC, D_IP)
    );
    assert_eq!(&f[0..6], &ARBITER.0);
    assert_eq!(
        i.handle_dest(&mut arp([198, 51, 100, 99]), 3),
        DestAction::Done
    );
    assert_eq!(reason(&i, "arp_not_for_us"), 1);
    // Never journaled, never a panic: any byte of a valid request changed.
    let good = resend(EPOCH_A, 1, 1);
    for at in 0..good.len() {
        let mut f = good.clone();
        f[at] ^= 0x40;
        let _ = i.handle_dest(&mut f, 4);
    }
    assert!(i.run.is_none(), "nothing on D opens or journals a run");
    let _ = DestRefusal::OWN;
}

/// The seqs of each segment file of run `epoch`, in file order.
fn layout(dir: &std::path::Path, epoch: u64) -> BTreeMap<std::path::PathBuf, Vec<u64>> {
    let run = taphold_journal::run_dir(dir, RunId { stream: 1, epoch });
    let mut m: BTreeMap<_, Vec<u64>> = BTreeMap::new();
    for r in taphold_journal::read_records(&run).unwrap() {
        m.entry(r.file).or_default().push(r.seq);
    }
    m
}

/// The seqs left after trimming below `bound` a run laid out as `before`: whole
/// segments whose every seq is below it go, never the last one.
fn kept(before: &BTreeMap<std::path::PathBuf, Vec<u64>>, bound: u64) -> Vec<u64> {
    let n = before.len();
    let mut v: Vec<u64> = before
        .values()
        .enumerate()
        .filter(|(k, seqs)| *k + 1 == n || seqs.iter().any(|&s| s >= bound))
        .flat_map(|(_, s)| s.clone())
        .collect();
    v.sort();
    v
}

fn held_seqs(dir: &std::path::Path, epoch: u64) -> Vec<u64> {
    let mut v: Vec<u64> = layout(dir, epoch).into_values().flatten().collect();
    v.sort();
    v
}

#[test]
fn under_delivered_a_target_confirmation_trims_exactly_below_min_contiguous_delivered() {
    let t = tempfile::tempdir().unwrap();
    // The appliance released up to seq - 1 of each frame: `released` would trim.
    let mut rel = intake_with(&t.path().join("released"), "");
    for s in 1..=200 {
        rel.handle(&backup(EPOCH_A, s, s - 1, false), s).unwrap();
    }
    rel.run.as_mut().unwrap().journal.sync().unwrap();
    let before = layout(&t.path().join("released"), EPOCH_A);
    assert!(before.len() > 5, "{}", before.len());
    rel.trim().unwrap();
    assert_eq!(
        held_seqs(&t.path().join("released"), EPOCH_A),
        kept(&before, 200)
    );

    let dir = t.path().join("delivered");
    let mut i = intake_with(&dir, "  trim_below: delivered\n");
    for s in 1..=200 {
        i.handle(&backup(EPOCH_A, s, s - 1, false), s).unwrap();
    }
    i.run.as_mut().unwrap().journal.sync().unwrap();
    let before = layout(&dir, EPOCH_A);
    // No confirmation: nothing, however far the primary released.
    i.trim().unwrap();
    assert_eq!(held_seqs(&dir, EPOCH_A), (1..=200).collect::<Vec<_>>());
    // One for another run trims nothing here either.
    i.handle_dest(&mut confirm(EPOCH_A + 5, 150), 1);
    i.trim().unwrap();
    assert_eq!(held_seqs(&dir, EPOCH_A), (1..=200).collect::<Vec<_>>());
    // Delivered through 95: below 96, whole segments.
    i.handle_dest(&mut confirm(EPOCH_A, 95), 1);
    i.trim().unwrap();
    assert_eq!(held_seqs(&dir, EPOCH_A), kept(&before, 96));
    assert_eq!(i.run.as_ref().unwrap().journal.floor(), 96);
    assert!(held_seqs(&dir, EPOCH_A).contains(&96));

    // A hole at 150: delivered through 180 still trims only below 150.
    let dir = t.path().join("hole");
    let mut i = intake_with(&dir, "  trim_below: delivered\n");
    for s in (1..=200).filter(|&s| s != 150) {
        i.handle(&backup(EPOCH_A, s, 0, false), s).unwrap();
    }
    i.run.as_mut().unwrap().journal.sync().unwrap();
    let before = layout(&dir, EPOCH_A);
    i.handle_dest(&mut confirm(EPOCH_A, 180), 1);
    i.trim().unwrap();
    assert_eq!(i.run.as_ref().unwrap().journal.contiguous_seq(), 149);
    assert_eq!(held_seqs(&dir, EPOCH_A), kept(&before, 150));
    assert_eq!(i.run.as_ref().unwrap().journal.floor(), 150);
}

#[test]
fn the_trim_bound_is_below_the_lower_of_contiguous_and_the_confirmation() {
    use crate::config::TrimBelow::{Delivered, Released};
    // (mode, current, released, contiguous, delivered) → bound
    for (args, want) in [
        ((Delivered, true, 500, 149, Some(180)), Some(150)),
        ((Delivered, true, 500, 300, Some(180)), Some(181)),
        ((Delivered, false, 0, 300, Some(180)), Some(181)),
        ((Delivered, true, 500, 300, None), None),
        (
            (Delivered, true, u64::MAX, u64::MAX, Some(u64::MAX)),
            Some(u64::MAX),
        ),
        ((Released, true, 90, 149, Some(10)), Some(91)),
        ((Released, true, 500, 149, None), Some(150)),
        ((Released, false, 500, 149, Some(100)), None),
    ] {
        let (m, c, r, k, d) = args;
        assert_eq!(trim_bound(m, c, r, k, d), want, "{args:?}");
    }
}

#[test]
fn older_epoch_runs_are_trimmed_by_their_own_confirmations_to_the_last_segment() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let mut i = intake_with(dir, "  trim_below: delivered\n");
    journal(&mut i, EPOCH_A, 1..=100, 0, &[]);
    let before_a = layout(dir, EPOCH_A);
    // The appliance restarted: epoch B. A is held, not dropped.
    journal(&mut i, EPOCH_B, 1..=60, 0, &[]);
    let before_b = layout(dir, EPOCH_B);
    assert_eq!(i.held.len(), 1);
    i.handle_dest(&mut confirm(EPOCH_A, 70), 1);
    i.handle_dest(&mut confirm(EPOCH_B, 30), 1);
    i.trim().unwrap();
    assert_eq!(held_seqs(dir, EPOCH_A), kept(&before_a, 71));
    assert_eq!(held_seqs(dir, EPOCH_B), kept(&before_b, 31));
    // A wholly delivered: its last segment goes too (nothing more comes to it).
    i.handle_dest(&mut confirm(EPOCH_A, 100), 1);
    i.trim().unwrap();
    assert_eq!(held_seqs(dir, EPOCH_A), Vec::<u64>::new());
    // B, the current run, keeps its active segment whatever is confirmed.
    i.handle_dest(&mut confirm(EPOCH_B, 60), 1);
    i.trim().unwrap();
    assert!(!held_seqs(dir, EPOCH_B).is_empty());
    // What is left of A opens and inspects clean.
    let r = taphold_journal::inspect(dir).unwrap();
    assert!(r.is_clean(), "{r}");
    drop(i);
    // A node started on this directory holds both runs, and trims A by its own
    // confirmation before the appliance says a word.
    let mut again = intake_with(dir, "  trim_below: delivered\n");
    again.open_held().unwrap();
    assert_eq!(again.held.len(), 2);
    again.handle_dest(&mut confirm(EPOCH_B, 45), 1);
    again.trim().unwrap();
    assert_eq!(
        held_seqs(dir, EPOCH_B),
        kept(&layout_after(&before_b, 31), 46)
    );
}

/// `before` as trimming below `bound` left it.
fn layout_after(
    before: &BTreeMap<std::path::PathBuf, Vec<u64>>,
    bound: u64,
) -> BTreeMap<std::path::PathBuf, Vec<u64>> {
    let n = before.len();
    before
        .iter()
        .enumerate()
        .filter(|(k, (_, seqs))| *k + 1 == n || seqs.iter().any(|&s| s >= bound))
        .map(|(_, (p, s))| (p.clone(), s.clone()))
        .collect()
}

#[test]
fn a_held_run_named_after_another_was_entered_is_the_one_journaled_into() {
    let t = tempfile::tempdir().unwrap();
    // On disk from before a restart: run B.
    let mut first = intake_with(t.path(), "");
    journal(&mut first, EPOCH_B, 1..=5, 0, &[]);
    drop(first);
    let mut i = intake_with(t.path(), "");
    i.open_held().unwrap();
    // A delayed frame of an earlier run A comes first, then B goes on.
    i.handle(&backup(EPOCH_A, 1, 0, false), 1).unwrap();
    assert_eq!(i.run.as_ref().unwrap().id.epoch, EPOCH_A);
    i.handle(&backup(EPOCH_B, 6, 0, false), 2).unwrap();
    let cur = i.run.as_ref().unwrap();
    assert_eq!(cur.id.epoch, EPOCH_B, "B, not A put back");
    assert_eq!(cur.journal.config().run.epoch, EPOCH_B);
    assert_eq!(
        i.held.iter().map(|r| r.id.epoch).collect::<Vec<_>>(),
        [EPOCH_A]
    );
    i.run.as_mut().unwrap().journal.sync().unwrap();
    assert_eq!(held_seqs(t.path(), EPOCH_B), (1..=6).collect::<Vec<_>>());
    assert_eq!(held_seqs(t.path(), EPOCH_A), [1]);
}

#[test]
fn the_pacer_allows_one_at_once_then_the_rate() {
    let mut p = Pacer::new(1000, 1_000_000_000);
    assert_eq!(p.allowance(1_000_000_000), 1);
    assert_eq!(p.allowance(999_000_000), 1, "a clock before the start");
    p.sent(1);
    assert_eq!(p.allowance(1_000_500_000), 0);
    assert_eq!(p.allowance(1_001_000_000), 1);
    assert_eq!(p.allowance(1_010_000_000), 10);
    p.sent(10);
    assert_eq!(p.allowance(1_010_000_000), 0);
    assert_eq!(Pacer::new(u64::MAX, 0).allowance(u64::MAX), u64::MAX);
}

/// Runs a takeover to its end on a clock advancing `step_ns` per step; returns the
/// deliveries with the time each went.
fn run_takeover(i: &mut Intake, t: &mut Takeover, step_ns: u64) -> Vec<(u64, Vec<u8>)> {
    let ours = Endpoint {
        mac: D_MAC,
        ip: D_IP,
        port: D_PORT,
    };
    let to = Endpoint {
        mac: NEXT_HOP,
        ip: ARBITER_IP,
        port: 9200,
    };
    let mut now = t.started_ns;
    let mut out = Vec::new();
    for _ in 0..100_000 {
        if t.is_done() {
            return out;
        }
        i.takeover_step(t, now, 32, |d| {
            let mut f = vec![0u8; d.frame_len()];
            write_delivery(&mut f, d, &ours, &to).unwrap();
            out.push((now, f));
            destination::Offer::Taken
        });
        now += step_ns;
    }
    panic!("the takeover never ended: {:?}", t.phase);
}

#[test]
fn a_takeover_replays_exactly_what_is_above_delivered_paced_and_names_what_it_cannot() {
    let t = tempfile::tempdir().unwrap();
    let mut i = intake_with(t.path(), "");
    journal(&mut i, EPOCH_A, 1..=40, 0, &[]);
    // B: 45..=47 never arrived; 50 journaled digest-only.
    journal(
        &mut i,
        EPOCH_B,
        (1..=60).filter(|s| !(45..=47).contains(s)),
        0,
        &[50],
    );
    i.handle_dest(&mut confirm(EPOCH_A, 30), 1);
    i.handle_dest(&mut confirm(EPOCH_B, 20), 1);
    let to: SocketAddrV4 = "198.51.100.30:9200".parse().unwrap();
    let start = 10_000_000_000;
    let mut tk = i.takeover_plan(Trigger::Command, to, 1000, start);
    assert!(tk.is_checking());
    let out = run_takeover(&mut i, &mut tk, 1_000_000);

    // The check named exactly the seqs it could not replay, and why.
    let a = &tk.runs[0];
    let b = &tk.runs[1];
    assert_eq!(
        (a.run.epoch, a.delivered, a.from, a.to),
        (EPOCH_A, Some(30), 31, 40)
    );
    assert!(a.unreplayable.is_empty());
    assert_eq!(
        (b.run.epoch, b.delivered, b.from, b.to),
        (EPOCH_B, Some(20), 21, 60)
    );
    let listed: Vec<(u64, u64, Reason, Option<String>)> = b
        .unreplayable
        .iter()
        .map(|u| (u.from, u.to, u.reason, u.src.map(|s| s.to_string())))
        .collect();
    assert_eq!(
        listed,
        [
            (45, 47, Reason::NotReceived, None),
            (50, 50, Reason::DigestOnly, Some("192.0.2.7:40050".into())),
        ]
    );
    assert_eq!(b.unreplayable_seqs, 4);
    let lines = tk.plan_lines().join("\n");
    assert!(
        lines.contains("45..47 (not received)")
            && lines.contains("50 (digest only, from 192.0.2.7:40050)"),
        "{lines}"
    );

    // Replayed: exactly the seqs above delivered that it holds in full, in order,
    // POSSIBLE_DUPLICATE, to replay_to through the next hop, payloads exact.
    let got: Vec<(u64, u64)> = out
        .iter()
        .map(|(_, f)| {
            let o = parse_out(f);
            assert_eq!(o.header.flags, Flags::POSSIBLE_DUPLICATE);
            assert_eq!(o.payload, payload(o.header.seq));
            assert_eq!(o.header.src_port, 40_000 + o.header.seq as u16);
            assert_eq!(o.header.release_ns, 5_000_000 + o.header.seq);
            assert_eq!(o.to, (ARBITER_IP, 9200, NEXT_HOP));
            assert_eq!(o.from, (D_IP, D_PORT));
            (o.header.epoch, o.header.seq)
        })
        .collect();
    let want: Vec<(u64, u64)> = (31..=40)
        .map(|s| (EPOCH_A, s))
        .chain(
            (21..=60)
                .filter(|s| !(45..=47).contains(s) && *s != 50)
                .map(|s| (EPOCH_B, s)),
        )
        .collect();
    assert_eq!(got, want);
    // Paced: at 1000/s, no more than 1 + elapsed × rate by any time.
    let replay_start = tk.checked_ns.unwrap();
    for (k, (when, _)) in out.iter().enumerate() {
        let allowed = (when - replay_start) / 1_000_000 + 1;
        assert!((k as u64) < allowed, "#{k} at {when}: {allowed} allowed");
    }
    // ... and no slower than the rate either (a step of 1 ms each).
    let n = want.len() as u64;
    let took = out.last().unwrap().0 - replay_start;
    assert!(
        ((n - 1) * 1_000_000..=(n + 1) * 1_000_000).contains(&took),
        "{took} ns for {n}"
    );
    // The report.
    let r = tk.report();
    assert_eq!(r["state"], "done");
    assert_eq!(r["replayed"], want.len() as u64);
    assert_eq!(r["unreplayable_seqs"], 4);
    assert_eq!(r["runs"][0]["first_seq"], 31);
    assert_eq!(r["runs"][0]["last_seq"], 40);
    assert_eq!(r["runs"][1]["replayed"], 36);
    assert_eq!(r["runs"][1]["first_seq"], 21);
    assert_eq!(r["runs"][1]["last_seq"], 60);
    assert_eq!(r["runs"][1]["unreplayable"][1]["src"], "192.0.2.7:40050");
}

#[test]
fn a_takeover_without_confirmations_replays_everything_and_names_trimmed_seqs() {
    let t = tempfile::tempdir().unwrap();
    // Released mode: the journal was trimmed below the primary's watermark, and no
    // confirmation says those were delivered.
    let mut i = intake_with(t.path(), "");
    for s in 1..=120 {
        i.handle(&backup(EPOCH_A, s, s.saturating_sub(10), false), s)
            .unwrap();
    }
    i.run.as_mut().unwrap().journal.sync().unwrap();
    i.trim().unwrap();
    let floor = i.run.as_ref().unwrap().journal.floor();
    let first = held_seqs(t.path(), EPOCH_A)[0];
    assert!(first > 1 && floor > first, "floor {floor} first {first}");
    let to: SocketAddrV4 = "198.51.100.30:9200".parse().unwrap();
    let mut tk = i.takeover_plan(Trigger::Auto, to, 1_000_000, 1);
    let out = run_takeover(&mut i, &mut tk, 1_000);
    let p = &tk.runs[0];
    assert_eq!((p.delivered, p.from, p.to), (None, 1, 120));
    assert_eq!(
        p.unreplayable
            .iter()
            .map(|u| (u.from, u.to, u.reason))
            .collect::<Vec<_>>(),
        [(1, first - 1, Reason::Trimmed)]
    );
    assert_eq!(out.len() as u64, 120 - (first - 1));
    assert_eq!(tk.report()["trigger"], "auto");

    // Under `delivered`, a restarted node knows nothing was trimmed unconfirmed: the
    // floor stands for a confirmation.
    let dir = t.path().join("d");
    let mut i = intake_with(&dir, "  trim_below: delivered\n");
    journal(&mut i, EPOCH_A, 1..=120, 0, &[]);
    i.handle_dest(&mut confirm(EPOCH_A, 100), 1);
    i.trim().unwrap();
    let floor = i.run.as_ref().unwrap().journal.floor();
    drop(i);
    let mut again = intake_with(&dir, "  trim_below: delivered\n");
    again.open_held().unwrap();
    let tk = again.takeover_plan(Trigger::Command, to, 1000, 1);
    assert_eq!(
        (tk.runs[0].delivered, tk.runs[0].from),
        (Some(floor - 1), floor)
    );
}

#[test]
fn a_takeover_with_nothing_to_replay_is_done_at_once() {
    let t = tempfile::tempdir().unwrap();
    let mut i = intake_with(t.path(), "");
    journal(&mut i, EPOCH_A, 1..=10, 0, &[]);
    i.handle_dest(&mut confirm(EPOCH_A, 10), 1);
    let to: SocketAddrV4 = "198.51.100.30:9200".parse().unwrap();
    let mut tk = i.takeover_plan(Trigger::Command, to, 1000, 1);
    assert_eq!(tk.phase, Phase::Done);
    assert!(run_takeover(&mut i, &mut tk, 1).is_empty());
    assert!(tk.plan_lines()[0].contains("nothing above it to replay"));
    let empty = Intake::takeover_plan(
        &intake_with(&t.path().join("e"), ""),
        Trigger::Command,
        to,
        1,
        1,
    );
    assert!(empty.is_done() && empty.runs.is_empty());
}

#[test]
fn only_authentic_frames_of_the_primary_count_as_heard() {
    let t = tempfile::tempdir().unwrap();
    let mut i = intake_with(t.path(), "");
    assert_eq!(i.last_heard_ns(), None);
    i.handle(&backup(EPOCH_B, 1, 0, false), 100).unwrap();
    assert_eq!(i.last_heard_ns(), Some(100));
    // Forged (another key), corrupted, an earlier run's: not the primary alive.
    let mut bad = backup(EPOCH_B, 2, 0, false);
    let n = bad.len();
    bad[n - 20] ^= 1;
    assert!(i.handle(&bad, 200).is_err());
    assert_eq!(
        i.handle(&backup(EPOCH_A, 2, 0, false), 300),
        Err(Ok(Refusal::StaleEpoch))
    );
    // Nor anything on D.
    i.handle_dest(&mut confirm(EPOCH_B, 1), 400);
    assert_eq!(i.last_heard_ns(), Some(100));
    // A duplicate is: the primary resent it.
    i.handle(&backup(EPOCH_B, 1, 0, false), 500).unwrap();
    assert_eq!(i.last_heard_ns(), Some(500));
}

#[test]
fn confirmations_of_many_runs_forget_the_oldest() {
    let mut c = crate::destination::Confirmations::default();
    let conf = |epoch, seq| TargetConfirmRepr {
        stream: 1,
        epoch,
        seq,
        timestamp_ns: 0,
        highest_seen: seq,
        skipped: 0,
    };
    for e in 1..=(destination::CONFIRMED_RUNS as u64 + 2) {
        c.note(&conf(e + 100, e), e);
    }
    assert_eq!(c.evicted, 2);
    assert_eq!(c.delivered(101), None);
    assert_eq!(c.delivered(102), None);
    assert_eq!(c.delivered(103), Some(3));
    assert_eq!(c.note(&conf(103, 2), 0), destination::Noted::Stale);
    assert_eq!(c.note(&conf(103, 3), 0), destination::Noted::Same);
    assert_eq!(c.note(&conf(103, 9), 0), destination::Noted::Raised);
    assert_eq!(c.get(103).unwrap().confirms, 4);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    /// Any bytes on D, or a valid request cut or damaged anywhere: counted, never a
    /// panic, never journaled.
    #[test]
    fn anything_on_d_is_counted_never_a_panic(
        junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        cut in 0usize..200,
        flip in 0usize..200,
        which in 0u8..3,
    ) {
        let t = tempfile::tempdir().unwrap();
        let mut i = intake_with(t.path(), "");
        let mut f = match which {
            0 => junk,
            1 => resend(EPOCH_A, 5, 3),
            _ => confirm(EPOCH_A, 9),
        };
        if which > 0 {
            f.truncate(cut.max(1).min(f.len()));
            let n = f.len();
            f[flip % n] ^= 0x5a;
        }
        let before = i.dest_counters.frames_rx;
        let _ = i.handle_dest(&mut f, 1);
        proptest::prop_assert_eq!(i.dest_counters.frames_rx, before + 1);
        proptest::prop_assert!(i.run.is_none());
    }
}

/// A gateway-mode backup frame (content mode 2) of seq, watermark `w`.
fn tcp_backup(epoch: u64, seq: u64, w: u64) -> Vec<u8> {
    let k = key();
    let p = payload(seq);
    let seg = taphold_wire::taphold::TcpSegmentRepr {
        src_ip: SRC_IP,
        src_port: 40_001,
        payload_len: p.len() as u16,
        dst_ip: [10, 71, 2, 2],
        dst_port: 9878,
        tcp_flags: 0x18,
        tcp_seq: 1000 + 64 * seq as u32,
        content: &p,
    };
    let r = BackupRepr {
        link: 0,
        flags: Flags::EMPTY,
        stream: 1,
        epoch,
        seq,
        timestamp_ns: 5_000_000 + seq,
        watermark: w,
        src_ip: SRC_IP,
        src_port: 40_001,
        payload_len: p.len() as u16,
        content: Content::Tcp(seg),
    };
    let mut pdu = vec![0u8; r.buffer_len()];
    r.emit(&mut pdu, &k).unwrap();
    let mut f = vec![0u8; link::frame_len(pdu.len())];
    link::emit_frame(&mut f, OURS, APPLIANCE, pdu.len(), |b| {
        b.copy_from_slice(&pdu);
        Ok(0)
    })
    .unwrap();
    f
}

#[test]
fn under_released_a_run_of_tcp_segments_is_never_trimmed() {
    // Gateway mode: released is not acknowledged by the exchange, and recover
    // needs what it has not acknowledged; the released watermark trims nothing.
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("gateway");
    let mut i = intake_with(&dir, "");
    for s in 1..=200 {
        i.handle(&tcp_backup(EPOCH_A, s, s - 1), s).unwrap();
    }
    i.run.as_mut().unwrap().journal.sync().unwrap();
    assert!(layout(&dir, EPOCH_A).len() > 5);
    i.trim().unwrap();
    assert_eq!(held_seqs(&dir, EPOCH_A), (1..=200).collect::<Vec<_>>());
    // The same frames as UDP messages are trimmed below the watermark.
    let dir = t.path().join("listener");
    let mut i = intake_with(&dir, "");
    for s in 1..=200 {
        i.handle(&backup(EPOCH_A, s, s - 1, false), s).unwrap();
    }
    i.run.as_mut().unwrap().journal.sync().unwrap();
    let before = layout(&dir, EPOCH_A);
    i.trim().unwrap();
    assert_eq!(held_seqs(&dir, EPOCH_A), kept(&before, 200));
    assert!(held_seqs(&dir, EPOCH_A).len() < 200);
}
