//! Python object -> Erlang term.
//!
//! A `str` becomes a binary, never an atom (atoms are not garbage-collected): only
//! `erlang.Atom` makes an atom. An object with no mapping raises `TypeError` naming its type.

use super::lent_bytes::{lent_binary, LEND_AT_LEAST};
use super::term_classes::{printed, PyCaller, PyChannelRef, PyPid, PyRef, PyTerm};
use super::to_python::atom_class;
use super::type_name;
use super::word_hasher::WordHashing;
use super::{elixir_structs, etf, nesting};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple,
};
use rustler::sys::{enif_make_copy, ErlNifTerm};
use rustler::types::tuple::make_tuple;
use rustler::{Atom, Encoder, Env, NewBinary, OwnedEnv, Term};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};

thread_local! {
    /// Atoms made from `erlang.Atom` objects, by object. Making an atom takes the atom table's
    /// lock; a sender sends the same Atom objects again and again (constants, and atoms
    /// received from Erlang, which arrive as the same cached objects), so it looks them up
    /// here. The entry holds the object, so its address is not reused while cached; an atom
    /// term is the same in every env and never freed.
    static ATOMS: RefCell<HashMap<usize, (Py<PyAny>, ErlNifTerm), WordHashing>> =
        RefCell::new(HashMap::default());
}

/// Atom objects cached per thread at most: a program making atoms from ever new strings
/// must not grow the cache without bound.
const ATOM_CACHE_ENTRIES: usize = 1024;

pub fn to_erlang<'a>(env: Env<'a>, object: &Bound<'_, PyAny>) -> PyResult<Term<'a>> {
    convert(env, object, 0)
}

thread_local! {
    /// Set while `to_erlang_plain` converts on this thread.
    static PLAIN_ONLY: Cell<bool> = const { Cell::new(false) };
}

pyo3::create_exception!(
    _py_channel,
    NotPlain,
    pyo3::exceptions::PyException,
    "Internal: the object holds a channel or an opaque term (never reaches Python code)."
);

/// Like [`to_erlang`], for an env other terms live in (a channel's arena, see
/// `Frame::build`): `None`, before anything of it is made, if the object holds a channel or
/// an opaque `erlang.Term` (which may hold one). A term holding a channel keeps it alive, so
/// it must not sit among other terms: the caller converts it in an env of its own.
pub fn to_erlang_plain<'a>(env: Env<'a>, object: &Bound<'_, PyAny>) -> Option<PyResult<Term<'a>>> {
    let outer = PLAIN_ONLY.with(|plain| plain.replace(true));
    let converted = convert(env, object, 0);
    PLAIN_ONLY.with(|plain| plain.set(outer));
    match converted {
        Err(error) if error.is_instance_of::<NotPlain>(object.py()) => None,
        converted => Some(converted),
    }
}

/// In `to_erlang_plain`, an object whose term would hold a resource is refused.
fn refuse_if_plain_only() -> PyResult<()> {
    if PLAIN_ONLY.with(Cell::get) {
        Err(NotPlain::new_err("holds a channel"))
    } else {
        Ok(())
    }
}

