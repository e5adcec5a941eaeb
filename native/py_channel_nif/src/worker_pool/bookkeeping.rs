//! The pool's bookkeeping as a plain state machine: the job queue, the thread count, and who
//! is spinning, asleep, or woken. Every method is one locked section of the pool; it changes
//! the books and says what the caller must do once the lock is released (unpark a sleeper,
//! start a thread, run a job, spin, park, exit). No threads, clocks or locks here, so the
//! protocol can be model-checked by driving these same methods through every interleaving
//! (see `model_tests.rs`).
//!
//! The invariant, true after every method: queued jobs <= spinning + woken workers. Both kinds
//! are certain to look at the queue again soon without anyone's help: a spinner within its
//! spin, a woken sleeper as soon as its unpark lands. So a queued job never waits for a
//! timeout. A submit that would break it wakes one sleeper (taken off the list, so it is woken
//! once and counted once), or, when nobody sleeps, hands the job to a new thread directly:
//! that job is never queued, so a thread that fails to start strands nothing.
//!
//! One idle worker at a time watches the handoff instead of spinning (`watching`): a job
//! handed there (outside these books, see `mod.rs`) is its own, so it is not counted among
//! the workers that take queued jobs.

use std::collections::VecDeque;

/// What a submitter must do after [`Bookkeeping::submit`], with the lock released.
#[derive(Debug, PartialEq, Eq)]
pub enum Submitted<J, S> {
    /// Queued; a worker already on its way to the queue takes it.
    Queued,
    /// Queued; unpark this sleeper, which now counts as on its way.
    Wake(S),
    /// Not queued: start a thread whose first job is this one. The thread is already counted;
    /// if it cannot start, call [`Bookkeeping::spawn_failed`] (the job was never taken).
    Spawn(J),
}

/// What a worker does next, with the lock released.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<J> {
    Run(J),
    /// Counted as spinning: watch for a job for a short while, then [`Bookkeeping::spin_ended`].
    Spin,
    /// The watcher: open the handoff (with the lock still held) and watch it for a short
    /// while, then [`Bookkeeping::took_handed`] or [`Bookkeeping::watch_ended`].
    Watch,
    /// On the sleeper list: park until unparked or timed out, then [`Bookkeeping::woke`].
    Sleep,
    /// No longer counted: the thread ends.
    Exit,
}

/// `J` is a job, `S` identifies a sleeping worker (and is how to wake it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Bookkeeping<J, S> {
    jobs: VecDeque<J>,
    /// Worker threads alive or being started.
    threads: usize,
    /// Workers between [`Next::Spin`] and [`Bookkeeping::spin_ended`].
    spinning: usize,
    /// A worker is between [`Next::Watch`] and the end of its watch.
    watching: bool,
    /// Sleepers taken off `sleepers` by a submit that have not yet looked at the queue.
    woken: usize,
    /// Parked workers nobody has woken yet; the last to sleep is the first woken, so the
    /// others reach their idle timeout and the pool shrinks after a burst.
    sleepers: Vec<S>,
    /// Threads that stay even when idle.
    resident: usize,
}

impl<J, S: PartialEq> Bookkeeping<J, S> {
    /// Books with no thread yet and `resident` threads to keep once started.
    pub fn new(resident: usize) -> Self {
        Bookkeeping {
            jobs: VecDeque::new(),
            threads: 0,
            spinning: 0,
            watching: false,
            woken: 0,
            sleepers: Vec::new(),
            resident,
        }
    }

    /// A job to run as soon as possible.
    pub fn submit(&mut self, job: J) -> Submitted<J, S> {
        if self.jobs.len() < self.workers_coming() {
            self.jobs.push_back(job);
            Submitted::Queued
        } else if let Some(sleeper) = self.sleepers.pop() {
            self.jobs.push_back(job);
            self.woken += 1;
            Submitted::Wake(sleeper)
        } else {
            self.threads += 1;
            Submitted::Spawn(job)
        }
    }

