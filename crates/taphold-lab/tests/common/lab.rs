//! The live lab harness the lab's test files share: a lab brought up and torn
//! down by a guard (`Lab`, `Case`), one appliance run with its kernel source
//! and destination (`Run`), what it left (`Outcome`), and the checks every
//! run must pass. One lab at a time per test binary: on a 2-core CI machine
//! two labs would share the cores, and the health thresholds are tens of
//! milliseconds.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{lab_available, prefix, repo, sh};

pub static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The lab, torn down on drop — also when the test panics.
pub struct Lab {
    pub prefix: String,
    pub bin_dir: PathBuf,
}

impl Lab {
    pub fn up(prefix: String) -> Lab {
        Lab::up_with(prefix, &[])
    }

    /// `up` with lab.sh environment settings (`LAB_NODES`, `LAB_GATEWAY`, ...).
    pub fn up_with(prefix: String, env: &[(&str, &str)]) -> Lab {
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_taphold-linkemu"))
            .parent()
            .unwrap()
            .to_path_buf();
        let lab = Lab { prefix, bin_dir };
        // Left over from an earlier, killed run with the same pid: remove.
        let _ = lab.cmd(&["down"]).output();
        sh(lab.cmd(&["up"]).envs(env.iter().copied()));
        lab
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(repo().join("scripts/lab.sh"));
        c.args(args)
            .env("LAB_PREFIX", &self.prefix)
            .env("LAB_BIN_DIR", &self.bin_dir)
            .env_remove("LAB_CONFIG");
        c
    }

    pub fn run(&self, args: &[&str]) -> String {
        sh(&mut self.cmd(args))
    }

    pub fn spawn(&self, args: &[&str], log: &Path, config: Option<&Path>) -> Child {
        let f = std::fs::File::create(log).unwrap();
        let mut c = self.cmd(args);
        if let Some(config) = config {
            c.env("LAB_CONFIG", config);
        }
        c.stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap()
    }

