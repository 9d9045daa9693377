//! Recovery, live: the destination's arbiter (taphold-arbiter in the
//! destination namespace) takes the appliance's releases (input A) and the
//! backup nodes' replays and resend answers (B1, B2), delivers each message
//! once, in order, to the kernel destination, and confirms what it delivered
//! to the appliance and the nodes, which delete only that. When the appliance
//! is lost, a node takes over and replays what the destination may not have.
//!
//! Every test brings up a lab of its own (lab.sh: the arbiter's config, the
//! nodes' destination ports) and tears it down in a Drop guard.

mod common;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use common::lab::*;
use common::sh;
use serde_json::Value;

/// config/lab.yaml with the delivery header and target confirmations: what an
/// arbiter needs.
fn arbitrated(c: &Case, tag: &str, more: &[(&str, &str)]) -> PathBuf {
    let mut edits: Vec<(&str, &str)> = vec![(
        "  udp_port: 9100\n",
        "  udp_port: 9100\n  framing: taphold\n  target_confirm_port: 9001\n",
    )];
    edits.extend_from_slice(more);
    c.config(tag, &edits)
}

/// The destination side of one run: the arbiter, and the kernel destination
/// recording what the arbiter delivers (127.0.0.1:9200, payloads only).
struct Dest<'a> {
    lab: &'a Lab,
    dir: PathBuf,
    arbiter: Option<Child>,
    dst: Option<Child>,
}

impl<'a> Dest<'a> {
    /// Starts the arbiter, then the destination (which exits once idle for
    /// `idle` s); returns once both are listening.
    fn start(lab: &'a Lab, dir: &Path, idle: &str) -> Dest<'a> {
        std::fs::create_dir_all(dir).unwrap();
        let mut d = Dest {
            lab,
            dir: dir.to_path_buf(),
            arbiter: None,
            dst: None,
        };
        d.start_arbiter();
        d.dst = Some(lab.spawn(
            &[
                "dst",
                "--listen",
                "127.0.0.1:9200",
                "--out",
                dir.join("dest.json").to_str().unwrap(),
                "--ready",
                dir.join("dest.ready").to_str().unwrap(),
                "--idle-exit",
                idle,
                "--max-time",
                "60",
            ],
            &dir.join("dest.log"),
            None,
        ));
        let t = Instant::now();
        while !dir.join("dest.ready").exists() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "destination not ready"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// Starts (or restarts) the arbiter, writing to `dir/arbiter-N`.
    fn start_arbiter(&mut self) {
        let n = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("arbiter-")
            })
            .count();
        let out = self.dir.join(format!("arbiter-{n}"));
        std::fs::create_dir_all(&out).unwrap();
        let log = out.join("arbiter.log");
        let mut child = self
            .lab
            .spawn(&["arbiter", out.to_str().unwrap()], &log, None);
        let t = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("listening") || text.contains("inputs") {
                break;
            }
            if let Some(s) = child.try_wait().unwrap() {
                panic!("arbiter exited: {s}\n{text}");
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "arbiter not up\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.arbiter = Some(child);
    }

    /// Stops the arbiter with SIGTERM; its summary.
    fn stop_arbiter(&mut self) -> Value {
        let mut child = self.arbiter.take().expect("arbiter running");
        // SAFETY: kill(2) on our own child (lab.sh execs into the arbiter).
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let dirs: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("arbiter-")
            })
            .collect();
        let out = dirs.iter().max().unwrap().clone();
        let log = out.join("arbiter.log");
        wait(&mut child, Duration::from_secs(15), "arbiter", &log);
        read_json(&out.join("summary.json"), &log)
    }

    /// Waits for the destination to go idle and exit, stops the arbiter:
    /// (the arbiter's summary, the destination's record).
    fn finish(mut self) -> (Value, Value) {
        let mut dst = self.dst.take().unwrap();
        let log = self.dir.join("dest.log");
        let s = wait(&mut dst, Duration::from_secs(70), "dest", &log);
        assert!(s.success(), "dest: {s}");
        let arb = self.stop_arbiter();
        (arb, read_json(&self.dir.join("dest.json"), &log))
    }
}