fn convert<'a>(env: Env<'a>, object: &Bound<'_, PyAny>, depth: usize) -> PyResult<Term<'a>> {
    nesting::enter(depth, "object")?;
    if object.is_none() {
        return Ok(atom(env, none_atom()));
    }
    if let Ok(flag) = object.cast::<PyBool>() {
        return Ok(flag.is_true().encode(env));
    }
    if let Ok(int) = object.cast::<PyInt>() {
        return integer(env, int);
    }
    if let Ok(float) = object.cast::<PyFloat>() {
        return Ok(float_term(env, float.value()));
    }
    if let Ok(text) = object.cast_exact::<PyString>() {
        return Ok(binary(env, text.to_str()?.as_bytes()));
    }
    if let Ok(text) = object.cast::<PyString>() {
        if object.is_instance(atom_class(object.py())?)? {
            return cached_atom(env, object, text);
        }
        return Ok(binary(env, text.to_str()?.as_bytes()));
    }
    if let Ok(bytes) = object.cast::<PyBytes>() {
        if bytes.as_bytes().len() >= LEND_AT_LEAST {
            return Ok(lent_binary(env, bytes));
        }
        return Ok(binary(env, bytes.as_bytes()));
    }
    if let Ok(bytes) = object.cast::<PyByteArray>() {
        // SAFETY: copied at once, with the GIL held and no Python code run meanwhile, so
        // nothing can resize the bytearray under the copy.
        return Ok(binary(env, unsafe { bytes.as_bytes() }));
    }
    if let Ok(list) = object.cast::<PyList>() {
        let items = list
            .iter()
            .map(|item| convert(env, &item, depth + 1))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(items.encode(env));
    }
    if let Ok(tuple) = object.cast::<PyTuple>() {
        if tuple.len() > MAX_TUPLE_ARITY {
            return Err(PyValueError::new_err(format!(
                "a tuple of {} items is larger than an Erlang tuple can be ({MAX_TUPLE_ARITY})",
                tuple.len()
            )));
        }
        let items = tuple
            .iter()
            .map(|item| convert(env, &item, depth + 1))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(make_tuple(env, &items));
    }
    if let Ok(dict) = object.cast::<PyDict>() {
        return map(env, dict, depth);
    }
    if let Ok(pid) = object.cast::<PyPid>() {
        return Ok(pid.get().pid.encode(env));
    }
    if let Ok(channel) = object.cast::<PyChannelRef>() {
        refuse_if_plain_only()?;
        return Ok(channel.get().channel.encode(env));
    }
    if let Ok(caller) = object.cast::<PyCaller>() {
        return Ok(caller.get().caller.encode(env));
    }
    if let Ok(reference) = object.cast::<PyRef>() {
        return decoded(env, reference.get().to_term(env));
    }
    if let Ok(term) = object.cast::<PyTerm>() {
        refuse_if_plain_only()?;
        return decoded(env, term.get().to_term(env));
    }
    // Dates, times and decimals as Elixir's structs (before the numbers below: a Decimal
    // has __float__).
    if let Some(term) = elixir_structs::to_erlang(env, object) {
        return term;
    }
    // What ML code hands back, after every exact type so nothing above changes: arrays and
    // other buffers as binaries of their bytes, numpy-style scalars as numbers.
    if let Some(bytes) = buffer_binary(env, object)? {
        return Ok(bytes);
    }
    if let Some(int) = index_of(object)? {
        return integer(env, &int);
    }
    if let Some(value) = float_of(object)? {
        return Ok(float_term(env, value));
    }
    Err(PyTypeError::new_err(format!(
        "cannot convert {} to an Erlang term",
        type_name(object)
    )))
}

