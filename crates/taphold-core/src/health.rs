//! The health state machine of one backup link: Up → Degraded → Down → Up.
//!
//! The control lcore polls it every ~100 µs with a [`LinkObservation`]: what it has just read
//! from the atomics the hot roles publish for that link (oldest unacked backup frame, last
//! heartbeat from the backup node, oldest launch whose tap copy has not come back). Three
//! checks are evaluated on it, with the patent family's defaults:
//!
//! | check                           | fails when                                        | default    |
//! |---------------------------------|---------------------------------------------------|------------|
//! | [`Check::TapSilent`]            | `now - oldest_untapped_launch > tap_timeout`      | 500 µs     |
//! | [`Check::AckLate`]              | `now - oldest_unacked_launch > ack_timeout`       | 500 µs     |
//! | [`Check::PeerHeartbeatLate`]    | `now - last_peer_heartbeat > period + grace`      | 10 ms + 350 µs |
//!
//! Until the backup node's first heartbeat, [`Check::PeerHeartbeatLate`] measures from the
//! time the [`LinkHealth`] was built: the node gets one period plus the grace to speak. With
//! [`HealthConfig::require_peer`] off (no backup node, e.g. a tap-only replay) only
//! [`Check::TapSilent`] counts.
//!
//! # Transitions
//!
//! | from     | to       | when                                                           |
//! |----------|----------|----------------------------------------------------------------|
//! | Up       | Degraded | the first update on which any check fails                      |
//! | Up       | Down     | the same, when `down_after_ns` is 0 (no debounce)              |
//! | Degraded | Down     | checks have failed on every update for `down_after_ns`         |
//! | Degraded | Up       | every check has passed on every update for `up_after_ns`       |
//! | Down     | Up       | every check has passed on every update for `up_after_ns`       |
//!
//! No other transition exists: a link skips Degraded on its way down only when there is no
//! debounce to wait through, and a Down link that passes for a while and then fails again
//! stays Down (its recovery clock restarts). "Continuously" is judged on the updates we see:
//! one passing update in Degraded restarts the Down clock, one failing update restarts the
//! Up clock. A flapping link therefore stays Degraded: reported, still in service. Each
//! transition is returned by exactly one [`LinkHealth::update`].
//!
//! # Degraded is a warning; Down acts
//!
//! Only Down takes a link out of service, and so only Down can start the secondary mode
//! (the control loop's decision, `service::ServiceRules`). `down_after_ns` is the debounce
//! between the patent's thresholds (a missed 500 µs ack, a heartbeat 350 µs late) and that
//! decision: the default (30 ms, three peer heartbeat periods) rides out one late heartbeat;
//! 0 makes the first missed deadline take the link Down on that very update.
//!
//! Timers start at the update that first sees the condition, not at the instant the
//! threshold was crossed between two updates, so every boundary is exact in update time
//! (tested to the nanosecond) and polling late only ever delays a transition.
//!
//! # TapSilent takes the same path
//!
//! A silent tap is the most serious failure: the tap path is the release gate. It still goes
//! Up → Degraded → Down like the others, for two reasons. Safety does not depend on it: a
//! message whose tap copy never comes back is simply never released by the release policy,
//! so the hold ring keeps it whatever this state machine says. And the thresholds
//! (`tap_timeout_ns`, then `down_after_ns`) are the operator's to set: 0 for the second
//! makes a silent tap start the secondary mode at once. It is reported first
//! by [`LinkHealth::failing`] when several checks fail, because when our own transmit path
//! is broken the ack and heartbeat checks fail as a consequence.
//!
//! The tap check only sees frames we launched: when traffic is idle, the tap path is proven
//! by our own heartbeats, launched by the link's heartbeat timer and reported through
//! `oldest_untapped_launch_ns` like any backup frame.
//!
//! # Time
//!
//! The launch and heartbeat times are stamped by other lcores, whose clocks may run a little
//! ahead of the control lcore's: a time later than `now` counts as age 0 (saturating). A
//! `now` earlier than the previous update's is taken as the previous one, so the timers
//! never run backwards and never advance on a step back; the checks are still evaluated on
//! the observation's (fresher) fields. Nothing here panics or overflows on any input.
//!
//! # Cost
//!
//! [`LinkHealth`] is a small `Copy` struct; [`LinkHealth::update`] is a few comparisons and
//! never allocates.

use core::fmt;

/// The thresholds of one backup link's health checks. All times in nanoseconds of the
/// appliance's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HealthConfig {
    /// The backup node's ack must cover a backup frame within this of its launch
    /// (default 500 µs).
    pub ack_timeout_ns: u64,
    /// How often the backup node heartbeats (default 10 ms).
    pub peer_heartbeat_period_ns: u64,
    /// How late past due a peer heartbeat may be before it is a miss (default 350 µs).
    pub heartbeat_grace_ns: u64,
    /// A frame we launched on the link (backup frame or our own heartbeat) must show on the
    /// tap within this (default 500 µs).
    pub tap_timeout_ns: u64,
    /// Failing continuously this long in Degraded takes the link Down (default three peer
    /// heartbeat periods, 30 ms); 0 takes it Down on the first failing update.
    pub down_after_ns: u64,
    /// Passing continuously this long takes a Degraded or Down link back Up (default 100 ms).
    pub up_after_ns: u64,
    /// Whether the link has a backup node. `false` (e.g. a tap-only replay) ignores acks and
    /// peer heartbeats; only [`Check::TapSilent`] counts.
    pub require_peer: bool,
}

