//! Python object -> a flat encoding of its term, for the plain data Python code sends to a
//! channel; the reader builds the term from it in its own env ([`decode`]). The encoding is
//! private to this VM and lives no longer than the frame it is in.
//!
//! A Python sender that builds its terms with the NIF API allocates them from the BEAM: each
//! binary takes a heap fragment of its own (`enif_make_new_binary` allocates on the env's
//! process, not from the env's heap), and a thread that is not a scheduler gets it from a
//! shared allocator instance behind a mutex. Encoded here into memory of its own, the term
//! costs the sender no BEAM allocation at all; the reader builds it on its own heap, as it
//! would copy a term there anyway. Atoms and pids travel as their terms (the same value in
//! every env), so the reader looks nothing up; external term format would make it take the
//! atom table's lock twice for a `{request, Pid, Data}`.
//!
//! Only plain data takes this path: None, booleans, integers of 64 bits, finite floats,
//! `str`, `erlang.Atom`, bytes, bytearray, lists, tuples and pids, up to `ENCODED_MAX_BYTES`.
//! For anything else (a dict, a bignum, nan, a channel, a ref, an opaque term, a large
//! binary, which is better shared by reference) `encode` answers `Ok(None)` and the term goes
//! through `to_erlang.rs`, which also says what cannot be converted.
//!
//! The size counted against `max_size` is worked out as `beam/term_scan.rs` counts the
//! decoded term, so a term weighs the same whichever language sent it.

use super::nesting;
use super::term_classes::PyPid;
use super::to_erlang::{atom_term, named_atom_term, none_atom_name};
use super::to_python::atom_class;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::PyTypeInfo;
use rustler::sys::{
    enif_make_double, enif_make_int64, enif_make_list_from_array, enif_make_tuple_from_array,
    enif_make_uint64, ErlNifTerm,
};
use rustler::{Env, NewBinary, Term};
use smallvec::SmallVec;
use std::cell::{RefCell, UnsafeCell};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

const ATOM: u8 = 0;
const INT: u8 = 1;
const UINT: u8 = 2;
const FLOAT: u8 = 3;
const BINARY: u8 = 4;
const LIST: u8 = 5;
const TUPLE: u8 = 6;

/// As `term_scan.rs` counts: a word, and a binary's two words of header.
const WORD: usize = 8;

/// The largest encoding this path makes: a larger term goes through `to_erlang.rs`, where a
/// large binary is counted by reference and shared with the reader without a second copy
/// (and shows in `erlang:memory(binary)` while queued).
const ENCODED_MAX_BYTES: usize = 4096;

