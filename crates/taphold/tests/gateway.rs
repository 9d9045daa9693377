//! Gateway mode end to end, through the real binary: test-pcaps/gateway.pcap
//! (two FIX sessions from a trading engine to an exchange: handshakes, orders,
//! execution reports back, pure ACKs, a retransmitted and two reordered
//! segments, FINs, then junk) replayed into P with config/gateway.yaml, the
//! backup link and tap modelled in process, everything that leaves checked.
//!
//! The runs are serialised (one DPDK process at a time): on a 2-core machine
//! every run's worker lcore shares core 1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use dpdk::testing::pcap;
use serde_json::Value;
use taphold_wire::digest::DigestKey;
use taphold_wire::ethernet::{EtherType, EthernetAddress, Frame};
use taphold_wire::ipv4;
use taphold_wire::taphold::{BackupRepr, ConfirmRepr, Content, FlowAckRepr, MsgType, Packet};
use taphold_wire::tcp;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const KEY: &str = "5461706f6c642d64656d6f2d6b657931";
const OURS: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const ENGINE: ([u8; 4], EthernetAddress) = ([10, 71, 1, 2], EthernetAddress([2, 0, 0, 0, 0xe, 1]));
const EXCHANGE: ([u8; 4], EthernetAddress) =
    ([10, 71, 2, 2], EthernetAddress([2, 0, 0, 0, 0xe, 2]));

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn key() -> DigestKey {
    DigestKey::from_hex(KEY).unwrap()
}

