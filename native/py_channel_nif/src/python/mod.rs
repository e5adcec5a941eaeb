//! What holds the GIL: starting the interpreter, the jobs `py` runs on worker threads and the
//! NIFs that submit them, `erlang.call` callbacks, and the native module `_py_channel` (sending
//! to processes, the channel reader) that the Python package `erlang` wraps.

mod allocator;
pub mod callbacks;
mod cancel;
pub mod interpreter;
mod jobs;
mod native_channel;
mod native_module;
mod output;
pub mod py_nifs;
mod thread_state;
