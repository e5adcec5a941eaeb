//! An exhaustive check of the pool's wake-up protocol. The model's workers and submitters are
//! the steps of `mod.rs` (a locked section, a spin, a park, an unpark, a thread start), and
//! every locked section calls the real [`Bookkeeping`]. From small starting configurations,
//! every interleaving of those steps is explored, including the ones nothing promises (a
//! spurious wake-up, an idle timeout, a thread that fails to start), and in every reachable
//! state:
//! - the books agree with the workers (threads, spinning, watching, woken, sleepers), no job
//!   is lost or duplicated, and queued jobs <= spinning + woken workers;
//! - the handoff is open, or holds a job, only while a worker watches it, and one at most
//!   does;
//! - if nothing can happen except what nothing promises (a timeout, a spurious wake-up), no
//!   job is queued: a queued job never waits for a timeout;
//! - the steps that are certain to happen form no cycle, so they always reach such a state.
//!
//! The old protocol (a job promised to any idle worker, a condition variable notified only
//! when no worker was spinning) is modelled the same way, to show that the check finds the
//! job left waiting 30 s for a sleeper's timeout.

use super::bookkeeping::{Bookkeeping, Next, Submitted};
use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

type JobId = u8;
type WorkerId = u8;

/// Whether something is certain to make a step happen soon.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Certainty {
    /// Within microseconds unless another step comes first: a spin ending, a lock taken, an
    /// unpark landing, a thread starting or failing to, a job that ends ending.
    Soon,
    /// Nothing promises it: an idle timeout (30 s away), a spurious wake-up.
    MayHappen,
}

#[derive(Clone, Copy, Debug)]
enum Actor {
    Worker(usize),
    Submitter(usize),
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::Worker(worker) => write!(f, "worker {worker}"),
            Actor::Submitter(submitter) => write!(f, "submitter {submitter}"),
        }
    }
}

