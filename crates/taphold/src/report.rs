//! What the main lcore makes of the run: events.csv (one line per message),
//! held.pcap (messages still held at shutdown), latency histograms, the
//! periodic stats line and summary.json. All of it off the hot path: the
//! roles only bump counters and push fixed-size event records.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dpdk::{Clock, Port};
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use taphold_core::event::{MessageEvent, MessageStatus};
use taphold_core::latency::LatencyMonitor;
use taphold_core::spsc::SpscConsumer;

use crate::config::Config;
use crate::counters::Named;
use crate::plane::Plane;
use taphold_runtime::alloc_count;

/// How the run ended, as the main lcore found it after stopping the workers.
pub struct Ending<'a> {
    pub port_stats: Map<String, Value>,
    pub held_at_shutdown: u64,
    pub stopped_by: &'static str,
    pub mbufs_in_use: u32,
    /// This run's (stream, epoch).
    pub lease: &'a taphold_runtime::epoch::EpochLease,
    /// When the workers started, UNIX ns.
    pub started_ns: u64,
}

/// Latency monitors for tap round trip, ack round trip and hold time: each
/// alerts when a window's quantile departs from its baseline.
pub struct Monitors {
    by_name: [(&'static str, LatencyMonitor); 3],
    pub alerts: Vec<Value>,
    pub alerts_total: u64,
}

const TAP_RTT: usize = 0;
const ACK_RTT: usize = 1;
const HOLD: usize = 2;
/// Alerts kept for summary.json (all are counted and logged).
const ALERTS_KEPT: usize = 256;

impl Monitors {
    pub fn new(cfg: &crate::config::LatencyMonitorConfig, now_ns: u64) -> Monitors {
        let mc = cfg.monitor_config();
        Monitors {
            by_name: [
                ("tap_rtt", LatencyMonitor::new(mc, now_ns)),
                ("ack_rtt", LatencyMonitor::new(mc, now_ns)),
                ("hold", LatencyMonitor::new(mc, now_ns)),
            ],
            alerts: Vec::new(),
            alerts_total: 0,
        }
    }

    pub fn record_ack(&mut self, now_ns: u64, rtt_ns: u64) {
        self.by_name[ACK_RTT].1.record(now_ns, rtt_ns);
    }

    /// Closes due windows; logs and keeps their alerts.
    pub fn poll(&mut self, now_ns: u64) {
        for (name, m) in &mut self.by_name {
            if let Some(a) = m.poll(now_ns) {
                self.alerts_total += 1;
                log::warn!(
                    "ALERT latency {name}: window quantile {} ns is {:.1}x the baseline {} ns ({})",
                    a.quantile_ns,
                    a.ratio,
                    a.baseline_ns,
                    a.direction.as_str()
                );
                if self.alerts.len() < ALERTS_KEPT {
                    self.alerts.push(json!({
                        "monitor": name, "window_end_ns": a.window_end_ns,
                        "quantile_ns": a.quantile_ns, "baseline_ns": a.baseline_ns,
                        "ratio": a.ratio, "direction": a.direction.as_str(),
                    }));
                }
            }
        }
    }

    fn summary(&self) -> Value {
        let mut m = Map::new();
        for (name, mon) in &self.by_name {
            m.insert(
                name.to_string(),
                json!({
                    "baseline_ns": mon.baseline(),
                    "last_window": mon.last_window().map(|w| json!({
                        "count": w.count, "quantile_ns": w.quantile_ns, "max_ns": w.max_ns,
                    })),
                }),
            );
        }
        json!({ "monitors": m, "alerts_total": self.alerts_total, "alerts": self.alerts })
    }
}

/// The console: stats lines and the summary on stdout. Once stdout is gone
/// (a closed pipe, a full disk), nothing more is written there and one log
/// line says so; never a panic, never a blocked shutdown. summary.json does
/// not depend on it.
pub struct Console {
    open: bool,
}

impl Default for Console {
    fn default() -> Self {
        Console { open: true }
    }
}

impl Console {
    pub fn line(&mut self, text: &str) {
        if !self.open {
            return;
        }
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{text}").and_then(|_| out.flush()).is_err() {
            self.open = false;
            log::warn!("stdout is gone: no more stats lines on it (summary.json is still written)");
        }
    }
}

/// events.csv, bounded: at `max_bytes` the file is rotated (events.csv →
/// events.csv.1 → … → events.csv.`keep`), and what falls off the end is
/// counted, never lost silently.
pub struct EventLog {
    dir: PathBuf,
    w: BufWriter<File>,
    max_bytes: u64,
    keep: usize,
    bytes: u64,
    lines: u64,
    /// Lines in events.csv.1, .2, ... (newest first).
    rotated: std::collections::VecDeque<u64>,
    /// Rotations made, and event lines deleted with the oldest file.
    pub rotations: u64,
    pub lines_deleted: u64,
}

impl EventLog {
    fn create(dir: &Path, max_bytes: u64, keep: usize) -> std::io::Result<EventLog> {
        Ok(EventLog {
            dir: dir.to_path_buf(),
            w: Self::open(dir)?,
            max_bytes: max_bytes.max(1),
            keep,
            bytes: 0,
            lines: 0,
            rotated: Default::default(),
            rotations: 0,
            lines_deleted: 0,
        })
    }

