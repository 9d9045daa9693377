//! A real FIX session in the live lab (docs/lab.md, "A real FIX session
//! through a gateway"): QuickFIX's own example executor as the exchange in
//! the destination namespace, our QuickFIX initiator (tools/fix/initiator.cpp)
//! as the trading engine in the source namespace, and whatever routes between
//! them — a kernel router namespace, or taphold in gateway mode. Builds the
//! two binaries (tools/fix/build.sh), runs each end in a namespace with a
//! fresh QuickFIX directory, and reads back what each logged.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use taphold_lab::fix::{
    parse_file_log, parse_screen_log, reassemble, split_stream, Direction, Logged, Message,
};

use super::lab::{check_exit, check_summary, read_json, Lab, Run, ONE_LAB_AT_A_TIME};
use super::{lab_available, prefix, repo, sh};

/// The trading engine (source namespace) and its gateway.
pub const ENGINE_IP: &str = "10.71.1.2";
pub const ENGINE_GATEWAY: &str = "10.71.1.1";
/// The exchange (destination namespace) and its gateway.
pub const EXCHANGE_IP: &str = "10.71.2.2";
pub const EXCHANGE_GATEWAY: &str = "10.71.2.1";
/// The exchange's FIX acceptor port.
pub const FIX_PORT: u16 = 9878;

/// The two FIX binaries, built into `target/fix`.
pub struct FixBins {
    pub executor: PathBuf,
    pub initiator: PathBuf,
}

/// Builds (or finds up to date) the executor and the initiator in the
/// `fix` directory beside cargo's profile directories.
pub fn build() -> FixBins {
    let target = Path::new(env!("CARGO_BIN_EXE_taphold-linkemu"))
        .parent()
        .and_then(Path::parent)
        .unwrap();
    let out = target.join("fix");
    sh(Command::new(repo().join("tools/fix/build.sh")).arg(&out));
    FixBins {
        executor: out.join("executor"),
        initiator: out.join("initiator"),
    }
}

/// tools/fix/TEMPLATE.cfg for a session in `dir` (created), to `host:port`.
fn config(template: &str, dir: &Path, host: &str, port: u16) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let text = std::fs::read_to_string(repo().join(format!("tools/fix/{template}.cfg")))
        .unwrap()
        .replace("@DIR@", dir.to_str().unwrap())
        .replace("@HOST@", host)
        .replace("@PORT@", &port.to_string());
    let p = dir.join(format!("{template}.cfg"));
    std::fs::write(&p, text).unwrap();
    p
}

/// `ip netns exec NS PROGRAM`: exec's, so the child's pid is the program's.
fn in_ns(ns: &str, program: &Path) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(program);
    c
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_default()
}

fn stop_child(child: &mut Child) -> Option<ExitStatus> {
    stop_child_within(child, Duration::from_secs(5))
}

/// SIGTERM, then SIGKILL past `limit`.
fn stop_child_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    if let Ok(Some(s)) = child.try_wait() {
        return Some(s);
    }
    // SAFETY: the pid of a child we spawned and have not reaped.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    child.wait().ok()
}

