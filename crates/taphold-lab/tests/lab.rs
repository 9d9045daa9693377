//! The live lab, end to end: kernel UDP source → bridge → taphold (af_packet
//! ports in its own namespace) → backup links through the link emulators,
//! taps as tc mirrors → release to the kernel UDP destination, confirmations
//! back to the source. See docs/lab.md.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{lab_available, prefix, repo, sh};
use serde_json::Value;

const MESSAGES: u64 = 2000;

/// The lab, torn down on drop — also when the test panics.
struct Lab {
    prefix: String,
    bin_dir: PathBuf,
}

impl Lab {
    fn up(prefix: String) -> Lab {
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_taphold-linkemu"))
            .parent()
            .unwrap()
            .to_path_buf();
        let lab = Lab { prefix, bin_dir };
        // Left over from an earlier, killed run with the same pid: remove.
        let _ = lab.cmd(&["down"]).output();
        sh(&mut lab.cmd(&["up"]));
        lab
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(repo().join("scripts/lab.sh"));
        c.args(args)
            .env("LAB_PREFIX", &self.prefix)
            .env("LAB_BIN_DIR", &self.bin_dir);
        c
    }

    fn spawn(&self, args: &[&str], log: &Path) -> Child {
        let f = std::fs::File::create(log).unwrap();
        self.cmd(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap()
    }

    fn emu_stats(&self, n: u32) -> Value {
        let out = sh(&mut self.cmd(&["emu", &n.to_string(), "stats"]));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("emu {n} stats `{out}`: {e}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        match self.cmd(&["down"]).output() {
            Ok(o) if o.status.success() => {}
            other => eprintln!("lab down failed: {other:?}"),
        }
    }
}

/// Waits for `child` up to `limit`; kills it and panics past that.
fn wait(child: &mut Child, limit: Duration, what: &str, log: &Path) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!(
                "{what} still running after {limit:?}\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_json(p: &Path, log: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| {
        panic!(
            "{}: {e}\n{}",
            p.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        )
    });
    serde_json::from_str(&text).unwrap()
}

fn n(v: &Value, path: &str) -> u64 {
    let mut cur = v;
    for p in path.split('.') {
        cur = &cur[p];
    }
    cur.as_u64()
        .unwrap_or_else(|| panic!("{path} missing in {v:#}"))
}

/// The appliance binary: the debug build next to this crate's binaries,
/// built here if `cargo test -p taphold-lab` did not build it (it builds only
/// this package's binaries; a workspace `cargo test` builds all of them).
fn build_appliance() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    sh(Command::new(cargo)
        .args(["build", "-q", "-p", "taphold"])
        .current_dir(repo()));
    let bin = Path::new(env!("CARGO_BIN_EXE_taphold-linkemu")).with_file_name("taphold");
    assert!(bin.exists(), "{} was not built", bin.display());
}