    fn open(dir: &Path) -> std::io::Result<BufWriter<File>> {
        let mut w = BufWriter::new(File::create(dir.join("events.csv"))?);
        writeln!(w, "{}", MessageEvent::CSV_HEADER)?;
        Ok(w)
    }

    fn path(&self, n: usize) -> PathBuf {
        match n {
            0 => self.dir.join("events.csv"),
            n => self.dir.join(format!("events.csv.{n}")),
        }
    }

    fn write(&mut self, ev: &MessageEvent) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(128);
        ev.write_csv_line(&mut line)?;
        if self.bytes > 0 && self.bytes + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.w.write_all(&line)?;
        self.bytes += line.len() as u64;
        self.lines += 1;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.w.flush()?;
        if self.rotated.len() == self.keep {
            // The oldest goes; what it held is counted.
            let gone = self.rotated.pop_back().unwrap_or(0);
            self.lines_deleted += gone;
            std::fs::remove_file(self.path(self.keep)).or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        }
        for n in (0..self.rotated.len() + 1).rev() {
            if n < self.keep {
                std::fs::rename(self.path(n), self.path(n + 1))?;
            }
        }
        if self.keep == 0 {
            self.lines_deleted += self.lines;
        } else {
            self.rotated.push_front(self.lines);
        }
        self.w = Self::open(&self.dir)?;
        self.bytes = 0;
        self.lines = 0;
        self.rotations += 1;
        Ok(())
    }
}

pub struct Report {
    pub monitors: Monitors,
    out: Option<PathBuf>,
    /// Where held messages go at shutdown: `out/held.pcap`, or without an
    /// output directory `state_dir/held-S-E.pcap`.
    held_path: PathBuf,
    events_csv: Option<EventLog>,
    /// events.csv could not be written (after this many lines).
    events_csv_failed: bool,
    held_pcap: Option<BufWriter<File>>,
    held_written: u64,
    /// Hold times of the current stats interval (reset at each stats line).
    hold_interval: Histogram<u64>,
    tap_rtt_interval: Histogram<u64>,
    /// When the current interval began (UNIX ns), and its interval log.
    interval_start_ns: u64,
    hlog: Option<crate::hlog::Hlog>,
    hold: Histogram<u64>,
    tap_rtt: Histogram<u64>,
    events: u64,
    /// Messages whose timestamps broke release >= tap >= backup_tx: must stay 0.
    order_violations: u64,
    unprotected: u64,
    clock: Clock,
}

fn histogram() -> Histogram<u64> {
    // 1 ns .. 100 s at 3 significant digits; allocated once, here.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("static bounds")
}

