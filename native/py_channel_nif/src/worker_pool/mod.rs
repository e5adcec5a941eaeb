//! The threads Python runs on. Every job starts at once: on an idle worker if there is one,
//! otherwise on a new thread, so a long-running job (a loop over a channel, a `time.sleep`)
//! never delays a short one. Workers beyond the resident few exit after a spell of idleness.
//!
//! Submitting is what a NIF does on a scheduler thread: it hands the job to the watcher (below)
//! with one atomic exchange, or changes the books under a lock held for a queue operation,
//! then, with the lock released, unparks one sleeper or starts one thread, and returns; it
//! never waits for Python.
//!
//! Who takes a queued job, and why it never waits for a timeout, is the state machine in
//! [`bookkeeping`]; this file only carries out what it says. A worker that runs out of jobs
//! spins briefly (back-to-back requests then find it awake), then parks on its own: it is
//! woken by an unpark addressed to it, never by a broadcast, and knows it was woken because a
//! submit took it off the sleeper list, so a spurious or stale wake-up is never taken for one.
//!
//! One of the idle workers, the watcher, waits at the handoff rather than at the queue: a
//! submit that finds it open puts its job there without the lock, and the watcher takes it.
//! Through the queue, a job's way to a spinning worker crossed cores five times (the lock
//! and the queue to the submitter, the count, the lock and the queue back to the worker);
//! through the handoff, twice.

pub mod affinity;
pub mod bookkeeping;

use bookkeeping::{Bookkeeping, Next, Submitted};
use std::cell::{RefCell, UnsafeCell};
use std::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::Thread;
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
/// For how long of that it looks without yielding its core between looks. A caller that
/// waits for each answer submits its next job 1-2 us after the last one ended; a job that
/// came while the worker was in a yield (a system call, 0.17 us here) waited for its
/// return: `py:call`'s median 0.1 us higher (A/B in docs/threading.md). Beyond it, the
/// worker yields after every look, so another thread needing this core is held up 5 us
/// at most.
const HOT_SPIN: Duration = Duration::from_micros(5);

/// A parked worker: its thread, to unpark it. Equal when it is the same thread.
#[derive(Clone)]
struct Sleeper(Thread);

impl PartialEq for Sleeper {
    fn eq(&self, other: &Self) -> bool {
        self.0.id() == other.0.id()
    }
}

/// A pool of worker threads. The NIF uses one for the whole VM ([`submit`]); tests make
/// their own.
pub struct WorkerPool {
    shared: Arc<Shared>,
}

struct Shared {
    books: Mutex<Bookkeeping<Job, Sleeper>>,
    /// The number of queued jobs, readable by spinning workers without the lock. Only a hint
    /// to stop spinning early: a spinner takes the lock and looks at the queue either way.
    queued: AtomicUsize,
    handoff: Handoff,
    /// The core the watcher last saw itself on, from the moment it opened the handoff until
    /// its watch is over, else `NO_CORE`.
    watcher_core: AtomicU32,
    idle_exit_after: Duration,
}

const NO_CORE: u32 = u32::MAX;

/// Where a submit hands a job to the watcher (see [`Bookkeeping::job_ending`]) without the
/// lock: open only while the books say a worker watches, and opened by that worker with the
/// lock held. The watcher closes it when its watch ends, taking a job handed meanwhile.
#[repr(align(128))]
struct Handoff {
    state: AtomicU8,
    /// Written only by the submitter that moved the state from `OPEN` to `FILLING`, read only
    /// by the watcher once the state says `FULL`.
    job: UnsafeCell<Option<Job>>,
    /// The submitter's name for the job handed (`submit_ticketed`), written before `FULL`.
    ticket: AtomicUsize,
}

/// Nobody watches, or the watcher took a job: submits go through the books.
const CLOSED: u8 = 0;
/// The watcher waits for a job.
const OPEN: u8 = 1;
/// A submitter is putting its job in.
const FILLING: u8 = 2;
/// The job is there for the watcher.
const FULL: u8 = 3;

// SAFETY: the job cell is handed between threads by the state (see `Handoff::job`); a job is
// `Send`.
unsafe impl Sync for Handoff {}

