//! Senders that wait for room: the other direction of backpressure.
//!
//! `send` never waits: it answers `Busy`. A sender that wants to wait parks here, in a list
//! served first come first woken, and is woken by the reader whose receive frees bytes:
//!
//! - Parking puts the sender in the list and sets `SENDERS_PARKED` on the readers' word
//!   (both under the list's lock, so whenever the lock is free the bit is set exactly while
//!   the list is not empty),
//!   then tries the send once more. The bit and the received total are one word, so the
//!   reader's `fetch_add` and the sender's `fetch_or` are ordered: either the sender's retry
//!   sees the bytes the reader freed, or the reader's `fetch_add` sees the bit. No wake is
//!   lost while readers keep reading, and a receive pays nothing while no sender waits.
//! - A receive that finds the bit, and leaves the channel at most half full (the low-water
//!   mark), wakes one sender, the first. Waking at every receive would have a waiting
//!   producer woken for every term a reader takes, a few microseconds each; from half full
//!   it sends many terms per wake (its next sends find room without waiting). A woken
//!   sender tries again: if the frame fits and the channel is still at most half full, it
//!   passes a wake on to the next parked sender (the room may be enough for both, and no
//!   receive may come to wake it; over half full, a receive will); if it does not fit, it
//!   parks again with the ticket it first parked with, so it keeps its place in the line.
//! - A sender that gives up after it was woken (timeout, cancel), and a wake that cannot be
//!   delivered (a process that died), pass the wake on the same way.
//! - A receive that empties the channel wakes every parked sender: a woken task can vanish
//!   between its wake and its retry (a coroutine whose loop stopped; an Erlang process that
//!   exits then passes its wake on, see `beam/park_watch.rs`), and with nothing queued no
//!   later receive would wake the next one.
//! - `close` wakes every parked sender; their retries answer `Closed`.
//!
//! A sender that does not wait (`send`) may take room a woken sender was woken for; the
//! woken one parks again in its place and the next receive wakes it. Waiting senders are
//! woken in the order they began to wait.

use super::{
    park_until, queued, spin_until, weight_of, Cancelled, Channel, SendTimeoutError, Sleeper,
    ThreadSignal, TrySendError, WaiterId, Weighed, CLOSED, SENDERS_PARKED,
};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

/// What [`Channel::send_or_park`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum SendOrPark<T, W> {
    /// Queued. The task wakers to fire (readers for the frame, a sender the wake passes on to),
    /// and whether this sender's own waker was handed out meanwhile (see [`OwnWake`]).
    Sent(Vec<W>, OwnWake),
    /// No room: the waker is parked, and comes back once, from a receive (through its `wake`),
    /// a `close`, or a [`Channel::cancel_send`]. The frame comes back to the caller.
    Parked(WaiterId, T),
    /// `TooLarge` or `Closed`: waiting would not help.
    Refused(TrySendError<T>, OwnWake),
}

/// Whether a sender's own waker, parked for a moment before its retry succeeded (or was
/// refused), was taken by a receive or a close in between: it is fired, or about to be, and
/// its wake (a message, for a process) arrives though the sender is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnWake {
    NotFired,
    Fired,
}

impl<T: Weighed, W> Channel<T, W> {
    /// Queues `frame` if it fits; otherwise parks `waker` among the senders waiting for room,
    /// and returns its ticket. `ticket` is the one an earlier park of this sender returned,
    /// if it was woken from one: it parks again in its place, and if it now sends, it passes
    /// a wake on to the next parked sender.
    pub fn send_or_park(&self, frame: T, waker: W, ticket: Option<WaiterId>) -> SendOrPark<T, W> {
        let frame = match self.send_passing_on(frame, ticket.is_some()) {
            Ok(wakes) => return SendOrPark::Sent(wakes, OwnWake::NotFired),
            Err(TrySendError::Busy(frame)) => frame,
            Err(refused) => return SendOrPark::Refused(refused, OwnWake::NotFired),
        };
        let id = self.park_sender(Sleeper::Task {
            id: ticket.unwrap_or_else(|| self.next_id()),
            waker,
        });
        match self.send(frame) {
            Err(TrySendError::Busy(frame)) => SendOrPark::Parked(id, frame),
            outcome => {
                let (own, pass_on) = self.leave_after_retry(id);
                match outcome {
                    Ok(mut wakes) => {
                        wakes.extend(pass_on);
                        SendOrPark::Sent(wakes, own)
                    }
                    // Closed meanwhile: the close woke every other sender already.
                    Err(refused) => SendOrPark::Refused(refused, own),
                }
            }
        }
    }

