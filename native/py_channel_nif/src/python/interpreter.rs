//! Starting the embedded CPython, once, on a worker thread (never on a scheduler).
//!
//! Which Python this is was chosen by `py_loader` (Erlang) when the NIF loaded: it opened that
//! Python's libpython with its symbols global (which the C extension modules Python dlopens
//! need) and handed over the executable, the venv and the path entries ([`Setup`]).
//!
//! Embedding in the BEAM needs a few things a standalone `python3` gets for free:
//! - the interpreter finds its standard library and venv from its program name, and makes it
//!   `sys.executable` (for `multiprocessing`, `venv`, `pip`): that is the chosen executable,
//!   not the BEAM, so a Python moved to another path still starts;
//! - the BEAM ignores SIGCHLD, which makes `subprocess.run` wait forever: reset to default;
//! - the `erlang` package ships in our priv dir, the application's own Python files where
//!   its `python_path` says: put them on `sys.path`;
//! - `sys.stdout` and `sys.stderr` write to Erlang (`python/output.rs`);
//! - threads started by Python code get as much stack as our workers
//!   (`threading.stack_size`), so conversions nest as deep on them;
//! - large allocations are slow under the VM's malloc settings: the interpreter's raw
//!   allocator keeps its large blocks (`allocator.rs`).
//!
//! The interpreter is never finalized: a worker parked in `detach` during `Py_Finalize` can
//! hang forever, and the OS reclaims everything at VM exit.

use crate::python::{allocator, native_module, thread_state};
use pyo3::prelude::*;
use pyo3::types::PyList;
use std::sync::OnceLock;

static SETUP: OnceLock<Setup> = OnceLock::new();
static STARTED: OnceLock<Result<(), String>> = OnceLock::new();

/// What `py_loader` chose when the NIF loaded.
pub struct Setup {
    /// The configured `python3` (as the probe reported its `sys.executable`).
    pub executable: String,
    /// Where the `erlang` Python package lives (our priv dir).
    pub erlang_package: String,
    /// Directories put ahead on `sys.path` (app env `python_path`).
    pub python_path: Vec<String>,
    /// A virtualenv activated at start (app env `venv`), already checked to be of this minor.
    pub venv: Option<String>,
}

pub fn set_setup(setup: Setup) {
    let _ = SETUP.set(setup);
}

/// Starts the interpreter if it is not running yet. Call from a worker thread only.
///
/// The thread that starts it keeps Python's main thread state, which is never deleted, even
/// if that worker exits. Starting it on a thread of its own that never runs a job was tried:
/// `py_channel:call/3`'s p99 went from 3.3-3.6 to 9.5-11.7 us (`make bench` table 5, A/B x2),
/// with the channel's Python reader on a worker state rather than the main one, for reasons
/// not found yet.
pub fn ensure_started() -> Result<(), String> {
    STARTED.get_or_init(start).clone()
}

fn start() -> Result<(), String> {
    let setup = SETUP
        .get()
        .ok_or("the NIF was loaded without a Python setup")?;
    // SAFETY: resetting a signal disposition; the BEAM does not rely on ignoring SIGCHLD for
    // its own children (it reaps port programs through its own mechanism).
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
    // A worker keeps a thread state once it runs a job (`thread_state`), and lets go of it
    // before it ends.
    crate::worker_pool::at_thread_end(thread_state::let_go_for_this_thread);
    native_module::register_native_module();
    pre_initialize();
    allocator::install();
    initialize(&setup.executable)?;
    Python::initialize(); // pyo3's own bookkeeping: the interpreter already runs
    Python::attach(|py| configure(py, setup).map_err(|error| describe(py, error)))
}

