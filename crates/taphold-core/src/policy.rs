//! The release policy: how many backup links must show a message's backup frame on their tap
//! before egress may release it to the destination.
//!
//! Egress evaluates [`PolicyCheck::satisfied`] on the confirmation bits of the hold ring's
//! head (bit `k` for backup link `k`, up to four links). The check is a few bit operations,
//! so it runs per message; the configuration string (`"any"`, `"all"`, `"2-of-3"`) is parsed
//! and validated once, at start-up, by [`PolicySpec`].
//!
//! A policy fails closed: if the links it counts cannot meet it (for example every counted
//! link has been taken out of service), it is never satisfied, and the health logic chooses a
//! secondary mode instead.

use core::fmt;
use core::str::FromStr;

use crate::hold_ring::MAX_LINKS;

/// Which confirmations release a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReleasePolicy {
    /// A tap copy from any one counted backup link.
    Any,
    /// A tap copy from every counted backup link.
    All,
    /// Tap copies from at least `k` counted backup links.
    AtLeast(u8),
}

impl ReleasePolicy {
    /// Checks the policy against `n_links` configured backup links (1..=4): `AtLeast(k)`
    /// needs `1 <= k <= n_links`.
    pub fn validate(&self, n_links: usize) -> Result<(), PolicyError> {
        if n_links == 0 {
            return Err(PolicyError::NoLinks);
        }
        if n_links > MAX_LINKS {
            return Err(PolicyError::TooManyLinks(n_links));
        }
        match *self {
            ReleasePolicy::Any | ReleasePolicy::All => Ok(()),
            ReleasePolicy::AtLeast(0) => Err(PolicyError::ZeroConfirmations),
            ReleasePolicy::AtLeast(k) if usize::from(k) > n_links => {
                Err(PolicyError::MoreThanLinks { k, n_links })
            }
            ReleasePolicy::AtLeast(_) => Ok(()),
        }
    }
}

impl fmt::Display for ReleasePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReleasePolicy::Any => f.write_str("any"),
            ReleasePolicy::All => f.write_str("all"),
            ReleasePolicy::AtLeast(k) => write!(f, "at least {k}"),
        }
    }
}

/// A validated policy plus the mask of backup links that count towards it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PolicyCheck {
    policy: ReleasePolicy,
    links: u8,
}

impl PolicyCheck {
    /// A check over backup links `0..n_links`, after validating `policy` for them.
    pub fn new(policy: ReleasePolicy, n_links: usize) -> Result<Self, PolicyError> {
        policy.validate(n_links)?;
        Ok(PolicyCheck {
            policy,
            links: ((1u16 << n_links) - 1) as u8,
        })
    }

    /// The same policy counting only the links in `links` (bit `k` for link `k`), e.g. after
    /// the health logic takes a link out of service. A policy the remaining links cannot meet
    /// is never satisfied.
    pub fn with_links(self, links: u8) -> Self {
        PolicyCheck {
            policy: self.policy,
            links: links & ((1 << MAX_LINKS) - 1),
        }
    }

    /// The policy.
    pub fn policy(&self) -> ReleasePolicy {
        self.policy
    }

    /// The mask of backup links that count.
    pub fn links(&self) -> u8 {
        self.links
    }

    /// Whether a message with these confirmation bits may be released. Bits of links that do
    /// not count are ignored; with no counted links, nothing is released.
    #[inline]
    pub fn satisfied(&self, confirmed: u8) -> bool {
        let counted = confirmed & self.links;
        match self.policy {
            ReleasePolicy::Any => counted != 0,
            ReleasePolicy::All => self.links != 0 && counted == self.links,
            ReleasePolicy::AtLeast(k) => k != 0 && counted.count_ones() >= u32::from(k),
        }
    }
}

/// The release policy as written in the configuration: `"any"`, `"all"` or `"k-of-n"`
/// (case-insensitive). For `k-of-n`, `of` keeps `n` so it can be checked against the number of
/// backup links actually configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PolicySpec {
    /// The policy.
    pub policy: ReleasePolicy,
    /// The `n` of a `k-of-n` string.
    pub of: Option<u8>,
}

impl PolicySpec {
    /// Validates the spec against `n_links` configured backup links and builds the check over
    /// links `0..n_links`.
    pub fn check(&self, n_links: usize) -> Result<PolicyCheck, PolicyError> {
        self.validate(n_links)?;
        PolicyCheck::new(self.policy, n_links)
    }

