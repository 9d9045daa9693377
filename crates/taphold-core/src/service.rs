//! What the control lcore decides from the links' health: which links are in
//! service, and the operating mode. Pure: the appliance's control loop feeds
//! it the health states and publishes the result.
//!
//! A link is in service if it was (or is configured in service, not a
//! standby) and is not down. If the links in service can meet the release
//! policy, the mode is `Protected`. If not, the configured secondary mode
//! takes over: `Failover` puts standby links that are up in service until the
//! policy can be met (or halts if it cannot); `PassThrough`, `Journal` and
//! `Halt` are modes of their own. A forced mode (a failed local journal)
//! overrides everything. Links that enter service get a re-send round.

use crate::health::LinkState;
use crate::policy::ReleasePolicy;

/// The operating mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// The release policy can be met: the invariant holds in full.
    Protected = 0,
    /// Releasing without confirmation, every message flagged unprotected.
    PassThrough = 1,
    /// Failed closed: nothing new accepted, nothing released.
    Halt = 2,
    /// Released once written and synced to the local journal.
    Journal = 3,
}

impl Mode {
    /// The mode of a stored byte (anything unknown reads as `Protected`,
    /// which no writer ever stores unknowingly).
    pub fn from_u8(v: u8) -> Mode {
        match v {
            1 => Mode::PassThrough,
            2 => Mode::Halt,
            3 => Mode::Journal,
            _ => Mode::Protected,
        }
    }

    /// The name used in logs, telemetry and the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Protected => "protected",
            Mode::PassThrough => "pass-through",
            Mode::Halt => "halt",
            Mode::Journal => "journal",
        }
    }
}

/// What happens when the links in service cannot meet the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secondary {
    /// Put standby links that are up in service.
    Failover,
    /// Release unconfirmed, flagged unprotected.
    PassThrough,
    /// Release once synced to the local journal.
    Journal,
    /// Fail closed.
    Halt,
}

/// The fixed part of the decision: the configuration.
#[derive(Clone, Copy, Debug)]
pub struct ServiceRules {
    /// Links configured in service (not standby), a mask.
    pub primary_set: u8,
    /// What a release needs (which links' confirmations).
    pub policy: ReleasePolicy,
    /// What to do when the links in service cannot meet `policy`.
    pub secondary: Secondary,
}

/// The outcome of one decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceDecision {
    /// Links in service.
    pub active: u8,
    /// The operating mode.
    pub mode: Mode,
    /// Links that were not in service and now are: each gets a re-send round.
    pub entering: u8,
    /// Links that were in service and no longer are.
    pub leaving: u8,
    /// Standby links put in service by a failover in this decision.
    pub failed_over_to: u8,
    /// A failover was due and no standby could meet the policy.
    pub no_standby: bool,
}

impl ServiceRules {
    /// Can the links in `set` meet the policy on their own?
    pub fn satisfiable(&self, set: u8) -> bool {
        let n = set.count_ones();
        match self.policy {
            ReleasePolicy::Any => n >= 1,
            // `all` means every link configured in service, or as many
            // replacing them after a failover.
            ReleasePolicy::All => n >= self.primary_set.count_ones(),
            ReleasePolicy::AtLeast(k) => n >= u32::from(k),
        }
    }

    /// Decides the links in service and the mode from each link's health
    /// (`states[k]`), the links in service until now, and a forced mode.
    pub fn decide(
        &self,
        states: &[LinkState],
        was_active: u8,
        forced: Option<Mode>,
    ) -> ServiceDecision {
        let mut active = 0u8;
        for (k, s) in states.iter().enumerate() {
            let bit = 1u8 << k;
            let eligible = (was_active | self.primary_set) & bit != 0;
            if eligible && *s != LinkState::Down {
                active |= bit;
            }
        }
        let mut mode = Mode::Protected;
        let mut failed_over_to = 0u8;
        let mut no_standby = false;
        if !self.satisfiable(active) {
            mode = match self.secondary {
                Secondary::Failover => {
                    for (k, s) in states.iter().enumerate() {
                        if self.satisfiable(active) {
                            break;
                        }
                        let bit = 1u8 << k;
                        if active & bit == 0 && *s == LinkState::Up {
                            active |= bit;
                            failed_over_to |= bit;
                        }
                    }
                    if self.satisfiable(active) {
                        Mode::Protected
                    } else {
                        no_standby = true;
                        Mode::Halt
                    }
                }
                Secondary::PassThrough => Mode::PassThrough,
                Secondary::Journal => Mode::Journal,
                Secondary::Halt => Mode::Halt,
            };
        }
        if let Some(f) = forced {
            mode = f;
        }
        ServiceDecision {
            active,
            mode,
            entering: active & !was_active,
            leaving: was_active & !active,
            failed_over_to,
            no_standby,
        }
    }
}

/// The links of a re-send round to start when `entering` links enter
/// service while the links of an unfinished round, `pending`, are still
/// owed theirs: the round is widened (and restarted), so none is left out.
pub fn round_links(pending: u8, entering: u8) -> u8 {
    pending | entering
}

#[cfg(test)]
mod tests {
    use super::*;
    use LinkState::{Degraded as Dg, Down as Dn, Up};

    fn rules(primary_set: u8, policy: ReleasePolicy, secondary: Secondary) -> ServiceRules {
        ServiceRules {
            primary_set,
            policy,
            secondary,
        }
    }

    #[test]
    fn healthy_and_degraded_links_stay_in_service() {
        let r = rules(0b11, ReleasePolicy::All, Secondary::Halt);
        let d = r.decide(&[Up, Dg], 0b11, None);
        assert_eq!(
            (d.active, d.mode, d.entering, d.leaving),
            (0b11, Mode::Protected, 0, 0)
        );
    }

