//! The channel NIFs. None waits: none takes a lock held for longer than a queue operation,
//! none touches Python; a send's cost grows only with the term it copies (and a large one is
//! reported to the scheduler as a longer timeslice). Argument checking with readable errors is done in
//! Erlang (`py_channel`); here a wrong type is a plain `badarg`.

use crate::beam::atoms;
use crate::beam::channel_resource::{ChannelHandle, ChannelResource};
use crate::beam::frame::Frame;
use crate::beam::reader_wake::ReaderWake;
use crate::beam::term_scan;
use crate::channel::{Cancelled, Parked, TryRecvError, TrySendError, Weighed};
use rustler::{Encoder, Env, LocalPid, NifResult, Term};

/// Bytes of term per percent of a timeslice reported to the scheduler, so a very
/// large send yields its scheduler sooner instead of counting as one cheap call.
const BYTES_PER_TIMESLICE_PERCENT: usize = 64 * 1024;

#[rustler::nif]
fn new_channel(env: Env<'_>, max_size: u64, owner: LocalPid) -> ChannelHandle {
    let resource = ChannelHandle::new(ChannelResource::new(max_size));
    if !resource.monitor(env, &owner) {
        // The owner is already gone: the channel is born closed, as the monitor would make it.
        resource.close(Some(env));
    }
    resource
}

#[rustler::nif]
fn send<'a>(env: Env<'a>, channel: &ChannelResource, term: Term<'a>) -> Term<'a> {
    let frame = Frame::encode(term, channel);
    let percent = frame.weight() / BYTES_PER_TIMESLICE_PERCENT;
    if percent > 0 {
        rustler::schedule::consume_timeslice(env, percent.min(100) as i32);
    }
    match channel.channel.send(frame) {
        Ok(wakes) => {
            channel.wake(wakes, Some(env));
            atoms::ok().encode(env)
        }
        Err(TrySendError::Busy(_)) => atoms::busy().encode(env),
        Err(TrySendError::Closed(_)) => (atoms::error(), atoms::closed()).encode(env),
        Err(TrySendError::TooLarge(_)) => (atoms::error(), atoms::too_large()).encode(env),
    }
}

#[rustler::nif]
fn try_receive<'a>(env: Env<'a>, channel: &ChannelResource) -> Term<'a> {
    match channel.channel.try_recv() {
        Ok(frame) => (atoms::ok(), frame.decode(env)).encode(env),
        Err(TryRecvError::Empty) => (atoms::error(), atoms::empty()).encode(env),
        Err(TryRecvError::Closed) => (atoms::error(), atoms::closed()).encode(env),
    }
}

#[rustler::nif]
fn close(env: Env<'_>, channel: &ChannelResource) -> rustler::Atom {
    channel.close(Some(env));
    atoms::ok()
}

#[rustler::nif]
fn info<'a>(env: Env<'a>, channel: &ChannelResource) -> NifResult<Term<'a>> {
    let core = &channel.channel;
    let totals = core.totals();
    Term::map_from_pairs(
        env,
        &[
            (atoms::size().encode(env), core.size().encode(env)),
            (atoms::max_size().encode(env), core.max_size().encode(env)),
            (atoms::closed().encode(env), core.is_closed().encode(env)),
            (atoms::length().encode(env), core.len().encode(env)),
            (
                atoms::waiting_readers().encode(env),
                core.waiting_readers().encode(env),
            ),
            (atoms::sent().encode(env), totals.sent.encode(env)),
            (atoms::received().encode(env), totals.received.encode(env)),
            (atoms::busy().encode(env), totals.busy.encode(env)),
            (
                atoms::sent_bytes().encode(env),
                totals.sent_bytes.encode(env),
            ),
            (
                atoms::received_bytes().encode(env),
                totals.received_bytes.encode(env),
            ),
        ],
    )
}

/// Parks the calling process as a reader: `ready` when a frame or the close is already
/// there, else `{waiting, WaiterId}` and a `{py_channel_ready, Tag}` message later.
#[rustler::nif]
fn wait<'a>(env: Env<'a>, channel: &ChannelResource, tag: u64) -> Term<'a> {
    let wake = ReaderWake::Process {
        pid: env.pid(),
        tag,
    };
    match channel.channel.park_task(wake) {
        Parked::Ready(_) => atoms::ready().encode(env),
        Parked::Waiting(id) => (atoms::waiting(), id).encode(env),
    }
}

/// Withdraws a parked process. `woken` means its wake message is already sent (or on its way).
#[rustler::nif]
fn cancel_wait(env: Env<'_>, channel: &ChannelResource, waiter_id: u64) -> rustler::Atom {
    match channel.channel.cancel_task(waiter_id) {
        Cancelled::Withdrawn => atoms::cancelled(),
        Cancelled::AlreadyWoken(pass_on) => {
            channel.wake(pass_on, Some(env));
            atoms::woken()
        }
    }
}

/// The bytes `term` counts against `max_size`.
#[rustler::nif]
fn term_size(term: Term<'_>) -> usize {
    term_scan::scan(term, None).bytes
}

#[rustler::nif]
fn live_channels() -> usize {
    ChannelResource::live_count()
}