/// How a state was first reached: from which state, by whom, doing what.
type CameBy = Option<(usize, Actor, &'static str)>;

struct Step<M> {
    who: Actor,
    what: &'static str,
    certainty: Certainty,
    to: M,
}

trait Model: Clone + Eq + Hash + Debug {
    fn steps(&self) -> Vec<Step<Self>>;
    fn queued_jobs(&self) -> usize;
    /// What must hold in every reachable state.
    fn check(&self) -> Result<(), String>;
}

#[derive(Debug)]
struct Explored {
    states: usize,
    steps: usize,
}

/// Breadth first, so a failure comes with a shortest path to it.
fn explore<M: Model>(initial: M) -> Result<Explored, String> {
    let initial = Rc::new(initial);
    let mut index = HashMap::from([(Rc::clone(&initial), 0)]);
    let mut states = vec![initial];
    let mut came_by: Vec<CameBy> = vec![None];
    let mut soon_successors: Vec<Vec<usize>> = vec![Vec::new()];
    let mut steps_taken = 0;
    let mut next = 0;
    while next < states.len() {
        let state = Rc::clone(&states[next]);
        let path = |failure: String| format!("{failure}\n{}", path_to(next, &came_by, &states));
        state.check().map_err(path)?;
        let steps = state.steps();
        let certain = steps.iter().any(|step| step.certainty == Certainty::Soon);
        if !certain && state.queued_jobs() > 0 {
            return Err(path(format!(
                "{} job(s) queued, and only a timeout can take them",
                state.queued_jobs()
            )));
        }
        for step in steps {
            steps_taken += 1;
            let target = match index.get(&step.to) {
                Some(&target) => target,
                None => {
                    let target = states.len();
                    let reached = Rc::new(step.to);
                    index.insert(Rc::clone(&reached), target);
                    states.push(reached);
                    came_by.push(Some((next, step.who, step.what)));
                    soon_successors.push(Vec::new());
                    target
                }
            };
            if step.certainty == Certainty::Soon {
                soon_successors[next].push(target);
            }
        }
        next += 1;
    }
    if let Some(on_cycle) = soon_cycle(&soon_successors) {
        return Err(format!(
            "steps certain to happen form a cycle through\n{}",
            path_to(on_cycle, &came_by, &states)
        ));
    }
    Ok(Explored {
        states: states.len(),
        steps: steps_taken,
    })
}

/// A state on a cycle of the graph, if there is one (Kahn's algorithm: what it cannot remove
/// lies on or behind a cycle; follow successors still present until one repeats).
fn soon_cycle(successors: &[Vec<usize>]) -> Option<usize> {
    let mut predecessors = vec![0usize; successors.len()];
    for targets in successors {
        for &target in targets {
            predecessors[target] += 1;
        }
    }
    let mut free: Vec<usize> = (0..successors.len())
        .filter(|&state| predecessors[state] == 0)
        .collect();
    let mut removed = vec![false; successors.len()];
    while let Some(state) = free.pop() {
        removed[state] = true;
        for &target in &successors[state] {
            predecessors[target] -= 1;
            if predecessors[target] == 0 {
                free.push(target);
            }
        }
    }
    let mut state = removed.iter().position(|removed| !removed)?;
    let mut seen = vec![false; successors.len()];
    while !seen[state] {
        seen[state] = true;
        state = *successors[state]
            .iter()
            .find(|&&target| !removed[target])
            .expect("a state left by Kahn's algorithm has a successor left too");
    }
    Some(state)
}

fn path_to<M: Debug>(state: usize, came_by: &[CameBy], states: &[Rc<M>]) -> String {
    let mut steps = Vec::new();
    let mut at = state;
    while let Some((from, who, what)) = came_by[at] {
        steps.push(format!("{who}: {what}"));
        at = from;
    }
    steps.reverse();
    format!(
        "from {:#?}\nby\n  {}\nto {:#?}",
        states[0],
        steps.join("\n  "),
        states[state]
    )
}

/// A starting configuration: workers busy with a job that ends (they finish, spin and sleep
/// in every order), workers busy for good, and submitters each submitting a burst of jobs
/// back to back. Submitted jobs run for good, like channel consumers, so a job stranded in
/// the queue is never rescued by a worker coming back.
#[derive(Clone, Copy, Debug)]
struct Configuration {
    finishing_workers: usize,
    busy_workers: usize,
    resident: usize,
    bursts: &'static [usize],
    spawn_can_fail: bool,
}

// ---- The protocol of `bookkeeping.rs` and `mod.rs` ----

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum WorkerAt {
    /// Running a job that ends.
    FinishingJob,
    /// Running a job that said it is ending (`job_ending`), about to return; it then watches
    /// the handoff (`watch`) or spins.
    Ending {
        watch: bool,
    },
    /// Running a job for good (a submitted one, or one from before).
    Running(Option<JobId>),
    Spinning,
    /// Watching the handoff (`Shared::watch`).
    Watching,
    /// Took this job from the handoff, about to tell the books.
    TookHanded(JobId),
    /// Closed the handoff with nothing in it, about to take the lock.
    ClosedWatch,
    /// In `park_timeout`.
    Parked,
    /// Back from `park_timeout`, about to take the lock; `timed_out` as its clock says.
    Unparked {
        timed_out: bool,
    },
    Exited,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct Worker {
    at: WorkerAt,
    /// `Thread::unpark`'s token: set by an unpark, consumed by the park it ends.
    unpark_token: bool,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum SubmitterAt {
    Submitting,
    /// Found the handoff not open, about to take the lock with this job.
    OfferFailed(JobId),
    /// Moved the handoff from open to filling, about to put this job in.
    Filling(JobId),
    Unparking(WorkerId),
    Spawning(JobId),
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct Submitter {
    /// Jobs still to submit, the next last.
    to_submit: Vec<JobId>,
    at: SubmitterAt,
}

/// The handoff's state (`mod.rs`, `Handoff`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum HandoffAt {
    Closed,
    Open,
    /// A submitter is putting its job in.
    Filling,
    Full(JobId),
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct Pool {
    books: Bookkeeping<JobId, WorkerId>,
    handoff: HandoffAt,
    workers: Vec<Worker>,
    submitters: Vec<Submitter>,
    /// Jobs whose submit failed because their thread did not start, in order.
    refused: Vec<JobId>,
    jobs: usize,
    spawn_can_fail: bool,
}

/// Each burst's job ids, distinct across bursts, the next to submit last.
fn submitters_of(bursts: &[usize]) -> Vec<Vec<JobId>> {
    let mut next_job = 0;
    bursts
        .iter()
        .map(|&jobs| {
            let ids = (next_job..next_job + jobs as JobId).rev().collect();
            next_job += jobs as JobId;
            ids
        })
        .collect()
}

impl Pool {
    fn new(configuration: Configuration) -> Pool {
        let mut books = Bookkeeping::new(configuration.resident);
        let mut workers = Vec::new();
        // Each worker before the bursts came the way every worker comes: a submit that
        // started a thread for its job.
        for finishes in (0..configuration.finishing_workers)
            .map(|_| true)
            .chain((0..configuration.busy_workers).map(|_| false))
        {
            assert!(matches!(books.submit(JobId::MAX), Submitted::Spawn(_)));
            workers.push(Worker {
                at: if finishes {
                    WorkerAt::FinishingJob
                } else {
                    WorkerAt::Running(None)
                },
                unpark_token: false,
            });
        }
        let submitters = submitters_of(configuration.bursts)
            .into_iter()
            .map(|to_submit| Submitter {
                to_submit,
                at: SubmitterAt::Submitting,
            })
            .collect();
        Pool {
            books,
            handoff: HandoffAt::Closed,
            workers,
            submitters,
            refused: Vec::new(),
            jobs: configuration.bursts.iter().sum(),
            spawn_can_fail: configuration.spawn_can_fail,
        }
    }

    /// The pool once `worker` does what the books told it, as `run_worker` does. A new
    /// watcher opens the handoff in the same locked section (`Shared::next_by_books`).
    fn with_worker_doing(mut self, worker: usize, next: Next<JobId>) -> Pool {
        self.workers[worker].at = match next {
            Next::Run(job) => WorkerAt::Running(Some(job)),
            Next::Spin => WorkerAt::Spinning,
            Next::Watch => {
                self.open_handoff();
                WorkerAt::Watching
            }
            Next::Sleep => WorkerAt::Parked,
            Next::Exit => WorkerAt::Exited,
        };
        self
    }

    /// Opened by a worker the books just made the watcher. Opening one not closed would
    /// clobber a job in it: marked so that `check` fails.
    fn open_handoff(&mut self) {
        self.handoff = match self.handoff {
            HandoffAt::Closed => HandoffAt::Open,
            _ => HandoffAt::Full(JobId::MAX),
        };
    }

    fn worker_steps(&self, worker: usize, steps: &mut Vec<Step<Pool>>) {
        let id = worker as WorkerId;
        let mut step = |what, certainty, to| {
            steps.push(Step {
                who: Actor::Worker(worker),
                what,
                certainty,
                to,
            })
        };
        let unparked = |timed_out: bool, consumes_token: bool| {
            let mut pool = self.clone();
            pool.workers[worker].at = WorkerAt::Unparked { timed_out };
            if consumes_token {
                pool.workers[worker].unpark_token = false;
            }
            pool
        };
        match self.workers[worker].at {
            WorkerAt::FinishingJob => {
                let mut pool = self.clone();
                let next = pool.books.job_done();
                step(
                    "finishes its job",
                    Certainty::Soon,
                    pool.with_worker_doing(worker, next),
                );
                let mut pool = self.clone();
                let watch = pool.books.job_ending() == Next::Watch;
                if watch {
                    pool.open_handoff();
                }
                pool.workers[worker].at = WorkerAt::Ending { watch };
                step("says its job is ending", Certainty::Soon, pool);
            }
            WorkerAt::Ending { watch } => {
                let mut pool = self.clone();
                pool.workers[worker].at = if watch {
                    WorkerAt::Watching
                } else {
                    WorkerAt::Spinning
                };
                step(
                    "its job returns: it watches or spins",
                    Certainty::Soon,
                    pool,
                );
            }
            WorkerAt::Watching => match self.handoff {
                HandoffAt::Full(job) => {
                    let mut pool = self.clone();
                    pool.handoff = HandoffAt::Closed;
                    pool.workers[worker].at = WorkerAt::TookHanded(job);
                    step("takes the job handed to it", Certainty::Soon, pool);
                }
                HandoffAt::Open => {
                    let mut pool = self.clone();
                    pool.handoff = HandoffAt::Closed;
                    pool.workers[worker].at = WorkerAt::ClosedWatch;
                    step("ends its watch: closes the handoff", Certainty::Soon, pool);
                }
                // Waits for the job being put in (`Handoff::close`).
                HandoffAt::Filling | HandoffAt::Closed => {}
            },
            WorkerAt::TookHanded(job) => {
                let mut pool = self.clone();
                pool.books.took_handed();
                pool.workers[worker].at = WorkerAt::Running(Some(job));
                step("tells the books it runs it", Certainty::Soon, pool);
            }
            WorkerAt::ClosedWatch => {
                let mut pool = self.clone();
                let next = pool.books.watch_ended(id);
                step(
                    "takes the lock after its watch",
                    Certainty::Soon,
                    pool.with_worker_doing(worker, next),
                );
            }
            WorkerAt::Spinning => {
                let mut pool = self.clone();
                let next = pool.books.spin_ended(id);
                step(
                    "ends its spin",
                    Certainty::Soon,
                    pool.with_worker_doing(worker, next),
                );
            }
            WorkerAt::Parked if self.workers[worker].unpark_token => {
                step(
                    "park returns: unparked",
                    Certainty::Soon,
                    unparked(false, true),
                );
                let late = unparked(true, true);
                step(
                    "park returns: unparked, deadline passed",
                    Certainty::MayHappen,
                    late,
                );
            }
            WorkerAt::Parked => {
                step(
                    "park returns: spurious",
                    Certainty::MayHappen,
                    unparked(false, false),
                );
                step(
                    "park returns: timed out",
                    Certainty::MayHappen,
                    unparked(true, false),
                );
            }
            WorkerAt::Unparked { timed_out } => {
                let mut pool = self.clone();
                let next = pool.books.woke(&id, timed_out);
                step(
                    "takes the lock",
                    Certainty::Soon,
                    pool.with_worker_doing(worker, next),
                );
            }
            WorkerAt::Running(_) | WorkerAt::Exited => {}
        }
    }

    fn submitter_steps(&self, submitter: usize, steps: &mut Vec<Step<Pool>>) {
        let mut step = |what, to| {
            steps.push(Step {
                who: Actor::Submitter(submitter),
                what,
                certainty: Certainty::Soon,
                to,
            })
        };
        let mut pool = self.clone();
        match self.submitters[submitter].at {
            SubmitterAt::Submitting if self.handoff == HandoffAt::Open => {
                let Some(job) = pool.submitters[submitter].to_submit.pop() else {
                    return;
                };
                pool.handoff = HandoffAt::Filling;
                pool.submitters[submitter].at = SubmitterAt::Filling(job);
                step("finds the handoff open", pool);
            }
            SubmitterAt::Filling(job) => {
                pool.handoff = HandoffAt::Full(job);
                pool.submitters[submitter].at = SubmitterAt::Submitting;
                step("hands its job over", pool);
            }
            SubmitterAt::Submitting => {
                let Some(job) = pool.submitters[submitter].to_submit.pop() else {
                    return;
                };
                pool.submitters[submitter].at = SubmitterAt::OfferFailed(job);
                step("finds the handoff not open", pool);
            }
            SubmitterAt::OfferFailed(job) => {
                pool.submitters[submitter].at = match pool.books.submit(job) {
                    Submitted::Queued => SubmitterAt::Submitting,
                    Submitted::Wake(worker) => SubmitterAt::Unparking(worker),
                    Submitted::Spawn(job) => SubmitterAt::Spawning(job),
                };
                step("submits a job", pool);
            }
            SubmitterAt::Unparking(worker) => {
                pool.workers[worker as usize].unpark_token = true;
                pool.submitters[submitter].at = SubmitterAt::Submitting;
                step("unparks", pool);
            }
            SubmitterAt::Spawning(job) => {
                pool.submitters[submitter].at = SubmitterAt::Submitting;
                if self.spawn_can_fail {
                    let mut failed = pool.clone();
                    failed.books.spawn_failed();
                    failed.refused.push(job);
                    failed.refused.sort_unstable();
                    step("fails to start a thread", failed);
                }
                pool.workers.push(Worker {
                    at: WorkerAt::Running(Some(job)),
                    unpark_token: false,
                });
                step("starts a thread", pool);
            }
        }
    }

    fn sleeping(&self, worker: usize) -> bool {
        matches!(
            self.workers[worker].at,
            WorkerAt::Parked | WorkerAt::Unparked { .. }
        )
    }
}

impl Model for Pool {
    fn steps(&self) -> Vec<Step<Pool>> {
        let mut steps = Vec::new();
        for worker in 0..self.workers.len() {
            self.worker_steps(worker, &mut steps);
        }
        for submitter in 0..self.submitters.len() {
            self.submitter_steps(submitter, &mut steps);
        }
        steps
    }

    fn queued_jobs(&self) -> usize {
        let handed = match self.handoff {
            HandoffAt::Filling | HandoffAt::Full(_) => 1,
            HandoffAt::Closed | HandoffAt::Open => 0,
        };
        self.books.queued_jobs() + handed
    }

    fn check(&self) -> Result<(), String> {
        let books = &self.books;
        let watchers = self
            .workers
            .iter()
            .filter(|worker| {
                matches!(
                    worker.at,
                    WorkerAt::Watching
                        | WorkerAt::Ending { watch: true }
                        | WorkerAt::TookHanded(_)
                        | WorkerAt::ClosedWatch
                )
            })
            .count();
        if watchers > 1 || books.watching() != (watchers == 1) {
            return Err(format!(
                "{watchers} workers watch, the books say {}",
                books.watching()
            ));
        }
        let looking = self.workers.iter().any(|worker| {
            matches!(
                worker.at,
                WorkerAt::Watching | WorkerAt::Ending { watch: true }
            )
        });
        if self.handoff == HandoffAt::Full(JobId::MAX) {
            return Err("a handoff holding a job was opened again".into());
        }
        if self.handoff != HandoffAt::Closed && !looking {
            return Err(format!(
                "the handoff is {:?} with nobody watching it",
                self.handoff
            ));
        }
        if looking && self.handoff == HandoffAt::Closed {
            return Err("a worker watches a closed handoff".into());
        }
        if books.queued_jobs() > books.workers_coming() {
            return Err(format!(
                "{} jobs queued, {} spinning + {} woken workers",
                books.queued_jobs(),
                books.spinning(),
                books.woken()
            ));
        }
        let alive = self
            .workers
            .iter()
            .filter(|worker| worker.at != WorkerAt::Exited)
            .count();
        let starting = self
            .submitters
            .iter()
            .filter(|submitter| matches!(submitter.at, SubmitterAt::Spawning(_)))
            .count();
        if books.threads() != alive + starting {
            return Err(format!(
                "{} threads counted, {alive} alive and {starting} starting",
                books.threads()
            ));
        }
        let spinning = self
            .workers
            .iter()
            .filter(|worker| {
                matches!(
                    worker.at,
                    WorkerAt::Spinning | WorkerAt::Ending { watch: false }
                )
            })
            .count();
        if books.spinning() != spinning {
            return Err(format!(
                "{} spinning counted, {spinning} spin",
                books.spinning()
            ));
        }
        let running = self
            .workers
            .iter()
            .filter(|worker| matches!(worker.at, WorkerAt::Running(_) | WorkerAt::FinishingJob))
            .count();
        if books.running_jobs() != running + starting {
            return Err(format!(
                "{} running jobs counted, {running} running and {starting} starting",
                books.running_jobs()
            ));
        }
        let mut listed = vec![0; self.workers.len()];
        for &sleeper in books.sleepers() {
            listed[sleeper as usize] += 1;
            if listed[sleeper as usize] > 1 || !self.sleeping(sleeper as usize) {
                return Err(format!("worker {sleeper} listed as a sleeper"));
            }
        }
        let woken = (0..self.workers.len())
            .filter(|&worker| self.sleeping(worker) && listed[worker] == 0)
            .count();
        if books.woken() != woken {
            return Err(format!("{} woken counted, {woken} woken", books.woken()));
        }
        let mut seen = vec![0; self.jobs];
        let to_submit = self.submitters.iter().flat_map(|s| s.to_submit.iter());
        let starting = self.submitters.iter().filter_map(|s| match s.at {
            SubmitterAt::Spawning(job) => Some(job),
            _ => None,
        });
        let running = self.workers.iter().filter_map(|w| match w.at {
            WorkerAt::Running(job) => job,
            WorkerAt::TookHanded(job) => Some(job),
            _ => None,
        });
        let filling = self.submitters.iter().filter_map(|s| match s.at {
            SubmitterAt::Filling(job) | SubmitterAt::OfferFailed(job) => Some(job),
            _ => None,
        });
        let handed = match self.handoff {
            HandoffAt::Full(job) => Some(job),
            _ => None,
        };
        for job in to_submit
            .chain(books.jobs())
            .chain(&self.refused)
            .copied()
            .chain(starting)
            .chain(running)
            .chain(filling)
            .chain(handed)
        {
            seen[job as usize] += 1;
        }
        match seen.iter().position(|&times| times != 1) {
            Some(job) => Err(format!("job {job} is in {} places", seen[job])),
            None => Ok(()),
        }
    }
}

// ---- The old protocol, as worker_pool.rs had it before this model was written ----

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct OldBooks {
    jobs: VecDeque<JobId>,
    idle: usize,
    spinning: usize,
    threads: usize,
    promised: usize,
    resident: usize,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum OldWorkerAt {
    FinishingJob,
    /// A new thread, before its first look at the queue.
    Starting,
    Running(Option<JobId>),
    Spinning,
    /// In `Condvar::wait_timeout`: among the waiters a `notify_one` can wake.
    Waiting,
    /// Out of the wait, about to retake the lock.
    Woken {
        timed_out: bool,
    },
    Exited,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum OldSubmitterAt {
    Submitting,
    Notifying,
    Spawning,
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct OldPool {
    books: OldBooks,
    workers: Vec<OldWorkerAt>,
    submitters: Vec<(Vec<JobId>, OldSubmitterAt)>,
}

impl OldBooks {
    /// The top of the old worker loop, lock held.
    fn look(&mut self) -> OldWorkerAt {
        match self.jobs.pop_front() {
            Some(job) => {
                self.promised = self.promised.saturating_sub(1);
                OldWorkerAt::Running(Some(job))
            }
            None => {
                self.idle += 1;
                self.spinning += 1;
                OldWorkerAt::Spinning
            }
        }
    }
}

impl OldPool {
    fn new(configuration: Configuration) -> OldPool {
        let workers = (0..configuration.finishing_workers)
            .map(|_| OldWorkerAt::FinishingJob)
            .chain((0..configuration.busy_workers).map(|_| OldWorkerAt::Running(None)))
            .collect::<Vec<_>>();
        OldPool {
            books: OldBooks {
                jobs: VecDeque::new(),
                idle: 0,
                spinning: 0,
                threads: workers.len(),
                promised: 0,
                resident: configuration.resident,
            },
            workers,
            submitters: submitters_of(configuration.bursts)
                .into_iter()
                .map(|to_submit| (to_submit, OldSubmitterAt::Submitting))
                .collect(),
        }
    }
}

impl Model for OldPool {
    fn steps(&self) -> Vec<Step<OldPool>> {
        let mut steps = Vec::new();
        let mut step = |who: Actor, what, certainty, to| {
            steps.push(Step {
                who,
                what,
                certainty,
                to,
            })
        };
        for (worker, at) in self.workers.iter().enumerate() {
            let who = || Actor::Worker(worker);
            let mut pool = self.clone();
            let books = &mut pool.books;
            match at {
                OldWorkerAt::FinishingJob | OldWorkerAt::Starting => {
                    pool.workers[worker] = books.look();
                    step(who(), "looks at the queue", Certainty::Soon, pool);
                }
                OldWorkerAt::Spinning => {
                    books.spinning -= 1;
                    pool.workers[worker] = if books.jobs.is_empty() {
                        OldWorkerAt::Waiting
                    } else {
                        books.idle -= 1;
                        books.look()
                    };
                    step(who(), "ends its spin", Certainty::Soon, pool);
                }
                OldWorkerAt::Waiting => {
                    let mut spurious = self.clone();
                    spurious.workers[worker] = OldWorkerAt::Woken { timed_out: false };
                    step(
                        who(),
                        "wait returns: spurious",
                        Certainty::MayHappen,
                        spurious,
                    );
                    pool.workers[worker] = OldWorkerAt::Woken { timed_out: true };
                    step(who(), "wait returns: timed out", Certainty::MayHappen, pool);
                }
                &OldWorkerAt::Woken { timed_out } => {
                    books.idle -= 1;
                    let exits =
                        timed_out && books.jobs.is_empty() && books.threads > books.resident;
                    pool.workers[worker] = if exits {
                        books.threads -= 1;
                        OldWorkerAt::Exited
                    } else {
                        books.look()
                    };
                    step(who(), "retakes the lock", Certainty::Soon, pool);
                }
                OldWorkerAt::Running(_) | OldWorkerAt::Exited => {}
            }
        }
        for (submitter, (to_submit, at)) in self.submitters.iter().enumerate() {
            let who = || Actor::Submitter(submitter);
            let mut pool = self.clone();
            match at {
                OldSubmitterAt::Submitting => {
                    let Some(&job) = to_submit.last() else {
                        continue;
                    };
                    pool.submitters[submitter].0.pop();
                    let books = &mut pool.books;
                    books.jobs.push_back(job);
                    pool.submitters[submitter].1 = if books.idle > books.promised {
                        books.promised += 1;
                        if books.spinning == 0 {
                            OldSubmitterAt::Notifying
                        } else {
                            OldSubmitterAt::Submitting
                        }
                    } else {
                        books.threads += 1;
                        OldSubmitterAt::Spawning
                    };
                    step(who(), "submits a job", Certainty::Soon, pool);
                }
                OldSubmitterAt::Notifying => {
                    pool.submitters[submitter].1 = OldSubmitterAt::Submitting;
                    let waiting: Vec<usize> = (0..self.workers.len())
                        .filter(|&worker| self.workers[worker] == OldWorkerAt::Waiting)
                        .collect();
                    if waiting.is_empty() {
                        step(who(), "notifies nobody", Certainty::Soon, pool.clone());
                    }
                    for worker in waiting {
                        let mut notified = pool.clone();
                        notified.workers[worker] = OldWorkerAt::Woken { timed_out: false };
                        step(who(), "notifies one waiter", Certainty::Soon, notified);
                    }
                }
                OldSubmitterAt::Spawning => {
                    pool.submitters[submitter].1 = OldSubmitterAt::Submitting;
                    pool.workers.push(OldWorkerAt::Starting);
                    step(who(), "starts a thread", Certainty::Soon, pool);
                }
            }
        }
        steps
    }

    fn queued_jobs(&self) -> usize {
        self.books.jobs.len()
    }

    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

// ---- The tests ----

/// Every configuration checked: up to 3 workers from before, 1 or 2 of them resident, and up
/// to 4 jobs in up to 3 concurrent bursts.
fn configurations() -> Vec<Configuration> {
    let bursts: [&'static [usize]; 9] = [
        &[1],
        &[2],
        &[3],
        &[4],
        &[1, 1],
        &[2, 1],
        &[2, 2],
        &[3, 1],
        &[1, 1, 1],
    ];
    let mut configurations = Vec::new();
    for finishing_workers in 0..=3 {
        for busy_workers in 0..=1 {
            for resident in 1..=2 {
                for bursts in bursts {
                    if finishing_workers + busy_workers + bursts.iter().sum::<usize>() > 6 {
                        continue;
                    }
                    configurations.push(Configuration {
                        finishing_workers,
                        busy_workers,
                        resident,
                        bursts,
                        spawn_can_fail: true,
                    });
                }
            }
        }
    }
    configurations
}

#[test]
fn no_interleaving_leaves_a_job_queued_for_a_timeout() {
    let configurations = configurations();
    let next = AtomicUsize::new(0);
    let explored = Mutex::new((0, 0));
    // Configurations are independent: explore them on every core.
    let threads = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some(&configuration) =
                    configurations.get(next.fetch_add(1, Ordering::Relaxed))
                {
                    match explore(Pool::new(configuration)) {
                        Ok(found) => {
                            let mut explored = explored.lock().unwrap();
                            explored.0 += found.states;
                            explored.1 += found.steps;
                        }
                        Err(failure) => panic!("{configuration:?}: {failure}"),
                    }
                }
            });
        }
    });
    let (states, steps) = explored.into_inner().unwrap();
    println!(
        "{} configurations, {states} states, {steps} steps explored",
        configurations.len()
    );
}

/// The reported case: one worker spinning, one asleep, two jobs back to back. The old
/// protocol promises both to idle workers but wakes nobody, since one is spinning.
#[test]
fn the_old_protocol_fails_the_same_check() {
    let configuration = Configuration {
        finishing_workers: 2,
        busy_workers: 0,
        resident: 2,
        bursts: &[2],
        spawn_can_fail: false,
    };
    let failure = explore(OldPool::new(configuration)).expect_err("the old protocol strands a job");
    println!("{failure}");
    assert!(
        failure.contains("only a timeout can take them"),
        "{failure}"
    );
    assert!(explore(Pool::new(configuration)).is_ok());
}