    /// Validates the spec against `n_links` configured backup links: the policy itself, and
    /// that a `k-of-n` names the configured `n`.
    pub fn validate(&self, n_links: usize) -> Result<(), PolicyError> {
        self.policy.validate(n_links)?;
        match self.of {
            Some(of) if usize::from(of) != n_links => Err(PolicyError::LinkCountMismatch {
                spec: *self,
                n_links,
            }),
            _ => Ok(()),
        }
    }
}

impl From<ReleasePolicy> for PolicySpec {
    fn from(policy: ReleasePolicy) -> Self {
        PolicySpec { policy, of: None }
    }
}

impl fmt::Display for PolicySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.policy, self.of) {
            (ReleasePolicy::AtLeast(k), Some(n)) => write!(f, "{k}-of-{n}"),
            (policy, _) => write!(f, "{policy}"),
        }
    }
}

impl FromStr for PolicySpec {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("any") {
            return Ok(ReleasePolicy::Any.into());
        }
        if t.eq_ignore_ascii_case("all") {
            return Ok(ReleasePolicy::All.into());
        }
        let unrecognised = || PolicyError::Unrecognised(s.to_owned());
        let (k, n) = t
            .split_once('-')
            .and_then(|(k, rest)| {
                let (of, n) = rest.split_once('-')?;
                of.eq_ignore_ascii_case("of").then_some((k, n))
            })
            .ok_or_else(unrecognised)?;
        let k: u8 = k.parse().map_err(|_| unrecognised())?;
        let n: u8 = n.parse().map_err(|_| unrecognised())?;
        if k > n {
            return Err(PolicyError::MoreThanLinks {
                k,
                n_links: usize::from(n),
            });
        }
        Ok(PolicySpec {
            policy: ReleasePolicy::AtLeast(k),
            of: Some(n),
        })
    }
}

/// Why a release policy was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyError {
    /// No backup links are configured, so nothing could ever be released.
    NoLinks,
    /// More backup links than the hold ring can track.
    TooManyLinks(usize),
    /// `0-of-n`: releasing with no confirmation at all is pass-through, not a policy.
    ZeroConfirmations,
    /// `k` confirmations needed but fewer backup links exist.
    MoreThanLinks {
        /// Confirmations required.
        k: u8,
        /// Backup links available.
        n_links: usize,
    },
    /// A `k-of-n` whose `n` differs from the number of configured backup links.
    LinkCountMismatch {
        /// The configured policy.
        spec: PolicySpec,
        /// Backup links configured.
        n_links: usize,
    },
    /// Not `any`, `all` or `k-of-n`.
    Unrecognised(String),
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::NoLinks => {
                f.write_str("release policy needs at least one backup link, but none is configured")
            }
            PolicyError::TooManyLinks(n) => write!(
                f,
                "{n} backup links configured, but at most {MAX_LINKS} are supported"
            ),
            PolicyError::ZeroConfirmations => f.write_str(
                "release policy requires 0 tap confirmations; use at least 1 \
                 (pass-through is a secondary mode, not a release policy)",
            ),
            PolicyError::MoreThanLinks { k, n_links } => write!(
                f,
                "release policy requires {k} tap confirmations, but only {n_links} backup \
                 link(s) exist"
            ),
            PolicyError::LinkCountMismatch { spec, n_links } => write!(
                f,
                "release policy \"{spec}\" names {} backup links, but {n_links} are configured",
                spec.of.unwrap_or(0)
            ),
            PolicyError::Unrecognised(s) => write!(
                f,
                "unrecognised release policy {s:?}: expected \"any\", \"all\" or \"k-of-n\" \
                 (e.g. \"2-of-3\")"
            ),
        }
    }
}