impl Handoff {
    /// By the worker the books just made the watcher, with the lock held: the handoff is
    /// closed (only a watcher, which the books count, leaves it otherwise).
    fn open(&self) {
        let opened =
            self.state
                .compare_exchange(CLOSED, OPEN, Ordering::Release, Ordering::Relaxed);
        debug_assert!(opened.is_ok(), "the handoff was opened twice");
    }

    /// A job is in it, or being put in.
    fn holds_job(&self) -> bool {
        matches!(self.state.load(Ordering::Acquire), FILLING | FULL)
    }

    /// The submitter's side: `job` back if nobody watches (or a job is handed already).
    fn offer(&self, job: Job, ticket: usize) -> Result<(), Job> {
        if self
            .state
            .compare_exchange(OPEN, FILLING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(job);
        }
        // SAFETY: FILLING gives this thread the cell until it says FULL.
        unsafe { *self.job.get() = Some(job) };
        self.ticket.store(ticket, Ordering::Relaxed);
        self.state.store(FULL, Ordering::Release);
        Ok(())
    }

    /// The watcher's side: the job handed to it, if any; the handoff is then closed.
    fn take(&self) -> Option<Job> {
        if self.state.load(Ordering::Acquire) != FULL {
            return None;
        }
        // SAFETY: FULL gives the watcher the cell; nobody writes it until it is opened again.
        let job = unsafe { (*self.job.get()).take() };
        self.state.store(CLOSED, Ordering::Release);
        job
    }

    /// The watcher ends its watch: closes the handoff, and returns a job handed meanwhile (it
    /// waits for one being put in, a few instructions of its submitter).
    fn close(&self) -> Option<Job> {
        loop {
            match self
                .state
                .compare_exchange(OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return None,
                Err(FULL) => return self.take(),
                Err(CLOSED) => {
                    debug_assert!(false, "a watcher found its handoff closed");
                    return None;
                }
                Err(_) => {
                    std::hint::spin_loop();
                    std::thread::yield_now();
                }
            }
        }
    }
}

impl WorkerPool {
    /// A pool with no thread yet; `resident` threads stay once started, the others exit
    /// after `idle_exit_after` without a job.
    pub fn new(resident: usize, idle_exit_after: Duration) -> Self {
        WorkerPool {
            shared: Arc::new(Shared {
                books: Mutex::new(Bookkeeping::new(resident)),
                queued: AtomicUsize::new(0),
                handoff: Handoff {
                    state: AtomicU8::new(CLOSED),
                    job: UnsafeCell::new(None),
                    ticket: AtomicUsize::new(0),
                },
                watcher_core: AtomicU32::new(NO_CORE),
                idle_exit_after,
            }),
        }
    }

    /// Runs `job` on a worker thread as soon as possible. Fails only if no thread can be
    /// started, and then the job was dropped without running.
    pub fn submit(&self, job: Job) -> Result<(), String> {
        self.submit_ticketed(job, 0)
    }

    /// `submit`, naming the job by `ticket` (nonzero) for `handed_job_waits_on`.
    pub fn submit_ticketed(&self, job: Job, ticket: usize) -> Result<(), String> {
        let job = match self.shared.handoff.offer(job, ticket) {
            Ok(()) => return Ok(()),
            Err(job) => job,
        };
        let submitted = self.shared.with_books(|books| books.submit(job));
        match submitted {
            Submitted::Queued => Ok(()),
            Submitted::Wake(sleeper) => {
                sleeper.0.unpark();
                Ok(())
            }
            Submitted::Spawn(job) => {
                let shared = Arc::clone(&self.shared);
                let spawned = std::thread::Builder::new()
                    .name("py_channel-python".into())
                    .stack_size(WORKER_STACK_BYTES)
                    .spawn(move || shared.run_worker(job));
                match spawned {
                    Ok(_detached) => Ok(()),
                    // The job went down with the thread's closure: it was never queued, so
                    // nobody else can have taken it, and the caller learns it will not run.
                    Err(error) => {
                        self.shared.with_books(|books| books.spawn_failed());
                        Err(format!("cannot start a Python thread: {error}"))
                    }
                }
            }
        }
    }