/// The exchange: QuickFIX's example executor, listening in `ns`. Its screen
/// log (stdout) is its message log: every message in and out, marked.
pub struct Exchange {
    child: Child,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Exchange {
    /// Starts it on `host:port` with a fresh store under `dir`; returns once
    /// its acceptor is listening.
    pub fn start(bins: &FixBins, ns: &str, dir: &Path, host: &str, port: u16) -> Exchange {
        let cfg = config("exchange", dir, host, port);
        let log = dir.join("exchange.log");
        let f = std::fs::File::create(&log).unwrap();
        let child = in_ns(ns, &bins.executor)
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        let mut x = Exchange {
            child,
            dir: dir.to_path_buf(),
            log,
        };
        let t = Instant::now();
        // Printed once acceptor->start() has bound its socket.
        while !x.text().contains("Type Ctrl-C to quit") {
            if let Some(s) = x.child.try_wait().unwrap() {
                panic!("the exchange exited: {s}\n{}", x.text());
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the exchange is not listening after 10 s\n{}",
                x.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        x
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&read(&self.log)).into_owned()
    }

    /// What it logged so far.
    pub fn messages(&self) -> Vec<Logged> {
        parse_screen_log(&read(&self.log))
            .unwrap_or_else(|e| panic!("the exchange's log {}: {e}", self.log.display()))
    }

    /// Messages it received so far.
    pub fn incoming(&self) -> Vec<Message> {
        of(&self.messages(), Direction::Incoming)
    }

    /// Stops it (SIGTERM: it has no handler, so it just ends) and returns
    /// its whole log.
    pub fn stop(mut self) -> Vec<Logged> {
        stop_child(&mut self.child);
        self.messages()
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// The messages of one direction.
pub fn of(log: &[Logged], d: Direction) -> Vec<Message> {
    log.iter()
        .filter(|l| l.direction == d)
        .map(|l| l.message.clone())
        .collect()
}

/// The trading engine: our initiator in `ns`, sending `count` orders.
pub struct Engine {
    child: Child,
    pub dir: PathBuf,
    out: PathBuf,
    err: PathBuf,
}

/// What the engine reported and logged.
pub struct EngineReport {
    pub status: ExitStatus,
    /// Its stdout, one JSON object per line.
    pub events: Vec<Value>,
    /// Its QuickFIX file log, split by SenderCompID.
    pub sent: Vec<Message>,
    pub received: Vec<Message>,
    pub stderr: String,
}

/// What the engine sends: `count` orders at `rate`/s (0: as fast as the
/// session takes them), then at most `timeout_s` for the last fill.
#[derive(Debug, Clone, Copy)]
pub struct Orders {
    pub count: u64,
    pub rate: u64,
    pub timeout_s: u64,
}

impl Engine {
    /// Starts it toward `host:port` with a fresh store under `dir`; `extra`:
    /// more initiator options (a later option wins).
    pub fn start(
        bins: &FixBins,
        ns: &str,
        dir: &Path,
        (host, port): (&str, u16),
        orders: Orders,
        extra: &[&str],
    ) -> Engine {
        let Orders {
            count,
            rate,
            timeout_s,
        } = orders;
        let cfg = config("engine", dir, host, port);
        let out = dir.join("engine.jsonl");
        let err = dir.join("engine.err");
        let child = in_ns(ns, &bins.initiator)
            .arg("--config")
            .arg(&cfg)
            .args(["--count", &count.to_string()])
            .args(["--rate", &rate.to_string()])
            .args(["--timeout", &timeout_s.to_string()])
            .args(["--logon-timeout", "10"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        Engine {
            child,
            dir: dir.to_path_buf(),
            out,
            err,
        }
    }

    /// The events it printed so far.
    pub fn events(&self) -> Vec<Value> {
        String::from_utf8_lossy(&read(&self.out))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("engine line `{l}`: {e}")))
            .collect()
    }

    /// Waits up to `limit` for it to exit by itself (killed past that), and
    /// reads what it left.
    pub fn wait(mut self, limit: Duration) -> EngineReport {
        let t = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if t.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "the engine still running after {limit:?}\n{}\n{}",
                    String::from_utf8_lossy(&read(&self.out)),
                    String::from_utf8_lossy(&read(&self.err))
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = self
            .dir
            .join("log/FIX.4.2-ENGINE-EXCHANGE.messages.current.log");
        let all = parse_file_log(&read(&log))
            .unwrap_or_else(|e| panic!("the engine's log {}: {e}", log.display()));
        let (sent, received) = all.into_iter().partition(|m| m.sender() == Some("ENGINE"));
        EngineReport {
            status,
            events: self.events(),
            sent,
            received,
            stderr: String::from_utf8_lossy(&read(&self.err)).into_owned(),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

impl EngineReport {
    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == kind).collect()
    }

    pub fn done(&self) -> &Value {
        self.of_kind("done")
            .last()
            .copied()
            .unwrap_or_else(|| panic!("the engine printed no `done`: {:?}", self.events))
    }
}

/// The sequence numbers of `msgs`, in order.
pub fn seqs(msgs: &[Message]) -> Vec<u64> {
    msgs.iter()
        .map(|m| {
            m.seq()
                .unwrap_or_else(|| panic!("no MsgSeqNum: {}", m.show()))
        })
        .collect()
}

fn of_type<'a>(msgs: &'a [Message], t: &str) -> Vec<&'a Message> {
    msgs.iter().filter(|m| m.msg_type() == Some(t)).collect()
}

/// `got == want` message by message, byte for byte, or a panic naming the
/// first that differs.
pub fn same_messages(got: &[&Message], want: &[&Message], what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.raw,
            w.raw,
            "{what}: message {i} differs\n got  {}\n want {}",
            g.show(),
            w.show()
        );
    }
    assert_eq!(got.len(), want.len(), "{what}: message count");
}

/// A complete, clean session: the engine logged on, sent `count` orders and
/// every one was filled; the exchange received the Logon, exactly those
/// orders in order — MsgSeqNum 1, 2, 3, ... with no gap or repeat, each the
/// engine's order of that MsgSeqNum, byte for byte as the engine sent it —
/// and the Logout; each order got one ExecutionReport (filled) back, and the
/// engine received exactly what the exchange sent.
pub fn clean_session(engine: &EngineReport, exchange: &[Logged], count: u64) {
    let done = engine.done();
    assert!(
        engine.status.success(),
        "engine exit {}: {done}\n{}",
        engine.status,
        engine.stderr
    );
    assert_eq!(done["sent"], count, "{done}");
    assert_eq!(done["filled"], count, "{done}");
    assert_eq!(done["rejects"], 0, "{done}");
    assert_eq!(engine.of_kind("logon").len(), 1, "one logon");
    assert!(engine.of_kind("resend").is_empty(), "no order resent");

    // What the engine says it sent.
    let orders = engine.of_kind("order");
    assert_eq!(orders.len() as u64, count);
    for (i, o) in orders.iter().enumerate() {
        assert_eq!(o["clordid"], format!("O{:08}", i + 1), "order {i}: {o}");
    }
    let order_seqs: Vec<u64> = orders.iter().map(|o| o["seq"].as_u64().unwrap()).collect();
    assert!(
        order_seqs.windows(2).all(|w| w[0] < w[1]),
        "the engine's MsgSeqNums increase: {order_seqs:?}"
    );

    // What reached the exchange: every message parsed with a valid BodyLength
    // and CheckSum (parse_screen_log checks), MsgSeqNum 1..=K in order.
    let incoming = of(exchange, Direction::Incoming);
    let in_seqs = seqs(&incoming);
    let want: Vec<u64> = (1..=incoming.len() as u64).collect();
    assert_eq!(
        in_seqs, want,
        "the exchange received MsgSeqNum 1, 2, 3, ... in order"
    );
    assert_eq!(
        incoming.first().and_then(Message::msg_type),
        Some("A"),
        "Logon first"
    );
    assert_eq!(
        incoming.last().and_then(Message::msg_type),
        Some("5"),
        "Logout last"
    );
    let got_orders = of_type(&incoming, "D");
    assert_eq!(
        got_orders.len() as u64,
        count,
        "the exchange received every order once"
    );
    for (o, m) in orders.iter().zip(&got_orders) {
        let d = |k: &str| o[k].as_str().unwrap().to_string();
        assert_eq!(
            (
                m.seq(),
                m.clordid().map(str::to_string),
                m.get(54).map(str::to_string),
                m.get(55).map(str::to_string),
                m.get(38).map(str::to_string),
                m.get(44).map(str::to_string),
                m.get(40),
            ),
            (
                o["seq"].as_u64(),
                Some(d("clordid")),
                Some(d("side")),
                Some(d("symbol")),
                Some(d("qty")),
                Some(d("price")),
                Some("2"),
            ),
            "the exchange's order vs the engine's: {}",
            m.show()
        );
    }
    // Byte for byte what the engine logged as sent, in the same order.
    same_messages(
        &incoming.iter().collect::<Vec<_>>(),
        &engine.sent.iter().collect::<Vec<_>>(),
        "engine → exchange",
    );

    // The fills: one ExecutionReport per order, in order, filled; the engine
    // received exactly what the exchange sent.
    let outgoing = of(exchange, Direction::Outgoing);
    let reports = of_type(&outgoing, "8");
    assert_eq!(reports.len() as u64, count, "one ExecutionReport per order");
    for (r, o) in reports.iter().zip(&orders) {
        assert_eq!(r.clordid(), o["clordid"].as_str(), "{}", r.show());
        assert_eq!(r.get(39), Some("2"), "filled: {}", r.show());
    }
    let out_seqs = seqs(&outgoing);
    assert_eq!(out_seqs, (1..=outgoing.len() as u64).collect::<Vec<_>>());
    same_messages(
        &engine.received.iter().collect::<Vec<_>>(),
        &outgoing.iter().collect::<Vec<_>>(),
        "exchange → engine",
    );
    let execs = engine.of_kind("exec");
    assert_eq!(execs.len() as u64, count);
    assert!(execs.iter().all(|e| e["ord_status"] == "2"), "all filled");
}

/// A gateway test's lab: the namespace lab with the gateway addressing
/// (LAB_GATEWAY=1), the FIX binaries, an output directory; torn down by the
/// Lab's guard, also on panic, before the lock is released.
pub struct GatewayCase {
    pub lab: Lab,
    pub out: PathBuf,
    pub bins: FixBins,
    t0: Instant,
    pub _one: MutexGuard<'static, ()>,
}

/// Takes the lock, builds the FIX binaries, brings up a lab `th<letter><pid>`
/// with `LAB_NODES=nodes`. None if the lab is deliberately skipped.
pub fn gateway_case(test: &str, letter: char, nodes: bool) -> Option<GatewayCase> {
    if !lab_available(test) {
        return None;
    }
    let one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let bins = build();
    let out = std::env::temp_dir().join(format!("taphold-lab-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let lab = Lab::up_with(
        prefix(letter),
        &[
            ("LAB_GATEWAY", "1"),
            ("LAB_NODES", if nodes { "1" } else { "0" }),
        ],
    );
    eprintln!("{test}: FIX built and lab up in {:?}", t0.elapsed());
    Some(GatewayCase {
        lab,
        out,
        bins,
        t0,
        _one: one,
    })
}

impl GatewayCase {
    /// Namespace `name` of this lab (`src`, `dst`, `rtr`, `app`, ...).
    pub fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.lab.prefix)
    }

