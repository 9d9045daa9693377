//! The loop each worker lcore runs: poll its roles in turn until told to quit.
//!
//! The idle policy (taphold_runtime::idle) decides what an empty pass costs;
//! the quit flag is read once per pass. A panic in a role is caught here, not
//! at the C boundary: the roles are still handed back, so the main lcore can
//! account for every held message, and the panic hook has already told every
//! other lcore to quit.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use taphold_runtime::alloc_count;
use taphold_runtime::idle::{IdlePolicy, Idler};

use crate::plane::Plane;
use crate::roles::{egress::Egress, Role};

/// What a worker hands back when it stops.
pub struct Finished {
    /// The egress role, if it ran here: the held messages are in its ring.
    pub egress: Option<Egress>,
    /// Why it stopped early, if a role panicked.
    pub panic: Option<String>,
}

pub fn run(mut roles: Vec<Role>, idle: IdlePolicy, plane: &Plane) -> Finished {
    let mut idler = Idler::new(idle);
    alloc_count::set_hot(true);
    let looped = catch_unwind(AssertUnwindSafe(|| {
        while !plane.quit.load(Ordering::Relaxed) {
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
    }));
    alloc_count::set_hot(false);
    Finished {
        egress: roles.into_iter().filter_map(Role::finish).next(),
        panic: looped.err().map(|p| panic_message(&*p)),
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}
