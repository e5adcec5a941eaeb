//! Python classes for Erlang terms with no Python counterpart: `erlang.Pid`, `erlang.Ref`,
//! `erlang.Term` (ports, funs, improper lists, odd bitstrings), `erlang.ChannelRef` and
//! `erlang.Caller`.
//! Each converts back to exactly the term it came from.

use crate::beam::caller::CallerRef;
use crate::beam::channel_resource::{ChannelHandle, ChannelResource};
use pyo3::prelude::*;
use rustler::{Encoder, Env, LocalPid, OwnedEnv, Term};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

/// A local Erlang process id. `erlang.send(pid, term)` and `reply(pid, term)` take one.
#[pyclass(frozen, module = "erlang", name = "Pid")]
pub struct PyPid {
    pub pid: LocalPid,
    /// The pid's term: a local pid is an immediate, the same value in every env, which
    /// `flat_term.rs` puts in the terms it encodes.
    pub term: rustler::sys::ErlNifTerm,
}

impl PyPid {
    /// `term` is the local pid `pid` as a term.
    pub fn new(pid: LocalPid, term: rustler::sys::ErlNifTerm) -> PyPid {
        PyPid { pid, term }
    }
}

#[pymethods]
impl PyPid {
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyPid>()
            .is_ok_and(|other| other.get().pid == self.pid)
    }

    fn __hash__(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        self.pid.hash(&mut hasher);
        hasher.finish()
    }

    fn __repr__(&self) -> String {
        let text = OwnedEnv::new().run(|env| printed(self.pid.encode(env)));
        format!("Pid({text})")
    }
}

/// An Erlang reference, or another term Python has no type for, kept in external term format.
macro_rules! encoded_term_class {
    ($rust:ident, $python:literal, $doc:literal) => {
        #[doc = $doc]
        #[pyclass(frozen, module = "erlang", name = $python)]
        pub struct $rust {
            pub etf: Vec<u8>,
        }

        impl $rust {
            pub fn from_term(term: Term<'_>) -> Self {
                $rust {
                    etf: term.to_binary().as_slice().to_vec(),
                }
            }

            pub fn to_term<'a>(&self, env: Env<'a>) -> Option<Term<'a>> {
                env.binary_to_term(&self.etf).map(|(term, _)| term)
            }
        }

        #[pymethods]
        impl $rust {
            fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
                other
                    .cast::<$rust>()
                    .is_ok_and(|other| other.get().etf == self.etf)
            }

            fn __hash__(&self) -> u64 {
                let mut hasher = DefaultHasher::new();
                self.etf.hash(&mut hasher);
                hasher.finish()
            }

            fn __repr__(&self) -> String {
                let text = OwnedEnv::new().run(|env| match self.to_term(env) {
                    Some(term) => printed(term),
                    None => "?".to_string(),
                });
                format!("{}({})", $python, text)
            }
        }
    };
}

encoded_term_class!(PyRef, "Ref", "An Erlang reference.");
encoded_term_class!(
    PyTerm,
    "Term",
    "An Erlang term with no Python counterpart (port, fun, improper list, bitstring); \
     it converts back to the same term."
);

/// A channel passed to Python. `erlang.channel.Channel(ref)` reads from it.
#[pyclass(frozen, module = "erlang", name = "ChannelRef")]
pub struct PyChannelRef {
    pub channel: ChannelHandle,
}

#[pymethods]
impl PyChannelRef {
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyChannelRef>().is_ok_and(|other| {
            std::ptr::eq::<ChannelResource>(&*other.get().channel, &*self.channel)
        })
    }

    fn __hash__(&self) -> u64 {
        &*self.channel as *const ChannelResource as u64
    }

    fn __repr__(&self) -> String {
        format!("ChannelRef({:p})", &*self.channel)
    }
}

/// An Erlang process waiting in `py_channel:call/3`: a request from it comes as
/// `(caller, request)`, and `reply(caller, term)` answers it, once.
#[pyclass(frozen, module = "erlang", name = "Caller")]
pub struct PyCaller {
    pub caller: CallerRef,
}

#[pymethods]
impl PyCaller {
    /// The process that waits.
    #[getter]
    fn pid(&self) -> PyPid {
        let term = OwnedEnv::new().run(|env| self.caller.pid.encode(env).as_c_arg());
        // A local pid is an immediate: the same term in every env.
        PyPid::new(self.caller.pid, term)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyCaller>()
            .is_ok_and(|other| other.get().caller.as_raw() == self.caller.as_raw())
    }

    fn __hash__(&self) -> u64 {
        self.caller.as_raw() as u64
    }

    fn __repr__(&self) -> String {
        let pid = OwnedEnv::new().run(|env| printed(self.caller.pid.encode(env)));
        format!("Caller({pid})")
    }
}

/// The term about as `io_lib:format("~p")` would print it, for reprs and messages.
pub fn printed(term: Term<'_>) -> String {
    // The VM's printer writes floats as 1.000000e+00; Erlang code reads 1.0.
    if term.get_type() == rustler::TermType::Float {
        if let Ok(float) = term.decode::<f64>() {
            return format!("{float:?}");
        }
    }
    let mut buffer = vec![0u8; 256];
    // SAFETY: enif_snprintf writes at most buffer.len() bytes, NUL-terminated, and %T prints
    // a term of `term`'s env.
    let written = unsafe {
        rustler::sys::enif_snprintf!(
            buffer.as_mut_ptr() as *mut _,
            buffer.len(),
            c"%T".as_ptr(),
            term.as_c_arg()
        )
    };
    buffer.truncate(written.clamp(0, 255) as usize);
    String::from_utf8_lossy(&buffer).into_owned()
}
