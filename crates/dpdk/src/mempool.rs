//! Packet buffer pools. One pool per socket is the DPDK norm; taphold makes
//! all its buffers (received messages, backup frames, confirmations) from one.

use std::ffi::{CStr, CString};
use std::ptr::NonNull;
use std::sync::Arc;

use crate::{Eal, Error, Mbuf, Result};

/// A `rte_pktmbuf` pool. Clones share the pool.
#[derive(Clone)]
pub struct Mempool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    ptr: NonNull<dpdk_sys::rte_mempool>,
    name: String,
    eal: Eal,
}

// SAFETY: rte_mempool is designed to be used from every lcore at once (its
// get/put paths are multi-producer/multi-consumer with per-lcore caches).
unsafe impl Send for PoolInner {}
unsafe impl Sync for PoolInner {}

impl Mempool {
    /// Creates a pool of `n` mbufs with `data_room` bytes each (headroom
    /// included, as DPDK counts it), a per-lcore cache, on `socket` (-1 any).
    pub fn new(
        eal: &Eal,
        name: &str,
        n: u32,
        cache: u32,
        data_room: u16,
        socket: i32,
    ) -> Result<Mempool> {
        let cname = CString::new(name)
            .map_err(|_| Error::other("rte_pktmbuf_pool_create", "NUL in name"))?;
        // SAFETY: EAL is initialised (we hold an Eal); cname outlives the call
        // (DPDK copies the name).
        let ptr = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(cname.as_ptr(), n, cache, 0, data_room, socket)
        };
        let ptr = NonNull::new(ptr).ok_or_else(|| {
            Error::from_rte_errno(format!(
                "rte_pktmbuf_pool_create({name}, n={n}, data_room={data_room})"
            ))
        })?;
        Ok(Mempool {
            inner: Arc::new(PoolInner {
                ptr,
                name: name.to_string(),
                eal: eal.clone(),
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub(crate) fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.inner.ptr.as_ptr()
    }

    /// Allocates one mbuf, or `None` when the pool is exhausted.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is alive (we hold it); the returned mbuf, if any, is
        // a fresh reset mbuf we now own exclusively.
        let m = unsafe { dpdk_sys::rte_pktmbuf_alloc(self.as_ptr()) };
        // SAFETY: non-null pointers from rte_pktmbuf_alloc are owned by the caller.
        NonNull::new(m).map(|p| unsafe { Mbuf::from_raw(p) })
    }

    /// Mbufs currently out of the pool (held by us or by a driver's rings).
    pub fn in_use(&self) -> u32 {
        // SAFETY: reads counters of a live pool.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.as_ptr()) }
    }

    /// Mbufs available in the pool (including per-lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: reads counters of a live pool.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.as_ptr()) }
    }

    /// Data room of each mbuf, headroom excluded.
    pub fn data_room(&self) -> u16 {
        // SAFETY: the pool was made by rte_pktmbuf_pool_create, so its private
        // area is an rte_pktmbuf_pool_private.
        unsafe {
            let room = dpdk_sys::rte_pktmbuf_data_room_size(self.as_ptr());
            room.saturating_sub(dpdk_sys::RTE_PKTMBUF_HEADROOM as u16)
        }
    }
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // SAFETY: reads counters of a live pool.
        let in_use = unsafe { dpdk_sys::rte_mempool_in_use_count(self.ptr.as_ptr()) };
        if in_use != 0 {
            // Freeing the pool now would leave those mbufs dangling. Keep the
            // pool (and therefore the EAL) alive for the rest of the process.
            log::error!(
                "mempool {} dropped with {in_use} mbufs still in use; leaking it",
                self.name
            );
            std::mem::forget(self.eal.clone());
            return;
        }
        // SAFETY: no mbuf of this pool is outstanding and no port references it
        // (ports hold a Mempool clone), so nothing can touch it after this.
        unsafe { dpdk_sys::rte_mempool_free(self.ptr.as_ptr()) };
    }
}

impl std::fmt::Debug for Mempool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SAFETY: the pool is alive; its name is a NUL-terminated array inside it.
        let name = unsafe { CStr::from_ptr((*self.as_ptr()).name.as_ptr()) };
        f.debug_struct("Mempool")
            .field("name", &name)
            .field("in_use", &self.in_use())
            .finish()
    }
}
