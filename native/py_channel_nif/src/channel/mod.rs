//! The channel core: a multi-producer, multi-consumer FIFO of frames with byte accounting,
//! `max_size` backpressure, close-then-drain, and wake-ups for every kind of reader.
//!
//! Plain Rust: no rustler or pyo3 types, so it is tested on its own.
//!
//! Sending never takes a lock: frames go into a lock-free segmented queue, and one word holds
//! the closed flag, the number of sends in flight and the running total of bytes sent, so
//! "closed?", "would it fit?", "reserve the bytes" and "I am sending" are one
//! compare-and-swap; a second atomic step marks the send landed. That is what lets a BEAM
//! scheduler send without ever waiting on a lock.
//!
//! Senders and readers keep separate running totals (bytes sent, bytes received), each on a
//! cache line of its own; queued bytes are the difference. A sender checks the space against
//! the last received total it saw, which can only overstate what is queued, and looks at the
//! readers' line again only when that says "no room". So while there is room, a sender and a
//! reader on two cores do not pass a counter's cache line back and forth for every frame.
//!
//! The waiter list is behind a mutex, but a sender only touches it when a reader is actually
//! parked, which is the idle path. Whether one is parked is a bit of the senders' word
//! (`PARKED`, set and cleared under the mutex), so the atomic step that lands a frame also
//! says whether to wake anyone: no fence and no other line to read.
//!
//! Readers do not read the senders' line while the channel is open: the close is announced
//! to them by a flag of their own (`closed`), set after `CLOSED`. A reader polling an empty
//! queue would otherwise take the line the sender is about to update. (The one exception:
//! while senders are parked waiting for room, a receive reads it to decide whom to wake,
//! see `senders.rs`.)
//!
//! "Closed and drained", the end of reading, is: closed, no send in flight, queue empty. It
//! never depends on a receiver's bookkeeping, so a reader that finds the queue empty right
//! after another took the last frame already sees the end. The one transition to it that
//! happens after `close` (the last in-flight send landing) wakes every parked reader.
//!
//! Readers come in two kinds, each woken through a [`Signal`] (`signal.rs`):
//! - threads ([`Channel::recv_timeout`]) park themselves on a [`ThreadSignal`], which the core
//!   fires;
//! - tasks ([`Channel::park_task`]): an Erlang process waiting in `receive`, an asyncio
//!   coroutine. The core stores their waker `W` and hands it back to whoever must fire it,
//!   because firing it (an env to send from, a file descriptor) needs the caller's context.
//!
//! Wake-up protocol: each accepted frame wakes at most one parked reader. A reader that was
//! woken but leaves without taking a frame (a cancelled task) must pass the wake on
//! ([`Channel::cancel_task`] does), and so must whoever fires a task waker that can no longer
//! be delivered ([`Channel::pass_on_wake`]), so a frame is never left queued while readers
//! sleep.

mod error;
mod queue;
mod senders;
mod signal;

pub use error::{RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError};
pub use queue::{prefetch_for_write, BlockAllocator};
pub use senders::{OwnWake, SendOrPark};
pub use signal::{Signal, ThreadSignal};

use crate::worker_pool::affinity::{self, current_core};
use queue::Queue;

use std::alloc::System;
use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Something with a size in bytes: what `max_size` and `size` count.
pub trait Weighed {
    fn weight(&self) -> usize;
}

/// The senders' word: the closed flag in the top bit, the "a reader is parked" flag, then the
/// number of sends in flight (admitted, frame not yet in the queue), then the running total
/// of bytes sent, modulo 2^48.
const CLOSED: u64 = 1 << 63;
const PARKED: u64 = 1 << 62;
const IN_FLIGHT_ONE: u64 = 1 << 48;
const IN_FLIGHT_MASK: u64 = ((1 << 14) - 1) << 48;
const SENT_MASK: u64 = IN_FLIGHT_ONE - 1;
/// At most 128 TiB queued, so the queued bytes, a difference of totals modulo 2^48, are exact.
pub const MAX_BYTES: u64 = (1 << 47) - 1;

/// The top bit of the readers' word (the rest is the total of bytes received): senders are
/// parked waiting for room. A reader learns it from the value its `fetch_add` returns, so
/// the receive path pays nothing for it (`senders.rs`).
const SENDERS_PARKED: u64 = 1 << 63;

