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

pub struct Report {
    pub monitors: Monitors,
    out: Option<PathBuf>,
    events_csv: Option<BufWriter<File>>,
    held_pcap: Option<BufWriter<File>>,
    hold: Histogram<u64>,
    tap_rtt: Histogram<u64>,
    events: u64,
    /// Messages whose timestamps broke release >= tap >= backup_tx: must stay 0.
    order_violations: u64,
    unprotected: u64,
    _clock: Clock,
}

fn histogram() -> Histogram<u64> {
    // 1 ns .. 100 s at 3 significant digits; allocated once, here.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("static bounds")
}

impl Report {
    pub fn new(out: Option<&Path>, clock: Clock, monitors: Monitors) -> std::io::Result<Report> {
        let mut events_csv = None;
        if let Some(dir) = out {
            std::fs::create_dir_all(dir)?;
            let mut w = BufWriter::new(File::create(dir.join("events.csv"))?);
            writeln!(w, "{}", MessageEvent::CSV_HEADER)?;
            events_csv = Some(w);
        }
        Ok(Report {
            monitors,
            out: out.map(Path::to_path_buf),
            events_csv,
            held_pcap: None,
            hold: histogram(),
            tap_rtt: histogram(),
            events: 0,
            order_violations: 0,
            unprotected: 0,
            _clock: clock,
        })
    }

    fn record(&mut self, ev: &MessageEvent) {
        self.events += 1;
        if let Some(w) = &mut self.events_csv {
            if let Err(e) = ev.write_csv_line(w) {
                log::error!("events.csv: {e}; no more event lines will be written");
                self.events_csv = None;
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
            let _ = self
                .hold
                .record(ev.release_ns.saturating_sub(ev.rx_ns).max(1));
            let _ = self
                .tap_rtt
                .record(ev.tap_ns.saturating_sub(ev.backup_tx_ns).max(1));
        }
        if ev.status == MessageStatus::ReleasedUnprotected {
            self.unprotected += 1;
        }
    }

    /// Takes every event record egress has published so far.
    pub fn drain_events(&mut self, rx: &mut SpscConsumer<MessageEvent>) {
        while let Some(ev) = rx.pop() {
            self.record(&ev);
        }
    }

    /// A message still held when the workers stopped: its event line, and its
    /// frame appended to held.pcap so nothing accepted vanishes.
    pub fn held_at_shutdown(&mut self, ev: MessageEvent, frame: &[u8]) {
        self.record(&ev);
        let Some(dir) = &self.out else { return };
        if self.held_pcap.is_none() {
            match File::create(dir.join("held.pcap")).map(BufWriter::new) {
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
                Err(e) => log::error!("held.pcap: {e}"),
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
            if let Err(e) = w.write_all(&rec) {
                log::error!("held.pcap: {e}");
            }
        }
    }

    pub fn stats_line(
        &self,
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
        format!(
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
            self.tap_rtt.value_at_quantile(0.5),
            self.hold.value_at_quantile(0.5),
            self.hold.value_at_quantile(0.99),
        )
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
            w.flush()?;
        }
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
            "events": { "recorded": self.events, "order_violations": self.order_violations },
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
