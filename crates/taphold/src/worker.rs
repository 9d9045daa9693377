//! The loop each worker lcore runs: poll its roles in turn until told to quit.
//!
//! The idle policy (taphold_runtime::idle) decides what an empty pass costs;
//! the quit flag is read once per pass.

use std::sync::atomic::Ordering;

use taphold_runtime::alloc_count;
use taphold_runtime::idle::{IdlePolicy, Idler};

use crate::roles::{egress::Egress, Role};
use crate::Shared;

pub fn run(mut roles: Vec<Role>, idle: IdlePolicy, shared: &Shared) -> Option<Egress> {
    let mut idler = Idler::new(idle);
    alloc_count::set_hot(true);
    while !shared.quit.load(Ordering::Relaxed) {
        let mut work = 0;
        for r in &mut roles {
            work += r.poll();
        }
        idler.pass(work);
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
