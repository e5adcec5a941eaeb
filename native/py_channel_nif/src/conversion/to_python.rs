//! Erlang term -> Python object.

use super::binary_view;
use super::term_classes::{printed, PyCaller, PyChannelRef, PyPid, PyRef, PyTerm};
use super::word_hasher::WordHashing;
use super::{etf, flat_term, nesting};
use crate::beam::atoms;
use crate::beam::caller::{Caller, CallerRef};
use crate::beam::channel_resource::ChannelHandle;
use crate::beam::frame::Frame;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyType};
use rustler::sys::enif_get_tuple;
use rustler::sys::ErlNifTerm;
use rustler::types::map::MapIterator;
use rustler::{Binary, Env, LocalPid, ResourceArc, Term, TermType};
use std::cell::RefCell;
use std::collections::HashMap;

/// How binaries arrive in Python.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum BinaryMode {
    /// `str` when valid UTF-8, else `bytes`.
    Auto,
    /// Always `bytes`: `Channel(ref, binary='bytes')`.
    Bytes,
    /// A read-only `memoryview` over the binary's own bytes, never a copy of them:
    /// `Channel(ref, binary='memoryview')`.
    MemoryView,
}

pub fn to_python<'py>(
    py: Python<'py>,
    term: Term<'_>,
    mode: BinaryMode,
) -> PyResult<Bound<'py, PyAny>> {
    convert(py, term, &Reading { mode, frame: None }, 0)
}

/// The Python object of the term `frame` stores, made on this thread with the help of `env`
/// (which it may leave terms in): a `memoryview` of one of its binaries holds the frame's
/// memory instead of a copy of the binary. Raw, as the C API answers: a new reference, or
/// null with the Python error set (a reader's loop takes it as it is, and copies no
/// `PyResult` per message).
pub fn to_python_from_frame(
    py: Python<'_>,
    env: Env<'_>,
    frame: &Frame,
    mode: BinaryMode,
) -> *mut pyo3::ffi::PyObject {
    let lifetime = ();
    // SAFETY: the same env, presented for this call only, which `frame` outlives.
    let env = unsafe { Env::new(&lifetime, env.as_c_arg()) };
    let reading = Reading {
        mode,
        frame: Some(frame),
    };
    match frame.encoding() {
        Some(encoded) => flat_term::to_python(py, env, encoded, &reading),
        None => flat_term::raw(py, convert(py, frame.read(env), &reading, 0)),
    }
}

/// How a term is being read: its binaries' mode, and what keeps the term in memory.
pub(super) struct Reading<'m> {
    mode: BinaryMode,
    /// Asked for its memory only when a binary is viewed: holding it costs two atomic steps.
    frame: Option<&'m Frame>,
}

impl Reading<'_> {
    /// A binary whose bytes are `bytes`, as this reading's mode says (`term`: see `view`).
    pub(super) fn binary<'py>(
        &self,
        py: Python<'py>,
        bytes: &[u8],
        term: Option<Term<'_>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.mode {
            BinaryMode::MemoryView => self.view(py, bytes, term),
            mode => Ok(binary_object(py, bytes, mode)),
        }
    }

    /// A read-only `memoryview` of `bytes`: it keeps the memory the frame is stored in alive,
    /// or, for a term stored nowhere that outlives this call, a copy of the binary's `term`
    /// in an env of its own (a reference to the same bytes, unless the binary is one of the
    /// small ones the VM always copies). An encoded frame's bytes are always in its memory.
    pub(super) fn view<'py>(
        &self,
        py: Python<'py>,
        bytes: &[u8],
        term: Option<Term<'_>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.frame.and_then(Frame::memory) {
            Some(memory) => binary_view::in_memory(py, memory, bytes),
            None => binary_view::copied(py, term.expect("a binary read from no frame is a term")),
        }
    }
}

/// The Python object of an immediate term (an atom, a local pid or port, a small integer,
/// `[]`), which needs no reading mode.
pub(super) fn immediate<'py>(py: Python<'py>, term: Term<'_>) -> PyResult<Bound<'py, PyAny>> {
    // The caches first, by the term alone: each holds only terms of its own type.
    let key = term.as_c_arg();
    if let Some(object) = cached_pid(py, key).or_else(|| cached_atom(py, key)) {
        return Ok(object);
    }
    match term.get_type() {
        TermType::Atom => atom(py, term),
        TermType::Pid => pid(py, term),
        _ => to_python(py, term, BinaryMode::Auto),
    }
}

