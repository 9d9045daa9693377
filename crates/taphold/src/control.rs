//! The main lcore's control tick: each backup link's health state machine,
//! and the operating mode that follows from it.
//!
//! Every tick reads what the roles published (links.rs), feeds each link's
//! `LinkHealth`, and when a link goes down or comes back, decides which
//! links are in service and whether the release policy can still be met. If
//! it cannot, the configured secondary mode takes over: failover to a
//! standby link, pass-through flagged unprotected, the local journal, or
//! halt. Every link entering service (a failover target, or a link back from
//! down) gets a re-send round of what is held, so nothing launched while it
//! was out, or accepted with no link at all, waits forever. It also watches
//! what the roles count (retransmits, a hold ring full for too long) and
//! raises alerts. Off the hot path; logs are fine here.

use std::sync::atomic::Ordering;

use taphold_core::health::{HealthConfig, LinkHealth, LinkObservation, LinkState, Transition};
use taphold_core::policy::ReleasePolicy;

use crate::config::{Config, SecondaryMode, MAX_LINKS};
use crate::links::{self, Mode, HB_LOG};
use crate::Shared;

/// Alerts kept for summary.json (all are counted and logged).
const ALERTS_KEPT: usize = 256;

/// Everything an operator must act on, or at least know: logged as `ALERT
/// <kind>: ...` when raised, counted by kind, the first few kept for the
/// summary. docs/operations.md lists every kind and what to do about it.
#[derive(Default)]
pub struct Alerts {
    pub kept: Vec<(u64, &'static str, String)>,
    pub by_kind: std::collections::BTreeMap<&'static str, u64>,
    pub total: u64,
}

impl Alerts {
    pub fn raise(&mut self, now: u64, kind: &'static str, detail: String) {
        log::error!("ALERT {kind}: {detail}");
        *self.by_kind.entry(kind).or_default() += 1;
        self.total += 1;
        if self.kept.len() < ALERTS_KEPT {
            self.kept.push((now, kind, detail));
        }
    }
}

pub struct ControlLoop {
    health: Vec<LinkHealth>,
    /// Per link, the seq up to which no ack is expected on it any more: what
    /// it carried before it left service, or what was released before it
    /// (re-)entered service.
    floor: Vec<u64>,
    /// Links configured in service (not standby).
    primary_set: u8,
    policy: ReleasePolicy,
    secondary: SecondaryMode,
    pub transitions: Vec<(u64, usize, Transition)>,
    pub failovers: u64,
    pub mode_changes: u64,
    /// Re-send rounds started (a link, or several, entering service).
    pub resend_rounds: u64,
    /// The mode the control loop holds, whatever the links say: a failed
    /// local journal fails closed for good.
    forced: Option<Mode>,
    backpressure_alert_ns: u64,
    backpressure_alerted: bool,
    /// Per link: retransmits and exhausted messages already reported.
    retransmits_seen: [u64; MAX_LINKS],
    exhausted_seen: [u64; MAX_LINKS],
    pub alerts: Alerts,
}

impl ControlLoop {
    pub fn new(cfg: &Config, now_ns: u64) -> ControlLoop {
        let h = &cfg.health;
        let us = |v: u64| v.saturating_mul(1000);
        let hc = HealthConfig {
            ack_timeout_ns: us(h.ack_timeout_us),
            peer_heartbeat_period_ns: us(h.peer_heartbeat_period_us),
            heartbeat_grace_ns: us(h.heartbeat_grace_us),
            tap_timeout_ns: us(h.tap_timeout_us),
            down_after_ns: us(h.down_after_us),
            up_after_ns: us(h.up_after_us),
            require_peer: h.require_peer,
        };
        ControlLoop {
            health: cfg
                .backup_links
                .iter()
                .map(|_| LinkHealth::new(hc, now_ns))
                .collect(),
            floor: vec![0; cfg.backup_links.len()],
            primary_set: active_set(cfg),
            policy: cfg.release.policy.0.policy,
            secondary: cfg.secondary_mode,
            transitions: Vec::new(),
            failovers: 0,
            mode_changes: 0,
            resend_rounds: 0,
            forced: None,
            backpressure_alert_ns: cfg
                .hold_ring
                .backpressure_alert_ms
                .saturating_mul(1_000_000),
            backpressure_alerted: false,
            retransmits_seen: [0; MAX_LINKS],
            exhausted_seen: [0; MAX_LINKS],
            alerts: Alerts::default(),
        }
    }

