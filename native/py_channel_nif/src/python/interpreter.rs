//! Starting the embedded CPython, once, on a worker thread (never on a scheduler).
//!
//! Embedding in the BEAM needs a few things a standalone `python3` gets for free:
//! - C extension modules (math, _socket, sqlite3, ...) resolve `Py*` symbols globally, but
//!   the NIF was loaded with RTLD_LOCAL: libpython is re-opened RTLD_GLOBAL first;
//! - the BEAM ignores SIGCHLD, which makes `subprocess.run` wait forever: reset to default;
//! - `sys.executable` would be the BEAM: point it at the real interpreter (for
//!   `multiprocessing`, `venv`, `pip`);
//! - the `erlang` package ships in our priv dir: put it on `sys.path`;
//! - `sys.stdout` and `sys.stderr` write to Erlang (`python/output.rs`);
//! - threads started by Python code get as much stack as our workers
//!   (`threading.stack_size`), so conversions nest as deep on them;
//! - large allocations are slow under the VM's malloc settings: the interpreter's raw
//!   allocator keeps its large blocks (`allocator.rs`).
//!
//! The interpreter is never finalized: a worker parked in `detach` during `Py_Finalize` can
//! hang forever, and the OS reclaims everything at VM exit.

use crate::python::{allocator, native_module};
use pyo3::prelude::*;
use pyo3::types::PyList;
use std::sync::OnceLock;

static PYTHON_PATH: OnceLock<String> = OnceLock::new();
static STARTED: OnceLock<Result<(), String>> = OnceLock::new();

/// Where the `erlang` Python package lives (set when the NIF loads).
pub fn set_python_path(path: String) {
    let _ = PYTHON_PATH.set(path);
}

/// Starts the interpreter if it is not running yet. Call from a worker thread only.
pub fn ensure_started() -> Result<(), String> {
    STARTED.get_or_init(start).clone()
}

fn start() -> Result<(), String> {
    reopen_libpython_global();
    // SAFETY: resetting a signal disposition; the BEAM does not rely on ignoring SIGCHLD for
    // its own children (it reaps port programs through its own mechanism).
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
    native_module::register_native_module();
    pre_initialize();
    allocator::install();
    Python::initialize();
    Python::attach(|py| configure(py).map_err(|error| describe(py, error)))
}

fn configure(py: Python<'_>) -> PyResult<()> {
    let sys = py.import("sys")?;
    if let Some(path) = PYTHON_PATH.get() {
        let sys_path = sys.getattr("path")?.cast_into::<PyList>()?;
        sys_path.insert(0, path)?;
    }
    let executable = real_executable(py)?;
    sys.setattr("executable", &executable)?;
    sys.setattr("_base_executable", &executable)?;
    // Threads Python code starts get the workers' stack, not the platform's 8 MiB, so terms
    // nest as deep on them (code may still choose another size).
    py.import("threading")?
        .call_method1("stack_size", (crate::worker_pool::WORKER_STACK_BYTES,))?;
    // Import now, so a broken install fails at start with a clear error, not mid-call.
    py.import("erlang")?;
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

/// `sys.executable` of an embedded interpreter is the host program; the real one sits in
/// `sys.base_prefix/bin` under its versioned or plain name.
fn real_executable(py: Python<'_>) -> PyResult<String> {
    let sys = py.import("sys")?;
    let prefix: String = sys.getattr("base_prefix")?.extract()?;
    let (major, minor): (u8, u8) = (
        sys.getattr("version_info")?.get_item(0)?.extract()?,
        sys.getattr("version_info")?.get_item(1)?.extract()?,
    );
    let candidates = [
        format!("{prefix}/bin/python{major}.{minor}"),
        format!("{prefix}/bin/python{major}"),
        format!("{prefix}/bin/python"),
    ];
    Ok(candidates
        .iter()
        .find(|candidate| std::path::Path::new(candidate).exists())
        .unwrap_or(&candidates[0])
        .clone())
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

/// Makes libpython's symbols visible to the extension modules Python will dlopen.
fn reopen_libpython_global() {
    // SAFETY: dladdr on the address of a libpython function, then dlopen of the file it names
    // with RTLD_NOLOAD (it is already loaded) to promote it to RTLD_GLOBAL.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let symbol = pyo3::ffi::Py_IsInitialized as *const libc::c_void;
        if libc::dladdr(symbol, &mut info) != 0 && !info.dli_fname.is_null() {
            libc::dlopen(
                info.dli_fname,
                libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_GLOBAL,
            );
        }
    }
}

fn describe(py: Python<'_>, error: PyErr) -> String {
    let traceback = error
        .traceback(py)
        .and_then(|traceback| traceback.format().ok())
        .unwrap_or_default();
    format!("Python failed to start: {error}\n{traceback}")
}