    /// Emulator `name`'s counters: `1`, `2` (backup links), `t1`, `t2` (tap paths).
    pub fn emu_stats(&self, name: &str) -> Value {
        let out = self.run(&["emu", name, "stats"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("emu {name} stats `{out}`: {e}"))
    }

    pub fn emu(&self, name: &str, command: &str) {
        self.run(&["emu", name, command]);
    }

    pub fn node(&self, n: u32, what: &str) -> String {
        self.run(&["node", &n.to_string(), what])
    }

    pub fn node_dir(&self, n: u32) -> PathBuf {
        PathBuf::from(format!("/run/taphold-lab-{}/node{n}", self.prefix))
    }

    /// `taphold-backup journal inspect` on node `n`'s journal: (exit code, output).
    pub fn inspect(&self, n: u32) -> (i32, String) {
        let o = self
            .cmd(&["node", &n.to_string(), "inspect"])
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    }

    /// Node `n`'s journal, run by run: (epoch, the seqs of its records in file order).
    pub fn journal_runs(&self, n: u32) -> Vec<(u64, Vec<u64>)> {
        let dir = self.node_dir(n).join("journal");
        let runs = taphold_journal::list_runs(&dir)
            .unwrap_or_else(|e| panic!("journal {}: {e}", dir.display()));
        runs.runs
            .iter()
            .map(|(id, d)| {
                let records = taphold_journal::read_records(d)
                    .unwrap_or_else(|e| panic!("journal {}: {e}", d.display()));
                (id.epoch, records.iter().map(|r| r.seq).collect())
            })
            .collect()
    }

    /// The seqs of node `n`'s journal records, in file order: one run of the
    /// appliance, the only one the journal holds.
    pub fn journal_seqs(&self, n: u32) -> Vec<u64> {
        let mut runs = self.journal_runs(n);
        assert_eq!(runs.len(), 1, "node {n}: one run expected");
        runs.remove(0).1
    }

    /// Node `n`'s exit summary (written when it is stopped with SIGTERM).
    pub fn node_stats(&self, n: u32) -> Value {
        let p = self.node_dir(n).join("stats.json");
        let log = self.node_dir(n).join("node.log");
        read_json(&p, &log)
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

/// A test's lab and its output directory; the lab goes down before the lock
/// is released (fields drop in declaration order).
pub struct Case {
    pub lab: Lab,
    pub out: PathBuf,
    t0: Instant,
    pub _one: MutexGuard<'static, ()>,
}

/// Builds the binaries, takes the lock, brings up a lab with prefix
/// `th<letter><pid>`. None if the lab is deliberately skipped.
pub fn case(test: &str, letter: char) -> Option<Case> {
    if !lab_available(test) {
        return None;
    }
    let one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    build_binaries();
    let out = std::env::temp_dir().join(format!("taphold-lab-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let lab = Lab::up(prefix(letter));
    eprintln!("{test}: built and lab up in {:?}", t0.elapsed());
    Some(Case {
        lab,
        out,
        t0,
        _one: one,
    })
}

impl Case {
    /// config/lab.yaml edited by `edits` (each `(from, to)` must match), written for run `tag`.
    pub fn config(&self, tag: &str, edits: &[(&str, &str)]) -> PathBuf {
        let mut text = std::fs::read_to_string(repo().join("config/lab.yaml")).unwrap();
        for (from, to) in edits {
            assert!(text.contains(from), "config/lab.yaml has no `{from}`");
            text = text.replacen(from, to, 1);
        }
        let p = self.out.join(format!("{tag}.yaml"));
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn start(&self, tag: &str, config: &Path) -> Run<'_> {
        Run::start(&self.lab, &self.out.join(tag), config, "1.5")
    }

    pub fn done(&self, test: &str) {
        eprintln!("{test}: total {:?}", self.t0.elapsed());
        let _ = std::fs::remove_dir_all(&self.out);
    }
}

pub const B2_STANDBY: (&str, &str) = (
    "    peer_mac: 02:00:00:00:0c:02\n",
    "    peer_mac: 02:00:00:00:0c:02\n    standby: true\n",
);

pub fn policy(p: &'static str) -> (&'static str, String) {
    ("  policy: any\n", format!("  policy: {p}\n"))
}

pub fn secondary(m: &str) -> (&'static str, String) {
    ("secondary_mode: halt\n", format!("secondary_mode: {m}\n"))
}

/// One appliance run: destination, taphold and (later) the source.
pub struct Run<'a> {
    pub lab: &'a Lab,
    pub dir: PathBuf,
    /// Where the running appliance writes its outputs (`dir`, or another
    /// after a restart).
    pub app_dir: PathBuf,
    pub app: Child,
    pub dest: Child,
    pub source: Option<Child>,
    pub started: Instant,
}

/// What a run left: the source's, the destination's and taphold's summaries.
pub struct Outcome {
    pub src: Value,
    pub dst: Value,
    pub sum: Value,
    pub log: String,
}

impl<'a> Run<'a> {
    /// Starts the destination (which exits once idle for `dest_idle` s) and
    /// the appliance.
    pub fn start(lab: &'a Lab, dir: &Path, config: &Path, dest_idle: &str) -> Run<'a> {
        std::fs::create_dir_all(dir).unwrap();
        let dest = lab.spawn(
            &[
                "dst",
                "--out",
                dir.join("dest.json").to_str().unwrap(),
                "--ready",
                dir.join("dest.ready").to_str().unwrap(),
                "--idle-exit",
                dest_idle,
                "--max-time",
                "40",
            ],
            &dir.join("dest.log"),
            None,
        );
        let app = Self::spawn_appliance(lab, dir, config, &dir.join("dest.ready"));
        Run {
            lab,
            dir: dir.to_path_buf(),
            app_dir: dir.to_path_buf(),
            app,
            dest,
            source: None,
            started: Instant::now(),
        }
    }

    /// Starts taphold writing to `out`; returns once its lcore runs and the
    /// destination is bound (`dest_ready` exists), and the links' health had
    /// time to settle.
    pub fn spawn_appliance(lab: &Lab, out: &Path, config: &Path, dest_ready: &Path) -> Child {
        std::fs::create_dir_all(out).unwrap();
        let mut app = lab.spawn(
            &["appliance", out.to_str().unwrap(), "--duration-ms", "60000"],
            &out.join("appliance.log"),
            Some(config),
        );
        let start = Instant::now();
        let app_log = out.join("appliance.log");
        loop {
            let log = std::fs::read_to_string(&app_log).unwrap_or_default();
            if log.contains("lcore 1:") && dest_ready.exists() {
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
        // Let the links' health settle (our heartbeats and the nodes' answers).
        std::thread::sleep(Duration::from_millis(300));
        app
    }

    /// Stops the appliance with SIGTERM (its summary checked as `finish`
    /// does), and starts another writing to `out`, with the same backup nodes,
    /// destination and source. Returns the stopped run's summary.
    pub fn restart_appliance(&mut self, out: &Path, config: &Path) -> Value {
        let app_log = self.app_dir.join("appliance.log");
        // SAFETY: a pid of a child we spawned and have not reaped.
        unsafe {
            libc::kill(self.app.id() as i32, libc::SIGTERM);
        }
        let s = wait(&mut self.app, Duration::from_secs(15), "taphold", &app_log);
        let sum = read_json(&self.app_dir.join("summary.json"), &app_log);
        check_exit(
            s,
            &sum,
            &std::fs::read_to_string(&app_log).unwrap_or_default(),
        );
        check_summary(&sum);
        self.app = Self::spawn_appliance(self.lab, out, config, &self.dir.join("dest.ready"));
        self.app_dir = out.to_path_buf();
        sum
    }

    /// Starts the source: `count` messages at `rate`/s, then at most `wait` s
    /// for the remaining confirmations.
    pub fn source(&mut self, count: u64, rate: u64, wait: &str) {
        self.source = Some(self.lab.spawn(
            &[
                "src",
                "--count",
                &count.to_string(),
                "--rate",
                &rate.to_string(),
                "--size-min",
                "64",
                "--size-max",
                "1400",
                "--wait",
                wait,
                "--out",
                self.dir.join("source.json").to_str().unwrap(),
            ],
            &self.dir.join("source.log"),
            None,
        ));
        self.started = Instant::now();
    }

    /// Sleeps until `at` after the source started.
    pub fn at(&self, at: Duration) {
        if let Some(d) = at.checked_sub(self.started.elapsed()) {
            std::thread::sleep(d);
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("appliance.log")).unwrap_or_default()
    }

    /// How long after `since` the appliance logged `needle`; panics past `limit`.
    pub fn await_log(&self, needle: &str, since: Instant, limit: Duration) -> Duration {
        loop {
            if self.log().contains(needle) {
                return since.elapsed();
            }
            assert!(
                since.elapsed() < limit,
                "taphold did not log `{needle}` within {limit:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the source and the destination, stops taphold with SIGTERM.
    pub fn finish(mut self) -> Outcome {
        let src_log = self.dir.join("source.log");
        let dst_log = self.dir.join("dest.log");
        let app_log = self.app_dir.join("appliance.log");
        if let Some(mut source) = self.source.take() {
            let s = wait(&mut source, Duration::from_secs(40), "source", &src_log);
            assert!(
                s.success(),
                "source failed: {s}\n{}",
                std::fs::read_to_string(&src_log).unwrap()
            );
        }
        let s = wait(&mut self.dest, Duration::from_secs(40), "dest", &dst_log);
        assert!(s.success(), "dest failed: {s}");
        // SAFETY: a pid of a child we spawned and have not reaped.
        unsafe {
            libc::kill(self.app.id() as i32, libc::SIGTERM);
        }
        let s = wait(&mut self.app, Duration::from_secs(15), "taphold", &app_log);
        let log = std::fs::read_to_string(&app_log).unwrap_or_default();
        let sum = read_json(&self.app_dir.join("summary.json"), &app_log);
        check_exit(s, &sum, &log);
        check_summary(&sum);
        Outcome {
            src: read_json(&self.dir.join("source.json"), &src_log),
            dst: read_json(&self.dir.join("dest.json"), &dst_log),
            sum,
            log,
        }
    }
}

/// The appliance's exit status says how the run ended: 3 exactly when it
/// ended failed closed (mode halt), 0 otherwise.
pub fn check_exit(s: std::process::ExitStatus, sum: &Value, log: &str) {
    let want = if sum["mode"]["final"] == "halt" { 3 } else { 0 };
    assert_eq!(
        s.code(),
        Some(want),
        "taphold exit {s} (mode {})\n{log}",
        sum["mode"]["final"]
    );
}

/// What every appliance run's summary must show.
pub fn check_summary(sum: &Value) {
    assert_eq!(
        sum["messages"]["unaccounted"].as_i64(),
        Some(0),
        "every accepted message released or held: {:#}",
        sum["messages"]
    );
    assert_eq!(n(sum, "hot_path_allocations"), 0, "the hot path allocated");
    assert_eq!(n(sum, "mempool.in_use_at_exit"), 0, "mbufs leaked");
    assert_eq!(n(sum, "events.order_violations"), 0);
}

impl Drop for Run<'_> {
    fn drop(&mut self) {
        // After a panic: leave no process behind (lab down would also get them).
        for c in [
            Some(&mut self.app),
            Some(&mut self.dest),
            self.source.as_mut(),
        ]
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

impl Outcome {
    /// Client seqs in the order the destination received them.
    pub fn arrivals(&self) -> Vec<u64> {
        self.dst["arrivals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                assert_eq!(a[0].as_u64(), Some(1), "source id");
                a[1].as_u64().unwrap()
            })
            .collect()
    }

    /// Client seqs in the order the source got their confirmations.
    pub fn confirmed(&self) -> Vec<u64> {
        seqs(&self.src["confirmed_seqs"])
    }

    pub fn n(&self, path: &str) -> u64 {
        n(&self.sum, path)
    }

    /// The destination got exactly messages 1..=count, once each, in order,
    /// and the source exactly one confirmation for each, in order.
    pub fn every_message_once_in_order(&self, count: u64, what: &str) {
        let want: Vec<u64> = (1..=count).collect();
        same_seqs(
            &self.arrivals(),
            &want,
            &format!("{what}: the destination saw each message once, in order"),
        );
        same_seqs(
            &self.confirmed(),
            &want,
            &format!("{what}: one confirmation per message, in order"),
        );
        assert_eq!(n(&self.src, "bad"), 0);
        assert_eq!(n(&self.dst, "not_orders"), 0);
        assert_eq!(self.n("messages.accepted"), count, "{what}");
        assert_eq!(self.n("messages.released"), count, "{what}");
    }

    /// What reached the destination is 1..=released, once each, in order,
    /// each confirmed to the source and nothing else confirmed; the rest is
    /// still held. Returns the number released.
    pub fn released_prefix_rest_held(&self, what: &str) -> u64 {
        let released = self.n("messages.released");
        let want: Vec<u64> = (1..=released).collect();
        same_seqs(
            &self.arrivals(),
            &want,
            &format!("{what}: the destination got the released messages once, in order"),
        );
        same_seqs(
            &self.confirmed(),
            &want,
            &format!("{what}: confirmed exactly what was released"),
        );
        assert_eq!(n(&self.src, "bad"), 0);
        assert_eq!(
            released + self.n("messages.held_at_shutdown"),
            self.n("messages.accepted"),
            "{what}"
        );
        released
    }

    /// Link `link`'s health transitions as (from, to, failing).
    pub fn transitions(&self, link: &str) -> Vec<(String, String, String)> {
        self.sum["health"][link]["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["from"].as_str().unwrap().to_string(),
                    t["to"].as_str().unwrap().to_string(),
                    t["failing"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Link `link` went up → degraded → down first, failing one of `checks`,
    /// with `down_after_us` (30 ms in config/lab.yaml) between, plus slack.
    pub fn went_down(&self, link: &str, checks: &[&str]) {
        let t = self.transitions(link);
        // The first time it went down; a transient degraded spell before it
        // (a late tap copy on a loaded 2-core machine) is reported, not fatal.
        let d = t
            .iter()
            .position(|t| t.1 == "down")
            .unwrap_or_else(|| panic!("{link} never went down: {t:?}"));
        if d > 1 {
            eprintln!("{link}: transitions before it went down: {:?}", &t[..d - 1]);
        }
        assert!(d >= 1, "{link}: {t:?}");
        assert_eq!(
            (t[d - 1].0.as_str(), t[d - 1].1.as_str()),
            ("up", "degraded"),
            "{t:?}"
        );
        assert_eq!(t[d].0, "degraded", "{t:?}");
        assert!(checks.contains(&t[d - 1].2.as_str()), "{link}: {t:?}");
        assert!(checks.contains(&t[d].2.as_str()), "{link}: {t:?}");
        let at = |i: usize| n(&self.sum["health"][link]["transitions"][i], "at_ns");
        let gap = at(d) - at(d - 1);
        assert!(
            (30_000_000..530_000_000).contains(&gap),
            "{link}: degraded → down after {gap} ns, want down_after_us (30 ms) + < 500 ms"
        );
    }
}

/// `got == want`, or a panic that says where they part (not thousands of numbers).
pub fn same_seqs(got: &[u64], want: &[u64], what: &str) {
    if got == want {
        return;
    }
    let at = got.iter().zip(want).position(|(a, b)| a != b);
    let show = |v: &[u64], i: usize| format!("{:?}", &v[i.min(v.len())..(i + 5).min(v.len())]);
    let i = at.unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: got {} seqs, want {}; first difference at index {i}: got {} want {}",
        got.len(),
        want.len(),
        show(got, i),
        show(want, i)
    );
}

pub fn seqs(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

/// Waits for `child` up to `limit`; kills it and panics past that.
pub fn wait(
    child: &mut Child,
    limit: Duration,
    what: &str,
    log: &Path,
) -> std::process::ExitStatus {
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

pub fn read_json(p: &Path, log: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| {
        panic!(
            "{}: {e}\n{}",
            p.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        )
    });
    serde_json::from_str(&text).unwrap()
}

pub fn n(v: &Value, path: &str) -> u64 {
    let mut cur = v;
    for p in path.split('.') {
        cur = &cur[p];
    }
    cur.as_u64()
        .unwrap_or_else(|| panic!("{path} missing in {v:#}"))
}

/// The appliance and the backup node: debug builds next to this crate's
/// binaries, built here if `cargo test -p taphold-lab` did not build them (it
/// builds only this package's binaries; a workspace `cargo test` builds all).
pub fn build_binaries() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    sh(Command::new(cargo)
        .args([
            "build",
            "-q",
            "-p",
            "taphold",
            "-p",
            "taphold-backup",
            "-p",
            "taphold-arbiter",
        ])
        .current_dir(repo()));
    for b in ["taphold", "taphold-backup", "taphold-arbiter"] {
        let bin = Path::new(env!("CARGO_BIN_EXE_taphold-linkemu")).with_file_name(b);
        assert!(bin.exists(), "{} was not built", bin.display());
    }
}

/// The thresholds of config/lab.yaml the detection bounds derive from:
/// ack 20 ms, node heartbeat 10 ms + 10 ms grace, tap 20 ms, down after 30 ms.
pub const DETECT: Duration = Duration::from_millis(20);
pub const DOWN_AFTER: Duration = Duration::from_millis(30);
/// Generous: a debug build with idle backoff on 2 shared cores, and a test
/// polling a log file.
pub const SLACK: Duration = Duration::from_millis(1500);

/// Kills node 1 with SIGKILL at `at` into the stream and checks taphold
/// declared link b1 degraded, then down, within the thresholds plus slack.
pub fn kill_node1_and_see_b1_down(run: &Run, at: Duration) {
    run.at(at);
    // SIGKILL from here, timed from the signal: `lab.sh node 1 kill9` also
    // waits for the process to be gone, which takes a second or more here.
    let pid_file = run.lab.node_dir(1).join("node.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let killed = Instant::now();
    // SAFETY: kill(2) on the lab's backup node, started by lab.sh.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let degraded = run.await_log("backup link 0: up -> degraded", killed, DETECT + SLACK);
    let down = run.await_log(
        "backup link 0: degraded -> down",
        killed,
        DETECT + DOWN_AFTER + SLACK,
    );
    eprintln!("node 1 killed: b1 degraded after {degraded:?}, down after {down:?}");
    run.lab.node(1, "kill9"); // waits until it is gone, forgets its pid
}