struct Run {
    out: PathBuf,
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn summary(&self) -> Value {
        let text = std::fs::read_to_string(self.out.join("summary.json")).unwrap_or_else(|e| {
            panic!(
                "summary.json: {e}\nstdout:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        });
        serde_json::from_str(&text).unwrap()
    }
    fn pcap(&self, name: &str) -> Vec<Vec<u8>> {
        let p = self.out.join(name);
        if !p.exists() {
            return Vec::new();
        }
        pcap::read(&p).unwrap()
    }
    fn events(&self) -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(self.out.join("events.csv")).unwrap();
        text.lines()
            .skip(1)
            .map(|l| l.split(',').map(String::from).collect())
            .collect()
    }
}

/// Replays gateway.pcap with config/gateway.yaml edited by `edit`.
fn replay(tag: &str, edit: impl Fn(String) -> String) -> Run {
    replay_input(tag, &repo().join("test-pcaps/gateway.pcap"), edit)
}

/// Replays `frames`, a capture made by the test, likewise.
fn replay_frames(tag: &str, frames: &[Vec<u8>], edit: impl Fn(String) -> String) -> Run {
    let input = std::env::temp_dir().join(format!("taphold-gw-{tag}-{}.pcap", std::process::id()));
    pcap::write(&input, frames).unwrap();
    let r = replay_input(tag, &input, edit);
    let _ = std::fs::remove_file(&input);
    r
}

/// Replays `input` with config/gateway.yaml edited by `edit`.
fn replay_input(tag: &str, input: &Path, edit: impl Fn(String) -> String) -> Run {
    let root = repo();
    let out = std::env::temp_dir().join(format!("taphold-gw-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let config = out.join("config.yaml");
    let text = std::fs::read_to_string(root.join("config/gateway.yaml")).unwrap();
    let text = edit(text).replace(
        "state_dir: /tmp/taphold-state",
        &format!("state_dir: {}", out.join("state").display()),
    );
    std::fs::write(&config, text).unwrap();
    let o = Command::new(root.join("scripts/replay.sh"))
        .arg(input)
        .arg(&out)
        .env("TAPHOLD_BIN", env!("CARGO_BIN_EXE_taphold"))
        .env("TAPHOLD_CONFIG", &config)
        .env("TAPHOLD_IDLE_MS", "400")
        .output()
        .unwrap();
    Run {
        out,
        status: o.status,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn n(v: &Value, path: &str) -> u64 {
    let mut v = v;
    for k in path.split('.') {
        v = &v[k];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("{path} is not a number: {v}"))
}

fn expected() -> Value {
    let text = std::fs::read_to_string(repo().join("test-pcaps/gateway.expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// An IPv4/TCP frame's parts, as far as these tests look.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seg {
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    ident: u16,
    ttl: u8,
    seq: u32,
    flags: u8,
    payload: Vec<u8>,
}

fn seg(frame: &[u8]) -> Option<Seg> {
    let eth = Frame::new_checked(frame).ok()?;
    if eth.ethertype() != EtherType::IPV4 {
        return None;
    }
    let ip = ipv4::Packet::new_checked(eth.payload()).ok()?;
    if ip.protocol() != ipv4::PROTOCOL_TCP {
        return None;
    }
    let t = tcp::Packet::new_checked(ip.payload()).ok()?;
    Some(Seg {
        src: (ip.src_addr(), t.src_port()),
        dst: (ip.dst_addr(), t.dst_port()),
        ident: ip.ident(),
        ttl: ip.ttl(),
        seq: t.seq_number(),
        flags: t.flags(),
        payload: t.payload().to_vec(),
    })
}

fn input() -> Vec<Vec<u8>> {
    pcap::read(&repo().join("test-pcaps/gateway.pcap")).unwrap()
}

fn to_exchange_protected(s: &Seg) -> bool {
    s.dst.0 == EXCHANGE.0 && (9878..=9879).contains(&s.dst.1) && s.ttl > 1
}

/// The frames of the capture the appliance must hold: valid protected
/// segments (the junk copies of a protected flow are refused).
fn protected_in(inp: &[Vec<u8>]) -> Vec<(Vec<u8>, Seg)> {
    inp.iter()
        .filter_map(|f| Some((f.clone(), seg(f)?)))
        .filter(|(f, s)| {
            to_exchange_protected(s)
                && f[0..6] == OURS.0
                && s.payload.len() <= 1400
                && tcp::Packet::new_checked(&f[34..f.len().min(14 + be16(&f[16..18]) as usize)])
                    .map(|t| t.verify_checksum(s.src.0, s.dst.0))
                    .unwrap_or(false)
        })
        .collect()
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn assert_clean(r: &Run) -> Value {
    let s = r.summary();
    let want = if s["mode"]["final"] == "halt" { 3 } else { 0 };
    assert_eq!(r.status.code(), Some(want), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(s["messages"]["unaccounted"].as_i64(), Some(0), "{s:#}");
    assert_eq!(n(&s, "hot_path_allocations"), 0, "the hot path allocated");
    assert_eq!(n(&s, "mempool.in_use_at_exit"), 0, "mbufs leaked");
    assert_eq!(n(&s, "events.order_violations"), 0);
    s
}

/// Forwarding changed the MACs, TTL and IPv4 checksum, and nothing else.
fn assert_forwarded(orig: &[u8], out: &[u8], next_hop: EthernetAddress) {
    let ip_end = 14 + be16(&orig[16..18]) as usize;
    assert_eq!(&out[0..6], &next_hop.0, "destination MAC");
    assert_eq!(&out[6..12], &OURS.0, "source MAC");
    assert_eq!(out[22], orig[22] - 1, "TTL");
    assert!(ipv4::Packet::new_checked(&out[14..])
        .unwrap()
        .verify_checksum());
    for i in 12..ip_end {
        if ![22, 24, 25].contains(&i) {
            assert_eq!(out[i], orig[i], "byte {i} changed");
        }
    }
}

#[test]
fn protected_segments_leave_after_their_tap_copy_byte_identical_in_flow_order() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let r = replay("flow", |c| c);
    let s = assert_clean(&r);
    let exp = expected();
    let inp = input();
    let out = r.pcap("destination.pcap");

    // Every protected segment, data or not, left once, in its flow's order,
    // rewritten as a router would and otherwise byte-identical.
    let by_ident: BTreeMap<u16, &Vec<u8>> = inp
        .iter()
        .filter_map(|f| Some((seg(f)?.ident, f)))
        .collect();
    for (sport, dport) in [(40001u16, 9878u16), (40002, 9879)] {
        let flow = |s: &Seg| s.src == (ENGINE.0, sport) && s.dst == (EXCHANGE.0, dport);
        let want: Vec<Seg> = protected_in(&inp)
            .into_iter()
            .map(|(_, s)| s)
            .filter(flow)
            .collect();
        let got: Vec<Seg> = out.iter().filter_map(|f| seg(f)).filter(flow).collect();
        let strip = |v: &[Seg]| -> Vec<(u32, u8, Vec<u8>, u16)> {
            v.iter()
                .map(|s| (s.seq, s.flags, s.payload.clone(), s.ident))
                .collect()
        };
        assert_eq!(strip(&got), strip(&want), "flow {sport}->{dport}");
    }
    for f in &out {
        let Some(sg) = seg(f) else { continue };
        let orig = by_ident[&sg.ident];
        let next = if sg.dst.0 == EXCHANGE.0 {
            EXCHANGE.1
        } else {
            ENGINE.1
        };
        assert_forwarded(orig, f, next);
    }

    // Each held segment is a message: its backup frame (mode 2) carries the
    // flow, TCP seq and payload, and it was released after its tap copy.
    let data: Vec<Seg> = protected_in(&inp)
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| !s.payload.is_empty())
        .collect();
    assert_eq!(data.len() as u64, n(&exp, "protected_data"));
    assert_eq!(n(&s, "gateway.protected_segments"), data.len() as u64);
    let held = n(&s, "gateway.protected_segments") + n(&s, "gateway.protected_control_held");
    assert_eq!(n(&s, "messages.accepted"), held);
    assert_eq!(n(&s, "messages.released"), held);
    assert_eq!(
        held + n(&s, "gateway.protected_control_forwarded"),
        n(&exp, "protected_data") + n(&exp, "protected_control")
    );
    let frames: Vec<(u64, Vec<u8>)> = r
        .pcap("backup.pcap")
        .iter()
        .filter_map(|f| {
            let p = Packet::new_checked(&f[14..]).ok()?;
            (p.msg_type() == MsgType::Backup).then(|| (p.seq(), f[14..].to_vec()))
        })
        .collect();
    assert_eq!(
        frames.len() as u64,
        held,
        "one backup frame per held segment"
    );
    let mut backed_up = Vec::new();
    for (seq, pdu) in &frames {
        let p = Packet::new_checked(&pdu[..]).unwrap();
        let b = BackupRepr::parse(&p, &key()).unwrap();
        let Content::Tcp(t) = b.content else {
            panic!("seq {seq}: not a tcp backup frame: {:?}", b.content)
        };
        assert_eq!(t.src_ip, ENGINE.0);
        assert_eq!(t.dst_ip, EXCHANGE.0);
        if !t.content.is_empty() {
            backed_up.push((t.tcp_seq, t.content.to_vec()));
        }
    }
    let want: Vec<(u32, Vec<u8>)> = data.iter().map(|s| (s.seq, s.payload.clone())).collect();
    assert_eq!(backed_up, want, "backup frames in arrival order");
    let ev = r.events();
    assert_eq!(ev.len() as u64, held);
    for e in &ev {
        let (launch, tap, release): (u64, u64, u64) = (
            e[4].parse().unwrap(),
            e[5].parse().unwrap(),
            e[6].parse().unwrap(),
        );
        assert_eq!(e[7], "released", "{e:?}");
        assert!(launch > 0 && tap >= launch && release >= tap, "{e:?}");
    }

    // Return traffic went out at once and was never held or backed up.
    let returned: Vec<Seg> = out
        .iter()
        .filter_map(|f| seg(f))
        .filter(|s| s.src.0 == EXCHANGE.0)
        .collect();
    assert_eq!(returned.len() as u64, n(&exp, "returned"));
    assert_eq!(n(&s, "gateway.returned"), n(&exp, "returned"));

    // What no rule protects, forwarded; junk refused by name; ARP answered
    // for both our addresses; an unknown next hop asked for, its frame counted.
    assert_eq!(n(&s, "gateway.forwarded"), n(&exp, "forwarded"));
    for (reason, count) in exp["dropped"].as_object().unwrap() {
        assert_eq!(
            n(&s, &format!("ingress.drop_{reason}")),
            count.as_u64().unwrap(),
            "{reason}"
        );
    }
    assert_eq!(n(&s, "gateway.drop_no_neighbor"), n(&exp, "no_neighbor"));
    assert_eq!(n(&s, "ingress.arp_replies"), n(&exp, "arp_request"));
    let arp_out: Vec<&Vec<u8>> = out
        .iter()
        .filter(|f| Frame::new_checked(&f[..]).unwrap().ethertype() == EtherType::ARP)
        .collect();
    let asked = arp_out.iter().filter(|f| f[0..6] == [0xff; 6]).count() as u64;
    assert_eq!(asked, n(&s, "gateway.arp_requests_sent"));
    assert!(asked >= 1);
    assert!(
        arp_out.iter().any(|f| f[38..42] == [10, 71, 2, 99]),
        "asked for the unknown next hop"
    );

    // The exchange's last acknowledgement of each flow reached the backup node.
    let mut acks: BTreeMap<String, u32> = BTreeMap::new();
    for f in r.pcap("backup.pcap") {
        let Ok(p) = Packet::new_checked(&f[14..]) else {
            continue;
        };
        if p.msg_type() == MsgType::FlowAck {
            let a = FlowAckRepr::parse(&p, &key()).unwrap();
            let name = format!(
                "{}:{}-{}:{}",
                std::net::Ipv4Addr::from(a.src_ip),
                a.src_port,
                std::net::Ipv4Addr::from(a.dst_ip),
                a.dst_port
            );
            acks.insert(name, a.acked);
        }
    }
    // Their tap copies are recognised as ours, not as strays.
    assert!(n(&s, "tap.b1.flow_acks") >= 1, "{:#}", s["tap"]);
    assert_eq!(n(&s, "tap.b1.unexpected_type"), 0);
    for (flow, f) in exp["flows"].as_object().unwrap() {
        assert_eq!(
            acks.get(flow).copied(),
            Some(n(f, "last_ack_from_exchange") as u32),
            "{flow}: {acks:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&r.out);
}

#[test]
fn with_the_tap_cut_no_protected_data_reaches_the_exchange_and_return_traffic_still_flows() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let r = replay("cut", |c| c.replace("tap: mirror", "tap: cut"));
    let s = assert_clean(&r);
    let exp = expected();
    let out = r.pcap("destination.pcap");
    let leaked: Vec<Seg> = out
        .iter()
        .filter_map(|f| seg(f))
        .filter(|s| to_exchange_protected(s) && !s.payload.is_empty())
        .collect();
    assert!(leaked.is_empty(), "left without a tap copy: {leaked:?}");
    assert_eq!(n(&s, "messages.released"), 0);
    assert_eq!(
        n(&s, "messages.held_at_shutdown"),
        n(&s, "messages.accepted")
    );
    assert!(n(&s, "gateway.protected_segments") >= 1);
    assert_eq!(s["mode"]["final"], "halt");
    // Never held: the exchange's side keeps flowing to the engine.
    let returned = out
        .iter()
        .filter_map(|f| seg(f))
        .filter(|s| s.src.0 == EXCHANGE.0)
        .count() as u64;
    assert_eq!(returned, n(&exp, "returned"));
    // The held segments are written out as they would have left, in order.
    let held: Vec<Seg> = r.pcap("held.pcap").iter().filter_map(|f| seg(f)).collect();
    assert_eq!(held.len() as u64, n(&s, "messages.accepted"));
    assert!(held.iter().all(to_exchange_protected));
    let _ = std::fs::remove_dir_all(&r.out);
}

#[test]
fn refusing_other_traffic_by_rule_counts_it() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let r = replay("refuse", |c| c.replace("other: forward", "other: refuse"));
    let s = assert_clean(&r);
    let exp = expected();
    assert_eq!(n(&s, "gateway.forwarded"), 0);
    assert_eq!(
        n(&s, "ingress.drop_refused_by_rule"),
        n(&exp, "forwarded") + n(&exp, "no_neighbor")
    );
    // Protected flows are untouched by the rule.
    assert_eq!(
        n(&s, "gateway.protected_segments"),
        n(&exp, "protected_data")
    );
    let _ = std::fs::remove_dir_all(&r.out);
}

#[test]
fn fix_compact_backup_frames_rebuild_every_order_with_valid_framing() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let r = replay("compact", |c| {
        c.replace("content: tcp ", "content: fix-compact ")
    });
    let s = assert_clean(&r);
    let exp = expected();
    // Every data segment of the capture holds whole FIX messages.
    assert_eq!(n(&s, "gateway.fix_compact"), n(&exp, "protected_data"));
    assert_eq!(n(&s, "gateway.fix_compact_fallback"), 0);
    let originals: Vec<Vec<u8>> = protected_in(&input())
        .into_iter()
        .flat_map(|(_, sg)| {
            taphold_fix::split(&sg.payload)
                .map(|p| match p {
                    taphold_fix::Piece::Message { message, .. } => message.raw().to_vec(),
                    other => panic!("the capture's FIX is whole: {other:?}"),
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let mut rebuilt = Vec::new();
    let mut compact_bytes = 0;
    let mut payload_bytes = 0;
    for f in r.pcap("backup.pcap") {
        let Ok(p) = Packet::new_checked(&f[14..]) else {
            continue;
        };
        if p.msg_type() != MsgType::Backup {
            continue;
        }
        let b = BackupRepr::parse(&p, &key()).unwrap();
        match b.content {
            Content::FixCompact(t) => {
                compact_bytes += t.content.len();
                payload_bytes += usize::from(t.payload_len);
                for m in taphold_fix::records(t.content) {
                    rebuilt.push(taphold_fix::rebuild(&m.unwrap(), None));
                }
            }
            // Segments without payload have nothing to compact.
            Content::Tcp(t) => assert!(t.content.is_empty(), "a data segment went in full"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(rebuilt.len(), originals.len());
    assert!(
        compact_bytes < payload_bytes,
        "compact is smaller: {compact_bytes} of {payload_bytes} bytes"
    );
    const KEPT: [u32; 12] = [8, 35, 34, 11, 54, 55, 38, 44, 40, 59, 52, 49];
    for (orig, new) in originals.iter().zip(&rebuilt) {
        let o = taphold_fix::Message::parse_at(orig).unwrap();
        // Valid framing: parse_at checks BodyLength and CheckSum.
        let m = taphold_fix::Message::parse_at(new)
            .unwrap_or_else(|e| panic!("rebuilt message invalid ({e:?}): {new:?}"));
        for tag in KEPT {
            assert_eq!(m.get(tag), o.get(tag), "tag {tag}");
        }
    }
    let _ = std::fs::remove_dir_all(&r.out);
}

/// config/gateway.yaml with every protected segment confirmed to a listener
/// (the engine's confirmation service), on P's second transmit queue.
fn with_confirmations(c: String) -> String {
    c.replace("tx_queues: 1 ", "tx_queues: 2 ").replace(
        "      ports: 9878-9879\n",
        "      ports: 9878-9879\n      confirm_to: {ip: 10.71.1.2, port: 7000, mac: \"02:00:00:00:0e:01\"}\n",
    )
}

#[test]
fn released_segments_are_confirmed_to_the_listener_after_release_and_only_then() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let r = replay("confirm", with_confirmations);
    let s = assert_clean(&r);
    let data: Vec<Seg> = protected_in(&input())
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| !s.payload.is_empty())
        .collect();
    let confirms: Vec<ConfirmRepr> = r
        .pcap("source.pcap")
        .iter()
        .map(|f| {
            assert_eq!(&f[0..6], &ENGINE.1 .0, "to the listener's MAC");
            assert_eq!(&f[30..34], &ENGINE.0, "to the listener's address");
            assert_eq!(u16::from_be_bytes([f[36], f[37]]), 7000);
            ConfirmRepr::parse(&Packet::new_checked(&f[42..]).unwrap(), &key()).unwrap()
        })
        .collect();
    assert_eq!(confirms.len(), data.len(), "one per data segment");
    assert_eq!(n(&s, "egress.confirmations_sent"), data.len() as u64);
    for (c, d) in confirms.iter().zip(&data) {
        assert_eq!(&c.echo[0..4], &d.src.0);
        assert_eq!(u16::from_be_bytes([c.echo[4], c.echo[5]]), d.src.1);
        assert_eq!(&c.echo[6..10], &d.dst.0);
        assert_eq!(u16::from_be_bytes([c.echo[10], c.echo[11]]), d.dst.1);
        assert_eq!(
            u32::from_be_bytes(c.echo[12..16].try_into().unwrap()),
            d.seq,
            "the confirmed bytes start at the segment's TCP seq"
        );
        assert_eq!(usize::from(c.payload_len), d.payload.len());
    }
    // Each confirmation's message seq was released, after its tap copy.
    let released: BTreeMap<u64, (u64, u64)> = r
        .events()
        .iter()
        .map(|e| {
            (
                e[0].parse().unwrap(),
                (e[5].parse().unwrap(), e[6].parse().unwrap()),
            )
        })
        .collect();
    for c in &confirms {
        let (tap, release) = released[&c.seq];
        assert!(
            tap > 0 && release >= tap && c.timestamp_ns >= release,
            "{c:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&r.out);

    // With the tap cut nothing is released, so nothing is confirmed.
    let r = replay("confirm-cut", |c| {
        with_confirmations(c).replace("tap: mirror", "tap: cut")
    });
    let s = assert_clean(&r);
    assert!(n(&s, "messages.accepted") > 0);
    assert_eq!(r.pcap("source.pcap").len(), 0);
    assert_eq!(n(&s, "egress.confirmations_sent"), 0);
    let _ = std::fs::remove_dir_all(&r.out);
}

/// An Ethernet/IPv4/TCP frame to our MAC, checksums right.
#[allow(clippy::too_many_arguments)]
fn tcp_frame(
    from: ([u8; 4], EthernetAddress),
    sport: u16,
    to: [u8; 4],
    dport: u16,
    seq: u32,
    flags: u8,
    data: &[u8],
    ident: u16,
) -> Vec<u8> {
    use taphold_wire::ethernet::EthernetRepr;
    use taphold_wire::ipv4::Ipv4Repr;
    let seg_len = tcp::HEADER_LEN + data.len();
    let mut b = vec![0u8; 14 + 20 + seg_len];
    EthernetRepr {
        src_addr: from.1,
        dst_addr: OURS,
        ethertype: EtherType::IPV4,
    }
    .emit(&mut b)
    .unwrap();
    Ipv4Repr {
        src_addr: from.0,
        dst_addr: to,
        protocol: ipv4::PROTOCOL_TCP,
        payload_len: seg_len as u16,
        ttl: 64,
    }
    .emit(&mut b[14..])
    .unwrap();
    ipv4::Packet::new_unchecked(&mut b[14..]).set_ident(ident);
    ipv4::Packet::new_unchecked(&mut b[14..]).fill_checksum();
    b[54..].copy_from_slice(data);
    let mut t = tcp::Packet::new_unchecked(&mut b[34..]);
    t.set_src_port(sport);
    t.set_dst_port(dport);
    t.set_seq_number(seq);
    t.set_ack_number(if flags & tcp::flags::ACK != 0 { 1 } else { 0 });
    t.set_header_len(20);
    t.set_flags(flags);
    t.set_window(64240);
    t.fill_checksum(from.0, to);
    b
}

/// An ARP packet from `from` to us.
fn arp_frame(
    op: taphold_wire::arp::Operation,
    from: ([u8; 4], EthernetAddress),
    target: [u8; 4],
) -> Vec<u8> {
    use taphold_wire::arp::ArpRepr;
    use taphold_wire::ethernet::EthernetRepr;
    let mut f = vec![0u8; 60];
    EthernetRepr {
        src_addr: from.1,
        dst_addr: OURS,
        ethertype: EtherType::ARP,
    }
    .emit(&mut f)
    .unwrap();
    ArpRepr {
        operation: op,
        source_hardware_addr: from.1,
        source_protocol_addr: from.0,
        target_hardware_addr: OURS,
        target_protocol_addr: target,
    }
    .emit(&mut f[14..])
    .unwrap();
    f
}

#[test]
fn a_frame_for_an_unresolved_next_hop_waits_for_its_arp_reply_instead_of_being_lost() {
    use taphold_wire::arp::Operation;
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (s, d) = (tcp::flags::SYN, tcp::flags::ACK | tcp::flags::PSH);
    // No static neighbours: the engine ARPs for its gateway (we learn it), its
    // SYN finds the exchange unresolved (parked, asked for), the exchange's
    // reply arrives, then the SYN-ACK back and an order.
    let frames = vec![
        arp_frame(Operation::Request, ENGINE, [10, 71, 1, 1]),
        tcp_frame(ENGINE, 40001, EXCHANGE.0, 9878, 100, s, b"", 1),
        tcp_frame(
            ENGINE,
            40001,
            EXCHANGE.0,
            9878,
            101,
            d,
            b"8=FIX.4.2\x01early",
            2,
        ),
        arp_frame(Operation::Reply, EXCHANGE, [10, 71, 2, 1]),
        tcp_frame(
            EXCHANGE,
            9878,
            ENGINE.0,
            40001,
            500,
            s | tcp::flags::ACK,
            b"",
            3,
        ),
        tcp_frame(
            ENGINE,
            40001,
            EXCHANGE.0,
            9878,
            106,
            d,
            b"8=FIX.4.2\x01order",
            4,
        ),
    ];
    let r = replay_frames("park", &frames, |text| {
        // No static neighbours.
        let i = text.find("  neighbors:").unwrap();
        let j = text.find("  protect:").unwrap();
        format!("{}{}", &text[..i], &text[j..])
    });
    let sm = assert_clean(&r);
    // The SYN and the order behind it; and the order after the reply, which
    // arrived in the same burst while they were still parked: it must not
    // overtake them.
    assert_eq!(n(&sm, "gateway.arp_parked"), 3);
    assert_eq!(n(&sm, "gateway.drop_no_neighbor"), 0, "{:#}", sm["gateway"]);
    assert_eq!(
        n(&sm, "gateway.arp_learned"),
        2,
        "the engine's request, the exchange's reply"
    );
    assert_eq!(n(&sm, "gateway.arp_requests_sent"), 1);
    let sent = r.pcap("destination.pcap");
    let segs: Vec<Seg> = sent.iter().filter_map(|f| seg(f)).collect();
    let idents: Vec<u16> = segs.iter().map(|s| s.ident).collect();
    // The parked SYN and order left in their order, before the later order;
    // the SYN-ACK went back to the engine without any ARP of ours.
    let pos = |id| idents.iter().position(|&i| i == id).unwrap();
    assert_eq!(idents.len(), 4, "{idents:?}");
    assert!(pos(1) < pos(2) && pos(2) < pos(4), "{idents:?}");
    let syn_ack = sent
        .iter()
        .find(|f| seg(f).is_some_and(|s| s.ident == 3))
        .unwrap();
    assert_eq!(&syn_ack[0..6], &ENGINE.1 .0);
    let asked: Vec<&Vec<u8>> = sent
        .iter()
        .filter(|f| f[12..14] == [0x08, 0x06] && f[0..6] == [0xff; 6])
        .collect();
    assert_eq!(asked.len(), 1);
    assert_eq!(&asked[0][38..42], &EXCHANGE.0, "asked for the exchange");
    let _ = std::fs::remove_dir_all(&r.out);
}

/// Q's MAC in the two-port runs.
const Q_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);

/// Two-port gateway: config/gateway.yaml with the exchange's subnet on Q
/// (net_pcap2), and a router on Q that never answers (10.71.2.254).
fn two_port_config(tap: &str) -> String {
    let text = std::fs::read_to_string(repo().join("config/gateway.yaml")).unwrap();
    let edits = [
        (
            "  addresses: [10.71.2.1]  # the exchange's gateway, on the same segment",
            "  port2:\n    port: net_pcap2\n    mac: 02:00:00:00:00:02\n    addresses: [10.71.2.1]",
        ),
        (
            "    - prefix: 10.71.2.0/24   # directly connected: the exchange",
            "    - prefix: 10.71.2.0/24\n      port: q\n    - prefix: 10.9.0.0/16\n      via: 10.71.2.254\n      port: q",
        ),
        ("tap: mirror", tap),
    ];
    let mut text = text;
    for (from, to) in edits {
        assert!(text.contains(from), "no `{from}`");
        text = text.replacen(from, to, 1);
    }
    text
}

/// The engine's side (into P) and the exchange's side (into Q) of one
/// protected FIX session, with ARP on both ports.
fn two_port_input() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    use taphold_wire::arp::Operation;
    let (syn, ack, fin) = (tcp::flags::SYN, tcp::flags::ACK, tcp::flags::FIN);
    let psh = ack | tcp::flags::PSH;
    let to_q = |mut f: Vec<u8>| {
        f[0..6].copy_from_slice(&Q_MAC.0);
        f
    };
    let p = vec![
        arp_frame(Operation::Request, ENGINE, [10, 71, 1, 1]),
        // Q's address, asked on P: not answered there.
        arp_frame(Operation::Request, ENGINE, [10, 71, 2, 1]),
        // A neighbour on Q's segment claimed on P: not believed.
        arp_frame(
            Operation::Reply,
            ([10, 71, 2, 77], EthernetAddress([2, 0, 0, 0, 0xe, 0x77])),
            [10, 71, 1, 1],
        ),
        tcp_frame(ENGINE, 40001, EXCHANGE.0, 9878, 100, syn, b"", 1),
        tcp_frame(
            ENGINE,
            40001,
            EXCHANGE.0,
            9878,
            101,
            psh,
            b"8=FIX.4.2\x01one",
            2,
        ),
        tcp_frame(ENGINE, 40001, EXCHANGE.0, 9878, 115, ack, b"", 3),
        tcp_frame(
            ENGINE,
            40001,
            EXCHANGE.0,
            9878,
            115,
            psh,
            b"8=FIX.4.2\x01two",
            4,
        ),
        tcp_frame(ENGINE, 40001, EXCHANGE.0, 9878, 129, fin | ack, b"", 5),
        // Not protected: forwarded at once.
        tcp_frame(ENGINE, 40009, EXCHANGE.0, 80, 7, psh, b"GET /", 6),
    ];
    let q = vec![
        to_q(arp_frame(Operation::Request, EXCHANGE, [10, 71, 2, 1])),
        to_q(tcp_frame(
            EXCHANGE,
            9878,
            ENGINE.0,
            40001,
            500,
            syn | ack,
            b"",
            101,
        )),
        to_q(tcp_frame(
            EXCHANGE,
            9878,
            ENGINE.0,
            40001,
            501,
            psh,
            b"8=FIX.4.2\x01exec",
            102,
        )),
        to_q(tcp_frame(
            EXCHANGE, 9878, ENGINE.0, 40001, 516, ack, b"", 103,
        )),
        to_q(tcp_frame(
            EXCHANGE,
            9878,
            ENGINE.0,
            40001,
            516,
            fin | ack,
            b"",
            104,
        )),
    ];
    (p, q)
}

/// Runs the binary with P = net_pcap0 (fed `p_in`, transmitting to
/// p_out.pcap), the backup sink net_pcap1, and Q = net_pcap2 (fed `q_in`,
/// transmitting to q_out.pcap): scripts/replay.sh's EAL invocation with a
/// second gateway port.
fn two_port_replay(tag: &str, config: &str, p_in: &[Vec<u8>], q_in: &[Vec<u8>]) -> Run {
    let out = std::env::temp_dir().join(format!("taphold-gw2-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let (pi, qi) = (out.join("p_in.pcap"), out.join("q_in.pcap"));
    pcap::write(&pi, p_in).unwrap();
    pcap::write(&qi, q_in).unwrap();
    let cfg = out.join("config.yaml");
    let text = config.replace(
        "state_dir: /tmp/taphold-state",
        &format!("state_dir: {}", out.join("state").display()),
    );
    std::fs::write(&cfg, text).unwrap();
    let d = out.display();
    let o = Command::new(env!("CARGO_BIN_EXE_taphold"))
        .args(["--no-huge", "-m", "1024", "--no-pci", "-l", "0,1"])
        .args([
            "--file-prefix",
            &format!("taphold-gw2-{tag}-{}", std::process::id()),
        ])
        .args(["--log-level", "*:warning"])
        .arg("--vdev")
        .arg(format!(
            "net_pcap0,rx_pcap={},tx_pcap={d}/p_out.pcap,tx_pcap={d}/p_src.pcap",
            pi.display()
        ))
        .arg("--vdev")
        .arg(format!("net_pcap1,tx_pcap={d}/backup.pcap"))
        .arg("--vdev")
        .arg(format!(
            "net_pcap2,rx_pcap={},tx_pcap={d}/q_out.pcap",
            qi.display()
        ))
        .arg("--")
        .arg("--config")
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .args(["--exit-when-idle-ms", "400"])
        .output()
        .unwrap();
    Run {
        out,
        status: o.status,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Forwarded from `orig`: to `next_hop` from `ours`, TTL − 1, IPv4 checksum
/// right, every other byte of the IPv4 datagram as it came.
fn assert_routed(orig: &[u8], out: &[u8], ours: EthernetAddress, next_hop: EthernetAddress) {
    let ip_end = 14 + be16(&orig[16..18]) as usize;
    assert_eq!(&out[0..6], &next_hop.0, "destination MAC");
    assert_eq!(&out[6..12], &ours.0, "source MAC");
    assert_eq!(out[22], orig[22] - 1, "TTL");
    assert!(ipv4::Packet::new_checked(&out[14..])
        .unwrap()
        .verify_checksum());
    for i in 12..ip_end {
        if ![22, 24, 25].contains(&i) {
            assert_eq!(out[i], orig[i], "byte {i} changed");
        }
    }
}

/// An ARP packet as these tests look at it: operation, sender MAC, sender
/// IP, target IP, Ethernet source.
type Arp = (u16, [u8; 6], [u8; 4], [u8; 4], [u8; 6]);

/// The ARP packets in `frames`.
fn arps(frames: &[Vec<u8>]) -> Vec<Arp> {
    frames
        .iter()
        .filter(|f| f.len() >= 42 && f[12..14] == [0x08, 0x06])
        .map(|f| {
            (
                be16(&f[20..22]),
                f[22..28].try_into().unwrap(),
                f[28..32].try_into().unwrap(),
                f[38..42].try_into().unwrap(),
                f[6..12].try_into().unwrap(),
            )
        })
        .collect()
}

#[test]
fn two_ports_protected_segments_leave_on_q_after_their_tap_copy_and_return_traffic_on_p_at_once() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (p_in, q_in) = two_port_input();
    let r = two_port_replay("flow", &two_port_config("tap: mirror"), &p_in, &q_in);
    let s = assert_clean(&r);
    let (p_out, q_out) = (r.pcap("p_out.pcap"), r.pcap("q_out.pcap"));
    let by_ident: BTreeMap<u16, &Vec<u8>> = p_in
        .iter()
        .chain(&q_in)
        .filter_map(|f| Some((seg(f)?.ident, f)))
        .collect();
    let idents = |frames: &[Vec<u8>], from: [u8; 4]| -> Vec<u16> {
        frames
            .iter()
            .filter_map(|f| seg(f))
            .filter(|s| s.src.0 == from)
            .map(|s| s.ident)
            .collect()
    };

    // The engine's segments left on Q only, the protected flow in its order
    // (the pure ACK and the FIN behind the data still held), the unprotected
    // one as well; routed as a router would, from Q's MAC.
    let to_exchange = idents(&q_out, ENGINE.0);
    let flow: Vec<u16> = to_exchange.iter().copied().filter(|&i| i != 6).collect();
    assert_eq!(flow, vec![1, 2, 3, 4, 5], "flow order on Q");
    assert!(to_exchange.contains(&6), "{to_exchange:?}");
    assert!(idents(&p_out, ENGINE.0).is_empty(), "engine traffic on P");
    // The exchange's came back on P, all of it, in order, from P's MAC.
    assert_eq!(idents(&p_out, EXCHANGE.0), vec![101, 102, 103, 104]);
    assert!(
        idents(&q_out, EXCHANGE.0).is_empty(),
        "exchange traffic on Q"
    );
    for f in &q_out {
        if let Some(sg) = seg(f) {
            assert_routed(by_ident[&sg.ident], f, Q_MAC, EXCHANGE.1);
        }
    }
    for f in &p_out {
        if let Some(sg) = seg(f) {
            assert_routed(by_ident[&sg.ident], f, OURS, ENGINE.1);
        }
    }

    // Held: the two data segments, and whatever control segment found data
    // of its flow still held; each released after its tap copy. Return
    // traffic was never held.
    assert_eq!(n(&s, "gateway.protected_segments"), 2);
    let held = n(&s, "gateway.protected_segments") + n(&s, "gateway.protected_control_held");
    assert_eq!(
        held + n(&s, "gateway.protected_control_forwarded"),
        5,
        "{:#}",
        s["gateway"]
    );
    assert_eq!(n(&s, "messages.accepted"), held);
    assert_eq!(n(&s, "messages.released"), held);
    assert_eq!(n(&s, "gateway.returned"), 4);
    assert_eq!(n(&s, "gateway.forwarded"), 1);
    let ev = r.events();
    assert_eq!(ev.len() as u64, held);
    for e in &ev {
        let (launch, tap, release): (u64, u64, u64) = (
            e[4].parse().unwrap(),
            e[5].parse().unwrap(),
            e[6].parse().unwrap(),
        );
        assert_eq!(e[7], "released", "{e:?}");
        assert!(launch > 0 && tap >= launch && release >= tap, "{e:?}");
    }
    let backed_up: Vec<Vec<u8>> = r
        .pcap("backup.pcap")
        .iter()
        .filter_map(|f| {
            let p = Packet::new_checked(&f[14..]).ok()?;
            if p.msg_type() != MsgType::Backup {
                return None;
            }
            match BackupRepr::parse(&p, &key()).ok()?.content {
                Content::Tcp(t) if !t.content.is_empty() => Some(t.content.to_vec()),
                _ => None,
            }
        })
        .collect();
    assert_eq!(
        backed_up,
        vec![b"8=FIX.4.2\x01one".to_vec(), b"8=FIX.4.2\x01two".to_vec()]
    );

    // ARP: each port answers for its own address, from its own MAC; Q's
    // address asked on P is not answered; the router on Q is asked on Q.
    let (pa, qa) = (arps(&p_out), arps(&q_out));
    let replies = |a: &[Arp]| -> Vec<Arp> { a.iter().filter(|x| x.0 == 2).copied().collect() };
    assert_eq!(
        replies(&pa),
        vec![(2, OURS.0, [10, 71, 1, 1], ENGINE.0, OURS.0)]
    );
    assert_eq!(
        replies(&qa),
        vec![(2, Q_MAC.0, [10, 71, 2, 1], EXCHANGE.0, Q_MAC.0)]
    );
    assert_eq!(n(&s, "ingress.arp_replies"), 2);
    assert_eq!(n(&s, "gateway.q_arp_replies"), 1);
    assert_eq!(n(&s, "ingress.drop_arp_not_for_us"), 1);
    assert_eq!(n(&s, "gateway.arp_wrong_port"), 1);
    // Both sides' neighbours are static: nothing learned.
    assert_eq!(n(&s, "gateway.arp_learned"), 0);
    let asked: Vec<_> = qa.iter().filter(|x| x.0 == 1).collect();
    assert!(!asked.is_empty(), "the router on Q was not asked for");
    for a in &asked {
        assert_eq!(**a, (1, Q_MAC.0, [10, 71, 2, 1], [10, 71, 2, 254], Q_MAC.0));
    }
    assert!(pa.iter().all(|x| x.0 == 2), "an ARP request on P: {pa:?}");
    assert_eq!(asked.len() as u64, n(&s, "gateway.arp_requests_sent"));

    // Counted per port.
    assert_eq!(n(&s, "ingress.rx_frames"), p_in.len() as u64);
    assert_eq!(n(&s, "gateway.q_rx_frames"), q_in.len() as u64);
    assert_eq!(n(&s, "egress.q_tx_frames"), q_out.len() as u64);
    let _ = std::fs::remove_dir_all(&r.out);
}

#[test]
fn two_ports_with_the_tap_cut_nothing_protected_leaves_on_q_and_return_traffic_still_flows_on_p() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (p_in, q_in) = two_port_input();
    let r = two_port_replay("cut", &two_port_config("tap: cut"), &p_in, &q_in);
    let s = assert_clean(&r);
    assert_eq!(s["mode"]["final"], "halt");
    let (p_out, q_out) = (r.pcap("p_out.pcap"), r.pcap("q_out.pcap"));
    let leaked: Vec<Seg> = q_out
        .iter()
        .chain(&p_out)
        .filter_map(|f| seg(f))
        .filter(|s| to_exchange_protected(s) && !s.payload.is_empty())
        .collect();
    assert!(leaked.is_empty(), "left without a tap copy: {leaked:?}");
    assert_eq!(n(&s, "messages.released"), 0);
    assert!(n(&s, "gateway.protected_segments") >= 1);
    let returned: Vec<u16> = p_out
        .iter()
        .filter_map(|f| seg(f))
        .filter(|s| s.src.0 == EXCHANGE.0)
        .map(|s| s.ident)
        .collect();
    assert_eq!(returned, vec![101, 102, 103, 104]);
    let _ = std::fs::remove_dir_all(&r.out);
}

#[test]
fn halted_the_gateway_still_routes_the_exchanges_side_and_refuses_protected_segments() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (a, d) = (tcp::flags::ACK, tcp::flags::ACK | tcp::flags::PSH);
    // An order before the halt, then enough stray frames (dropped by EtherType)
    // to take longer than the cut tap takes to halt the appliance, then an
    // execution report and a new order.
    let mut frames = vec![tcp_frame(
        ENGINE,
        40001,
        EXCHANGE.0,
        9878,
        100,
        d,
        b"8=FIX.4.2\x01one",
        1,
    )];
    let mut stray = vec![0u8; 60];
    stray[0..6].copy_from_slice(&OURS.0);
    stray[12..14].copy_from_slice(&[0x88, 0x99]);
    frames.extend(std::iter::repeat_n(stray, 300_000));
    frames.push(tcp_frame(
        EXCHANGE,
        9878,
        ENGINE.0,
        40001,
        500,
        d,
        b"8=FIX.4.2\x01fill",
        2,
    ));
    frames.push(tcp_frame(
        ENGINE,
        40001,
        EXCHANGE.0,
        9878,
        114,
        d,
        b"8=FIX.4.2\x01two",
        3,
    ));
    frames.push(tcp_frame(ENGINE, 40001, EXCHANGE.0, 9878, 128, a, b"", 4));
    let r = replay_frames("halt", &frames, |c| {
        let text = c
            .replace("tap: mirror", "tap: cut")
            // Down, and so halted, within a few ms of the start, long before the
            // stray frames are read (at millions a second that still takes 30 ms).
            .replace("  tap_timeout_us: 20000", "  tap_timeout_us: 1000")
            .replace("  down_after_us: 30000", "  down_after_us: 0");
        assert!(text.contains("tap_timeout_us: 1000") && text.contains("down_after_us: 0"));
        text
    });
    let s = assert_clean(&r);
    assert_eq!(s["mode"]["final"], "halt");
    assert_eq!(n(&s, "ingress.drop_unknown_ethertype"), 300_000);
    // The first order was held (never released: no tap copy) or refused if the
    // halt came first; the two after the strays were refused, not held; the
    // execution report between them went through.
    let refused = n(&s, "gateway.protected_refused_halted");
    assert!(refused >= 2, "{:#}", s["gateway"]);
    assert_eq!(
        n(&s, "messages.accepted") + refused,
        3,
        "{:#}",
        s["gateway"]
    );
    assert_eq!(n(&s, "messages.released"), 0);
    assert_eq!(n(&s, "gateway.returned"), 1);
    let sent: Vec<Seg> = r
        .pcap("destination.pcap")
        .iter()
        .filter_map(|f| seg(f))
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].ident, 2, "the execution report, to the engine");
    let _ = std::fs::remove_dir_all(&r.out);
}
