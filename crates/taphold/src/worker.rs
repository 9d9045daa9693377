//! The loop each worker lcore runs: poll its roles in turn until told to quit.
//!
//! Idle policy: `spin` polls flat out (production, one lcore per core);
//! `backoff` sleeps after a run of empty polls, doubling up to a cap, so a
//! test or a shared machine does not burn a core. The sleep is a syscall, but
//! only when there is nothing to do; the quit flag is read once per pass.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::config::IdlePolicy;
use crate::roles::{egress::Egress, Role};
use crate::Shared;
use taphold_runtime::alloc_count;

/// Empty passes before the first sleep.
const SPIN_BEFORE_SLEEP: u32 = 256;
const MAX_SLEEP_US: u64 = 200;

pub fn run(mut roles: Vec<Role>, idle: IdlePolicy, shared: &Shared) -> Option<Egress> {
    let mut empty_passes = 0u32;
    let mut sleep_us = 1u64;
    alloc_count::set_hot(true);
    while !shared.quit.load(Ordering::Relaxed) {
        let mut work = 0;
        for r in &mut roles {
            work += r.poll();
        }
        if work != 0 {
            empty_passes = 0;
            sleep_us = 1;
            continue;
        }
        if idle == IdlePolicy::Backoff {
            empty_passes += 1;
            if empty_passes >= SPIN_BEFORE_SLEEP {
                alloc_count::set_hot(false);
                std::thread::sleep(Duration::from_micros(sleep_us));
                alloc_count::set_hot(true);
                sleep_us = (sleep_us * 2).min(MAX_SLEEP_US);
            } else {
                std::hint::spin_loop();
            }
        } else {
            std::hint::spin_loop();
        }
    }
    // Let in-flight work settle: a few more passes to flush refused bursts.
    for _ in 0..64 {
        for r in &mut roles {
            r.poll();
        }
    }
    alloc_count::set_hot(false);
    roles.into_iter().filter_map(Role::finish).next()
}
