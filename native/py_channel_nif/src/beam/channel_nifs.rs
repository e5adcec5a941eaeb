//! The channel NIFs. None waits: none takes a lock held for longer than a queue operation,
//! none touches Python; a send's cost grows only with the term it copies (and a large one is
//! reported to the scheduler as a longer timeslice). Argument checking with readable errors is done in
//! Erlang (`py_channel`); here a wrong type is a plain `badarg`.

use crate::beam::atoms;
use crate::beam::caller;
use crate::beam::channel_resource::{ChannelHandle, ChannelResource};
use crate::beam::frame::{Frame, FrameBatch, Prepared};
use crate::beam::park_watch::ParkWatch;
use crate::beam::raw_nif::raw_nif;
use crate::beam::task_wake::{Awaits, TaskWake};
use crate::beam::term_scan;
use crate::channel::{Cancelled, OwnWake, Parked, SendOrPark, TryRecvError, TrySendError, Weighed};
use rustler::sys::enif_get_list_cell;
use rustler::{Encoder, Env, LocalPid, NifResult, ResourceArc, Term};
use std::mem::MaybeUninit;

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

/// Stores `term` in a frame for `channel`, telling the scheduler what a large copy cost.
fn encode_frame(env: Env<'_>, term: Term<'_>, channel: &ChannelResource) -> Frame {
    channel.channel.prepare_send();
    match Frame::prepare(term, channel) {
        Prepared::Encoded(frame) => frame,
        Prepared::Scanned(scan) => {
            report_copied_bytes(env, scan.copied());
            Frame::encode_scanned(term, scan, channel)
        }
    }
}

/// Tells the scheduler what copying `bytes` of terms cost, so a large copy counts as more
/// than one cheap call (a binary shared by reference is not copied).
fn report_copied_bytes(env: Env<'_>, bytes: usize) {
    let percent = bytes / BYTES_PER_TIMESLICE_PERCENT;
    if percent > 0 {
        rustler::schedule::consume_timeslice(env, percent.min(100) as i32);
    }
}

fn send<'a>(env: Env<'a>, [channel, term]: [Term<'a>; 2]) -> NifResult<Term<'a>> {
    let channel: &ChannelResource = channel.decode()?;
    let frame = encode_frame(env, term, channel);
    Ok(match channel.channel.send(frame) {
        Ok(wakes) => {
            channel.wake(wakes, Some(env));
            atoms::ok().encode(env)
        }
        Err(TrySendError::Busy(_)) => atoms::busy().encode(env),
        Err(TrySendError::Closed(_)) => (atoms::error(), atoms::closed()).encode(env),
        Err(TrySendError::TooLarge(_)) => (atoms::error(), atoms::too_large()).encode(env),
    })
}
raw_nif!("send", 2, send);

/// The send of `py_channel:call/3`: `{Caller, Request}`, for a caller of the calling
/// process whose reply is tagged `tag`: one of `previous` (the callers of its calls before)
/// renewed, else a new one (`caller::caller_for`). `{ok, Caller}`, `{busy, Caller}` (the
/// caller then waits for room with `send/3`), or `{error, closed | too_large}`.
#[rustler::nif]
fn call_send<'a>(
    env: Env<'a>,
    channel: Term<'a>,
    tag: u64,
    request: Term<'a>,
    previous: Vec<Term<'a>>,
) -> NifResult<Term<'a>> {
    let channel: &ChannelResource = channel.decode()?;
    let (caller, renewed) = caller::caller_for(env, tag, &previous);
    // A renewed caller's term is the one the process has: no new reference on its heap.
    let caller_term = renewed.unwrap_or_else(|| caller.encode(env));
    channel.channel.prepare_send();
    let frame = Frame::call(&caller, request, channel).unwrap_or_else(|| {
        caller.mark_shared_as_term();
        let term = (caller_term, request).encode(env);
        encode_frame(env, term, channel)
    });
    Ok(match channel.channel.send(frame) {
        Ok(wakes) => {
            channel.wake(wakes, Some(env));
            (atoms::ok(), caller_term).encode(env)
        }
        Err(TrySendError::Busy(_)) => {
            // It waits for room inside a term sent as any other (`send/3`).
            caller.mark_shared_as_term();
            (atoms::busy(), caller_term).encode(env)
        }
        Err(TrySendError::Closed(_)) => (atoms::error(), atoms::closed()).encode(env),
        Err(TrySendError::TooLarge(_)) => (atoms::error(), atoms::too_large()).encode(env),
    })
}