    /// One control tick at `now` (UNIX ns, the roles' clock).
    pub fn tick(&mut self, s: &Shared, now: u64) {
        let ctl = &s.control;
        let mut changed = false;
        for (k, h) in self.health.iter_mut().enumerate() {
            let obs = observe(s, k, now, self.floor[k]);
            if let Some(t) = h.update(&obs) {
                log::warn!(
                    "backup link {k}: {} -> {}{}",
                    t.from.as_str(),
                    t.to.as_str(),
                    t.failing
                        .map(|c| format!(" ({})", c.as_str()))
                        .unwrap_or_default()
                );
                if t.to == LinkState::Down {
                    self.alerts.raise(
                        now,
                        "link_down",
                        format!(
                            "backup link {k} is down ({}); it leaves service",
                            t.failing.map_or("-", |c| c.as_str())
                        ),
                    );
                }
                ctl.links[k].state.store(t.to as u8, Ordering::Relaxed);
                self.transitions.push((now, k, t));
                changed = true;
            }
        }
        if changed {
            self.decide(s, now);
        }
        self.watch_relaunches(s, now);
        self.watch_backpressure(s, now);
    }

    /// Lost tap copies and their retransmits, as egress counted them.
    fn watch_relaunches(&mut self, s: &Shared, now: u64) {
        for k in 0..self.health.len() {
            let c = &s.counters.relaunch[k];
            let (r, e) = (c.retransmits.get(), c.exhausted.get());
            if r > self.retransmits_seen[k] {
                log::warn!(
                    "backup link {k}: {} message(s) overdue for their confirmation, re-launched (RETRANSMIT)",
                    r - self.retransmits_seen[k]
                );
                self.retransmits_seen[k] = r;
            }
            if e > self.exhausted_seen[k] {
                self.alerts.raise(
                    now,
                    "retransmits_exhausted",
                    format!(
                        "backup link {k}: {} message(s) still unconfirmed after every retransmit; the link's health check takes it down",
                        e - self.exhausted_seen[k]
                    ),
                );
                self.exhausted_seen[k] = e;
            }
        }
    }

    /// A hold ring full for too long: frames wait (or are dropped) at P.
    fn watch_backpressure(&mut self, s: &Shared, now: u64) {
        let since = links::get(&s.control.ring_full_since_ns);
        if since == 0 {
            self.backpressure_alerted = false;
        } else if !self.backpressure_alerted
            && now.saturating_sub(since) >= self.backpressure_alert_ns
        {
            self.backpressure_alerted = true;
            self.alerts.raise(
                now,
                "backpressure",
                format!(
                    "the hold ring has been full for {} ms (mode {}): frames are left on P (port imissed counts what the NIC drops)",
                    now.saturating_sub(since) / 1_000_000,
                    s.control.mode().as_str()
                ),
            );
        }
    }

    /// The local journal failed: fail closed, and stay closed whatever the
    /// links do next (nothing can be released on its strength any more).
    pub fn journal_failed(&mut self, s: &Shared, now: u64, why: String) {
        self.alerts.raise(
            now,
            "local_journal_failed",
            format!("{why}; failing closed for the rest of the run"),
        );
        self.forced = Some(Mode::Halt);
        self.decide(s, now);
    }

    fn usable(&self, k: usize) -> bool {
        self.health[k].state() != LinkState::Down
    }

    /// Can `set` meet the policy on its own?
    fn satisfiable(&self, set: u8) -> bool {
        let n = set.count_ones();
        match self.policy {
            ReleasePolicy::Any => n >= 1,
            // `all` means every link configured in service, or as many
            // replacing them after a failover.
            ReleasePolicy::All => n >= self.primary_set.count_ones(),
            ReleasePolicy::AtLeast(k) => n >= u32::from(k),
        }
    }