#[test]
fn steady_flow_every_message_delivered_once_in_order() {
    if !lab_available("steady_flow_every_message_delivered_once_in_order") {
        return;
    }
    let t0 = Instant::now();
    build_appliance();
    let built = t0.elapsed();
    let out = std::env::temp_dir().join(format!("taphold-lab-steady-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let lab = Lab::up(prefix('l'));
    let lab_up = t0.elapsed();

    let app_log = out.join("appliance.log");
    let dst_log = out.join("dest.log");
    let src_log = out.join("source.log");
    let mut dest = lab.spawn(
        &[
            "dst",
            "--out",
            out.join("dest.json").to_str().unwrap(),
            "--ready",
            out.join("dest.ready").to_str().unwrap(),
            "--idle-exit",
            "1.5",
            "--max-time",
            "40",
        ],
        &dst_log,
    );
    let mut app = lab.spawn(
        &["appliance", out.to_str().unwrap(), "--duration-ms", "50000"],
        &app_log,
    );
    // Ready when its lcore runs and the destination is bound.
    let start = Instant::now();
    loop {
        let log = std::fs::read_to_string(&app_log).unwrap_or_default();
        if log.contains("lcore 1:") && out.join("dest.ready").exists() {
            break;
        }
        if let Some(s) = app.try_wait().unwrap() {
            panic!("taphold exited early: {s}\n{log}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "taphold not ready after 20 s\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ready = t0.elapsed();

    let mut source = lab.spawn(
        &[
            "src",
            "--count",
            &MESSAGES.to_string(),
            "--rate",
            "4000",
            "--size-min",
            "64",
            "--size-max",
            "1400",
            "--wait",
            "10",
            "--out",
            out.join("source.json").to_str().unwrap(),
        ],
        &src_log,
    );
    let s = wait(&mut source, Duration::from_secs(30), "source", &src_log);
    assert!(
        s.success(),
        "source failed: {s}\n{}",
        std::fs::read_to_string(&src_log).unwrap()
    );
    let s = wait(&mut dest, Duration::from_secs(30), "dest", &dst_log);
    assert!(s.success(), "dest failed: {s}");
    let traffic = t0.elapsed();

    let emu = [lab.emu_stats(1), lab.emu_stats(2)];
    // SIGTERM: taphold stops cleanly and writes summary.json.
    // SAFETY: a pid of a child we spawned and have not reaped.
    unsafe {
        libc::kill(app.id() as i32, libc::SIGTERM);
    }
    let s = wait(&mut app, Duration::from_secs(15), "taphold", &app_log);
    let app_text = std::fs::read_to_string(&app_log).unwrap_or_default();
    assert!(s.success(), "taphold exit {s}\n{app_text}");
    let done = t0.elapsed();

    // Source: every message confirmed exactly once, in order.
    let src = read_json(&out.join("source.json"), &src_log);
    assert_eq!(n(&src, "sent"), MESSAGES, "{src:#}");
    let seqs: Vec<u64> = src["confirmed_seqs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=MESSAGES).collect::<Vec<_>>(),
        "one confirmation per message, in order (missing: {})",
        src["missing"]
    );
    assert_eq!(n(&src, "bad"), 0);

    // Destination: every message once, in order, nothing else.
    let dst = read_json(&out.join("dest.json"), &dst_log);
    let arrivals: Vec<u64> = dst["arrivals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a[0].as_u64(), Some(1), "source id");
            a[1].as_u64().unwrap()
        })
        .collect();
    assert_eq!(
        arrivals,
        (1..=MESSAGES).collect::<Vec<_>>(),
        "destination saw each message once, in order"
    );
    assert_eq!(n(&dst, "not_orders"), 0);
    assert_eq!(dst["senders"], serde_json::json!(["198.51.100.1:9000"]));

    // The appliance: all accepted, all released, all confirmed, through the taps.
    let sum = read_json(&out.join("summary.json"), &app_log);
    assert_eq!(n(&sum, "messages.accepted"), MESSAGES, "{app_text}");
    assert_eq!(n(&sum, "messages.released"), MESSAGES);
    assert_eq!(n(&sum, "messages.confirmations_sent"), MESSAGES);
    assert_eq!(sum["messages"]["unaccounted"].as_i64(), Some(0));
    assert_eq!(n(&sum, "hot_path_allocations"), 0, "the hot path allocated");
    assert_eq!(n(&sum, "mempool.in_use_at_exit"), 0, "mbufs leaked");
    for link in ["b1", "b2"] {
        // Every backup frame came back through the kernel tc mirror: the
        // af_packet ports' transmissions go through the qdisc layer.
        assert_eq!(
            n(&sum, &format!("tap.{link}.confirmed")) + n(&sum, &format!("tap.{link}.late")),
            MESSAGES,
            "tap {link}: {:#}",
            sum["tap"][link]
        );
    }
    // And every backup frame crossed each emulator to its backup node.
    for (i, e) in emu.iter().enumerate() {
        assert!(n(e, "a2b.forwarded") >= MESSAGES, "emu {}: {e}", i + 1);
        assert_eq!(n(e, "a2b.dropped"), 0, "emu {}: {e}", i + 1);
        assert_eq!(n(e, "a2b.tx_errors"), 0, "emu {}: {e}", i + 1);
    }
    eprintln!(
        "timings: build {built:?}, lab up {:?}, appliance ready {:?}, traffic {:?}, stop {:?}, total {:?}",
        lab_up - built,
        ready - lab_up,
        traffic - ready,
        done - traffic,
        t0.elapsed()
    );
    eprintln!("latency_ns: {}", sum["latency_ns"]);
}