/// The frames `try_recv_many` took and has not counted as received yet.
struct ReceivedCounter<'c, T: Weighed, W, F: FnMut(W)> {
    channel: &'c Channel<T, W>,
    frames: usize,
    bytes: u64,
    wake: F,
}

impl<T: Weighed, W, F: FnMut(W)> ReceivedCounter<'_, T, W, F> {
    fn count(&mut self) {
        if self.frames > 0 {
            self.channel.count_received(self.bytes, &mut self.wake);
            (self.frames, self.bytes) = (0, 0);
        }
    }
}

impl<T: Weighed, W, F: FnMut(W)> Drop for ReceivedCounter<'_, T, W, F> {
    fn drop(&mut self) {
        self.count();
    }
}

/// Frames `try_recv_many` takes between two counts of the bytes received.
const RECEIVED_COUNT_EVERY: usize = 64;

/// How long a thread reader looks for a frame before it parks.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(50);

/// Pause instructions between two looks of a spinning reader (about a microsecond). Each
/// look reads the line senders write next; looking as often as possible slows the sender
/// down more than it speeds the reader up.
const SPIN_PAUSES: u32 = 50;

/// An id for a parked reader, unique within its channel.
pub type WaiterId = u64;

/// What [`Channel::park_task`] did with the waker.
#[derive(Debug, PartialEq, Eq)]
pub enum Parked<W> {
    /// A frame (or the final close) is already there: the waker comes back unparked.
    Ready(W),
    /// The waker is parked and will be handed back once, by a send, a close or a cancel.
    Waiting(WaiterId),
}

/// What [`Channel::cancel_task`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Cancelled<W> {
    /// Still parked, now removed: no wake will come for it.
    Withdrawn,
    /// Already woken: its wake is sent or on its way. If frames remain, the wake is passed to
    /// another parked reader, whose task waker (if it is a task) is here for the caller to fire.
    AlreadyWoken(Option<W>),
}

enum Sleeper<W> {
    Thread { id: WaiterId, signal: ThreadSignal },
    Task { id: WaiterId, waker: W },
}

impl<W> Sleeper<W> {
    fn id(&self) -> WaiterId {
        match self {
            Sleeper::Thread { id, .. } | Sleeper::Task { id, .. } => *id,
        }
    }

    /// Wakes a thread in place; a task's waker goes back to the caller to fire.
    fn wake(self) -> Option<W> {
        match self {
            Sleeper::Thread { signal, .. } => {
                signal.fire(());
                None
            }
            Sleeper::Task { waker, .. } => Some(waker),
        }
    }
}

pub struct Channel<T, W> {
    /// The frames, with the senders' line on the tail's cache line (`CLOSED` | `PARKED` |
    /// sends in flight | bytes sent, and the readers' total as last seen) and the readers'
    /// on the head's (bytes of every frame ever received, and `SENDERS_PARKED`).
    queue: Queue<T, AtomicU64, SenderLine>,
    /// 0 means unlimited.
    max_size: u64,
    /// Set once, after `CLOSED` (see the module doc).
    closed: AtomicBool,
    sleepers: Mutex<VecDeque<Sleeper<W>>>,
    /// Senders waiting for room, first come first woken (`senders.rs`).
    parked_senders: Mutex<VecDeque<Sleeper<W>>>,
    next_waiter_id: AtomicU64,
    /// The core a thread reader last started a spin for a frame on (high half; `NO_CORE`:
    /// none, or it parked since), and when (low half, `reader_clock` microseconds). With
    /// several readers, the last to start a spin or park.
    reader_seen: AtomicU64,
    /// A core a reader was asked to leave ([`Channel::ask_reader_to_leave`]), or `NO_CORE`.
    crowded_core: AtomicU32,
}

const NO_CORE: u32 = u32::MAX;

/// How long a reader's core counts once noted: longer than a spin (a reader spinning, or
/// held up by the OS in it or between its frames), shorter than slow Python code, so a
/// reader busy with its last frame, or gone, sends callers to sleep as before.
const READER_SEEN_FOR_MICROS: u32 = 100;

/// Microseconds on a clock of the process's own (wrapping every 71 minutes).
fn reader_clock() -> u32 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_micros() as u32
}

