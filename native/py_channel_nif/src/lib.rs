//! py_channel's NIF: a backpressured channel from BEAM processes to embedded CPython.
//!
//! This file is only the NIF table; see `channel/` for the core, `frame.rs` for how a message
//! is stored, `channel_nif.rs` for the functions Erlang calls.

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
rustler::init!("py_channel_nif");