impl Default for HealthConfig {
    fn default() -> Self {
        const PEER_PERIOD_NS: u64 = 10_000_000;
        HealthConfig {
            ack_timeout_ns: 500_000,
            peer_heartbeat_period_ns: PEER_PERIOD_NS,
            heartbeat_grace_ns: 350_000,
            tap_timeout_ns: 500_000,
            down_after_ns: 3 * PEER_PERIOD_NS,
            up_after_ns: 100_000_000,
            require_peer: true,
        }
    }
}

impl HealthConfig {
    /// How long after the last peer heartbeat (or after start-up) the next one is a miss:
    /// one period plus the grace, saturating.
    #[inline]
    pub fn peer_heartbeat_deadline_ns(&self) -> u64 {
        self.peer_heartbeat_period_ns
            .saturating_add(self.heartbeat_grace_ns)
    }
}

/// The health of one backup link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkState {
    /// Every check passes (or has passed long enough to trust the link again).
    Up,
    /// A check is failing; the link stays in service until it has failed for
    /// `down_after_ns`.
    Degraded,
    /// Checks have failed continuously for `down_after_ns`.
    Down,
}

impl LinkState {
    /// The name used in telemetry and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            LinkState::Up => "up",
            LinkState::Degraded => "degraded",
            LinkState::Down => "down",
        }
    }
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a link is failing: the check that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Check {
    /// A backup frame has gone unacked by the backup node for longer than `ack_timeout_ns`.
    AckLate,
    /// The backup node's heartbeat is more than `heartbeat_grace_ns` past due.
    PeerHeartbeatLate,
    /// A frame we launched has not shown on the tap within `tap_timeout_ns`.
    TapSilent,
}

impl Check {
    /// The name used in telemetry and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Check::AckLate => "ack_late",
            Check::PeerHeartbeatLate => "peer_heartbeat_late",
            Check::TapSilent => "tap_silent",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the control lcore has read from the roles' published atomics for one link at
/// `now_ns`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LinkObservation {
    /// When the observation was taken (the control lcore's clock).
    pub now_ns: u64,
    /// Launch time of the oldest backup frame not yet covered by an ack (None: everything
    /// launched is acked).
    pub oldest_unacked_launch_ns: Option<u64>,
    /// Time the last heartbeat from the backup node arrived (None: none yet).
    pub last_peer_heartbeat_ns: Option<u64>,
    /// Launch time of the oldest frame we sent on the link (backup frame or our own
    /// heartbeat) whose tap copy has not come back (None: all tapped).
    pub oldest_untapped_launch_ns: Option<u64>,
}

/// What the hot roles published about one link, as the control lcore read it
/// at `now_ns`: the raw facts [`LinkObservation::from_facts`] turns into an
/// observation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkFacts {
    /// When the facts were read.
    pub now_ns: u64,
    /// Highest message seq launched on the link.
    pub launched: u64,
    /// Highest seq the backup node acked on the link.
    pub acked: u64,
    /// No ack is expected on the link for seqs up to this (what it carried
    /// before it left service, or what was released before it entered).
    pub ack_floor: u64,
    /// When the oldest held message whose tap copy has not come back on the
    /// link started waiting; 0: none.
    pub unconfirmed_since_ns: u64,
    /// Our last heartbeat on the link.
    pub hb_sent: u64,
    /// The highest of our heartbeats its tap showed.
    pub hb_tapped: u64,
    /// When the backup node's last heartbeat arrived; 0: none yet.
    pub last_peer_heartbeat_ns: u64,
}

impl LinkObservation {
    /// The observation of `f`. `launch_of(seq)` is when message `seq` was
    /// launched; `hb_sent_at(seq)` when our heartbeat `seq` was sent, if it
    /// is still remembered (a heartbeat too old to be remembered counts as
    /// sent at time 0: older than any timeout).
    pub fn from_facts(
        f: &LinkFacts,
        launch_of: impl Fn(u64) -> u64,
        hb_sent_at: impl Fn(u64) -> Option<u64>,
    ) -> LinkObservation {
        let acked = f.acked.max(f.ack_floor);
        let msg_untapped = (f.unconfirmed_since_ns != 0).then_some(f.unconfirmed_since_ns);
        // The first heartbeat sent after the last one the tap showed.
        let hb_untapped = (f.hb_sent > f.hb_tapped)
            .then(|| hb_sent_at(f.hb_tapped.saturating_add(1)).unwrap_or(0));
        LinkObservation {
            now_ns: f.now_ns,
            oldest_unacked_launch_ns: (f.launched > acked).then(|| launch_of(acked + 1)),
            last_peer_heartbeat_ns: (f.last_peer_heartbeat_ns != 0)
                .then_some(f.last_peer_heartbeat_ns),
            oldest_untapped_launch_ns: match (msg_untapped, hb_untapped) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// A change of a link's state, returned once by the update that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Transition {
    /// The state left.
    pub from: LinkState,
    /// The state entered.
    pub to: LinkState,
    /// The update time at which it happened (the new state's [`LinkHealth::since_ns`]).
    pub at_ns: u64,
    /// The first failing check at that update; `None` on the way back Up.
    pub failing: Option<Check>,
}

/// The health state machine of one backup link; see the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkHealth {
    cfg: HealthConfig,
    state: LinkState,
    /// When `state` began.
    since_ns: u64,
    /// When this link's health began: the start-up grace for the peer heartbeat runs from here.
    created_ns: u64,
    /// The latest `now` seen; an earlier reading is taken as this one.
    last_now_ns: u64,
    /// First failing check of the last update.
    failing: Option<Check>,
    /// Start of the current run of failing updates (None: the last update passed).
    fail_since_ns: Option<u64>,
    /// Start of the current run of passing updates (None: the last update failed).
    pass_since_ns: Option<u64>,
    transitions: u64,
}

impl LinkHealth {
    /// A link that starts Up at `now_ns`. The backup node has until
    /// `now_ns + peer_heartbeat_period_ns + heartbeat_grace_ns` to send its first heartbeat
    /// before [`Check::PeerHeartbeatLate`] can fire: it may not have spoken yet.
    pub fn new(cfg: HealthConfig, now_ns: u64) -> Self {
        LinkHealth {
            cfg,
            state: LinkState::Up,
            since_ns: now_ns,
            created_ns: now_ns,
            last_now_ns: now_ns,
            failing: None,
            fail_since_ns: None,
            pass_since_ns: Some(now_ns),
            transitions: 0,
        }
    }