    #[test]
    fn a_down_link_leaves_service_and_the_secondary_mode_acts_when_the_policy_fails() {
        for (secondary, mode) in [
            (Secondary::Halt, Mode::Halt),
            (Secondary::PassThrough, Mode::PassThrough),
            (Secondary::Journal, Mode::Journal),
        ] {
            let r = rules(0b1, ReleasePolicy::Any, secondary);
            let d = r.decide(&[Dn], 0b1, None);
            assert_eq!(
                (d.active, d.mode, d.leaving),
                (0, mode, 0b1),
                "{secondary:?}"
            );
        }
        // `any` over two: one down is not enough to degrade.
        let r = rules(0b11, ReleasePolicy::Any, Secondary::Halt);
        let d = r.decide(&[Dn, Up], 0b11, None);
        assert_eq!((d.active, d.mode, d.leaving), (0b10, Mode::Protected, 0b01));
        // `all` and 2-of-2: one down is.
        for p in [ReleasePolicy::All, ReleasePolicy::AtLeast(2)] {
            let d = rules(0b11, p, Secondary::Halt).decide(&[Up, Dn], 0b11, None);
            assert_eq!((d.active, d.mode), (0b01, Mode::Halt), "{p:?}");
        }
    }

    #[test]
    fn failover_puts_an_up_standby_in_service_or_halts() {
        let r = rules(0b01, ReleasePolicy::Any, Secondary::Failover);
        let d = r.decide(&[Dn, Up], 0b01, None);
        assert_eq!(
            d,
            ServiceDecision {
                active: 0b10,
                mode: Mode::Protected,
                entering: 0b10,
                leaving: 0b01,
                failed_over_to: 0b10,
                no_standby: false,
            }
        );
        // A degraded standby is not used; nothing usable: halt.
        let d = r.decide(&[Dn, Dg], 0b01, None);
        assert_eq!((d.active, d.mode, d.no_standby), (0, Mode::Halt, true));
        // 2-of-n takes as many standbys as it needs, and no more.
        let r = rules(0b0011, ReleasePolicy::AtLeast(2), Secondary::Failover);
        let d = r.decide(&[Dn, Dn, Up, Up], 0b0011, None);
        assert_eq!((d.active, d.failed_over_to), (0b1100, 0b1100));
        let d = r.decide(&[Up, Dn, Up, Up], 0b0011, None);
        assert_eq!((d.active, d.failed_over_to), (0b0101, 0b0100));
    }

    #[test]
    fn a_failover_target_stays_in_service_and_a_configured_link_comes_back() {
        let r = rules(0b01, ReleasePolicy::Any, Secondary::Failover);
        // b1 back up after a failover to b2: both in service, b1 entering.
        let d = r.decide(&[Up, Up], 0b10, None);
        assert_eq!(
            (d.active, d.entering, d.mode),
            (0b11, 0b01, Mode::Protected)
        );
        // A standby never in service stays out while the policy holds.
        let d = r.decide(&[Up, Up], 0b01, None);
        assert_eq!(d.active, 0b01);
        // A halted appliance whose link comes back: protected, the link entering.
        let h = rules(0b1, ReleasePolicy::Any, Secondary::Halt);
        let d = h.decide(&[Up], 0, None);
        assert_eq!((d.active, d.mode, d.entering), (0b1, Mode::Protected, 0b1));
    }

    #[test]
    fn a_forced_mode_holds_whatever_the_links_do() {
        let r = rules(0b1, ReleasePolicy::Any, Secondary::Journal);
        let d = r.decide(&[Dn], 0b1, Some(Mode::Halt));
        assert_eq!(d.mode, Mode::Halt, "not journal: the journal failed");
        let d = r.decide(&[Up], 0, Some(Mode::Halt));
        assert_eq!(
            (d.mode, d.active),
            (Mode::Halt, 0b1),
            "links recover, the mode does not"
        );
    }

    #[test]
    fn every_transition_of_one_link_under_every_mode() {
        // Exhaustive over one link's three states, was-in-service or not, and
        // every secondary mode: in service iff not down; protected iff in service.
        for secondary in [
            Secondary::Failover,
            Secondary::PassThrough,
            Secondary::Journal,
            Secondary::Halt,
        ] {
            let r = rules(0b1, ReleasePolicy::Any, secondary);
            for s in [Up, Dg, Dn] {
                for was in [0u8, 1] {
                    let d = r.decide(&[s], was, None);
                    let in_service = s != Dn;
                    assert_eq!(d.active == 1, in_service, "{secondary:?} {s:?} {was}");
                    assert_eq!(d.entering, u8::from(in_service && was == 0));
                    assert_eq!(d.leaving, u8::from(!in_service && was == 1));
                    let want = if in_service {
                        Mode::Protected
                    } else {
                        match secondary {
                            Secondary::Failover | Secondary::Halt => Mode::Halt,
                            Secondary::PassThrough => Mode::PassThrough,
                            Secondary::Journal => Mode::Journal,
                        }
                    };
                    assert_eq!(d.mode, want, "{secondary:?} {s:?} {was}");
                }
            }
        }
    }

    #[test]
    fn rounds_widen_and_modes_name_themselves() {
        assert_eq!(round_links(0b01, 0b10), 0b11);
        assert_eq!(round_links(0, 0b100), 0b100);
        for m in [
            Mode::Protected,
            Mode::PassThrough,
            Mode::Halt,
            Mode::Journal,
        ] {
            assert_eq!(Mode::from_u8(m as u8), m);
        }
        assert_eq!(Mode::Journal.as_str(), "journal");
    }
}
