//! Launching work on worker lcores.
//!
//! `launch` runs a Rust closure on a worker lcore with `rte_eal_remote_launch`
//! and returns a handle whose `join` waits for it (`rte_eal_wait_lcore`) and
//! hands back its result. A panic inside the closure is caught at the C
//! boundary (unwinding through C would abort the process) and returned from
//! `join` as an error, so the main lcore can still shut down cleanly.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use crate::{Eal, Error, Result};

type Outcome<R> = Arc<Mutex<Option<std::thread::Result<R>>>>;

struct Job<R> {
    work: Box<dyn FnOnce() -> R + Send>,
    outcome: Outcome<R>,
}

/// A closure running on a worker lcore.
pub struct LcoreHandle<R> {
    lcore: u32,
    outcome: Outcome<R>,
    joined: bool,
    _eal: Eal,
}

/// The C entry point: runs the job, catching any panic.
unsafe extern "C" fn trampoline<R>(arg: *mut std::ffi::c_void) -> i32 {
    // SAFETY: arg is the Box<Job<R>> leaked by `launch` for exactly this call.
    let job = unsafe { Box::from_raw(arg as *mut Job<R>) };
    let Job { work, outcome } = *job;
    let result = catch_unwind(AssertUnwindSafe(work));
    let failed = result.is_err();
    *outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
    if failed {
        -1
    } else {
        0
    }
}

/// Runs `work` on worker lcore `lcore`. Fails if the lcore is not a worker
/// known to EAL or is busy.
pub fn launch<R, F>(eal: &Eal, lcore: u32, work: F) -> Result<LcoreHandle<R>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    if !eal.worker_lcores().contains(&lcore) {
        return Err(Error::other(
            format!("launch on lcore {lcore}"),
            format!(
                "not a worker lcore of this EAL (workers: {:?}; add it to -l)",
                eal.worker_lcores()
            ),
        ));
    }
    let outcome: Outcome<R> = Arc::new(Mutex::new(None));
    let job = Box::new(Job::<R> {
        work: Box::new(work),
        outcome: outcome.clone(),
    });
    let arg = Box::into_raw(job) as *mut std::ffi::c_void;
    // SAFETY: the trampoline matches lcore_function_t and takes ownership of
    // arg; lcore is a worker lcore of this EAL.
    let ret = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline::<R>), arg, lcore) };
    if ret != 0 {
        // SAFETY: the launch failed, so the trampoline never ran and never
        // took arg: reclaim it here (once).
        drop(unsafe { Box::from_raw(arg as *mut Job<R>) });
        return Err(Error::from_ret(
            format!("rte_eal_remote_launch(lcore {lcore})"),
            ret,
        ));
    }
    Ok(LcoreHandle {
        lcore,
        outcome,
        joined: false,
        _eal: eal.clone(),
    })
}

impl<R> LcoreHandle<R> {
    pub fn lcore(&self) -> u32 {
        self.lcore
    }

    /// Waits for the closure to return; `Err` carries a panic's message.
    pub fn join(mut self) -> std::result::Result<R, String> {
        self.wait();
        let r = self
            .outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match r {
            Some(Ok(v)) => Ok(v),
            Some(Err(p)) => Err(panic_message(&p)),
            None => Err(format!("lcore {} finished without a result", self.lcore)),
        }
    }

    fn wait(&mut self) {
        if !self.joined {
            // SAFETY: lcore was launched by us; waiting is always allowed.
            unsafe { dpdk_sys::rte_eal_wait_lcore(self.lcore) };
            self.joined = true;
        }
    }
}

impl<R> Drop for LcoreHandle<R> {
    fn drop(&mut self) {
        // Never let the EAL (and the memory the closure uses) go away under a
        // running lcore.
        self.wait();
    }
}

fn panic_message(p: &Box<dyn Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}