    /// Where the job submitted with `ticket` waits for its watcher: the core the watcher is
    /// on, while that job is in the handoff and the watcher's core is known. A caller that
    /// finds its job not begun knows from it whether the watcher is only held up (on another
    /// core, by another thread the OS ran there) or waits for the caller's own core.
    pub fn handed_job_waits_on(&self, ticket: usize) -> Option<u32> {
        let handoff = &self.shared.handoff;
        if !(handoff.holds_job() && handoff.ticket.load(Ordering::Relaxed) == ticket) {
            return None;
        }
        match self.shared.watcher_core.load(Ordering::Relaxed) {
            NO_CORE => None,
            core => Some(core),
        }
    }

    /// Number of worker threads alive (or being started), busy or idle.
    pub fn thread_count(&self) -> usize {
        self.shared.lock_books().threads()
    }

    /// Jobs running and jobs waiting for a worker (only ever for a worker on its way, or in
    /// the handoff for its watcher). A job the watcher is taking may be in neither for an
    /// instant.
    pub fn job_counts(&self) -> (usize, usize) {
        let books = self.shared.lock_books();
        let handed = self.shared.handoff.holds_job();
        (
            books.running_jobs(),
            books.queued_jobs() + usize::from(handed),
        )
    }
}

impl Shared {
    fn lock_books(&self) -> MutexGuard<'_, Bookkeeping<Job, Sleeper>> {
        self.books
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One locked section; the queue length is republished for spinners before unlocking.
    fn with_books<T>(&self, change: impl FnOnce(&mut Bookkeeping<Job, Sleeper>) -> T) -> T {
        let mut books = self.lock_books();
        let outcome = change(&mut books);
        self.queued.store(books.queued_jobs(), Ordering::Release);
        outcome
    }

    /// A locked section that says what this worker does next; a new watcher opens the
    /// handoff before the lock is let go.
    fn next_by_books(
        &self,
        change: impl FnOnce(&mut Bookkeeping<Job, Sleeper>) -> Next<Job>,
    ) -> Next<Job> {
        self.with_books(|books| {
            let next = change(books);
            if matches!(next, Next::Watch) {
                self.open_handoff();
            }
            next
        })
    }

    /// By the worker the books just made the watcher, with the lock held: from now on a
    /// caller may look for its core (`handed_job_waits_on`).
    fn open_handoff(&self) {
        self.note_watcher_core();
        self.handoff.open();
    }

    /// The watcher's core, for `handed_job_waits_on`; forgotten once its watch is over.
    fn note_watcher_core(&self) {
        let core = affinity::current_core().unwrap_or(NO_CORE);
        if self.watcher_core.load(Ordering::Relaxed) != core {
            self.watcher_core.store(core, Ordering::Relaxed);
        }
    }

    /// Watches the handoff for a while (see `spin`), then closes it. Notes its core as it
    /// watches (`handed_job_waits_on`): the OS may move it meanwhile.
    fn watch(&self, me: &Sleeper) -> Next<Job> {
        let handed = self
            .spin(|| {
                self.note_watcher_core();
                self.handoff.take()
            })
            .or_else(|| self.handoff.close());
        self.watcher_core.store(NO_CORE, Ordering::Relaxed);
        match handed {
            Some(job) => {
                self.with_books(|books| books.took_handed());
                Next::Run(job)
            }
            None => self.next_by_books(|books| books.watch_ended(me.clone())),
        }
    }

    /// Looks with `look` until it finds something or `SPIN_BEFORE_SLEEP` has passed.
    fn spin<T>(&self, mut look: impl FnMut() -> Option<T>) -> Option<T> {
        let spin_start = Instant::now();
        let (hot_until, spin_until) = (spin_start + HOT_SPIN, spin_start + SPIN_BEFORE_SLEEP);
        loop {
            if let Some(found) = look() {
                return Some(found);
            }
            let now = Instant::now();
            if now >= spin_until {
                return None;
            }
            std::hint::spin_loop();
            if now >= hot_until {
                std::thread::yield_now();
            }
        }
    }

