//! Large Python `bytes` lent to Erlang without a copy: the binary Erlang gets is a resource
//! binary over the object's own buffer, which the resource keeps alive until the VM frees the
//! binary. `bytes` are immutable, so the bytes cannot change under Erlang.
//!
//! The VM frees the binary on whatever thread drops its last reference, often a scheduler
//! during a garbage collection. Dropping the object there must not take the GIL: pyo3 then
//! only records the pending release, and the next thread that attaches to the interpreter
//! (any job, any reader) performs it.

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rustler::{Env, Resource, ResourceArc, Term};

/// Below this, one copy costs less than a resource (an allocation and a reference count).
pub const LEND_AT_LEAST: usize = 1 << 20;

pub struct LentBytes {
    bytes: Py<PyBytes>,
}

#[rustler::resource_impl]
impl Resource for LentBytes {}

/// A binary of `bytes`' own buffer, keeping the object alive.
pub fn lent_binary<'a>(env: Env<'a>, bytes: &Bound<'_, PyBytes>) -> Term<'a> {
    let lent = ResourceArc::new(LentBytes {
        bytes: bytes.clone().unbind(),
    });
    lent.make_binary(env, |lent| {
        // SAFETY: a `bytes` object's buffer never moves or changes while the object lives,
        // and the resource holds the object for as long as the binary exists.
        unsafe {
            let object = lent.bytes.as_ptr();
            let data = pyo3::ffi::PyBytes_AsString(object) as *const u8;
            let len = pyo3::ffi::PyBytes_Size(object) as usize;
            std::slice::from_raw_parts(data, len)
        }
    })
    .into()
}
