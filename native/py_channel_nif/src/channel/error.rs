//! Why a send or a receive did not happen, split as crossbeam-channel splits them: a receive
//! that finds nothing now (`Empty`) and one that waited its time out (`Timeout`) are never the
//! same variant. A refused send hands the frame back, so nothing is lost.

use std::{error, fmt};

/// A refused [`Channel::send`](super::Channel::send); the frame comes back to the caller.
#[derive(PartialEq, Eq)]
pub enum TrySendError<T> {
    /// Queued bytes plus this frame would exceed `max_size`: retry later.
    Busy(T),
    /// The frame alone is larger than `max_size`: it can never fit.
    TooLarge(T),
    /// The channel is closed: no send will ever succeed again.
    Closed(T),
}

impl<T> TrySendError<T> {
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Busy(frame)
            | TrySendError::Closed(frame)
            | TrySendError::TooLarge(frame) => frame,
        }
    }

    /// The reason as the atom name the Erlang API uses.
    pub fn reason(&self) -> &'static str {
        match self {
            TrySendError::Busy(_) => "busy",
            TrySendError::TooLarge(_) => "too_large",
            TrySendError::Closed(_) => "closed",
        }
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrySendError::Busy(_) => "the channel is full: retry later",
            TrySendError::TooLarge(_) => "the frame is larger than the channel's max_size",
            TrySendError::Closed(_) => "the channel is closed",
        })
    }
}

impl<T> error::Error for TrySendError<T> {}

/// A [`Channel::try_recv`](super::Channel::try_recv) that returned without a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing queued right now; the channel is still open.
    Empty,
    /// Closed and fully drained: no frame will ever arrive.
    Closed,
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TryRecvError::Empty => "the channel is empty",
            TryRecvError::Closed => "the channel is closed and drained",
        })
    }
}

impl error::Error for TryRecvError {}

/// A [`Channel::recv_timeout`](super::Channel::recv_timeout) that returned without a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// No frame arrived within the timeout; the channel is still open.
    Timeout,
    /// Closed and fully drained: no frame will ever arrive.
    Closed,
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecvTimeoutError::Timeout => "no frame arrived within the timeout",
            RecvTimeoutError::Closed => "the channel is closed and drained",
        })
    }
}

impl error::Error for RecvTimeoutError {}

/// A [`Channel::send_timeout`](super::Channel::send_timeout) that did not queue its frame; the
/// frame comes back to the caller.
#[derive(PartialEq, Eq)]
pub enum SendTimeoutError<T> {
    /// No room came within the timeout; the channel is still open.
    Timeout(T),
    /// The frame alone is larger than `max_size`: it can never fit.
    TooLarge(T),
    /// The channel is closed: no send will ever succeed again.
    Closed(T),
}

impl<T> SendTimeoutError<T> {
    pub fn into_inner(self) -> T {
        match self {
            SendTimeoutError::Timeout(frame)
            | SendTimeoutError::Closed(frame)
            | SendTimeoutError::TooLarge(frame) => frame,
        }
    }
}

impl<T> fmt::Debug for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendTimeoutError::Timeout(_) => "timeout",
            SendTimeoutError::TooLarge(_) => "too_large",
            SendTimeoutError::Closed(_) => "closed",
        })
    }
}

impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendTimeoutError::Timeout(_) => "no room in the channel within the timeout",
            SendTimeoutError::TooLarge(_) => "the frame is larger than the channel's max_size",
            SendTimeoutError::Closed(_) => "the channel is closed",
        })
    }
}

impl<T> error::Error for SendTimeoutError<T> {}
