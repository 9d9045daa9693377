//! The live lab, end to end: kernel UDP source → bridge → taphold (af_packet
//! ports in its own namespace) → backup links through the link emulators to
//! real backup nodes (taphold-backup), each tap a tc mirror through a tap-path
//! emulator → release to the kernel UDP destination, confirmations back to the
//! source. See docs/lab.md.
//!
//! Every test brings up a lab of its own (its own prefix) and tears it down in
//! a Drop guard, also when it panics. They run one at a time: on a 2-core CI
//! machine two labs would share the cores, and the health thresholds are
//! tens of milliseconds.

mod common;

use std::time::{Duration, Instant};

use common::lab::*;
use serde_json::Value;

#[test]
fn steady_flow_every_message_delivered_once_in_order() {
    const T: &str = "steady_flow_every_message_delivered_once_in_order";
    const MESSAGES: u64 = 2000;
    let Some(c) = case(T, 'l') else { return };
    let config = c.config("steady", &[]);
    let mut run = c.start("steady", &config);
    run.source(MESSAGES, 4000, "10");
    let o = run.finish();
    o.every_message_once_in_order(MESSAGES, "steady flow");
    assert_eq!(o.n("messages.confirmations_sent"), MESSAGES);
    assert_eq!(o.n("messages.released_unprotected"), 0);
    assert_eq!(o.sum["mode"]["final"], "protected");
    assert_eq!(o.dst["senders"], serde_json::json!(["198.51.100.1:9000"]));
    let emu = [c.lab.emu_stats("1"), c.lab.emu_stats("2")];
    let taps = [c.lab.emu_stats("t1"), c.lab.emu_stats("t2")];
    for (i, link) in ["b1", "b2"].iter().enumerate() {
        // Every backup frame came back through the kernel tc mirror and the
        // (faithful) tap-path emulator.
        assert_eq!(
            o.n(&format!("tap.{link}.confirmed")) + o.n(&format!("tap.{link}.late")),
            MESSAGES,
            "tap {link}: {:#}",
            o.sum["tap"][link]
        );
        // The backup node acked every one, and its heartbeats kept coming:
        // the link never went down.
        assert_eq!(o.n(&format!("health.{link}.acked_seq")), MESSAGES, "{link}");
        assert_eq!(
            o.n(&format!("link_rx.{link}.acked_seq")),
            MESSAGES,
            "{link}"
        );
        assert!(o.n(&format!("link_rx.{link}.heartbeats")) > 0, "{link}");
        assert_eq!(
            o.sum["health"][link]["state"], "up",
            "{:#}",
            o.sum["health"]
        );
        assert!(
            o.transitions(link).iter().all(|t| t.1 != "down"),
            "{link}: {:?}",
            o.transitions(link)
        );
        for (what, e) in [("emu", &emu[i]), ("tap emu", &taps[i])] {
            assert!(n(e, "a2b.forwarded") >= MESSAGES, "{what} {link}: {e}");
            assert_eq!(n(e, "a2b.dropped"), 0, "{what} {link}: {e}");
            assert_eq!(n(e, "a2b.tx_errors"), 0, "{what} {link}: {e}");
        }
    }
    // Both journals hold every message once, and inspect clean.
    for node in [1, 2] {
        c.lab.node(node, "stop");
        let stats = c.lab.node_stats(node);
        assert_eq!(n(&stats, "journaled"), MESSAGES, "node {node}: {stats:#}");
        assert_eq!(n(&stats, "last_ack_seq"), MESSAGES, "node {node}");
        same_seqs(
            &c.lab.journal_seqs(node),
            &(1..=MESSAGES).collect::<Vec<_>>(),
            &format!("node {node}'s journal"),
        );
        let (code, text) = c.lab.inspect(node);
        assert_eq!(code, 0, "node {node}: {text}");
    }
    eprintln!("latency_ns: {}", o.sum["latency_ns"]);
    c.done(T);
}

/// b1 in service, b2 a standby, the given secondary mode; node 1 killed
/// 0.5 s into a 1.5 s stream of 3000 messages.
fn node1_killed(c: &Case, tag: &str, mode: &str, wait: &str) -> Outcome {
    let config = c.config(tag, &[B2_STANDBY, (secondary(mode).0, &secondary(mode).1)]);
    let mut run = c.start(tag, &config);
    run.source(3000, 2000, wait);
    kill_node1_and_see_b1_down(&run, Duration::from_millis(500));
    let o = run.finish();
    o.went_down("b1", &["ack_late", "peer_heartbeat_late"]);
    o
}

