//! Waking a task reader parked on a channel: the [`Signal`] of Erlang processes and coroutines.
//! - An Erlang process waiting in `py_channel:recv/2` gets a message `{py_channel_ready, Tag}`
//!   and then takes the frame itself.
//! - A Python coroutine in `async_receive` gets a write on a file descriptor its event loop
//!   watches (`add_reader`): the sender never touches the GIL. The descriptor is a duplicate
//!   owned by the waker, so the coroutine closing its own copy early is harmless.

use crate::beam::atoms;
use crate::channel::Signal;
use rustler::{Encoder, Env, LocalPid, OwnedEnv};
use std::os::fd::{AsRawFd, OwnedFd};

pub enum ReaderWake {
    Process { pid: LocalPid, tag: u64 },
    Descriptor { fd: OwnedFd, eventfd: bool },
}

/// The context is the calling process's env on a scheduler thread, `None` on a thread of
/// ours. Firing returns false if the reader is gone (a process that exited): its wake must go
/// to another reader, which `ChannelResource::wake` sees to.
impl Signal for ReaderWake {
    type Context<'a> = Option<Env<'a>>;

    fn fire(self, env: Option<Env<'_>>) -> bool {
        match self {
            ReaderWake::Process { pid, tag } => match env {
                Some(env) => env
                    .send(&pid, (atoms::py_channel_ready(), tag).encode(env))
                    .is_ok(),
                None => OwnedEnv::new()
                    .send_and_clear(&pid, |env| (atoms::py_channel_ready(), tag).encode(env))
                    .is_ok(),
            },
            ReaderWake::Descriptor { fd, eventfd } => {
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