thread_local! {
    /// The atoms None and the booleans become: looked up once per thread.
    static NAMED_ATOMS: RefCell<Vec<(&'static str, ErlNifTerm)>> = const { RefCell::new(Vec::new()) };
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
            return Ok(binary(
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
            return Ok(binary(object.cast_unchecked::<PyBytes>().as_bytes(), out));
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
        word(FLOAT, value.to_bits(), out);
        return Ok(Some(2 * WORD));
    }
    if let Ok(text) = object.cast::<PyString>() {
        if !object.is_instance(atom_class(object.py())?)? {
            return Ok(binary(text.to_str()?.as_bytes(), out));
        }
        return atom(object, text, out);
    }
    if let Ok(bytes) = object.cast::<PyBytes>() {
        return Ok(binary(bytes.as_bytes(), out));
    }
    if let Ok(bytes) = object.cast::<PyByteArray>() {
        // SAFETY: copied at once, with the GIL held and no Python code run meanwhile, so
        // nothing can resize the bytearray under the copy.
        return Ok(binary(unsafe { bytes.as_bytes() }, out));
    }
    if let Ok(list) = object.cast::<PyList>() {
        if out.len() + list.len() > ENCODED_MAX_BYTES {
            return Ok(None);
        }
        count(LIST, list.len(), out);
        // A cell is two words: the head's is counted with the head, this is the tail's; []
        // counts a word.
        let mut size = if list.is_empty() {
            WORD
        } else {
            WORD * list.len()
        };
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
        word(INT, small as u64, out);
        return Some(WORD);
    }
    int.extract::<u64>().ok().map(|unsigned| {
        word(UINT, unsigned, out);
        2 * WORD
    })
}

fn tuple(items: &Bound<'_, PyTuple>, out: &mut Vec<u8>, depth: usize) -> PyResult<Option<usize>> {
    if out.len() + items.len() > ENCODED_MAX_BYTES {
        return Ok(None);
    }
    count(TUPLE, items.len(), out);
    let mut size = WORD;
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
    word(ATOM, term_bits(atom_term(object, text)?), out);
    Ok(Some(WORD))
}

fn pid(process: &Bound<'_, PyPid>, out: &mut Vec<u8>) -> Option<usize> {
    word(ATOM, term_bits(process.get().term), out);
    Some(WORD)
}

/// An immediate term's bits (atoms and local pids are the same value in every env; the
/// encoding lives no longer than the VM).
fn term_bits(term: ErlNifTerm) -> u64 {
    // SAFETY: ErlNifTerm is a transparent word.
    unsafe { std::mem::transmute::<ErlNifTerm, usize>(term) as u64 }
}

fn term_from_bits(bits: u64) -> ErlNifTerm {
    // SAFETY: the bits of an immediate term `term_bits` gave.
    unsafe { std::mem::transmute::<usize, ErlNifTerm>(bits as usize) }
}

fn word(tag: u8, value: u64, out: &mut Vec<u8>) {
    out.push(tag);
    out.extend_from_slice(&value.to_ne_bytes());
}

fn count(tag: u8, items: usize, out: &mut Vec<u8>) {
    out.push(tag);
    out.extend_from_slice(&(items as u32).to_ne_bytes());
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
    word(ATOM, term_bits(term), out);
    Some(WORD)
}

fn binary(bytes: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    if out.len() + bytes.len() > ENCODED_MAX_BYTES {
        return None;
    }
    count(BINARY, bytes.len(), out);
    out.extend_from_slice(bytes);
    Some(2 * WORD + bytes.len())
}

/// Builds in `env` the term `encode` encoded. Iterative: the nesting `encode` allows would
/// overflow a scheduler's stack if this recursed.
pub fn decode<'a>(env: Env<'a>, mut bytes: &[u8]) -> Term<'a> {
    // Containers being filled: kind, items still to come, where their items start in `built`.
    // On the stack for the usual small message: no allocation on the reader's scheduler.
    let mut open: SmallVec<[(u8, usize, usize); 8]> = SmallVec::new();
    let mut built: SmallVec<[ErlNifTerm; 16]> = SmallVec::new();
    let raw_env = env.as_c_arg();
    loop {
        let (&tag, rest) = bytes.split_first().expect("a well-formed encoding");
        bytes = rest;
        let value = match tag {
            ATOM | INT | UINT | FLOAT => {
                let (word, rest) = bytes.split_at(8);
                bytes = rest;
                let word = u64::from_ne_bytes(word.try_into().expect("eight bytes"));
                // SAFETY (all four): plain values made into terms of `env`.
                match tag {
                    ATOM => term_from_bits(word),
                    INT => unsafe { enif_make_int64(raw_env, word as i64) },
                    UINT => unsafe { enif_make_uint64(raw_env, word) },
                    _ => unsafe { enif_make_double(raw_env, f64::from_bits(word)) },
                }
            }
            _ => {
                let (length, rest) = bytes.split_at(4);
                bytes = rest;
                let length = u32::from_ne_bytes(length.try_into().expect("four bytes")) as usize;
                if tag == BINARY {
                    let (data, rest) = bytes.split_at(length);
                    bytes = rest;
                    let mut binary = NewBinary::new(env, length);
                    binary.as_mut_slice().copy_from_slice(data);
                    Term::from(binary).as_c_arg()
                } else if length > 0 {
                    open.push((tag, length, built.len()));
                    continue;
                } else {
                    close(env, tag, &[])
                }
            }
        };
        built.push(value);
        // Close every container this item completed.
        while let Some((tag, remaining, start)) = open.last_mut() {
            *remaining -= 1;
            if *remaining > 0 {
                break;
            }
            let (tag, start) = (*tag, *start);
            open.pop();
            let container = close(env, tag, &built[start..]);
            built.truncate(start);
            built.push(container);
        }
        if open.is_empty() {
            // SAFETY: made in `env` above.
            return unsafe { Term::new(env, built[0]) };
        }
    }
}

fn close(env: Env<'_>, tag: u8, items: &[ErlNifTerm]) -> ErlNifTerm {
    // SAFETY: `items` are terms of `env`.
    unsafe {
        if tag == LIST {
            enif_make_list_from_array(env.as_c_arg(), items.as_ptr(), items.len() as u32)
        } else {
            enif_make_tuple_from_array(env.as_c_arg(), items.as_ptr(), items.len() as u32)
        }
    }
}

/// Where a sender thread's encodings are kept until their frames are read: chunks written one
/// after another, each freed when the last frame in it is dropped. A fresh allocation per
/// frame, freed by the reader on another thread, never finds memory freed on its own thread:
/// glibc served every one from its slow path, a third of a Python sender's time (perf).
pub struct EncodedSlice {
    chunk: NonNull<Chunk>,
    start: u32,
    length: u32,
}

