//! Where Python's `print` goes: `sys.stdout` and `sys.stderr` are writers of the `erlang`
//! package (`erlang._output`) that hand whole lines to `write_output` here. A job's lines go to
//! the group leader of the Erlang process it runs for, as an `io_request`, so an IEx shell, a
//! piped `erl -noshell`, `capture_io` and a remote shell all see them. Lines written by a
//! thread that runs no job (one Python code started itself) go to the node's own standard
//! output or error.

use crate::beam::atoms;
use crate::python::callbacks;
use pyo3::prelude::*;
use rustler::{Encoder, LocalPid, OwnedEnv};
use std::cell::Cell;

thread_local! {
    /// The group leader of the job this thread runs, if it runs one.
    static TARGET: Cell<Option<LocalPid>> = const { Cell::new(None) };
}

/// Runs `job` with its output going to `target`.
pub fn directed_to<R>(target: Option<LocalPid>, job: impl FnOnce() -> R) -> R {
    TARGET.with(|current| current.set(target));
    let result = job();
    TARGET.with(|current| current.set(None));
    result
}

/// Writes `text` (whole lines, or what is left at a flush) for `stream` 1 (stdout) or 2
/// (stderr).
#[pyfunction]
pub fn _write_output(py: Python<'_>, stream: i32, text: &str) {
    let target = TARGET.with(Cell::get);
    let sent = match (target, callbacks::runtime()) {
        // The io protocol's reply goes to `py_runtime`, which ignores it: a print never waits.
        (Some(group_leader), Some(runtime)) => OwnedEnv::new()
            .send_and_clear(&group_leader, |env| {
                let request = (atoms::put_chars(), atoms::unicode(), text);
                let reply_as = env.make_ref();
                (atoms::io_request(), runtime, reply_as, request).encode(env)
            })
            .is_ok(),
        _ => false,
    };
    if !sent {
        let fd = if stream == 2 { 2 } else { 1 };
        py.detach(|| {
            // SAFETY: writing a live buffer to the process's own standard descriptor.
            unsafe { libc::write(fd, text.as_ptr().cast(), text.len()) };
        });
    }
}
