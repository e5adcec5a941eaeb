//! Atoms the NIF returns or sends.

#![cfg(feature = "nif")]

rustler::atoms! {
    ok,
    error,
    busy,
    closed,
    too_large,
    empty,
    ready,
    waiting,
    cancelled,
    woken,
    size,
    max_size,
    length,
    waiting_readers,
    owner,
    live_channels,
    py_channel_ready,
    bytes,
    py_response,
    py_callback,
    py_log,
    debug,
    python_not_started,
    abandoned,
    delivered,
}
