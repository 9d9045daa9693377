//! The main lcore's control tick: each backup link's health state machine,
//! the operating mode that follows from it, and the alerts.
//!
//! Every tick reads what the roles published (plane.rs), feeds each link's
//! `LinkHealth`, and when a link goes down or comes back, decides which
//! links are in service and whether the release policy can still be met
//! (`taphold_core::service`). If it cannot, the configured secondary mode
//! takes over: failover to a standby link, pass-through flagged unprotected,
//! the local journal, or halt. Every link entering service (a failover
//! target, or a link back from down) gets a re-send round of what is held
//! (`taphold_core::round`), so nothing launched while it was out, or accepted
//! with no link at all, waits forever. Every mode change goes through here,
//! the local journal's failure included. It also watches what the roles count
//! (retransmits, a hold ring full for too long) and raises alerts. Off the hot
//! path; logs are fine here.

use taphold_core::health::{LinkFacts, LinkHealth, LinkObservation, LinkState, Transition};
use taphold_core::round::RoundMain;
use taphold_core::service::{Secondary, ServiceRules};

use crate::config::{SecondaryMode, MAX_LINKS};
use crate::plan::Plan;
use crate::plane::{ControlWriter, Mode, Plane, Service};

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
    /// The detail of the latest kept alert of any of `kinds`.
    pub fn last_of(&self, kinds: &[&str]) -> Option<&str> {
        self.kept
            .iter()
            .rev()
            .find(|(_, k, _)| kinds.contains(k))
            .map(|(_, _, d)| d.as_str())
    }

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
    plane: &'static Plane,
    mine: ControlWriter,
    round: RoundMain<'static>,
    health: Vec<LinkHealth>,
    /// Per link, the seq up to which no ack is expected on it any more: what
    /// it carried before it left service, or what was released before it
    /// (re-)entered service.
    floor: Vec<u64>,
    rules: ServiceRules,
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
    /// Target confirmations: 0 when the appliance takes none. Else the alert
    /// threshold, the delivered seq last seen, since when the destination has
    /// been behind without progress (0: it is not), and whether it was said.
    unconfirmed_alert_ns: u64,
    delivered_seen: u64,
    unconfirmed_since: u64,
    unconfirmed_alerted: bool,
    /// Per link: retransmits and exhausted messages already reported.
    retransmits_seen: [u64; MAX_LINKS],
    exhausted_seen: [u64; MAX_LINKS],
    pub alerts: Alerts,
}

impl ControlLoop {
    pub fn new(
        plan: &Plan,
        plane: &'static Plane,
        mine: ControlWriter,
        round: RoundMain<'static>,
        now_ns: u64,
    ) -> ControlLoop {
        ControlLoop {
            plane,
            mine,
            round,
            health: plan
                .links
                .iter()
                .map(|_| LinkHealth::new(plan.health, now_ns))
                .collect(),
            floor: vec![0; plan.links.len()],
            rules: ServiceRules {
                primary_set: plan.primary_set,
                policy: plan.policy,
                secondary: match plan.secondary {
                    SecondaryMode::Failover => Secondary::Failover,
                    SecondaryMode::PassThrough => Secondary::PassThrough,
                    SecondaryMode::Journal => Secondary::Journal,
                    SecondaryMode::Halt => Secondary::Halt,
                },
            },
            transitions: Vec::new(),
            failovers: 0,
            mode_changes: 0,
            resend_rounds: 0,
            forced: None,
            backpressure_alert_ns: plan.backpressure_alert_ns,
            backpressure_alerted: false,
            unconfirmed_alert_ns: if plan.primary.target_confirm_port != 0 {
                plan.unconfirmed_alert_ns.max(1)
            } else {
                0
            },
            delivered_seen: 0,
            unconfirmed_since: 0,
            unconfirmed_alerted: false,
            retransmits_seen: [0; MAX_LINKS],
            exhausted_seen: [0; MAX_LINKS],
            alerts: Alerts::default(),
        }
    }

    /// One control tick at `now` (UNIX ns, the roles' clock).
    pub fn tick(&mut self, now: u64) {
        let mut changed = false;
        for k in 0..self.health.len() {
            let obs = self.observe(k, now);
            let Some(t) = self.health[k].update(&obs) else {
                continue;
            };
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
            self.mine.set_link_state(k, t.to as u8);
            self.transitions.push((now, k, t));
            changed = true;
        }
        if changed {
            self.decide(now);
        }
        self.watch_relaunches(now);
        self.watch_backpressure(now);
        self.watch_destination(now);
    }

