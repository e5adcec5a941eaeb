//! Python object -> external term format, for the plain data Python code sends to a channel.
//!
//! A Python sender that builds its terms with the NIF API allocates them from the BEAM: each
//! binary takes a heap fragment of its own (`enif_make_new_binary` allocates on the env's
//! process, not from the env's heap), and a thread that is not a scheduler gets it from a
//! shared allocator instance behind a mutex. Encoded here into memory of its own, the term
//! costs the sender no BEAM allocation at all; the reader decodes it into its own heap, as
//! it would copy a term there anyway.
//!
//! Only plain data takes this path: None, booleans, integers of 64 bits, finite floats,
//! `str`, `erlang.Atom`, bytes, bytearray, lists, tuples and pids. For anything else (a dict,
//! a bignum, nan, a channel, a ref, an opaque term) `encode` answers `Ok(None)` and the term
//! goes through `to_erlang.rs`, which also says what cannot be converted.
//!
//! The size counted against `max_size` is worked out as `beam/term_scan.rs` counts the
//! decoded term, so a term weighs the same whichever language sent it.
//!
//! Small terms only (`ENCODED_MAX_BYTES`): a large binary made with the NIF API is counted
//! by reference, shared with the reader without a second copy, and shows in
//! `erlang:memory(binary)` while it is queued; decoded from external term format it would
//! be copied again.

use super::nesting;
use super::term_classes::PyPid;
use super::to_erlang::none_atom_name;
use super::to_python::atom_class;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};
use rustler::{Encoder, OwnedEnv};

const VERSION: u8 = 131;
const NEW_FLOAT_EXT: u8 = 70;
const SMALL_INTEGER_EXT: u8 = 97;
const INTEGER_EXT: u8 = 98;
const SMALL_TUPLE_EXT: u8 = 104;
const LARGE_TUPLE_EXT: u8 = 105;
const NIL_EXT: u8 = 106;
const LIST_EXT: u8 = 108;
const BINARY_EXT: u8 = 109;
const SMALL_BIG_EXT: u8 = 110;
const SMALL_ATOM_UTF8_EXT: u8 = 119;

/// As `term_scan.rs` counts: a word, and a binary's two words of header.
const WORD: usize = 8;

/// The largest encoding this path makes; a larger term goes through `to_erlang.rs`.
const ENCODED_MAX_BYTES: usize = 4096;