/// Where a thread reader waits for frames, seen from a thread on some core: on the core it
/// last started a spin on, within `READER_SEEN_FOR_MICROS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderSpins {
    /// On another core: it takes a frame at once, unless the OS holds it up a moment.
    Elsewhere,
    /// On the same core: it can take a frame only once the asking thread gives its core up.
    Here,
    /// No reader started a spin lately (none waits, one is busy with its frame, or it
    /// parked), or where is not known.
    NotKnown,
}

#[derive(Default)]
struct SenderLine {
    word: AtomicU64,
    received_seen: AtomicU64,
    /// Sends refused with `Busy`: only the refused path writes it.
    busy: AtomicU64,
}

/// Running totals since the channel was made, for an operator to graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Frames accepted by `send`.
    pub sent: u64,
    /// Frames taken by readers.
    pub received: u64,
    /// Sends refused because the frame did not fit (`Busy`).
    pub busy: u64,
    pub sent_bytes: u64,
    pub received_bytes: u64,
}

/// Bytes queued: sent minus received, both modulo 2^48.
fn queued(word: u64, received: u64) -> u64 {
    (word & SENT_MASK).wrapping_sub(received) & SENT_MASK
}

impl<T: Weighed, W> Channel<T, W> {
    /// A channel holding at most `max_size` bytes of queued frames; 0 means unlimited.
    pub fn new(max_size: u64) -> Self {
        Self::with_block_allocator(max_size, &System)
    }

    /// A channel whose queue takes its memory from `allocator`.
    pub fn with_block_allocator(max_size: u64, allocator: BlockAllocator) -> Self {
        Channel {
            queue: Queue::new(allocator),
            max_size: max_size.min(MAX_BYTES),
            closed: AtomicBool::new(false),
            sleepers: Mutex::new(VecDeque::new()),
            parked_senders: Mutex::new(VecDeque::new()),
            next_waiter_id: AtomicU64::new(1),
            reader_seen: AtomicU64::new((NO_CORE as u64) << 32),
            crowded_core: AtomicU32::new(NO_CORE),
        }
    }

    /// Readies this core to queue a frame: called before the frame is made, so the queue's
    /// next slot is in cache by the time the frame goes in (`Queue::prefetch_next_slot`).
    pub fn prepare_send(&self) {
        self.queue.prefetch_next_slot();
    }

    /// Queues `frame` without ever blocking.
    ///
    /// On success, returns the parked tasks (not threads) to wake, usually none or the one
    /// chosen for this frame; the caller fires them.
    pub fn send(&self, frame: T) -> Result<Vec<W>, TrySendError<T>> {
        let bytes = weight_of(&frame);
        let limit = self.limit();
        if bytes > limit {
            return Err(TrySendError::TooLarge(frame));
        }
        let mut word = self.queue.sender_line().word.load(Ordering::SeqCst);
        loop {
            if word & CLOSED != 0 {
                return Err(TrySendError::Closed(frame));
            }
            // The readers' total as last seen can only understate what they have received,
            // so this can only overstate what is queued; look at their line when it says no.
            let mut received = self
                .queue
                .sender_line()
                .received_seen
                .load(Ordering::Relaxed);
            if queued(word, received) + bytes > limit {
                received = self.received_bytes();
                self.queue
                    .sender_line()
                    .received_seen
                    .fetch_max(received, Ordering::Relaxed);
                if queued(word, received) + bytes > limit {
                    self.queue
                        .sender_line()
                        .busy
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(TrySendError::Busy(frame));
                }
            }
            let admitted =
                ((word & !SENT_MASK) + IN_FLIGHT_ONE) | (word.wrapping_add(bytes) & SENT_MASK);
            debug_assert!(
                word & IN_FLIGHT_MASK != IN_FLIGHT_MASK,
                "too many sends in flight"
            );
            match self.queue.sender_line().word.compare_exchange_weak(
                word,
                admitted,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(actual) => word = actual,
            }
        }
        Ok(self.land(frame))
    }