    /// Evaluates the checks on `obs` and advances the state machine; returns the transition
    /// this update made, if any (at most one per update, each reported once).
    pub fn update(&mut self, obs: &LinkObservation) -> Option<Transition> {
        // Saturate a step back of our own clock: the timers below never run backwards.
        let now = obs.now_ns.max(self.last_now_ns);
        self.last_now_ns = now;
        let failing = self.evaluate(now, obs);
        self.failing = failing;

        let to = if failing.is_some() {
            self.pass_since_ns = None;
            let fail_since = *self.fail_since_ns.get_or_insert(now);
            match self.state {
                // No debounce: the first missed deadline is a Down link.
                LinkState::Up if self.cfg.down_after_ns == 0 => LinkState::Down,
                LinkState::Up => LinkState::Degraded,
                // `fail_since` is never before the Up → Degraded transition: that transition
                // happened on the first update of the run (or the run restarted since).
                LinkState::Degraded if now.saturating_sub(fail_since) >= self.cfg.down_after_ns => {
                    LinkState::Down
                }
                state => state,
            }
        } else {
            self.fail_since_ns = None;
            let pass_since = *self.pass_since_ns.get_or_insert(now);
            match self.state {
                LinkState::Degraded | LinkState::Down
                    if now.saturating_sub(pass_since) >= self.cfg.up_after_ns =>
                {
                    LinkState::Up
                }
                state => state,
            }
        };

        if to == self.state {
            return None;
        }
        let transition = Transition {
            from: self.state,
            to,
            at_ns: now,
            failing,
        };
        self.state = to;
        self.since_ns = now;
        self.transitions = self.transitions.saturating_add(1);
        Some(transition)
    }

    /// The first failing check at `now`, in order of seriousness: the tap (the release gate,
    /// and the likely cause of the others when our transmit path is broken), then the ack,
    /// then the peer heartbeat.
    fn evaluate(&self, now: u64, obs: &LinkObservation) -> Option<Check> {
        // Age of a timestamp from another lcore: one slightly in our future is age 0.
        let age = |t: u64| now.saturating_sub(t);
        if obs
            .oldest_untapped_launch_ns
            .is_some_and(|t| age(t) > self.cfg.tap_timeout_ns)
        {
            return Some(Check::TapSilent);
        }
        if !self.cfg.require_peer {
            return None;
        }
        if obs
            .oldest_unacked_launch_ns
            .is_some_and(|t| age(t) > self.cfg.ack_timeout_ns)
        {
            return Some(Check::AckLate);
        }
        let last_heard = obs.last_peer_heartbeat_ns.unwrap_or(self.created_ns);
        if age(last_heard) > self.cfg.peer_heartbeat_deadline_ns() {
            return Some(Check::PeerHeartbeatLate);
        }
        None
    }

    /// The link's current state.
    #[inline]
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// The first failing check in the last update (in the order [`Check::TapSilent`],
    /// [`Check::AckLate`], [`Check::PeerHeartbeatLate`]); `None` if every check passed.
    #[inline]
    pub fn failing(&self) -> Option<Check> {
        self.failing
    }

    /// When the current state began (construction time for the initial Up).
    #[inline]
    pub fn since_ns(&self) -> u64 {
        self.since_ns
    }

    /// How many transitions this link has made.
    #[inline]
    pub fn transitions(&self) -> u64 {
        self.transitions
    }

