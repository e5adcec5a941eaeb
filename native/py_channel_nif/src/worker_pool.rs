//! The threads Python runs on. Every job starts at once: on an idle worker if there is one,
//! otherwise on a new thread, so a long-running job (a loop over a channel, a `time.sleep`)
//! never delays a short one. Workers beyond the resident few exit after a spell of idleness.
//!
//! Submitting is what a NIF does on a scheduler thread: it pushes the job under a lock held
//! for a queue operation, wakes a worker, and returns; it never waits for Python.

#![cfg(feature = "nif")]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Workers that stay even when idle, so short calls do not pay for a thread start.
const RESIDENT_WORKERS: usize = 2;
/// How long a worker beyond the resident ones waits for work before it exits.
const IDLE_EXIT_AFTER: Duration = Duration::from_secs(30);
/// Conversion recurses per nesting level; Python frames need room too.
pub const WORKER_STACK_BYTES: usize = 16 * 1024 * 1024;
/// How long a worker that ran out of jobs keeps looking before it sleeps. Waking a sleeping
/// thread costs several microseconds; back-to-back requests find the worker still awake.
const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(50);

struct PoolState {
    jobs: VecDeque<Job>,
    /// Workers without a job: spinning or asleep.
    idle: usize,
    /// Of the idle, those still spinning (they need no wake-up call).
    spinning: usize,
    threads: usize,
    /// Jobs queued that an idle worker is expected to take.
    promised: usize,
}

struct Pool {
    state: Mutex<PoolState>,
    work_available: Condvar,
    /// `jobs.len()`, readable by spinning workers without the lock.
    queued: AtomicUsize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: Mutex::new(PoolState {
            jobs: VecDeque::new(),
            idle: 0,
            spinning: 0,
            threads: 0,
            promised: 0,
        }),
        work_available: Condvar::new(),
        queued: AtomicUsize::new(0),
    })
}

/// Runs `job` on a worker thread as soon as possible. Fails only if no thread can be started.
pub fn submit(job: Job) -> Result<(), String> {
    let pool = pool();
    let mut state = lock(&pool.state);
    state.jobs.push_back(job);
    pool.queued.fetch_add(1, Ordering::Release);
    if state.idle > state.promised {
        state.promised += 1;
        let sleeping_only = state.spinning == 0;
        drop(state);
        if sleeping_only {
            pool.work_available.notify_one();
        }
        return Ok(());
    }
    state.threads += 1;
    drop(state);
    let spawned = std::thread::Builder::new()
        .name("py_channel-python".into())
        .stack_size(WORKER_STACK_BYTES)
        .spawn(run_worker);
    if let Err(error) = spawned {
        let mut state = lock(&pool.state);
        state.threads -= 1;
        // Another worker may still take the job; if none exists, it stays queued for the next.
        return Err(format!("cannot start a Python thread: {error}"));
    }
    Ok(())
}

/// Number of worker threads alive, busy or idle.
pub fn thread_count() -> usize {
    lock(&pool().state).threads
}

fn run_worker() {
    let pool = pool();
    let mut state = lock(&pool.state);
    loop {
        if let Some(job) = state.jobs.pop_front() {
            pool.queued.fetch_sub(1, Ordering::Release);
            state.promised = state.promised.saturating_sub(1);
            drop(state);
            // A panic in one job must not take the worker's bookkeeping down with it.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            state = lock(&pool.state);
            continue;
        }
        state.idle += 1;
        state.spinning += 1;
        drop(state);
        let spin_until = Instant::now() + SPIN_BEFORE_SLEEP;
        while pool.queued.load(Ordering::Acquire) == 0 && Instant::now() < spin_until {
            std::hint::spin_loop();
            std::thread::yield_now();
        }
        state = lock(&pool.state);
        state.spinning -= 1;
        // A job pushed while this worker spun was not announced: take it now.
        if !state.jobs.is_empty() {
            state.idle -= 1;
            continue;
        }
        let (next, timeout) = pool
            .work_available
            .wait_timeout(state, IDLE_EXIT_AFTER)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state = next;
        state.idle -= 1;
        if timeout.timed_out() && state.jobs.is_empty() && state.threads > RESIDENT_WORKERS {
            state.threads -= 1;
            return;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
