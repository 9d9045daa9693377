//! Liveness under faults, live: the faults of an operator's worst day on the
//! namespace lab (kernel UDP source and destination, real backup nodes, the
//! tc-mirror tap through its emulator), each with continuous traffic. In every
//! case every accepted message is released exactly once, in order, or
//! accounted at shutdown; the transitions and alerts are in the summary.
//! See docs/lab.md.

mod common;

use std::time::Duration;

use common::lab::*;

/// b2 a standby: b1 alone carries the stream, so what happens to its tap
/// decides every release.
fn b1_alone(c: &Case, tag: &str, mode: &str, more: &[(&str, &str)]) -> std::path::PathBuf {
    let (from, to) = secondary(mode);
    let mut edits = vec![B2_STANDBY, (from, &to)];
    edits.extend_from_slice(more);
    c.config(tag, &edits)
}

/// Everything accepted was released, once, in order, confirmed, and nothing
/// is still held.
fn all_accepted_released(o: &Outcome, what: &str) -> u64 {
    let accepted = o.n("messages.accepted");
    assert_eq!(
        o.n("messages.released"),
        accepted,
        "{what}: {:#}",
        o.sum["messages"]
    );
    assert_eq!(o.n("messages.held_at_shutdown"), 0, "{what}");
    let arrivals = o.arrivals();
    assert_eq!(
        arrivals.len() as u64,
        accepted,
        "{what}: the destination got each once"
    );
    assert!(arrivals.windows(2).all(|w| w[0] < w[1]), "{what}: in order");
    assert_eq!(
        o.confirmed(),
        arrivals,
        "{what}: confirmed what was released, in order"
    );
    accepted
}

#[test]
fn one_lost_tap_copy_is_retransmitted_and_nothing_stalls() {
    const T: &str = "one_lost_tap_copy_is_retransmitted_and_nothing_stalls";
    let Some(c) = case(T, 'a') else { return };
    // The tap path loses the copy of message 500 (its re-launch passes).
    c.lab.emu("t1", "a2b drop_seq=500");
    let config = b1_alone(&c, "lost1", "halt", &[]);
    let mut run = c.start("lost1", &config);
    run.source(2000, 2000, "5");
    let o = run.finish();
    o.every_message_once_in_order(2000, "one tap copy lost");
    assert_eq!(n(&c.lab.emu_stats("t1"), "a2b.dropped_by_seq"), 1);
    assert!(
        o.n("relaunch.b1.retransmits") >= 1,
        "{:#}",
        o.sum["relaunch"]
    );
    assert_eq!(o.n("relaunch.b1.exhausted"), 0);
    assert_eq!(o.sum["mode"]["final"], "protected");
    assert!(
        o.transitions("b1").iter().all(|t| t.1 != "down"),
        "{:?}",
        o.transitions("b1")
    );
    c.done(T);
}

#[test]
fn a_burst_of_lost_tap_copies_is_retransmitted() {
    const T: &str = "a_burst_of_lost_tap_copies_is_retransmitted";
    let Some(c) = case(T, 'b') else { return };
    c.lab.emu("t1", "a2b drop_seq=1000-1199");
    let config = b1_alone(&c, "burst", "halt", &[]);
    let mut run = c.start("burst", &config);
    run.source(2400, 2000, "5");
    let o = run.finish();
    o.every_message_once_in_order(2400, "a burst of tap copies lost");
    assert_eq!(n(&c.lab.emu_stats("t1"), "a2b.dropped_by_seq"), 200);
    assert!(
        o.n("relaunch.b1.retransmits") >= 200,
        "{:#}",
        o.sum["relaunch"]
    );
    assert_eq!(o.sum["mode"]["final"], "protected");
    c.done(T);
}