impl Report {
    /// `hlog`: write the interval log on `cpu` (needs `out`).
    pub fn new(
        out: Option<&Path>,
        cfg: &Config,
        lease: &taphold_runtime::epoch::EpochLease,
        clock: Clock,
        monitors: Monitors,
        hlog: Option<Option<usize>>,
    ) -> std::io::Result<Report> {
        let mut events_csv = None;
        let hlog = match (out, hlog) {
            (Some(dir), Some(cpu)) => {
                std::fs::create_dir_all(dir)?;
                Some(crate::hlog::Hlog::start(dir, cpu)?)
            }
            _ => None,
        };
        if let Some(dir) = out {
            std::fs::create_dir_all(dir)?;
            if cfg.events.csv {
                let max = cfg.events.csv_max_kb.saturating_mul(1 << 10);
                events_csv = Some(EventLog::create(dir, max, cfg.events.csv_keep as usize)?);
            }
        }
        let held_path = match out {
            Some(dir) => dir.join("held.pcap"),
            None => cfg
                .state_dir
                .join(format!("held-{}-{}.pcap", lease.stream, lease.epoch)),
        };
        Ok(Report {
            monitors,
            out: out.map(Path::to_path_buf),
            held_path,
            events_csv,
            events_csv_failed: false,
            held_pcap: None,
            held_written: 0,
            hold_interval: histogram(),
            tap_rtt_interval: histogram(),
            interval_start_ns: clock.now_ns(),
            hlog,
            hold: histogram(),
            tap_rtt: histogram(),
            events: 0,
            order_violations: 0,
            unprotected: 0,
            clock,
        })
    }

    fn record(&mut self, ev: &MessageEvent) {
        self.events += 1;
        if let Some(w) = &mut self.events_csv {
            if let Err(e) = w.write(ev) {
                log::error!(
                    "events.csv: {e}; no more event lines will be written (summary: events.csv_failed)"
                );
                self.events_csv = None;
                self.events_csv_failed = true;
            }
        }
        if ev.status != MessageStatus::HeldAtShutdown {
            let m = &mut self.monitors.by_name;
            m[HOLD]
                .1
                .record(ev.release_ns, ev.release_ns.saturating_sub(ev.rx_ns));
            if ev.tap_ns != 0 {
                m[TAP_RTT]
                    .1
                    .record(ev.release_ns, ev.tap_ns.saturating_sub(ev.backup_tx_ns));
            }
        }
        if ev.status == MessageStatus::Released {
            if !(ev.release_ns >= ev.tap_ns
                && ev.tap_ns >= ev.backup_tx_ns
                && ev.backup_tx_ns >= ev.rx_ns)
            {
                self.order_violations += 1;
            }
            let hold = ev.release_ns.saturating_sub(ev.rx_ns).max(1);
            let _ = self.hold.record(hold);
            let _ = self.hold_interval.record(hold);
            let rtt = ev.tap_ns.saturating_sub(ev.backup_tx_ns).max(1);
            let _ = self.tap_rtt.record(rtt);
            let _ = self.tap_rtt_interval.record(rtt);
        }
        if ev.status == MessageStatus::ReleasedUnprotected {
            self.unprotected += 1;
        }
    }

    /// Closes the current interval: into the interval log, if any, then the
    /// interval histograms start again.
    fn end_interval(&mut self) {
        let now = self.clock.now_ns();
        if let Some(h) = &self.hlog {
            h.interval(
                Duration::from_nanos(self.interval_start_ns),
                Duration::from_nanos(now.saturating_sub(self.interval_start_ns)),
                &self.hold_interval,
                &self.tap_rtt_interval,
            );
        }
        self.interval_start_ns = now;
        self.hold_interval.reset();
        self.tap_rtt_interval.reset();
    }

    /// Hold time p50, p99, p99.9 and max, then the tap round trip's, since
    /// the start (ns; 0 before the first release).
    pub fn latency_now(&self) -> [u64; 8] {
        let q = |h: &Histogram<u64>| {
            [
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max(),
            ]
        };
        let (a, b) = (q(&self.hold), q(&self.tap_rtt));
        [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]
    }

    /// Takes every event record egress has published so far.
    pub fn drain_events(&mut self, rx: &mut SpscConsumer<MessageEvent>) {
        while let Some(ev) = rx.pop() {
            self.record(&ev);
        }
    }

