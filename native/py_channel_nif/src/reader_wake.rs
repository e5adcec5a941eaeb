//! Waking a reader parked on a channel. An Erlang process waiting in `py_channel:recv/2` is
//! woken by a message `{py_channel_ready, Tag}`, then takes the frame itself.

use crate::atoms;
use rustler::{Encoder, Env, LocalPid, OwnedEnv};

pub enum ReaderWake {
    Process { pid: LocalPid, tag: u64 },
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
        }
    }
}