#[test]
fn node_killed_failover_resends_on_the_standby_link() {
    const T: &str = "node_killed_failover_resends_on_the_standby_link";
    let Some(c) = case(T, 'f') else { return };
    let o = node1_killed(&c, "failover", "failover", "5");
    o.every_message_once_in_order(3000, "failover");
    assert_eq!(o.n("mode.failovers"), 1, "{}", o.log);
    assert_eq!(o.sum["mode"]["final"], "protected");
    assert_eq!(o.sum["health"]["b2"]["in_service"], true);
    assert_eq!(
        o.sum["health"]["b2"]["state"], "up",
        "{:#}",
        o.sum["health"]
    );
    // Everything after the failover was confirmed on b2's tap; what was held
    // at the failover was re-sent on b2 first.
    assert!(o.n("tap.b2.confirmed") > 0);
    assert!(
        o.n("tap.b1.confirmed") + o.n("tap.b2.confirmed") >= 3000,
        "{:#}",
        o.sum["tap"]
    );
    assert_eq!(o.n("messages.released_unprotected"), 0);
    eprintln!("resent on b2: {}", o.n("ingress.resent"));
    c.done(T);
}

#[test]
fn node_killed_pass_through_flags_confirmations_unprotected() {
    const T: &str = "node_killed_pass_through_flags_confirmations_unprotected";
    let Some(c) = case(T, 'p') else { return };
    let o = node1_killed(&c, "passthrough", "pass-through", "5");
    o.every_message_once_in_order(3000, "pass-through");
    assert_eq!(o.sum["mode"]["final"], "pass-through");
    let unprotected = o.n("messages.released_unprotected");
    assert!(unprotected > 0, "{:#}", o.sum["messages"]);
    // The confirmations flagged UNPROTECTED are exactly the messages released
    // after the outage: the last ones, in order.
    let flagged = seqs(&o.src["unprotected_seqs"]);
    assert_eq!(flagged.len() as u64, unprotected);
    same_seqs(
        &flagged,
        &(3001 - unprotected..=3000).collect::<Vec<_>>(),
        "the unprotected confirmations are those after the outage",
    );
    c.done(T);
}

#[test]
fn node_killed_halt_fails_closed() {
    const T: &str = "node_killed_halt_fails_closed";
    let Some(c) = case(T, 'h') else { return };
    let o = node1_killed(&c, "halt", "halt", "1");
    assert_eq!(o.sum["mode"]["final"], "halt");
    // Accepting stopped: the source sent 3000, far fewer were accepted.
    let accepted = o.n("messages.accepted");
    assert!(accepted < 3000, "accepted {accepted} of 3000 after halting");
    assert!(o.n("ingress.halted_polls") > 0);
    let released = o.released_prefix_rest_held("halt");
    assert_eq!(o.n("messages.released_unprotected"), 0);
    eprintln!(
        "halt: accepted {accepted}, released {released}, held {}",
        o.n("messages.held_at_shutdown")
    );
    c.done(T);
}

#[test]
fn node_killed_journal_mode_journals_locally_and_releases() {
    const T: &str = "node_killed_journal_mode_journals_locally_and_releases";
    let Some(c) = case(T, 'm') else { return };
    let local = c.out.join("local-journal");
    let config = c.config(
        "journal",
        &[
            B2_STANDBY,
            (
                "secondary_mode: halt\n",
                &format!(
                    "secondary_mode: journal\nlocal_journal:\n  dir: {}\n",
                    local.display()
                ),
            ),
        ],
    );
    let mut run = c.start("journal", &config);
    run.source(3000, 2000, "5");
    kill_node1_and_see_b1_down(&run, Duration::from_millis(500));
    let o = run.finish();
    o.went_down("b1", &["ack_late", "peer_heartbeat_late"]);
    o.every_message_once_in_order(3000, "journal mode");
    assert_eq!(o.sum["mode"]["final"], "journal", "{:#}", o.sum["mode"]);
    let journaled = o.n("egress.released_journaled");
    assert!(journaled > 0, "{:#}", o.sum["egress"]);
    // What was released on the local journal's strength is in it.
    let run = taphold_journal::RunId {
        stream: 1,
        epoch: o.n("run.epoch"),
    };
    let records = taphold_journal::read_records(&taphold_journal::run_dir(&local, run))
        .unwrap_or_else(|e| panic!("local journal {}: {e}", local.display()));
    assert!(records.len() as u64 >= journaled);
    let mut seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert!(
        (3001 - journaled..=3000).all(|s| seqs.binary_search(&s).is_ok()),
        "every message released after the outage is in the local journal"
    );
    c.done(T);
}