    /// The thread promised by [`Submitted::Spawn`] did not start; its job was dropped with it.
    pub fn spawn_failed(&mut self) {
        self.threads -= 1;
    }

    /// A worker finished a job (or a new thread its first job) and looks for the next.
    pub fn job_done(&mut self) -> Next<J> {
        self.next_or_spin()
    }

    /// A worker's job is about to end: it has answered its caller, and what is left of it
    /// waits for nothing. The worker counts as the watcher (true; it opens the handoff with
    /// the lock held) or, if another worker watches, as spinning from now on, so a job the
    /// caller submits as soon as it has the answer goes to this worker rather than to a
    /// sleeper woken (or a thread started) for it: two workers taking turns at one caller's
    /// jobs both keep spinning, and on two cores the caller's scheduler and two spinning
    /// threads then share them. When its job returns, the worker does what this says
    /// ([`Next::Watch`] or [`Next::Spin`]), without [`Bookkeeping::job_done`].
    pub fn job_ending(&mut self) -> Next<J> {
        self.watch_or_spin()
    }

    /// The watcher took a job handed to it, and runs it.
    pub fn took_handed(&mut self) {
        self.watching = false;
    }

    /// The watcher closed the handoff with no job in it: it takes a queued job, or sleeps.
    pub fn watch_ended(&mut self, me: S) -> Next<J> {
        self.watching = false;
        self.next_or_sleep(me)
    }

    /// A spinning worker stops spinning: it saw a job, or its spin is over.
    pub fn spin_ended(&mut self, me: S) -> Next<J> {
        self.spinning -= 1;
        self.next_or_sleep(me)
    }

    /// A parked worker's park returned: unparked, timed out (`timed_out`), or for no reason.
    pub fn woke(&mut self, me: &S, timed_out: bool) -> Next<J> {
        let Some(position) = self.sleepers.iter().position(|sleeper| sleeper == me) else {
            // A submit took it off the list: it is expected at the queue.
            self.woken -= 1;
            return self.next_or_spin();
        };
        if timed_out && self.threads > self.resident {
            self.sleepers.remove(position);
            self.threads -= 1;
            return Next::Exit;
        }
        // Nobody woke it: a spurious return, a stale unpark, or a resident's timeout.
        Next::Sleep
    }

    /// Worker threads alive or being started.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Jobs being run: every thread is running one, spinning, watching, woken on its way to
    /// the queue, or asleep (a thread being started runs the job it was started for). A job
    /// that said it is ending (`job_ending`) no longer counts.
    pub fn running_jobs(&self) -> usize {
        self.threads - self.spinning - usize::from(self.watching) - self.woken - self.sleepers.len()
    }

    pub fn queued_jobs(&self) -> usize {
        self.jobs.len()
    }

    pub fn jobs(&self) -> impl Iterator<Item = &J> {
        self.jobs.iter()
    }

    pub fn spinning(&self) -> usize {
        self.spinning
    }

    pub fn watching(&self) -> bool {
        self.watching
    }

    pub fn woken(&self) -> usize {
        self.woken
    }

    pub fn sleepers(&self) -> &[S] {
        &self.sleepers
    }

    /// Workers certain to look at the queue soon without being woken.
    pub fn workers_coming(&self) -> usize {
        self.spinning + self.woken
    }

    fn next_or_spin(&mut self) -> Next<J> {
        match self.jobs.pop_front() {
            Some(job) => Next::Run(job),
            None => self.watch_or_spin(),
        }
    }

    /// An idle worker watches the handoff if nobody does, else it spins.
    fn watch_or_spin(&mut self) -> Next<J> {
        if self.watching {
            self.spinning += 1;
            Next::Spin
        } else {
            self.watching = true;
            Next::Watch
        }
    }

    fn next_or_sleep(&mut self, me: S) -> Next<J> {
        match self.jobs.pop_front() {
            Some(job) => Next::Run(job),
            None => {
                self.sleepers.push(me);
                Next::Sleep
            }
        }
    }
}
