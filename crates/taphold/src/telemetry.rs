//! What an operator reads while taphold runs, without stopping it: the
//! rte_telemetry commands (`dpdk-telemetry.py -f PREFIX`, then `/taphold/stats`,
//! `/taphold/links`, `/taphold/mode`, `/taphold/latency`) and a Prometheus text
//! endpoint (`--metrics-listen ADDR:PORT`).
//!
//! Both only read the control plane: counters and facts the lcores publish
//! with relaxed stores, and what the main lcore publishes (mode, link states,
//! latency percentiles). Neither runs on an lcore: DPDK's telemetry thread
//! answers the commands, and the metrics server is a thread of its own placed
//! on the main lcore's CPU, off the workers' cores.

use std::net::SocketAddr;
use std::sync::Arc;

use dpdk::telemetry::{self, Dict};
use taphold_core::health::LinkState;
use taphold_runtime::metrics::{label_value as label, metric_name as metric};

use crate::counters::Named;
use crate::plane::Plane;

/// What the answers name: the run and the links (by config name).
pub struct Info {
    pub stream: u32,
    pub epoch: u64,
    pub links: Vec<String>,
}

fn state_name(s: u8) -> &'static str {
    match s {
        x if x == LinkState::Up as u8 => LinkState::Up.as_str(),
        x if x == LinkState::Degraded as u8 => LinkState::Degraded.as_str(),
        _ => LinkState::Down.as_str(),
    }
}

/// `prefix_name value` for every counter of a block.
fn each(prefix: &str, block: &dyn Named, f: &mut dyn FnMut(&str, u64)) {
    block.each(&mut |k, v| f(&format!("{prefix}{k}"), v));
}

/// The counters of the messages' path that are not per link.
fn stats(p: &Plane, f: &mut dyn FnMut(&str, u64)) {
    let c = &p.counters;
    each("ingress_", &*c.ingress, f);
    each("egress_", &*c.egress, f);
    f("messages_dropped", c.ingress.dropped_total());
    f("delivered_seq", p.ingress.delivered_seq());
    f("released_seq", p.egress.released_seq());
}

/// Per link: its health and counters, keys `LINK_...`.
fn links(p: &Plane, info: &Info, f: &mut dyn FnMut(&str, u64), s: &mut dyn FnMut(&str, &str)) {
    let active = p.control.active();
    for (k, name) in info.links.iter().enumerate() {
        s(
            &format!("{name}_state"),
            state_name(p.control.link_state(k)),
        );
        f(
            &format!("{name}_in_service"),
            u64::from(active & (1 << k) != 0),
        );
        f(&format!("{name}_launched_seq"), p.ingress.launched_seq(k));
        f(&format!("{name}_tapped_seq"), p.tap[k].tapped_seq());
        f(&format!("{name}_acked_seq"), p.link_rx[k].acked_seq());
        f(
            &format!("{name}_heartbeat_echo_rtt_ns"),
            p.link_rx[k].hb_echo_rtt_ns(),
        );
        each(&format!("{name}_tap_"), &*p.counters.tap[k], f);
        each(&format!("{name}_link_rx_"), &*p.counters.link_rx[k], f);
        each(&format!("{name}_relaunch_"), &*p.counters.relaunch[k], f);
    }
}

const LATENCY_NAMES: [&str; 8] = [
    "hold_p50_ns",
    "hold_p99_ns",
    "hold_p999_ns",
    "hold_max_ns",
    "tap_rtt_p50_ns",
    "tap_rtt_p99_ns",
    "tap_rtt_p999_ns",
    "tap_rtt_max_ns",
];

/// Registers the four commands.
pub fn register(plane: &'static Plane, info: Arc<Info>) -> dpdk::Result<()> {
    telemetry::register(
        "/taphold/stats",
        "Counters of the message path (ingress, egress), released and delivered seqs",
        move |_, d: &mut Dict| stats(plane, &mut |k, v| d.u64(k, v)),
    )?;
    let i = info.clone();
    telemetry::register(
        "/taphold/links",
        "Per backup link: health state, in service, seqs, tap/link-rx/relaunch counters",
        move |_, d: &mut Dict| {
            // Two sinks into one dict: counters and state names.
            let d = std::cell::RefCell::new(d);
            links(
                plane,
                &i,
                &mut |k, v| d.borrow_mut().u64(k, v),
                &mut |k, v| d.borrow_mut().string(k, v),
            )
        },
    )?;
    let i = info.clone();
    telemetry::register(
        "/taphold/mode",
        "Operating mode, links in service (mask), stream and epoch",
        move |_, d: &mut Dict| {
            d.string("mode", plane.control.mode().as_str());
            d.u64("active_links", u64::from(plane.control.active()));
            d.u64("stream", u64::from(i.stream));
            d.u64("epoch", i.epoch);
        },
    )?;
    telemetry::register(
        "/taphold/latency",
        "Hold time and tap round trip percentiles since the start (ns)",
        move |_, d: &mut Dict| {
            for (k, v) in LATENCY_NAMES.iter().zip(plane.control.latency()) {
                d.u64(k, v);
            }
        },
    )?;
    Ok(())
}