impl std::error::Error for PolicyError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies() -> Vec<ReleasePolicy> {
        let mut v = vec![ReleasePolicy::Any, ReleasePolicy::All];
        v.extend((0..=5).map(ReleasePolicy::AtLeast));
        v
    }

    /// Every confirmation mask × every policy × every set of counted links, against a
    /// definition written the slow way, one link at a time.
    #[test]
    fn satisfied_exhaustive() {
        for policy in policies() {
            for links in 0u8..16 {
                let check = PolicyCheck { policy, links };
                for confirmed in 0u8..=255 {
                    let counted: Vec<bool> = (0..4)
                        .filter(|l| links & (1 << l) != 0)
                        .map(|l| confirmed & (1 << l) != 0)
                        .collect();
                    let n = counted.iter().filter(|&&c| c).count();
                    let expected = match policy {
                        ReleasePolicy::Any => n >= 1,
                        ReleasePolicy::All => !counted.is_empty() && n == counted.len(),
                        ReleasePolicy::AtLeast(k) => k >= 1 && n >= usize::from(k),
                    };
                    assert_eq!(
                        check.satisfied(confirmed),
                        expected,
                        "{policy:?} links={links:04b} confirmed={confirmed:08b}"
                    );
                }
            }
        }
    }

    #[test]
    fn validate_exhaustive() {
        for n in 0..=6usize {
            for policy in policies() {
                let ok = match policy {
                    _ if n == 0 || n > 4 => false,
                    ReleasePolicy::AtLeast(k) => k >= 1 && usize::from(k) <= n,
                    _ => true,
                };
                assert_eq!(policy.validate(n).is_ok(), ok, "{policy:?} n={n}");
                assert_eq!(PolicyCheck::new(policy, n).is_ok(), ok);
                if ok {
                    let check = PolicyCheck::new(policy, n).unwrap();
                    assert_eq!(check.links(), (1u8 << n) - 1);
                    // With every counted link confirmed, any valid policy is satisfied;
                    // with none, no policy is.
                    assert!(check.satisfied(check.links()));
                    assert!(!check.satisfied(0));
                    assert!(!check.satisfied(!check.links()));
                }
            }
        }
    }

    #[test]
    fn validate_errors() {
        assert_eq!(ReleasePolicy::Any.validate(0), Err(PolicyError::NoLinks));
        assert_eq!(
            ReleasePolicy::All.validate(5),
            Err(PolicyError::TooManyLinks(5))
        );
        assert_eq!(
            ReleasePolicy::AtLeast(0).validate(2),
            Err(PolicyError::ZeroConfirmations)
        );
        assert_eq!(
            ReleasePolicy::AtLeast(3).validate(2),
            Err(PolicyError::MoreThanLinks { k: 3, n_links: 2 })
        );
        let msg = ReleasePolicy::AtLeast(3)
            .validate(2)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("3 tap confirmations") && msg.contains("only 2"),
            "{msg}"
        );
    }

    #[test]
    fn parse() {
        let p = |s: &str| s.parse::<PolicySpec>();
        assert_eq!(p("any").unwrap(), ReleasePolicy::Any.into());
        assert_eq!(p(" ALL ").unwrap(), ReleasePolicy::All.into());
        assert_eq!(
            p("2-of-3").unwrap(),
            PolicySpec {
                policy: ReleasePolicy::AtLeast(2),
                of: Some(3)
            }
        );
        assert_eq!(p("1-OF-1").unwrap().policy, ReleasePolicy::AtLeast(1));
        for bad in [
            "",
            "some",
            "2of3",
            "2-of-",
            "-of-3",
            "a-of-3",
            "2-by-3",
            "2-of-3-of-4",
        ] {
            assert_eq!(
                p(bad),
                Err(PolicyError::Unrecognised(bad.to_owned())),
                "{bad:?}"
            );
        }
        assert_eq!(
            p("3-of-2"),
            Err(PolicyError::MoreThanLinks { k: 3, n_links: 2 })
        );
        for s in ["any", "all", "2-of-3", "0-of-2"] {
            assert_eq!(p(s).unwrap().to_string(), s);
        }
        let msg = p("most").unwrap_err().to_string();
        assert!(msg.contains("\"most\"") && msg.contains("2-of-3"), "{msg}");
    }

    #[test]
    fn spec_checks_link_count() {
        let spec: PolicySpec = "2-of-3".parse().unwrap();
        assert!(spec.check(3).is_ok());
        let err = spec.check(4).unwrap_err();
        assert_eq!(err, PolicyError::LinkCountMismatch { spec, n_links: 4 });
        assert_eq!(
            err.to_string(),
            "release policy \"2-of-3\" names 3 backup links, but 4 are configured"
        );
        assert!(matches!(
            spec.check(2),
            Err(PolicyError::LinkCountMismatch { .. })
        ));
        assert_eq!(
            "0-of-2".parse::<PolicySpec>().unwrap().check(2),
            Err(PolicyError::ZeroConfirmations)
        );
        assert!("any".parse::<PolicySpec>().unwrap().check(4).is_ok());
        let all = "all".parse::<PolicySpec>().unwrap().check(2).unwrap();
        assert!(all.satisfied(0b11) && !all.satisfied(0b01));
    }

    #[test]
    fn with_links_fails_closed() {
        let check = PolicyCheck::new(ReleasePolicy::AtLeast(2), 3).unwrap();
        assert!(check.satisfied(0b011));
        let degraded = check.with_links(0b001);
        assert!(!degraded.satisfied(0b111), "2 of 1 remaining link: never");
        let all = PolicyCheck::new(ReleasePolicy::All, 2)
            .unwrap()
            .with_links(0);
        assert!(!all.satisfied(0b1111), "all of no links: never");
        assert_eq!(check.with_links(0xff).links(), 0x0f);
    }
}
