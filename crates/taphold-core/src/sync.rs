//! The one place the crate chooses between std and loom primitives, so the model checker in
//! `tests/loom.rs` runs the real ring code. `UnsafeCell` follows loom's closure API
//! (`with_mut`), because loom must see every access to a payload to check it is ordered.

#[cfg(not(loom))]
mod imp {
    pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    pub(crate) use std::sync::Arc;

    /// `std::cell::UnsafeCell` behind loom's access-by-closure API.
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        #[inline]
        pub(crate) const fn new(value: T) -> Self {
            UnsafeCell(std::cell::UnsafeCell::new(value))
        }

        /// Runs `f` with a raw pointer to the contents; the caller's `unsafe` block argues
        /// that no other access is concurrent.
        #[inline]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

#[cfg(loom)]
mod imp {
    pub(crate) use loom::cell::UnsafeCell;
    pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    pub(crate) use loom::sync::Arc;
}

pub(crate) use imp::*;
