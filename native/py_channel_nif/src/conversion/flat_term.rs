//! Python <-> the flat encoding of small plain terms (`beam/flat_term.rs` says what it is
//! and why): [`encode`] for the plain data Python code sends to a channel, [`to_python`] for
//! the reader of an encoded frame, which builds its objects without asking ERTS anything.
//!
//! The Python types encoded: None, booleans, integers of 64 bits, finite floats, `str`,
//! `erlang.Atom`, bytes, bytearray, lists, tuples and pids, up to `ENCODED_MAX_BYTES` in all
//! (a `str` or `bytes` of up to that size too: its bytes are copied either way). For anything
//! else (a dict, a bignum, nan, a channel, a ref, an opaque term, a larger binary, which is
//! better shared by reference) `encode` answers `Ok(None)` and the term goes through
//! `to_erlang.rs`, which also says what cannot be converted.

use super::nesting;
use super::term_classes::{PyCaller, PyPid};
use super::to_erlang::{atom_term, named_atom_term, none_atom_name};
use super::to_python::{atom_class, immediate, Reading};
use crate::beam::atoms;
use crate::beam::caller::CallerRef;
use crate::beam::flat_term::{
    list_size, put_binary, put_float, put_immediate, put_int, put_list, put_tuple, put_uint,
    Cursor, Item, TUPLE_SIZE, WORD,
};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::PyTypeInfo;
use rustler::sys::ErlNifTerm;
use rustler::Env;
use std::cell::RefCell;

