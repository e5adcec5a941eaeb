import py_channel/channel.{Busy, Closed, Empty, Ended, Info, Message, Passive, TooLarge}
import py_channel/python.{Cancelled, PythonException, Timeout}
import py_channel/term

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

pub fn send_with_timeout_test() {
  let assert Ok(ch) = channel.new_with_max_size(120)
  let forty = "0123456789012345678901234567890123456789"
  let assert Ok(Nil) = channel.send_with_timeout(ch, forty, 100)
  let assert Ok(Nil) = channel.send_with_timeout(ch, forty, 100)
  // Full: no room within the timeout, and nothing queued.
  let assert Error(channel.Timeout) = channel.send_with_timeout(ch, forty, 50)
  let assert Info(length: 2, ..) = channel.info(ch)
  let assert Error(TooLarge) =
    channel.send_with_timeout(ch, #(forty, forty, forty), 50)
  channel.close(ch)
  let assert Error(Closed) = channel.send_with_timeout(ch, 1, 50)
}

pub fn receive_test() {
  let ch = channel.new()
  let assert Error(Empty) = channel.try_receive(ch)
  let assert Error(channel.Timeout) = channel.receive(ch, 20)
  let assert Ok(Nil) = channel.send(ch, #(1, "one"))
  let assert Ok(Nil) = channel.send(ch, 2)
  let assert Ok(first) = channel.receive(ch, 1000)
  let assert Ok(#(one, name)) = term.to_tuple2(first)
  let assert Ok(1) = term.to_int(one)
  let assert Ok("one") = term.to_string(name)
  let assert Ok(second) = channel.try_receive(ch)
  let assert Ok(2) = term.to_int(second)
  channel.close(ch)
  let assert Error(Closed) = channel.receive(ch, 1000)
  let assert Error(Closed) = channel.try_receive(ch)
}

// What Python writes, a Gleam process reads.
pub fn receive_what_python_sends_test() {
  let ch = channel.new()
  let assert Ok(_) =
    python.eval_with_channel(
      "(lambda c: ([c.send(n) for n in range(3)], c.close()))(Channel(ch))",
      "ch",
      ch,
    )
  let assert Ok(zero) = channel.receive(ch, 1000)
  let assert Ok(0) = term.to_int(zero)
  let assert Ok(_) = channel.receive(ch, 1000)
  let assert Ok(_) = channel.receive(ch, 1000)
  let assert Error(Closed) = channel.receive(ch, 1000)
}

pub fn subscribe_test() {
  let ch = channel.new()
  let assert Ok(Nil) = channel.send(ch, 1)
  let assert Ok(Nil) = channel.send(ch, 2)
  let assert Ok(Nil) = channel.send(ch, 3)
  channel.subscribe(ch, 2)
  let assert Ok(Message(one)) = channel.receive_delivery(ch, 1000)
  let assert Ok(1) = term.to_int(one)
  let assert Ok(Message(_)) = channel.receive_delivery(ch, 1000)
  let assert Ok(Passive) = channel.receive_delivery(ch, 1000)
  let assert Error(Nil) = channel.receive_delivery(ch, 20)
  channel.close(ch)
  channel.subscribe(ch, 5)
  let assert Ok(Message(three)) = channel.receive_delivery(ch, 1000)
  let assert Ok(3) = term.to_int(three)
  let assert Ok(Ended) = channel.receive_delivery(ch, 1000)
}

pub fn decoders_test() {
  let assert Ok(value) =
    python.eval(
      "(1.5, True, b'\\xff\\x00', __import__('erlang').Atom('ok'), [1, 2], (1, 2, 3), {'b': 2, 'a': 1}, None)",
    )
  let assert Ok([f, b, bytes, atom, list, triple, dict, none]) =
    tuple_items(value)
  let assert Ok(1.5) = term.to_float(f)
  let assert Ok(True) = term.to_bool(b)
  let assert Ok(<<255, 0>>) = term.to_bit_string(bytes)
  // Not UTF-8: a BitString, not a String.
  let assert Error(Nil) = term.to_string(bytes)
  let assert Ok("ok") = term.to_atom_name(atom)
  let assert Ok([one, _]) = term.to_list(list)
  let assert Ok(1) = term.to_int(one)
  let assert Ok(#(_, _, three)) = term.to_tuple3(triple)
  let assert Ok(3) = term.to_int(three)
  let assert Ok([#(a, one_again), #(_, _)]) = term.to_dict(dict)
  let assert Ok("a") = term.to_string(a)
  let assert Ok(1) = term.to_int(one_again)
  let assert Ok("none") = term.to_atom_name(none)
  let assert Error(Nil) = term.to_int(f)
  let assert Error(Nil) = term.to_tuple2(triple)
}

// A tuple of any size, as a list (the decoders read tuples of two and three).
@external(erlang, "erlang", "tuple_to_list")
fn tuple_to_list(tuple: term.Term) -> List(term.Term)

fn tuple_items(value: term.Term) -> Result(List(term.Term), Nil) {
  Ok(tuple_to_list(value))
}

pub fn call_test() {
  let assert Ok(root) = python.call("math", "sqrt", [term.from(16)])
  let assert Ok(4.0) = term.to_float(root)
  let assert Ok(joined) =
    python.call("os.path", "join", [term.from("a"), term.from("b")])
  let assert Ok("a/b") = term.to_string(joined)
  let assert Error(PythonException(name: "ValueError", message: _)) =
    python.call("math", "sqrt", [term.from(-1)])
  let assert Ok(Nil) = python.exec("import time")
  let assert Error(Timeout) =
    python.call_with_timeout("time", "sleep", [term.from(5)], 50)
}

pub fn spawn_await_cancel_test() {
  let pending = python.spawn("math", "factorial", [term.from(10)])
  let assert Ok(result) = python.await(pending, 5000)
  let assert Ok(3_628_800) = term.to_int(result)
  // Cancelling stops running bytecode; a C call such as `time.sleep` would
  // only be stopped once it returned.
  let assert Ok(Nil) = python.exec("def forever():\n    while True:\n        pass")
  let slow = python.spawn("__main__", "forever", [])
  sleep(50)
  python.cancel(slow)
  let assert Error(Cancelled) = python.await(slow, 5000)
}

@external(erlang, "timer", "sleep")
fn sleep(milliseconds: Int) -> term.Term

// Python replies to the Gleam process, which reads the reply from its mailbox.
pub fn python_replies_to_gleam_test() {
  let ch = channel.new()
  let assert Ok(Nil) = channel.send(ch, #(term.self(), 6))
  channel.close(ch)
  let assert Ok(_) =
    python.eval_with_channel(
      "[reply(pid, n * 7) for pid, n in Channel(ch)]",
      "ch",
      ch,
    )
  let assert Ok(reply) = term.receive(1000)
  let assert Ok(42) = term.to_int(reply)
  let assert Error(Nil) = term.receive(20)
}

// A Gleam process calls a Python reader; a Gleam reader answers a call.
pub fn channel_call_test() {
  let ch = channel.new()
  let assert Ok(Nil) =
    python.exec(
      "def double(ref):\n    for caller, n in Channel(ref):\n        reply(caller, n * 2)",
    )
  let server = python.spawn("__main__", "double", [term.from(ch)])
  let assert Ok(reply) = channel.call(ch, 21, 5000)
  let assert Ok(42) = term.to_int(reply)
  channel.close(ch)
  let assert Ok(_) = python.await(server, 5000)
  let assert Error(Closed) = channel.call(ch, 1, 100)
}

@external(erlang, "erlang", "spawn")
fn spawn_process(run: fn() -> a) -> term.Term

pub fn gleam_reader_replies_test() {
  let ch = channel.new()
  spawn_process(fn() {
    let assert Ok(message) = channel.receive(ch, 5000)
    let assert Ok(#(caller, request)) = channel.to_call(message)
    let assert Ok(n) = term.to_int(request)
    let assert Ok(Nil) = channel.reply(caller, n + 1)
    let assert Error(Nil) = channel.reply(caller, 0)
  })
  let assert Ok(reply) = channel.call(ch, 41, 5000)
  let assert Ok(42) = term.to_int(reply)
  let assert Error(Nil) = channel.to_call(term.from(7))
}
