//! Term conversion between Erlang and Python, both ways, lossless where the languages allow
//! (the table in DESIGN.md). Runs on Python worker threads only.

#![cfg(feature = "nif")]

mod etf;
mod to_erlang;
mod to_python;

pub use to_erlang::{set_none_atom, to_erlang};
pub use to_python::{to_python, BinaryMode};

/// Deeper nesting than this is an error rather than a stack overflow.
pub const MAX_DEPTH: usize = 10_000;
