//! py_channel's NIF: a backpressured channel from BEAM processes to embedded CPython.
//!
//! The data path, step by step:
//!
//! 0. load: `py_loader` (Erlang) asks the configured `python3` what it is, opens its
//!    libpython with global symbols (`loader.rs`, the NIF of `py_loader`, built apart), and
//!    loads this NIF as built for that Python's minor; `load` below hands the executable,
//!    venv and path entries to `python/interpreter.rs`, which starts Python on first use.
//! 1. send: `py_channel:send/2` -> `beam/channel_nifs.rs` (`send`) -> `beam/frame.rs`: small
//!    plain data encoded by `beam/flat_term.rs` into `beam/flat_chunks.rs`, anything else
//!    measured by `beam/term_scan.rs` (size, channels inside) and copied into an arena env ->
//!    `channel/` (admitted against `max_size`, queued) -> `beam/task_wake.rs` (a parked reader
//!    woken).
//! 2. read from Python: `python/native_channel.rs` (`Channel.receive`, `for msg in ch`; waits
//!    with the GIL released) -> `channel/` -> `conversion/to_python.rs` (an encoded frame built
//!    by `conversion/flat_term.rs`, a term read where it is stored; with
//!    `binary='memoryview'`, `conversion/binary_view.rs` views its binaries there, holding the
//!    frame's memory).
//! 3. read from Erlang: `py_channel:recv/2` -> `beam/channel_nifs.rs` (`try_receive`, `wait`:
//!    the process parks, monitored by `beam/park_watch.rs`, and gets a message) -> `channel/`.
//! 4. reply: `reply(pid, term)` -> `python/native_module.rs` (`send`) ->
//!    `conversion/to_erlang.rs` (a large `bytes` lent, not copied: `conversion/lent_bytes.rs`)
//!    -> `enif_send`. A request of `py_channel:call/3` carries its caller
//!    (`beam/caller.rs`): `reply(caller, term)` claims it before the send, so a caller that
//!    gave up gets nothing. A caller looks for its reply before it sleeps (`py_answer`): a
//!    reply of small plain data is then kept in the caller, encoded (`beam/kept_bytes.rs`
//!    when small enough), and built by the caller, not sent. How long it looks depends on
//!    where the channel's reader spins (`caller_look_on`, `Channel::where_reader_spins`).
//! 5. run Python: `py:call/eval/exec` -> `python/py_nifs.rs` (inputs copied into a reused
//!    env, `beam/env_pool.rs`) -> `worker_pool/` (a thread at once: the watcher, through its
//!    handoff without the pool's lock, else a spinner, a sleeper or a new thread; each keeps
//!    its Python thread state from job to job: `python/thread_state.rs`) -> `python/jobs.rs` ->
//!    `{py_response, Ref, Result}` built with the GIL still held, and kept in the job's
//!    handle for a caller that is looking for it (from the submit on: `py.erl` looks a few
//!    microseconds inside one NIF call, `py_look`: `beam/answer_look.rs`, longer while its
//!    job waits for a watcher held up on another core, `py_look_on`), else sent; a
//!    small plain value is kept there encoded instead (`beam/kept_bytes.rs`), and the job's
//!    env (its inputs) handed to the caller, which lets it go on its scheduler.
//! 6. write from Python: `Channel.send` -> `python/native_channel.rs` -> small plain data
//!    encoded by `conversion/flat_term.rs` (the reader builds it), anything else built by
//!    `conversion/to_erlang.rs` straight into the arena (`beam/frame.rs`, `Frame::build`)
//!    -> `channel/`; a full channel parks the sender (`channel/senders.rs`), and the receive
//!    that leaves it half empty wakes it. `py_channel:send/3` waits the same way in a
//!    `receive`.
//!
//! Groups, and what each may use: `channel/` and `worker_pool/` are plain Rust (std and
//! libc, tested without the BEAM: `cargo test --no-default-features`; a channel's reader
//! asks `worker_pool/affinity.rs` which core it is on, and moves); `beam/` touches `enif_*` and
//! never Python; `conversion/` turns terms into objects and back (uses `beam/`); `python/`
//! holds the GIL (uses all the others). Only the plain-Rust groups build without the `nif`
//! feature: a test binary cannot link `enif_*` symbols.

pub mod channel;
pub mod worker_pool;

/// Built alone (`--no-default-features --features loader`): the NIF of `py_loader`.
#[cfg(all(feature = "loader", not(feature = "nif")))]
mod loader;

#[cfg(feature = "nif")]
mod beam;
#[cfg(feature = "nif")]
mod conversion;
#[cfg(feature = "nif")]
mod python;

#[cfg(feature = "nif")]
fn load(env: rustler::Env, load_info: rustler::Term) -> bool {
    beam::channel_resource::open_resource_type(env)
        && beam::open_owner_watch_type(env)
        && python::py_nifs::load(load_info)
}

/// `py_channel_nif:loaded/0`, whose Erlang stub answers `false`.
#[cfg(feature = "nif")]
#[rustler::nif]
fn loaded() -> bool {
    true
}

#[cfg(feature = "nif")]
rustler::init!("py_channel_nif", load = load);
