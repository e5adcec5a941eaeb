//! `memoryview`s over Erlang binaries: what `Channel(ref, binary='memoryview')` and a
//! `{memoryview, Binary}` term arrive as. The view reads the binary's own bytes, however large,
//! and keeps them alive (with the memory the term is stored in, or a reference of its own to
//! the binary) until the last view of it, and every object made from one (such as
//! `numpy.frombuffer(view)`), is gone. Releasing it is freeing an env, which any thread may do:
//! no scheduler is involved, let alone one taking the GIL.

use crate::beam::frame::TermMemory;
use pyo3::ffi;
use pyo3::prelude::*;
use rustler::{Binary, OwnedEnv, Term};
use std::os::raw::{c_int, c_void};

/// The exporter behind such a `memoryview` (its `.obj`): read-only, one dimension of bytes.
/// One is made per binary read, so their allocations are kept for reuse (`freelist`).
#[pyclass(frozen, freelist = 64, module = "erlang", name = "Binary")]
pub struct BinaryView {
    /// Keeps `data` alive.
    _holder: Holder,
    data: *const u8,
    len: usize,
}

// SAFETY: the bytes are immutable and live as long as the holder, which may be dropped on
// any thread.
unsafe impl Send for BinaryView {}
unsafe impl Sync for BinaryView {}

enum Holder {
    /// The memory a queued term was stored in: its binaries stay as they were.
    Stored(#[expect(dead_code, reason = "held only to keep the bytes alive")] TermMemory),
    /// An env holding a copy of the binary's term.
    Env(#[expect(dead_code, reason = "held only to keep the bytes alive")] OwnedEnv),
}

impl BinaryView {
    /// A view of `bytes`, which live in `memory`.
    pub fn in_memory(memory: TermMemory, bytes: &[u8]) -> BinaryView {
        BinaryView {
            _holder: Holder::Stored(memory),
            data: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// A view of `binary`, copied as a term into an env of its own.
    pub fn copied(binary: Term<'_>) -> BinaryView {
        let env = OwnedEnv::new();
        let saved = env.save(binary);
        let (data, len) = env.run(|env| {
            let bytes = Binary::from_term(saved.load(env))
                .expect("a binary stays a binary")
                .as_slice();
            (bytes.as_ptr(), bytes.len())
        });
        BinaryView {
            _holder: Holder::Env(env),
            data,
            len,
        }
    }
}

#[pymethods]
impl BinaryView {
    /// The buffer protocol: the binary's bytes, read-only (a writable request is a
    /// BufferError).
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        // SAFETY: `view` is the caller's to fill; the bytes outlive every view of them, as
        // each holds a reference to this object (set by PyBuffer_FillInfo). Releasing a view
        // only drops that reference: no `__releasebuffer__`, so CPython calls none.
        let filled = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                this.data as *mut c_void,
                this.len as ffi::Py_ssize_t,
                1,
                flags,
            )
        };
        if filled == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    fn __len__(&self) -> usize {
        self.len
    }

    fn __repr__(&self) -> String {
        format!("<erlang.Binary of {} bytes>", self.len)
    }
}
