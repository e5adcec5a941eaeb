//! py_channel's NIF: a backpressured channel from BEAM processes to embedded CPython.
//!
//! This file is only the NIF table. The channel: `channel/` (the core), `frame.rs` (how a
//! message is stored), `channel_nif.rs` (its NIFs). Python: `interpreter.rs` (start),
//! `worker_pool.rs` (threads), `python_jobs.rs` and `python_nif.rs` (`py` requests),
//! `conversion/` (terms <-> objects), `python_module.rs`, `python_types.rs` and `python_channel.rs`
//! (the native `erlang` module), `callbacks.rs` (`erlang.call`).

pub mod channel;

#[cfg(feature = "nif")]
mod atoms;
#[cfg(feature = "nif")]
mod channel_nif;
#[cfg(feature = "nif")]
mod channel_resource;
#[cfg(feature = "nif")]
mod frame;
#[cfg(feature = "nif")]
mod reader_wake;
#[cfg(feature = "nif")]
mod term_scan;

#[cfg(feature = "nif")]
mod callbacks;
#[cfg(feature = "nif")]
mod conversion;
#[cfg(feature = "nif")]
mod interpreter;
#[cfg(feature = "nif")]
mod python_channel;
#[cfg(feature = "nif")]
mod python_jobs;
#[cfg(feature = "nif")]
mod python_module;
#[cfg(feature = "nif")]
mod python_nif;
#[cfg(feature = "nif")]
mod python_types;
#[cfg(feature = "nif")]
mod worker_pool;

#[cfg(feature = "nif")]
fn load(_env: rustler::Env, load_info: rustler::Term) -> bool {
    python_nif::load(load_info)
}

#[cfg(feature = "nif")]
rustler::init!("py_channel_nif", load = load);
