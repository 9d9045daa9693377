//! The paced-load latency benchmark's two processes (`benches/run.sh paced`).
//!
//! ```text
//!  taphold-paced gen  ══ memif ══►  P of the device under test  ══ memif ══► gen
//!  (offers messages at a fixed rate,    (taphold, or `taphold-paced fwd`:       (times each
//!   stamps each as it enters P)          the plain forwarder)                    released one)
//! ```
//!
//! `gen` is the memif server: it offers 64-byte messages to P at fixed rates (and
//! then as fast as P takes them), each stamped with the TSC at the moment it is
//! handed to P's receive ring, and times every message that comes back released to
//! the destination (end to end, the same clock at both ends). After the rate phases
//! it sends single messages after quiet spells. It writes one JSON of per-phase
//! percentiles and the seq range of each phase (taphold numbers messages in the
//! order P received them, so `paced_report.py` can cut events.csv per phase).
//!
//! `fwd` is the baseline: the appliance with no backup. Same port (a memif client
//! named like taphold's P), same bursts ([`dpdk::Burst`] of 32), same spin loop
//! ([`taphold_runtime::idle::Idler`]) on a worker lcore; per frame it does what
//! egress does to a released message and nothing else: classify, rewrite for the
//! destination, transmit.
//!
//! ```sh
//! taphold-paced EAL... -- gen --out OUT.json [--rates 10000,100000,1000000,max]
//!     [--phase-ms 1000] [--max-count N] [--quiet-ms 1,100,1000] [--quiet-repeats 5]
//! taphold-paced EAL... -- fwd --duration-ms N [--out RESIDENCE.csv]
//! ```

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dpdk::{Burst, Clock, Eal, Mempool, Port, PortConfig};
use taphold_runtime::idle::{IdlePolicy, Idler};
use taphold_wire::checksum;
use taphold_wire::classify::{classify, Classified, PrimaryAddr};
use taphold_wire::emit::{rewrite_released, Endpoint, UDP_FRAME_HEADER_LEN};
use taphold_wire::ethernet::{EthernetAddress, MIN_FRAME_LEN};

const BURST: usize = 32;

// The addresses of config/default.yaml: P, the destination, and one source.
const P_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const P_IP: [u8; 4] = [198, 51, 100, 1];
const P_PORT: u16 = 9000;
const DST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const DST_IP: [u8; 4] = [203, 0, 113, 10];
const DST_PORT: u16 = 9100;
const SRC_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const SRC_IP: [u8; 4] = [192, 0, 2, 11];
const SRC_PORT: u16 = 40001;
const PAYLOAD: usize = 64;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (eal, rest) = match Eal::init(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("taphold-paced: {e}");
            return ExitCode::from(2);
        }
    };
    let r = match rest.first().map(String::as_str) {
        Some("gen") => gen(&eal, &rest[1..]),
        Some("fwd") => fwd(&eal, &rest[1..]),
        _ => Err("usage: taphold-paced EAL... -- gen|fwd [options] (see benches/paced.rs)".into()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("taphold-paced: {e}");
            ExitCode::from(1)
        }
    }
}

