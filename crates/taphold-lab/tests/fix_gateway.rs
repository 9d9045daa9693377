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