fn configure(py: Python<'_>, setup: &Setup) -> PyResult<()> {
    let sys = py.import("sys")?;
    let sys_path = sys.getattr("path")?.cast_into::<PyList>()?;
    for entry in setup.python_path.iter().rev() {
        sys_path.insert(0, entry)?;
    }
    sys_path.insert(0, &setup.erlang_package)?;
    // Threads Python code starts get the workers' stack, not the platform's 8 MiB, so terms
    // nest as deep on them (code may still choose another size).
    py.import("threading")?
        .call_method1("stack_size", (crate::worker_pool::WORKER_STACK_BYTES,))?;
    // Import now, so a broken install fails at start with a clear error, not mid-call.
    let erlang = py.import("erlang")?;
    if let Some(venv) = &setup.venv {
        erlang.call_method1("_activate_venv", (venv,))?;
    }
    // print() reaches the caller's group leader (and is never lost to a closed stdout).
    py.import("erlang._output")?.call_method0("install")?;
    // logging records no handler of the program takes reach Erlang's logger.
    py.import("erlang._logging")?.call_method0("install")?;
    make_builtin_exception_atoms(py)
}

/// Makes an atom of each built-in exception's name (a bounded set), so those always come
/// back as atoms, whether or not some Erlang module mentions them.
fn make_builtin_exception_atoms(py: Python<'_>) -> PyResult<()> {
    let base = py.get_type::<pyo3::exceptions::PyBaseException>();
    let builtins = py.import("builtins")?;
    rustler::OwnedEnv::new().run(|env| {
        for (name, value) in builtins.dict().iter() {
            let is_exception = value
                .cast::<pyo3::types::PyType>()
                .is_ok_and(|class| class.is_subclass(&base).unwrap_or(false));
            if is_exception {
                let _ = rustler::Atom::from_str(env, name.extract::<&str>()?);
            }
        }
        Ok(())
    })
}

/// The first step of starting the interpreter, with the settings `Py_InitializeEx` uses by
/// itself (its "compat" configuration), done apart so the raw allocator can be installed
/// before the rest (`allocator.rs`).
fn pre_initialize() {
    // SAFETY: a zeroed PyPreConfig set as CPython's _PyPreConfig_InitCompatConfig sets it.
    unsafe {
        let mut config: pyo3::ffi::PyPreConfig = std::mem::zeroed();
        config._config_init = 1; // _PyConfig_INIT_COMPAT
        config.isolated = -1;
        config.use_environment = -1;
        config.configure_locale = 1;
        config.utf8_mode = -1;
        config.dev_mode = -1;
        let _ = pyo3::ffi::Py_PreInitialize(&config);
    }
}

/// Starts the interpreter as `Py_InitializeEx(0)` would (no signal handlers, the
/// environment's PYTHON* variables honoured), but with the configured executable as its
/// program name, from which it finds its prefix, standard library and venv.
fn initialize(executable: &str) -> Result<(), String> {
    let executable = std::ffi::CString::new(executable)
        .map_err(|_| format!("the Python executable {executable:?} contains a NUL byte"))?;
    // SAFETY: a PyConfig initialized by CPython, filled, used once and cleared, on the one
    // thread that starts the interpreter (`STARTED` runs this once).
    unsafe {
        let mut config = std::mem::MaybeUninit::<pyo3::ffi::PyConfig>::zeroed();
        pyo3::ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let config = config.assume_init_mut();
        config.install_signal_handlers = 0;
        config.parse_argv = 0;
        config.configure_c_stdio = 0;
        let mut status = pyo3::ffi::PyConfig_SetBytesString(
            config,
            &mut config.program_name,
            executable.as_ptr(),
        );
        if pyo3::ffi::PyStatus_Exception(status) == 0 {
            status = pyo3::ffi::Py_InitializeFromConfig(config);
        }
        pyo3::ffi::PyConfig_Clear(config);
        if pyo3::ffi::PyStatus_Exception(status) != 0 {
            let message = if status.err_msg.is_null() {
                "unknown error".into()
            } else {
                std::ffi::CStr::from_ptr(status.err_msg).to_string_lossy()
            };
            return Err(format!(
                "Python failed to start from {}: {message}",
                executable.to_string_lossy()
            ));
        }
        // As pyo3 does after starting it: no thread holds the GIL until one attaches.
        pyo3::ffi::PyEval_SaveThread();
    }
    Ok(())
}

fn describe(py: Python<'_>, error: PyErr) -> String {
    let traceback = error
        .traceback(py)
        .and_then(|traceback| traceback.format().ok())
        .unwrap_or_default();
    format!("Python failed to start: {error}\n{traceback}")
}
