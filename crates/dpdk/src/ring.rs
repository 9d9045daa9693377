//! DPDK rings: a typed single-producer/single-consumer `rte_ring` for handing
//! owned objects between lcores, and the ring pairs that back in-process
//! cross-connected ports (`rte_eth_from_rings`).

use std::ffi::CString;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::{Eal, Error, Mbuf, Port, Result};

/// Something that travels through an `rte_ring` as one pointer and is owned
/// again on the other side.
///
/// # Safety
/// `from_ring_ptr(into_ring_ptr(x))` must give back `x`, and `into_ring_ptr`
/// must hand over ownership (the value is not dropped until it comes back).
pub unsafe trait RingItem: Send {
    fn into_ring_ptr(self) -> *mut std::ffi::c_void;
    /// # Safety
    /// `p` must come from `into_ring_ptr` of the same type, taken exactly once.
    unsafe fn from_ring_ptr(p: *mut std::ffi::c_void) -> Self;
}

// SAFETY: an Mbuf is one owned pointer; into_raw/from_raw transfer ownership.
unsafe impl RingItem for Mbuf {
    fn into_ring_ptr(self) -> *mut std::ffi::c_void {
        self.into_raw().as_ptr().cast()
    }
    unsafe fn from_ring_ptr(p: *mut std::ffi::c_void) -> Self {
        // SAFETY: the caller guarantees p came from into_ring_ptr (non-null, owned).
        unsafe { Mbuf::from_raw(NonNull::new_unchecked(p.cast())) }
    }
}

// SAFETY: Box::into_raw/from_raw transfer ownership of the allocation.
unsafe impl<T: Send> RingItem for Box<T> {
    fn into_ring_ptr(self) -> *mut std::ffi::c_void {
        Box::into_raw(self).cast()
    }
    unsafe fn from_ring_ptr(p: *mut std::ffi::c_void) -> Self {
        // SAFETY: the caller guarantees p came from Box::into_raw of a Box<T>.
        unsafe { Box::from_raw(p.cast()) }
    }
}

struct RawRing {
    ptr: NonNull<dpdk_sys::rte_ring>,
    _eal: Eal,
}

// SAFETY: rte_ring is shared memory designed for cross-lcore use; the SP/SC
// discipline is enforced by the Producer/Consumer handles being !Clone.
unsafe impl Send for RawRing {}
unsafe impl Sync for RawRing {}

impl RawRing {
    fn create(eal: &Eal, name: &str, size: u32, flags: u32) -> Result<RawRing> {
        let cname =
            CString::new(name).map_err(|_| Error::other("rte_ring_create", "NUL in name"))?;
        // SAFETY: EAL is initialised; DPDK copies the name.
        let p = unsafe {
            dpdk_sys::rte_ring_create(cname.as_ptr(), size, dpdk_sys::SOCKET_ID_ANY, flags)
        };
        let ptr = NonNull::new(p)
            .ok_or_else(|| Error::from_rte_errno(format!("rte_ring_create({name}, {size})")))?;
        Ok(RawRing {
            ptr,
            _eal: eal.clone(),
        })
    }
}

impl Drop for RawRing {
    fn drop(&mut self) {
        // SAFETY: no handle to the ring remains (this is the last Arc).
        unsafe { dpdk_sys::rte_ring_free(self.ptr.as_ptr()) }
    }
}

/// A single-producer/single-consumer `rte_ring` of owned `T`.
pub struct SpscRing<T: RingItem> {
    _marker: PhantomData<T>,
}

pub struct Producer<T: RingItem> {
    ring: Arc<RawRing>,
    _marker: PhantomData<T>,
}

pub struct Consumer<T: RingItem> {
    ring: Arc<RawRing>,
    _marker: PhantomData<T>,
}

impl<T: RingItem> SpscRing<T> {
    /// A ring holding up to `capacity` items (a power of two minus one, as
    /// rte_ring counts: `capacity + 1` must be a power of two).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(eal: &Eal, name: &str, size: u32) -> Result<(Producer<T>, Consumer<T>)> {
        let ring = Arc::new(RawRing::create(
            eal,
            name,
            size,
            dpdk_sys::RING_F_SP_ENQ | dpdk_sys::RING_F_SC_DEQ,
        )?);
        Ok((
            Producer {
                ring: ring.clone(),
                _marker: PhantomData,
            },
            Consumer {
                ring,
                _marker: PhantomData,
            },
        ))
    }
}

