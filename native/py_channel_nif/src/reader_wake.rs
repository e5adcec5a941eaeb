//! Waking a reader parked on a channel.
//! - An Erlang process waiting in `py_channel:recv/2` gets a message `{py_channel_ready, Tag}`
//!   and then takes the frame itself.
//! - A Python coroutine in `async_receive` gets a write on a file descriptor its event loop
//!   watches (`add_reader`): the sender never touches the GIL. The descriptor is a duplicate
//!   owned by the waker, so the coroutine closing its own copy early is harmless.

#![cfg(feature = "nif")]

use crate::atoms;
use rustler::{Encoder, Env, LocalPid, OwnedEnv};
use std::os::fd::{AsRawFd, OwnedFd};

pub enum ReaderWake {
    Process { pid: LocalPid, tag: u64 },
    Descriptor { fd: OwnedFd, eventfd: bool },
}

impl ReaderWake {
    /// `env` is the calling process's env on a scheduler thread, `None` on a thread of ours.
    pub fn fire(self, env: Option<Env<'_>>) {
        match self {
            ReaderWake::Process { pid, tag } => {
                // A reader that has exited needs no wake: a failed send is ignored.
                let _ = match env {
                    Some(env) => env.send(&pid, (atoms::py_channel_ready(), tag).encode(env)),
                    None => OwnedEnv::new()
                        .send_and_clear(&pid, |env| (atoms::py_channel_ready(), tag).encode(env)),
                };
            }
            ReaderWake::Descriptor { fd, eventfd } => {
                // An eventfd takes an 8-byte count, a pipe any byte. Non-blocking: if the pipe
                // is full, a wake is pending anyway.
                let one = 1u64.to_ne_bytes();
                let bytes: &[u8] = if eventfd { &one } else { &one[..1] };
                // SAFETY: writing a few bytes from a live buffer to a descriptor we own.
                unsafe {
                    libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
                }
            }
        }
    }
}
