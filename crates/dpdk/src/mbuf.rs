//! One owned packet buffer.
//!
//! `Mbuf` is to an `rte_mbuf` what `Box` is to a heap value: exactly one owner,
//! freed on drop. Handing it to a driver (`Burst` + `Port::tx_burst`) moves it
//! out of Rust's hands; a buffer the driver refused comes back as an `Mbuf`
//! again. Only single-segment buffers are given out by the accessors here:
//! taphold's pools are sized so that every frame it accepts fits one segment.

use std::ptr::NonNull;

use crate::Mempool;

#[repr(transparent)]
pub struct Mbuf {
    ptr: NonNull<dpdk_sys::rte_mbuf>,
}

// SAFETY: an mbuf may be freed or used from any lcore; ownership is unique, so
// moving it between threads hands over the only reference.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `ptr` must point to a valid mbuf that nobody else owns or will free
    /// (typically fresh from rx_burst or rte_pktmbuf_alloc).
    #[inline(always)]
    pub unsafe fn from_raw(ptr: NonNull<dpdk_sys::rte_mbuf>) -> Mbuf {
        Mbuf { ptr }
    }

    /// Gives up ownership without freeing; the caller must free or send it.
    #[inline(always)]
    pub fn into_raw(self) -> NonNull<dpdk_sys::rte_mbuf> {
        let p = self.ptr;
        std::mem::forget(self);
        p
    }

    #[inline(always)]
    pub fn as_ptr(&self) -> *mut dpdk_sys::rte_mbuf {
        self.ptr.as_ptr()
    }

    #[inline(always)]
    fn raw(&self) -> &dpdk_sys::rte_mbuf {
        // SAFETY: we own a valid mbuf; shared borrow of self = shared access.
        unsafe { self.ptr.as_ref() }
    }

    /// Whether the device verified this received frame's IPv4 header checksum and its
    /// UDP checksum and found both good (`RTE_MBUF_F_RX_IP_CKSUM_GOOD` and
    /// `RTE_MBUF_F_RX_L4_CKSUM_GOOD`). False when either was bad, unknown or not checked:
    /// the caller then verifies in software. Meaningful only on a port with
    /// [`crate::Port::rx_checksum_offload`].
    #[inline(always)]
    pub fn rx_checksums_good(&self) -> bool {
        // The flag values of rte_mbuf_core.h (22.11); bindgen does not emit them.
        const IP_MASK: u64 = (1 << 4) | (1 << 7);
        const IP_GOOD: u64 = 1 << 7;
        const L4_MASK: u64 = (1 << 3) | (1 << 8);
        const L4_GOOD: u64 = 1 << 8;
        let f = self.raw().ol_flags;
        f & IP_MASK == IP_GOOD && f & L4_MASK == L4_GOOD
    }

    /// Bytes of packet data in the first segment.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.raw().data_len as usize
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Length of the whole packet over all segments.
    #[inline(always)]
    pub fn pkt_len(&self) -> usize {
        self.raw().pkt_len as usize
    }

    /// Number of segments; taphold refuses anything but 1 at ingress.
    #[inline(always)]
    pub fn segments(&self) -> u16 {
        self.raw().nb_segs
    }

    /// The packet data of the first segment.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        // SAFETY: buf_addr + data_off .. + data_len lies inside the mbuf's data
        // buffer (an mbuf invariant), and we own the mbuf, so nothing writes it
        // while this shared borrow lives.
        unsafe { std::slice::from_raw_parts(dpdk_sys::rte_pktmbuf_mtod(self.as_ptr()), self.len()) }
    }

    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in data(), and &mut self gives exclusive access.
        unsafe {
            std::slice::from_raw_parts_mut(dpdk_sys::rte_pktmbuf_mtod(self.as_ptr()), self.len())
        }
    }

    /// Free space in front of the data.
    #[inline(always)]
    pub fn headroom(&self) -> usize {
        self.raw().data_off as usize
    }

    /// Free space after the data in the last segment.
    #[inline(always)]
    pub fn tailroom(&self) -> usize {
        // SAFETY: reads fields of an mbuf we own.
        unsafe { dpdk_sys::rte_pktmbuf_tailroom(self.as_ptr()) as usize }
    }

    /// Grows the data at the front by `n` bytes and returns them, or `None`
    /// (nothing changed) when the headroom is too small.
    #[inline]
    pub fn prepend(&mut self, n: u16) -> Option<&mut [u8]> {
        // SAFETY: we own the mbuf; DPDK checks the headroom and returns NULL
        // without changing anything when it is too small.
        let p = unsafe { dpdk_sys::rte_pktmbuf_prepend(self.as_ptr(), n) };
        // SAFETY: on success p points to n bytes at the new start of the data.
        (!p.is_null()).then(|| unsafe { std::slice::from_raw_parts_mut(p as *mut u8, n as usize) })
    }

    /// Grows the data at the end by `n` bytes and returns them (uninitialised
    /// contents: the caller writes them), or `None` when the tailroom is too small.
    #[inline]
    pub fn append(&mut self, n: u16) -> Option<&mut [u8]> {
        // SAFETY: as prepend; DPDK checks the tailroom of the last segment.
        let p = unsafe { dpdk_sys::rte_pktmbuf_append(self.as_ptr(), n) };
        // SAFETY: on success p points to n bytes at the old end of the data.
        (!p.is_null()).then(|| unsafe { std::slice::from_raw_parts_mut(p as *mut u8, n as usize) })
    }

    /// Drops `n` bytes from the front. False (nothing changed) if `n` > len.
    #[inline]
    pub fn adj(&mut self, n: u16) -> bool {
        // SAFETY: we own the mbuf; DPDK refuses n > data_len with NULL.
        !unsafe { dpdk_sys::rte_pktmbuf_adj(self.as_ptr(), n) }.is_null()
    }

    /// Drops `n` bytes from the end. False (nothing changed) if `n` > len.
    #[inline]
    pub fn trim(&mut self, n: u16) -> bool {
        // SAFETY: we own the mbuf; DPDK refuses n > data_len with -1.
        unsafe { dpdk_sys::rte_pktmbuf_trim(self.as_ptr(), n) == 0 }
    }

    /// Sets the data length of a single-segment mbuf, growing into tailroom or
    /// shrinking. False (nothing changed) if it does not fit.
    #[inline]
    pub fn set_len(&mut self, len: usize) -> bool {
        let cur = self.len();
        if len >= cur {
            len - cur <= u16::MAX as usize && self.append((len - cur) as u16).is_some()
        } else {
            self.trim((cur - len) as u16)
        }
    }

    /// A deep copy of the whole packet into a new mbuf from `pool`, or `None`
    /// when the pool is exhausted.
    #[inline]
    pub fn copy(&self, pool: &Mempool) -> Option<Mbuf> {
        // SAFETY: both the source mbuf and the pool are alive; rte_pktmbuf_copy
        // allocates a fresh chain that we then own.
        let p = unsafe { dpdk_sys::rte_pktmbuf_copy(self.as_ptr(), pool.as_ptr(), 0, u32::MAX) };
        // SAFETY: non-null means a new mbuf owned by nobody else.
        NonNull::new(p).map(|p| unsafe { Mbuf::from_raw(p) })
    }

    /// A new mbuf from `pool` holding a copy of `bytes`, or `None` when the
    /// pool is exhausted or `bytes` does not fit one segment.
    pub fn from_bytes(pool: &Mempool, bytes: &[u8]) -> Option<Mbuf> {
        let mut m = pool.alloc()?;
        let n = u16::try_from(bytes.len()).ok()?;
        m.append(n)?.copy_from_slice(bytes);
        Some(m)
    }

    /// The port the mbuf was received on.
    #[inline(always)]
    pub fn port(&self) -> u16 {
        self.raw().port
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we are the only owner (the type's invariant), so this is the
        // one and only free of this mbuf chain.
        unsafe { dpdk_sys::rte_pktmbuf_free(self.ptr.as_ptr()) }
    }
}

impl std::fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mbuf")
            .field("len", &self.len())
            .field("segments", &self.segments())
            .finish()
    }
}
