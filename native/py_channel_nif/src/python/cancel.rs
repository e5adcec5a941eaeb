//! Stopping a running job: `py:cancel/1`, a timed-out call, a caller that died.
//!
//! A job's Python code gets `erlang.Cancelled` (a `BaseException`, so `except Exception` does
//! not swallow it) at its next bytecode boundary: a helper thread that holds the GIL sets it
//! as the job thread's asynchronous exception. A wait the job is blocked in (a channel
//! receive, `erlang.call`) has its GIL released, so no bytecode runs there: the token also
//! interrupts that wait, which then raises `Cancelled` itself. A C call that does not return
//! (`time.sleep`, a numpy kernel) is stopped when it returns.
//!
//! Either way a job gets one `Cancelled`, never two: a second one would land in the code
//! that handles the first (a `finally`, a `with` block's exit) and cut its cleanup short.
//! Both the helper thread and a woken wait decide with the GIL held, which orders them: the
//! first marks the job's exception as aimed, and a wait that finds it aimed raises that one.
//!
//! Cancelling never waits: the scheduler thread that asks (a NIF, a monitor's down callback)
//! sets a flag, wakes the job's wait and queues the request for the helper thread.

use crate::python::thread_state;
use crate::worker_pool;
use pyo3::prelude::*;
use std::cell::RefCell;
use std::os::raw::{c_long, c_ulong};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, OnceLock};

pyo3::create_exception!(
    _py_channel,
    Cancelled,
    pyo3::exceptions::PyBaseException,
    "The Erlang side cancelled this job: py:cancel/1, a timeout, or the caller's exit."
);

/// What interrupts the wait a job is blocked in.
pub type Interrupt = Box<dyn Fn() + Send>;

/// One job's cancellation: shared by the job (on its worker thread) and its Erlang handle.
#[derive(Default)]
pub struct CancelToken {
    cancelled: AtomicBool,
    /// The job is over (set by its thread): a namespace drops the token when it next looks.
    finished: AtomicBool,
    running: Mutex<Running>,
}

#[derive(Default)]
struct Running {
    /// The Python thread id of the job's thread while its code runs.
    thread: Option<c_ulong>,
    /// How to wake the wait the job is blocked in, if it is blocked.
    interrupt: Option<Interrupt>,
    /// `Cancelled` was aimed at the job's thread, or raised by a wait: none more is.
    aimed: bool,
}

impl CancelToken {
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    pub fn finish(&self) {
        self.finished.store(true, Ordering::Release);
    }

    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Asks the job to stop. Returns at once; idempotent.
    pub fn cancel(self: &Arc<Self>) {
        if self.cancelled.swap(true, Ordering::AcqRel) {
            return;
        }
        let running = self.lock();
        if let Some(interrupt) = &running.interrupt {
            interrupt();
        }
        if running.thread.is_some() {
            drop(running);
            let _ = canceller()
                .lock()
                .map(|sender| sender.send(Arc::clone(self)));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

thread_local! {
    /// The token of the job this thread is running, if any.
    static CURRENT: RefCell<Option<Arc<CancelToken>>> = const { RefCell::new(None) };
}

/// Runs `job` as the job of `token` on this thread (the GIL held): asynchronous exceptions
/// may target this thread until it returns, and none is left behind for the next job. A job
/// cancelled before it got here does not run.
pub fn run_as<R>(
    py: Python<'_>,
    token: &Arc<CancelToken>,
    job: impl FnOnce() -> PyResult<R>,
) -> PyResult<R> {
    // SAFETY: called with the GIL held, as PyThread_get_thread_ident allows anyway.
    let thread = unsafe { pyo3::ffi::PyThread_get_thread_ident() };
    token.lock().thread = Some(thread);
    // `cancel` sets the flag before it looks at `thread` under the same lock: either it saw
    // the thread and aims an exception at it, or the flag is visible here.
    if token.is_cancelled() {
        token.lock().thread = None;
        return Err(cancelled());
    }
    CURRENT.with(|current| *current.borrow_mut() = Some(Arc::clone(token)));
    let result = job();
    CURRENT.with(|current| *current.borrow_mut() = None);
    // With the GIL held, the canceller cannot be between its look at `thread` and its
    // SetAsyncExc: once `thread` is cleared, nothing more is aimed at this thread.
    token.lock().thread = None;
    if token.is_cancelled() {
        // One may have been aimed and not yet raised (the job ended first): raise it here,
        // on a statement of our own, rather than in the next job. (Clearing it with
        // SetAsyncExc(NULL) instead leaves CPython's eval breaker set for good.)
        let _ = py.eval(c"None", None, None);
    }
    result
}

/// Runs `wait` (with the GIL released by the caller) so that cancelling the current job
/// calls `interrupt`; `wait` must then return soon and the caller raises [`cancelled`].
/// Outside a job (a thread Python started) nothing can cancel the wait.
pub fn interruptible<R>(interrupt: Interrupt, wait: impl FnOnce(&dyn Fn() -> bool) -> R) -> R {
    let token = CURRENT.with(|current| current.borrow().clone());
    let Some(token) = token else {
        return wait(&|| false);
    };
    token.lock().interrupt = Some(interrupt);
    let result = wait(&|| token.is_cancelled());
    token.lock().interrupt = None;
    result
}

/// A new `Cancelled`: a job cancelled before it ran gets one, a wait one through
/// [`cancelled_in_wait`].
fn cancelled() -> PyErr {
    Cancelled::new_err("cancelled by Erlang")
}

/// The exception a wait stopped by a cancel raises, the GIL held again: the one the helper
/// thread has aimed at this thread already, if it has (raised here rather than later, in
/// the code that handles this one), else a new one, and then the helper aims none.
pub fn cancelled_in_wait(py: Python<'_>) -> PyErr {
    let token = CURRENT.with(|current| current.borrow().clone());
    if let Some(token) = token {
        let mut running = token.lock();
        if running.aimed {
            drop(running);
            // A statement of our own: the pending exception is raised on it.
            if let Err(pending) = py.eval(c"None", None, None) {
                return pending;
            }
        } else {
            running.aimed = true;
        }
    }
    cancelled()
}

/// The helper thread that aims `Cancelled` at a job's thread, with the GIL held.
fn canceller() -> &'static Mutex<Sender<Arc<CancelToken>>> {
    static CANCELLER: OnceLock<Mutex<Sender<Arc<CancelToken>>>> = OnceLock::new();
    CANCELLER.get_or_init(|| {
        let (sender, requests) = mpsc::channel::<Arc<CancelToken>>();
        // Should the thread not start, requests go nowhere: waits are still interrupted, only
        // running bytecode is not.
        let _ = std::thread::Builder::new()
            .name("py_channel-cancel".into())
            .spawn(move || {
                worker_pool::affinity::take_the_vm_cores();
                for token in requests {
                    Python::attach(|py| {
                        thread_state::keep_for_this_thread(py);
                        let mut running = token.lock();
                        if let (Some(thread), false) = (running.thread, running.aimed) {
                            running.aimed = true;
                            let exception = py.get_type::<Cancelled>();
                            // SAFETY: the GIL is held; the job's thread cannot finish its
                            // job (which needs the GIL) while we look.
                            unsafe {
                                pyo3::ffi::PyThreadState_SetAsyncExc(
                                    thread as c_long,
                                    exception.as_ptr(),
                                )
                            };
                        }
                    });
                }
            });
        Mutex::new(sender)
    })
}