#[test]
fn tap_cut_is_detected_by_heartbeats_and_fails_over() {
    const T: &str = "tap_cut_is_detected_by_heartbeats_and_fails_over";
    let Some(c) = case(T, 'c') else { return };
    let config = c.config(
        "tapcut",
        &[
            B2_STANDBY,
            (secondary("failover").0, &secondary("failover").1),
        ],
    );
    let mut run = c.start("tapcut", &config);
    run.source(3000, 2000, "5");
    run.at(Duration::from_millis(500));
    let cut = Instant::now();
    c.lab.run(&["tap", "1", "cut"]);
    let down = run.await_log(
        "backup link 0: degraded -> down (tap_silent)",
        cut,
        DETECT + DOWN_AFTER + SLACK,
    );
    eprintln!("tap 1 cut: b1 down after {down:?}");
    let o = run.finish();
    o.went_down("b1", &["tap_silent"]);
    o.every_message_once_in_order(3000, "tap cut");
    assert_eq!(o.n("mode.failovers"), 1);
    assert_eq!(o.sum["mode"]["final"], "protected");
    assert_eq!(o.sum["health"]["b2"]["in_service"], true);
    assert!(o.n("tap.b1.confirmed") < 3000);
    assert!(o.n("tap.b2.confirmed") > 0);
    c.done(T);
}

/// The tap counters that refuse a copy as not ours or not intact.
fn bad_copies(tap: &Value) -> u64 {
    tap.as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| {
            k.starts_with("malformed_")
                || ["corrupt", "digest_mismatch", "foreign", "unexpected_type"]
                    .contains(&k.as_str())
        })
        .map(|(_, v)| v.as_u64().unwrap())
        .sum()
}