impl Drop for Dest<'_> {
    fn drop(&mut self) {
        for c in [self.arbiter.as_mut(), self.dst.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// The kernel source: `count` messages from client seq `first` at `rate`/s,
/// then up to `wait` s for confirmations; its record in `dir/NAME.json`.
fn source(
    lab: &Lab,
    dir: &Path,
    name: &str,
    first: u64,
    count: u64,
    rate: u64,
    wait: &str,
) -> Child {
    lab.spawn(
        &[
            "src",
            "--count",
            &count.to_string(),
            "--first-seq",
            &first.to_string(),
            "--rate",
            &rate.to_string(),
            "--size-min",
            "64",
            "--size-max",
            "1400",
            "--wait",
            wait,
            "--out",
            dir.join(format!("{name}.json")).to_str().unwrap(),
        ],
        &dir.join(format!("{name}.log")),
        None,
    )
}

fn await_source(mut child: Child, dir: &Path, name: &str) -> Value {
    let log = dir.join(format!("{name}.log"));
    let s = wait(&mut child, Duration::from_secs(60), "source", &log);
    assert!(
        s.success(),
        "source: {s}\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    read_json(&dir.join(format!("{name}.json")), &log)
}

/// Client seqs the destination got, in arrival order.
fn delivered(dst: &Value) -> Vec<u64> {
    dst["arrivals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a[1].as_u64().unwrap())
        .collect()
}

/// Each seq at most once, and in increasing order (one source sends in seq
/// order, the appliance keeps it, the arbiter delivers in order).
fn once_in_order(got: &[u64], what: &str) {
    for w in got.windows(2) {
        assert!(
            w[0] < w[1],
            "{what}: {} then {} (duplicate or out of order)",
            w[0],
            w[1]
        );
    }
}

/// Kills the appliance outright (SIGKILL): no stop, no summary.
fn kill9(app: &mut Child) {
    // SAFETY: kill(2) on our own child: lab.sh execs (through ip netns exec)
    // into taphold, so the pid is taphold's.
    unsafe {
        libc::kill(app.id() as i32, libc::SIGKILL);
    }
    let _ = app.wait();
}

/// Stops the appliance with SIGTERM; its summary.
fn stop(app: &mut Child, out: &Path) -> Value {
    // SAFETY: as in kill9.
    unsafe {
        libc::kill(app.id() as i32, libc::SIGTERM);
    }
    let log = out.join("appliance.log");
    let s = wait(app, Duration::from_secs(15), "taphold", &log);
    let sum = read_json(&out.join("summary.json"), &log);
    check_exit(s, &sum, &std::fs::read_to_string(&log).unwrap_or_default());
    check_summary(&sum);
    sum
}

/// Node `n` takes over; its report once done.
fn takeover(lab: &Lab, n: u32) -> Value {
    let text = lab.node(n, "takeover");
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("takeover reply `{text}`: {e}"));
    let report = v["takeover"].clone();
    assert!(report.is_object(), "takeover reply: {text}");
    report
}

fn inputs(arb: &Value, input: &str, key: &str) -> u64 {
    arb["inputs"][input][key].as_u64().unwrap_or(0)
}

#[test]
fn appliance_killed_at_five_points_takeover_delivers_every_confirmed_message_once() {
    const T: &str =
        "appliance_killed_at_five_points_takeover_delivers_every_confirmed_message_once";
    let Some(c) = case(T, 'r') else { return };
    let config = arbitrated(&c, "kill", &[]);
    // The taps show each copy 8 ms late (below the 20 ms tap timeout): at any
    // moment a dozen messages are launched and journaled by the nodes but not
    // yet released, and a kill -9 leaves them for the takeover.
    c.lab.emu("t1", "a2b delay_us=8000");
    c.lab.emu("t2", "a2b delay_us=8000");
    let mut recovered = 0;
    for (i, at_ms) in [150u64, 400, 650, 900, 1150].iter().enumerate() {
        let dir = c.out.join(format!("kill{i}"));
        // The destination must outlast the source (1 s of sending, 1 s of
        // waiting for confirmations) and the takeover after it.
        let dest = Dest::start(&c.lab, &dir, "4");
        let mut app = Run::spawn_appliance(&c.lab, &dir, &config, &dir.join("dest.ready"));
        // Client seqs of their own per run: a message of an earlier run that
        // the kernel still held for the appliance's address (queued behind an
        // ARP resolution when that appliance died) may reach this one.
        let first = i as u64 * 10_000 + 1;
        let src = source(&c.lab, &dir, "source", first, 1500, 1500, "1");
        std::thread::sleep(Duration::from_millis(*at_ms));
        kill9(&mut app);
        let src = await_source(src, &dir, "source");
        let report = takeover(&c.lab, 1);
        let (arb, dst) = dest.finish();
        let all = delivered(&dst);
        let got: Vec<u64> = all.iter().copied().filter(|s| *s >= first).collect();
        let what = format!("kill -9 at {at_ms} ms");
        assert!(
            all.iter()
                .all(|s| *s >= first || *s < first - 10_000 + 1500),
            "{what}: {all:?}"
        );
        once_in_order(&got, &what);
        // Every message whose confirmation reached the source was delivered.
        let confirmed = seqs(&src["confirmed_seqs"]);
        let set: std::collections::BTreeSet<u64> = got.iter().copied().collect();
        let missing: Vec<u64> = confirmed
            .iter()
            .filter(|s| !set.contains(s))
            .copied()
            .collect();
        assert!(
            missing.is_empty(),
            "{what}: confirmed, never delivered: {missing:?}"
        );
        assert!(got.len() >= confirmed.len(), "{what}");
        // Every replay reached the arbiter flagged POSSIBLE_DUPLICATE: the
        // first copies it delivered, the rest counted and discarded.
        let replayed = report["replayed"].as_u64().unwrap();
        assert_eq!(report["state"], "done", "{report:#}");
        assert_eq!(
            inputs(&arb, "B1", "first_copies_possible_duplicate")
                + inputs(&arb, "B1", "duplicates_possible_duplicate"),
            replayed,
            "{what}: {:#}\n{report:#}",
            arb["inputs"]
        );
        assert_eq!(arb["counters"]["skipped"].as_u64(), Some(0), "{what}");
        // What only the takeover delivered was accepted and never confirmed.
        let by_takeover = inputs(&arb, "B1", "first_copies_possible_duplicate");
        assert!(
            all.len() as u64 >= confirmed.len() as u64 + by_takeover,
            "{what}: {} delivered, {} confirmed, {by_takeover} by the takeover",
            got.len(),
            confirmed.len()
        );
        recovered += by_takeover;
        eprintln!(
            "{what}: {} sent, {} confirmed, {} delivered ({} by the takeover, {} of its replays discarded)",
            src["sent"],
            confirmed.len(),
            got.len(),
            inputs(&arb, "B1", "first_copies_possible_duplicate"),
            inputs(&arb, "B1", "duplicates_possible_duplicate"),
        );
    }
    assert!(
        recovered > 0,
        "the takeovers delivered messages the appliance never released"
    );
    c.done(T);
}

#[test]
fn loss_duplication_and_reordering_to_the_destination_are_repaired_from_the_nodes() {
    const T: &str =
        "loss_duplication_and_reordering_to_the_destination_are_repaired_from_the_nodes";
    const MESSAGES: u64 = 3000;
    let Some(c) = case(T, 's') else { return };
    let config = arbitrated(&c, "lossy", &[]);
    let dir = c.out.join("lossy");
    let dest = Dest::start(&c.lab, &dir, "3");
    let mut app = Run::spawn_appliance(&c.lab, &dir, &config, &dir.join("dest.ready"));
    c.lab
        .emu("d", "a2b loss=0.03 dup=0.03 reorder=0.03 reorder_us=2000");
    let src = source(&c.lab, &dir, "source", 1, MESSAGES, 2000, "3");
    let src = await_source(src, &dir, "source");
    // A tail of messages after the measured ones: a loss at the very end is
    // noticed when a later message arrives.
    c.lab.emu("d", "both clear");
    let tail = source(&c.lab, &dir, "tail", MESSAGES + 1, 20, 200, "2");
    await_source(tail, &dir, "tail");
    let emu = c.lab.emu_stats("d");
    let (arb, dst) = dest.finish();
    stop(&mut app, &dir);
    let got = delivered(&dst);
    once_in_order(&got, "lossy path");
    let want: Vec<u64> = (1..=MESSAGES).collect();
    assert_eq!(seqs(&src["confirmed_seqs"]).len() as u64, MESSAGES);
    same_seqs(
        &got[..MESSAGES as usize],
        &want,
        "lossy path: every message once, in order",
    );
    // The path really lost, duplicated and reordered, and the arbiter really
    // repaired from the nodes.
    assert!(n(&emu, "a2b.dropped") > 0, "{emu:#}");
    assert!(n(&emu, "a2b.duplicated") > 0, "{emu:#}");
    assert!(
        n(&arb, "counters.resend_requests_sent") > 0,
        "{:#}",
        arb["counters"]
    );
    assert!(
        n(&arb, "counters.filled_by_resend") > 0,
        "{:#}",
        arb["counters"]
    );
    assert!(inputs(&arb, "A", "duplicates") > 0, "{:#}", arb["inputs"]);
    assert_eq!(n(&arb, "counters.skipped"), 0);
    c.done(T);
}

#[test]
fn a_takeover_while_the_appliance_still_delivers_first_copy_wins() {
    const T: &str = "a_takeover_while_the_appliance_still_delivers_first_copy_wins";
    const MESSAGES: u64 = 2000;
    let Some(c) = case(T, 't') else { return };
    let config = arbitrated(&c, "overlap", &[]);
    let dir = c.out.join("overlap");
    let dest = Dest::start(&c.lab, &dir, "2");
    // The arbiter confirms slowly here, so the node holds (and replays) a
    // range the appliance is delivering at the same time: two live senders.
    let mut app = Run::spawn_appliance(&c.lab, &dir, &config, &dir.join("dest.ready"));
    let src = source(&c.lab, &dir, "source", 1, MESSAGES, 2000, "3");
    std::thread::sleep(Duration::from_millis(500));
    let report = takeover(&c.lab, 2);
    let src = await_source(src, &dir, "source");
    let (arb, dst) = dest.finish();
    stop(&mut app, &dir);
    let got = delivered(&dst);
    let want: Vec<u64> = (1..=MESSAGES).collect();
    same_seqs(
        &got,
        &want,
        "A and B overlapping: every message once, in order",
    );
    assert_eq!(seqs(&src["confirmed_seqs"]).len() as u64, MESSAGES);
    let replayed = report["replayed"].as_u64().unwrap();
    assert!(replayed > 0, "{report:#}");
    // B2's replays: whichever copy came first was delivered, the other
    // counted and discarded; nothing twice.
    assert_eq!(
        inputs(&arb, "B2", "first_copies_possible_duplicate")
            + inputs(&arb, "B2", "duplicates_possible_duplicate"),
        replayed,
        "{:#}",
        arb["inputs"]
    );
    assert!(
        inputs(&arb, "B2", "duplicates") + inputs(&arb, "A", "duplicates") > 0,
        "some copies overlapped: {:#}",
        arb["inputs"]
    );
    c.done(T);
}

#[test]
fn with_the_arbiter_down_the_nodes_keep_everything_and_it_catches_up() {
    const T: &str = "with_the_arbiter_down_the_nodes_keep_everything_and_it_catches_up";
    let Some(c) = case(T, 'u') else { return };
    // Nodes that delete only what the destination confirmed, in small segments
    // so that deleting shows.
    for n in ["1", "2"] {
        c.lab.run(&["node", n, "stop"]);
        sh(c.lab
            .cmd(&["node", n, "start"])
            .env("LAB_NODE_TRIM", "delivered")
            .env("LAB_NODE_SEGMENT_BYTES", "65536")
            .env("LAB_NODE_TRIM_MS", "200"));
    }
    let config = arbitrated(&c, "arbdown", &[]);
    let dir = c.out.join("arbdown");
    let mut dest = Dest::start(&c.lab, &dir, "4");
    let mut app = Run::spawn_appliance(&c.lab, &dir, &config, &dir.join("dest.ready"));
    let s1 = source(&c.lab, &dir, "s1", 1, 1000, 2000, "2");
    await_source(s1, &dir, "s1");
    std::thread::sleep(Duration::from_millis(300));
    let before = dest.stop_arbiter();
    assert!(n(&before, "counters.delivered") >= 1000, "{before:#}");
    // Released while nobody takes them at the destination: lost there, kept by
    // the nodes (not confirmed).
    let s2 = source(&c.lab, &dir, "s2", 1001, 2000, 2000, "2");
    await_source(s2, &dir, "s2");
    std::thread::sleep(Duration::from_millis(1500));
    let held = state(&c.lab, 1);
    let unconfirmed = |v: &Value| n(v, "journal_total.unconfirmed_records");
    assert!(
        unconfirmed(&held) >= 2000,
        "node 1 keeps what was not confirmed: {:#}",
        held["journal_total"]
    );
    // The arbiter returns: new messages show it the gap; it asks the nodes.
    dest.start_arbiter();
    let s3 = source(&c.lab, &dir, "s3", 3001, 500, 1000, "2");
    await_source(s3, &dir, "s3");
    std::thread::sleep(Duration::from_millis(1500));
    let after_catch_up = state(&c.lab, 1);
    let (arb, dst) = dest.finish();
    let sum = stop(&mut app, &dir);
    let got = delivered(&dst);
    let want: Vec<u64> = (1..=3500).collect();
    same_seqs(
        &got,
        &want,
        "arbiter down, then back: everything once, in order",
    );
    assert!(
        n(&arb, "counters.filled_by_resend") >= 2000,
        "{:#}",
        arb["counters"]
    );
    assert!(
        sum["alerts"]["by_kind"]["destination_unconfirmed"].as_u64() >= Some(1),
        "{:#}",
        sum["alerts"]
    );
    // Confirmed now: the nodes delete what the destination has, and only now.
    assert!(
        unconfirmed(&after_catch_up) < 100,
        "{:#}",
        after_catch_up["journal_total"]
    );
    assert!(
        n(&after_catch_up, "segments_trimmed") > n(&held, "segments_trimmed"),
        "before {} after {}",
        held["segments_trimmed"],
        after_catch_up["segments_trimmed"]
    );
    c.done(T);
}

/// Node `n`'s state through its control socket.
fn state(lab: &Lab, n: u32) -> Value {
    let text = lab.node(n, "state");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("node state `{text}`: {e}"))
}

#[test]
fn an_appliance_restarted_mid_flow_has_both_epochs_delivered_completely() {
    const T: &str = "an_appliance_restarted_mid_flow_has_both_epochs_delivered_completely";
    let Some(c) = case(T, 'v') else { return };
    let config = arbitrated(&c, "restart", &[]);
    let dir = c.out.join("restart");
    let dest = Dest::start(&c.lab, &dir, "2");
    let first = dir.join("first");
    let mut app = Run::spawn_appliance(&c.lab, &first, &config, &dir.join("dest.ready"));
    let s1 = source(&c.lab, &dir, "s1", 1, 1000, 2000, "2");
    await_source(s1, &dir, "s1");
    let sum1 = stop(&mut app, &first);
    let second = dir.join("second");
    let mut app = Run::spawn_appliance(&c.lab, &second, &config, &dir.join("dest.ready"));
    let s2 = source(&c.lab, &dir, "s2", 1001, 1000, 2000, "2");
    await_source(s2, &dir, "s2");
    let (arb, dst) = dest.finish();
    let sum2 = stop(&mut app, &second);
    let (e1, e2) = (n(&sum1, "run.epoch"), n(&sum2, "run.epoch"));
    assert!(e2 > e1);
    let got = delivered(&dst);
    let want: Vec<u64> = (1..=2000).collect();
    same_seqs(&got, &want, "two epochs: each complete, in order");
    let epochs: Vec<(u64, u64)> = arb["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (n(e, "epoch"), n(e, "delivered_through")))
        .collect();
    assert!(epochs.contains(&(e1, 1000)), "{epochs:?}");
    assert!(epochs.contains(&(e2, 1000)), "{epochs:?}");
    c.done(T);
}

#[test]
fn a_node_with_a_hole_above_the_delivered_seq_names_exactly_the_missing_seqs() {
    const T: &str = "a_node_with_a_hole_above_the_delivered_seq_names_exactly_the_missing_seqs";
    let Some(c) = case(T, 'w') else { return };
    let config = arbitrated(&c, "hole", &[]);
    let dir = c.out.join("hole");
    let mut dest = Dest::start(&c.lab, &dir, "2");
    // No confirmations from here: the delivered seq stays below the hole.
    dest.stop_arbiter();
    let mut app = Run::spawn_appliance(&c.lab, &dir, &config, &dir.join("dest.ready"));
    // Backup link 1 loses the first launch of seqs 40..=44 on its way to node
    // 1 (the tap, before the emulator, still shows them: they are released).
    c.lab.emu("1", "a2b drop_seq=40-44");
    let src = source(&c.lab, &dir, "source", 1, 30, 1000, "2");
    await_source(src, &dir, "source");
    std::thread::sleep(Duration::from_millis(300));
    let src = source(&c.lab, &dir, "more", 31, 30, 1000, "2");
    await_source(src, &dir, "more");
    kill9(&mut app);
    let report = takeover(&c.lab, 1);
    let runs = report["runs"].as_array().unwrap();
    let run = runs.last().unwrap();
    let holes: Vec<(u64, u64, String)> = run["unreplayable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                n(u, "from"),
                n(u, "to"),
                u["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        holes,
        vec![(40, 44, "not_received".to_string())],
        "{report:#}"
    );
    assert_eq!(n(run, "unreplayable_seqs"), 5);
    drop(dest);
    c.done(T);
}
