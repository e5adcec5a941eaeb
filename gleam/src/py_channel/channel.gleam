//// A backpressured channel from Gleam processes to Python code running in the
//// interpreter embedded in the BEAM.
////
//// Sending never blocks and never waits for Python: it is `Ok(Nil)` (queued),
//// `Error(Busy)` (the queued bytes plus this message's would exceed the
//// channel's `max_size`: retry later), `Error(TooLarge)` (the message alone
//// exceeds it) or `Error(Closed)`. A message accepted with `Ok` is received
//// exactly once, or is still queued; `close` stops new sends while readers
//// drain what is queued. Python reads with `for msg in Channel(ref)`.
//// The channel guide (`docs/channel.md`) has a table of every outcome as
//// Gleam, Erlang, Elixir and Python spell it.
////
//// A channel is owned by the process that created it: when that process
//// exits, the channel closes.

/// A channel. It can be sent in messages and passed to Python.
pub type Channel

/// The state of a channel, the same eleven fields as Erlang's
/// `py_channel:info/1`: bytes queued (`size`), the limit in bytes
/// (`max_size`, 0 is unlimited), whether it is closed (queued messages may
/// still be there), messages queued (`length`), readers parked on it right
/// now (`waiting_readers`) and senders waiting for room (`waiting_senders`);
/// then running totals since the channel was made,
/// for graphs: messages accepted (`sent`) and taken (`received`), sends
/// refused with `Busy` (`busy`), and the bytes sent and received.
pub type Info {
  Info(
    size: Int,
    max_size: Int,
    closed: Bool,
    length: Int,
    waiting_readers: Int,
    waiting_senders: Int,
    sent: Int,
    received: Int,
    busy: Int,
    sent_bytes: Int,
    received_bytes: Int,
  )
}

/// Why a send was refused.
pub type SendError {
  /// The queued bytes plus this message's would exceed `max_size`: retry later.
  Busy
  /// The channel is closed.
  Closed
  /// The message alone exceeds `max_size`: it can never fit.
  TooLarge
}

/// A new unbounded channel owned by the calling process.
@external(erlang, "py_channel_ffi", "new")
pub fn new() -> Channel

/// A new channel holding at most `max_size` bytes of queued messages (0 is
/// unlimited). `Error(Nil)` for a negative size.
@external(erlang, "py_channel_ffi", "new_with_max_size")
pub fn new_with_max_size(max_size: Int) -> Result(Channel, Nil)

/// Queues `message` without blocking.
@external(erlang, "py_channel_ffi", "send")
pub fn send(channel: Channel, message: a) -> Result(Nil, SendError)

/// Closes the channel: sends fail from now on, queued messages can still be
/// received, every waiting reader wakes. Idempotent.
@external(erlang, "py_channel_ffi", "close")
pub fn close(channel: Channel) -> Nil

/// The channel's state now.
@external(erlang, "py_channel_ffi", "info")
pub fn info(channel: Channel) -> Info