#[test]
fn impaired_backup_link_and_tap_never_falsely_confirm() {
    const T: &str = "impaired_backup_link_and_tap_never_falsely_confirm";
    const MESSAGES: u64 = 2000;
    let Some(c) = case(T, 'i') else { return };
    let impair = "a2b corrupt=0.03 dup=0.03 reorder=0.03 reorder_us=300 loss=0.03";

    // `any` on b1 and b2: b1's link to its node and its tap path corrupt,
    // duplicate, reorder and drop frames. b1's bad tap copies are refused and
    // counted; b2 carries every message.
    c.lab.emu("1", impair);
    c.lab.emu("t1", impair);
    let config = c.config("any", &[]);
    let mut run = c.start("any", &config);
    run.source(MESSAGES, 4000, "5");
    let o = run.finish();
    o.every_message_once_in_order(MESSAGES, "any, b1 impaired");
    let tap = c.lab.emu_stats("t1");
    let corrupted = n(&tap, "a2b.corrupted");
    assert!(corrupted > 0 && n(&tap, "a2b.duplicated") > 0 && n(&tap, "a2b.dropped") > 0);
    // A corrupted copy the emulator then duplicates arrives twice.
    let bad = bad_copies(&o.sum["tap"]["b1"]);
    assert!(
        (corrupted..=corrupted + n(&tap, "a2b.duplicated")).contains(&bad),
        "every corrupted tap copy refused and counted: {corrupted} corrupted, {bad} refused: {:#}",
        o.sum["tap"]["b1"]
    );
    assert!(o.n("tap.b1.duplicate") + o.n("tap.b1.late") > 0);
    assert!(
        o.n("tap.b1.confirmed") < MESSAGES,
        "lost and corrupted copies confirmed nothing"
    );
    assert_eq!(o.n("tap.b2.confirmed") + o.n("tap.b2.late"), MESSAGES);
    assert_eq!(o.n("messages.released_unprotected"), 0);
    // The node on the impaired link refused the corrupted frames and never
    // journaled one twice. Its cumulative ack covers what it journaled and
    // what the primary had already released when the node never got it
    // (frames lost on the link): exactly the seqs it reports as covered by
    // the watermark are missing, no other.
    let acked = o.n("health.b1.acked_seq");
    c.lab.node(1, "stop");
    let node = c.lab.node_stats(1);
    assert!(n(&node, "refused.bad_digest") > 0, "{node:#}");
    let journal = c.lab.journal_seqs(1);
    let mut sorted = journal.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), journal.len(), "a seq journaled twice");
    let missing = (1..=acked)
        .filter(|s| sorted.binary_search(s).is_err())
        .count() as u64;
    assert_eq!(
        missing,
        n(&node, "journal.covered_by_watermark"),
        "node 1 acked {acked}: every seq it lacks is one the watermark covered: {node:#}"
    );
    eprintln!(
        "any: b1 tap confirmed {}, bad copies {corrupted}, b1 state {}, node 1 acked {acked}",
        o.n("tap.b1.confirmed"),
        o.sum["health"]["b1"]["state"]
    );

    // `all` on b1 and b2, b1's tap path corrupting: a message whose b1 copy
    // was corrupted never confirms on b1, so it and everything after it stay
    // held; nothing unconfirmed is released.
    c.lab.emu("1", "both clear");
    c.lab.emu("t1", "both clear");
    c.lab.emu("t1", "a2b corrupt=0.02");
    c.lab.node(1, "reset");
    c.lab.node(2, "reset");
    let before = n(&c.lab.emu_stats("t1"), "a2b.corrupted");
    let (from, to) = policy("all");
    let config = c.config("all", &[(from, &to)]);
    let mut run = c.start("all", &config);
    run.source(MESSAGES, 4000, "1");
    let o = run.finish();
    let corrupted = n(&c.lab.emu_stats("t1"), "a2b.corrupted") - before;
    assert!(corrupted > 0);
    assert_eq!(
        bad_copies(&o.sum["tap"]["b1"]),
        corrupted,
        "{:#}",
        o.sum["tap"]["b1"]
    );
    // A corrupted b1 copy holds its message only until its re-launch
    // (RETRANSMIT) comes back intact: nothing waits for good, and nothing is
    // released without a good copy on both taps.
    o.every_message_once_in_order(MESSAGES, "all, b1's tap corrupting");
    assert!(
        o.n("relaunch.b1.retransmits") > 0,
        "{:#}",
        o.sum["relaunch"]
    );
    assert_eq!(o.n("tap.b1.confirmed"), MESSAGES);
    assert_eq!(o.n("tap.b2.confirmed"), MESSAGES);
    assert_eq!(o.n("messages.released_unprotected"), 0);
    eprintln!(
        "all: b1 bad copies {corrupted}, retransmits {}",
        o.n("relaunch.b1.retransmits")
    );
    c.done(T);
}

#[test]
fn any_with_taps_cut_one_at_a_time_delivers_everything() {
    const T: &str = "any_with_taps_cut_one_at_a_time_delivers_everything";
    const MESSAGES: u64 = 2400;
    let Some(c) = case(T, 'a') else { return };
    let limit = DETECT + DOWN_AFTER + SLACK;
    // any: cut b1's tap, restore it, then cut b2's: every message delivered.
    let config = c.config("any", &[]);
    let mut run = c.start("any", &config);
    run.source(MESSAGES, 2000, "5");
    run.at(Duration::from_millis(250));
    let t = Instant::now();
    c.lab.run(&["tap", "1", "cut"]);
    run.await_log("backup link 0: degraded -> down (tap_silent)", t, limit);
    c.lab.run(&["tap", "1", "restore"]);
    // Back up after up_after_us (100 ms) of passing checks.
    run.await_log(
        "backup link 0: down -> up",
        t,
        limit + Duration::from_secs(1),
    );
    let t = Instant::now();
    c.lab.run(&["tap", "2", "cut"]);
    run.await_log("backup link 1: degraded -> down (tap_silent)", t, limit);
    let o = run.finish();
    o.every_message_once_in_order(MESSAGES, "any, taps cut one at a time");
    o.went_down("b1", &["tap_silent"]);
    o.went_down("b2", &["tap_silent"]);
    assert_eq!(o.sum["mode"]["final"], "protected");
    for link in ["b1", "b2"] {
        assert!(o.n(&format!("tap.{link}.confirmed")) < MESSAGES, "{link}");
    }
    c.done(T);
}

