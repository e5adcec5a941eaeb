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
////
//// Request and reply: `call` sends a request and waits for the reader's
//// reply (Python answers with `reply(caller, term)`, a Gleam reader with
//// `to_call` and `reply`).
////
//// Reading in Gleam: `receive` (waiting up to a timeout), `try_receive`, or
//// `subscribe` and `receive_delivery` (the messages come to the process, as a
//// socket's in `{active, N}` mode). What is read is a `Term`, decoded with the
//// functions of `py_channel/term`.

import py_channel/term.{Term}

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

/// A process waiting in `call` for its reply (`to_call`, `reply`).
pub type Caller

/// Why a send or a receive gave nothing: the outcomes of the channel guide.
pub type ChannelError {
  /// The queued bytes plus this message's would exceed `max_size`: retry
  /// later (`send`).
  Busy
  /// The channel is closed (a send), or closed and drained (a receive).
  Closed
  /// The message alone exceeds `max_size`: it can never fit (`send`,
  /// `send_with_timeout`).
  TooLarge
  /// Nothing within the timeout (`send_with_timeout`, `receive`).
  Timeout
  /// Nothing queued, and the channel is open (`try_receive`).
  Empty
}

/// Why a send was refused (`Busy`, `Closed`, `TooLarge`; `Timeout` from
/// `send_with_timeout`).
pub type SendError =
  ChannelError

/// What a subscription delivers (`subscribe`, `receive_delivery`).
pub type Delivery {
  /// A message taken from the channel for this process.
  Message(Term)
  /// The credit ran out: `subscribe` again for more.
  Passive
  /// The channel is closed and drained: the subscription has ended.
  Ended
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

/// Queues `message`, waiting up to `timeout_ms` milliseconds for room (in an
/// ordinary receive: no scheduler waits): `Error(Timeout)` if none came, and
/// nothing is queued. Waiting senders get room in the order they began to
/// wait. A negative timeout is 0.
@external(erlang, "py_channel_ffi", "send_with_timeout")
pub fn send_with_timeout(
  channel: Channel,
  message: a,
  timeout_ms: Int,
) -> Result(Nil, SendError)

/// Sends `#(caller, request)` and waits up to `timeout_ms` milliseconds in
/// all for the reader's reply: `Ok(reply)`, or `Error(Timeout)` (a later reply
/// is dropped: nothing reaches the mailbox), `Error(Closed)`,
/// `Error(TooLarge)`. The request waits for room as `send_with_timeout` does.
/// A Python reader answers with `reply(caller, term)`; the caller looks for
/// the reply a few microseconds before it sleeps, so a fast reply does not
/// wait for its scheduler to wake up. A negative timeout is 0.
@external(erlang, "py_channel_ffi", "call_channel")
pub fn call(
  channel: Channel,
  request: a,
  timeout_ms: Int,
) -> Result(Term, ChannelError)

/// The caller and the request of a message `call` sent, as a Gleam reader
/// takes it; `Error(Nil)` for any other message.
@external(erlang, "py_channel_ffi", "to_call")
pub fn to_call(message: Term) -> Result(#(Caller, Term), Nil)

/// Answers a `call`: `Ok(Nil)` (also when the caller no longer waits), or
/// `Error(Nil)` if it was answered already: a caller gets one reply.
@external(erlang, "py_channel_ffi", "reply")
pub fn reply(caller: Caller, message: a) -> Result(Nil, Nil)

/// Takes the oldest message, waiting up to `timeout_ms` milliseconds:
/// `Error(Timeout)` if none came, `Error(Closed)` once the channel is closed
/// and drained. Each message goes to exactly one reader (Python's, Erlang's or
/// Gleam's). A negative timeout is 0.
@external(erlang, "py_channel_ffi", "receive_term")
pub fn receive(channel: Channel, timeout_ms: Int) -> Result(Term, ChannelError)

/// Takes the oldest message without waiting: `Error(Empty)` when none is
/// queued, `Error(Closed)` once the channel is closed and drained.
@external(erlang, "py_channel_ffi", "try_receive")
pub fn try_receive(channel: Channel) -> Result(Term, ChannelError)

/// Subscribes the calling process: up to `credit` more messages come to its
/// mailbox as they arrive (read them with `receive_delivery`), then
/// `Passive`; `Ended` when the channel is closed and drained. 0 stops the
/// subscription (what it had not taken stays queued).
@external(erlang, "py_channel_ffi", "subscribe")
pub fn subscribe(channel: Channel, credit: Int) -> Nil

/// The next delivery of a subscription to `channel` in the calling process's
/// mailbox, waiting up to `timeout_ms` milliseconds.
@external(erlang, "py_channel_ffi", "receive_delivery")
pub fn receive_delivery(channel: Channel, timeout_ms: Int) -> Result(Delivery, Nil)

/// Closes the channel: sends fail from now on, queued messages can still be
/// received, every waiting reader wakes. Idempotent.
@external(erlang, "py_channel_ffi", "close")
pub fn close(channel: Channel) -> Nil

/// The channel's state now.
@external(erlang, "py_channel_ffi", "info")
pub fn info(channel: Channel) -> Info
