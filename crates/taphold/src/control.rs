//! The main lcore's control tick: each backup link's health state machine,
//! and the operating mode that follows from it.
//!
//! Every tick reads what the roles published (links.rs), feeds each link's
//! `LinkHealth`, and when a link goes down or comes back, decides which
//! links are in service and whether the release policy can still be met. If
//! it cannot, the configured secondary mode takes over: failover to a
//! standby link (with a re-send of what is held), pass-through flagged
//! unprotected, or halt. Off the hot path; logs are fine here.

use std::sync::atomic::Ordering;

use taphold_core::health::{HealthConfig, LinkHealth, LinkObservation, LinkState, Transition};
use taphold_core::policy::ReleasePolicy;

use crate::config::{Config, SecondaryMode};
use crate::links::{self, Mode, HB_LOG};
use crate::Shared;

pub struct ControlLoop {
    health: Vec<LinkHealth>,
    /// Per link, the seq up to which nothing is expected on it any more
    /// (neither a tap copy nor an ack): what it carried before it left
    /// service, or what was released before it (re-)entered service.
    floor: Vec<u64>,
    /// Links configured in service (not standby).
    primary_set: u8,
    policy: ReleasePolicy,
    secondary: SecondaryMode,
    pub transitions: Vec<(u64, usize, Transition)>,
    pub failovers: u64,
    pub mode_changes: u64,
    /// Links put in service by a failover in the current decision.
    failover_targets: u8,
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
            failover_targets: 0,
        }
    }

    /// One control tick at `now` (TSC ns, the roles' clock).
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
                ctl.links[k].state.store(t.to as u8, Ordering::Relaxed);
                self.transitions.push((now, k, t));
                changed = true;
            }
        }
        if changed {
            self.decide(s);
        }
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

    fn decide(&mut self, s: &Shared) {
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
                        self.start_failover(s, k, &mut active);
                    }
                    if !self.satisfiable(active) {
                        log::error!("failover: no usable standby link; failing closed");
                        mode = Mode::Halt;
                    }
                }
                SecondaryMode::PassThrough => mode = Mode::PassThrough,
                SecondaryMode::Halt => mode = Mode::Halt,
                SecondaryMode::Journal => mode = Mode::Journal,
            }
        }
        if active != old_active {
            log::warn!("links in service: {old_active:#06b} -> {active:#06b}");
            let launched_any = (0..self.health.len())
                .map(|k| links::get(&ctl.links[k].launched_seq))
                .max()
                .unwrap_or(0);
            for k in 0..self.health.len() {
                let bit = 1u8 << k;
                if old_active & bit != 0 && active & bit == 0 {
                    // Leaving service: what it carried is written off for its health.
                    self.floor[k] = links::get(&ctl.links[k].launched_seq);
                } else if old_active & bit == 0 && active & bit != 0 {
                    // Entering service: a failover target gets every held
                    // message (everything after the released point); a link
                    // coming back gets only what is launched from now on.
                    self.floor[k] = if self.failover_targets & bit != 0 {
                        links::get(&ctl.released_seq)
                    } else {
                        launched_any
                    };
                }
            }
            self.failover_targets = 0;
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
            match mode {
                Mode::Protected => log::warn!("mode: {} -> protected", old_mode.as_str()),
                Mode::PassThrough => log::error!(
                    "ALERT mode: {} -> pass-through: messages leave UNPROTECTED and are flagged",
                    old_mode.as_str()
                ),
                Mode::Halt => log::error!(
                    "ALERT mode: {} -> halt: failing closed, nothing new accepted",
                    old_mode.as_str()
                ),
                Mode::Journal => log::error!(
                    "ALERT mode: {} -> journal: messages released once synced to the local journal",
                    old_mode.as_str()
                ),
            }
        }
    }

    /// Puts standby link `k` in service: ingress pauses, egress re-sends every
    /// held message `k` has not confirmed, ingress resumes on the new set.
    fn start_failover(&mut self, s: &Shared, k: usize, active: &mut u8) {
        let ctl = &s.control;
        log::warn!(
            "failover: putting backup link {k} in service and re-sending held messages on it"
        );
        ctl.failover_link.store(k as u8, Ordering::Relaxed);
        // Release: publishes failover_link with the epoch; the new `active`
        // (stored by our caller, also Release) comes after it.
        ctl.failover_epoch.fetch_add(1, Ordering::Release);
        *active |= 1 << k;
        self.failover_targets |= 1 << k;
        self.failovers += 1;
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
/// it; messages up to `floor` are no longer expected on the link.
fn observe(s: &Shared, k: usize, now: u64, floor: u64) -> LinkObservation {
    let ctl = &s.control;
    let l = &ctl.links[k];
    let launched = links::get(&l.launched_seq);
    let acked = links::get(&l.acked_seq).max(floor);
    let tapped = links::get(&l.tapped_seq).max(floor);
    let oldest_unacked = (launched > acked).then(|| ctl.launch_of(acked + 1));
    let msg_untapped = (launched > tapped).then(|| ctl.launch_of(tapped + 1));
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
