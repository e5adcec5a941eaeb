//// A value that comes from Erlang or Python (a received message, a Python
//// result): `Term`, read with the decoders below, each `Error(Nil)` when the
//// value is not of that kind. `from` makes any Gleam value a `Term` to pass
//// to Python: an Int, a Float, a String, a List, a tuple, a channel, a
//// process (`self()`).
////
//// As Python gives them: `int` is an Int, `float` a Float, `str` a String,
//// `bytes` a BitString, `True`/`False` a Bool, `None` the atom `none`,
//// `list` a List, `tuple` a tuple, `dict` a map (`to_dict`: its entries).

/// A value from Erlang or Python.
pub type Term

/// Any Gleam value, as the term it is.
@external(erlang, "py_channel_ffi", "identity")
pub fn from(value: a) -> Term

/// The calling process, as a term: Python's `reply(pid, term)` to it arrives in
/// its mailbox (see `receive`).
@external(erlang, "py_channel_ffi", "self_term")
pub fn self() -> Term

/// The next message in the calling process's mailbox, whatever it is, waiting
/// up to `timeout_ms` milliseconds: how a reply from Python arrives.
@external(erlang, "py_channel_ffi", "receive_any")
pub fn receive(timeout_ms: Int) -> Result(Term, Nil)

@external(erlang, "py_channel_ffi", "to_int")
pub fn to_int(term: Term) -> Result(Int, Nil)

@external(erlang, "py_channel_ffi", "to_float")
pub fn to_float(term: Term) -> Result(Float, Nil)

/// A binary that is valid UTF-8 (a Python `str`).
@external(erlang, "py_channel_ffi", "to_string")
pub fn to_string(term: Term) -> Result(String, Nil)

/// `true` or `false` (Python's `True`, `False`).
@external(erlang, "py_channel_ffi", "to_bool")
pub fn to_bool(term: Term) -> Result(Bool, Nil)

/// Any binary (a Python `bytes`, or `str`).
@external(erlang, "py_channel_ffi", "to_bit_string")
pub fn to_bit_string(term: Term) -> Result(BitString, Nil)

/// An atom's name (a Python `erlang.Atom`); `None` is the atom `none`.
@external(erlang, "py_channel_ffi", "to_atom_name")
pub fn to_atom_name(term: Term) -> Result(String, Nil)

@external(erlang, "py_channel_ffi", "to_list")
pub fn to_list(term: Term) -> Result(List(Term), Nil)

/// A tuple of two.
@external(erlang, "py_channel_ffi", "to_tuple2")
pub fn to_tuple2(term: Term) -> Result(#(Term, Term), Nil)

/// A tuple of three.
@external(erlang, "py_channel_ffi", "to_tuple3")
pub fn to_tuple3(term: Term) -> Result(#(Term, Term, Term), Nil)

/// A map's entries (a Python `dict`), ordered by key as Erlang orders terms.
@external(erlang, "py_channel_ffi", "to_dict")
pub fn to_dict(term: Term) -> Result(List(#(Term, Term)), Nil)
