//! The native part of the Python package `erlang`, importable as `_py_channel`: sending to
//! Erlang processes, calling registered Erlang functions, and the term classes. The pure
//! Python part (`python/erlang/`) re-exports it.

use crate::beam::atoms;
use crate::beam::caller::{Keep, NotSent};
use crate::conversion::term_classes::{PyCaller, PyChannelRef, PyPid, PyRef, PyTerm};
use crate::conversion::{exporter_type, flat_term, to_erlang, to_python, type_name, BinaryMode};
use crate::python::callbacks::{self, PendingCall};
use crate::python::cancel::{self, Cancelled};
use crate::python::native_channel::{ChannelClosed, NativeChannel};
use crate::python::output;
use pyo3::exceptions::{PyException, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use rustler::sys::enif_send;
use rustler::{Encoder, Env, LocalPid, OwnedEnv, Term};
use std::cell::RefCell;
use std::ptr;

// A RuntimeError, as erlang_python's `reply` raised when a send failed: code catching that
// still catches this.
pyo3::create_exception!(
    _py_channel,
    ProcessError,
    PyRuntimeError,
    "The Erlang process is not alive."
);
pyo3::create_exception!(
    _py_channel,
    CallError,
    PyException,
    "An Erlang function called with erlang.call failed or does not exist."
);

/// Sends `term` to the Erlang process `pid`, like `Pid ! Term`. A process on another node
/// (which Python sees as the opaque term of its pid) is sent to through the `py_runtime`
/// process, as the NIF API sends only to local processes: in order, and, as `!` to another
/// node, without knowing whether it is alive.
#[pyfunction]
fn send(pid: &Bound<'_, PyAny>, term: &Bound<'_, PyAny>) -> PyResult<()> {
    if let Ok(remote) = pid.cast::<PyTerm>() {
        return send_to_other_node(remote.get(), term);
    }
    let pid = pid
        .cast::<PyPid>()
        .map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "send() needs an erlang.Pid, not {}",
                type_name(pid)
            ))
        })?
        .get()
        .pid;
    let delivered = send_converted(&pid, |env| to_erlang(env, term))?;
    if delivered {
        Ok(())
    } else {
        Err(ProcessError::new_err("the process is not alive"))
    }
}

/// `{py_forward, Pid, Term}` to `py_runtime`, which sends `Term` to `Pid` on its node.
fn send_to_other_node(pid: &PyTerm, term: &Bound<'_, PyAny>) -> PyResult<()> {
    let Some(runtime) = callbacks::runtime() else {
        return Err(ProcessError::new_err(
            "sending to a process on another node needs the py_channel application started",
        ));
    };
    let sent = send_converted(&runtime, |env| {
        let pid = pid
            .to_term(env)
            .filter(|pid| pid.get_type() == rustler::TermType::Pid)
            .ok_or_else(|| {
                pyo3::exceptions::PyTypeError::new_err("send() needs an erlang.Pid, not a term")
            })?;
        Ok((atoms::py_forward(), pid, to_erlang(env, term)?).encode(env))
    })?;
    if sent {
        Ok(())
    } else {
        Err(ProcessError::new_err(
            "the py_channel application is not running",
        ))
    }
}

/// `reply(to, term)` of `erlang.channel`. To a pid: `send` that answers True, as
/// erlang_python's does. To an `erlang.Caller` (a request of `py_channel:call/3`): the
/// caller's reply, True if it was delivered, False if the caller no longer waits (it timed
/// out or exited); a second reply is a ValueError. Native, so a consumer's
/// `for to, term in ch: reply(to, term)` runs no bytecode of its own between taking a term
/// and sending it: a cancel lands before the take or after the send.
#[pyfunction]
fn reply(to: &Bound<'_, PyAny>, term: &Bound<'_, PyAny>) -> PyResult<bool> {
    let Ok(waiting) = to.cast::<PyCaller>() else {
        return send(to, term).map(|()| true);
    };
    let caller = &waiting.get().caller;
    if let Some(not_sent) = caller.not_waiting() {
        return not_sent_reply(not_sent);
    }
    // A looking caller takes a reply of small plain data from its caller object, encoded:
    // a message from this thread (not a scheduler) costs half a microsecond more.
    if caller.is_looking() {
        let kept = flat_term::with_scratch(|encoded| {
            PyResult::Ok(flat_term::encode(term, encoded)?.map(|_| caller.keep(encoded)))
        })?;
        match kept {
            Some(Keep::Kept) => return Ok(true),
            Some(Keep::NotSent(not_sent)) => return not_sent_reply(not_sent),
            Some(Keep::Send) | None => {}
        }
    }
    let sent = send_claimed(
        &caller.pid,
        |env| Ok(caller.message(env, to_erlang(env, term)?)),
        || caller.claim_send(),
    )?;
    match sent {
        Ok(delivered) => Ok(delivered),
        Err(not_sent) => not_sent_reply(not_sent),
    }
}