#[test]
fn all_and_2_of_2_hold_everything_after_one_tap_is_cut() {
    const T: &str = "all_and_2_of_2_hold_everything_after_one_tap_is_cut";
    const MESSAGES: u64 = 2400;
    let Some(c) = case(T, 'q') else { return };
    let limit = DETECT + DOWN_AFTER + SLACK;
    // Cutting one tap holds everything launched after the cut, the link goes
    // down and the appliance fails closed. `all` with b2's tap cut, then
    // `2-of-2` with b1's.
    for (policy_text, cut) in [("all", 2), ("2-of-2", 1)] {
        c.lab.node(1, "reset");
        c.lab.node(2, "reset");
        let (from, to) = policy(policy_text);
        let tag = format!("{policy_text}-cut{cut}");
        let config = c.config(&tag, &[(from, &to)]);
        let mut run = c.start(&tag, &config);
        run.source(MESSAGES, 2000, "1");
        run.at(Duration::from_millis(300));
        let t = Instant::now();
        c.lab.run(&["tap", &cut.to_string(), "cut"]);
        run.await_log(
            &format!("backup link {}: degraded -> down (tap_silent)", cut - 1),
            t,
            limit,
        );
        let o = run.finish();
        let link = format!("b{cut}");
        o.went_down(&link, &["tap_silent"]);
        assert_eq!(o.sum["mode"]["final"], "halt", "{tag}");
        let released = o.released_prefix_rest_held(&tag);
        assert!(
            released > 0 && released < MESSAGES,
            "{tag}: released {released}"
        );
        assert!(
            o.n("messages.accepted") < MESSAGES,
            "{tag}: accepting stopped"
        );
        // Each released message was confirmed on both taps.
        for l in ["b1", "b2"] {
            assert!(
                o.n(&format!("tap.{l}.confirmed")) + o.n(&format!("tap.{l}.late")) >= released,
                "{tag}: {l}"
            );
        }
        c.lab.run(&["tap", &cut.to_string(), "restore"]);
        eprintln!(
            "{tag}: accepted {}, released {released}, held {}",
            o.n("messages.accepted"),
            o.n("messages.held_at_shutdown")
        );
    }
    c.done(T);
}