fn convert<'py>(
    py: Python<'py>,
    term: Term<'_>,
    reading: &Reading<'_>,
    depth: usize,
) -> PyResult<Bound<'py, PyAny>> {
    nesting::enter(depth, "term")?;
    match term.get_type() {
        TermType::Atom => atom(py, term),
        TermType::Binary => match Binary::from_term(term) {
            Ok(binary) => reading.binary(py, binary.as_slice(), Some(term)),
            Err(_) => opaque(py, term), // a bitstring that is not whole bytes
        },
        TermType::Integer => integer(py, term),
        TermType::Float => Ok(term
            .decode::<f64>()
            .map_err(bad)?
            .into_pyobject(py)?
            .into_any()),
        TermType::List => list(py, term, reading, depth),
        TermType::Tuple => tuple(py, term, reading, depth),
        TermType::Map => map(py, term, reading, depth),
        TermType::Pid => pid(py, term),
        TermType::Ref => reference(py, term),
        _ => opaque(py, term),
    }
}

/// A channel, a caller waiting for a reply (its request is taken), or another reference.
fn reference<'py>(py: Python<'py>, term: Term<'_>) -> PyResult<Bound<'py, PyAny>> {
    if let Ok(channel) = term.decode::<ChannelHandle>() {
        return Ok(Bound::new(py, PyChannelRef { channel })?.into_any());
    }
    if let Ok(caller) = term.decode::<ResourceArc<Caller>>() {
        caller.mark_taken();
        let caller = CallerRef::from_arc(caller);
        return Ok(Bound::new(py, PyCaller { caller })?.into_any());
    }
    Ok(Bound::new(py, PyRef::from_term(term))?.into_any())
}

/// A map as a dict. Keys that are distinct in Erlang but equal in Python (`<<"b">>` and `b`,
/// `1` and `1.0`, `true` and `1`, `undefined`, `nil` and `none`) are an error naming both,
/// never a silent merge.
fn map<'py>(
    py: Python<'py>,
    term: Term<'_>,
    reading: &Reading<'_>,
    depth: usize,
) -> PyResult<Bound<'py, PyAny>> {
    if let Some(converted) = super::elixir_structs::to_python(py, term) {
        return converted;
    }
    let dict = PyDict::new(py);
    for (key, value) in MapIterator::new(term).into_iter().flatten() {
        let py_key = python_key(py, key, reading, depth)?;
        let before = dict.len();
        dict.set_item(&py_key, convert(py, value, reading, depth + 1)?)?;
        if dict.len() == before {
            return Err(key_collision(py, term, key, &py_key, reading, depth));
        }
    }
    Ok(dict.into_any())
}

fn python_key<'py>(
    py: Python<'py>,
    key: Term<'_>,
    reading: &Reading<'_>,
    depth: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let py_key = convert(py, key, reading, depth + 1)?;
    // A list or map key has no hashable Python form: keep it as an opaque term.
    if py_key.hash().is_ok() {
        Ok(py_key)
    } else {
        opaque(py, key)
    }
}

/// The error for `key` of `map`, whose Python form `py_key` equals that of an earlier key.
fn key_collision<'a>(
    py: Python<'_>,
    map: Term<'a>,
    key: Term<'a>,
    py_key: &Bound<'_, PyAny>,
    reading: &Reading<'_>,
    depth: usize,
) -> PyErr {
    let earlier = MapIterator::new(map)
        .into_iter()
        .flatten()
        .find(|(other, _)| {
            *other != key
                && python_key(py, *other, reading, depth)
                    .and_then(|other| other.eq(py_key))
                    .unwrap_or(false)
        });
    let earlier = earlier.map_or_else(|| "another key".to_string(), |(other, _)| printed(other));
    let py_key = py_key
        .repr()
        .map(|text| text.to_string())
        .unwrap_or_else(|_| "?".into());
    PyValueError::new_err(format!(
        "map keys {earlier} and {} both become the Python key {py_key}",
        printed(key)
    ))
}

