//! A small answer's flat encoding (`flat_term.rs`), kept where its waiter looks: beside the
//! state word a waiting process polls (`caller.rs`, a `py` job's handle). The look that finds
//! the answer has its bytes on the same lines, and nothing is allocated on the answering
//! thread to be freed on a scheduler (a boxed reply cost a `py_channel:call/3` round trip
//! half a microsecond).

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;

pub struct KeptBytes<const N: usize>(UnsafeCell<[MaybeUninit<u8>; N]>);

// SAFETY: written by one thread before a state word publishes it (`Release`), read only
// after that word was read (`Acquire`), and never written again: see `write` and `read`.
unsafe impl<const N: usize> Sync for KeptBytes<N> {}

// A panic while the bytes are written leaves nothing half-seen: they are read only once a
// state word published after the write says so.
impl<const N: usize> std::panic::RefUnwindSafe for KeptBytes<N> {}

impl<const N: usize> Default for KeptBytes<N> {
    fn default() -> Self {
        KeptBytes(UnsafeCell::new([MaybeUninit::uninit(); N]))
    }
}

impl<const N: usize> KeptBytes<N> {
    /// Copies `bytes` in (at most `N`).
    ///
    /// # Safety
    /// Once, by the one thread allowed to, before a state word says the bytes are kept; no
    /// one reads them before.
    pub unsafe fn write(&self, bytes: &[u8]) {
        assert!(bytes.len() <= N, "kept bytes over their capacity");
        // SAFETY: as the caller's: nobody else touches the bytes now.
        unsafe {
            let at = UnsafeCell::raw_get(&self.0).cast::<u8>();
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), at, bytes.len());
        }
    }

    /// The first `length` bytes written.
    ///
    /// # Safety
    /// After reading (`Acquire`) the state word that said `length` bytes were written.
    pub unsafe fn read(&self, length: usize) -> &[u8] {
        assert!(length <= N, "kept bytes over their capacity");
        // SAFETY: as the caller's: written (so initialized), and never written again.
        unsafe {
            let at = UnsafeCell::raw_get(&self.0).cast::<u8>();
            std::slice::from_raw_parts(at, length)
        }
    }
}
