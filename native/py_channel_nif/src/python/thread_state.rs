//! A thread of ours keeps its Python thread state from the first time it runs Python until
//! it ends.
//!
//! Why: `Python::attach` on a thread the interpreter does not know makes a thread state
//! (`PyGILState_Ensure`) and deletes it again when it lets go of the GIL. Only the thread that
//! started the interpreter kept one (its main thread state), so on every other worker each job
//! began with a new one: what the job before it left in `threading.local` (or in the thread's
//! `contextvars` context) was gone, and its code paid for a new frame stack, mapped and unmapped
//! each time (an `munmap` interrupts every other core): `py:eval(<<"2 * 21">>)` beside a running
//! job took 20-40 µs instead of 3 (`make bench` table 3).
//!
//! A worker's own state is deleted when the worker exits. The worker that started the
//! interpreter has the main thread state instead, which is never deleted (`interpreter.rs`).

use pyo3::{ffi, Python};
use std::cell::Cell;

thread_local! {
    /// This thread counts one use of its thread state more than it makes: the state outlives
    /// every `Python::attach`. No destructor: deleting the state runs Python code (finalizers
    /// of what it holds), which may use thread-locals of this crate already destroyed then.
    /// A pool's worker lets go of it before it ends (`let_go_for_this_thread`).
    static KEPT: Cell<bool> = const { Cell::new(false) };
}

/// Keeps this thread's thread state (the one the current `Python::attach` uses) for every
/// later attach on this thread, until [`let_go_for_this_thread`].
pub fn keep_for_this_thread(_py: Python<'_>) {
    if KEPT.get() {
        return;
    }
    // SAFETY: the GIL is held (`_py`), by this thread's state: `Ensure` only counts one more
    // use of it, which nothing gives back before the thread ends, so the release at the end of
    // the attach leaves the state this thread's.
    unsafe {
        ffi::PyGILState_Ensure();
    }
    KEPT.set(true);
}

/// Deletes the state [`keep_for_this_thread`] kept, if any: what it holds is let go, and its
/// finalizers run here, outside any job (nothing can cancel them: one that waits for good
/// keeps this thread, which its pool no longer counts). Call on a thread about to end, with
/// the GIL not held; it waits for the GIL, so never on a scheduler.
pub fn let_go_for_this_thread() {
    if !KEPT.replace(false) {
        return;
    }
    // SAFETY: this thread's state, released (no attach is running); the interpreter is never
    // finalized. Its count back at zero, `Release` clears and deletes it, and lets the GIL go.
    // The main state (this worker started the interpreter) keeps a count of its own: then
    // `Release`, told the GIL was not held before, only lets the GIL go. Told otherwise, it
    // kept the GIL, and the exiting thread took it along for good.
    unsafe {
        ffi::PyEval_RestoreThread(ffi::PyGILState_GetThisThreadState());
        ffi::PyGILState_Release(ffi::PyGILState_STATE::PyGILState_UNLOCKED);
    }
}