    fn run_worker(self: &Arc<Self>, first: Job) {
        affinity::take_the_vm_cores();
        let me = Sleeper(std::thread::current());
        WORKER.with(|worker| *worker.borrow_mut() = Some((Arc::clone(self), None)));
        let mut next = self.run(first);
        loop {
            next = match next {
                Next::Run(job) => self.run(job),
                Next::Spin => {
                    self.spin(|| (self.queued.load(Ordering::Acquire) != 0).then_some(()));
                    self.next_by_books(|books| books.spin_ended(me.clone()))
                }
                Next::Watch => self.watch(&me),
                Next::Sleep => self.sleep(&me),
                Next::Exit => {
                    if let Some(thread_end) = THREAD_END.get() {
                        thread_end();
                    }
                    return;
                }
            }
        }
    }

    /// Runs `job` on this worker thread; what to do next.
    fn run(&self, job: Job) -> Next<Job> {
        // A panic in one job must not take the worker's bookkeeping down with it.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        let ended = WORKER.with(|worker| match worker.borrow_mut().as_mut() {
            Some((_, ending)) => ending.take(),
            None => None,
        });
        // Counted as the watcher or spinning since the job said so (`job_ending`).
        ended.unwrap_or_else(|| self.next_by_books(|books| books.job_done()))
    }

    /// Parks until a submit wakes this worker, or until it has been idle long enough to exit.
    fn sleep(&self, me: &Sleeper) -> Next<Job> {
        let mut deadline = Instant::now() + self.idle_exit_after;
        loop {
            std::thread::park_timeout(deadline.saturating_duration_since(Instant::now()));
            let timed_out = Instant::now() >= deadline;
            match self.next_by_books(|books| books.woke(me, timed_out)) {
                // A resident worker stays: a new spell of sleep.
                Next::Sleep if timed_out => deadline = Instant::now() + self.idle_exit_after,
                // A spurious return or a stale unpark: still asleep, same deadline.
                Next::Sleep => {}
                next => return next,
            }
        }
    }
}

/// A worker thread's pool, and what it does next if its job said it is ending.
type WorkerOf = (Arc<Shared>, Option<Next<Job>>);

thread_local! {
    /// On a worker thread: see [`WorkerOf`].
    static WORKER: RefCell<Option<WorkerOf>> = const { RefCell::new(None) };
}

/// Called by a job once it has answered its caller: from now on the worker counts as looking
/// for the next job (see [`Bookkeeping::job_ending`]), so what is left of the job must be
/// bounded (nothing that waits: a job queued or handed meanwhile waits for it). Does nothing off a
/// worker thread, or when called again in the same job.
pub fn job_ending() {
    WORKER.with(|worker| {
        if let Some((shared, ending @ None)) = worker.borrow_mut().as_mut() {
            *ending = Some(shared.next_by_books(|books| books.job_ending()));
        }
    });
}

/// What a worker thread does last, before it ends: set once, by what its jobs run (letting
/// go of what the thread keeps for them, while its thread-locals are all still there).
static THREAD_END: OnceLock<fn()> = OnceLock::new();

/// Sets what every worker thread does before it ends (the first setting stays).
pub fn at_thread_end(thread_end: fn()) {
    let _ = THREAD_END.set(thread_end);
}

fn pool() -> &'static WorkerPool {
    static POOL: OnceLock<WorkerPool> = OnceLock::new();
    POOL.get_or_init(|| WorkerPool::new(RESIDENT_WORKERS, IDLE_EXIT_AFTER))
}

/// Runs `job` on the VM's worker pool as soon as possible (see
/// [`WorkerPool::submit_ticketed`]).
pub fn submit(job: Job, ticket: usize) -> Result<(), String> {
    pool().submit_ticketed(job, ticket)
}

/// Number of threads of the VM's worker pool.
pub fn thread_count() -> usize {
    pool().thread_count()
}

/// See [`WorkerPool::handed_job_waits_on`], for the VM's worker pool.
pub fn handed_job_waits_on(ticket: usize) -> Option<u32> {
    pool().handed_job_waits_on(ticket)
}

/// Jobs running and queued in the VM's worker pool (see [`WorkerPool::job_counts`]).
pub fn job_counts() -> (usize, usize) {
    pool().job_counts()
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
pub(crate) mod tests;
