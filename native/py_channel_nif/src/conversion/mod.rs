//! Term conversion between Erlang and Python, both ways, lossless where the languages allow
//! (the table in DESIGN.md). Runs on Python threads only: the project's workers and threads
//! Python code started itself.

#![cfg(feature = "nif")]

mod etf;
mod nesting;
mod to_erlang;
mod to_python;

pub use to_erlang::{set_none_atom, to_erlang};
pub use to_python::{to_python, BinaryMode};
