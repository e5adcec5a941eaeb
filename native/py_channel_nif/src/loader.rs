//! The NIF of the Erlang module `py_loader`: it opens the libpython chosen at start, with its
//! symbols global, before `py_loader` loads the NIF built for that Python's minor version
//! (whose `Py*` symbols are left for the loader to resolve). It links no Python itself, so it
//! loads on any machine, and a libpython that cannot be opened becomes an `{error, Reason}`
//! instead of a node that does not boot.

use rustler::{Binary, Encoder, Env, Term};
use std::ffi::{CStr, CString};

mod atoms {
    rustler::atoms! { ok, error }
}

/// Opens the shared library at `path` (RTLD_NOW | RTLD_GLOBAL) and keeps it open for the
/// life of the VM: `ok`, or `{error, Message}` with the dynamic loader's own words.
#[rustler::nif(schedule = "DirtyIo")]
fn open_global<'a>(env: Env<'a>, path: Binary<'a>) -> Term<'a> {
    let Ok(path) = CString::new(path.as_slice()) else {
        return (atoms::error(), "the path contains a NUL byte").encode(env);
    };
    // SAFETY: dlopen of a path, then dlerror on this thread right after a failure. The handle
    // is never closed: the interpreter it holds lives as long as the VM.
    unsafe {
        let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        if !handle.is_null() {
            return atoms::ok().encode(env);
        }
        let message = libc::dlerror();
        let message = if message.is_null() {
            "the library could not be opened".to_string()
        } else {
            CStr::from_ptr(message).to_string_lossy().into_owned()
        };
        (atoms::error(), message).encode(env)
    }
}

rustler::init!("py_loader");
