//! An Erlang process parked on a channel (a reader in `recv/2`, a sender in `send/3`),
//! monitored until it settles its wait.
//!
//! A parked process is woken by a message, `{py_channel_ready, Tag}`, and then takes the term
//! (or sends) itself. If it exits in between, or while still parked, its wake must go to the
//! next task waiting for the same thing, else a term stays queued while another reader
//! sleeps, or room goes unused while another sender sleeps. Firing a wake tells only of a
//! process already exiting: one killed a moment before (the kill still on its way), or killed
//! after its wake arrived, took the wake with it. So each park monitors its process. Its exit
//! before it settles (took what it was woken for, sent again, or withdrew) withdraws it from
//! the line and passes on a wake it had; a process that settled leaves nothing to do.

use crate::beam::channel_resource::ChannelHandle;
use crate::beam::task_wake::{Awaits, TaskWake};
use crate::channel::{Cancelled, WaiterId};
use rustler::{Env, LocalPid, Monitor, Resource, ResourceArc};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

pub struct ParkWatch {
    pub channel: ChannelHandle,
    /// The process's place in the line of parked readers or senders.
    pub id: WaiterId,
    awaits: Awaits,
    settled: AtomicBool,
    /// Taken down when the process settles: a process that parks in a loop would otherwise
    /// keep the monitors of its settled waits until its next garbage collection.
    monitor: OnceLock<Monitor>,
}

#[rustler::resource_impl]
impl Resource for ParkWatch {
    fn down<'a>(&'a self, env: Env<'a>, _pid: LocalPid, _monitor: Monitor) {
        // The monitor is gone with its process: nothing to take down.
        if self.mark_settled() {
            if let Cancelled::AlreadyWoken(pass_on) = self.leave_line() {
                self.channel.wake(pass_on, Some(env));
            }
        }
    }
}

impl ParkWatch {
    /// Watches the calling process, just parked on `channel` as `id`, waiting for `awaits`.
    pub fn calling_process(
        env: Env<'_>,
        channel: ChannelHandle,
        id: WaiterId,
        awaits: Awaits,
    ) -> ResourceArc<ParkWatch> {
        let watch = ResourceArc::new(ParkWatch {
            channel,
            id,
            awaits,
            settled: AtomicBool::new(false),
            monitor: OnceLock::new(),
        });
        // The caller is running this NIF, so it is alive and the monitor is made.
        if let Some(monitor) = watch.monitor(Some(env), &env.pid()) {
            let _ = watch.monitor.set(monitor);
        }
        watch
    }

    /// The process acts on its wait itself (takes, sends again) or is done with it: its exit
    /// passes nothing on from now, and its monitor is taken down (`env` is the process's
    /// own). False if it was settled already.
    pub fn settle(watch: &ResourceArc<Self>, env: Env<'_>) -> bool {
        if !watch.mark_settled() {
            return false;
        }
        // Settled once: the monitor is taken down once.
        if let Some(monitor) = watch.monitor.get() {
            watch.demonitor(Some(env), monitor);
        }
        true
    }

    /// Leaves the line, settling the wait: `Withdrawn`, or `AlreadyWoken` with the wake to
    /// pass on (if anything is left for it). `None` if the wait was settled already.
    pub fn withdraw(watch: &ResourceArc<Self>, env: Env<'_>) -> Option<Cancelled<TaskWake>> {
        ParkWatch::settle(watch, env).then(|| watch.leave_line())
    }

    fn mark_settled(&self) -> bool {
        !self.settled.swap(true, Ordering::AcqRel)
    }

    fn leave_line(&self) -> Cancelled<TaskWake> {
        match self.awaits {
            Awaits::Frame => self.channel.channel.cancel_task(self.id),
            Awaits::Room => self.channel.channel.cancel_send(self.id),
        }
    }
}
