//// Running Python in the interpreter embedded in the BEAM: the subset of the
//// Erlang `py` module a Gleam program needs to hand a channel to Python.
////
//// Results come back as `Term`, a value from Python; `to_int` and
//// `to_string` read the common cases.
////
//// Code runs in a namespace of the calling process, which starts with
//// `Channel`, `ChannelClosed` and `reply` of `erlang.channel`: the same
//// Python source runs from Gleam, Erlang and Elixir.

import py_channel/channel

/// A value returned by Python.
pub type Term

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

/// The value as an Int, if it is one.
@external(erlang, "py_channel_ffi", "to_int")
pub fn to_int(term: Term) -> Result(Int, Nil)

/// The value as a String, if it is one.
@external(erlang, "py_channel_ffi", "to_string")
pub fn to_string(term: Term) -> Result(String, Nil)
