//! A real FIX session nobody here wrote, routed between two namespaces
//! (issue 12): QuickFIX's example executor as the exchange (10.71.2.2:9878 in
//! the destination namespace), our QuickFIX initiator as the trading engine
//! (10.71.1.2 in the source namespace), each with its default route via a
//! gateway address on the lab's bridge. See docs/lab.md, "A real FIX session
//! through a gateway".
//!
//! The first test proves the harness with a plain kernel router in that
//! place ($P-rtr, one-armed on the bridge, owning 10.71.1.1 and 10.71.2.1):
//! the taphold gateway tests replace it with taphold's P port and check the
//! same clean session.

mod common;

use std::time::Duration;

use common::fix::*;
use taphold_lab::fix::Message;

const ORDERS: u64 = 200;

#[test]
fn kernel_router_carries_a_real_fix_session() {
    const T: &str = "kernel_router_carries_a_real_fix_session";
    let Some(c) = gateway_case(T, 'k', false) else {
        return;
    };
    // The kernel's TCP must hand af_packet whole, checksummed frames: no
    // transmit checksum offload where the ends send (and where the router does).
    for (ns, dev) in [("src", "src0"), ("dst", "dst0")] {
        let k = c.exec(ns, &["ethtool", "-k", &c.ns(dev)]);
        assert!(k.lines().any(|l| l == "tx-checksumming: off"), "{dev}: {k}");
    }

    c.lab.run(&["router", "up"]);
    let k = c.exec("rtr", &["ethtool", "-k", &c.ns("rtr0")]);
    assert!(k.lines().any(|l| l == "tx-checksumming: off"), "rtr0: {k}");
    let forwarded_before = c.ip_counter("rtr", "ForwDatagrams");
    let exchange = c.exchange("kernel");
    let engine = c
        .engine("kernel", ORDERS, 1000, 20, &[])
        .wait(Duration::from_secs(40));
    let text = exchange.text();
    let log = exchange.stop();
    clean_session(&engine, &log, ORDERS);
    // Routed, not proxied: the exchange sees the engine's own address.
    assert!(
        text.contains(&format!(
            "Accepted connection from {ENGINE_IP} on port {FIX_PORT}"
        )),
        "{text}"
    );
    // Every order (sent 1 ms apart, TCP_NODELAY) crossed the router at least
    // as its own packet.
    let forwarded = c.ip_counter("rtr", "ForwDatagrams") - forwarded_before;
    assert!(forwarded >= ORDERS, "the router forwarded {forwarded}");

    // Without the router there is no way between them: a new session never
    // logs on, and nothing reaches the exchange. (Done last: the engine's
    // failed ARP for its gateway would otherwise cost the next session its
    // first connection attempt, and a Logon's MsgSeqNum.)
    c.lab.run(&["router", "down"]);
    let exchange = c.exchange("no-gateway");
    let engine = c
        .engine("no-gateway", 1, 0, 5, &["--logon-timeout", "2"])
        .wait(Duration::from_secs(15));
    assert_eq!(engine.status.code(), Some(2), "{:?}", engine.events);
    assert_eq!(engine.done()["error"], "no logon");
    assert!(exchange.stop().is_empty(), "nothing reached the exchange");
    eprintln!(
        "{T}: {} messages each way, router forwarded {forwarded} packets",
        log.len() / 2
    );
    c.done(T);
}