    /// The exchange on 10.71.2.2:9878 in the destination namespace, its
    /// QuickFIX files under `out/tag/exchange`.
    pub fn exchange(&self, tag: &str) -> Exchange {
        Exchange::start(
            &self.bins,
            &self.ns("dst"),
            &self.out.join(tag).join("exchange"),
            EXCHANGE_IP,
            FIX_PORT,
        )
    }

    /// The engine in the source namespace, toward the exchange; `extra`:
    /// more initiator options (a later option wins).
    pub fn engine(
        &self,
        tag: &str,
        count: u64,
        rate: u64,
        timeout_s: u64,
        extra: &[&str],
    ) -> Engine {
        Engine::start(
            &self.bins,
            &self.ns("src"),
            &self.out.join(tag).join("engine"),
            (EXCHANGE_IP, FIX_PORT),
            Orders {
                count,
                rate,
                timeout_s,
            },
            extra,
        )
    }

    /// `ip netns exec NS ARGS...`'s stdout; panics on failure.
    pub fn exec(&self, ns: &str, args: &[&str]) -> String {
        sh(Command::new("ip")
            .args(["netns", "exec", &self.ns(ns)])
            .args(args))
    }

    /// Field `name` of the `Ip:` line of /proc/net/snmp in namespace `ns`.
    pub fn ip_counter(&self, ns: &str, name: &str) -> u64 {
        let snmp = self.exec(ns, &["cat", "/proc/net/snmp"]);
        let mut ip = snmp.lines().filter(|l| l.starts_with("Ip:"));
        let (names, values) = (ip.next().unwrap(), ip.next().unwrap());
        let i = names
            .split_whitespace()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("no {name} in {names}"));
        values.split_whitespace().nth(i).unwrap().parse().unwrap()
    }

    /// config/lab-gateway.yaml edited by `edits` (each `(from, to)` must
    /// match), for run `tag`.
    pub fn gateway_config(&self, tag: &str, edits: &[(&str, &str)]) -> PathBuf {
        let mut text = std::fs::read_to_string(repo().join("config/lab-gateway.yaml")).unwrap();
        for (from, to) in edits {
            assert!(
                text.contains(from),
                "config/lab-gateway.yaml has no `{from}`"
            );
            text = text.replacen(from, to, 1);
        }
        std::fs::create_dir_all(self.out.join(tag)).unwrap();
        let p = self.out.join(tag).join("taphold.yaml");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// taphold in gateway mode on P (`lab.sh appliance`, writing to
    /// `out/tag/app`); returns once its lcore runs and the links settled.
    pub fn start_taphold(&self, tag: &str, config: &Path) -> Taphold {
        let out = self.out.join(tag).join("app");
        // Gateway mode has no UDP destination to wait for: the config stands
        // in for the destination's ready file.
        let child = Run::spawn_appliance(&self.lab, &out, config, config);
        Taphold { child, out }
    }

    /// Node `n`'s journal (`lab.sh node N export`): the protected flow's
    /// bytes toward the exchange, reassembled by TCP sequence number and
    /// split into FIX messages. Stop the node first (its journal is then
    /// complete on disk).
    pub fn journaled_messages(&self, n: u32) -> Vec<Message> {
        let text = self.lab.node(n, "export");
        // (engine IP, engine port) -> [(TCP seq, payload)]
        type Flows = std::collections::BTreeMap<(String, u64), Vec<(u32, Vec<u8>)>>;
        let mut flows = Flows::new();
        for line in text.lines() {
            let r: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("node {n}: `{line}`: {e}"));
            if r["content_mode"] != "tcp" || r["dst_ip"] != EXCHANGE_IP || r["dst_port"] != FIX_PORT
            {
                continue;
            }
            let payload = base64::engine::general_purpose::STANDARD
                .decode(r["content"].as_str().unwrap())
                .unwrap_or_else(|e| panic!("node {n}: content of {line}: {e}"));
            assert_eq!(
                r["payload_len"].as_u64(),
                Some(payload.len() as u64),
                "{line}"
            );
            let flow = (
                r["src_ip"].as_str().unwrap().to_string(),
                r["src_port"].as_u64().unwrap(),
            );
            let seq = r["tcp_seq"].as_u64().unwrap() as u32;
            flows.entry(flow).or_default().push((seq, payload));
        }
        assert_eq!(
            flows.len(),
            1,
            "node {n}: one protected flow: {:?}",
            flows.keys()
        );
        let (flow, segs) = flows.into_iter().next().unwrap();
        assert_eq!(flow.0, ENGINE_IP);
        let segs: Vec<(u32, &[u8])> = segs.iter().map(|(s, p)| (*s, &p[..])).collect();
        let stream = reassemble(&segs).unwrap_or_else(|e| panic!("node {n}: {e}"));
        split_stream(&stream).unwrap_or_else(|e| panic!("node {n}: {e}"))
    }

    /// `taphold-backup ARGS...` (the journal tools: no EAL): (exit code,
    /// stdout, stderr).
    pub fn backup_tool(&self, args: &[&str]) -> (i32, String, String) {
        let o = Command::new(self.lab.bin_dir.join("taphold-backup"))
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// Node `n`'s one protected flow (`journal flows`): its JSON line.
    pub fn journal_flow(&self, n: u32) -> Value {
        let dir = self.lab.node_dir(n).join("journal");
        let (code, out, err) = self.backup_tool(&["journal", "flows", dir.to_str().unwrap()]);
        assert_eq!(code, 0, "node {n}: journal flows: {err}\n{out}");
        let flows: Vec<Value> = out
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(flows.len(), 1, "node {n}: one flow: {out}");
        flows.into_iter().next().unwrap()
    }

    /// `journal export --flow F --decode fix` (`recover` when `recover`) on
    /// node `n`'s journal: its JSON lines (the summary lines included), the
    /// exit code and stderr.
    pub fn decode_fix(&self, n: u32, flow: &str, recover: bool) -> (Vec<Value>, i32, String) {
        let dir = self.lab.node_dir(n).join("journal");
        let dir = dir.to_str().unwrap();
        let args: Vec<&str> = if recover {
            vec!["recover", dir, "--flow", flow, "--decode", "fix"]
        } else {
            vec!["journal", "export", dir, "--flow", flow, "--decode", "fix"]
        };
        let (code, out, err) = self.backup_tool(&args);
        let lines = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("`{l}`: {e}")))
            .collect();
        (lines, code, err)
    }

    pub fn done(&self, test: &str) {
        eprintln!("{test}: total {:?}", self.t0.elapsed());
        let _ = std::fs::remove_dir_all(&self.out);
    }
}