/// A caller that gave up gets nothing, and that is no error; a second reply is one.
fn not_sent_reply(not_sent: NotSent) -> PyResult<bool> {
    match not_sent {
        NotSent::GaveUp => Ok(false),
        NotSent::AlreadyReplied => Err(PyValueError::new_err(
            "this call was already replied to: a caller gets one reply",
        )),
    }
}

/// Builds a message with `build` in this thread's send env and sends it to `pid`: true if
/// delivered, false if `pid` is not alive. When `build` fails nothing is sent.
pub(super) fn send_converted(
    pid: &LocalPid,
    build: impl for<'a> FnOnce(Env<'a>) -> PyResult<Term<'a>>,
) -> PyResult<bool> {
    send_claimed(pid, build, || Ok::<(), ()>(())).map(|sent| sent == Ok(true))
}

/// `send_converted`, once `claim` agrees, asked after the message is built (a failed build
/// claims nothing) and right before the send: `Err` with its refusal, and nothing is sent.
fn send_claimed<E>(
    pid: &LocalPid,
    build: impl for<'a> FnOnce(Env<'a>) -> PyResult<Term<'a>>,
    claim: impl FnOnce() -> Result<(), E>,
) -> PyResult<Result<bool, E>> {
    with_send_env(|owned| {
        let message = owned.run(|env| build(env).map(|term| (env.as_c_arg(), term.as_c_arg())));
        let delivered = message.map(|(env, term)| {
            claim().map(|()| {
                // SAFETY: the message is a term of this process-independent env, sent from a
                // thread that is not a scheduler (Python never runs on one); the env is
                // cleared right after, as enif_send requires before its next use.
                unsafe { enif_send(ptr::null_mut(), pid.as_c_arg(), env, term) != 0 }
            })
        });
        owned.clear();
        delivered
    })
}

thread_local! {
    /// Reused for every message this thread sends: an env costs about a kilobyte to set up.
    static SEND_ENV: RefCell<OwnedEnv> = RefCell::new(OwnedEnv::new());
}

fn with_send_env<R>(send: impl FnOnce(&mut OwnedEnv) -> R) -> R {
    SEND_ENV.with(|env| match env.try_borrow_mut() {
        Ok(mut env) => send(&mut env),
        // Re-entered while converting (a __repr__ that sends, say): an env of its own.
        Err(_) => send(&mut OwnedEnv::new()),
    })
}

/// Calls the Erlang function registered as `name` with `args`; returns its result.
#[pyfunction]
#[pyo3(signature = (name, *args))]
fn call(py: Python<'_>, name: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
    let Some(runtime) = callbacks::runtime() else {
        return Err(CallError::new_err(
            "the py_channel application is not running",
        ));
    };
    let (pending, handle) = PendingCall::new();
    let handle = rustler::ResourceArc::new(handle);
    let delivered = send_converted(&runtime, |env| {
        let name = to_erlang(env, name)?;
        let args = args
            .iter()
            .map(|arg| to_erlang(env, &arg))
            .collect::<PyResult<Vec<_>>>()?;
        Ok((atoms::py_callback(), handle.clone(), name, args).encode(env))
    })?;
    drop(handle);
    if !delivered {
        return Err(CallError::new_err("the py_runtime process is not alive"));
    }
    let answer = py
        .detach(|| pending.wait())
        .ok_or_else(|| cancel::cancelled_in_wait(py))?
        .map_err(CallError::new_err)?;
    answer.env.run(|env| {
        let term = answer.term.load(env);
        let (tag, value): (rustler::Atom, rustler::Term) = term
            .decode()
            .map_err(|_| CallError::new_err("malformed callback answer"))?;
        if tag == atoms::ok() {
            Ok(to_python(py, value, BinaryMode::Auto)?.unbind())
        } else {
            let reason = to_python(py, value, BinaryMode::Auto)?;
            Err(CallError::new_err(reason.unbind()))
        }
    })
}

#[pymodule]
fn _py_channel(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(send, module)?)?;
    module.add_function(wrap_pyfunction!(reply, module)?)?;
    module.add_function(wrap_pyfunction!(call, module)?)?;
    module.add_function(wrap_pyfunction!(output::_write_output, module)?)?;
    module.add_function(wrap_pyfunction!(output::_flush_output, module)?)?;
    module.add_function(wrap_pyfunction!(output::_log, module)?)?;
    module.add_class::<PyPid>()?;
    module.add("Binary", exporter_type(module.py())?)?;
    module.add_class::<PyRef>()?;
    module.add_class::<PyTerm>()?;
    module.add_class::<PyChannelRef>()?;
    module.add_class::<PyCaller>()?;
    module.add_class::<NativeChannel>()?;
    module.add("ChannelClosed", module.py().get_type::<ChannelClosed>())?;
    module.add("ProcessError", module.py().get_type::<ProcessError>())?;
    module.add("CallError", module.py().get_type::<CallError>())?;
    module.add("Cancelled", module.py().get_type::<Cancelled>())?;
    Ok(())
}

/// Makes `import _py_channel` work. Must run before the interpreter starts.
pub fn register_native_module() {
    pyo3::append_to_inittab!(_py_channel);
}