fn float_term(env: Env<'_>, value: f64) -> Term<'_> {
    if value.is_nan() {
        atom(env, "nan")
    } else if value == f64::INFINITY {
        atom(env, "infinity")
    } else if value == f64::NEG_INFINITY {
        atom(env, "neg_infinity")
    } else {
        value.encode(env)
    }
}

/// The bytes of an object with the buffer protocol (memoryview, array.array, a numpy array),
/// copied once into a binary. `None` for an object without one, or whose buffer has no
/// dimension (a numpy scalar: a number, see `index_of` and `float_of`). A buffer that is not
/// C-contiguous is a TypeError: its bytes are not one run to copy.
fn buffer_binary<'a>(env: Env<'a>, object: &Bound<'_, PyAny>) -> PyResult<Option<Term<'a>>> {
    // SAFETY: the buffer is requested, read while held, and released on every path.
    unsafe {
        if ffi::PyObject_CheckBuffer(object.as_ptr()) == 0 {
            return Ok(None);
        }
        let mut view = std::mem::MaybeUninit::<ffi::Py_buffer>::zeroed();
        // PyBUF_ND: a shape, and no strides, which the exporter refuses unless C-contiguous.
        if ffi::PyObject_GetBuffer(object.as_ptr(), view.as_mut_ptr(), ffi::PyBUF_ND) != 0 {
            let reason = PyErr::fetch(object.py());
            return Err(PyTypeError::new_err(format!(
                "cannot convert {} to a binary: its buffer is not contiguous ({reason}); \
                 copy it first, e.g. bytes(x) or numpy.ascontiguousarray(x)",
                type_name(object)
            )));
        }
        let mut view = view.assume_init();
        let term = if view.ndim == 0 {
            None
        } else {
            let bytes = std::slice::from_raw_parts(view.buf as *const u8, view.len as usize);
            Some(binary(env, bytes))
        };
        ffi::PyBuffer_Release(&mut view);
        Ok(term)
    }
}

/// `operator.index(object)` for an object that has `__index__` (numpy's integer scalars).
fn index_of<'py>(object: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyInt>>> {
    // SAFETY: PyIndex_Check reads the type's slots; PyNumber_Index returns a new reference
    // or NULL with an exception set.
    unsafe {
        if ffi::PyIndex_Check(object.as_ptr()) == 0 {
            return Ok(None);
        }
        let index = ffi::PyNumber_Index(object.as_ptr());
        if index.is_null() {
            let error = PyErr::fetch(object.py());
            // A type with the slot may still refuse (a numpy array of floats): not an integer.
            return if error.is_instance_of::<PyTypeError>(object.py()) {
                Ok(None)
            } else {
                Err(error)
            };
        }
        Ok(Some(
            Bound::from_owned_ptr(object.py(), index).cast_into::<PyInt>()?,
        ))
    }
}

/// `float(object)` for an object that has `__float__` (numpy's float scalars).
fn float_of(object: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
    // SAFETY: reads the type's number slots, which live as long as the type.
    let has_float = unsafe {
        let numbers = (*ffi::Py_TYPE(object.as_ptr())).tp_as_number;
        !numbers.is_null() && (*numbers).nb_float.is_some()
    };
    if !has_float {
        return Ok(None);
    }
    // SAFETY: PyNumber_Float returns a new reference or NULL with an exception set.
    let value =
        unsafe { Bound::from_owned_ptr_or_err(object.py(), ffi::PyNumber_Float(object.as_ptr()))? };
    Ok(Some(value.cast_into::<PyFloat>()?.value()))
}

/// The largest arity the VM allows a tuple.
const MAX_TUPLE_ARITY: usize = (1 << 24) - 1;

/// The most entries a map is built with in one call. On OTP 25, building a larger one at once
/// sorts it with scratch memory that only a scheduler thread has (a crash on a Python
/// thread); a larger map is built entry by entry instead.
const MAP_FROM_ARRAYS_MAX: usize = 128;

/// Entry by entry, each insertion leaves the nodes it replaced behind as garbage (about 0.7 KB
/// an entry at a million entries, 20 times what the map keeps). The map is copied into a
/// fresh env, dropping that garbage, once the entries added since the last copy reach this
/// share of its size: garbage stays within a few times the map, copying costs about nine
/// times its size in all.
const COMPACT_EVERY_SHARE: usize = 8;
const COMPACT_AT_LEAST: usize = 4096;

/// A dict as a map. Keys that are distinct in Python but one term in Erlang (`None` and
/// `Atom('none')`, `b'a'` and `'a'`, `True` and `Atom('true')`, two NaNs) are an error naming
/// both, never a silent merge.
fn map<'a>(env: Env<'a>, dict: &Bound<'_, PyDict>, depth: usize) -> PyResult<Term<'a>> {
    if dict.len() > MAP_FROM_ARRAYS_MAX {
        return large_map(env, dict, depth);
    }
    let mut keys = Vec::with_capacity(dict.len());
    let mut values = Vec::with_capacity(dict.len());
    for (key, value) in dict.iter() {
        keys.push(convert(env, &key, depth + 1)?);
        values.push(convert(env, &value, depth + 1)?);
    }
    Term::map_from_term_arrays(env, &keys, &values).map_err(|_| {
        let later = (1..keys.len()).find(|&later| keys[..later].contains(&keys[later]));
        match later {
            Some(later) => key_collision(dict, later, keys[later]),
            None => bad_map(),
        }
    })
}