    /// Queues, in order, as many of the frames `pending` stands for as fit, never blocking,
    /// with one admission and one landing for them all: a batch pays the atomic steps of one
    /// send, and claims its queue slots a block at a time. Each item of `pending` weighs what
    /// its frame will; `make` makes the frames of those admitted, and only of those (a frame
    /// that does not fit is never made). `make` must not panic: the admitted frames count as a
    /// send in flight until they land.
    pub fn send_many<P: Weighed>(
        &self,
        mut pending: Vec<P>,
        mut make: impl FnMut(P) -> T,
    ) -> SentMany<W> {
        let limit = self.limit();
        let mut word = self.queue.sender_line().word.load(Ordering::SeqCst);
        let (admitted, stop) = loop {
            if word & CLOSED != 0 {
                return SentMany::nothing(Some(TrySendError::Closed(())));
            }
            if pending.is_empty() {
                return SentMany::nothing(None);
            }
            let room = |received| limit - queued(word, received).min(limit);
            let mut fit = fitting_prefix(
                &pending,
                room(
                    self.queue
                        .sender_line()
                        .received_seen
                        .load(Ordering::Relaxed),
                ),
                limit,
            );
            if fit.count < pending.len() && fit.stop.is_none() {
                // As in `send`: the readers' total as last seen may be behind.
                let received = self.received_bytes();
                self.queue
                    .sender_line()
                    .received_seen
                    .fetch_max(received, Ordering::Relaxed);
                fit = fitting_prefix(&pending, room(received), limit);
            }
            let stop =
                (fit.count < pending.len()).then(|| fit.stop.unwrap_or(TrySendError::Busy(())));
            if fit.count == 0 {
                break (0, stop);
            }
            debug_assert!(
                word & IN_FLIGHT_MASK != IN_FLIGHT_MASK,
                "too many sends in flight"
            );
            let admitted =
                ((word & !SENT_MASK) + IN_FLIGHT_ONE) | (word.wrapping_add(fit.bytes) & SENT_MASK);
            match self.queue.sender_line().word.compare_exchange_weak(
                word,
                admitted,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break (fit.count, stop),
                Err(actual) => word = actual,
            }
        };
        if matches!(stop, Some(TrySendError::Busy(()))) {
            self.queue
                .sender_line()
                .busy
                .fetch_add(1, Ordering::Relaxed);
        }
        if admitted == 0 {
            return SentMany::nothing(stop);
        }
        pending.truncate(admitted);
        let mut frames: Vec<T> = pending
            .into_iter()
            .map(|item| {
                let weight = weight_of(&item);
                let frame = make(item);
                debug_assert_eq!(
                    weight_of(&frame),
                    weight,
                    "a frame weighs what its item did"
                );
                frame
            })
            .collect();
        self.queue.push_many(frames.drain(..));
        SentMany {
            accepted: admitted,
            refused: stop,
            wakes: self.land_in_flight(admitted),
        }
    }

    /// Puts an admitted frame (its bytes and in-flight mark already counted) in the queue and
    /// says whom to wake.
    fn land(&self, frame: T) -> Vec<W> {
        self.queue.push(frame);
        self.land_in_flight(1)
    }

    /// Ends a send in flight whose `frames` frames are in the queue, and says whom to wake:
    /// a parked reader per frame.
    fn land_in_flight(&self, frames: usize) -> Vec<W> {
        let before_landing = self
            .queue
            .sender_line()
            .word
            .fetch_sub(IN_FLIGHT_ONE, Ordering::SeqCst);
        if before_landing & (CLOSED | IN_FLIGHT_MASK) == CLOSED | IN_FLIGHT_ONE {
            // The last send in flight after `close` landed: from here on the channel drains to
            // its end, and readers parked meanwhile must all look again.
            return self.wake_all();
        }
        // `register` sets PARKED on this word before its reader looks at the queue again:
        // either that step comes after this one and the reader sees the frame, or this one
        // sees PARKED.
        if before_landing & PARKED == 0 {
            return Vec::new();
        }
        self.wake_some(frames)
    }