fn try_receive<'a>(env: Env<'a>, [channel]: [Term<'a>; 1]) -> NifResult<Term<'a>> {
    let channel: &ChannelResource = channel.decode()?;
    Ok(match channel.take(Some(env)) {
        Ok(frame) => (atoms::ok(), frame.decode(env)).encode(env),
        Err(TryRecvError::Empty) => (atoms::error(), atoms::empty()).encode(env),
        Err(TryRecvError::Closed) => (atoms::error(), atoms::closed()).encode(env),
    })
}
raw_nif!("try_receive", 1, try_receive);

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
            (
                atoms::waiting_senders().encode(env),
                core.waiting_senders().encode(env),
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
/// there, else `{waiting, Watch}` and a `{py_channel_ready, Tag}` message later. `Watch`
/// monitors the process until it takes what it was woken for (`take_woken`), settles
/// (`settle_wait`) or withdraws (`cancel_wait`): if it exits first, its place in line is
/// withdrawn and its wake goes to another reader (`park_watch.rs`).
#[rustler::nif]
fn wait<'a>(env: Env<'a>, channel: ChannelHandle, tag: u64) -> Term<'a> {
    let wake = TaskWake::Process {
        pid: env.pid(),
        tag,
        awaits: Awaits::Frame,
    };
    match channel.channel.park_task(wake) {
        Parked::Ready(_) => atoms::ready().encode(env),
        Parked::Waiting(id) => {
            let watch = ParkWatch::calling_process(env, channel, id, Awaits::Frame);
            (atoms::waiting(), watch).encode(env)
        }
    }
}

/// `try_receive/1` for a process its wake message woke, in one call with settling its wait:
/// an exit between the two would take the wake with it. Finding nothing (the oldest send
/// still in flight, a later one landed and woke it) passes the wake on, as a thread reader
/// does: this process parks again, and the frames in the queue may need another reader.
#[rustler::nif]
fn take_woken<'a>(env: Env<'a>, watch: ResourceArc<ParkWatch>) -> Term<'a> {
    ParkWatch::settle(&watch, env);
    match watch.channel.take(Some(env)) {
        Ok(frame) => (atoms::ok(), frame.decode(env)).encode(env),
        Err(TryRecvError::Empty) => {
            watch
                .channel
                .wake(watch.channel.channel.pass_on_wake(), Some(env));
            (atoms::error(), atoms::empty()).encode(env)
        }
        Err(TryRecvError::Closed) => (atoms::error(), atoms::closed()).encode(env),
    }
}

/// A woken process that takes nothing itself (`erlang.call('_py_channel_wait', ...)`: its
/// Python caller reads next) is done with its wait.
#[rustler::nif]
fn settle_wait(env: Env<'_>, watch: ResourceArc<ParkWatch>) -> rustler::Atom {
    ParkWatch::settle(&watch, env);
    atoms::ok()
}

/// Withdraws a parked process. `woken` means its wake message is already sent (or on its
/// way); the wake passes to another reader.
#[rustler::nif]
fn cancel_wait(env: Env<'_>, watch: ResourceArc<ParkWatch>) -> rustler::Atom {
    withdraw(env, &watch)
}

/// `cancelled` or `woken` (see `cancel_wait`, `cancel_send_wait`); settled already (the
/// process withdrew before) is `cancelled`.
fn withdraw(env: Env<'_>, watch: &ResourceArc<ParkWatch>) -> rustler::Atom {
    match ParkWatch::withdraw(watch, env) {
        Some(Cancelled::Withdrawn) | None => atoms::cancelled(),
        Some(Cancelled::AlreadyWoken(pass_on)) => {
            watch.channel.wake(pass_on, Some(env));
            atoms::woken()
        }
    }
}

/// `send/3`'s step: queues `term` if it fits, else parks the calling process among the
/// senders waiting for room: `{waiting, Watch}`, and a `{py_channel_ready, Tag}` message
/// when a reader frees room (or the channel closes), after which the process calls again
/// with that `Watch` as `ticket` (0 the first time), keeping its place in line. `Watch`
/// monitors the process as `wait`'s does. `ok`, `{error, closed}`, `{error, too_large}`, or
/// `{woken, Outcome}` when a reader woke the process in the moment it was parked here: its
/// wake message arrives though the send is done, and the caller collects it.
fn send_or_wait<'a>(
    env: Env<'a>,
    [channel_term, term, tag, ticket]: [Term<'a>; 4],
) -> NifResult<Term<'a>> {
    let channel: ChannelHandle = channel_term.decode()?;
    let tag: u64 = tag.decode()?;
    let earlier = if matches!(ticket.decode::<u64>(), Ok(0)) {
        None
    } else {
        // Woken from that park: this call acts on the wake.
        let watch: ResourceArc<ParkWatch> = ticket.decode()?;
        if !watch.channel.ptr_eq(&channel) || !ParkWatch::settle(&watch, env) {
            return Err(rustler::Error::BadArg);
        }
        Some(watch.id)
    };
    let frame = encode_frame(env, term, &channel);
    let waker = TaskWake::Process {
        pid: env.pid(),
        tag,
        awaits: Awaits::Room,
    };
    let (outcome, own_wake) = match channel.channel.send_or_park(frame, waker, earlier) {
        SendOrPark::Sent(wakes, own_wake) => {
            channel.wake(wakes, Some(env));
            (atoms::ok().encode(env), own_wake)
        }
        SendOrPark::Parked(id, _frame) => {
            let watch = ParkWatch::calling_process(env, channel, id, Awaits::Room);
            return Ok((atoms::waiting(), watch).encode(env));
        }
        SendOrPark::Refused(refused, own_wake) => (
            (atoms::error(), refused_reason(&refused)).encode(env),
            own_wake,
        ),
    };
    Ok(match own_wake {
        OwnWake::NotFired => outcome,
        // Its wake message comes anyway: the caller collects it (`Tag`).
        OwnWake::Fired => (atoms::woken(), outcome).encode(env),
    })
}
raw_nif!("send_or_wait", 4, send_or_wait);