thread_local! {
    /// The atoms None and the booleans become: looked up once per thread.
    static NAMED_ATOMS: RefCell<Vec<(&'static str, ErlNifTerm)>> = const { RefCell::new(Vec::new()) };
}

thread_local! {
    /// Where this thread encodes small plain data (`with_scratch`).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `encode` with this thread's buffer for an encoding that is copied elsewhere at once:
/// into a frame's chunk (a send), or where a waiter looks (a kept answer,
/// `beam/kept_bytes.rs`).
pub fn with_scratch<R>(encode: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    SCRATCH.with(|buffer| match buffer.try_borrow_mut() {
        Ok(mut buffer) => encode(&mut buffer),
        // Re-entered while encoding (an `__index__` that replies, say): a buffer of its own.
        Err(_) => encode(&mut Vec::new()),
    })
}

/// Encodes `object` into `out` (cleared first) and answers the term's size as `max_size`
/// counts it; `None` if it is not small plain data (`out` is then of no use). An error is
/// the one `to_erlang` would raise for the object.
pub fn encode(object: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<Option<usize>> {
    out.clear();
    encode_item(object, out, 0)
}

fn encode_item(
    object: &Bound<'_, PyAny>,
    out: &mut Vec<u8>,
    depth: usize,
) -> PyResult<Option<usize>> {
    nesting::enter(depth, "object")?;
    // The usual types first, by the exact type: the checks below, made for subclasses too,
    // walk an object's type hierarchy for every type it is not.
    let exact = object.get_type_ptr();
    // SAFETY (each cast): the object's type is exactly the one cast to.
    unsafe {
        if exact == &raw mut ffi::PyUnicode_Type {
            return Ok(put_binary(
                object.cast_unchecked::<PyString>().to_str()?.as_bytes(),
                out,
            ));
        }
        if exact == &raw mut ffi::PyTuple_Type {
            return tuple(object.cast_unchecked::<PyTuple>(), out, depth);
        }
        if exact == &raw mut ffi::PyLong_Type {
            return Ok(integer(object.cast_unchecked::<PyInt>(), out));
        }
        if exact == &raw mut ffi::PyBytes_Type {
            return Ok(put_binary(
                object.cast_unchecked::<PyBytes>().as_bytes(),
                out,
            ));
        }
        if exact == <PyPid as PyTypeInfo>::type_object_raw(object.py()) {
            return Ok(pid(object.cast_unchecked::<PyPid>(), out));
        }
        if exact == atom_class(object.py())?.as_type_ptr() {
            return atom(object, object.cast_unchecked::<PyString>(), out);
        }
    }
    if object.is_none() {
        return Ok(named_atom(none_atom_name(), out));
    }
    if let Ok(flag) = object.cast::<PyBool>() {
        return Ok(named_atom(
            if flag.is_true() { "true" } else { "false" },
            out,
        ));
    }
    if let Ok(int) = object.cast::<PyInt>() {
        return Ok(integer(int, out));
    }
    if let Ok(float) = object.cast::<PyFloat>() {
        let value = float.value();
        if !value.is_finite() {
            return Ok(None); // nan and the infinities become atoms: to_erlang names them
        }
        return Ok(Some(put_float(value, out)));
    }
    if let Ok(text) = object.cast::<PyString>() {
        if !object.is_instance(atom_class(object.py())?)? {
            return Ok(put_binary(text.to_str()?.as_bytes(), out));
        }
        return atom(object, text, out);
    }
    if let Ok(bytes) = object.cast::<PyBytes>() {
        return Ok(put_binary(bytes.as_bytes(), out));
    }
    if let Ok(bytes) = object.cast::<PyByteArray>() {
        // SAFETY: copied at once, with the GIL held and no Python code run meanwhile, so
        // nothing can resize the bytearray under the copy.
        return Ok(put_binary(unsafe { bytes.as_bytes() }, out));
    }
    if let Ok(list) = object.cast::<PyList>() {
        if put_list(list.len(), out).is_none() {
            return Ok(None);
        }
        let mut size = list_size(list.len());
        for item in list.iter() {
            match encode_item(&item, out, depth + 1)? {
                Some(item_size) => size += item_size,
                None => return Ok(None),
            }
        }
        return Ok(Some(size));
    }
    if let Ok(items) = object.cast::<PyTuple>() {
        return tuple(items, out, depth);
    }
    if let Ok(process) = object.cast::<PyPid>() {
        return Ok(pid(process, out));
    }
    Ok(None)
}

fn integer(int: &Bound<'_, PyInt>, out: &mut Vec<u8>) -> Option<usize> {
    if let Ok(small) = int.extract::<i64>() {
        return Some(put_int(small, out));
    }
    int.extract::<u64>()
        .ok()
        .map(|unsigned| put_uint(unsigned, out))
}

fn tuple(items: &Bound<'_, PyTuple>, out: &mut Vec<u8>, depth: usize) -> PyResult<Option<usize>> {
    if put_tuple(items.len(), out).is_none() {
        return Ok(None);
    }
    let mut size = TUPLE_SIZE;
    for item in items.iter() {
        match encode_item(&item, out, depth + 1)? {
            Some(item_size) => size += item_size,
            None => return Ok(None),
        }
    }
    Ok(Some(size))
}

fn atom(
    object: &Bound<'_, PyAny>,
    text: &Bound<'_, PyString>,
    out: &mut Vec<u8>,
) -> PyResult<Option<usize>> {
    put_immediate(atom_term(object, text)?, out);
    Ok(Some(WORD))
}

fn pid(process: &Bound<'_, PyPid>, out: &mut Vec<u8>) -> Option<usize> {
    put_immediate(process.get().term, out);
    Some(WORD)
}

fn named_atom(name: &'static str, out: &mut Vec<u8>) -> Option<usize> {
    let term = NAMED_ATOMS.with(|atoms| {
        let mut atoms = atoms.borrow_mut();
        if let Some((_, term)) = atoms.iter().find(|(known, _)| *known == name) {
            return *term;
        }
        let term = named_atom_term(name);
        atoms.push((name, term));
        term
    });
    put_immediate(term, out);
    Some(WORD)
}

/// The Python object of the term encoded in `bytes` (the encoding `frame` stores), read as
/// `reading` says, as [`item`] answers. `env` is only for the immediates, which are valid in
/// every env.
pub(super) fn to_python(
    py: Python<'_>,
    env: Env<'_>,
    bytes: &[u8],
    reading: &Reading<'_>,
) -> *mut ffi::PyObject {
    item(py, env, &mut Cursor::new(bytes), reading, 0)
}

/// The next item's object: a new reference, or null with the Python error set. Raw, as the C
/// API: a `PyResult` returned through every level is copied at each, and those copies (read
/// back in wider loads than they were written in) stalled this loop more than it worked.
fn item(
    py: Python<'_>,
    env: Env<'_>,
    cursor: &mut Cursor<'_>,
    reading: &Reading<'_>,
    depth: usize,
) -> *mut ffi::PyObject {
    // SAFETY (the calls to CPython): with the GIL held; each returns a new reference or null
    // with the error set.
    match cursor.next_item() {
        // SAFETY: an immediate term is valid in every env.
        Item::Immediate(term) => raw(py, immediate(py, unsafe { rustler::Term::new(env, term) })),
        Item::Int(value) => unsafe { ffi::PyLong_FromLongLong(value) },
        Item::UInt(value) => unsafe { ffi::PyLong_FromUnsignedLongLong(value) },
        Item::Float(value) => unsafe { ffi::PyFloat_FromDouble(value) },
        Item::Binary(bytes) => raw(py, reading.binary(py, bytes, None)),
        Item::Caller(caller) => {
            // SAFETY: a live caller resource, held by the frame being read.
            let caller = unsafe { CallerRef::kept(caller) };
            caller.mark_taken();
            raw(py, Bound::new(py, PyCaller { caller }).map(Bound::into_any))
        }
        Item::Tuple(2) if cursor.next_is_tagged_binary(atoms::bytes().as_c_arg()) => {
            let bytes = tagged_binary(cursor);
            PyBytes::new(py, bytes).into_ptr()
        }
        Item::Tuple(2) if cursor.next_is_tagged_binary(atoms::memoryview().as_c_arg()) => {
            let bytes = tagged_binary(cursor);
            raw(py, reading.view(py, bytes, None))
        }
        Item::Tuple(items) => container(py, env, cursor, reading, depth, items, false),
        Item::List(items) => container(py, env, cursor, reading, depth, items, true),
    }
}

/// A tuple or a list of the next `items` items, as [`item`] answers.
fn container(
    py: Python<'_>,
    env: Env<'_>,
    cursor: &mut Cursor<'_>,
    reading: &Reading<'_>,
    depth: usize,
    items: usize,
    is_list: bool,
) -> *mut ffi::PyObject {
    if let Err(error) = nesting::enter(depth, "term") {
        error.restore(py);
        return std::ptr::null_mut();
    }
    // SAFETY: a new tuple or list of the right size is filled in full before anyone sees it
    // (one left unfilled by an error is dropped, and frees what it got); the setters steal
    // each item's reference.
    unsafe {
        let container = if is_list {
            ffi::PyList_New(items as isize)
        } else {
            ffi::PyTuple_New(items as isize)
        };
        if container.is_null() {
            return container;
        }
        for index in 0..items {
            let item = item(py, env, cursor, reading, depth + 1);
            if item.is_null() {
                ffi::Py_DECREF(container);
                return item;
            }
            if is_list {
                ffi::PyList_SET_ITEM(container, index as isize, item);
            } else {
                ffi::PyTuple_SET_ITEM(container, index as isize, item);
            }
        }
        container
    }
}

/// `result` as [`item`] answers.
pub(super) fn raw(py: Python<'_>, result: PyResult<Bound<'_, PyAny>>) -> *mut ffi::PyObject {
    match result {
        Ok(object) => object.into_ptr(),
        Err(error) => {
            error.restore(py);
            std::ptr::null_mut()
        }
    }
}

/// The binary of a `{bytes, B}` or `{memoryview, B}` the cursor is at (its tag checked).
fn tagged_binary<'b>(cursor: &mut Cursor<'b>) -> &'b [u8] {
    cursor.next_item();
    match cursor.next_item() {
        Item::Binary(bytes) => bytes,
        _ => unreachable!("checked by next_is_tagged_binary"),
    }
}