    /// A message still held when the workers stopped: its event line, and its
    /// frame appended to the held file (held.pcap in the output directory,
    /// else in the state directory) so nothing accepted vanishes, with or
    /// without `--out`.
    pub fn held_at_shutdown(&mut self, ev: MessageEvent, frame: &[u8]) {
        self.record(&ev);
        if self.held_pcap.is_none() {
            match File::create(&self.held_path).map(BufWriter::new) {
                Ok(mut w) => {
                    // Classic pcap header: microseconds, Ethernet, snaplen 65535.
                    let mut h = Vec::with_capacity(24);
                    h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
                    h.extend_from_slice(&2u16.to_le_bytes());
                    h.extend_from_slice(&4u16.to_le_bytes());
                    h.extend_from_slice(&[0; 8]);
                    h.extend_from_slice(&65535u32.to_le_bytes());
                    h.extend_from_slice(&1u32.to_le_bytes());
                    if w.write_all(&h).is_ok() {
                        self.held_pcap = Some(w);
                    }
                }
                Err(e) => log::error!("{}: {e}", self.held_path.display()),
            }
        }
        if let Some(w) = &mut self.held_pcap {
            let us = ev.rx_ns / 1000;
            let mut rec = Vec::with_capacity(16 + frame.len());
            rec.extend_from_slice(&((us / 1_000_000) as u32).to_le_bytes());
            rec.extend_from_slice(&((us % 1_000_000) as u32).to_le_bytes());
            rec.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            rec.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            rec.extend_from_slice(frame);
            match w.write_all(&rec) {
                Ok(()) => self.held_written += 1,
                Err(e) => log::error!("{}: {e}", self.held_path.display()),
            }
        }
    }

    pub fn stats_line(
        &mut self,
        s: &Plane,
        control: &crate::control::ControlLoop,
        primary: &Port,
        elapsed: Duration,
    ) -> String {
        // What P's driver saw: frames the NIC dropped because we did not read
        // them (backpressure) show as imissed.
        let (p_rx, p_missed) = primary
            .stats()
            .map_or((0, 0), |st| (st.ipackets, st.imissed));
        let c = &s.counters;
        let accepted = c.ingress.accepted.get();
        let released = c.egress.released.get();
        let confirmed: u64 = c.tap.iter().map(|t| t.confirmed.get()).sum();
        let retransmits: u64 = c.relaunch.iter().map(|r| r.retransmits.get()).sum();
        let links: Vec<String> = control
            .states()
            .iter()
            .enumerate()
            .map(|(k, st)| {
                let svc = if s.control.active() & (1 << k) != 0 {
                    ""
                } else {
                    "(out)"
                };
                format!("b{k}:{}{svc}", st.as_str())
            })
            .collect();
        let line = format!(
            "t={:.1}s mode={} links=[{}] P.ipackets={} P.imissed={} rx={} accepted={} released={} delivered={} held={} confirmed={} retransmits={} dropped={} ring_full_polls={} alerts={} tap_rtt_p50={}ns hold_p50={}ns hold_p99={}ns",
            elapsed.as_secs_f64(),
            s.control.mode().as_str(),
            links.join(" "),
            p_rx,
            p_missed,
            c.ingress.rx_frames.get(),
            accepted,
            released,
            s.ingress.delivered_seq(),
            accepted.saturating_sub(released),
            confirmed,
            retransmits,
            c.ingress.dropped_total(),
            c.ingress.ring_full_polls.get(),
            control.alerts.total,
            self.tap_rtt_interval.value_at_quantile(0.5),
            self.hold_interval.value_at_quantile(0.5),
            self.hold_interval.value_at_quantile(0.99),
        );
        // Percentiles per interval, not since the start: a spike shows in
        // the line of the interval it happened in.
        self.end_interval();
        line
    }

