//// Running Python in the interpreter embedded in the BEAM: the subset of the
//// Erlang `py` module a Gleam program needs to hand a channel to Python.
////
//// Results come back as `Term`, a value from Python, read with the decoders
//// of `py_channel/term` (`to_int` and `to_string` here too); arguments are
//// made with `term.from`. A Python `reply(pid, term)` to `term.self()` arrives
//// in the process's mailbox: `term.receive`.
////
//// Code runs in a namespace of the calling process, which starts with
//// `Channel`, `ChannelClosed` and `reply` of `erlang.channel`: the same
//// Python source runs from Gleam, Erlang and Elixir.

import py_channel/channel
import py_channel/term

/// A value returned by Python (see `py_channel/term`).
pub type Term =
  term.Term

/// A call started with `spawn`, to `await` or `cancel`.
pub type Pending

/// Why Python did not give a result.
pub type PythonError {
  /// The Python code raised: the exception's class name and message.
  PythonException(name: String, message: String)
  /// No answer in time: the Python code was stopped.
  Timeout
  /// The call was cancelled before it gave a result.
  Cancelled
  /// The interpreter could not be started, so no Python code ran: why.
  PythonNotStarted(reason: String)
}

/// Runs Python statements in the calling process's namespace.
@external(erlang, "py_channel_ffi", "exec")
pub fn exec(code: String) -> Result(Nil, PythonError)

/// Evaluates a Python expression in the calling process's namespace.
@external(erlang, "py_channel_ffi", "eval")
pub fn eval(code: String) -> Result(Term, PythonError)

/// Runs Python statements, stopping them after `timeout_ms` milliseconds
/// (`Error(Timeout)`; a negative timeout is 0). The plain `exec` waits 30 s.
@external(erlang, "py_channel_ffi", "exec_with_timeout")
pub fn exec_with_timeout(code: String, timeout_ms: Int) -> Result(Nil, PythonError)

/// Evaluates a Python expression, stopping it after `timeout_ms`
/// milliseconds (`Error(Timeout)`; a negative timeout is 0).
@external(erlang, "py_channel_ffi", "eval_with_timeout")
pub fn eval_with_timeout(code: String, timeout_ms: Int) -> Result(Term, PythonError)

/// Evaluates a Python expression with `channel` bound to the local `name`.
@external(erlang, "py_channel_ffi", "eval_with_channel")
pub fn eval_with_channel(
  code: String,
  name: String,
  channel: channel.Channel,
) -> Result(Term, PythonError)

/// Calls `module.function(*args)` and waits for the result (30 s at most).
@external(erlang, "py_channel_ffi", "call")
pub fn call(
  module: String,
  function: String,
  args: List(Term),
) -> Result(Term, PythonError)

/// `call`, stopping the Python code after `timeout_ms` milliseconds
/// (`Error(Timeout)`).
@external(erlang, "py_channel_ffi", "call_with_timeout")
pub fn call_with_timeout(
  module: String,
  function: String,
  args: List(Term),
  timeout_ms: Int,
) -> Result(Term, PythonError)

/// Starts `module.function(*args)` and returns at once.
@external(erlang, "py_channel_ffi", "spawn")
pub fn spawn(module: String, function: String, args: List(Term)) -> Pending

/// The result of a `spawn`, waiting up to `timeout_ms` milliseconds
/// (`Error(Timeout)`: the call is stopped).
@external(erlang, "py_channel_ffi", "await")
pub fn await(pending: Pending, timeout_ms: Int) -> Result(Term, PythonError)

/// Stops a spawned call: it gets `erlang.Cancelled` at its next bytecode, a
/// wait it is in wakes at once, and `await` gives `Error(Cancelled)`.
@external(erlang, "py_channel_ffi", "cancel")
pub fn cancel(pending: Pending) -> Nil

/// The value as an Int, if it is one (`term.to_int`).
pub fn to_int(value: Term) -> Result(Int, Nil) {
  term.to_int(value)
}

/// The value as a String, if it is one (`term.to_string`).
pub fn to_string(value: Term) -> Result(String, Nil) {
  term.to_string(value)
}
