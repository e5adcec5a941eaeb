//! The channel as a BEAM resource: the core channel over frames, owned by a process.

#![cfg(feature = "nif")]

use crate::channel::Channel;
use crate::frame::{ArenaSlot, Frame};
use crate::reader_wake::ReaderWake;
use rustler::{Env, LocalPid, Monitor, Resource};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Channels allocated and not yet freed, for `py_channel:stats/0`.
static LIVE_CHANNELS: AtomicUsize = AtomicUsize::new(0);

pub struct ChannelResource {
    pub channel: Channel<Frame, ReaderWake>,
    /// Where the terms sent to this channel are held (see `frame::TermArena`).
    pub arena: Mutex<ArenaSlot>,
}

impl ChannelResource {
    pub fn new(max_size: u64) -> Self {
        LIVE_CHANNELS.fetch_add(1, Ordering::Relaxed);
        ChannelResource {
            channel: Channel::new(max_size),
            arena: Mutex::new(ArenaSlot::default()),
        }
    }

    /// Closes the channel and wakes every parked reader. `env` is the caller's, when there is one.
    pub fn close(&self, env: Option<Env<'_>>) {
        for wake in self.channel.close() {
            wake.fire(env);
        }
    }

    pub fn live_count() -> usize {
        LIVE_CHANNELS.load(Ordering::Relaxed)
    }
}

impl Drop for ChannelResource {
    fn drop(&mut self) {
        LIVE_CHANNELS.fetch_sub(1, Ordering::Relaxed);
    }
}

#[rustler::resource_impl]
impl Resource for ChannelResource {
    const IMPLEMENTS_DOWN: bool = true;

    /// The owner exited: close, like an ETS table whose owner dies. Queued frames still drain.
    fn down<'a>(&'a self, env: Env<'a>, _owner: LocalPid, _monitor: Monitor) {
        self.close(Some(env));
    }
}
