//! Raw bindings to the system DPDK, generated at build time by bindgen from
//! `wrapper.h`. DPDK's `static inline` functions (the whole fast path:
//! `rte_eth_rx_burst`, `rte_eth_tx_burst`, `rte_pktmbuf_alloc`, the ring
//! enqueue/dequeue family, ...) are wrapped by bindgen into a C file of
//! `<name>__extern` functions that build.rs compiles; bindgen links them under
//! the original names, so callers see one API.
//!
//! Nothing here is safe to call directly: the `dpdk` crate is the safe layer.
#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case)]
#![allow(clippy::all)]
#![allow(rustdoc::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// `rte_pktmbuf_mtod`: a macro in C. Start of the packet data in the first segment.
///
/// # Safety
/// `m` must point to a valid mbuf.
#[inline(always)]
pub unsafe fn rte_pktmbuf_mtod(m: *const rte_mbuf) -> *mut u8 {
    ((*m).buf_addr as *mut u8).add((*m).data_off as usize)
}
