//! `memoryview`s over Erlang binaries: what `Channel(ref, binary='memoryview')` and a
//! `{memoryview, Binary}` term arrive as. The view reads the binary's own bytes, however large,
//! and keeps them alive (with the memory the term is stored in, or a reference of its own to
//! the binary) until the last view of it, and every object made from one (such as
//! `numpy.frombuffer(view)`), is gone. Releasing it is freeing an env, which any thread may do:
//! no scheduler is involved, let alone one taking the GIL.
//!
//! The exporter behind each view (its `.obj`, an `erlang.Binary`) is a type made here with
//! the C API rather than a pyo3 class: one is made per binary read, and pyo3's trampolines
//! and its freelist's mutex were about a fifth of a memoryview reader's time (perf). Freed
//! exporters are kept for reuse, under the GIL.

use crate::beam::frame::TermMemory;
use pyo3::ffi;
use pyo3::prelude::*;
use rustler::{Binary, OwnedEnv, Term};
use std::cell::UnsafeCell;
use std::mem::{size_of, MaybeUninit};
use std::os::raw::{c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

/// What keeps a view's bytes alive.
enum Holder {
    /// The memory a queued term was stored in: its binaries stay as they were.
    Stored(#[expect(dead_code, reason = "held only to keep the bytes alive")] TermMemory),
    /// An env holding a copy of the binary's term.
    Env(#[expect(dead_code, reason = "held only to keep the bytes alive")] OwnedEnv),
}

/// An `erlang.Binary` object: read-only, one dimension of bytes.
#[repr(C)]
struct Exporter {
    base: ffi::PyObject,
    data: *const u8,
    len: usize,
    holder: MaybeUninit<Holder>,
}

/// The type object, made once (a heap type, held for the life of the interpreter).
struct ExporterType(*mut ffi::PyTypeObject);

// SAFETY: a type object, used only with the GIL held.
unsafe impl Send for ExporterType {}
unsafe impl Sync for ExporterType {}

static EXPORTER_TYPE: OnceLock<ExporterType> = OnceLock::new();

/// Freed exporters kept for reuse; only touched with the GIL held (no free-threaded builds).
struct FreeList(UnsafeCell<Vec<*mut Exporter>>);

// SAFETY: see above: the GIL serializes every use.
unsafe impl Sync for FreeList {}

static FREE: FreeList = FreeList(UnsafeCell::new(Vec::new()));
const FREE_MAX: usize = 64;

/// The `erlang.Binary` type, for the native module to export.
pub fn exporter_type(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let type_object = type_object(py)?;
    // SAFETY: a live type object; the new reference is the bound's.
    unsafe { Bound::from_borrowed_ptr_or_err(py, type_object.cast()) }
}

fn type_object(py: Python<'_>) -> PyResult<*mut ffi::PyTypeObject> {
    if let Some(made) = EXPORTER_TYPE.get() {
        return Ok(made.0);
    }
    let slot = |slot, pfunc: *mut c_void| ffi::PyType_Slot { slot, pfunc };
    let doc = c"What a memoryview of an Erlang binary exports: read-only bytes.";
    let mut slots = [
        slot(ffi::Py_bf_getbuffer, get_buffer as *mut c_void),
        slot(ffi::Py_tp_dealloc, dealloc as *mut c_void),
        slot(ffi::Py_tp_repr, repr as *mut c_void),
        slot(ffi::Py_sq_length, length as *mut c_void),
        slot(ffi::Py_tp_doc, doc.as_ptr() as *mut c_void),
        slot(0, ptr::null_mut()),
    ];
    let mut spec = ffi::PyType_Spec {
        name: c"erlang.Binary".as_ptr(),
        basicsize: size_of::<Exporter>() as c_int,
        itemsize: 0,
        flags: (ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_DISALLOW_INSTANTIATION) as _,
        slots: slots.as_mut_ptr(),
    };
    // SAFETY: a valid spec; the GIL is held. The type is never freed.
    let made = unsafe { ffi::PyType_FromSpec(&mut spec) };
    if made.is_null() {
        return Err(PyErr::fetch(py));
    }
    // Made under the GIL: no other thread can be here at once.
    let _ = EXPORTER_TYPE.set(ExporterType(made.cast()));
    Ok(EXPORTER_TYPE.get().expect("just set").0)
}

/// A read-only `memoryview` of `bytes`, which `holder` keeps alive.
fn view<'py>(py: Python<'py>, holder: Holder, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let type_object = type_object(py)?;
    // SAFETY: with the GIL held: an exporter from the free list (initialised again, which
    // takes a reference to its type) or newly allocated; its fields are written before
    // anything can see it. The memoryview takes its own reference to it; ours is dropped.
    unsafe {
        let free = &mut *FREE.0.get();
        let exporter = match free.pop() {
            Some(exporter) => {
                ffi::PyObject_Init(exporter.cast(), type_object);
                exporter
            }
            None => {
                let made = ffi::PyType_GenericAlloc(type_object, 0).cast::<Exporter>();
                if made.is_null() {
                    return Err(PyErr::fetch(py));
                }
                made
            }
        };
        (*exporter).data = bytes.as_ptr();
        (*exporter).len = bytes.len();
        (*exporter).holder.write(holder);
        let exporter = Bound::from_owned_ptr(py, exporter.cast::<ffi::PyObject>());
        Bound::from_owned_ptr_or_err(py, ffi::PyMemoryView_FromObject(exporter.as_ptr()))
    }
}

/// A view of `bytes`, which live in `memory`.
pub fn in_memory<'py>(
    py: Python<'py>,
    memory: TermMemory,
    bytes: &[u8],
) -> PyResult<Bound<'py, PyAny>> {
    view(py, Holder::Stored(memory), bytes)
}