/// The Prometheus text exposition (version 0.0.4) of everything above:
/// `taphold_` names, per-link series labelled `link`.
pub fn prometheus(p: &Plane, info: &Info) -> String {
    let mut out = String::new();
    let mut typed = std::collections::BTreeSet::new();
    let mut put = |name: &str, kind: &str, labels: &str, v: u64| {
        let name = format!("taphold_{}", metric(name));
        if typed.insert(name.clone()) {
            out.push_str(&format!("# TYPE {name} {kind}\n"));
        }
        out.push_str(&format!("{name}{labels} {v}\n"));
    };
    let kind = |name: &str| {
        if name.ends_with("_seq") || name.ends_with("_ns") {
            "gauge"
        } else {
            "counter"
        }
    };
    stats(p, &mut |k, v| put(k, kind(k), "", v));
    let active = p.control.active();
    for (k, name) in info.links.iter().enumerate() {
        let l = format!("{{link=\"{}\"}}", label(name));
        let state = p.control.link_state(k);
        for s in [LinkState::Up, LinkState::Degraded, LinkState::Down] {
            let ls = format!("{{link=\"{}\",state=\"{}\"}}", label(name), s.as_str());
            put("link_state", "gauge", &ls, u64::from(state == s as u8));
        }
        put(
            "link_in_service",
            "gauge",
            &l,
            u64::from(active & (1 << k) != 0),
        );
        put("link_launched_seq", "gauge", &l, p.ingress.launched_seq(k));
        put("link_tapped_seq", "gauge", &l, p.tap[k].tapped_seq());
        put("link_acked_seq", "gauge", &l, p.link_rx[k].acked_seq());
        put(
            "link_heartbeat_echo_rtt_ns",
            "gauge",
            &l,
            p.link_rx[k].hb_echo_rtt_ns(),
        );
        let c = &p.counters;
        for (prefix, block) in [
            ("tap_", &*c.tap[k] as &dyn Named),
            ("link_rx_", &*c.link_rx[k]),
            ("relaunch_", &*c.relaunch[k]),
        ] {
            block.each(&mut |n, v| {
                let n = format!("{prefix}{n}");
                put(&n, kind(&n), &l, v)
            });
        }
    }
    let mode = p.control.mode();
    for m in ["protected", "pass-through", "journal", "halt"] {
        let ml = format!("{{mode=\"{m}\"}}");
        put("mode", "gauge", &ml, u64::from(mode.as_str() == m));
    }
    let lat = p.control.latency();
    for (i, q) in ["0.5", "0.99", "0.999", "1"].iter().enumerate() {
        put("hold_ns", "gauge", &format!("{{quantile=\"{q}\"}}"), lat[i]);
        put(
            "tap_rtt_ns",
            "gauge",
            &format!("{{quantile=\"{q}\"}}"),
            lat[4 + i],
        );
    }
    put("epoch", "gauge", "", info.epoch);
    out
}

/// Serves the Prometheus text on `addr` from a thread of its own, pinned to
/// `cpu` (the main lcore's) so that it never runs on a worker's core.
/// Returns the address it listens on (port 0 picks one).
pub fn serve_metrics(
    addr: SocketAddr,
    plane: &'static Plane,
    info: Arc<Info>,
    cpu: Option<usize>,
) -> std::io::Result<SocketAddr> {
    taphold_runtime::metrics::serve(addr, "taphold-metrics", cpu, move || {
        prometheus(plane, &info)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_one_type_line_per_metric_and_a_series_per_link() {
        let (p, w) = Plane::new(0b01, 2);
        w.ingress.launched_on(1, 9);
        p.counters.ingress.accepted.add(7);
        let info = Info {
            stream: 1,
            epoch: 42,
            links: vec!["b1".into(), "b2".into()],
        };
        let text = prometheus(p, &info);
        assert!(text.contains("taphold_ingress_accepted 7\n"), "{text}");
        assert!(text.contains("taphold_link_launched_seq{link=\"b2\"} 9\n"));
        assert!(text.contains("taphold_link_in_service{link=\"b1\"} 1\n"));
        assert!(text.contains("taphold_link_in_service{link=\"b2\"} 0\n"));
        assert!(text.contains("taphold_mode{mode=\"protected\"} 1\n"));
        assert!(text.contains("taphold_epoch 42\n"));
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let unique: std::collections::BTreeSet<&&str> = types.iter().collect();
        assert_eq!(types.len(), unique.len(), "a TYPE line once per metric");
    }
}
