//! Atoms the NIF returns or sends.

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
}