    /// Takes the oldest frame, if any, without blocking. `Empty` also while the send of the
    /// oldest frame is still in flight (frames sent after it wait behind it, as in any FIFO).
    /// If senders wait for room and the channel is now at most half full, the first is woken
    /// (every one, if it is now empty): a thread in place, a task through `wake` (the caller
    /// fires it).
    pub fn try_recv(&self, wake: impl FnMut(W)) -> Result<T, TryRecvError> {
        match self.queue.pop() {
            Some(frame) => {
                self.count_received(weight_of(&frame), wake);
                Ok(frame)
            }
            None if self.is_drained_after_close() => Err(TryRecvError::Closed),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Takes frames, oldest first, while there are any, handing each to `each` until it
    /// answers `false` or `max` are taken; answers how many were taken. As `try_recv` each,
    /// except that their bytes are counted as received once every `RECEIVED_COUNT_EVERY`
    /// frames and at the end, not after each (every count is an atomic step on the readers'
    /// line), unless a sender waits for room: then each frame's bytes are counted, and the
    /// sender woken, before the frame is handed on.
    pub fn try_recv_many(
        &self,
        max: usize,
        mut each: impl FnMut(T) -> bool,
        wake: impl FnMut(W),
    ) -> usize {
        // Counts what is taken even if `each` panics: bytes taken and never counted would
        // stay queued in the accounting for good.
        let mut counter = ReceivedCounter {
            channel: self,
            frames: 0,
            bytes: 0,
            wake,
        };
        let mut taken = 0;
        while taken < max {
            let Some(frame) = self.queue.pop() else {
                break;
            };
            taken += 1;
            counter.frames += 1;
            counter.bytes += weight_of(&frame);
            // A sender waiting for room is told at once (the flag is on this reader's own
            // line: reading it costs no atomic step).
            if counter.frames == RECEIVED_COUNT_EVERY
                || self.queue.reader_line().load(Ordering::Relaxed) & SENDERS_PARKED != 0
            {
                counter.count();
            }
            if !each(frame) {
                break;
            }
        }
        taken
    }

    /// Counts `bytes` of frames taken as received; if senders wait for room, wakes those
    /// it now has room for.
    fn count_received(&self, bytes: u64, wake: impl FnMut(W)) {
        let before = self.queue.reader_line().fetch_add(bytes, Ordering::AcqRel);
        if before & SENDERS_PARKED != 0 {
            self.wake_senders_after_receive(before + bytes, wake);
        }
    }

    /// Takes the oldest frame, parking the calling thread until one arrives, the channel is
    /// closed and drained (`Closed`), or `timeout` passes (`Timeout`). `None` waits forever, and
    /// so does a timeout too long for the clock to represent its end.
    ///
    /// `wake` receives the task wakers to fire: another reader's, if this thread was woken
    /// for a frame that reader had to be woken for instead, and a waiting sender's, for the
    /// room the frame taken frees.
    pub fn recv_timeout(
        &self,
        timeout: Option<Duration>,
        wake: impl FnMut(W),
    ) -> Result<T, RecvTimeoutError> {
        // Nothing stops this wait, so it always has an outcome.
        self.recv_until(timeout, wake, &|| false)
            .unwrap_or(Err(RecvTimeoutError::Timeout))
    }

    /// Like [`recv_timeout`](Self::recv_timeout), but `None` as soon as `stop` says so: a
    /// wait its owner cancelled. Whoever makes `stop` true must then unpark this thread; a
    /// wake it had been given goes on to another reader.
    pub fn recv_until(
        &self,
        timeout: Option<Duration>,
        mut wake: impl FnMut(W),
        stop: &dyn Fn() -> bool,
    ) -> Option<Result<T, RecvTimeoutError>> {
        let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
        loop {
            if stop() {
                return None;
            }
            match self.try_recv(&mut wake) {
                Ok(frame) => return Some(Ok(frame)),
                Err(TryRecvError::Closed) => return Some(Err(RecvTimeoutError::Closed)),
                Err(TryRecvError::Empty) => {}
            }
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if remaining == Some(Duration::ZERO) {
                return Some(Err(RecvTimeoutError::Timeout));
            }
            self.note_reader(current_core().unwrap_or(NO_CORE));
            let ready = self.spin_until_ready(remaining);
            self.leave_if_crowded();
            if ready {
                continue;
            }
            self.note_reader(NO_CORE);
            let (signal, woken) = ThreadSignal::for_current_thread();
            let id = self.register(Sleeper::Thread {
                id: self.next_id(),
                signal,
            });
            match self.try_recv(&mut wake) {
                // `try_recv` also finds nothing while the oldest frame's send is in flight,
                // with later frames already landed (their senders saw no parked reader): the
                // queue's indexes say whether anything at all is there.
                Err(TryRecvError::Empty) if !self.is_ready() => {}
                Err(TryRecvError::Empty) => {
                    if let Cancelled::AlreadyWoken(Some(waker)) = self.cancel_task(id) {
                        wake(waker);
                    }
                    std::thread::yield_now();
                    continue;
                }
                done => {
                    // The frame taken here was queued before we parked, so a wake we got
                    // meanwhile was meant for a later frame: pass it on.
                    if let Cancelled::AlreadyWoken(Some(waker)) = self.cancel_task(id) {
                        wake(waker);
                    }
                    return Some(done.map_err(|_| RecvTimeoutError::Closed));
                }
            }
            park_until(&woken, deadline, stop);
            if stop() {
                if let Cancelled::AlreadyWoken(Some(waker)) = self.cancel_task(id) {
                    wake(waker);
                }
                return None;
            }
            if !woken.load(Ordering::Acquire) {
                self.take_sleeper(id);
            }
            // Woken or timed out, the next try_recv decides: a late wake is not wasted.
        }
    }

    /// Parks a task reader (an Erlang process, a coroutine) until a frame or the close arrives.
    /// Its waker comes back exactly once: from `park_task` as `Ready`, or from a later `send`,
    /// `close` or `cancel_task`, to be fired by whoever received it.
    pub fn park_task(&self, waker: W) -> Parked<W> {
        if self.is_ready() {
            return Parked::Ready(waker);
        }
        let id = self.register(Sleeper::Task {
            id: self.next_id(),
            waker,
        });
        if self.is_ready() {
            if let Some(Sleeper::Task { waker, .. }) = self.take_sleeper(id) {
                return Parked::Ready(waker);
            }
            // Already woken by a send or close: its waker is on its way.
        }
        Parked::Waiting(id)
    }

    /// Withdraws a parked reader that stopped waiting (timed out, cancelled). If it had already
    /// been woken, the wake is passed to another reader while frames remain.
    pub fn cancel_task(&self, id: WaiterId) -> Cancelled<W> {
        if self.take_sleeper(id).is_some() {
            return Cancelled::Withdrawn;
        }
        Cancelled::AlreadyWoken(self.pass_on_wake())
    }

    /// For a task waker handed back by this channel that could not be fired (its reader is
    /// gone: a dead process): the wake goes to another parked reader while frames remain,
    /// whose task waker (if it is a task) is returned to fire in turn.
    pub fn pass_on_wake(&self) -> Option<W> {
        if self.queue.is_empty() {
            return None;
        }
        self.wake_one()
    }

    /// Closes the channel. Queued frames stay for readers to drain. Wakes every parked thread,
    /// readers and senders, and returns every parked task's waker for the caller to fire.
    /// Idempotent.
    pub fn close(&self) -> Vec<W> {
        self.queue
            .sender_line()
            .word
            .fetch_or(CLOSED, Ordering::SeqCst);
        self.closed.store(true, Ordering::SeqCst);
        let mut woken = self.wake_all();
        woken.extend(self.wake_all_senders());
        woken
    }

    /// Bytes of every frame ever received.
    fn received_bytes(&self) -> u64 {
        self.queue.reader_line().load(Ordering::SeqCst) & !SENDERS_PARKED
    }

    /// Bytes of accepted frames not yet received, as they were at one moment: never more
    /// than `max_size`.
    pub fn size(&self) -> u64 {
        let (word, received) = self.byte_totals();
        queued(word, received)
    }

    /// The senders' word and the bytes received at one moment. The received total is read on
    /// both sides of the word: unchanged, it held when the word was read. (Read once, a
    /// receive and a send between the two reads would add a frame that never was queued at
    /// the same time as the one received.)
    fn byte_totals(&self) -> (u64, u64) {
        loop {
            let received = self.received_bytes();
            let word = self.queue.sender_line().word.load(Ordering::SeqCst);
            if self.received_bytes() == received {
                return (word, received);
            }
        }
    }

    /// The running totals. Taken while others send and receive, they are each a moment's
    /// value, never ahead of one another in a way that says more was received than sent.
    /// They cost the send path nothing: the queue's positions and the byte totals are already
    /// kept for other reasons, and only a refused send counts itself.
    pub fn totals(&self) -> Totals {
        // Receivers' figures first: every frame they count is in the senders' figures read
        // after.
        let received = self.queue.popped();
        let (word, received_bytes) = self.byte_totals();
        Totals {
            sent: self.queue.pushed().max(received),
            received,
            busy: self.queue.sender_line().busy.load(Ordering::Relaxed),
            sent_bytes: received_bytes + queued(word, received_bytes),
            received_bytes,
        }
    }

    /// The most bytes that may be queued: `max_size`, or all a counter holds if unlimited.
    fn limit(&self) -> u64 {
        if self.max_size == 0 {
            MAX_BYTES
        } else {
            self.max_size
        }
    }

    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    pub fn is_closed(&self) -> bool {
        self.queue.sender_line().word.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Number of frames queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Number of readers parked right now.
    pub fn waiting_readers(&self) -> usize {
        self.lock_sleepers().len()
    }

    /// Looks for a frame for a few microseconds before a thread parks: a parked thread takes
    /// a futex wake to resume, several microseconds and two system calls, which a reader that
    /// keeps up with a stream would otherwise pay for every frame.
    fn spin_until_ready(&self, remaining: Option<Duration>) -> bool {
        // Looks at the slot the next frame goes in, not at the producers' tail (see
        // `Queue::written_at`): a look would otherwise cost the producer a cache miss.
        spin_until(remaining, || {
            self.queue.front_is_written() || self.is_drained_after_close()
        })
    }

    /// Where a thread reader waits for a frame, seen from `core`.
    pub fn where_reader_spins(&self, core: u32) -> ReaderSpins {
        let seen = self.reader_seen.load(Ordering::Relaxed);
        let (seen_on, seen_at) = ((seen >> 32) as u32, seen as u32);
        match seen_on {
            NO_CORE => ReaderSpins::NotKnown,
            _ if reader_clock().wrapping_sub(seen_at) > READER_SEEN_FOR_MICROS => {
                ReaderSpins::NotKnown
            }
            seen_on if seen_on == core => ReaderSpins::Here,
            _ => ReaderSpins::Elsewhere,
        }
    }

    /// Asks the reader spinning on `core` to move off it once it runs again: a thread there
    /// waits for the reader's answer. The two took turns on one core, each waiting for the
    /// other to give it up, while another core idled, until the OS parted them (milliseconds
    /// to seconds): the kernel wakes a thread on its waker's core.
    pub fn ask_reader_to_leave(&self, core: u32) {
        self.crowded_core.store(core, Ordering::Relaxed);
    }

    /// The reader's side of `ask_reader_to_leave`, after each spin: only the reader on that
    /// core takes the request (of several readers, one on another core would spend it).
    fn leave_if_crowded(&self) {
        let crowded = self.crowded_core.load(Ordering::Relaxed);
        if crowded != NO_CORE
            && current_core() == Some(crowded)
            && self
                .crowded_core
                .compare_exchange(crowded, NO_CORE, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            affinity::step_off(crowded);
        }
    }

    fn note_reader(&self, core: u32) {
        let time = if core == NO_CORE { 0 } else { reader_clock() };
        self.reader_seen
            .store((core as u64) << 32 | time as u64, Ordering::Relaxed);
    }

    /// A frame to take, or the close that ends all reading.
    fn is_ready(&self) -> bool {
        !self.queue.is_empty() || self.is_drained_after_close()
    }

    /// Closed, no send in flight, nothing queued: no frame will ever come.
    fn is_drained_after_close(&self) -> bool {
        // A send in flight passes the gate before its frame lands; with none in flight after
        // the close, every accepted frame is in the queue, so an empty queue is the end.
        self.closed.load(Ordering::SeqCst)
            && self.queue.sender_line().word.load(Ordering::SeqCst) & (CLOSED | IN_FLIGHT_MASK)
                == CLOSED
            && {
                fence(Ordering::SeqCst);
                self.queue.is_empty()
            }
    }

    fn next_id(&self) -> WaiterId {
        self.next_waiter_id.fetch_add(1, Ordering::Relaxed)
    }

    fn register(&self, sleeper: Sleeper<W>) -> WaiterId {
        let id = sleeper.id();
        let mut sleepers = self.lock_sleepers();
        sleepers.push_back(sleeper);
        // Pairs with the landing step in `land`; the caller looks at the queue after this.
        self.queue
            .sender_line()
            .word
            .fetch_or(PARKED, Ordering::SeqCst);
        id
    }

    /// After a sleeper left the list (under its lock): nobody parked, nobody to wake.
    fn note_departure(&self, sleepers: &VecDeque<Sleeper<W>>) {
        if sleepers.is_empty() {
            self.queue
                .sender_line()
                .word
                .fetch_and(!PARKED, Ordering::SeqCst);
        }
    }

    fn take_sleeper(&self, id: WaiterId) -> Option<Sleeper<W>> {
        let mut sleepers = self.lock_sleepers();
        let position = sleepers.iter().position(|s| s.id() == id)?;
        let sleeper = sleepers.remove(position);
        self.note_departure(&sleepers);
        sleeper
    }

    /// Wakes every parked thread; returns every parked task's waker.
    fn wake_all(&self) -> Vec<W> {
        let mut sleepers = self.lock_sleepers();
        let woken = sleepers.drain(..).filter_map(Sleeper::wake).collect();
        self.note_departure(&sleepers);
        woken
    }

    /// Wakes up to `count` parked readers, first parked first; returns the tasks' wakers.
    fn wake_some(&self, count: usize) -> Vec<W> {
        let mut sleepers = self.lock_sleepers();
        let count = count.min(sleepers.len());
        let woken = sleepers.drain(..count).filter_map(Sleeper::wake).collect();
        self.note_departure(&sleepers);
        woken
    }

    fn wake_one(&self) -> Option<W> {
        let mut sleepers = self.lock_sleepers();
        let sleeper = sleepers.pop_front();
        self.note_departure(&sleepers);
        drop(sleepers);
        sleeper.and_then(Sleeper::wake)
    }

    fn lock_sleepers(&self) -> MutexGuard<'_, VecDeque<Sleeper<W>>> {
        // The list stays consistent even if a holder panicked: every update is one call.
        self.sleepers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Looks at `ready` for up to `SPIN_BEFORE_PARK` (less if `remaining` is shorter), about once
/// a microsecond, before a thread parks.
fn spin_until(remaining: Option<Duration>, ready: impl Fn() -> bool) -> bool {
    let spin = remaining.map_or(SPIN_BEFORE_PARK, |r| r.min(SPIN_BEFORE_PARK));
    let until = Instant::now() + spin;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        for _ in 0..SPIN_PAUSES {
            std::hint::spin_loop();
        }
        std::thread::yield_now();
    }
}

/// Parks the calling thread until `fired` is set, `stop` says so, or `deadline` passes
/// (never, if `None`). Whoever sets `fired` or makes `stop` true unparks the thread.
fn park_until(fired: &AtomicBool, deadline: Option<Instant>, stop: &dyn Fn() -> bool) {
    while !fired.load(Ordering::Acquire) && !stop() {
        match deadline {
            None => std::thread::park(),
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return;
                }
                std::thread::park_timeout(deadline - now);
            }
        }
    }
}

/// What [`Channel::send_many`] did.
#[derive(Debug, PartialEq, Eq)]
pub struct SentMany<W> {
    /// Frames queued: the first `accepted` of the batch.
    pub accepted: usize,
    /// Why the next one was not (`None`: all were).
    pub refused: Option<TrySendError<()>>,
    /// The parked tasks to wake, for the caller to fire.
    pub wakes: Vec<W>,
}

impl<W> SentMany<W> {
    /// Nothing queued, for the reason given (`None`: there was nothing to queue).
    fn nothing(refused: Option<TrySendError<()>>) -> Self {
        SentMany {
            accepted: 0,
            refused,
            wakes: Vec::new(),
        }
    }
}

/// The longest prefix of `pending` whose weights add up to at most `room`, with `limit` the
/// most that may ever be queued.
struct Fit {
    count: usize,
    bytes: u64,
    /// Set when the first item left out can never fit (`TooLarge`): no later look at the
    /// readers' total can help it.
    stop: Option<TrySendError<()>>,
}

fn fitting_prefix<P: Weighed>(pending: &[P], room: u64, limit: u64) -> Fit {
    let mut fit = Fit {
        count: 0,
        bytes: 0,
        stop: None,
    };
    for item in pending {
        let weight = weight_of(item);
        if weight > limit {
            fit.stop = Some(TrySendError::TooLarge(()));
            break;
        }
        if fit.bytes + weight > room {
            break;
        }
        fit.bytes += weight;
        fit.count += 1;
    }
    fit
}

/// Every frame counts at least one byte, so "no bytes queued" means "no frame queued or in flight".
fn weight_of<T: Weighed>(frame: &T) -> u64 {
    frame.weight().max(1) as u64
}

#[cfg(test)]
mod tests;