fn tuple<'py>(
    py: Python<'py>,
    term: Term<'_>,
    reading: &Reading<'_>,
    depth: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let env = term.get_env();
    let mut arity = 0;
    let mut elements = std::mem::MaybeUninit::<*const ErlNifTerm>::uninit();
    // SAFETY: `term` is a tuple of `env`; its elements stay valid while `term` does.
    let elements: &[ErlNifTerm] = unsafe {
        if enif_get_tuple(
            env.as_c_arg(),
            term.as_c_arg(),
            &mut arity,
            elements.as_mut_ptr(),
        ) == 0
        {
            return Err(bad(rustler::Error::BadArg));
        }
        std::slice::from_raw_parts(elements.assume_init(), arity as usize)
    };
    let element = |index: usize| unsafe { Term::new(env, elements[index]) };
    if let [tag, _] = elements {
        if *tag == atoms::bytes().as_c_arg() {
            if let Ok(binary) = Binary::from_term(element(1)) {
                return Ok(PyBytes::new(py, binary.as_slice()).into_any());
            }
        }
        if *tag == atoms::memoryview().as_c_arg() {
            if let Ok(binary) = Binary::from_term(element(1)) {
                return reading.view(py, binary.as_slice(), Some(element(1)));
            }
        }
    }
    // SAFETY: a new tuple of the right size is filled in full before anyone sees it;
    // PyTuple_SetItem steals each item's reference.
    unsafe {
        let tuple = Bound::from_owned_ptr_or_err(py, pyo3::ffi::PyTuple_New(arity as isize))?;
        for index in 0..elements.len() {
            let item = convert(py, element(index), reading, depth + 1)?;
            pyo3::ffi::PyTuple_SetItem(tuple.as_ptr(), index as isize, item.into_ptr());
        }
        Ok(tuple)
    }
}

pub(super) fn binary_object<'py>(
    py: Python<'py>,
    bytes: &[u8],
    mode: BinaryMode,
) -> Bound<'py, PyAny> {
    if mode == BinaryMode::Auto {
        if bytes.is_ascii() {
            if let Some(text) = ascii_string(py, bytes) {
                return text;
            }
        }
        if let Ok(text) = std::str::from_utf8(bytes) {
            return PyString::new(py, text).into_any();
        }
    }
    PyBytes::new(py, bytes).into_any()
}

/// A `str` from bytes known to be ASCII, copied once: the general path validates the bytes
/// twice (here and in CPython's decoder). None if CPython cannot allocate it.
fn ascii_string<'py>(py: Python<'py>, bytes: &[u8]) -> Option<Bound<'py, PyAny>> {
    // SAFETY: a new compact ASCII string of `len` bytes is filled in full before it is shared.
    unsafe {
        let object = pyo3::ffi::PyUnicode_New(bytes.len() as pyo3::ffi::Py_ssize_t, 127);
        if object.is_null() {
            pyo3::ffi::PyErr_Clear();
            return None;
        }
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            pyo3::ffi::PyUnicode_1BYTE_DATA(object),
            bytes.len(),
        );
        Some(Bound::from_owned_ptr(py, object))
    }
}

/// Slots in the per-thread cache of `erlang.Pid` objects.
const PID_CACHE_SLOTS: usize = 64;

thread_local! {
    /// Recently converted local pids, per thread: a stream of requests names the same few
    /// senders over and over, and a `Pid` is immutable, so one object serves them all.
    /// Direct-mapped by the pid's term, which for a local pid is an immediate value.
    static PIDS: RefCell<PidCache> = const { RefCell::new([const { None }; PID_CACHE_SLOTS]) };
}
type PidCache = [Option<(ErlNifTerm, Py<PyAny>)>; PID_CACHE_SLOTS];

/// A local pid's term is immediate (primary tag 0b11) and names that pid for the life of the
/// VM; a remote pid's term is a pointer into its env, so only immediates are cached. The
/// cache's slot for `key`, if it may be cached.
fn pid_slot(key: ErlNifTerm) -> Option<usize> {
    // SAFETY: ErlNifTerm is a transparent wrapper of a machine word.
    let raw: usize = unsafe { std::mem::transmute(key) };
    (raw & 0b11 == 0b11).then_some((raw >> 4) % PID_CACHE_SLOTS)
}

/// The `erlang.Pid` of `key` if this thread converted it lately (only pids are cached).
fn cached_pid<'py>(py: Python<'py>, key: ErlNifTerm) -> Option<Bound<'py, PyAny>> {
    let slot = pid_slot(key)?;
    PIDS.with(|pids| {
        pids.try_borrow().ok().and_then(|pids| match &pids[slot] {
            Some((cached_key, object)) if *cached_key == key => Some(object.bind(py).clone()),
            _ => None,
        })
    })
}