/// Encodes `object` into `out` (cleared first, version byte included) and answers the
/// term's size as `max_size` counts it; `None` if it is not plain data (`out` is then of no
/// use). An error is the one `to_erlang` would raise (nesting too deep).
pub fn encode(object: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<Option<usize>> {
    out.clear();
    out.push(VERSION);
    encode_item(object, out, 0)
}

fn encode_item(
    object: &Bound<'_, PyAny>,
    out: &mut Vec<u8>,
    depth: usize,
) -> PyResult<Option<usize>> {
    nesting::enter(depth, "object")?;
    if object.is_none() {
        return Ok(atom(none_atom_name(), out));
    }
    if let Ok(flag) = object.cast::<PyBool>() {
        return Ok(atom(if flag.is_true() { "true" } else { "false" }, out));
    }
    if let Ok(int) = object.cast::<PyInt>() {
        return Ok(integer(int, out));
    }
    if let Ok(float) = object.cast::<PyFloat>() {
        let value = float.value();
        if !value.is_finite() {
            return Ok(None); // nan and the infinities become atoms: to_erlang's to name
        }
        out.push(NEW_FLOAT_EXT);
        out.extend_from_slice(&value.to_bits().to_be_bytes());
        return Ok(Some(2 * WORD));
    }
    if let Ok(text) = object.cast_exact::<PyString>() {
        return Ok(binary(text.to_str()?.as_bytes(), out));
    }
    if let Ok(text) = object.cast::<PyString>() {
        if !object.is_instance(atom_class(object.py())?)? {
            return Ok(binary(text.to_str()?.as_bytes(), out));
        }
        let name = text.to_str()?;
        return Ok(if name.len() <= 255 {
            atom(name, out)
        } else {
            None
        });
    }
    if let Ok(bytes) = object.cast::<PyBytes>() {
        return Ok(binary(bytes.as_bytes(), out));
    }
    if let Ok(bytes) = object.cast::<PyByteArray>() {
        return Ok(binary(&bytes.to_vec(), out));
    }
    if let Ok(list) = object.cast::<PyList>() {
        if list.is_empty() {
            out.push(NIL_EXT);
            return Ok(Some(WORD));
        }
        let Ok(length) = u32::try_from(list.len()) else {
            return Ok(None);
        };
        if out.len() + list.len() > ENCODED_MAX_BYTES {
            return Ok(None);
        }
        out.push(LIST_EXT);
        out.extend_from_slice(&length.to_be_bytes());
        let mut size = WORD * list.len();
        for item in list.iter() {
            match encode_item(&item, out, depth + 1)? {
                Some(item_size) => size += item_size,
                None => return Ok(None),
            }
        }
        out.push(NIL_EXT);
        return Ok(Some(size));
    }
    if let Ok(tuple) = object.cast::<PyTuple>() {
        match u8::try_from(tuple.len()) {
            Ok(arity) => out.extend_from_slice(&[SMALL_TUPLE_EXT, arity]),
            // Too large for the VM: to_erlang refuses it, with its message.
            Err(_) if tuple.len() >= 1 << 24 => return Ok(None),
            Err(_) => {
                out.push(LARGE_TUPLE_EXT);
                out.extend_from_slice(&(tuple.len() as u32).to_be_bytes());
            }
        }
        if out.len() + tuple.len() > ENCODED_MAX_BYTES {
            return Ok(None);
        }
        let mut size = WORD;
        for item in tuple.iter() {
            match encode_item(&item, out, depth + 1)? {
                Some(item_size) => size += item_size,
                None => return Ok(None),
            }
        }
        return Ok(Some(size));
    }
    if let Ok(pid) = object.cast::<PyPid>() {
        out.extend_from_slice(pid_etf(pid.get()));
        return Ok(Some(WORD));
    }
    Ok(None)
}

fn atom(name: &str, out: &mut Vec<u8>) -> Option<usize> {
    out.push(SMALL_ATOM_UTF8_EXT);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    Some(WORD)
}

fn binary(bytes: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    if out.len() + bytes.len() > ENCODED_MAX_BYTES {
        return None;
    }
    let length = u32::try_from(bytes.len()).ok()?;
    out.push(BINARY_EXT);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(bytes);
    Some(2 * WORD + bytes.len())
}

/// Integers of 64 bits, signed or not; a bignum beyond is to_erlang's.
fn integer(int: &Bound<'_, PyInt>, out: &mut Vec<u8>) -> Option<usize> {
    if let Ok(small) = int.extract::<i64>() {
        if (0..=255).contains(&small) {
            out.extend_from_slice(&[SMALL_INTEGER_EXT, small as u8]);
        } else if let Ok(word) = i32::try_from(small) {
            out.push(INTEGER_EXT);
            out.extend_from_slice(&word.to_be_bytes());
        } else {
            big(small < 0, small.unsigned_abs(), out);
        }
        return Some(WORD);
    }
    let unsigned = int.extract::<u64>().ok()?;
    big(false, unsigned, out);
    Some(2 * WORD)
}

fn big(negative: bool, magnitude: u64, out: &mut Vec<u8>) {
    let digits = magnitude.to_le_bytes();
    let length = 8 - magnitude.leading_zeros() as usize / 8;
    out.extend_from_slice(&[SMALL_BIG_EXT, length as u8, negative as u8]);
    out.extend_from_slice(&digits[..length]);
}

/// The pid's external term format (without the version byte), made once per `erlang.Pid`.
fn pid_etf(pid: &PyPid) -> &[u8] {
    pid.etf.get_or_init(|| {
        let env = OwnedEnv::new();
        let etf = env.run(|env| pid.pid.encode(env).to_binary());
        etf.as_slice()[1..].into()
    })
}
