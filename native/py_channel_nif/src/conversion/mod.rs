//! Term conversion between Erlang and Python, both ways, lossless where the languages allow
//! (the table in docs/type-conversion.md), and the Python classes of the Erlang terms Python
//! has no type for. Runs on Python threads only: the project's workers and threads Python
//! code started itself.

mod binary_view;
mod elixir_structs;
mod etf;
pub mod flat_term;
mod lent_bytes;
mod nesting;
pub mod term_classes;
mod to_erlang;
mod to_python;
mod word_hasher;

use pyo3::prelude::*;

pub use binary_view::exporter_type;
pub use to_erlang::{set_none_atom, to_erlang, to_erlang_plain};
pub use to_python::{to_python, to_python_from_frame, BinaryMode};

/// The name of an object's type, for error messages.
pub fn type_name(object: &Bound<'_, PyAny>) -> String {
    object
        .get_type()
        .qualname()
        .map(|name| name.to_string())
        .unwrap_or_else(|_| "object".into())
}