/// A view of `binary`, copied as a term into an env of its own.
pub fn copied<'py>(py: Python<'py>, binary: Term<'_>) -> PyResult<Bound<'py, PyAny>> {
    let env = OwnedEnv::new();
    let saved = env.save(binary);
    let (data, len) = env.run(|env| {
        let bytes = Binary::from_term(saved.load(env))
            .expect("a binary stays a binary")
            .as_slice();
        (bytes.as_ptr(), bytes.len())
    });
    // SAFETY: the bytes live in `env`, which the view holds.
    let bytes = unsafe { std::slice::from_raw_parts(data, len) };
    view(py, Holder::Env(env), bytes)
}

/// The buffer protocol: the binary's bytes, read-only (a writable request is a BufferError).
/// Releasing a view only drops its reference to the exporter: no `bf_releasebuffer`.
unsafe extern "C" fn get_buffer(
    exporter: *mut ffi::PyObject,
    view: *mut ffi::Py_buffer,
    flags: c_int,
) -> c_int {
    // SAFETY: CPython calls this with a live exporter of this type and a view to fill; the
    // bytes outlive every view, each of which holds a reference to the exporter.
    unsafe {
        let this = exporter.cast::<Exporter>();
        ffi::PyBuffer_FillInfo(
            view,
            exporter,
            (*this).data as *mut c_void,
            (*this).len as ffi::Py_ssize_t,
            1,
            flags,
        )
    }
}

unsafe extern "C" fn dealloc(object: *mut ffi::PyObject) {
    // SAFETY: CPython calls this once, with the GIL held, when the last reference is gone:
    // the holder is dropped (freeing an env or an arena reference may happen on any thread),
    // and the object goes to the free list or back to the allocator. Either way it no
    // longer holds a reference to its (heap) type.
    unsafe {
        let exporter = object.cast::<Exporter>();
        (*exporter).holder.assume_init_drop();
        let type_object = ffi::Py_TYPE(object);
        let free = &mut *FREE.0.get();
        if free.len() < FREE_MAX {
            free.push(exporter);
        } else if let Some(release) = (*type_object).tp_free {
            release(object.cast());
        }
        ffi::Py_DECREF(type_object.cast());
    }
}

unsafe extern "C" fn repr(object: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: a live exporter; the text is copied into a new str.
    unsafe {
        let text = format!(
            "<erlang.Binary of {} bytes>",
            (*object.cast::<Exporter>()).len
        );
        ffi::PyUnicode_FromStringAndSize(text.as_ptr().cast(), text.len() as ffi::Py_ssize_t)
    }
}

unsafe extern "C" fn length(object: *mut ffi::PyObject) -> ffi::Py_ssize_t {
    // SAFETY: a live exporter.
    unsafe { (*object.cast::<Exporter>()).len as ffi::Py_ssize_t }
}
