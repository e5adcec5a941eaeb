//! py_channel's NIF: a backpressured channel from BEAM processes to embedded CPython.
//!
//! This file is only the NIF table. The channel: `channel/` (the core), `frame.rs` (how a
//! message is stored), `channel_nif.rs` (its NIFs). Python: `interpreter.rs` (start),
//! `worker_pool/` (threads), `python_jobs.rs` and `python_nif.rs` (`py` requests),
//! `conversion/` (terms <-> objects), `python_module.rs`, `python_types.rs` and `python_channel.rs`
//! (the native `erlang` module), `callbacks.rs` (`erlang.call`).

pub mod channel;
// Plain Rust as well (std only), so its wake-up protocol is tested without the BEAM.
pub mod worker_pool;

// The BEAM-facing modules below are each gated on the `nif` feature in their own file
// (`#![cfg(feature = "nif")]`), so `cargo test --no-default-features` builds the plain-Rust modules above alone.
mod atoms;
mod channel_nif;
mod channel_resource;
mod frame;
mod reader_wake;
mod term_scan;

mod callbacks;
mod conversion;
mod interpreter;
mod python_channel;
mod python_jobs;
mod python_module;
mod python_nif;
mod python_types;

#[cfg(feature = "nif")]
fn load(env: rustler::Env, load_info: rustler::Term) -> bool {
    channel_resource::open_resource_type(env) && python_nif::load(load_info)
}

#[cfg(feature = "nif")]
rustler::init!("py_channel_nif", load = load);
