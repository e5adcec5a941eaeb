import py_channel/channel.{Busy, Closed, Info, TooLarge}
import py_channel/python.{PythonException, Timeout}

pub fn send_and_info_test() {
  let ch = channel.new()
  let assert Ok(Nil) = channel.send(ch, #("hello", 1))
  let assert Info(
    size: size,
    max_size: 0,
    closed: False,
    length: 1,
    waiting_readers: 0,
    waiting_senders: 0,
    sent: 1,
    received: 0,
    busy: 0,
    sent_bytes: sent_bytes,
    received_bytes: 0,
  ) = channel.info(ch)
  let assert True = size > 0
  let assert True = sent_bytes == size
}

pub fn backpressure_test() {
  // A 40-byte string counts 56 bytes (see py_channel:term_size/1).
  let assert Ok(ch) = channel.new_with_max_size(120)
  let assert Ok(Nil) = channel.send(ch, "0123456789012345678901234567890123456789")
  let assert Ok(Nil) = channel.send(ch, "0123456789012345678901234567890123456789")
  let assert Error(Busy) = channel.send(ch, "0123456789012345678901234567890123456789")
  let assert Error(TooLarge) =
    channel.send(
      ch,
      "012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
    )
  let assert Error(Nil) = channel.new_with_max_size(-1)
  // Refused sends count as `busy` (too large ones do not), accepted ones as `sent`.
  let assert Info(sent: 2, busy: 1, sent_bytes: 112, ..) = channel.info(ch)
}

pub fn close_test() {
  let ch = channel.new()
  let assert Ok(Nil) = channel.send(ch, 1)
  channel.close(ch)
  channel.close(ch)
  let assert Error(Closed) = channel.send(ch, 2)
  let assert Info(closed: True, ..) = channel.info(ch)
}

pub fn python_reads_what_gleam_sends_test() {
  let ch = channel.new()
  let assert Ok(Nil) = channel.send(ch, 40)
  let assert Ok(Nil) = channel.send(ch, 2)
  channel.close(ch)
  let assert Ok(total) =
    python.eval_with_channel(
      "sum(__import__('erlang').Channel(ch))",
      "ch",
      ch,
    )
  let assert Ok(42) = python.to_int(total)
}

pub fn python_strings_and_errors_test() {
  let assert Ok(Nil) = python.exec("greeting = 'hi from ' + 'python'")
  let assert Ok(text) = python.eval("greeting")
  let assert Ok("hi from python") = python.to_string(text)
  let assert Error(PythonException(name: "ZeroDivisionError", message: _)) =
    python.eval("1 / 0")
}

// The same Python source as from Erlang and Elixir: every process namespace has
// Channel, ChannelClosed and reply without an import.
pub fn channel_names_need_no_import_test() {
  let assert Ok(names) =
    python.eval(
      "' '.join([Channel.__name__, ChannelClosed.__name__, reply.__name__])",
    )
  let assert Ok("Channel ChannelClosed reply") = python.to_string(names)
  let ch = channel.new()
  let assert Ok(Nil) = channel.send(ch, 40)
  let assert Ok(Nil) = channel.send(ch, 2)
  channel.close(ch)
  let assert Ok(total) = python.eval_with_channel("sum(Channel(ch))", "ch", ch)
  let assert Ok(42) = python.to_int(total)
}

// A timeout stops the Python code; the interpreter answers the next call.
pub fn timeouts_stop_python_test() {
  let assert Error(Timeout) =
    python.exec_with_timeout("while True:\n    pass", 100)
  let assert Error(Timeout) =
    python.eval_with_timeout("[0 for _ in iter(int, 1)]", 100)
  let assert Error(Timeout) = python.exec_with_timeout("while True: pass", -5)
  let assert Ok(answer) = python.eval_with_timeout("6 * 7", 5000)
  let assert Ok(42) = python.to_int(answer)
}