    /// Withdraws a parked sender that stopped waiting. If it had been woken already, the wake
    /// passes to the next parked sender, whose task waker (if a task) is returned to fire.
    pub fn cancel_send(&self, id: WaiterId) -> Cancelled<W> {
        if self.take_parked_sender(id).is_some() {
            return Cancelled::Withdrawn;
        }
        Cancelled::AlreadyWoken(self.wake_first_sender())
    }

    /// For a sender's task waker this channel handed back that could not be fired (its sender
    /// is gone): the wake goes to the next parked sender, whose task waker is returned.
    pub fn pass_on_send_wake(&self) -> Option<W> {
        self.wake_first_sender()
    }

    /// Queues `frame`, parking the calling thread while there is no room, until `timeout`
    /// passes (`None` waits for ever), or `None` as soon as `stop` says so (a wait its owner
    /// cancelled; whoever makes `stop` true must unpark this thread). `wake` receives the
    /// task wakers to fire.
    pub fn send_until(
        &self,
        frame: T,
        timeout: Option<Duration>,
        mut wake: impl FnMut(W),
        stop: &dyn Fn() -> bool,
    ) -> Option<Result<(), SendTimeoutError<T>>> {
        let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
        let bytes = weight_of(&frame);
        let mut frame = frame;
        let mut ticket = None;
        let mut woken = false;
        loop {
            match self.send_passing_on(frame, woken) {
                Ok(wakes) => {
                    wakes.into_iter().for_each(&mut wake);
                    return Some(Ok(()));
                }
                Err(TrySendError::Busy(busy)) => frame = busy,
                Err(TrySendError::TooLarge(frame)) => {
                    return Some(Err(SendTimeoutError::TooLarge(frame)))
                }
                Err(TrySendError::Closed(frame)) => {
                    return Some(Err(SendTimeoutError::Closed(frame)))
                }
            }
            if stop() {
                return None;
            }
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if remaining == Some(Duration::ZERO) {
                return Some(Err(SendTimeoutError::Timeout(frame)));
            }
            if !woken && self.spin_until_room(bytes, remaining) {
                continue;
            }
            let (signal, fired) = ThreadSignal::for_current_thread();
            let id = *ticket.get_or_insert_with(|| self.next_id());
            self.park_sender(Sleeper::Thread { id, signal });
            match self.send(frame) {
                Err(TrySendError::Busy(busy)) => frame = busy,
                outcome => {
                    // A thread's own signal, fired meanwhile, is dropped with it.
                    self.leave_after_retry(id).1.into_iter().for_each(&mut wake);
                    return Some(match outcome {
                        Ok(wakes) => {
                            wakes.into_iter().for_each(&mut wake);
                            Ok(())
                        }
                        Err(TrySendError::Closed(frame)) => Err(SendTimeoutError::Closed(frame)),
                        Err(refused) => Err(SendTimeoutError::TooLarge(refused.into_inner())),
                    });
                }
            }
            park_until(&fired, deadline, stop);
            woken = fired.load(Ordering::Acquire);
            if !woken {
                // Timed out or stopped: withdraw, or pass on a wake that came meanwhile.
                if let Cancelled::AlreadyWoken(Some(next)) = self.cancel_send(id) {
                    wake(next);
                }
                if stop() {
                    return None;
                }
                // The next round's send decides: a late room is not wasted.
            }
        }
    }

    /// [`send_until`](Self::send_until) with nothing to stop it.
    pub fn send_timeout(
        &self,
        frame: T,
        timeout: Option<Duration>,
        wake: impl FnMut(W),
    ) -> Result<(), SendTimeoutError<T>> {
        self.send_until(frame, timeout, wake, &|| false)
            .unwrap_or_else(|| unreachable!("nothing stops this wait"))
    }

    /// Number of senders parked waiting for room right now.
    pub fn waiting_senders(&self) -> usize {
        self.lock_parked_senders().len()
    }