/// taphold in gateway mode (config/lab-gateway.yaml) on P in place of the
/// kernel router, both backup nodes running, the taps the lab's tc mirrors.
#[test]
fn taphold_gateway_carries_a_real_fix_session() {
    const T: &str = "taphold_gateway_carries_a_real_fix_session";
    let Some(c) = gateway_case(T, 'g', true) else {
        return;
    };
    common::lab::build_binaries();
    let config = c.gateway_config("gateway", &[]);
    let app = c.start_taphold("gateway", &config);
    let exchange = c.exchange("gateway");
    let engine = c
        .engine("gateway", ORDERS, 1000, 20, &[])
        .wait(Duration::from_secs(40));
    let text = exchange.text();
    let log = exchange.stop();
    clean_session(&engine, &log, ORDERS);
    assert!(
        text.contains(&format!(
            "Accepted connection from {ENGINE_IP} on port {FIX_PORT}"
        )),
        "{text}"
    );
    let sum = app.stop();
    let n = |p: &str| common::lab::n(&sum, p);
    assert_eq!(sum["mode"]["final"], "protected", "{:#}", sum["mode"]);
    // Every protected segment was held, backed up, confirmed by its tap copy
    // and released; none unprotected, none left.
    assert_eq!(n("messages.released"), n("messages.accepted"));
    assert_eq!(n("messages.released_unprotected"), 0);
    assert_eq!(n("messages.held_at_shutdown"), 0);
    let data = n("gateway.protected_segments");
    // The Logon, 200 orders and the Logout: one segment each at this pace,
    // fewer if the engine's TCP coalesced some.
    assert!((1..=ORDERS + 2).contains(&data), "{:#}", sum["gateway"]);
    assert_eq!(
        n("messages.accepted"),
        data + n("gateway.protected_control_held"),
        "{:#}",
        sum["gateway"]
    );
    assert!(
        n("tap.b1.confirmed") + n("tap.b2.confirmed") >= n("messages.released"),
        "{:#}",
        sum["tap"]
    );
    // The exchange's side (logon answer, execution reports, ACKs) flowed back
    // at once, and its acknowledgements went to the nodes.
    assert!(n("gateway.returned") >= ORDERS, "{:#}", sum["gateway"]);
    assert!(n("gateway.return_acks") > 0);
    assert!(n("gateway.flow_acks_sent") > 0);
    for counter in [
        "ingress.drop_oversize",
        "ingress.drop_no_route",
        "ingress.drop_tcp_bad_checksum",
    ] {
        assert_eq!(n(counter), 0, "{counter}");
    }
    // Each backup node journaled the engine's byte stream: reassembled by TCP
    // sequence number (here, from `journal export`'s segments, and by the
    // node's own `journal export --flow F --decode fix`) it is exactly the
    // messages the exchange received; the exchange acknowledged all of it, so
    // `recover` has nothing to resend.
    let received = of(&log, taphold_lab::fix::Direction::Incoming);
    let received: Vec<&Message> = received.iter().collect();
    for node in [1, 2] {
        c.lab.node(node, "stop");
        let journaled = c.journaled_messages(node);
        same_messages(
            &journaled.iter().collect::<Vec<_>>(),
            &received,
            &format!("node {node}'s journal segments vs the exchange's log"),
        );
        let flow = c.journal_flow(node);
        assert_eq!(flow["holes"], serde_json::json!([]), "{flow}");
        assert_eq!(flow["conflicts"], 0, "{flow}");
        let f = flow["flow"].as_str().unwrap();
        assert!(f.starts_with(&format!("{ENGINE_IP}:")), "{flow}");
        assert!(f.ends_with(&format!("-{EXCHANGE_IP}:{FIX_PORT}")), "{flow}");
        let (lines, code, err) = c.decode_fix(node, f, false);
        assert_eq!(code, 0, "node {node}: export --decode fix: {err}");
        same_messages(
            &decoded_messages(&lines).iter().collect::<Vec<_>>(),
            &received,
            &format!("node {node}'s export --decode fix vs the exchange's log"),
        );
        let (lines, code, err) = c.decode_fix(node, f, true);
        assert_eq!(code, 0, "node {node}: recover: {err}");
        let summary = lines.iter().find(|l| l["summary"] == true).unwrap();
        assert_eq!(
            summary["unacknowledged"], 0,
            "node {node}: {summary}\n{err}"
        );
        assert_eq!(summary["acknowledged"], received.len(), "{summary}");
    }
    eprintln!(
        "{T}: {data} protected segments, hold p50/p99 {} / {} ns",
        sum["latency_ns"]["hold"]["p50"], sum["latency_ns"]["hold"]["p99"]
    );
    c.done(T);
}

