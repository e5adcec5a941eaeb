use super::*;
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A job stuck behind the old wake-up bug waited for a sleeper's 30 s timeout; a job that
/// is started at once takes microseconds. A second is far from both.
const START_BOUND: Duration = Duration::from_secs(1);

/// One burst of jobs that, like channel consumers, keep their worker busy until released.
struct Burst {
    started: Mutex<Vec<Option<Instant>>>,
    a_job_started: Condvar,
    released: Mutex<bool>,
    release: Condvar,
}

impl Burst {
    fn new(jobs: usize) -> Arc<Burst> {
        Arc::new(Burst {
            started: Mutex::new(vec![None; jobs]),
            a_job_started: Condvar::new(),
            released: Mutex::new(false),
            release: Condvar::new(),
        })
    }

    fn job(self: &Arc<Burst>, index: usize) -> Job {
        let burst = Arc::clone(self);
        Box::new(move || {
            burst.started.lock().unwrap()[index] = Some(Instant::now());
            burst.a_job_started.notify_all();
            let mut released = burst.released.lock().unwrap();
            while !*released {
                released = burst.release.wait(released).unwrap();
            }
        })
    }

    /// Waits until every job started or `patience` passed; the start times, None if not started.
    fn wait_started(&self, patience: Duration) -> Vec<Option<Instant>> {
        let deadline = Instant::now() + patience;
        let mut started = self.started.lock().unwrap();
        while started.iter().any(Option::is_none) && Instant::now() < deadline {
            started = self
                .a_job_started
                .wait_timeout(started, deadline.saturating_duration_since(Instant::now()))
                .unwrap()
                .0;
        }
        started.clone()
    }

    fn release(&self) {
        *self.released.lock().unwrap() = true;
        self.release.notify_all();
    }
}

/// Bursts of 2 to 16 blocking jobs, submitted back to back by `submitters` threads at once,
/// with pauses between bursts that leave the previous burst's workers in every mix of
/// running, spinning and asleep. Every job must start within [`START_BOUND`].
fn bursts_start_at_once(submitters: usize) {
    let pool = WorkerPool::new(RESIDENT_WORKERS, IDLE_EXIT_AFTER);
    let pauses = [0, 10, 40, 60, 150, 500, 2_000, 10_000].map(Duration::from_micros);
    for round in 0..400 {
        let jobs = 2 + round % 15;
        let burst = Burst::new(jobs);
        let submitted: Vec<Instant> = {
            let share = jobs.div_ceil(submitters);
            let all_ready = Barrier::new(jobs.div_ceil(share));
            let mut submitted = vec![Instant::now(); jobs];
            std::thread::scope(|scope| {
                for (nth, share_submitted) in submitted.chunks_mut(share).enumerate() {
                    let (pool, burst, all_ready) = (&pool, &burst, &all_ready);
                    let first = nth * share;
                    scope.spawn(move || {
                        all_ready.wait();
                        for (offset, at) in share_submitted.iter_mut().enumerate() {
                            *at = Instant::now();
                            pool.submit(burst.job(first + offset))
                                .expect("a worker thread starts");
                        }
                    });
                }
            });
            submitted
        };
        let started = burst.wait_started(2 * START_BOUND);
        burst.release();
        let late: Vec<String> = started
            .iter()
            .zip(&submitted)
            .enumerate()
            .filter_map(|(index, (started, submitted))| match started {
                Some(at) if at.duration_since(*submitted) <= START_BOUND => None,
                Some(at) => Some(format!(
                    "job {index} after {:?}",
                    at.duration_since(*submitted)
                )),
                None => Some(format!(
                    "job {index} not started after {:?}",
                    2 * START_BOUND
                )),
            })
            .collect();
        assert!(
            late.is_empty(),
            "round {round}, burst of {jobs}: {} late: {late:?}",
            late.len()
        );
        std::thread::sleep(pauses[round % pauses.len()]);
    }
}

#[test]
fn every_job_of_a_burst_from_one_submitter_starts_at_once() {
    bursts_start_at_once(1);
}

#[test]
fn every_job_of_a_burst_from_three_submitters_starts_at_once() {
    bursts_start_at_once(3);
}