/// A map built entry by entry in an env of its own (see `COMPACT_EVERY_SHARE`), then copied
/// into `env`.
fn large_map<'a>(env: Env<'a>, dict: &Bound<'_, PyDict>, depth: usize) -> PyResult<Term<'a>> {
    let mut building = OwnedEnv::new();
    let mut map = building.run(|env| Term::map_new(env).as_c_arg());
    let mut added_since_copy = 0;
    for (index, (key, value)) in dict.iter().enumerate() {
        map = building.run(|env| -> PyResult<ErlNifTerm> {
            // SAFETY: `map` is a term of this env, which is not cleared until it is copied.
            let map = unsafe { Term::new(env, map) };
            let key_term = convert(env, &key, depth + 1)?;
            if map.map_get(key_term).is_ok() {
                return Err(key_collision(dict, index, key_term));
            }
            let value = convert(env, &value, depth + 1)?;
            Ok(map
                .map_put(key_term, value)
                .map_err(|_| bad_map())?
                .as_c_arg())
        })?;
        added_since_copy += 1;
        if added_since_copy >= COMPACT_AT_LEAST.max(index / COMPACT_EVERY_SHARE) {
            let fresh = OwnedEnv::new();
            // SAFETY: copies a live term of `building` into `fresh`; `building` is freed after.
            map = fresh.run(|env| unsafe { enif_make_copy(env.as_c_arg(), map) });
            building = fresh;
            added_since_copy = 0;
        }
    }
    // SAFETY: as above, into the caller's env.
    Ok(unsafe { Term::new(env, enif_make_copy(env.as_c_arg(), map)) })
}

fn bad_map() -> PyErr {
    PyValueError::new_err("a map could not be built")
}

/// The error for the key at `later` in `dict`'s order, which became `term` like a key before
/// it did.
fn key_collision(dict: &Bound<'_, PyDict>, later: usize, term: Term<'_>) -> PyErr {
    let python_keys: Vec<_> = dict.keys().iter().collect();
    let repr = |key: &Bound<'_, PyAny>| {
        key.repr()
            .map(|text| text.to_string())
            .unwrap_or_else(|_| "?".into())
    };
    let earlier = OwnedEnv::new().run(|env| {
        python_keys[..later]
            .iter()
            .find(|key| convert(env, key, 0).is_ok_and(|other| other == term))
            .map(repr)
    });
    PyValueError::new_err(format!(
        "dict keys {} and {} both become the Erlang term {}",
        earlier.unwrap_or_else(|| "another key".into()),
        repr(&python_keys[later]),
        printed(term)
    ))
}

/// What Python's `None` becomes: `none` by default; `nil` suits Elixir callers.
static NONE_AS: AtomicU8 = AtomicU8::new(0);
const NONE_NAMES: [&str; 3] = ["none", "nil", "undefined"];

/// Chooses the atom `None` converts to; false for a name other than none, nil, undefined.
pub fn set_none_atom(name: &str) -> bool {
    match NONE_NAMES.iter().position(|candidate| *candidate == name) {
        Some(index) => {
            NONE_AS.store(index as u8, Ordering::Relaxed);
            true
        }
        None => false,
    }
}

/// The name of the atom Python's None becomes.
pub(super) fn none_atom_name() -> &'static str {
    none_atom()
}

fn none_atom() -> &'static str {
    NONE_NAMES[NONE_AS.load(Ordering::Relaxed) as usize]
}

fn atom<'a>(env: Env<'a>, name: &str) -> Term<'a> {
    Atom::from_str(env, name)
        .expect("a short ASCII atom name")
        .encode(env)
}

