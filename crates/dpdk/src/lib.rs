//! taphold's safe layer over DPDK.
//!
//! This is the only crate in taphold that calls into C. Everything above it —
//! the appliance's lcore roles, the backup node, the tests — works with owned
//! Rust values whose lifetimes encode DPDK's ownership rules:
//!
//! - [`Eal`] is the environment; every pool and port holds a handle to it, so
//!   `rte_eal_cleanup` runs only after the last of them is gone.
//! - [`Mbuf`] is one owned packet buffer: dropping it frees it, sending it
//!   hands it to the driver, and the type system makes "freed twice" and
//!   "sent and then freed" unrepresentable.
//! - [`Burst`] is the fixed array that rx/tx bursts fill and drain; whatever
//!   a driver did not accept stays in it, still owned by the caller.
//!
//! Each `unsafe` block says why it is sound, next to the call.

pub mod burst;
pub mod clock;
pub mod eal;
pub mod error;
pub mod lcore;
pub mod mbuf;
pub mod mempool;
pub mod port;
pub mod ring;
pub mod telemetry;
pub mod testing;

pub use burst::Burst;
pub use clock::Clock;
pub use eal::Eal;
pub use error::{Error, Result};
pub use mbuf::Mbuf;
pub use mempool::Mempool;
pub use port::{LinkInfo, Port, PortConfig, PortStats};
pub use ring::{EthRingPair, SpscRing};
