//! Why a send or a receive did not happen. A refused send hands the frame back, so nothing is lost.

use std::fmt;

/// A refused [`Channel::send`](super::Channel::send); the frame comes back to the caller.
#[derive(PartialEq, Eq)]
pub enum SendError<T> {
    /// Queued bytes plus this frame would exceed `max_size`: retry later.
    Busy(T),
    /// The channel is closed: no send will ever succeed again.
    Closed(T),
    /// The frame alone is larger than `max_size`: it can never fit.
    TooLarge(T),
}

impl<T> SendError<T> {
    pub fn into_inner(self) -> T {
        match self {
            SendError::Busy(frame) | SendError::Closed(frame) | SendError::TooLarge(frame) => frame,
        }
    }

    /// The reason as the atom name the Erlang API uses.
    pub fn reason(&self) -> &'static str {
        match self {
            SendError::Busy(_) => "busy",
            SendError::Closed(_) => "closed",
            SendError::TooLarge(_) => "too_large",
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// A receive that returned without a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// Nothing queued right now (or the wait timed out); the channel is still open.
    Empty,
    /// Closed and fully drained: no frame will ever arrive.
    Closed,
}
