//! The Environment Abstraction Layer: initialised once per process, cleaned up
//! when the last pool or port that depends on it is gone.

use std::ffi::{c_char, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::{Error, Result};

/// DPDK allows one `rte_eal_init` per process, even after `rte_eal_cleanup`.
static INITIALISED: AtomicBool = AtomicBool::new(false);

/// A handle to the initialised EAL. Cheap to clone; pools and ports hold one
/// so that `rte_eal_cleanup` cannot run while they are alive.
#[derive(Clone)]
pub struct Eal {
    inner: Arc<EalInner>,
}

struct EalInner {
    file_prefix: Option<String>,
}

impl Eal {
    /// Initialises the EAL from a full argument list (`argv[0]` first), the way
    /// a DPDK program's `main` does: `prog [EAL args] -- [app args]`.
    /// Returns the handle and the application's own arguments (after `--`).
    ///
    /// A second call in the same process fails: DPDK cannot re-initialise.
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<(Eal, Vec<String>)> {
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(Error::other(
                "rte_eal_init",
                "the EAL is already initialised in this process (DPDK allows one init per process)",
            ));
        }
        let owned: Vec<String> = args.iter().map(|a| a.as_ref().to_string()).collect();
        let cstrings: Vec<CString> = owned
            .iter()
            .map(|a| CString::new(a.as_str()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| Error::other("rte_eal_init", "an argument contains a NUL byte"))?;
        // EAL keeps pointers into argv (e.g. the file prefix) for the life of the
        // process, and permutes the argv array: leak both on purpose.
        let cstrings: &'static [CString] = Box::leak(cstrings.into_boxed_slice());
        let argv: Vec<*mut c_char> = cstrings.iter().map(|c| c.as_ptr() as *mut c_char).collect();
        let argv: &'static mut [*mut c_char] = Box::leak(argv.into_boxed_slice());

        // SAFETY: argv points to argc valid NUL-terminated strings that live for
        // the rest of the process; this is the only rte_eal_init in the process
        // (guarded by INITIALISED).
        let ret = unsafe { dpdk_sys::rte_eal_init(argv.len() as i32, argv.as_mut_ptr()) };
        if ret < 0 {
            return Err(Error::from_rte_errno(format!(
                "rte_eal_init({})",
                owned.join(" ")
            )));
        }
        // EAL consumed argv[1..=ret]; the application's arguments follow, after
        // an optional "--" that EAL leaves in place.
        let mut rest: Vec<String> = owned.iter().skip(ret as usize + 1).cloned().collect();
        if rest.first().map(|s| s == "--").unwrap_or(false) {
            rest.remove(0);
        }
        let file_prefix = file_prefix_of(&owned);
        Ok((
            Eal {
                inner: Arc::new(EalInner { file_prefix }),
            },
            rest,
        ))
    }

    /// The lcore the calling thread runs on, if it is an EAL thread.
    pub fn current_lcore(&self) -> Option<u32> {
        // SAFETY: reads a thread-local set by EAL; always valid after init.
        let id = unsafe { dpdk_sys::rte_lcore_id() };
        (id != u32::MAX).then_some(id)
    }

    /// The main lcore (the one running `main`).
    pub fn main_lcore(&self) -> u32 {
        // SAFETY: valid after init.
        unsafe { dpdk_sys::rte_get_main_lcore() }
    }

    /// The NUMA socket of an lcore's CPU.
    pub fn socket_of(&self, lcore: u32) -> u32 {
        // SAFETY: valid after init; reads EAL's lcore configuration only.
        unsafe { dpdk_sys::rte_lcore_to_socket_id(lcore) }
    }

    /// Worker lcores enabled by `-l`/`-c`, in order, main lcore excluded.
    pub fn worker_lcores(&self) -> Vec<u32> {
        let mut out = Vec::new();
        // SAFETY: rte_get_next_lcore only reads EAL's lcore configuration.
        let mut id = unsafe { dpdk_sys::rte_get_next_lcore(u32::MAX, 1, 0) };
        while id < dpdk_sys::RTE_MAX_LCORE {
            out.push(id);
            // SAFETY: as above.
            id = unsafe { dpdk_sys::rte_get_next_lcore(id, 1, 0) };
        }
        out
    }

    /// The CPU an lcore is pinned to, when it is pinned to exactly one.
    pub fn lcore_cpu(&self, lcore: u32) -> Option<u32> {
        // SAFETY: reads EAL's lcore configuration; out-of-range ids return -1.
        let cpu = unsafe { dpdk_sys::rte_lcore_to_cpu_id(lcore as i32) };
        (cpu >= 0).then_some(cpu as u32)
    }

    /// Number of ethdev ports that probed successfully.
    pub fn port_count(&self) -> u16 {
        // SAFETY: valid after init.
        unsafe { dpdk_sys::rte_eth_dev_count_avail() }
    }

    /// The `--file-prefix` this process runs under, if one was given.
    pub fn file_prefix(&self) -> Option<&str> {
        self.inner.file_prefix.as_deref()
    }
}

impl Drop for EalInner {
    fn drop(&mut self) {
        // SAFETY: every pool and port holds an Eal clone, so none is alive now;
        // worker lcores were joined by the Lcore handles' owners (LcoreHandle
        // holds an Eal too). rte_eal_cleanup may be called once.
        let ret = unsafe { dpdk_sys::rte_eal_cleanup() };
        if ret < 0 {
            log::warn!("rte_eal_cleanup failed: {}", crate::error::strerror(-ret));
        }
        // EAL leaves its runtime directory behind; a per-process prefix would
        // otherwise accumulate one directory per run under /var/run/dpdk.
        if let Some(prefix) = &self.file_prefix {
            for base in ["/var/run/dpdk", "/run/dpdk"] {
                let dir = std::path::Path::new(base).join(prefix);
                if dir.is_dir() {
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
    }
}

fn file_prefix_of(args: &[String]) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if let Some(v) = a.strip_prefix("--file-prefix=") {
            return Some(v.to_string());
        }
        if a == "--file-prefix" {
            return it.next().cloned();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::file_prefix_of;

    #[test]
    fn finds_file_prefix_in_both_spellings_and_not_after_dashdash() {
        let v = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            file_prefix_of(&v("p --file-prefix=a -l 0")),
            Some("a".into())
        );
        assert_eq!(file_prefix_of(&v("p --file-prefix b")), Some("b".into()));
        assert_eq!(file_prefix_of(&v("p -l 0 -- --file-prefix=c")), None);
    }
}