    /// Released messages the destination's arbiter has not confirmed for
    /// too long, with no progress: the backup nodes keep them (and their
    /// journals grow) until it does. Said once per spell.
    fn watch_destination(&mut self, now: u64) {
        if self.unconfirmed_alert_ns == 0 {
            return;
        }
        let released = self.plane.egress.released_seq();
        let delivered = self.plane.ingress.delivered_seq();
        if delivered >= released {
            self.unconfirmed_since = 0;
            self.unconfirmed_alerted = false;
        } else if delivered > self.delivered_seen || self.unconfirmed_since == 0 {
            // Behind, but moving (or just fallen behind): the clock restarts.
            self.unconfirmed_since = now;
        } else if !self.unconfirmed_alerted
            && now.saturating_sub(self.unconfirmed_since) >= self.unconfirmed_alert_ns
        {
            self.unconfirmed_alerted = true;
            self.alerts.raise(
                now,
                "destination_unconfirmed",
                format!(
                    "{} released message(s) not confirmed delivered for {} ms (delivered through {delivered}, released through {released}): the backup nodes keep them; check the arbiter",
                    released - delivered,
                    now.saturating_sub(self.unconfirmed_since) / 1_000_000,
                ),
            );
        }
        self.delivered_seen = delivered;
    }

    /// What link `k`'s roles have published, as its health state machine wants it.
    fn observe(&self, k: usize, now: u64) -> LinkObservation {
        let p = self.plane;
        let facts = LinkFacts {
            now_ns: now,
            launched: p.ingress.launched_seq(k),
            acked: p.link_rx[k].acked_seq(),
            ack_floor: self.floor[k],
            unconfirmed_since_ns: p.egress.unconfirmed_since_ns(k),
            hb_sent: p.ingress.hb_sent_seq(k),
            hb_tapped: p.tap[k].hb_tapped_seq(),
            last_peer_heartbeat_ns: p.link_rx[k].last_peer_hb_ns(),
        };
        LinkObservation::from_facts(
            &facts,
            |seq| p.ingress.launch_of(seq),
            |seq| p.ingress.hb_sent_ns(k, seq),
        )
    }

    /// Lost tap copies and their retransmits, as egress counted them.
    fn watch_relaunches(&mut self, now: u64) {
        for k in 0..self.health.len() {
            let c = &self.plane.counters.relaunch[k];
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
    fn watch_backpressure(&mut self, now: u64) {
        let since = self.plane.ingress.ring_full_since_ns();
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
                    self.plane.control.mode().as_str()
                ),
            );
        }
    }

    /// The local journal failed: fail closed, and stay closed whatever the
    /// links do next (nothing can be released on its strength any more).
    pub fn journal_failed(&mut self, now: u64, why: String) {
        self.alerts.raise(
            now,
            "local_journal_failed",
            format!("{why}; failing closed for the rest of the run"),
        );
        self.forced = Some(Mode::Halt);
        self.decide(now);
    }

    /// Latency percentiles for telemetry (see `ControlWriter::publish_latency`).
    pub fn publish_latency(&self, v: [u64; 8]) {
        self.mine.publish_latency(v);
    }

    /// The local journal wrote and synced everything up to `seq`.
    pub fn journaled(&self, seq: u64) {
        self.mine.journaled(seq);
    }

    /// Which links are in service and the mode, from the links' health;
    /// published, and acted on: rounds for links entering service, alerts.
    fn decide(&mut self, now: u64) {
        let old = self.plane.control.service();
        let states = self.states();
        let d = self.rules.decide(&states, old.active, self.forced);
        for k in 0..self.health.len() {
            let bit = 1u8 << k;
            if d.leaving & bit != 0 {
                // Leaving service: what it carried is written off for its acks.
                self.floor[k] = self.plane.ingress.launched_seq(k);
            } else if d.entering & bit != 0 {
                // Entering service (a failover target, or back from down): the
                // re-send round gives it every held message, so acks are due
                // for everything after the released point.
                self.floor[k] = self.plane.egress.released_seq();
            }
            if d.failed_over_to & bit != 0 {
                log::warn!("failover: putting backup link {k} in service");
                self.failovers += 1;
            }
        }
        if d.no_standby {
            self.alerts.raise(
                now,
                "failover_no_standby",
                "no usable standby link can meet the release policy".into(),
            );
        }
        if d.active != old.active {
            log::warn!("links in service: {:#06b} -> {:#06b}", old.active, d.active);
        }
        if d.entering != 0 {
            let (_, links) = self.round.start(d.entering);
            log::warn!(
                "re-send round: every held message to links {links:#06b}, before anything new"
            );
            self.resend_rounds += 1;
        }
        self.mine.publish_service(Service {
            active: d.active,
            mode: d.mode,
        });
        if d.mode != old.mode {
            self.mode_changes += 1;
            let from = old.mode.as_str();
            match d.mode {
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

    pub fn states(&self) -> Vec<LinkState> {
        self.health.iter().map(|h| h.state()).collect()
    }
}