/// Withdraws a process waiting for room. `woken` means its wake message is already sent (or
/// on its way); the wake passes to the next waiting sender.
#[rustler::nif]
fn cancel_send_wait(env: Env<'_>, watch: ResourceArc<ParkWatch>) -> rustler::Atom {
    withdraw(env, &watch)
}

/// Terms `send_many` queues in one call at most, so a long list does not hold the scheduler:
/// the Erlang side calls again with the rest (`more`).
const SEND_MANY_BATCH: usize = 1000;

/// `send_many/2`'s step: queues the terms of `terms` in order while they fit, up to
/// `SEND_MANY_BATCH`, admitted and queued together (see `Channel::send_many`). `{Accepted,
/// Stop, Rest}`: `Stop` is `done` (the list is empty), `more` (the batch is full), or why the
/// first term of `Rest` was not queued (`busy`, `closed`, `too_large`). Not a proper list:
/// badarg, with nothing queued.
fn send_many<'a>(env: Env<'a>, [channel, terms]: [Term<'a>; 2]) -> NifResult<Term<'a>> {
    let channel: &ChannelResource = channel.decode()?;
    channel.channel.prepare_send();
    let batch = terms.list_length()?.min(SEND_MANY_BATCH);
    let mut pending = Vec::with_capacity(batch);
    // `tails[i]` is the list after the first i + 1 terms.
    let mut tails = Vec::with_capacity(batch);
    let mut rest = terms;
    let mut batch_full = false;
    while let Some((head, tail)) = list_cell(rest) {
        if pending.len() == SEND_MANY_BATCH {
            batch_full = true;
            break;
        }
        pending.push(PendingTerm {
            term: head,
            prepared: Frame::prepare(head, channel),
        });
        tails.push(tail);
        rest = tail;
    }
    if !batch_full && !rest.is_empty_list() {
        // An improper list or not a list (checked in Erlang before any call, see
        // py_channel:send_many/2): nothing is queued.
        return Err(rustler::Error::BadArg);
    }
    let copied: usize = pending.iter().map(|p| p.prepared.copied_bytes()).sum();
    let mut frames = FrameBatch::new(channel);
    let sent =
        channel
            .channel
            .send_many(pending, |PendingTerm { term, prepared }| match prepared {
                Prepared::Encoded(frame) => frame,
                Prepared::Scanned(scan) => frames.encode(term, scan),
            });
    drop(frames);
    report_copied_bytes(env, copied);
    channel.wake(sent.wakes, Some(env));
    let stop = match &sent.refused {
        Some(refused) => refused_reason(refused),
        None if batch_full => atoms::more(),
        None => atoms::done(),
    };
    let rest = match sent.accepted {
        0 => terms,
        accepted => tails[accepted - 1],
    };
    Ok((sent.accepted, stop, rest).encode(env))
}
raw_nif!("send_many", 2, send_many);

/// The head and tail of a list cell. Rustler's `list_get_cell` answers a `NifResult`, whose
/// error is dropped and whose value is copied out for every term of a batch (perf: a fifth
/// of `send_many`'s own time).
fn list_cell(list: Term<'_>) -> Option<(Term<'_>, Term<'_>)> {
    let env = list.get_env();
    let (mut head, mut tail) = (MaybeUninit::uninit(), MaybeUninit::uninit());
    // SAFETY: `list` is a term of `env`; the cell's parts are read only on success.
    unsafe {
        (enif_get_list_cell(
            env.as_c_arg(),
            list.as_c_arg(),
            head.as_mut_ptr(),
            tail.as_mut_ptr(),
        ) != 0)
            .then(|| {
                (
                    Term::new(env, head.assume_init()),
                    Term::new(env, tail.assume_init()),
                )
            })
    }
}

/// A term of a `send_many` batch, before it is admitted: encoded already, or scanned, its
/// frame to be copied into the channel's arena if admitted.
struct PendingTerm<'a> {
    term: Term<'a>,
    prepared: Prepared,
}

impl Weighed for PendingTerm<'_> {
    fn weight(&self) -> usize {
        self.prepared.weight()
    }
}

fn refused_reason<T>(refused: &TrySendError<T>) -> rustler::Atom {
    match refused {
        TrySendError::Busy(_) => atoms::busy(),
        TrySendError::Closed(_) => atoms::closed(),
        TrySendError::TooLarge(_) => atoms::too_large(),
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
