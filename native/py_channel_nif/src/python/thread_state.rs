//! A thread of ours keeps its Python thread state from the first time it runs Python until
//! it ends.
//!
//! Why: `Python::attach` on a thread the interpreter does not know makes a thread state
//! (`PyGILState_Ensure`) and deletes it again when it lets go of the GIL. Only the thread that
//! started the interpreter kept one (its main thread state), so on every other worker each job
//! began with a new one: what the job before it left in `threading.local` (or in the thread's
//! `contextvars` context) was gone, and its code paid for a new frame stack, mapped and unmapped
//! each time (an `munmap` interrupts every other core): `py:eval(<<"2 * 21">>)` beside a running
//! job took 40 µs instead of 3.

use pyo3::ffi;
use std::cell::Cell;

/// This thread's own thread state, released (the GIL not held) between uses.
#[derive(Clone, Copy)]
struct Kept {
    /// What `PyGILState_Ensure` said when it made the state: given back to delete it.
    ensured: ffi::PyGILState_STATE,
    released: *mut ffi::PyThreadState,
}

thread_local! {
    // No destructor: deleting a state runs Python code (finalizers of what it holds), which
    // may use thread-locals of this crate already destroyed by then. A pool's worker lets go
    // of its state before it ends (`let_go_for_this_thread`); another thread keeps it.
    static KEPT: Cell<Option<Kept>> = const { Cell::new(None) };
}

/// Gives this thread a thread state of its own, if it has none yet: every `Python::attach` on
/// it from now on uses that one. Call with the interpreter started and the GIL not held, on a
/// thread the crate started (a thread Python started has its state already).
pub fn keep_for_this_thread() {
    if KEPT.get().is_some() {
        return;
    }
    // SAFETY: the interpreter runs and this thread does not hold the GIL: `Ensure` takes it
    // (making a state if the thread has none), and `SaveThread` lets it go while the state
    // stays this thread's.
    let kept = unsafe {
        let ensured = ffi::PyGILState_Ensure();
        Kept {
            ensured,
            released: ffi::PyEval_SaveThread(),
        }
    };
    KEPT.set(Some(kept));
}

/// Deletes the state `keep_for_this_thread` kept, if any: what it holds is let go, and its
/// finalizers run here. Call on a thread about to end, with the GIL not held; it waits for
/// the GIL, so never on a scheduler.
pub fn let_go_for_this_thread() {
    if let Some(kept) = KEPT.take() {
        // SAFETY: the state this thread made and released; the interpreter is never
        // finalized. With its count back at zero, `Release` clears and deletes it, and lets
        // go of the GIL.
        unsafe {
            ffi::PyEval_RestoreThread(kept.released);
            ffi::PyGILState_Release(kept.ensured);
        }
    }
}