    /// Every port's counters, read before the ports are closed.
    pub fn port_stats(ports: &BTreeMap<String, std::sync::Arc<Port>>) -> Map<String, Value> {
        let mut out = Map::new();
        for (name, p) in ports {
            if let Ok(st) = p.stats() {
                out.insert(
                    name.clone(),
                    json!({
                        "ipackets": st.ipackets, "opackets": st.opackets,
                        "ibytes": st.ibytes, "obytes": st.obytes,
                        "imissed": st.imissed, "ierrors": st.ierrors,
                        "oerrors": st.oerrors, "rx_nombuf": st.rx_nombuf,
                    }),
                );
            }
        }
        out
    }

    /// Writes summary.json (when there is an output directory) and returns it.
    pub fn finish(
        mut self,
        s: &Plane,
        cfg: &Config,
        control: &crate::control::ControlLoop,
        end: Ending,
    ) -> std::io::Result<String> {
        let Ending {
            port_stats,
            held_at_shutdown,
            stopped_by,
            mbufs_in_use,
            lease,
            started_ns,
        } = end;
        if let Some(w) = &mut self.events_csv {
            w.w.flush()?;
        }
        self.end_interval();
        let hlog = match self.hlog.take() {
            Some(h) => Some(h.finish()?),
            None => None,
        };
        if let Some(w) = &mut self.held_pcap {
            w.flush()?;
        }
        let c = &s.counters;
        let block = |n: &dyn Named| {
            let mut m = Map::new();
            n.each(&mut |k, v| {
                m.insert(k.to_string(), json!(v));
            });
            Value::Object(m)
        };
        let mut taps = Map::new();
        let mut link_rx = Map::new();
        let mut relaunch = Map::new();
        let mut health = Map::new();
        let states = control.states();
        for (i, l) in cfg.backup_links.iter().enumerate() {
            taps.insert(l.name.clone(), block(&*c.tap[i]));
            link_rx.insert(l.name.clone(), block(&*c.link_rx[i]));
            relaunch.insert(l.name.clone(), block(&*c.relaunch[i]));
            let transitions: Vec<Value> = control
                .transitions
                .iter()
                .filter(|(_, k, _)| *k == i)
                .map(|(at, _, t)| {
                    json!({
                        "at_ns": at, "from": t.from.as_str(), "to": t.to.as_str(),
                        "failing": t.failing.map(|c| c.as_str()),
                    })
                })
                .collect();
            health.insert(
                l.name.clone(),
                json!({
                    "state": states[i].as_str(),
                    "in_service": s.control.active() & (1 << i) != 0,
                    "transitions": transitions,
                    "launched_seq": s.ingress.launched_seq(i),
                    "tapped_seq": s.tap[i].tapped_seq(),
                    "acked_seq": s.link_rx[i].acked_seq(),
                    "heartbeats_sent": s.ingress.hb_sent_seq(i),
                    "heartbeats_tapped": s.tap[i].hb_tapped_seq(),
                    "heartbeat_echo_rtt_ns": s.link_rx[i].hb_echo_rtt_ns(),
                }),
            );
        }
        let pct = |h: &Histogram<u64>| {
            json!({
                "count": h.len(),
                "p50": h.value_at_quantile(0.5),
                "p99": h.value_at_quantile(0.99),
                "p999": h.value_at_quantile(0.999),
                "max": h.max(),
            })
        };
        let accepted = c.ingress.accepted.get();
        let released = c.egress.released.get();
        let summary = json!({
            "stopped_by": stopped_by,
            "run": {
                "stream": lease.stream,
                "epoch": lease.epoch,
                "previous_epoch": lease.previous,
                "state_file": lease.path,
                "started_unix_ns": started_ns,
            },
            "messages": {
                "accepted": accepted,
                "released": released,
                "held_at_shutdown": held_at_shutdown,
                "unaccounted": accepted as i128 - released as i128 - held_at_shutdown as i128,
                "released_unprotected": self.unprotected,
                "confirmations_sent": c.egress.confirmations_sent.get(),
                "dropped": c.ingress.dropped_total(),
            },
            "destination": {
                "delivered_seq": s.ingress.delivered_seq(),
                "last_target_confirm_ns": s.ingress.last_target_confirm_ns(),
                "target_confirms": c.ingress.target_confirms.get(),
            },
            "ingress": block(&*c.ingress),
            "gateway": block(&*c.gateway),
            "tap": taps,
            "egress": block(&*c.egress),
            "link_rx": link_rx,
            "relaunch": relaunch,
            "tap_model": block(&*c.tap_model),
            "health": health,
            "mode": {
                "final": s.control.mode().as_str(),
                "changes": control.mode_changes,
                "failovers": control.failovers,
                "resend_rounds": control.resend_rounds,
            },
            "alerts": {
                "total": control.alerts.total,
                "by_kind": control.alerts.by_kind,
                "kept": control.alerts.kept.iter().map(|(at, kind, detail)| json!({
                    "at_ns": at, "kind": kind, "detail": detail,
                })).collect::<Vec<_>>(),
            },
            "ports": port_stats,
            "latency_ns": { "hold": pct(&self.hold), "tap_rtt": pct(&self.tap_rtt) },
            "events": {
                "recorded": self.events,
                "order_violations": self.order_violations,
                "csv": self.events_csv.as_ref().map(|e| json!({
                    "rotations": e.rotations,
                    "lines_deleted": e.lines_deleted,
                })),
                "csv_failed": self.events_csv_failed,
            },
            "held_file": (self.held_written > 0).then(|| self.held_path.display().to_string()),
            "hlog": hlog.map(|n| json!({ "file": "latency.hlog", "histograms": n })),
            "latency_monitor": self.monitors.summary(),
            "hot_path_allocations": alloc_count::hot_allocations(),
            "mempool": { "in_use_at_exit": mbufs_in_use },
        });
        let text = serde_json::to_string_pretty(&summary).expect("json");
        if let Some(dir) = &self.out {
            std::fs::write(dir.join("summary.json"), format!("{text}\n"))?;
        }
        Ok(text)
    }
}