/// Waits up to 5 s for `condition`.
pub(crate) fn eventually(condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

#[test]
fn idle_workers_beyond_the_resident_ones_exit_and_the_count_follows() {
    let pool = WorkerPool::new(2, Duration::from_millis(50));
    let burst = Burst::new(5);
    for index in 0..5 {
        pool.submit(burst.job(index)).unwrap();
    }
    assert!(burst.wait_started(START_BOUND).iter().all(Option::is_some));
    assert_eq!(pool.thread_count(), 5);
    assert_eq!(pool.job_counts(), (5, 0));
    burst.release();
    assert!(eventually(|| pool.job_counts() == (0, 0)));
    assert!(
        eventually(|| pool.thread_count() == 2),
        "{} threads",
        pool.thread_count()
    );
    // The resident ones stay past several timeouts, and still take jobs.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(pool.thread_count(), 2);
    let (sender, receiver) = std::sync::mpsc::channel();
    pool.submit(Box::new(move || sender.send(()).unwrap()))
        .unwrap();
    receiver
        .recv_timeout(START_BOUND)
        .expect("a resident worker ran the job");
    assert_eq!(pool.thread_count(), 2);
}

#[test]
fn a_panicking_job_leaves_its_worker_working_and_counted() {
    let pool = WorkerPool::new(1, Duration::from_millis(50));
    let (sender, receiver) = std::sync::mpsc::channel();
    let about_to_fail = sender.clone();
    pool.submit(Box::new(move || {
        about_to_fail.send(()).unwrap();
        panic!("a job that fails (expected by this test)");
    }))
    .unwrap();
    receiver
        .recv_timeout(START_BOUND)
        .expect("the failing job ran");
    pool.submit(Box::new(move || sender.send(()).unwrap()))
        .unwrap();
    receiver
        .recv_timeout(START_BOUND)
        .expect("the next job ran");
    // Whether the next job found the first worker or a new one, one thread remains.
    assert!(
        eventually(|| pool.thread_count() == 1),
        "{} threads",
        pool.thread_count()
    );
}

/// A caller that submits its next job as soon as it has the answer of the last one (a
/// `py:call` loop) keeps one worker: the job says it is ending once it has answered, before
/// it returns, so the next one is queued for its worker. Before, that submit found no
/// worker spinning yet and woke or started another, and two workers took turns, both
/// spinning.
#[test]
fn a_job_submitted_in_reply_to_an_ending_job_goes_to_its_worker() {
    let pool = Arc::new(WorkerPool::new(2, Duration::from_secs(30)));
    let (ran_on, ran) = std::sync::mpsc::channel();
    let chain = Arc::new(Mutex::new(None::<Box<dyn Fn(usize) -> Job + Send + Sync>>));
    let next = {
        let (pool, chain) = (Arc::clone(&pool), Arc::clone(&chain));
        move |left: usize| -> Job {
            let (pool, chain, ran_on) = (Arc::clone(&pool), Arc::clone(&chain), ran_on.clone());
            Box::new(move || {
                ran_on.send(std::thread::current().id()).unwrap();
                if left > 0 {
                    job_ending();
                    // The answer reaches the caller, which submits at once.
                    let job = chain.lock().unwrap().as_ref().unwrap()(left - 1);
                    pool.submit(job).unwrap();
                }
            })
        }
    };
    *chain.lock().unwrap() = Some(Box::new(next));
    let first = chain.lock().unwrap().as_ref().unwrap()(100);
    pool.submit(first).unwrap();
    let threads: Vec<_> = (0..=100)
        .map(|_| ran.recv_timeout(START_BOUND).expect("every job runs"))
        .collect();
    assert!(
        threads.iter().all(|thread| *thread == threads[0]),
        "{threads:?}"
    );
    assert_eq!(pool.thread_count(), 1);
    *chain.lock().unwrap() = None;
}

#[test]
fn a_job_for_the_watching_worker_is_handed_over_without_the_books() {
    let pool = Arc::new(WorkerPool::new(2, Duration::from_secs(30)));
    let (ran_on, ran) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let first_ran_on = ran_on.clone();
    pool.submit(Box::new(move || {
        job_ending();
        // The caller has its answer and submits its next job while this one returns.
        first_ran_on.send(std::thread::current().id()).unwrap();
        released.recv_timeout(START_BOUND).unwrap();
    }))
    .unwrap();
    let first = ran.recv_timeout(START_BOUND).expect("the first job runs");
    assert_eq!(pool.shared.handoff.state.load(Ordering::Acquire), OPEN);
    assert!(pool.shared.lock_books().watching());
    pool.submit_ticketed(
        Box::new(move || {
            ran_on.send(std::thread::current().id()).unwrap();
        }),
        7,
    )
    .unwrap();
    // The job waits in the handoff for its watcher, not in the queue; it is known there by
    // its ticket, with the core of its watcher.
    assert_eq!(pool.shared.handoff.state.load(Ordering::Acquire), FULL);
    assert_eq!(pool.job_counts(), (0, 1));
    #[cfg(target_os = "linux")]
    assert!(pool.handed_job_waits_on(7).is_some());
    assert_eq!(pool.handed_job_waits_on(8), None);
    release.send(()).unwrap();
    let second = ran.recv_timeout(START_BOUND).expect("the handed job runs");
    assert_eq!(second, first);
    assert_eq!(pool.handed_job_waits_on(7), None);
    assert_eq!(pool.thread_count(), 1);
    // With no job handed within its watch, the watcher closes the handoff and sleeps.
    assert!(eventually(|| {
        pool.shared.handoff.state.load(Ordering::Acquire) == CLOSED
            && pool.shared.lock_books().sleepers().len() == 1
    }));
    assert!(!pool.shared.lock_books().watching());
    assert_eq!(pool.job_counts(), (0, 0));
}

/// The cores the calling thread may run on (`pid` 0), or those of the process's main thread.
#[cfg(target_os = "linux")]
pub(crate) fn cores_of(pid: libc::pid_t) -> Vec<usize> {
    // SAFETY: `cpu_set_t` is plain data; it is read with its exact size, and `CPU_ISSET`
    // looks at bits below `CPU_SETSIZE` only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        assert_eq!(libc::sched_getaffinity(pid, size, &mut set), 0);
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&core| libc::CPU_ISSET(core, &set))
            .collect()
    }
}