#[test]
fn journal_keeps_every_acked_record_across_kill9() {
    const T: &str = "journal_keeps_every_acked_record_across_kill9";
    let Some(c) = case(T, 'j') else { return };
    // `any` on both links: b2 carries the stream while node 1 is dead.
    let config = c.config("journal", &[]);
    let mut run = c.start("journal", &config);
    run.source(3000, 2000, "5");
    kill_node1_and_see_b1_down(&run, Duration::from_millis(600));
    // Dead: its journal as kill -9 left it (a torn tail, if any, is reported).
    let (code, text) = c.lab.inspect(1);
    assert!(
        code == 0 || (code == 1 && text.contains("torn tail")),
        "{code}: {text}"
    );
    eprintln!("journal after kill -9:\n{text}");
    c.lab.node(1, "start");
    let o = run.finish();
    o.every_message_once_in_order(3000, "journal");
    // The highest seq node 1 ever acked, before the kill or after restarting.
    let acked = o.n("health.b1.acked_seq");
    assert!(acked > 0 && acked <= 3000, "node 1 acked {acked}");
    c.lab.node(1, "stop");
    let node = c.lab.node_stats(1);
    let journal = c.lab.journal_seqs(1);
    let mut sorted = journal.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), journal.len(), "a seq journaled twice");
    // Every record node 1 acked before the kill was synced, so it survived;
    // what it lacks below its final ack is exactly what it missed while it
    // was dead and the primary had released meanwhile (covered by the
    // watermark after the restart), nothing else.
    let missing: Vec<u64> = (1..=acked)
        .filter(|s| sorted.binary_search(s).is_err())
        .collect();
    assert_eq!(
        missing.len() as u64,
        n(&node, "journal.covered_by_watermark"),
        "node 1 acked {acked}; its journal lacks {} of them: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    // The gap is one run: the seqs launched while the node was down.
    if let (Some(first), Some(last)) = (missing.first(), missing.last()) {
        assert_eq!(
            last - first + 1,
            missing.len() as u64,
            "one contiguous gap: {missing:?}"
        );
    }
    assert!(n(&node, "journal.recovered_records") > 0, "{node:#}");
    let (code, text) = c.lab.inspect(1);
    assert_eq!(code, 0, "after recovery the journal inspects clean: {text}");
    let log = std::fs::read_to_string(c.lab.node_dir(1).join("node.log")).unwrap();
    eprintln!(
        "node 1 acked {acked}, recovered {}; {}",
        n(&node, "journal.recovered_records"),
        log.lines()
            .filter(|l| l.contains("recovered"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    c.done(T);
}

/// The bug, live: the appliance restarted mid-flow against the same,
/// still-running backup nodes (no `node N reset`). Its second run numbers from
/// 1 again; with epochs, both nodes journal every message of both runs, each
/// run complete in its own run directory, and `journal export` shows both.
#[test]
fn appliance_restarted_mid_flow_both_runs_journaled_complete_by_the_same_nodes() {
    const T: &str = "appliance_restarted_mid_flow_both_runs_journaled_complete_by_the_same_nodes";
    let Some(c) = case(T, 'e') else { return };
    let config = c.config("restart", &[]);
    // The destination outlasts the restart gap (EAL start-up of a debug build).
    let mut run = Run::start(&c.lab, &c.out.join("restart"), &config, "6");
    run.source(4000, 2000, "6");
    run.at(Duration::from_millis(700));
    let first = run.restart_appliance(&c.out.join("restart2"), &config);
    let o = run.finish();
    let second = &o.sum;
    let (e1, e2) = (n(&first, "run.epoch"), n(second, "run.epoch"));
    assert!(e2 > e1, "a new, larger epoch: {e1} then {e2}");
    assert_eq!(n(second, "run.previous_epoch"), e1);
    let (a1, a2) = (
        n(&first, "messages.accepted"),
        n(second, "messages.accepted"),
    );
    assert!(a1 > 0 && a2 > 0, "both runs carried traffic: {a1}, {a2}");
    // What left for the destination: run 1's releases, then run 2's, each
    // once, in the source's order (run 1's held messages stay held: taking
    // them over is the recovery issue's).
    let released = n(&first, "messages.released") + n(second, "messages.released");
    let arrivals = o.arrivals();
    assert_eq!(arrivals.len() as u64, released);
    assert!(
        arrivals.windows(2).all(|w| w[0] < w[1]),
        "in order, once each"
    );
    assert_eq!(o.confirmed().len() as u64, released);

    for node in [1, 2] {
        c.lab.node(node, "stop");
        let stats = c.lab.node_stats(node);
        assert_eq!(
            n(&stats, "journaled"),
            a1 + a2,
            "node {node} journaled every message of both runs: {stats:#}"
        );
        assert_eq!(n(&stats, "duplicates"), 0, "node {node}: {stats:#}");
        assert_eq!(n(&stats, "runs_opened"), 2, "node {node}");
        let runs = c.lab.journal_runs(node);
        let epochs: Vec<u64> = runs.iter().map(|r| r.0).collect();
        assert_eq!(epochs, [e1, e2], "node {node}: a run per epoch");
        for ((_, seqs), accepted) in runs.iter().zip([a1, a2]) {
            let mut sorted = seqs.clone();
            sorted.sort_unstable();
            same_seqs(
                &sorted,
                &(1..=accepted).collect::<Vec<_>>(),
                &format!("node {node}'s run"),
            );
        }
        let (code, text) = c.lab.inspect(node);
        assert_eq!(code, 0, "node {node}: {text}");
        // The export: both runs, each complete and in order.
        let out = c.lab.run(&["node", &node.to_string(), "export"]);
        let ids: Vec<(u64, u64)> = out
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (n(&v, "epoch"), n(&v, "seq"))
            })
            .collect();
        let want: Vec<(u64, u64)> = (1..=a1)
            .map(|s| (e1, s))
            .chain((1..=a2).map(|s| (e2, s)))
            .collect();
        assert!(ids == want, "node {node}: export is not both runs in order");
    }
    c.done(T);
}