    fn decide(&mut self, s: &Shared, now: u64) {
        let ctl = &s.control;
        let old_active = ctl.active();
        // Links in service: those that were, minus the down ones, plus the
        // configured ones that are back.
        let mut active = 0u8;
        for k in 0..self.health.len() {
            let was = old_active & (1 << k) != 0;
            let configured = self.primary_set & (1 << k) != 0;
            if (was || configured) && self.usable(k) {
                active |= 1 << k;
            }
        }
        let mut mode = Mode::Protected;
        if !self.satisfiable(active) {
            match self.secondary {
                SecondaryMode::Failover => {
                    let standbys: Vec<usize> = (0..self.health.len())
                        .filter(|&k| {
                            active & (1 << k) == 0 && self.health[k].state() == LinkState::Up
                        })
                        .collect();
                    for k in standbys {
                        if self.satisfiable(active) {
                            break;
                        }
                        log::warn!("failover: putting backup link {k} in service");
                        active |= 1 << k;
                        self.failovers += 1;
                    }
                    if !self.satisfiable(active) {
                        self.alerts.raise(
                            now,
                            "failover_no_standby",
                            "no usable standby link can meet the release policy".into(),
                        );
                        mode = Mode::Halt;
                    }
                }
                SecondaryMode::PassThrough => mode = Mode::PassThrough,
                SecondaryMode::Halt => mode = Mode::Halt,
                SecondaryMode::Journal => mode = Mode::Journal,
            }
        }
        if let Some(f) = self.forced {
            mode = f;
        }
        if active != old_active {
            log::warn!("links in service: {old_active:#06b} -> {active:#06b}");
            for k in 0..self.health.len() {
                let bit = 1u8 << k;
                if old_active & bit != 0 && active & bit == 0 {
                    // Leaving service: what it carried is written off for its acks.
                    self.floor[k] = links::get(&ctl.links[k].launched_seq);
                } else if old_active & bit == 0 && active & bit != 0 {
                    // Entering service (a failover target, or back from down):
                    // the re-send round gives it every held message, so acks
                    // are due for everything after the released point.
                    self.floor[k] = links::get(&ctl.released_seq);
                }
            }
        }
        let entering = active & !old_active;
        if entering != 0 {
            self.start_round(s, entering);
        }
        let old_mode = ctl.mode();
        // Order matters to egress, which loads `active` then the mode: going
        // degraded, the mode is stored first; going protected, `active` is.
        // Release: pairs with egress's and ingress's Acquire loads.
        if mode != Mode::Protected {
            ctl.mode.store(mode as u8, Ordering::Release);
            ctl.active.store(active, Ordering::Release);
        } else {
            ctl.active.store(active, Ordering::Release);
            ctl.mode.store(mode as u8, Ordering::Release);
        }
        if mode != old_mode {
            self.mode_changes += 1;
            let from = old_mode.as_str();
            match mode {
                Mode::Protected => log::warn!("mode: {from} -> protected"),
                Mode::PassThrough => self.alerts.raise(
                    now,
                    "mode_pass_through",
                    format!("mode {from} -> pass-through: messages leave UNPROTECTED and are flagged"),
                ),
                Mode::Halt => self.alerts.raise(
                    now,
                    "mode_halt",
                    format!("mode {from} -> halt: failing closed, nothing new accepted"),
                ),
                Mode::Journal => self.alerts.raise(
                    now,
                    "mode_journal",
                    format!("mode {from} -> journal: messages released once synced to the local journal"),
                ),
            }
        }
    }

    /// Starts a re-send round onto `links` (entering service): ingress
    /// pauses, egress re-launches every held message they have not
    /// confirmed, in order, ingress resumes (roles/relaunch.rs). A round
    /// still under way is widened and restarted: its links get theirs again.
    fn start_round(&mut self, s: &Shared, links: u8) {
        let ctl = &s.control;
        let round = ctl.failover_epoch.load(Ordering::Relaxed);
        // Acquire: pairs with egress's Release when it finished a round.
        let pending = if ctl.resend_done_epoch.load(Ordering::Acquire) == round {
            0
        } else {
            ctl.resend_links.load(Ordering::Relaxed)
        };
        let mask = pending | links;
        log::warn!("re-send round: every held message to links {mask:#06b}, before anything new");
        ctl.resend_links.store(mask, Ordering::Relaxed);
        // Release: publishes `resend_links` with the round; the new `active`
        // (stored by our caller, also Release) comes after it.
        ctl.failover_epoch.fetch_add(1, Ordering::Release);
        self.resend_rounds += 1;
    }

    pub fn states(&self) -> Vec<LinkState> {
        self.health.iter().map(|h| h.state()).collect()
    }
}

fn active_set(cfg: &Config) -> u8 {
    cfg.backup_links
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.standby)
        .fold(0, |m, (k, _)| m | (1 << k))
}

pub fn initial_active(cfg: &Config) -> u8 {
    active_set(cfg)
}

/// What link `k`'s roles have published, as the health state machine wants
/// it; no ack is expected for seqs up to `floor`.
fn observe(s: &Shared, k: usize, now: u64, floor: u64) -> LinkObservation {
    let ctl = &s.control;
    let l = &ctl.links[k];
    let launched = links::get(&l.launched_seq);
    let acked = links::get(&l.acked_seq).max(floor);
    let oldest_unacked = (launched > acked).then(|| ctl.launch_of(acked + 1));
    // The oldest held message this link has not confirmed, as egress tracks
    // it (a single lost tap copy shows here, not only the newest).
    let unconfirmed = links::get(&l.unconfirmed_since_ns);
    let msg_untapped = (unconfirmed != 0).then_some(unconfirmed);
    let hb_sent = links::get(&l.hb_sent_seq);
    let hb_tapped = links::get(&l.hb_tapped_seq);
    let hb_untapped = (hb_sent > hb_tapped).then(|| {
        // The first heartbeat sent after the last one the tap showed; if it
        // has left the log, it is older than any tap timeout: time 0.
        let first = hb_tapped + 1;
        if hb_sent - first < HB_LOG as u64 {
            links::get(l.hb_sent_ns.slot(first))
        } else {
            0
        }
    });
    let last_peer = links::get(&l.last_peer_hb_ns);
    LinkObservation {
        now_ns: now,
        oldest_unacked_launch_ns: oldest_unacked,
        last_peer_heartbeat_ns: (last_peer != 0).then_some(last_peer),
        oldest_untapped_launch_ns: match (msg_untapped, hb_untapped) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
    }
}
