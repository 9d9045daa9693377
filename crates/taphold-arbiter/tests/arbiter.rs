//! The binary over loopback UDP: a test socket plays the appliance (input A) and a backup
//! node that took over (input B), another plays the backup node answering resend requests;
//! the delivered stream and the target confirmations are received on sockets of their own.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use taphold_wire::taphold::{MsgType, Packet, ResendRepr, TargetConfirmRepr};
use taphold_wire::{delivery, DeliveryRepr, DigestKey, Flags};

const KEY: &str = "000102030405060708090a0b0c0d0e0f";
const STREAM: u32 = 7;
const EPOCH: u64 = 1_764_460_800;

fn key() -> DigestKey {
    DigestKey::from_hex(KEY).unwrap()
}

fn sock() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    s
}

/// A port nobody listens on right now (the arbiter binds it next).
fn free_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn datagram(seq: u64, flags: Flags) -> Vec<u8> {
    let h = DeliveryRepr {
        flags,
        stream: STREAM,
        epoch: EPOCH,
        seq,
        src_ip: [10, 0, 0, 9],
        src_port: 40000,
        release_ns: seq,
    };
    [&h.to_bytes()[..], format!("order-{seq}").as_bytes()].concat()
}

/// The world around one arbiter process.
struct World {
    dir: PathBuf,
    a: SocketAddr,
    b: SocketAddr,
    appliance: UdpSocket,
    node: UdpSocket,
    app: UdpSocket,
    confirms: UdpSocket,
}

impl World {
    fn new(dir: &Path) -> World {
        World {
            dir: dir.to_path_buf(),
            a: free_port(),
            b: free_port(),
            appliance: sock(),
            node: sock(),
            app: sock(),
            confirms: sock(),
        }
    }

    fn config(&self, on_gap: &str, extra: &str) -> PathBuf {
        let text = format!(
            "stream: {STREAM}\ndigest_key: \"{KEY}\"\ninputs:\n  - name: A\n    bind: {}\n  - name: B\n    bind: {}\ndeliver:\n  udp: {}\n  header: true\nconfirm_to:\n  - {}\n  - {}\nresend_to:\n  - {}\nresend_from: B\nwindow: 64\nmax_payload: 256\ngap_timeout_ms: 5\nresend_interval_ms: 10\nresend_tries: 2\non_gap: {on_gap}\nconfirm_interval_ms: 50\nconfirm_idle_ms: 10\nstate_dir: {}\n{extra}",
            self.a,
            self.b,
            self.app.local_addr().unwrap(),
            self.confirms.local_addr().unwrap(),
            self.node.local_addr().unwrap(),
            self.node.local_addr().unwrap(),
            self.dir.join("state").display(),
        );
        let p = self.dir.join(format!("arbiter-{on_gap}.yaml"));
        std::fs::write(&p, text).unwrap();
        p
    }

    fn out(&self) -> PathBuf {
        self.dir.join("out")
    }
}

