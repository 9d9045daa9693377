//! What a poll loop does when a pass found no work.
//!
//! `spin` polls flat out (production: one lcore per core); `backoff` sleeps
//! after a run of empty passes, doubling up to a cap, so a test or a shared
//! machine does not burn a core. The sleep is a syscall, but only when there
//! is nothing to do, and the hot-path allocation flag is lowered around it.

use std::time::Duration;

use serde::Deserialize;

use crate::alloc_count;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdlePolicy {
    /// Busy-poll forever: production, one lcore per core.
    Spin,
    /// Sleep briefly after a run of empty polls: tests, shared machines.
    #[default]
    Backoff,
}

/// Empty passes before the first sleep.
pub const SPIN_BEFORE_SLEEP: u32 = 256;
/// Longest sleep, in microseconds.
pub const MAX_SLEEP_US: u64 = 200;

/// A loop's idle state.
pub struct Idler {
    policy: IdlePolicy,
    empty_passes: u32,
    sleep_us: u64,
}

impl Idler {
    pub fn new(policy: IdlePolicy) -> Idler {
        Idler {
            policy,
            empty_passes: 0,
            sleep_us: 1,
        }
    }

    /// After a pass that did `work`: nothing on a busy pass; on an empty one,
    /// a spin hint, or (backoff, after a run of them) a short sleep.
    #[inline]
    pub fn pass(&mut self, work: usize) {
        if work != 0 {
            self.empty_passes = 0;
            self.sleep_us = 1;
            return;
        }
        if self.policy == IdlePolicy::Backoff && self.empty_passes >= SPIN_BEFORE_SLEEP {
            alloc_count::set_hot(false);
            std::thread::sleep(Duration::from_micros(self.sleep_us));
            alloc_count::set_hot(true);
            self.sleep_us = (self.sleep_us * 2).min(MAX_SLEEP_US);
        } else {
            self.empty_passes = self.empty_passes.saturating_add(1);
            std::hint::spin_loop();
        }
    }

    /// Microseconds the next idle sleep would last (for tests).
    pub fn next_sleep_us(&self) -> Option<u64> {
        (self.policy == IdlePolicy::Backoff && self.empty_passes >= SPIN_BEFORE_SLEEP)
            .then_some(self.sleep_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_sleeps_only_after_a_run_of_empty_passes_and_doubles_to_a_cap() {
        let mut i = Idler::new(IdlePolicy::Backoff);
        for _ in 0..SPIN_BEFORE_SLEEP {
            assert_eq!(i.next_sleep_us(), None);
            i.pass(0);
        }
        let mut seen = Vec::new();
        for _ in 0..10 {
            seen.push(i.next_sleep_us().unwrap());
            i.pass(0);
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 32, 64, 128, 200, 200]);
        i.pass(5);
        assert_eq!(i.next_sleep_us(), None, "work resets the backoff");
    }

    #[test]
    fn spin_never_sleeps() {
        let mut i = Idler::new(IdlePolicy::Spin);
        for _ in 0..10 * SPIN_BEFORE_SLEEP {
            i.pass(0);
        }
        assert_eq!(i.next_sleep_us(), None);
    }
}
