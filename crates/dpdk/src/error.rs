//! One error type for every DPDK call: what we were doing, and DPDK's own words.

use std::ffi::CStr;
use std::fmt;

/// A failed DPDK operation. `code` is a positive errno value (DPDK returns
/// `-errno` from most calls and sets `rte_errno` from the rest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The operation, with its subject: `"rte_eth_dev_configure(net_pcap0)"`.
    pub op: String,
    /// errno value, 0 when DPDK gave none.
    pub code: i32,
    /// rte_strerror(code), or our own explanation.
    pub detail: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// From a negative return value (`-errno`) or a positive errno.
    pub fn from_ret(op: impl Into<String>, ret: i32) -> Error {
        let code = ret.abs();
        Error {
            op: op.into(),
            code,
            detail: strerror(code),
        }
    }

    /// From the calling thread's `rte_errno`, for calls that return NULL or -1.
    pub fn from_rte_errno(op: impl Into<String>) -> Error {
        // SAFETY: the getter only reads the calling thread's rte_errno.
        let code = unsafe { dpdk_sys::taphold_rte_errno() };
        Error::from_ret(op, code)
    }

    /// An error we detect ourselves (a vdev that did not probe, a bad argument).
    pub fn other(op: impl Into<String>, detail: impl Into<String>) -> Error {
        Error {
            op: op.into(),
            code: 0,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.code != 0 {
            write!(f, "{}: {} (errno {})", self.op, self.detail, self.code)
        } else {
            write!(f, "{}: {}", self.op, self.detail)
        }
    }
}

impl std::error::Error for Error {}

/// DPDK's message for an errno value, covering both libc's and DPDK's own codes.
pub fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a NUL-terminated string that
    // stays valid at least until the next call on this thread; we copy it at once.
    unsafe {
        let p = dpdk_sys::rte_strerror(code);
        if p.is_null() {
            return format!("errno {code}");
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}