/// The atom of an `erlang.Atom` object, from this thread's cache when it was seen before.
/// The atom term of an `erlang.Atom` object, for `flat_term.rs`: the same per-thread cache.
pub(super) fn atom_term(
    object: &Bound<'_, PyAny>,
    text: &Bound<'_, PyString>,
) -> PyResult<ErlNifTerm> {
    let key = object.as_ptr() as usize;
    if let Some(atom) = ATOMS.with(|atoms| atoms.borrow().get(&key).map(|(_, atom)| *atom)) {
        return Ok(atom);
    }
    OwnedEnv::new().run(|env| cached_atom(env, object, text).map(|atom| atom.as_c_arg()))
}

/// The term of a plain atom (`none`, `true`), the same in every env.
pub(super) fn named_atom_term(name: &str) -> ErlNifTerm {
    OwnedEnv::new().run(|env| atom(env, name).as_c_arg())
}

fn cached_atom<'a>(
    env: Env<'a>,
    object: &Bound<'_, PyAny>,
    text: &Bound<'_, PyString>,
) -> PyResult<Term<'a>> {
    let key = object.as_ptr() as usize;
    let cached = ATOMS.with(|atoms| atoms.borrow().get(&key).map(|(_, atom)| *atom));
    if let Some(atom) = cached {
        // SAFETY: an atom term is valid in every env.
        return Ok(unsafe { Term::new(env, atom) });
    }
    let atom = atom_from_text(env, text.to_str()?)?;
    ATOMS.with(|atoms| {
        let mut atoms = atoms.borrow_mut();
        if atoms.len() >= ATOM_CACHE_ENTRIES {
            atoms.clear();
        }
        atoms.insert(key, (object.clone().unbind(), atom.as_c_arg()));
    });
    Ok(atom)
}

fn atom_from_text<'a>(env: Env<'a>, text: &str) -> PyResult<Term<'a>> {
    if let Ok(atom) = Atom::from_utf8_bytes(env, text.as_bytes()) {
        return Ok(atom.encode(env));
    }
    // Outside Latin-1, which OTP 25's NIF API cannot make: go through the external format.
    if text.chars().count() > 255 {
        return Err(PyValueError::new_err("an atom has at most 255 characters"));
    }
    // SAFETY (trusted: the safe mode refuses to make new atoms): the bytes are a well-formed
    // atom encoded just above.
    unsafe { env.binary_to_term_trusted(&etf::encode_atom(text)) }
        .map(|(atom, _)| atom)
        .ok_or_else(|| PyValueError::new_err(format!("the atom {text:?} cannot be made")))
}

fn binary<'a>(env: Env<'a>, bytes: &[u8]) -> Term<'a> {
    let mut binary = NewBinary::new(env, bytes.len());
    binary.as_mut_slice().copy_from_slice(bytes);
    binary.into()
}

pub(super) fn integer<'a>(env: Env<'a>, int: &Bound<'_, PyInt>) -> PyResult<Term<'a>> {
    if let Ok(small) = int.extract::<i64>() {
        return Ok(small.encode(env));
    }
    if let Ok(unsigned) = int.extract::<u64>() {
        return Ok(unsigned.encode(env));
    }
    let negative = int.lt(0)?;
    let magnitude = if negative {
        int.neg()?
    } else {
        int.clone().into_any()
    };
    let bits: usize = magnitude.call_method0("bit_length")?.extract()?;
    let bytes = magnitude.call_method1("to_bytes", (bits.div_ceil(8), "little"))?;
    let bytes = bytes.cast::<PyBytes>()?.as_bytes();
    // SAFETY: a well-formed bignum encoded just above.
    unsafe { env.binary_to_term_trusted(&etf::encode_big(negative, bytes)) }
        .map(|(term, _)| term)
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "an integer of {bits} bits is too large for an Erlang term"
            ))
        })
}

fn decoded<'a>(env: Env<'a>, term: Option<Term<'a>>) -> PyResult<Term<'a>> {
    let _ = env;
    term.ok_or_else(|| PyValueError::new_err("the term no longer decodes in this VM"))
}