#[test]
fn a_tap_cut_and_restored_never_stalls_under_each_secondary_mode() {
    const T: &str = "a_tap_cut_and_restored_never_stalls_under_each_secondary_mode";
    let Some(c) = case(T, 'o') else { return };
    let local = c.out.join("local-journal");
    for mode in ["halt", "pass-through", "journal", "failover"] {
        let journal = format!(
            "secondary_mode: {mode}\nlocal_journal:\n  dir: {}\n",
            local.display()
        );
        let more: Vec<(&str, &str)> = if mode == "journal" {
            vec![("secondary_mode: halt\n", &journal)]
        } else {
            vec![]
        };
        let mode_now = if mode == "journal" { "halt" } else { mode };
        let config = b1_alone(&c, mode, mode_now, &more);
        let mut run = c.start(mode, &config);
        run.source(3000, 2000, "6");
        run.at(Duration::from_millis(400));
        c.lab.run(&["tap", "1", "cut"]);
        run.at(Duration::from_millis(1100));
        c.lab.run(&["tap", "1", "restore"]);
        let o = run.finish();
        let what = format!("tap cut and restored, {mode}");
        let accepted = all_accepted_released(&o, &what);
        o.went_down("b1", &["tap_silent"]);
        assert_eq!(
            o.n("alerts.by_kind.link_down"),
            1,
            "{what}: {:#}",
            o.sum["alerts"]
        );
        match mode {
            "halt" => {
                assert!(o.n("alerts.by_kind.mode_halt") >= 1, "{what}");
                assert!(
                    accepted < 3000,
                    "{what}: halted, accepting stopped for a while"
                );
                assert!(
                    o.n("relaunch.b1.round_resends") > 0,
                    "{what}: {:#}",
                    o.sum["relaunch"]
                );
                assert_eq!(o.n("messages.released_unprotected"), 0, "{what}");
            }
            "pass-through" => {
                assert!(o.n("alerts.by_kind.mode_pass_through") >= 1, "{what}");
                assert!(o.n("messages.released_unprotected") > 0, "{what}");
                let unprotected = common::lab::seqs(&o.src["unprotected_seqs"]);
                assert_eq!(
                    unprotected.len() as u64,
                    o.n("messages.released_unprotected")
                );
            }
            "journal" => {
                assert!(o.n("alerts.by_kind.mode_journal") >= 1, "{what}");
                assert!(o.n("egress.released_journaled") > 0, "{what}");
            }
            _ => {
                assert_eq!(o.n("mode.failovers"), 1, "{what}");
                assert!(o.n("relaunch.b2.round_resends") > 0, "{what}");
            }
        }
        if mode != "failover" {
            // The link came back and the mode with it.
            let t = o.transitions("b1");
            assert_eq!(t.last().map(|t| t.1.as_str()), Some("up"), "{what}: {t:?}");
            assert_eq!(o.sum["mode"]["final"], "protected", "{what}");
        }
        eprintln!(
            "{what}: accepted {accepted}, unprotected {}, journaled {}, round re-sends {}, retransmits {}",
            o.n("messages.released_unprotected"),
            o.n("egress.released_journaled"),
            o.n("relaunch.b1.round_resends"),
            o.n("relaunch.b1.retransmits")
        );
        c.lab.node(1, "reset");
        c.lab.node(2, "reset");
    }
    c.done(T);
}

#[test]
fn a_flapping_tap_never_loses_or_strands_a_message() {
    const T: &str = "a_flapping_tap_never_loses_or_strands_a_message";
    let Some(c) = case(T, 'f') else { return };
    for mode in ["halt", "pass-through"] {
        let config = b1_alone(&c, mode, mode, &[]);
        let mut run = c.start(mode, &config);
        run.source(4000, 2000, "6");
        // Cut and restored five times, 120 ms each way: faster than the link's
        // way back up (up_after 100 ms after the checks pass).
        for i in 0..5u64 {
            run.at(Duration::from_millis(300 + i * 240));
            c.lab.run(&["tap", "1", "cut"]);
            run.at(Duration::from_millis(420 + i * 240));
            c.lab.run(&["tap", "1", "restore"]);
        }
        let o = run.finish();
        let what = format!("flapping tap, {mode}");
        all_accepted_released(&o, &what);
        let t = o.transitions("b1");
        assert!(t.iter().any(|t| t.1 == "down"), "{what}: {t:?}");
        assert_eq!(t.last().map(|t| t.1.as_str()), Some("up"), "{what}: {t:?}");
        assert!(o.n("alerts.total") > 0, "{what}");
        eprintln!(
            "{what}: {} transitions, alerts {}",
            t.len(),
            o.sum["alerts"]["by_kind"]
        );
        c.lab.node(1, "reset");
        c.lab.node(2, "reset");
    }
    c.done(T);
}

#[test]
fn backpressure_lasting_past_its_alert_is_seen_and_nothing_accepted_is_lost() {
    const T: &str = "backpressure_lasting_past_its_alert_is_seen_and_nothing_accepted_is_lost";
    let Some(c) = case(T, 'p') else { return };
    // A 64-slot ring; the tap cut for 800 ms; the link takes 10 s to be
    // declared down, so it stays degraded and the ring stays full.
    let config = b1_alone(
        &c,
        "pressure",
        "halt",
        &[
            (
                "  capacity: 1024\n",
                "  capacity: 64\n  backpressure_alert_ms: 100\n",
            ),
            ("  down_after_us: 30000\n", "  down_after_us: 10000000\n"),
        ],
    );
    let mut run = c.start("pressure", &config);
    run.source(3000, 2000, "6");
    run.at(Duration::from_millis(300));
    c.lab.run(&["tap", "1", "cut"]);
    run.at(Duration::from_millis(1100));
    c.lab.run(&["tap", "1", "restore"]);
    let o = run.finish();
    let accepted = all_accepted_released(&o, "backpressure");
    assert!(accepted < 3000, "frames were left on P");
    assert!(o.n("ingress.ring_full_polls") > 0);
    assert_eq!(
        o.n("alerts.by_kind.backpressure"),
        1,
        "{:#}",
        o.sum["alerts"]
    );
    // What was never read is the port's: the summary shows P's counters.
    let p = &o.sum["ports"]["net_af_packet0"];
    eprintln!(
        "backpressure: sent 3000, accepted {accepted}, P ipackets {} imissed {}",
        p["ipackets"], p["imissed"]
    );
    assert!(p["imissed"].as_u64().is_some() && p["ipackets"].as_u64().is_some());
    c.done(T);
}