/// A submitter bound to one core (a scheduler under `+sbt db`) starts workers that may run on
/// every core of the process, not on its own alone.
#[cfg(target_os = "linux")]
#[test]
fn workers_do_not_inherit_the_submitters_binding() {
    // SAFETY: no arguments.
    let process_cores = cores_of(unsafe { libc::getpid() });
    if process_cores.len() < 2 {
        eprintln!(
            "skipped: one core ({process_cores:?}) cannot tell a bound thread from a free one"
        );
        return;
    }
    let submitter = std::thread::spawn(move || {
        // SAFETY: plain data, set with its exact size; the core is one the process may use.
        unsafe {
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(process_cores[0], &mut one);
            let size = std::mem::size_of::<libc::cpu_set_t>();
            assert_eq!(libc::sched_setaffinity(0, size, &one), 0);
        }
        let pool = WorkerPool::new(0, Duration::from_secs(1));
        let (sender, answers) = std::sync::mpsc::channel();
        pool.submit(Box::new(move || sender.send(cores_of(0)).unwrap()))
            .unwrap();
        (cores_of(0), answers.recv_timeout(START_BOUND).unwrap())
    });
    let (submitter_cores, worker_cores) = submitter.join().unwrap();
    assert_eq!(submitter_cores.len(), 1);
    // SAFETY: no arguments.
    assert_eq!(worker_cores, cores_of(unsafe { libc::getpid() }));
}

/// The cores the calling thread may run on, if there are two or more; else `None`, and the
/// calling test says it is skipped: one core has no `elsewhere`.
#[cfg(target_os = "linux")]
pub(crate) fn two_cores_or_skip(elsewhere: &str) -> Option<Vec<usize>> {
    let cores = cores_of(0);
    if cores.len() < 2 {
        eprintln!("skipped: one core ({cores:?}) has no {elsewhere}");
        return None;
    }
    Some(cores)
}

/// Binds the calling thread to `cores`.
#[cfg(target_os = "linux")]
pub(crate) fn bind_to(cores: &[usize]) {
    // SAFETY: plain data, set with its exact size; the cores are ones the process may use.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &core in cores {
            libc::CPU_SET(core, &mut set);
        }
        let size = std::mem::size_of::<libc::cpu_set_t>();
        assert_eq!(libc::sched_setaffinity(0, size, &set), 0);
    }
}

/// A thread steps off its core at once, and may then run wherever it could before; not off a
/// core it is bound to alone, nor one it is not on. (Tries are a millisecond apart: the test
/// waits that out between them, and tries again should the OS move the thread meanwhile.)
#[cfg(target_os = "linux")]
#[test]
fn a_thread_steps_off_its_core_and_keeps_its_binding() {
    use super::affinity::{current_core, step_off};
    let Some(cores) = two_cores_or_skip("core to step to") else {
        return;
    };
    let next_try = || std::thread::sleep(Duration::from_millis(2));
    std::thread::spawn(move || {
        let (first, second) = (cores[0] as u32, cores[1] as u32);
        bind_to(&cores[..1]);
        assert!(!step_off(second), "not on that core");
        next_try();
        assert!(!step_off(first), "bound to its core alone, it stays");
        assert_eq!(current_core(), Some(first));
        next_try();
        bind_to(&cores);
        let stepped_off = (0..100).any(|_| {
            next_try();
            let here = current_core().unwrap();
            step_off(here) && current_core() != Some(here)
        });
        assert!(stepped_off);
        assert_eq!(cores_of(0), cores, "its binding is as before");
    })
    .join()
    .unwrap();
}