// SAFETY: the slice's bytes are written before the frame holding it is queued, and never
// again; the chunk lives until its last slice and its writer are gone (`Chunk::release`).
unsafe impl Send for EncodedSlice {}
unsafe impl Sync for EncodedSlice {}

struct Chunk {
    bytes: Box<[UnsafeCell<u8>]>,
    /// Slices handed out and not yet dropped, plus those its writer still holds in reserve.
    references: AtomicUsize,
}

const CHUNK_BYTES: usize = 16 * 1024;
/// References a chunk starts with, handed out one per slice: counting each slice in would
/// share the count's cache line with the reader dropping slices.
const CHUNK_SLICES: usize = 256;

impl Chunk {
    fn fresh(capacity: usize) -> NonNull<Chunk> {
        let bytes = (0..capacity).map(|_| UnsafeCell::new(0)).collect();
        let chunk = Box::new(Chunk {
            bytes,
            references: AtomicUsize::new(CHUNK_SLICES),
        });
        NonNull::from(Box::leak(chunk))
    }

    /// Gives `count` references back; the last one frees the chunk.
    ///
    /// # Safety
    /// The caller owns `count` references to a live chunk.
    unsafe fn release(chunk: NonNull<Chunk>, count: usize) {
        if count == 0 {
            // Nothing held: the chunk may already be gone with its last slice.
            return;
        }
        // SAFETY: live while the caller holds references.
        let left = unsafe { chunk.as_ref() }
            .references
            .fetch_sub(count, Ordering::AcqRel);
        if left == count {
            // SAFETY: no reference is left; made by Box::leak in `fresh`.
            drop(unsafe { Box::from_raw(chunk.as_ptr()) });
        }
    }
}

/// This thread's chunk being filled.
struct Writer {
    chunk: NonNull<Chunk>,
    used: usize,
    /// References still held in reserve for the next slices.
    reserved: usize,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // SAFETY: the writer owns its reserved references.
        unsafe { Chunk::release(self.chunk, self.reserved) };
    }
}

thread_local! {
    static WRITER: RefCell<Option<Writer>> = const { RefCell::new(None) };
}

impl EncodedSlice {
    /// A copy of `encoded` in this thread's current chunk.
    pub fn copy_of(encoded: &[u8]) -> EncodedSlice {
        WRITER.with(|writer| {
            let Ok(mut writer) = writer.try_borrow_mut() else {
                return EncodedSlice::alone(encoded);
            };
            let full = writer.as_ref().is_none_or(|current| {
                current.reserved == 0 || current.used + encoded.len() > CHUNK_BYTES
            });
            if full {
                // The old writer gives its reserve back as it is replaced.
                *writer = Some(Writer {
                    chunk: Chunk::fresh(CHUNK_BYTES.max(encoded.len())),
                    used: 0,
                    reserved: CHUNK_SLICES,
                });
            }
            let current = writer.as_mut().expect("a writer was just made");
            let slice = EncodedSlice::write(current.chunk, current.used, encoded);
            current.used += encoded.len();
            current.reserved -= 1;
            slice
        })
    }

    /// In a chunk of its own (re-entered while this thread's writer is in use).
    fn alone(encoded: &[u8]) -> EncodedSlice {
        let chunk = Chunk::fresh(encoded.len());
        let slice = EncodedSlice::write(chunk, 0, encoded);
        // SAFETY: the chunk starts with CHUNK_SLICES references; the slice keeps one.
        unsafe { Chunk::release(chunk, CHUNK_SLICES - 1) };
        slice
    }

    /// Copies `encoded` into `chunk` at `at`, past anything handed out before, with one of
    /// the caller's references.
    fn write(chunk: NonNull<Chunk>, at: usize, encoded: &[u8]) -> EncodedSlice {
        // SAFETY: the range is this writer's alone, inside the chunk, and not yet read by
        // anyone: readers only see a slice after its frame is queued.
        unsafe {
            let start = UnsafeCell::raw_get(chunk.as_ref().bytes.as_ptr().add(at));
            std::ptr::copy_nonoverlapping(encoded.as_ptr(), start, encoded.len());
        }
        EncodedSlice {
            chunk,
            start: at as u32,
            length: encoded.len() as u32,
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: written before this slice existed, never again; the chunk lives as long
        // as this slice.
        unsafe {
            let bytes = &self.chunk.as_ref().bytes;
            let start = UnsafeCell::raw_get(bytes.as_ptr().add(self.start as usize));
            std::slice::from_raw_parts(start, self.length as usize)
        }
    }
}

impl Drop for EncodedSlice {
    fn drop(&mut self) {
        // SAFETY: the slice owns one reference.
        unsafe { Chunk::release(self.chunk, 1) };
    }
}
