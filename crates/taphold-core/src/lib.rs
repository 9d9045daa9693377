//! taphold's pure concurrency and policy logic, with nothing from DPDK.
//!
//! The appliance holds every message it accepts until a passive optical tap shows that the
//! backup frame carrying it is on the backup link. This crate is the part of that pipeline
//! that can be reasoned about and tested without a NIC:
//!
//! - [`hold_ring`]: the ring between ingress (launches backup frames and holds the original),
//!   tap-rx (posts confirmations from tap copies) and egress (releases in order once the
//!   release policy holds).
//! - [`policy`]: the release policy over up to four backup links (any, all, k-of-n).
//! - [`spsc`]: a fixed single-producer/single-consumer ring that hands per-message event
//!   records from egress to the main lcore.
//! - [`event`]: the per-message event record and its `events.csv` line.
//! - [`health`]: the per-backup-link health state machine (Up → Degraded → Down → Up) over
//!   acks, peer heartbeats and tap copies, run by the control lcore.
//! - [`latency`]: windowed latency histograms that alert when a window's percentile departs
//!   from the baseline, run by the control lcore.
//! - [`service`]: which links are in service and the operating mode, decided from the
//!   links' health by the control lcore.
//! - [`round`]: the re-send round handshake between the control lcore, ingress and egress
//!   when links enter service.
//!
//! Every hot-path operation here is allocation-free, lock-free and syscall-free; memory is
//! allocated once at construction. Under `--cfg loom` the atomics and cells come from loom
//! (see `tests/loom.rs`), so the model checker explores the same code that ships.

#![warn(missing_docs)]

pub mod event;
pub mod gateway;
pub mod health;
pub mod hold_ring;
pub mod latency;
pub mod policy;
pub mod round;
pub mod service;
pub mod spsc;

mod sync;

use core::fmt;

pub use event::{MessageEvent, MessageStatus};
pub use health::{
    Check, HealthConfig, LinkFacts, LinkHealth, LinkObservation, LinkState, Transition,
};
pub use hold_ring::{Confirm, Confirmer, Consumer, Head, HoldRing, Producer, Released};
pub use latency::{
    Alert, Direction, LatencyMonitor, MonitorConfig, MonitorConfigError, WindowSummary,
};
pub use policy::{PolicyCheck, PolicyError, PolicySpec, ReleasePolicy};
pub use spsc::{Spsc, SpscConsumer, SpscProducer};

/// Why a ring could not be built with the requested capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapacityError {
    /// A capacity of zero slots was requested.
    Zero,
    /// The capacity must be a power of two so the slot is `position & mask`.
    NotPowerOfTwo(usize),
    /// The capacity exceeds what the ring supports.
    TooLarge {
        /// The requested capacity.
        capacity: usize,
        /// The largest capacity this ring accepts.
        max: usize,
    },
}

impl fmt::Display for CapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CapacityError::Zero => f.write_str("ring capacity must be at least 1"),
            CapacityError::NotPowerOfTwo(c) => {
                write!(f, "ring capacity {c} is not a power of two")
            }
            CapacityError::TooLarge { capacity, max } => {
                write!(f, "ring capacity {capacity} exceeds the maximum of {max}")
            }
        }
    }
}

impl std::error::Error for CapacityError {}

/// Checks a requested ring capacity once, at construction.
fn check_capacity(capacity: usize, max: usize) -> Result<(), CapacityError> {
    if capacity == 0 {
        Err(CapacityError::Zero)
    } else if !capacity.is_power_of_two() {
        Err(CapacityError::NotPowerOfTwo(capacity))
    } else if capacity > max {
        Err(CapacityError::TooLarge { capacity, max })
    } else {
        Ok(())
    }
}

/// Pads and aligns a value to its own pair of cache lines, so the producer's and the
/// consumer's positions never share a line (false sharing). 128 bytes because x86's adjacent
/// line prefetcher pulls lines in pairs.
#[repr(align(128))]
struct CachePadded<T>(T);

impl<T> core::ops::Deref for CachePadded<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}