/// `--name value` from the application's arguments.
fn opt(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn num(args: &[String], name: &str, default: u64) -> Result<u64, String> {
    match opt(args, name) {
        Some(v) => v.parse().map_err(|_| format!("{name}: not a number: {v}")),
        None => Ok(default),
    }
}

fn open_port(eal: &Eal, pool: &Mempool) -> Result<Port, String> {
    let mut p = Port::by_name(eal, "net_memif0").map_err(|e| e.to_string())?;
    p.configure(&PortConfig::default(), pool)
        .map_err(|e| e.to_string())?;
    p.start().map_err(|e| e.to_string())?;
    Ok(p)
}

fn wait_link_up(p: &Port, within: Duration) -> Result<(), String> {
    let t = Instant::now();
    while t.elapsed() < within {
        if p.link().map(|l| l.up).unwrap_or(false) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(format!("memif link not up within {within:?}"))
}

// ------------------------------------------------------------------ generator

/// One phase of the offered load.
struct Phase {
    name: String,
    /// Messages per second offered; 0: as fast as P takes them.
    rate: u64,
    count: u64,
    /// A quiet spell before each message (quiet phases send one at a time).
    quiet_ms: u64,
}

/// What came back of one phase.
#[derive(Default)]
struct Outcome {
    first_seq: u64,
    sent: u64,
    /// tx_burst calls that P's ring refused in part (the message waits and retries).
    refused: u64,
    send_ns: u64,
    latency_ns: Vec<u64>,
    late: u64,
}

/// The message frame: our source to P, 64-byte payload whose first 16 bytes are
/// the message number and the TSC stamp (UDP checksum kept valid).
fn message(buf: &mut [u8; UDP_FRAME_HEADER_LEN + PAYLOAD], n: u64, stamp: u64) {
    let udp_len = (8 + PAYLOAD) as u16;
    let b = &mut buf[..];
    b[0..6].copy_from_slice(&P_MAC);
    b[6..12].copy_from_slice(&SRC_MAC);
    b[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut b[14..34];
    ip.copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    ip[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
    ip[12..16].copy_from_slice(&SRC_IP);
    ip[16..20].copy_from_slice(&P_IP);
    let c = checksum::finish(checksum::data(ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut b[34..];
    udp[0..2].copy_from_slice(&SRC_PORT.to_be_bytes());
    udp[2..4].copy_from_slice(&P_PORT.to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    udp[8..16].copy_from_slice(&n.to_le_bytes());
    udp[16..24].copy_from_slice(&stamp.to_le_bytes());
    for (i, x) in udp[24..].iter_mut().enumerate() {
        *x = i as u8;
    }
    let sum = checksum::combine(&[
        checksum::pseudo_header_v4(SRC_IP, P_IP, 17, udp_len),
        checksum::data(udp),
    ]);
    let c = checksum::udp_field(checksum::finish(sum));
    udp[6..8].copy_from_slice(&c.to_be_bytes());
}

struct Gen {
    port: Port,
    pool: Mempool,
    clock: Clock,
    rx: Burst<BURST>,
    tx: Burst<BURST>,
    /// Next message number (1-based, as taphold's seq).
    next: u64,
    /// Message numbers back, and out of order/unknown frames.
    back: u64,
    confirmations: u64,
    other: u64,
    /// Latency of each message by number, cycles (0: not back yet).
    lat: Vec<u64>,
    frame: [u8; UDP_FRAME_HEADER_LEN + PAYLOAD],
}

impl Gen {
    /// Drains what P sent back: released messages are timed, confirmations counted.
    fn poll_rx(&mut self) {
        let n = self.port.rx_burst(0, &mut self.rx);
        if n == 0 {
            return;
        }
        let now = self.clock.cycles();
        while let Some(m) = self.rx.pop() {
            let d = m.data();
            if d.len() >= UDP_FRAME_HEADER_LEN + 16 && d[12..14] == [8, 0] {
                let dport = u16::from_be_bytes([d[36], d[37]]);
                if dport == DST_PORT && d[0..6] == DST_MAC {
                    let p = &d[UDP_FRAME_HEADER_LEN..];
                    let k = u64::from_le_bytes(p[0..8].try_into().unwrap());
                    let stamp = u64::from_le_bytes(p[8..16].try_into().unwrap());
                    if let Some(l) = self.lat.get_mut(k as usize) {
                        *l = now.saturating_sub(stamp).max(1);
                        self.back += 1;
                        continue;
                    }
                } else if dport == SRC_PORT {
                    self.confirmations += 1;
                    continue;
                }
            }
            self.other += 1;
        }
    }

    /// Queues message `self.next`, stamped now, and tries to hand the queue to P.
    fn offer(&mut self, o: &mut Outcome) {
        if !self.tx.is_full() {
            self.offer_no_push(o);
        }
        self.push(o);
    }

    fn push(&mut self, o: &mut Outcome) {
        if !self.tx.is_empty() {
            self.port.tx_burst(0, &mut self.tx);
            if !self.tx.is_empty() {
                o.refused += 1;
            }
        }
    }

    /// Polls until every message sent so far is back, or `within` passes.
    fn settle(&mut self, o: &mut Outcome, within: Duration) {
        let t = Instant::now();
        while t.elapsed() < within {
            self.push(o);
            self.poll_rx();
            if self.tx.is_empty() && self.back + 1 >= self.next {
                return;
            }
        }
    }

    fn run(&mut self, ph: &Phase) -> Outcome {
        let mut o = Outcome {
            first_seq: self.next,
            ..Outcome::default()
        };
        let hz = self.clock.hz();
        let t0 = self.clock.cycles();
        if ph.quiet_ms > 0 {
            for _ in 0..ph.count {
                let until = self.clock.cycles() + hz / 1000 * ph.quiet_ms;
                // Quiet: nothing offered; P's own traffic (heartbeats) goes on.
                while self.clock.cycles() < until {
                    self.poll_rx();
                }
                self.offer(&mut o);
                self.settle(&mut o, Duration::from_millis(200));
            }
        } else if ph.rate == 0 {
            while o.sent < ph.count {
                // As fast as P takes them: keep a full burst offered.
                while o.sent < ph.count && !self.tx.is_full() {
                    let before = self.tx.len();
                    self.offer_no_push(&mut o);
                    if self.tx.len() == before {
                        break;
                    }
                }
                self.push(&mut o);
                self.poll_rx();
            }
        } else {
            let period = hz as f64 / ph.rate as f64;
            while o.sent < ph.count {
                let due = t0 + (o.sent as f64 * period) as u64;
                if self.clock.cycles() >= due {
                    self.offer(&mut o);
                }
                self.poll_rx();
            }
        }
        o.send_ns = self.clock.cycles_to_ns(self.clock.cycles() - t0);
        self.settle(&mut o, Duration::from_millis(500));
        let first = o.first_seq as usize;
        let last = first + o.sent as usize;
        o.latency_ns = self.lat[first..last]
            .iter()
            .filter(|&&c| c != 0)
            .map(|&c| self.clock.cycles_to_ns(c))
            .collect();
        o.late = o.sent - o.latency_ns.len() as u64;
        o
    }

    fn offer_no_push(&mut self, o: &mut Outcome) {
        let Some(mut m) = self.pool.alloc() else {
            return;
        };
        message(&mut self.frame, self.next, self.clock.cycles());
        if !m.set_len(self.frame.len()) {
            return;
        }
        m.data_mut().copy_from_slice(&self.frame);
        let _ = self.tx.push(m);
        self.next += 1;
        o.sent += 1;
    }
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn gen(eal: &Eal, args: &[String]) -> Result<(), String> {
    let out = opt(args, "--out").ok_or("gen: --out FILE.json is required")?;
    let phase_ms = num(args, "--phase-ms", 1000)?;
    let max_count = num(args, "--max-count", 200_000)?;
    let quiet_repeats = num(args, "--quiet-repeats", 5)?;
    let rates = opt(args, "--rates").unwrap_or_else(|| "10000,100000,1000000,max".into());
    let quiet = opt(args, "--quiet-ms").unwrap_or_else(|| "1,100,1000".into());
    let mut phases = Vec::new();
    for r in rates.split(',').filter(|r| !r.is_empty()) {
        let (rate, count) = if r == "max" {
            (0, max_count)
        } else {
            let rate: u64 = r.parse().map_err(|_| format!("--rates: {r}"))?;
            (rate, (rate * phase_ms / 1000).clamp(1, max_count))
        };
        phases.push(Phase {
            name: r.to_string(),
            rate,
            count,
            quiet_ms: 0,
        });
    }
    for q in quiet.split(',').filter(|q| !q.is_empty()) {
        let q: u64 = q.parse().map_err(|_| format!("--quiet-ms: {q}"))?;
        phases.push(Phase {
            name: format!("quiet-{q}ms"),
            rate: 0,
            count: quiet_repeats,
            quiet_ms: q,
        });
    }
    let total: u64 = phases.iter().map(|p| p.count).sum();
    let pool = Mempool::new(eal, "gen", 16383, 256, 2176, -1).map_err(|e| e.to_string())?;
    let port = open_port(eal, &pool)?;
    wait_link_up(&port, Duration::from_secs(20))?;
    let mut g = Gen {
        port,
        pool,
        clock: Clock::new(eal),
        rx: Burst::new(),
        tx: Burst::new(),
        next: 1,
        back: 0,
        confirmations: 0,
        other: 0,
        lat: vec![0; total as usize + 2],
        frame: [0; UDP_FRAME_HEADER_LEN + PAYLOAD],
    };
    // Let the device under test settle (its first heartbeats, the link's first polls).
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(300) {
        g.poll_rx();
    }
    let mut json = String::from("{\n \"phases\": [\n");
    for (i, ph) in phases.iter().enumerate() {
        let mut o = g.run(ph);
        o.latency_ns.sort_unstable();
        let l = &o.latency_ns;
        let achieved = if o.send_ns > 0 {
            o.sent as f64 * 1e9 / o.send_ns as f64
        } else {
            0.0
        };
        eprintln!(
            "gen: {:>12} sent {:>7} back {:>7} ({:.0} msg/s) p50 {} ns p99 {} ns max {} ns",
            ph.name,
            o.sent,
            l.len(),
            achieved,
            percentile(l, 0.5),
            percentile(l, 0.99),
            l.last().copied().unwrap_or(0)
        );
        json += &format!(
            "  {{\"name\": \"{}\", \"rate\": {}, \"quiet_ms\": {}, \"first_seq\": {}, \"sent\": {}, \
             \"back\": {}, \"late\": {}, \"refused_bursts\": {}, \"achieved_rate\": {:.0}, \
             \"p50_ns\": {}, \"p99_ns\": {}, \"p999_ns\": {}, \"max_ns\": {}, \"all_ns\": [{}]}}{}\n",
            ph.name,
            ph.rate,
            ph.quiet_ms,
            o.first_seq,
            o.sent,
            l.len(),
            o.late,
            o.refused,
            achieved,
            percentile(l, 0.5),
            percentile(l, 0.99),
            percentile(l, 0.999),
            l.last().copied().unwrap_or(0),
            if ph.quiet_ms > 0 {
                l.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
            } else {
                String::new()
            },
            if i + 1 < phases.len() { "," } else { "" }
        );
    }
    json += &format!(
        " ],\n \"confirmations\": {},\n \"other_frames\": {}\n}}\n",
        g.confirmations, g.other
    );
    std::fs::write(&out, json).map_err(|e| format!("{out}: {e}"))?;
    Ok(())
}

// ------------------------------------------------------------------ plain forwarder

/// Messages the forwarder keeps a residence time for (by message number).
const RESIDENCE_SLOTS: usize = 1 << 22;

/// The plain forwarder's loop: P rx → classify → rewrite for the destination →
/// P tx, on one spinning worker lcore. Returns (forwarded, dropped) and, per
/// message number, the cycles from the poll that received it to its transmit (0:
/// not seen): taphold's rx_ns → release_ns, measured the same way.
fn forward(port: &Port, quit: &AtomicBool, clock: Clock) -> (u64, u64, Vec<(u32, u8)>) {
    // Allocated before the loop: the loop itself allocates nothing. Per message: its
    // residence in cycles and how many messages shared its burst.
    let mut residence = vec![(0u32, 0u8); RESIDENCE_SLOTS];
    let mut numbers = [0usize; BURST];
    let ours = PrimaryAddr {
        mac: EthernetAddress(P_MAC),
        ip: P_IP,
        udp_port: P_PORT,
        max_payload: 8900,
    };
    let from = Endpoint {
        mac: EthernetAddress(P_MAC),
        ip: P_IP,
        port: P_PORT,
    };
    let to = Endpoint {
        mac: EthernetAddress(DST_MAC),
        ip: DST_IP,
        port: DST_PORT,
    };
    let mut rx: Burst<BURST> = Burst::new();
    let mut tx: Burst<{ 2 * BURST }> = Burst::new();
    let mut idler = Idler::new(IdlePolicy::Spin);
    let (mut fwd, mut dropped) = (0u64, 0u64);
    while !quit.load(Ordering::Relaxed) {
        // A refused burst goes first, as egress does.
        if !tx.is_empty() {
            port.tx_burst(0, &mut tx);
            if !tx.is_empty() {
                idler.pass(1);
                continue;
            }
        }
        let n = port.rx_burst(0, &mut rx);
        let rx_at = clock.cycles();
        let mut got = 0;
        while let Some(mut m) = rx.pop() {
            let Classified::Message(meta) = classify(m.data(), &ours) else {
                dropped += 1;
                continue;
            };
            let Ok(start) = rewrite_released(m.data_mut(), &meta, &from, &to) else {
                dropped += 1;
                continue;
            };
            m.adj(start as u16);
            let len = UDP_FRAME_HEADER_LEN + meta.payload_len as usize;
            m.set_len(len.max(MIN_FRAME_LEN));
            m.data_mut()[len..].fill(0);
            let p = &m.data()[UDP_FRAME_HEADER_LEN..];
            if p.len() >= 8 {
                numbers[got] = u64::from_le_bytes(p[0..8].try_into().unwrap()) as usize;
                got += 1;
            }
            let _ = tx.push(m);
            fwd += 1;
        }
        if got > 0 {
            // As egress stamps release_ns: once, just before the transmit.
            let d = (clock.cycles() - rx_at).min(u64::from(u32::MAX)) as u32;
            for &k in &numbers[..got] {
                if let Some(r) = residence.get_mut(k) {
                    *r = (d.max(1), got as u8);
                }
            }
        }
        if !tx.is_empty() {
            port.tx_burst(0, &mut tx);
        }
        idler.pass(n);
    }
    (fwd, dropped, residence)
}

fn fwd(eal: &Eal, args: &[String]) -> Result<(), String> {
    let duration = Duration::from_millis(num(args, "--duration-ms", 10_000)?);
    let pool = Mempool::new(eal, "fwd", 16383, 256, 2176, -1).map_err(|e| e.to_string())?;
    let port = Arc::new(open_port(eal, &pool)?);
    let worker = *eal
        .worker_lcores()
        .first()
        .ok_or("fwd: needs a worker lcore (-l 0,1)")?;
    let quit = Arc::new(AtomicBool::new(false));
    let (p, q) = (port.clone(), quit.clone());
    let clock = Clock::new(eal);
    let h = dpdk::lcore::launch(eal, worker, move || forward(&p, &q, clock))
        .map_err(|e| e.to_string())?;
    // SIGINT/SIGTERM end the run early (run.sh stops us once the generator is done).
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores into a static atomic (async-signal-safe).
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    let t = Instant::now();
    while t.elapsed() < duration && !SIGNALLED.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
    quit.store(true, Ordering::Relaxed);
    let (n, dropped, residence) = h.join()?;
    if let Some(path) = opt(args, "--out") {
        // message number, rx poll -> transmit in ns, messages in its burst (paced_report.py)
        let mut csv = String::from("seq,rx_to_tx_ns,burst\n");
        for (k, &(c, n)) in residence.iter().enumerate().filter(|(_, r)| r.0 != 0) {
            csv += &format!("{k},{},{n}\n", clock.cycles_to_ns(u64::from(c)));
        }
        std::fs::write(&path, csv).map_err(|e| format!("{path}: {e}"))?;
    }
    println!("{{\"forwarded\": {n}, \"dropped\": {dropped}}}");
    Ok(())
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::Relaxed);
}
