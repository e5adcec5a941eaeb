//! Where Python's output goes (and its `logging` records: `_log`): `sys.stdout` and `sys.stderr` are writers of the `erlang`
//! package (`erlang._output`) that hand every write to `_write_output` here. Whole lines of a
//! job go to the group leader of the Erlang process it runs for, as an `io_request`, so an
//! IEx shell, a piped `erl -noshell`, `capture_io` and a remote shell all see them. Lines
//! written by a thread that runs no job (one Python code started itself) go to the node's
//! own standard output or error. A partial line waits, per thread and stream, for its newline
//! or the end of the job.

use crate::beam::atoms;
use crate::python::callbacks;
use crate::python::native_module::send_converted;
use pyo3::prelude::*;
use rustler::{Encoder, LocalPid};
use std::cell::{Cell, RefCell};

thread_local! {
    /// The group leader of the job this thread runs, if it runs one.
    static TARGET: Cell<Option<LocalPid>> = const { Cell::new(None) };
    /// Text written without its newline yet: stdout's, then stderr's.
    static PENDING: RefCell<[String; 2]> = const { RefCell::new([String::new(), String::new()]) };
}

/// Runs `job` with its output going to `target`; what it left without a newline is sent
/// when it ends.
pub fn directed_to<R>(py: Python<'_>, target: Option<LocalPid>, job: impl FnOnce() -> R) -> R {
    TARGET.with(|current| current.set(target));
    let result = job();
    for stream in [1, 2] {
        _flush_output(py, stream);
    }
    TARGET.with(|current| current.set(None));
    result
}

/// Writes `text` to `stream` (1 stdout, 2 stderr): the complete lines now, the rest later.
#[pyfunction]
pub fn _write_output(py: Python<'_>, stream: i32, text: &str) {
    let complete = PENDING.with(|pending| {
        let Ok(mut pending) = pending.try_borrow_mut() else {
            return Some(text.to_string());
        };
        let buffer = &mut pending[index(stream)];
        match text.rfind('\n') {
            None => {
                buffer.push_str(text);
                None
            }
            Some(end) => {
                let mut lines = std::mem::take(buffer);
                lines.push_str(&text[..=end]);
                buffer.push_str(&text[end + 1..]);
                Some(lines)
            }
        }
    });
    if let Some(lines) = complete {
        emit(py, stream, &lines);
    }
}

/// Sends what `stream` holds without a newline.
#[pyfunction]
pub fn _flush_output(py: Python<'_>, stream: i32) {
    let rest = PENDING.with(|pending| {
        pending
            .try_borrow_mut()
            .map(|mut pending| std::mem::take(&mut pending[index(stream)]))
            .unwrap_or_default()
    });
    if !rest.is_empty() {
        emit(py, stream, &rest);
    }
}

fn index(stream: i32) -> usize {
    usize::from(stream == 2)
}

fn emit(py: Python<'_>, stream: i32, text: &str) {
    let target = TARGET.with(Cell::get);
    let sent = match (target, callbacks::runtime()) {
        // The io protocol's reply goes to `py_runtime`, which ignores it: a print never waits.
        (Some(group_leader), Some(runtime)) => send_converted(&group_leader, |env| {
            let request = (atoms::put_chars(), atoms::unicode(), text);
            let reply_as = env.make_ref();
            Ok((atoms::io_request(), runtime, reply_as, request).encode(env))
        })
        .unwrap_or(false),
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

/// A `logging` record for Erlang's `logger` (see `erlang._logging`): `level` is one of
/// debug, info, warning, error, critical (anything else is logged as error).
#[pyfunction]
pub fn _log(level: &str, name: &str, message: &str) {
    let Some(runtime) = callbacks::runtime() else {
        return;
    };
    let level = match level {
        "debug" => atoms::debug(),
        "info" => atoms::info(),
        "warning" => atoms::warning(),
        "critical" => atoms::critical(),
        _ => atoms::error(),
    };
    let _ = send_converted(&runtime, |env| {
        Ok((atoms::py_logging(), level, name, message).encode(env))
    });
}
