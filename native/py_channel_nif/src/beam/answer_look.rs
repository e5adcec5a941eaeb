//! A caller's look for a `py` job's answer, microseconds away (`py_answer:look/2`): polled
//! again and again inside one NIF call.
//!
//! A loop of polls in Erlang cost a reduction or two per turn: a process making short calls
//! used up its time slice every 50 calls or so, and the end of a slice is when its scheduler
//! hands out deferred work (waking the VM's aux thread, which then took a core for
//! microseconds: the slowest 2 % of `py:call`s). Here the look is charged by the time it
//! took, as `enif_consume_timeslice` asks: a look of 2 microseconds costs no more than the
//! call, one of 20 costs 2 % of a time slice. (`py_channel:call/3`'s caller, whose reply may
//! also come by mail, still loops in Erlang: a look here made no difference to it.)

use rustler::Env;
use std::time::{Duration, Instant};

/// A time slice is about a millisecond.
const MICROS_PER_TIMESLICE_PERCENT: u128 = 10;
/// The longest look of one call: a NIF should return within a millisecond.
const LOOK_MAX_MICROS: u64 = 1000;

/// Calls `poll` until it finds something, for up to `spin_micros` (a millisecond at most),
/// or until `begun_micros` have passed with `begun` false (no Python thread has the work:
/// it may be waiting for this very core). `None` when it stops looking.
pub fn look<T>(
    env: Env<'_>,
    begun_micros: u64,
    spin_micros: u64,
    mut poll: impl FnMut() -> Option<T>,
    begun: impl Fn() -> bool,
) -> Option<T> {
    let started = Instant::now();
    let begun_within = Duration::from_micros(begun_micros);
    let spin = Duration::from_micros(spin_micros.min(LOOK_MAX_MICROS));
    let found = loop {
        if let Some(found) = poll() {
            break Some(found);
        }
        let looked = started.elapsed();
        if looked >= spin || (looked >= begun_within && !begun()) {
            break None;
        }
        std::hint::spin_loop();
    };
    let percent = started.elapsed().as_micros() / MICROS_PER_TIMESLICE_PERCENT;
    if percent > 0 {
        rustler::schedule::consume_timeslice(env, percent.min(100) as i32);
    }
    found
}