    /// The thresholds in use.
    #[inline]
    pub fn config(&self) -> &HealthConfig {
        &self.cfg
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn observations_from_what_the_roles_published() {
        let launch = |seq: u64| 1000 + seq;
        let hb = |seq: u64| (seq >= 5).then_some(2000 + seq);
        let nothing = LinkFacts {
            now_ns: 9,
            ..LinkFacts::default()
        };
        assert_eq!(
            LinkObservation::from_facts(&nothing, launch, hb),
            LinkObservation {
                now_ns: 9,
                ..LinkObservation::default()
            },
            "nothing launched, nothing waits"
        );
        let f = LinkFacts {
            now_ns: 5000,
            launched: 10,
            acked: 6,
            ack_floor: 0,
            unconfirmed_since_ns: 3000,
            hb_sent: 9,
            hb_tapped: 6,
            last_peer_heartbeat_ns: 4000,
        };
        let o = LinkObservation::from_facts(&f, launch, hb);
        assert_eq!(
            o.oldest_unacked_launch_ns,
            Some(1007),
            "the first unacked: 7"
        );
        assert_eq!(o.last_peer_heartbeat_ns, Some(4000));
        assert_eq!(
            o.oldest_untapped_launch_ns,
            Some(2007),
            "heartbeat 7, before message 3000"
        );
        // The floor covers what a link carried before it left service.
        let o = LinkObservation::from_facts(&LinkFacts { ack_floor: 10, ..f }, launch, hb);
        assert_eq!(o.oldest_unacked_launch_ns, None);
        // A message waiting longer than the untapped heartbeat wins.
        let o = LinkObservation::from_facts(
            &LinkFacts {
                unconfirmed_since_ns: 100,
                ..f
            },
            launch,
            hb,
        );
        assert_eq!(o.oldest_untapped_launch_ns, Some(100));
        // A heartbeat too old to be remembered: time 0, older than any timeout.
        let o = LinkObservation::from_facts(&LinkFacts { hb_tapped: 2, ..f }, launch, hb);
        assert_eq!(o.oldest_untapped_launch_ns, Some(0));
        // Extremes: no overflow.
        let max = LinkFacts {
            now_ns: u64::MAX,
            launched: u64::MAX,
            acked: u64::MAX - 1,
            hb_sent: u64::MAX,
            hb_tapped: u64::MAX - 1,
            ..LinkFacts::default()
        };
        let o = LinkObservation::from_facts(&max, |s| s, Some);
        assert_eq!(o.oldest_unacked_launch_ns, Some(u64::MAX));
        assert_eq!(o.oldest_untapped_launch_ns, Some(u64::MAX));
    }

    use proptest::prelude::*;

    use super::*;

    /// Small round numbers so the tables read; the ratios match the defaults.
    const CFG: HealthConfig = HealthConfig {
        ack_timeout_ns: 500,
        peer_heartbeat_period_ns: 10_000,
        heartbeat_grace_ns: 350,
        tap_timeout_ns: 500,
        down_after_ns: 30_000,
        up_after_ns: 100_000,
        require_peer: true,
    };

    const T0: u64 = 1_000_000;

    /// Every check passes: nothing outstanding, the peer heard from just now.
    fn healthy(now: u64) -> LinkObservation {
        LinkObservation {
            now_ns: now,
            oldest_unacked_launch_ns: None,
            last_peer_heartbeat_ns: Some(now),
            oldest_untapped_launch_ns: None,
        }
    }

    /// Only `check`'s input is stale, pinned at `since`; everything else is healthy.
    fn stale(check: Check, since: u64, now: u64) -> LinkObservation {
        let mut o = healthy(now);
        match check {
            Check::AckLate => o.oldest_unacked_launch_ns = Some(since),
            Check::PeerHeartbeatLate => o.last_peer_heartbeat_ns = Some(since),
            Check::TapSilent => o.oldest_untapped_launch_ns = Some(since),
        }
        o
    }

    /// The age past which `check` fails under `cfg`.
    fn threshold(cfg: &HealthConfig, check: Check) -> u64 {
        match check {
            Check::AckLate => cfg.ack_timeout_ns,
            Check::PeerHeartbeatLate => cfg.peer_heartbeat_deadline_ns(),
            Check::TapSilent => cfg.tap_timeout_ns,
        }
    }

    const CHECKS: [Check; 3] = [Check::AckLate, Check::PeerHeartbeatLate, Check::TapSilent];

    /// Feeds `obs` and asserts the outcome: the transition (if any), then the state.
    #[track_caller]
    fn step(h: &mut LinkHealth, obs: LinkObservation, expect: Option<(LinkState, LinkState)>) {
        let before = *h;
        let t = h.update(&obs);
        assert_eq!(
            t.map(|t| (t.from, t.to)),
            expect,
            "at {} from {before:?}",
            obs.now_ns
        );
        if let Some(t) = t {
            assert_eq!(t.at_ns, obs.now_ns);
            assert_eq!(t.failing, h.failing());
            assert_eq!(h.since_ns(), obs.now_ns);
            assert_eq!(h.transitions(), before.transitions() + 1);
            assert_eq!(h.state(), t.to);
        } else {
            assert_eq!(h.state(), before.state());
            assert_eq!(h.since_ns(), before.since_ns());
            assert_eq!(h.transitions(), before.transitions());
        }
    }

    use LinkState::{Degraded, Down, Up};

    #[test]
    fn defaults_are_the_patents() {
        let d = HealthConfig::default();
        assert_eq!(d.ack_timeout_ns, 500_000);
        assert_eq!(d.peer_heartbeat_period_ns, 10_000_000);
        assert_eq!(d.heartbeat_grace_ns, 350_000);
        assert_eq!(d.tap_timeout_ns, 500_000);
        assert_eq!(d.down_after_ns, 30_000_000);
        assert_eq!(d.up_after_ns, 100_000_000);
        assert!(d.require_peer);
        assert_eq!(d.peer_heartbeat_deadline_ns(), 10_350_000);
        let h = LinkHealth::new(d, 7);
        assert_eq!(
            (h.state(), h.failing(), h.since_ns(), h.transitions()),
            (Up, None, 7, 0)
        );
        assert_eq!(h.config(), &d);
    }

    #[test]
    fn names() {
        assert_eq!(Up.as_str(), "up");
        assert_eq!(Degraded.to_string(), "degraded");
        assert_eq!(Down.as_str(), "down");
        assert_eq!(Check::AckLate.as_str(), "ack_late");
        assert_eq!(Check::PeerHeartbeatLate.to_string(), "peer_heartbeat_late");
        assert_eq!(Check::TapSilent.as_str(), "tap_silent");
    }

    /// Each check alone, at each of the two sets of thresholds, drives Up → Degraded → Down
    /// at exactly its threshold and exactly `down_after_ns` later, then back Up after exactly
    /// `up_after_ns` of passing; one nanosecond earlier, nothing happens.
    #[test]
    fn each_check_alone_at_exact_thresholds() {
        for cfg in [CFG, HealthConfig::default()] {
            for check in CHECKS {
                let mut h = LinkHealth::new(cfg, T0);
                let since = T0 + 100;
                // The first failing instant: age strictly greater than the threshold.
                let fail = since + threshold(&cfg, check) + 1;
                step(&mut h, stale(check, since, since), None);
                step(&mut h, stale(check, since, fail - 1), None);
                assert_eq!(h.failing(), None, "{check:?}");
                step(&mut h, stale(check, since, fail), Some((Up, Degraded)));
                assert_eq!(h.failing(), Some(check));
                let down = fail + cfg.down_after_ns;
                step(&mut h, stale(check, since, fail + 1), None);
                step(&mut h, stale(check, since, down - 1), None);
                step(&mut h, stale(check, since, down), Some((Degraded, Down)));
                assert_eq!(h.failing(), Some(check));
                step(&mut h, stale(check, since, down + 1), None);
                // Recovery: the first passing update starts the clock.
                let pass = down + 1_000;
                step(&mut h, healthy(pass), None);
                assert_eq!(h.failing(), None);
                step(&mut h, healthy(pass + cfg.up_after_ns - 1), None);
                step(&mut h, healthy(pass + cfg.up_after_ns), Some((Down, Up)));
                assert_eq!(h.transitions(), 3);
                assert_eq!(h.since_ns(), pass + cfg.up_after_ns);
            }
        }
    }

    /// With no debounce (`down_after_ns` 0), each check's first missed deadline takes the
    /// link straight Down on that update (one transition, Up → Down); one nanosecond
    /// earlier, nothing happens. Recovery is unchanged.
    #[test]
    fn no_debounce_goes_down_on_the_first_missed_deadline() {
        for base in [CFG, HealthConfig::default()] {
            let cfg = HealthConfig {
                down_after_ns: 0,
                ..base
            };
            for check in CHECKS {
                let mut h = LinkHealth::new(cfg, T0);
                let since = T0 + 100;
                let fail = since + threshold(&cfg, check) + 1;
                step(&mut h, stale(check, since, fail - 1), None);
                assert_eq!(h.state(), Up);
                let t = h.update(&stale(check, since, fail)).unwrap();
                assert_eq!(
                    t,
                    Transition {
                        from: Up,
                        to: Down,
                        at_ns: fail,
                        failing: Some(check)
                    },
                    "{check:?}"
                );
                step(&mut h, stale(check, since, fail + 1), None);
                assert_eq!(h.transitions(), 1);
                let pass = fail + 10;
                step(&mut h, healthy(pass), None);
                step(&mut h, healthy(pass + cfg.up_after_ns), Some((Down, Up)));
                // A second failure goes straight down again.
                let again = pass + cfg.up_after_ns + 1;
                step(
                    &mut h,
                    stale(check, 0, again + threshold(&cfg, check)),
                    Some((Up, Down)),
                );
            }
        }
    }

    /// Degraded goes back Up after `up_after_ns` of passing, never straight from one good
    /// update.
    #[test]
    fn degraded_recovers_after_up_after() {
        for check in CHECKS {
            let mut h = LinkHealth::new(CFG, T0);
            let fail = T0 + threshold(&CFG, check) + 1;
            step(&mut h, stale(check, T0, fail), Some((Up, Degraded)));
            let pass = fail + 1;
            step(&mut h, healthy(pass), None);
            step(&mut h, healthy(pass + CFG.up_after_ns - 1), None);
            assert_eq!(h.state(), Degraded);
            let t = h.update(&healthy(pass + CFG.up_after_ns)).unwrap();
            assert_eq!(
                t,
                Transition {
                    from: Degraded,
                    to: Up,
                    at_ns: pass + CFG.up_after_ns,
                    failing: None
                }
            );
        }
    }

    /// One failing blip during recovery restarts the whole `up_after_ns`, from Down and from
    /// Degraded.
    #[test]
    fn failing_blip_restarts_recovery() {
        for check in CHECKS {
            for from in [Degraded, Down] {
                let mut h = LinkHealth::new(CFG, T0);
                let fail = T0 + threshold(&CFG, check) + 1;
                step(&mut h, stale(check, T0, fail), Some((Up, Degraded)));
                let mut t = fail;
                if from == Down {
                    t += CFG.down_after_ns;
                    step(&mut h, stale(check, T0, t), Some((Degraded, Down)));
                }
                let pass = t + 10;
                step(&mut h, healthy(pass), None);
                step(&mut h, healthy(pass + CFG.up_after_ns / 2), None);
                // The blip: one failing update.
                let blip = pass + CFG.up_after_ns - 1;
                step(&mut h, stale(check, 0, blip), None);
                assert_eq!(h.failing(), Some(check));
                // The old clock would have fired here; the new one has not even started.
                step(&mut h, healthy(pass + CFG.up_after_ns), None);
                let again = pass + CFG.up_after_ns;
                step(&mut h, healthy(again + CFG.up_after_ns - 1), None);
                step(&mut h, healthy(again + CFG.up_after_ns), Some((from, Up)));
            }
        }
    }

    /// One passing update in Degraded restarts the Down clock: Down needs `down_after_ns` of
    /// failing on every update.
    #[test]
    fn passing_blip_restarts_down_clock() {
        for check in CHECKS {
            let mut h = LinkHealth::new(CFG, T0);
            let fail = T0 + threshold(&CFG, check) + 1;
            step(&mut h, stale(check, T0, fail), Some((Up, Degraded)));
            step(&mut h, stale(check, T0, fail + 100), None);
            step(&mut h, healthy(fail + 200), None);
            assert_eq!(h.failing(), None);
            let again = fail + 300;
            step(&mut h, stale(check, 0, again), None);
            step(&mut h, stale(check, 0, fail + CFG.down_after_ns), None);
            step(&mut h, stale(check, 0, again + CFG.down_after_ns - 1), None);
            step(
                &mut h,
                stale(check, 0, again + CFG.down_after_ns),
                Some((Degraded, Down)),
            );
        }
    }

    /// Different checks failing back to back form one continuous failing run.
    #[test]
    fn failing_run_spans_checks() {
        let mut h = LinkHealth::new(CFG, T0);
        let t = T0 + 1_000;
        step(&mut h, stale(Check::TapSilent, 0, t), Some((Up, Degraded)));
        step(&mut h, stale(Check::AckLate, 0, t + 10_000), None);
        assert_eq!(h.failing(), Some(Check::AckLate));
        step(
            &mut h,
            stale(Check::PeerHeartbeatLate, 0, t + CFG.down_after_ns),
            Some((Degraded, Down)),
        );
        assert_eq!(h.failing(), Some(Check::PeerHeartbeatLate));
    }

    /// A Down link that passes for a while and fails again stays Down; it never goes back
    /// through Degraded.
    #[test]
    fn down_stays_down_on_partial_recovery() {
        let mut h = LinkHealth::new(CFG, T0);
        let t = T0 + 1_000;
        step(&mut h, stale(Check::TapSilent, 0, t), Some((Up, Degraded)));
        let t = t + CFG.down_after_ns;
        step(
            &mut h,
            stale(Check::TapSilent, 0, t),
            Some((Degraded, Down)),
        );
        for i in 1..=10 {
            step(&mut h, healthy(t + i * 1_000), None);
            step(&mut h, stale(Check::AckLate, 0, t + i * 1_000 + 500), None);
            assert_eq!(h.state(), Down);
        }
    }

    #[test]
    fn failing_reports_tap_first_then_ack_then_heartbeat() {
        let now = T0 + 1_000_000;
        let all = LinkObservation {
            now_ns: now,
            oldest_unacked_launch_ns: Some(0),
            last_peer_heartbeat_ns: Some(0),
            oldest_untapped_launch_ns: Some(0),
        };
        let cases = [
            (all, Some(Check::TapSilent)),
            (
                LinkObservation {
                    oldest_untapped_launch_ns: None,
                    ..all
                },
                Some(Check::AckLate),
            ),
            (
                LinkObservation {
                    oldest_untapped_launch_ns: Some(now),
                    oldest_unacked_launch_ns: Some(now),
                    ..all
                },
                Some(Check::PeerHeartbeatLate),
            ),
            (healthy(now), None),
        ];
        for (obs, expect) in cases {
            let mut h = LinkHealth::new(CFG, T0);
            h.update(&obs);
            assert_eq!(h.failing(), expect, "{obs:?}");
        }
    }

    /// Without a backup node, late acks and a silent peer are ignored; the tap still counts.
    #[test]
    fn require_peer_false_ignores_peer_checks() {
        let cfg = HealthConfig {
            require_peer: false,
            ..CFG
        };
        let mut h = LinkHealth::new(cfg, T0);
        for i in 0..1_000u64 {
            let now = T0 + i * 10_000;
            let obs = LinkObservation {
                now_ns: now,
                oldest_unacked_launch_ns: Some(0),
                last_peer_heartbeat_ns: if i % 2 == 0 { None } else { Some(0) },
                oldest_untapped_launch_ns: None,
            };
            step(&mut h, obs, None);
            assert_eq!(h.failing(), None);
        }
        let now = T0 + 10_000_000;
        let fail = stale(Check::TapSilent, now - cfg.tap_timeout_ns - 1, now);
        step(&mut h, fail, Some((Up, Degraded)));
        assert_eq!(h.failing(), Some(Check::TapSilent));
        let fail = stale(Check::TapSilent, 0, now + cfg.down_after_ns);
        step(&mut h, fail, Some((Degraded, Down)));
    }

    /// Before the backup node's first heartbeat, it has one period plus the grace from
    /// construction; after it, the deadline runs from the heartbeat.
    #[test]
    fn startup_grace() {
        let deadline = CFG.peer_heartbeat_deadline_ns();
        let silent = |now| LinkObservation {
            now_ns: now,
            ..LinkObservation::default()
        };
        let mut h = LinkHealth::new(CFG, T0);
        step(&mut h, silent(T0), None);
        step(&mut h, silent(T0 + deadline), None);
        assert_eq!(h.failing(), None);
        step(&mut h, silent(T0 + deadline + 1), Some((Up, Degraded)));
        assert_eq!(h.failing(), Some(Check::PeerHeartbeatLate));

        // The first heartbeat arrives after a while: the deadline now runs from it.
        let mut h = LinkHealth::new(CFG, T0);
        let hb = T0 + 5_000;
        let heard = |now| LinkObservation {
            now_ns: now,
            last_peer_heartbeat_ns: Some(hb),
            ..LinkObservation::default()
        };
        step(&mut h, heard(T0 + deadline + 1), None);
        step(&mut h, heard(hb + deadline), None);
        step(&mut h, heard(hb + deadline + 1), Some((Up, Degraded)));
    }

    /// The clock stepping back, and timestamps from other lcores in our future, never panic
    /// and never make a transition: the timers neither run backwards nor advance.
    #[test]
    fn time_going_backwards() {
        // Healthy link, readings going back to 0, launches and heartbeats in the future.
        let mut h = LinkHealth::new(CFG, T0);
        step(&mut h, healthy(T0 + 10), None);
        for now in [T0 + 9, T0, T0 - 1, 1, 0] {
            let obs = LinkObservation {
                now_ns: now,
                oldest_unacked_launch_ns: Some(T0 + 10_000),
                last_peer_heartbeat_ns: Some(u64::MAX),
                oldest_untapped_launch_ns: Some(T0 + 1),
            };
            step(&mut h, obs, None);
            assert_eq!(h.failing(), None);
        }

        // Degraded, one nanosecond short of Down: any number of readings from the past with
        // the same stale inputs never complete the Down clock.
        for check in CHECKS {
            let mut h = LinkHealth::new(CFG, T0);
            let fail = T0 + threshold(&CFG, check) + 1;
            step(&mut h, stale(check, T0, fail), Some((Up, Degraded)));
            let last = fail + CFG.down_after_ns - 1;
            step(&mut h, stale(check, T0, last), None);
            for back in [1, 2, 1_000, CFG.down_after_ns, last] {
                step(&mut h, stale(check, T0, last - back), None);
                assert_eq!(h.failing(), Some(check));
            }
            // Time resumes: Down exactly where it would have been.
            step(&mut h, stale(check, T0, last + 1), Some((Degraded, Down)));

            // Down, one nanosecond short of Up: readings from the past never complete it.
            let pass = last + 10;
            step(&mut h, healthy(pass), None);
            step(&mut h, healthy(pass + CFG.up_after_ns - 1), None);
            // The inputs are as fresh as the last reading's (they only ever move forward).
            let last = healthy(pass + CFG.up_after_ns - 1);
            for back in [1, 500, pass] {
                let now_ns = last.now_ns - back;
                step(&mut h, LinkObservation { now_ns, ..last }, None);
                assert_eq!(h.failing(), None);
            }
            step(&mut h, healthy(pass + CFG.up_after_ns), Some((Down, Up)));
        }
    }

    /// Extreme configurations and inputs: zero and maximal thresholds, times at both ends of
    /// the clock. Nothing panics or overflows, and the rules still hold.
    #[test]
    fn extremes_never_panic() {
        let zero = HealthConfig {
            ack_timeout_ns: 0,
            peer_heartbeat_period_ns: 0,
            heartbeat_grace_ns: 0,
            tap_timeout_ns: 0,
            down_after_ns: 0,
            up_after_ns: 0,
            require_peer: true,
        };
        let max = HealthConfig {
            ack_timeout_ns: u64::MAX,
            peer_heartbeat_period_ns: u64::MAX,
            heartbeat_grace_ns: u64::MAX,
            tap_timeout_ns: u64::MAX,
            down_after_ns: u64::MAX,
            up_after_ns: u64::MAX,
            require_peer: true,
        };
        let times = [0, 1, T0, u64::MAX / 2, u64::MAX - 1, u64::MAX];
        let opts = [None, Some(0), Some(1), Some(u64::MAX)];
        for cfg in [zero, max, CFG] {
            for start in times {
                let mut h = LinkHealth::new(cfg, start);
                for now in times.iter().chain(times.iter().rev()) {
                    for a in opts {
                        for b in opts {
                            for c in opts {
                                let prev = h.state();
                                if let Some(t) = h.update(&LinkObservation {
                                    now_ns: *now,
                                    oldest_unacked_launch_ns: a,
                                    last_peer_heartbeat_ns: b,
                                    oldest_untapped_launch_ns: c,
                                }) {
                                    assert_eq!(t.from, prev);
                                    assert!(allowed(&cfg, t.from, t.to), "{t:?}");
                                }
                            }
                        }
                    }
                }
            }
        }
        // Zero thresholds: anything outstanding a nanosecond fails, and with no debounce
        // that is Down at once; Up on the first passing update.
        let mut h = LinkHealth::new(zero, T0);
        step(&mut h, stale(Check::TapSilent, T0, T0), None);
        step(
            &mut h,
            stale(Check::TapSilent, T0, T0 + 1),
            Some((Up, Down)),
        );
        step(&mut h, stale(Check::TapSilent, T0, T0 + 1), None);
        step(&mut h, healthy(T0 + 2), Some((Down, Up)));
        // Maximal thresholds: nothing ever fails.
        let mut h = LinkHealth::new(max, 0);
        step(&mut h, stale(Check::TapSilent, 0, u64::MAX), None);
        assert_eq!(h.failing(), None);
    }

    /// The transitions the module docs list: Up skips Degraded exactly when there is no
    /// debounce.
    fn allowed(cfg: &HealthConfig, from: LinkState, to: LinkState) -> bool {
        match (from, to) {
            (Up, Degraded) => cfg.down_after_ns > 0,
            (Up, Down) => cfg.down_after_ns == 0,
            (Degraded, Down) | (Degraded, Up) | (Down, Up) => true,
            _ => false,
        }
    }

    // ---------------------------------------------------------------------------------------
    // Property: random observation sequences against the rules, checked the slow way.

    /// A timestamp `offset` ns before `now` (negative: in the future, another lcore's clock
    /// running ahead), clamped to the clock's range.
    fn at(now: u64, offset: i64) -> u64 {
        if offset >= 0 {
            now.saturating_sub(offset as u64)
        } else {
            now.saturating_add(offset.unsigned_abs())
        }
    }

    fn config_strategy() -> impl Strategy<Value = HealthConfig> {
        (
            0u64..200,
            0u64..300,
            0u64..100,
            0u64..200,
            0u64..1_000,
            0u64..1_000,
            any::<bool>(),
        )
            .prop_map(|(ack, period, grace, tap, down, up, peer)| HealthConfig {
                ack_timeout_ns: ack,
                peer_heartbeat_period_ns: period,
                heartbeat_grace_ns: grace,
                tap_timeout_ns: tap,
                down_after_ns: down,
                up_after_ns: up,
                require_peer: peer,
            })
    }

    /// One step: how far the clock moves (sometimes back), and each input's age (None:
    /// nothing outstanding / no heartbeat yet).
    type StepSpec = (i64, Option<i64>, Option<i64>, Option<i64>);

    fn step_strategy() -> impl Strategy<Value = StepSpec> {
        // Ages mostly healthy, sometimes past every threshold, sometimes in the future; long
        // runs of the same kind come from the clock steps being small against the timers.
        let age = || prop::option::weighted(0.7, -30i64..400);
        (-40i64..250, age(), age(), age())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn transitions_follow_the_rules(
            cfg in config_strategy(),
            start in 0u64..2_000,
            steps in prop::collection::vec(step_strategy(), 1..400),
        ) {
            let mut h = LinkHealth::new(cfg, start);
            let mut clock = start;
            // The reference: the monotone clock, the current runs, when the state began.
            let mut last_now = start;
            let mut fail_run: Option<u64> = None;
            let mut pass_run: Option<u64> = None;
            let mut state = Up;
            let mut since = start;
            let mut transitions = 0;
            for (dt, unacked, heartbeat, untapped) in steps {
                clock = at(clock, -dt);
                let obs = LinkObservation {
                    now_ns: clock,
                    oldest_unacked_launch_ns: unacked.map(|a| at(clock, a)),
                    last_peer_heartbeat_ns: heartbeat.map(|a| at(clock, a)),
                    oldest_untapped_launch_ns: untapped.map(|a| at(clock, a)),
                };
                let now = clock.max(last_now);
                last_now = now;
                let age = |t: Option<u64>| t.map(|t| now.saturating_sub(t));
                let tap = age(obs.oldest_untapped_launch_ns).is_some_and(|a| a > cfg.tap_timeout_ns);
                let ack = cfg.require_peer
                    && age(obs.oldest_unacked_launch_ns).is_some_and(|a| a > cfg.ack_timeout_ns);
                let hb = cfg.require_peer
                    && now.saturating_sub(obs.last_peer_heartbeat_ns.unwrap_or(start))
                        > cfg.peer_heartbeat_period_ns + cfg.heartbeat_grace_ns;
                let failing = if tap {
                    Some(Check::TapSilent)
                } else if ack {
                    Some(Check::AckLate)
                } else if hb {
                    Some(Check::PeerHeartbeatLate)
                } else {
                    None
                };
                if failing.is_some() {
                    pass_run = None;
                    fail_run.get_or_insert(now);
                } else {
                    fail_run = None;
                    pass_run.get_or_insert(now);
                }

                let t = h.update(&obs);
                prop_assert_eq!(h.failing(), failing);
                match t {
                    Some(t) => {
                        prop_assert_eq!(t.from, state);
                        prop_assert!(allowed(&cfg, t.from, t.to), "{:?}", t);
                        prop_assert_eq!(t.at_ns, now);
                        prop_assert_eq!(t.failing, failing);
                        match t.to {
                            Degraded => prop_assert!(failing.is_some()),
                            Down => {
                                // Degraded throughout a failing run of at least down_after.
                                let run = fail_run.unwrap();
                                prop_assert!(run >= since, "run {} began before Degraded {}", run, since);
                                prop_assert!(now - run >= cfg.down_after_ns);
                            }
                            Up => {
                                let run = pass_run.unwrap();
                                prop_assert!(now - run >= cfg.up_after_ns);
                            }
                        }
                        state = t.to;
                        since = now;
                        transitions += 1;
                    }
                    None => {
                        // And the converse: whenever a rule fires, the transition happens.
                        let fires = match (state, fail_run, pass_run) {
                            (Up, Some(_), _) => true, // to Degraded, or Down with no debounce
                            (Degraded, Some(run), _) => now - run >= cfg.down_after_ns,
                            (Degraded | Down, None, Some(run)) => now - run >= cfg.up_after_ns,
                            _ => false,
                        };
                        prop_assert!(!fires, "{:?} should have moved at {}", state, now);
                    }
                }
                prop_assert_eq!(h.state(), state);
                prop_assert_eq!(h.since_ns(), since);
                prop_assert_eq!(h.transitions(), transitions);
            }
        }
    }
}
