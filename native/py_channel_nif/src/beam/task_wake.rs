//! Waking a task parked on a channel, reader or sender: the [`Signal`] of Erlang processes and
//! coroutines.
//! - An Erlang process waiting in `py_channel:recv/2` or `send/3` gets a message
//!   `{py_channel_ready, Tag}` and then tries again itself.
//! - A Python coroutine in `async_receive` or `async_send` gets a write on a file descriptor
//!   its event loop watches (`add_reader`): the waker never touches the GIL. The descriptor is
//!   a duplicate owned by the waker, so the coroutine closing its own copy early is harmless.

use crate::beam::atoms;
use crate::channel::Signal;
use rustler::{Encoder, Env, LocalPid, OwnedEnv};
use std::cell::RefCell;
use std::os::fd::{AsRawFd, OwnedFd};

thread_local! {
    /// The env a thread of ours (a Python thread) sends wake-ups from, reused: an env costs
    /// about a kilobyte to set up, and a Python writer may wake an Erlang reader per message.
    static WAKE_ENV: RefCell<OwnedEnv> = RefCell::new(OwnedEnv::new());
}

/// `{py_channel_ready, Tag}` to `pid` from a thread that is not a scheduler.
fn send_ready(pid: &LocalPid, tag: u64) -> bool {
    let send = |env: &mut OwnedEnv| {
        env.send_and_clear(pid, |env| (atoms::py_channel_ready(), tag).encode(env))
            .is_ok()
    };
    WAKE_ENV.with(|cell| match cell.try_borrow_mut() {
        Ok(mut env) => send(&mut env),
        Err(_) => send(&mut OwnedEnv::new()),
    })
}

/// What a parked task waits for. A wake that cannot be delivered goes to another task
/// waiting for the same thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Awaits {
    /// A frame to receive, or the close.
    Frame,
    /// Room to send, or the close.
    Room,
}

pub enum TaskWake {
    Process {
        pid: LocalPid,
        tag: u64,
        awaits: Awaits,
    },
    Descriptor {
        fd: OwnedFd,
        eventfd: bool,
        awaits: Awaits,
    },
}

impl TaskWake {
    pub fn awaits(&self) -> Awaits {
        match self {
            TaskWake::Process { awaits, .. } | TaskWake::Descriptor { awaits, .. } => *awaits,
        }
    }
}

/// The context is the calling process's env on a scheduler thread, `None` on a thread of
/// ours. Firing returns false if the task is gone (a process that exited): its wake must go
/// to another task, which `ChannelResource::wake` sees to.
impl Signal for TaskWake {
    type Context<'a> = Option<Env<'a>>;

    fn fire(self, env: Option<Env<'_>>) -> bool {
        match self {
            TaskWake::Process { pid, tag, .. } => match env {
                Some(env) => env
                    .send(&pid, (atoms::py_channel_ready(), tag).encode(env))
                    .is_ok(),
                None => send_ready(&pid, tag),
            },
            TaskWake::Descriptor { fd, eventfd, .. } => {
                // An eventfd takes an 8-byte count, a pipe any byte. Non-blocking: if the pipe
                // is full, a wake is pending anyway.
                let one = 1u64.to_ne_bytes();
                let bytes: &[u8] = if eventfd { &one } else { &one[..1] };
                // SAFETY: writing a few bytes from a live buffer to a descriptor we own.
                unsafe {
                    libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
                }
                // The descriptor is our own duplicate: the write lands even if the coroutine
                // has gone, and a coroutine that stops waiting passes its wake on itself.
                true
            }
        }
    }
}
