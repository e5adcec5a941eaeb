//! How a parked reader is woken: one small trait for every kind of reader, after flume's
//! `signal.rs`.
//!
//! A thread reader ([`Channel::recv_timeout`](super::Channel::recv_timeout)) parks on a
//! [`ThreadSignal`], which the core fires itself. A task reader (an Erlang process, a
//! coroutine) brings a signal of its own type; firing that may need what only the caller has
//! (on a scheduler thread, the env of the process that is sending), so the core hands it
//! back and the caller fires it with that context.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::Thread;

/// Wakes one parked reader.
pub trait Signal {
    /// What firing needs from whoever fires it.
    type Context<'a>;

    /// Wakes the reader. False if it is gone and cannot be woken: its wake must then go to
    /// another reader ([`Channel::pass_on_wake`](super::Channel::pass_on_wake)).
    fn fire(self, context: Self::Context<'_>) -> bool;
}

/// A thread parked in the core. Fired once; the thread checks `is_fired` after every return
/// from `park`, so neither a spurious wake-up nor an unpark meant for something else ends
/// its wait.
pub struct ThreadSignal {
    thread: Thread,
    fired: Arc<AtomicBool>,
}

impl ThreadSignal {
    /// A signal for the calling thread, and the flag it sets when fired.
    pub fn for_current_thread() -> (ThreadSignal, Arc<AtomicBool>) {
        let fired = Arc::new(AtomicBool::new(false));
        let signal = ThreadSignal {
            thread: std::thread::current(),
            fired: fired.clone(),
        };
        (signal, fired)
    }
}

impl Signal for ThreadSignal {
    type Context<'a> = ();

    fn fire(self, _: ()) -> bool {
        self.fired.store(true, Ordering::Release);
        self.thread.unpark();
        true
    }
}