fn pid<'py>(py: Python<'py>, term: Term<'_>) -> PyResult<Bound<'py, PyAny>> {
    let key = term.as_c_arg();
    if let Some(object) = cached_pid(py, key) {
        return Ok(object);
    }
    let slot = pid_slot(key);
    let Ok(pid) = term.decode::<LocalPid>() else {
        return opaque(py, term); // a pid of another node
    };
    let object = Bound::new(py, PyPid::new(pid, term.as_c_arg()))?.into_any();
    if let Some(slot) = slot {
        PIDS.with(|pids| {
            if let Ok(mut pids) = pids.try_borrow_mut() {
                pids[slot] = Some((key, object.clone().unbind()));
            }
        });
    }
    Ok(object)
}

thread_local! {
    /// `erlang.Atom` objects by atom, per thread (no lock on the way). An atom's term is the
    /// same value for the life of the VM, and atoms are few, so each is made once per thread;
    /// messages repeat them all the time.
    static ATOMS: RefCell<AtomCache> = RefCell::new(AtomCache::default());
}
type AtomCache = HashMap<ErlNifTerm, Py<PyAny>, WordHashing>;

/// The object of the atom `key` if this thread converted it before (only atoms are cached).
fn cached_atom<'py>(py: Python<'py>, key: ErlNifTerm) -> Option<Bound<'py, PyAny>> {
    ATOMS.with(|atoms| {
        atoms
            .try_borrow()
            .ok()
            .and_then(|atoms| atoms.get(&key).map(|atom| atom.bind(py).clone()))
    })
}

fn atom<'py>(py: Python<'py>, term: Term<'_>) -> PyResult<Bound<'py, PyAny>> {
    let key = term.as_c_arg();
    if let Some(atom) = cached_atom(py, key) {
        return Ok(atom);
    }
    let object = new_atom(py, term)?;
    ATOMS.with(|atoms| {
        if let Ok(mut atoms) = atoms.try_borrow_mut() {
            atoms.insert(key, object.clone().unbind());
        }
    });
    Ok(object)
}

fn new_atom<'py>(py: Python<'py>, term: Term<'_>) -> PyResult<Bound<'py, PyAny>> {
    let name = match term.atom_to_string() {
        Ok(name) => name,
        Err(_) => {
            let encoded = term.to_binary();
            etf::decode_atom(encoded.as_slice())
                .ok_or_else(|| PyValueError::new_err("unreadable atom"))?
                .to_string()
        }
    };
    match name.as_str() {
        "true" => Ok(true.into_pyobject(py)?.to_owned().into_any()),
        "false" => Ok(false.into_pyobject(py)?.to_owned().into_any()),
        "undefined" | "nil" | "none" => Ok(py.None().into_bound(py)),
        _ => atom_class(py)?.call1((name,)),
    }
}

/// `erlang.Atom`, a `str` subclass defined by the pure-Python part of the package.
pub fn atom_class(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static ATOM: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    ATOM.import(py, "erlang", "Atom")
}

pub(super) fn integer<'py>(py: Python<'py>, term: Term<'_>) -> PyResult<Bound<'py, PyAny>> {
    if let Ok(small) = term.decode::<i64>() {
        return Ok(small.into_pyobject(py)?.into_any());
    }
    if let Ok(unsigned) = term.decode::<u64>() {
        return Ok(unsigned.into_pyobject(py)?.into_any());
    }
    let encoded = term.to_binary();
    let (negative, magnitude) = etf::decode_big(encoded.as_slice())
        .ok_or_else(|| PyValueError::new_err("unreadable integer"))?;
    let int_type = py.get_type::<pyo3::types::PyInt>();
    let value = int_type.call_method1("from_bytes", (PyBytes::new(py, magnitude), "little"))?;
    if negative {
        value.neg()
    } else {
        Ok(value)
    }
}

fn list<'py>(
    py: Python<'py>,
    term: Term<'_>,
    reading: &Reading<'_>,
    depth: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let mut items = Vec::new();
    let mut rest = term;
    while let Ok((head, tail)) = rest.list_get_cell() {
        items.push(head);
        rest = tail;
    }
    if !rest.is_empty_list() {
        return opaque(py, term); // an improper list
    }
    let converted = items
        .into_iter()
        .map(|item| convert(py, item, reading, depth + 1))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(PyList::new(py, converted)?.into_any())
}

fn opaque<'py>(py: Python<'py>, term: Term<'_>) -> PyResult<Bound<'py, PyAny>> {
    Ok(Bound::new(py, PyTerm::from_term(term))?.into_any())
}

fn bad(_: rustler::Error) -> PyErr {
    PyValueError::new_err("malformed term")
}