/// The short summary printed at exit, testpmd-style: what came in, what
/// left, what is still held, what was refused and why, the links, the
/// latencies, the alerts. The whole of it is summary.json (or `--json`).
pub fn human(s: &Value) -> String {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let us = |v: &Value| format!("{:.1}", n(v) as f64 / 1000.0);
    let m = &s["messages"];
    let mut out = Vec::new();
    let bar = "-".repeat(24);
    out.push(format!("{bar} taphold summary {bar}"));
    out.push(format!(
        "stream {}  epoch {}  stopped by {}  mode {} (changes {}, failovers {})",
        s["run"]["stream"],
        s["run"]["epoch"],
        s["stopped_by"].as_str().unwrap_or("?"),
        s["mode"]["final"].as_str().unwrap_or("?"),
        n(&s["mode"]["changes"]),
        n(&s["mode"]["failovers"]),
    ));
    out.push(format!(
        "messages  rx {}  accepted {}  released {}  unprotected {}  held {}  dropped {}  unaccounted {}",
        n(&s["ingress"]["rx_frames"]),
        n(&m["accepted"]),
        n(&m["released"]),
        n(&m["released_unprotected"]),
        n(&m["held_at_shutdown"]),
        n(&m["dropped"]),
        m["unaccounted"],
    ));
    let refused: Vec<String> = s["ingress"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, v)| k.starts_with("drop_") && n(v) > 0)
                .map(|(k, v)| format!("{} {}", &k[5..], n(v)))
                .collect()
        })
        .unwrap_or_default();
    if !refused.is_empty() {
        out.push(format!("refused   {}", refused.join("  ")));
    }
    if let Some(links) = s["health"].as_object() {
        for (name, l) in links {
            out.push(format!(
                "link {name:<4} {}{}  launched {}  tapped {}  acked {}  transitions {}",
                l["state"].as_str().unwrap_or("?"),
                if l["in_service"] == true {
                    ""
                } else {
                    " (out of service)"
                },
                n(&l["launched_seq"]),
                n(&l["tapped_seq"]),
                n(&l["acked_seq"]),
                l["transitions"].as_array().map_or(0, |t| t.len()),
            ));
        }
    }
    let h = &s["latency_ns"]["hold"];
    let t = &s["latency_ns"]["tap_rtt"];
    out.push(format!(
        "latency   hold p50 {} us  p99 {} us  p99.9 {} us  max {} us  |  tap rtt p50 {} us  p99 {} us",
        us(&h["p50"]),
        us(&h["p99"]),
        us(&h["p999"]),
        us(&h["max"]),
        us(&t["p50"]),
        us(&t["p99"]),
    ));
    let by_kind: Vec<String> = s["alerts"]["by_kind"]
        .as_object()
        .map(|o| o.iter().map(|(k, v)| format!("{k} {}", n(v))).collect())
        .unwrap_or_default();
    out.push(format!(
        "alerts    {}{}",
        n(&s["alerts"]["total"]),
        if by_kind.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_kind.join(", "))
        }
    ));
    if let Some(f) = s["held_file"].as_str() {
        out.push(format!(
            "held      {} message(s) written to {f}",
            n(&m["held_at_shutdown"])
        ));
    }
    out.push("-".repeat(2 * bar.len() + 17));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> MessageEvent {
        MessageEvent {
            seq,
            stream: 1,
            epoch: 2,
            rx_ns: 10,
            backup_tx_ns: 11,
            tap_ns: 12,
            release_ns: 13,
            status: MessageStatus::Released,
        }
    }

    /// Rotation keeps `keep` files, each with the header, and every event
    /// line is either in a file or counted as deleted.
    #[test]
    fn events_csv_rotates_and_counts_what_it_deletes() {
        let dir = std::env::temp_dir().join(format!("taphold-evlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut log = EventLog::create(&dir, 400, 2).unwrap();
        for seq in 1..=100 {
            log.write(&event(seq)).unwrap();
        }
        log.w.flush().unwrap();
        assert!(log.rotations > 2, "{}", log.rotations);
        assert!(!dir.join("events.csv.3").exists());
        let mut seqs = Vec::new();
        for name in ["events.csv.2", "events.csv.1", "events.csv"] {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            let mut lines = text.lines();
            assert_eq!(lines.next(), Some(MessageEvent::CSV_HEADER), "{name}");
            for l in lines {
                seqs.push(l.split(',').next().unwrap().parse::<u64>().unwrap());
            }
            assert!(
                text.len() <= 400 + MessageEvent::CSV_HEADER.len() + 1,
                "{name}"
            );
        }
        // What is on disk is the newest events, in order, with nothing missing
        // between them; everything older was counted.
        let first = 100 - seqs.len() as u64 + 1;
        assert_eq!(seqs, (first..=100).collect::<Vec<_>>());
        assert_eq!(log.lines_deleted, first - 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_short_summary_says_what_an_operator_looks_for() {
        let s = json!({
            "stopped_by": "signal",
            "run": {"stream": 1, "epoch": 99},
            "mode": {"final": "halt", "changes": 1, "failovers": 0},
            "messages": {"accepted": 10, "released": 7, "released_unprotected": 0,
                         "held_at_shutdown": 3, "dropped": 2, "unaccounted": 0},
            "ingress": {"rx_frames": 12, "drop_runt": 2, "drop_oversize": 0},
            "health": {"b1": {"state": "down", "in_service": false, "launched_seq": 10,
                              "tapped_seq": 7, "acked_seq": 7, "transitions": [{}, {}]}},
            "latency_ns": {"hold": {"p50": 12300, "p99": 20000, "p999": 30000, "max": 40000},
                           "tap_rtt": {"p50": 5000, "p99": 6000}},
            "alerts": {"total": 2, "by_kind": {"link_down": 1, "mode_halt": 1}},
            "held_file": "/var/lib/taphold/held-1-99.pcap",
        });
        let text = human(&s);
        for want in [
            "mode halt",
            "accepted 10  released 7",
            "held 3",
            "refused   runt 2",
            "link b1   down (out of service)",
            "hold p50 12.3 us",
            "alerts    2 (link_down 1, mode_halt 1)",
            "held-1-99.pcap",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        assert!(!text.contains("oversize"), "zero counters are not listed");
        assert!(text.lines().count() < 15, "short: {text}");
    }
}
