//! `erlang.call(name, *args)` from Python: the Python thread asks the `py_runtime` process to
//! run a function registered with `py:register_function`, then waits for the answer with the
//! GIL released. The function runs in an Erlang process of its own, so it may call back into
//! Python (`py:eval`): that runs on another worker, never deadlocking on this one.

use crate::python::cancel;
use rustler::env::SavedTerm;
use rustler::{LocalPid, OwnedEnv, Resource, Term};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// The `py_runtime` process, which dispatches callbacks and logs tracebacks.
static RUNTIME: OnceLock<Mutex<Option<LocalPid>>> = OnceLock::new();

pub fn set_runtime(pid: LocalPid) {
    *runtime_slot().lock().unwrap_or_else(|p| p.into_inner()) = Some(pid);
}

pub fn runtime() -> Option<LocalPid> {
    *runtime_slot().lock().unwrap_or_else(|p| p.into_inner())
}

fn runtime_slot() -> &'static Mutex<Option<LocalPid>> {
    RUNTIME.get_or_init(|| Mutex::new(None))
}

/// What the Erlang side answered: `{ok, Term}` or `{error, Reason}`, kept in an env of its own.
pub struct Answer {
    pub env: OwnedEnv,
    pub term: SavedTerm,
}

#[derive(Default)]
struct Slot {
    answer: Mutex<Option<Result<Answer, String>>>,
    ready: Condvar,
}

impl Slot {
    fn fill(&self, answer: Result<Answer, String>) {
        let mut current = self.answer.lock().unwrap_or_else(|p| p.into_inner());
        if current.is_none() {
            *current = Some(answer);
            self.ready.notify_all();
        }
    }
}

/// The Erlang-side handle of one pending call. If every reference to it is dropped before an
/// answer came (the process that ran the function was killed), the Python caller gets an
/// error instead of waiting forever.
pub struct CallbackHandle {
    slot: Arc<Slot>,
}

#[rustler::resource_impl]
impl Resource for CallbackHandle {}

impl Drop for CallbackHandle {
    fn drop(&mut self) {
        self.slot.fill(Err(
            "the Erlang process running the callback exited without answering".into(),
        ));
    }
}

impl CallbackHandle {
    pub fn answer(&self, result: Term<'_>) {
        let env = OwnedEnv::new();
        let term = env.save(result);
        self.slot.fill(Ok(Answer { env, term }));
    }
}

/// The Python side of a pending call.
pub struct PendingCall {
    slot: Arc<Slot>,
}

impl PendingCall {
    pub fn new() -> (PendingCall, CallbackHandle) {
        let slot = Arc::new(Slot::default());
        (PendingCall { slot: slot.clone() }, CallbackHandle { slot })
    }

    /// Blocks until the answer arrives; None if the job waiting was cancelled meanwhile. Call
    /// with the GIL released.
    pub fn wait(self) -> Option<Result<Answer, String>> {
        let slot = Arc::clone(&self.slot);
        // Taking the lock before notifying: the waiter looks at `cancelled` under it, so the
        // notification cannot fall between its look and its wait.
        let interrupt = Box::new(move || {
            let _held = slot.answer.lock();
            slot.ready.notify_all();
        });
        cancel::interruptible(interrupt, |cancelled| {
            let mut answer = self.slot.answer.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(answer) = answer.take() {
                    return Some(answer);
                }
                if cancelled() {
                    return None;
                }
                answer = self
                    .slot
                    .ready
                    .wait(answer)
                    .unwrap_or_else(|p| p.into_inner());
            }
        })
    }
}