impl<T: RingItem> Producer<T> {
    /// Enqueues one item, or gives it back when the ring is full.
    #[inline]
    pub fn push(&mut self, item: T) -> std::result::Result<(), T> {
        let p = item.into_ring_ptr();
        // SAFETY: single producer (&mut self on the only Producer); p is owned.
        let ret = unsafe { dpdk_sys::rte_ring_sp_enqueue(self.ring.ptr.as_ptr(), p) };
        if ret == 0 {
            Ok(())
        } else {
            // SAFETY: the ring refused p, so ownership never left us.
            Err(unsafe { T::from_ring_ptr(p) })
        }
    }

    pub fn free_count(&self) -> u32 {
        // SAFETY: reads the ring's indexes.
        unsafe { dpdk_sys::rte_ring_free_count(self.ring.ptr.as_ptr()) }
    }
}

impl<T: RingItem> Consumer<T> {
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        let mut p: *mut std::ffi::c_void = std::ptr::null_mut();
        // SAFETY: single consumer (&mut self on the only Consumer).
        let ret = unsafe { dpdk_sys::rte_ring_sc_dequeue(self.ring.ptr.as_ptr(), &mut p) };
        // SAFETY: a dequeued pointer was produced by into_ring_ptr and is taken once.
        (ret == 0).then(|| unsafe { T::from_ring_ptr(p) })
    }

    pub fn count(&self) -> u32 {
        // SAFETY: reads the ring's indexes.
        unsafe { dpdk_sys::rte_ring_count(self.ring.ptr.as_ptr()) }
    }
}

impl<T: RingItem> Drop for Consumer<T> {
    fn drop(&mut self) {
        // Items still in the ring are owned by nobody else: free them here.
        while self.pop().is_some() {}
    }
}

/// Two ethdev ports cross-connected in memory: what one transmits, the other
/// receives. Built from two SP/SC rings with `rte_eth_from_rings`
/// (A rx = ba, tx = ab; B rx = ab, tx = ba). The net_ring `nodeaction`
/// devargs cannot do this for two ports of one process.
pub struct EthRingPair;

/// The two rings behind a pair of ring ports. Each `Port` holds it, so the
/// rings outlive both ports; mbufs still queued when the last port goes are
/// freed here rather than leaked.
struct PairRings([RawRing; 2]);

impl Drop for PairRings {
    fn drop(&mut self) {
        for r in &self.0 {
            let mut p: *mut std::ffi::c_void = std::ptr::null_mut();
            // SAFETY: both ports are closed (they held this Arc), so we are the
            // only user; every queued pointer is an mbuf a port transmitted.
            while unsafe { dpdk_sys::rte_ring_sc_dequeue(r.ptr.as_ptr(), &mut p) } == 0 {
                // SAFETY: dequeued exactly once; it was owned by the ring.
                drop(unsafe { Mbuf::from_raw(NonNull::new_unchecked(p.cast())) });
            }
        }
    }
}

impl EthRingPair {
    /// Creates ports `a_name` and `b_name`, each ring holding `size - 1` frames.
    pub fn ports(eal: &Eal, a_name: &str, b_name: &str, size: u32) -> Result<(Port, Port)> {
        let flags = dpdk_sys::RING_F_SP_ENQ | dpdk_sys::RING_F_SC_DEQ;
        let ab = RawRing::create(eal, &format!("{a_name}>{b_name}"), size, flags)?;
        let ba = RawRing::create(eal, &format!("{b_name}>{a_name}"), size, flags)?;
        let mut ids = [0u16; 2];
        for (k, (name, rx, tx)) in [(a_name, &ba, &ab), (b_name, &ab, &ba)]
            .into_iter()
            .enumerate()
        {
            let cname = CString::new(name)
                .map_err(|_| Error::other("rte_eth_from_rings", "NUL in name"))?;
            let rxq = [rx.ptr.as_ptr()];
            let txq = [tx.ptr.as_ptr()];
            // SAFETY: both arrays hold one live ring each; the rings outlive the
            // port because the Port returned below keeps them; DPDK copies the arrays.
            let ret = unsafe {
                dpdk_sys::rte_eth_from_rings(
                    cname.as_ptr(),
                    rxq.as_ptr(),
                    1,
                    txq.as_ptr(),
                    1,
                    dpdk_sys::SOCKET_ID_ANY as u32,
                )
            };
            if ret < 0 {
                return Err(Error::from_rte_errno(format!("rte_eth_from_rings({name})")));
            }
            ids[k] = ret as u16;
        }
        let rings: Arc<dyn Send + Sync> = Arc::new(PairRings([ab, ba]));
        // The device is named net_ring_<name> by DPDK; our Port keeps the name we gave.
        let a = Port::own(eal, ids[0], a_name)?.keep_alive(rings.clone());
        let b = Port::own(eal, ids[1], b_name)?.keep_alive(rings);
        Ok((a, b))
    }
}