/// Both taps cut mid-session, `secondary_mode: halt`: taphold fails closed.
/// Nothing more of the engine's reaches the exchange — what it did get is a
/// clean prefix of the session — while the exchange's side still flows back.
#[test]
fn taphold_gateway_tap_cut_halts_and_nothing_more_reaches_the_exchange() {
    const T: &str = "taphold_gateway_tap_cut_halts_and_nothing_more_reaches_the_exchange";
    const MANY: u64 = 1000;
    let Some(c) = gateway_case(T, 'h', true) else {
        return;
    };
    common::lab::build_binaries();
    let config = c.gateway_config("cut", &[]);
    let app = c.start_taphold("cut", &config);
    let exchange = c.exchange("cut");
    // 1000 orders at 200/s: 5 s; the taps go once 100 are out.
    let engine = c.engine("cut", MANY, 200, 3, &[]);
    let t = std::time::Instant::now();
    while engine
        .events()
        .iter()
        .filter(|e| e["event"] == "order")
        .count()
        < 100
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{:?}",
            engine.events()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    c.lab.run(&["tap", "1", "cut"]);
    c.lab.run(&["tap", "2", "cut"]);
    app.await_log("mode protected -> halt", Duration::from_secs(5));
    // What was released before the halt has arrived after this.
    std::thread::sleep(Duration::from_millis(300));
    let at_halt = exchange.incoming().len();
    let engine = engine.wait(Duration::from_secs(40));
    let text = exchange.text();
    let log = exchange.stop();
    let received = of(&log, taphold_lab::fix::Direction::Incoming);
    assert_eq!(
        received.len(),
        at_halt,
        "nothing reached the exchange after the halt"
    );

    // The engine gave up: not every order was filled.
    assert_eq!(engine.status.code(), Some(1), "{:?}", engine.done());
    let filled = engine.done()["filled"].as_u64().unwrap();
    assert!(filled < MANY, "{}", engine.done());
    // What reached the exchange is a clean prefix of what the engine sent:
    // byte for byte, MsgSeqNum 1, 2, 3, ... (the Logon, then orders).
    assert!(received.len() > 1, "{text}");
    let sent: Vec<&Message> = engine.sent.iter().take(received.len()).collect();
    same_messages(
        &received.iter().collect::<Vec<_>>(),
        &sent,
        "the exchange got a prefix of the engine's messages",
    );
    assert_eq!(
        seqs(&received),
        (1..=received.len() as u64).collect::<Vec<_>>()
    );
    assert!((received.len() as u64) < engine.sent.len() as u64);
    // Return traffic was never held: every order the exchange received was
    // filled, and the engine got each fill.
    let orders_in = received
        .iter()
        .filter(|m| m.msg_type() == Some("D"))
        .count() as u64;
    assert_eq!(filled, orders_in, "{}", engine.done());

    let sum = app.stop();
    let n = |p: &str| common::lab::n(&sum, p);
    assert_eq!(sum["mode"]["final"], "halt", "{:#}", sum["mode"]);
    assert_eq!(n("messages.released_unprotected"), 0);
    assert_eq!(
        n("messages.released") + n("messages.held_at_shutdown"),
        n("messages.accepted")
    );
    assert!(n("ingress.halted_polls") > 0);
    // Both links left service, the tap cut seen as silence (on a loaded
    // machine a link may be judged on a late ack or heartbeat first: the
    // outcome, failing closed, is the same).
    let downs: Vec<Vec<String>> = ["b1", "b2"]
        .iter()
        .map(|link| {
            sum["health"][link]["transitions"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["to"] == "down")
                .map(|t| t["failing"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .collect();
    assert!(
        downs.iter().all(|d| !d.is_empty()),
        "both links went down: {downs:?}\n{:#}",
        sum["health"]
    );
    assert!(
        downs.iter().flatten().any(|f| f == "tap_silent"),
        "the cut seen as tap_silent: {downs:?}\n{:#}",
        sum["health"]
    );
    eprintln!(
        "{T}: {orders_in} orders reached the exchange before the halt; released {}, held {}",
        n("messages.released"),
        n("messages.held_at_shutdown")
    );
    c.done(T);
}

/// b2 a standby, `secondary_mode: failover`; tap 1 cut mid-session: b1 goes
/// down on `tap_silent`, taphold fails over to b2 (what was held re-sent on
/// it), and the session goes on as if nothing happened — every order in
/// order, byte-identical, filled, none released unprotected.
#[test]
fn taphold_gateway_tap_cut_fails_over_and_the_session_goes_on() {
    const T: &str = "taphold_gateway_tap_cut_fails_over_and_the_session_goes_on";
    const COUNT: u64 = 600;
    let Some(c) = gateway_case(T, 'f', true) else {
        return;
    };
    common::lab::build_binaries();
    let config = c.gateway_config(
        "failover",
        &[
            common::lab::B2_STANDBY,
            ("secondary_mode: halt\n", "secondary_mode: failover\n"),
        ],
    );
    let app = c.start_taphold("failover", &config);
    let exchange = c.exchange("failover");
    let engine = c.engine("failover", COUNT, 200, 20, &[]);
    let t = std::time::Instant::now();
    while engine
        .events()
        .iter()
        .filter(|e| e["event"] == "order")
        .count()
        < 100
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{:?}",
            engine.events()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    c.lab.run(&["tap", "1", "cut"]);
    app.await_log("backup link 0: degraded -> down", Duration::from_secs(5));
    let engine = engine.wait(Duration::from_secs(40));
    let log = exchange.stop();
    clean_session(&engine, &log, COUNT);
    let sum = app.stop();
    let n = |p: &str| common::lab::n(&sum, p);
    assert_eq!(n("mode.failovers"), 1, "{:#}", sum["mode"]);
    assert_eq!(sum["mode"]["final"], "protected");
    assert_eq!(sum["health"]["b2"]["in_service"], true);
    assert!(n("tap.b2.confirmed") > 0, "{:#}", sum["tap"]);
    assert_eq!(n("messages.released"), n("messages.accepted"));
    assert_eq!(n("messages.released_unprotected"), 0);
    assert!(
        sum["health"]["b1"]["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["to"] == "down" && t["failing"] == "tap_silent"),
        "{:#}",
        sum["health"]["b1"]
    );
    eprintln!("{T}: resent on b2 {}", n("ingress.resent"));
    c.done(T);
}

/// taphold killed with SIGKILL mid-session, 20 ms of delay on the way to the
/// exchange so that orders are in flight: each node's `recover` splits the
/// journaled orders at the exchange acknowledgement it last heard of. What
/// it calls acknowledged the exchange did receive; every journaled order
/// the exchange never received is among those it names for resending, each
/// with a valid PossDup copy.
#[test]
fn taphold_gateway_kill9_recover_names_the_unacknowledged_orders() {
    const T: &str = "taphold_gateway_kill9_recover_names_the_unacknowledged_orders";
    const COUNT: u64 = 600;
    let Some(c) = gateway_case(T, 'r', true) else {
        return;
    };
    common::lab::build_binaries();
    let config = c.gateway_config("kill9", &[]);
    let app = c.start_taphold("kill9", &config);
    let exchange = c.exchange("kill9");
    let engine = c.engine("kill9", COUNT, 1000, 2, &[]);
    let t = std::time::Instant::now();
    while engine
        .events()
        .iter()
        .filter(|e| e["event"] == "logon")
        .count()
        < 1
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{:?}",
            engine.events()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Logged on: from now on the way to the exchange takes 20 ms.
    c.lab.emu("d", "a2b delay_us=20000");
    while engine
        .events()
        .iter()
        .filter(|e| e["event"] == "order")
        .count()
        < 300
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{:?}",
            engine.events()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    app.kill9();
    // What was on its way still arrives.
    std::thread::sleep(Duration::from_millis(500));
    let engine = engine.wait(Duration::from_secs(40));
    assert_eq!(engine.status.code(), Some(1), "{}", engine.done());
    let log = exchange.stop();
    let received = of(&log, taphold_lab::fix::Direction::Incoming);
    assert!(received.len() > 1, "the session got going");

    for node in [1, 2] {
        c.lab.node(node, "stop");
        let flow = c.journal_flow(node);
        assert_eq!(flow["holes"], serde_json::json!([]), "{flow}");
        let (lines, code, err) = c.decode_fix(node, flow["flow"].as_str().unwrap(), true);
        assert_eq!(code, 0, "node {node}: recover: {err}");
        let msgs: Vec<&serde_json::Value> = lines.iter().filter(|l| l["summary"] != true).collect();
        let journaled = decoded_messages(&lines);
        // The node journaled a prefix of what the engine sent, at least all
        // the exchange received (nothing reaches it unjournaled).
        same_messages(
            &journaled.iter().collect::<Vec<_>>(),
            &engine.sent.iter().take(journaled.len()).collect::<Vec<_>>(),
            &format!("node {node}: the journal is a prefix of the engine's session"),
        );
        assert!(
            journaled.len() >= received.len(),
            "node {node}: journaled {} < received {}",
            journaled.len(),
            received.len()
        );
        // Acknowledged, then not: split where the exchange's last ACK fell.
        let acked = msgs
            .iter()
            .take_while(|l| l["acknowledged"] == true)
            .count();
        assert!(
            msgs[acked..].iter().all(|l| l["acknowledged"] == false),
            "node {node}: acknowledged is a prefix"
        );
        let limit = flow["acked"].as_u64().unwrap();
        for l in &msgs {
            let end = l["tcp_end"].as_u64().unwrap();
            assert_eq!(
                l["acknowledged"] == true,
                end <= limit,
                "{l} vs acked {limit}"
            );
        }
        // Never acknowledged what the exchange did not get ...
        assert!(
            acked <= received.len(),
            "node {node}: {acked} acknowledged, the exchange received {}",
            received.len()
        );
        same_messages(
            &journaled.iter().take(acked).collect::<Vec<_>>(),
            &received.iter().take(acked).collect::<Vec<_>>(),
            "acknowledged messages are the exchange's",
        );
        // ... so every journaled order it did not get is named for resending,
        // and in flight at the kill there were some.
        let unacked = &msgs[acked..];
        assert!(!unacked.is_empty(), "node {node}: orders were in flight");
        for l in unacked {
            let orig = Message::parse(l["raw"].as_str().unwrap().as_bytes()).unwrap();
            let resend = l["resend"]
                .as_str()
                .unwrap_or_else(|| panic!("no resend: {l}"));
            let r = Message::parse(resend.as_bytes()).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert_eq!(r.get(43), Some("Y"), "PossDupFlag: {}", r.show());
            assert!(r.get(122).is_some(), "OrigSendingTime: {}", r.show());
            for tag in [34, 35, 11, 54, 55, 38, 44, 40] {
                assert_eq!(r.get(tag), orig.get(tag), "tag {tag}: {}", r.show());
            }
        }
        let summary = lines.iter().find(|l| l["summary"] == true).unwrap();
        assert_eq!(summary["acknowledged"], acked, "{summary}");
        assert_eq!(summary["unacknowledged"], unacked.len(), "{summary}");
        eprintln!(
            "{T}: node {node}: journaled {}, acknowledged {acked}, to resend {}; the exchange received {}",
            journaled.len(),
            unacked.len(),
            received.len()
        );
    }
    c.done(T);
}

/// `gateway.content: fix-compact`: the backup frames keep, per FIX message,
/// only the fields that recreate it. The session is as clean; every segment
/// holding whole messages went compact; each node rebuilds, for every message
/// the exchange received, a valid FIX message (BodyLength, CheckSum) equal in
/// every kept field, at the original's place in the stream.
#[test]
fn taphold_gateway_fix_compact_rebuilds_every_order() {
    const T: &str = "taphold_gateway_fix_compact_rebuilds_every_order";
    let Some(c) = gateway_case(T, 'c', true) else {
        return;
    };
    common::lab::build_binaries();
    let config = c.gateway_config(
        "compact",
        &[("  content: tcp\n", "  content: fix-compact\n")],
    );
    let app = c.start_taphold("compact", &config);
    let exchange = c.exchange("compact");
    let engine = c
        .engine("compact", ORDERS, 1000, 20, &[])
        .wait(Duration::from_secs(40));
    let log = exchange.stop();
    clean_session(&engine, &log, ORDERS);
    let sum = app.stop();
    let n = |p: &str| common::lab::n(&sum, p);
    let segments = n("gateway.protected_segments");
    assert_eq!(
        n("gateway.fix_compact") + n("gateway.fix_compact_fallback"),
        segments,
        "{:#}",
        sum["gateway"]
    );
    assert!(n("gateway.fix_compact") > 0, "{:#}", sum["gateway"]);
    assert_eq!(n("messages.released"), n("messages.accepted"));

    let received = of(&log, taphold_lab::fix::Direction::Incoming);
    for node in [1, 2] {
        c.lab.node(node, "stop");
        let flow = c.journal_flow(node);
        assert_eq!(flow["holes"], serde_json::json!([]), "{flow}");
        assert!(flow["compact_segments"].as_u64().unwrap() > 0, "{flow}");
        let (lines, code, err) = c.decode_fix(node, flow["flow"].as_str().unwrap(), false);
        assert_eq!(code, 0, "node {node}: export --decode fix: {err}");
        let msgs: Vec<&serde_json::Value> = lines.iter().filter(|l| l["summary"] != true).collect();
        let rebuilt = decoded_messages(&lines);
        assert_eq!(rebuilt.len(), received.len(), "node {node}");
        let mut at = msgs[0]["tcp_seq"].as_u64().unwrap();
        let mut compact = 0;
        for ((l, r), orig) in msgs.iter().zip(&rebuilt).zip(&received) {
            // Each at the original's extent, back to back.
            let (from, to) = (
                l["tcp_seq"].as_u64().unwrap(),
                l["tcp_end"].as_u64().unwrap(),
            );
            assert_eq!((from, to - from), (at, orig.raw.len() as u64), "{l}");
            at = to;
            if l["rebuilt"] == true {
                compact += 1;
                for tag in [8, 35, 34, 49, 56, 52, 11, 54, 55, 38, 44, 40, 59] {
                    assert_eq!(
                        r.get(tag),
                        orig.get(tag),
                        "tag {tag}: {} vs {}",
                        r.show(),
                        orig.show()
                    );
                }
            } else {
                assert_eq!(
                    r.raw, orig.raw,
                    "a full segment's message is byte-identical"
                );
            }
        }
        assert!(compact > 0, "node {node}: some messages rebuilt");
        let (lines, code, err) = c.decode_fix(node, flow["flow"].as_str().unwrap(), true);
        assert_eq!(code, 0, "node {node}: recover: {err}");
        let summary = lines.iter().find(|l| l["summary"] == true).unwrap();
        assert_eq!(summary["unacknowledged"], 0, "{summary}");
        eprintln!(
            "{T}: node {node}: {compact} of {} messages rebuilt from compact records",
            rebuilt.len()
        );
    }
    c.done(T);
}