/// The running binary, its stderr lines streamed to a channel.
struct Arbiter {
    child: Child,
    stderr: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Arbiter {
    fn spawn(config: &Path, out: &Path) -> Arbiter {
        let mut child = Command::new(env!("CARGO_BIN_EXE_taphold-arbiter"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
            .args(["--duration-ms", "20000"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let mut a = Arbiter {
            child,
            stderr: rx,
            log: Vec::new(),
        };
        let listening = a.wait_log(|l| l.contains("listening: input B"));
        assert!(listening, "never listened: {:?}", a.log);
        a
    }

    fn wait_log(&mut self, f: impl Fn(&str) -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(l) = self.stderr.recv_timeout(Duration::from_millis(50)) {
                let hit = f(&l);
                self.log.push(l);
                if hit {
                    return true;
                }
            }
        }
        false
    }

    /// SIGTERM, then the exit code and stdout.
    fn stop(mut self) -> (i32, String, Vec<String>) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let out = self.child.wait_with_output().unwrap();
        // Every line up to the end of stderr (the reader thread ends, and hangs up, then).
        self.log.extend(self.stderr.iter());
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            self.log,
        )
    }
}

/// The backup node's part: answers each resend request with the seqs it holds, RETRANSMIT,
/// to the request's source. Returns the requests it saw and the target confirmations.
fn node_step(
    node: &UdpSocket,
    holds: impl Fn(u64) -> bool,
) -> (Vec<(ResendRepr, SocketAddr)>, Vec<TargetConfirmRepr>) {
    let (mut asked, mut confirmed) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 2048];
    while let Ok((n, from)) = node.recv_from(&mut buf) {
        let p = Packet::new_checked(&buf[..n]).expect("a taphold PDU");
        match p.msg_type() {
            MsgType::Resend => {
                let r = ResendRepr::parse(&p, &key()).expect("a keyed resend request");
                for seq in r.seqs().filter(|&s| holds(s)) {
                    node.send_to(&datagram(seq, Flags::RETRANSMIT), from)
                        .unwrap();
                }
                asked.push((r, from));
            }
            MsgType::TargetConfirm => {
                confirmed.push(TargetConfirmRepr::parse(&p, &key()).expect("keyed"))
            }
            t => panic!("the node got {t:?}"),
        }
    }
    (asked, confirmed)
}

/// What the application received: (seq, flags, payload) of each datagram.
fn received(app: &UdpSocket) -> Vec<(u64, Flags, Vec<u8>)> {
    let mut v = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = app.recv_from(&mut buf) {
        let p = delivery::Packet::new_checked(&buf[..n]).expect("delivery header kept");
        let h = DeliveryRepr::parse(&p).unwrap();
        assert_eq!((h.stream, h.epoch), (STREAM, EPOCH));
        v.push((h.seq, h.flags, p.payload().to_vec()));
    }
    v
}

fn confirmations(s: &UdpSocket) -> Vec<TargetConfirmRepr> {
    let mut v = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok((n, _)) = s.recv_from(&mut buf) {
        let p = Packet::new_checked(&buf[..n]).unwrap();
        v.push(TargetConfirmRepr::parse(&p, &key()).expect("a keyed target confirmation"));
    }
    v
}

fn summary(w: &World) -> serde_json::Value {
    let text = std::fs::read_to_string(w.out().join("summary.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn reorders_deduplicates_fills_a_gap_by_resend_confirms_and_resumes_after_a_restart() {
    let d = tempfile::tempdir().unwrap();
    let w = World::new(d.path());
    let cfg = w.config("wait", "");
    let arb = Arbiter::spawn(&cfg, &w.out());

    // A: 1..=30 without 17, pairs swapped, every fifth twice; B (a takeover) replays 20..=30.
    let mut order: Vec<u64> = (1..=30).filter(|&s| s != 17).collect();
    for pair in order.chunks_mut(2) {
        pair.reverse();
    }
    for &seq in &order {
        w.appliance
            .send_to(&datagram(seq, Flags::EMPTY), w.a)
            .unwrap();
        if seq % 5 == 0 {
            w.appliance
                .send_to(&datagram(seq, Flags::EMPTY), w.a)
                .unwrap();
        }
    }
    for seq in 20..=30 {
        w.appliance
            .send_to(&datagram(seq, Flags::POSSIBLE_DUPLICATE), w.b)
            .unwrap();
    }
    // The node answers until everything is delivered and confirmed.
    let (mut got, mut asked, mut node_confirms, mut confirms) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && !confirms.iter().any(|c: &TargetConfirmRepr| c.seq == 30) {
        let (a, c) = node_step(&w.node, |_| true);
        asked.extend(a);
        node_confirms.extend(c);
        got.extend(received(&w.app));
        confirms.extend(confirmations(&w.confirms));
    }
    got.extend(received(&w.app));
    let seqs: Vec<u64> = got.iter().map(|g| g.0).collect();
    assert_eq!(seqs, (1..=30).collect::<Vec<_>>(), "in order, exactly once");
    for (seq, flags, payload) in &got {
        assert_eq!(payload, format!("order-{seq}").as_bytes());
        if *seq == 17 {
            assert_eq!(*flags, Flags::RETRANSMIT, "17 came by resend");
        }
    }
    // Seq 17 was asked for, from input B's socket, carrying what was delivered.
    let (r, from) = asked.first().expect("a resend request");
    assert_eq!(
        (r.stream, r.epoch, r.seq, r.count, r.delivered),
        (STREAM, EPOCH, 17, 1, 16)
    );
    assert_eq!(*from, w.b, "asked from B, so the answer arrives on B");
    // Confirmations went to both destinations; cumulative, never backwards.
    let last = confirms.last().unwrap();
    assert_eq!(
        (last.epoch, last.seq, last.highest_seen, last.skipped),
        (EPOCH, 30, 30, 0)
    );
    assert!(
        confirms.windows(2).all(|p| p[0].seq <= p[1].seq),
        "{confirms:?}"
    );
    std::thread::sleep(Duration::from_millis(30));
    node_confirms.extend(node_step(&w.node, |_| true).1);
    assert!(
        node_confirms.iter().any(|c| c.seq == 30),
        "the node is confirmed too"
    );

    let (code, stdout, log) = arb.stop();
    assert_eq!(code, 0, "{log:?}");
    let s = summary(&w);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap(),
        s,
        "stdout = summary.json"
    );
    assert_eq!(s["stopped"], "signal");
    assert_eq!(s["counters"]["delivered"], 30);
    assert_eq!(s["counters"]["filled_by_resend"], 1);
    assert_eq!(
        s["inputs"]["A"]["duplicates"], 6,
        "every fifth twice: 5..30 less none missing"
    );
    assert_eq!(s["inputs"]["B"]["duplicates_possible_duplicate"], 11);
    assert_eq!(s["inputs"]["B"]["first_copies_retransmit"], 1);
    assert_eq!(s["epochs"][0]["delivered_through"], 30);
    assert_eq!(s["epochs"][0]["gap"], serde_json::Value::Null);
    assert!(s["io"]["state_writes"].as_u64().unwrap() >= 1);
    assert_eq!(s["io"]["deliver_sent"], 30);
    // The final confirmation went out at the stop.
    let fin = confirmations(&w.confirms);
    assert!(fin.iter().any(|c| c.seq == 30), "{fin:?}");
    let state = std::fs::read_to_string(d.path().join("state/arbiter-stream-7.state")).unwrap();
    assert!(
        state.contains(&format!("epoch {EPOCH} delivered 30 skipped 0")),
        "{state}"
    );

    // Restarted: it resumes at 31. The appliance released 31..34 while it was down; 35
    // arrives; 31..34 are asked for and come from the node; 1..=30 are not delivered again.
    let arb = Arbiter::spawn(&cfg, &w.out());
    w.appliance
        .send_to(&datagram(35, Flags::EMPTY), w.a)
        .unwrap();
    w.appliance
        .send_to(&datagram(12, Flags::EMPTY), w.a)
        .unwrap();
    let (mut got, mut asked) = (Vec::new(), Vec::new());
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && got.len() < 5 {
        asked.extend(node_step(&w.node, |_| true).0);
        got.extend(received(&w.app));
    }
    let seqs: Vec<u64> = got.iter().map(|g| g.0).collect();
    assert_eq!(seqs, [31, 32, 33, 34, 35]);
    let (r, _) = &asked[0];
    assert_eq!((r.seq, r.count, r.delivered), (31, 4, 30));
    let (code, _, log) = arb.stop();
    assert_eq!(code, 0, "{log:?}");
    let s = summary(&w);
    assert_eq!(
        s["inputs"]["A"]["duplicates"], 1,
        "seq 12, delivered before the restart"
    );
    assert_eq!(s["epochs"][0]["delivered_through"], 35);
}

#[test]
fn an_unanswered_gap_is_skipped_reported_and_ends_with_exit_code_1() {
    let d = tempfile::tempdir().unwrap();
    let w = World::new(d.path());
    let arb = Arbiter::spawn(&w.config("skip", ""), &w.out());
    for seq in (1..=10).filter(|s| !(4..=6).contains(s)) {
        w.appliance
            .send_to(&datagram(seq, Flags::EMPTY), w.a)
            .unwrap();
    }
    let mut got = Vec::new();
    let mut asked = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && got.len() < 7 {
        // The node holds none of them.
        asked.extend(node_step(&w.node, |_| false).0);
        got.extend(received(&w.app));
    }
    let seqs: Vec<u64> = got.iter().map(|g| g.0).collect();
    assert_eq!(seqs, [1, 2, 3, 7, 8, 9, 10]);
    asked.extend(node_step(&w.node, |_| false).0);
    assert_eq!(asked.len(), 2, "resend_tries: 2");
    assert!(asked.iter().all(|(r, _)| (r.seq, r.count) == (4, 3)));
    let mut arb = arb;
    assert!(arb.wait_log(|l| l.contains("skipped: stream 7 epoch") && l.contains("seqs 4..=6")));
    std::thread::sleep(Duration::from_millis(40));
    let c = confirmations(&w.confirms);
    assert!(c.iter().any(|c| (c.seq, c.skipped) == (10, 3)), "{c:?}");
    let (code, _, log) = arb.stop();
    assert_eq!(code, 1, "skipped seqs: exit code 1; {log:?}");
    let s = summary(&w);
    assert_eq!(
        s["skipped_ranges"],
        serde_json::json!([{"epoch": EPOCH, "first": 4, "last": 6}])
    );
    assert_eq!(s["gaps_reported"][0]["event"], "gap_exhausted");
    assert_eq!(
        (
            s["gaps_reported"][0]["first"].as_u64(),
            s["gaps_reported"][0]["last"].as_u64()
        ),
        (Some(4), Some(6))
    );
    assert_eq!(s["counters"]["skipped"], 3);
    assert_eq!(s["epochs"][0]["skipped"], 3);
}

#[test]
fn stdout_delivery_is_json_lines_and_the_summary_goes_to_stderr() {
    let d = tempfile::tempdir().unwrap();
    let w = World::new(d.path());
    let cfg = w.config("wait", "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let deliver = format!(
        "deliver:\n  udp: {}\n  header: true\n",
        w.app.local_addr().unwrap()
    );
    std::fs::write(&cfg, text.replace(&deliver, "deliver: stdout\n")).unwrap();
    let mut arb = Arbiter::spawn(&cfg, &w.out());
    for seq in [2, 1, 3] {
        w.appliance
            .send_to(&datagram(seq, Flags::EMPTY), w.a)
            .unwrap();
    }
    w.appliance
        .send_to(&datagram(3, Flags::POSSIBLE_DUPLICATE), w.b)
        .unwrap();
    // Delivered and confirmed (idle 10 ms), then stopped.
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && !confirmations(&w.confirms).iter().any(|c| c.seq == 3) {}
    arb.log.clear();
    let (code, stdout, log) = arb.stop();
    assert_eq!(code, 0, "{log:?}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for (i, l) in lines.iter().enumerate() {
        let seq = i as u64 + 1;
        assert_eq!(l["seq"], seq);
        assert_eq!(
            (l["stream"].as_u64(), l["epoch"].as_u64()),
            (Some(7), Some(EPOCH))
        );
        assert_eq!(
            (l["input"].as_str(), l["flags"].as_u64()),
            (Some("A"), Some(0))
        );
        let hex: String = format!("order-{seq}")
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(l["payload"], hex);
    }
    assert!(
        log.iter().any(|l| l.contains("\"delivered\": 3")),
        "summary on stderr: {log:?}"
    );
}

#[test]
fn bad_config_and_damaged_state_are_named_and_nothing_starts() {
    let d = tempfile::tempdir().unwrap();
    let w = World::new(d.path());
    let cfg = w.config("wait", "windoe: 5\n");
    let out = Command::new(env!("CARGO_BIN_EXE_taphold-arbiter"))
        .args(["--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("unknown field `windoe`") && err.contains(":26:"),
        "{err}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_taphold-arbiter"))
        .args(["--config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let cfg = w.config("wait", "");
    std::fs::create_dir_all(d.path().join("state")).unwrap();
    let state = d.path().join("state/arbiter-stream-7.state");
    std::fs::write(&state, "taphold-arbiter 1 stream 7 floor 0 epochs 1 epoch 5 delivered 9 skipped 0 crc32 00000000\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_taphold-arbiter"))
        .args(["--config", cfg.to_str().unwrap(), "--duration-ms", "100"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&state.display().to_string()) && err.contains("crc32 mismatch"),
        "{err}"
    );
}