/// A running taphold (gateway mode) and its output directory.
pub struct Taphold {
    pub child: Child,
    pub out: PathBuf,
}

impl Taphold {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.out.join("appliance.log")).unwrap_or_default()
    }

    /// Waits up to `limit` for `needle` in its log.
    pub fn await_log(&self, needle: &str, limit: Duration) {
        let t = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                t.elapsed() < limit,
                "taphold did not log `{needle}` within {limit:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM; its summary, checked as every lab run's is (exit status
    /// matching its final mode, nothing unaccounted, no hot-path
    /// allocation, no leaked mbuf, no event order violation).
    pub fn stop(mut self) -> Value {
        let log = self.out.join("appliance.log");
        let s = stop_child_within(&mut self.child, Duration::from_secs(15))
            .expect("taphold's exit status");
        let sum = read_json(&self.out.join("summary.json"), &log);
        check_exit(s, &sum, &self.log());
        check_summary(&sum);
        sum
    }
}

impl Taphold {
    /// SIGKILL: no summary, nothing flushed; the backup nodes keep what
    /// they journaled and the flow acks they got.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Taphold {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// The messages of `--decode fix` lines (summary lines left out), checked.
pub fn decoded_messages(lines: &[Value]) -> Vec<Message> {
    lines
        .iter()
        .filter(|l| l["summary"] != true)
        .map(|l| {
            let raw = l["raw"].as_str().unwrap_or_else(|| panic!("no raw: {l}"));
            let m = Message::parse(raw.as_bytes()).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert_eq!(l["msg_seq_num"].as_u64(), m.seq(), "{l}");
            assert_eq!(l["msg_type"].as_str(), m.msg_type(), "{l}");
            assert_eq!(l["cl_ord_id"].as_str(), m.clordid(), "{l}");
            m
        })
        .collect()
}