    /// `send`, and if the caller had been woken and now sent, a wake for the next parked
    /// sender if the channel is still at most half full: the room may be enough for it too.
    /// Over half full, the receive that brings it down to half wakes the next one, as for
    /// any parked sender; woken now, it would race the one woken then for the same room, and
    /// the later in line could win.
    fn send_passing_on(&self, frame: T, woken: bool) -> Result<Vec<W>, TrySendError<T>> {
        let mut wakes = self.send(frame)?;
        if woken && self.size() <= self.max_size / 2 {
            wakes.extend(self.wake_first_sender());
        }
        Ok(wakes)
    }

    /// A parked sender whose retry was not `Busy` leaves the list. If a reader woke it in
    /// between, that wake is not needed here: it passes on, and the sender learns that its
    /// own waker was fired.
    fn leave_after_retry(&self, id: WaiterId) -> (OwnWake, Option<W>) {
        match self.cancel_send(id) {
            Cancelled::Withdrawn => (OwnWake::NotFired, None),
            Cancelled::AlreadyWoken(next) => (OwnWake::Fired, next),
        }
    }

    /// Looks for room for a few microseconds before a thread parks (see `spin_until_ready`).
    fn spin_until_room(&self, bytes: u64, remaining: Option<Duration>) -> bool {
        spin_until(remaining, || self.has_room(bytes))
    }

    /// After a receive that found the bit and brought the received total to `received`: the
    /// senders to wake. None while the channel is over half full; the first one at most
    /// half full; all of them once it is empty (see the module doc).
    pub(super) fn wake_senders_after_receive(&self, received: u64, mut wake: impl FnMut(W)) {
        let word = self.queue.sender_line().word.load(Ordering::SeqCst);
        let left = queued(word, received & !SENDERS_PARKED);
        if left == 0 {
            self.wake_all_senders().into_iter().for_each(wake);
        } else if left <= self.max_size / 2 {
            if let Some(sender) = self.wake_first_sender() {
                wake(sender);
            }
        }
    }

    fn has_room(&self, bytes: u64) -> bool {
        let limit = self.limit();
        let received = self.received_bytes();
        let word = self.queue.sender_line().word.load(Ordering::Acquire);
        word & CLOSED != 0 || queued(word, received) + bytes <= limit
    }

    /// Puts a sender in the line by its ticket: a new one (the highest ticket yet) at the
    /// end, one woken earlier back in its place.
    fn park_sender(&self, sleeper: Sleeper<W>) -> WaiterId {
        let id = sleeper.id();
        let mut parked = self.lock_parked_senders();
        let place = parked
            .iter()
            .position(|other| other.id() > id)
            .unwrap_or(parked.len());
        parked.insert(place, sleeper);
        // Pairs with a reader's `fetch_add` on the same word (see the module doc); the caller
        // tries its send again after this.
        self.queue
            .reader_line()
            .fetch_or(SENDERS_PARKED, Ordering::SeqCst);
        id
    }

    fn take_parked_sender(&self, id: WaiterId) -> Option<Sleeper<W>> {
        let mut parked = self.lock_parked_senders();
        let position = parked.iter().position(|s| s.id() == id)?;
        let sleeper = parked.remove(position);
        self.note_sender_departure(&parked);
        sleeper
    }

    /// Wakes the first parked sender: a thread in place; a task's waker is returned to fire.
    pub(super) fn wake_first_sender(&self) -> Option<W> {
        let mut parked = self.lock_parked_senders();
        let first = parked.pop_front();
        self.note_sender_departure(&parked);
        drop(parked);
        first.and_then(Sleeper::wake)
    }

    pub(super) fn wake_all_senders(&self) -> Vec<W> {
        let mut parked = self.lock_parked_senders();
        let woken = parked.drain(..).filter_map(Sleeper::wake).collect();
        self.note_sender_departure(&parked);
        woken
    }

    /// Under the list's lock: the bit says exactly whether the list is empty.
    fn note_sender_departure(&self, parked: &VecDeque<Sleeper<W>>) {
        if parked.is_empty() {
            self.queue
                .reader_line()
                .fetch_and(!SENDERS_PARKED, Ordering::SeqCst);
        }
    }

    fn lock_parked_senders(&self) -> MutexGuard<'_, VecDeque<Sleeper<W>>> {
        self.parked_senders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
