//! Running `py:exec/eval/call` requests on worker threads and answering the caller with a
//! message `{py_response, Ref, Result}`.
//!
//! Python exceptions come back as `{error, {ExceptionName, Message}}` (the name an existing
//! atom, else a binary) in a message `{py_response, Ref, Result, Traceback}`, the formatted
//! traceback being kept by `py` for `py:last_traceback/0`. The traceback also goes to the
//! `py_runtime` process for `logger` (debug when a caller receives the error, error when
//! nobody does: a cast, or a caller that has exited).

use crate::beam::atoms;
use crate::beam::env_pool::PooledEnv;
use crate::beam::kept_bytes::KeptBytes;
use crate::beam::term_scan;
use crate::conversion::{flat_term, to_erlang, to_python, BinaryMode};
use crate::python::callbacks;
use crate::python::cancel::{self, CancelToken, Cancelled};
use crate::python::interpreter;
use crate::python::output;
use crate::python::thread_state;
use crate::worker_pool;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple};
use rustler::env::SavedTerm;
use rustler::sys::{enif_make_copy, enif_send, ErlNifTerm};
use rustler::{Encoder, Env, LocalPid, Monitor, NifResult, OwnedEnv, Resource, ResourceArc, Term};
use smallvec::SmallVec;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A process's Python globals (per context), freed when the process's handle to it is gone.
/// It starts with `Channel`, `ChannelClosed` and `reply` from `erlang.channel`.
/// Dropped on a scheduler thread, the dict's release is deferred by pyo3 to the next time a
/// worker holds the GIL: a destructor never waits for it.
///
/// It also watches its process, with one monitor made when the namespace is: the process's
/// exit cancels the jobs it is waiting for. One monitor per job would cost each job a
/// demonitor from its worker thread, a signal that wakes the caller's scheduler just before
/// the answer does (1.4 µs in a quiet run, 18 µs when that scheduler was asleep).
pub struct Namespace {
    globals: PyOnceLock<Py<PyDict>>,
    /// The cancel tokens of the owner's jobs that answer it: those not done, and those done
    /// since the owner last submitted one (cancelling a job that is over does nothing). The
    /// owner drops the finished ones, so a worker never takes this lock: the lock and the
    /// list stay in the owner's cache, where the next submit needs them.
    awaited: Mutex<Vec<Arc<CancelToken>>>,
    /// The handle of the call the owner waits for at once (`py:call`, `eval`, `exec`): held
    /// here, not in a resource of its own, and named by this namespace in the NIFs that look
    /// for its answer (`HeldHandle`). A resource per call was 93 words on the caller's
    /// virtual binary heap, and each one died in a garbage collection, a few hundred at a
    /// time: 5-25 us collections inside the calls timed, 80-90 of every 20,000 `py:call`s
    /// over 8 us.
    looked_for: Mutex<Option<Arc<JobHandle>>>,
}

impl Default for Namespace {
    fn default() -> Self {
        Namespace {
            globals: PyOnceLock::new(),
            awaited: Mutex::new(Vec::new()),
            looked_for: Mutex::new(None),
        }
    }
}

// The dict is only touched with the GIL held; a panic cannot leave it half-updated.
impl std::panic::RefUnwindSafe for Namespace {}

#[rustler::resource_impl]
impl Resource for Namespace {
    fn down<'a>(&'a self, _env: Env<'a>, _pid: LocalPid, _monitor: Monitor) {
        for token in lock(&self.awaited).drain(..) {
            token.cancel();
        }
    }
}

/// Names every process namespace starts with, from `erlang.channel`.
const NAMESPACE_IMPORTS: [&str; 3] = ["Channel", "ChannelClosed", "reply"];

impl Namespace {
    /// A namespace for the calling process, which it watches.
    pub fn for_caller(env: Env<'_>) -> ResourceArc<Namespace> {
        let namespace = ResourceArc::new(Namespace::default());
        // No monitor only if the caller is exiting already: its jobs' answers go nowhere.
        let _ = namespace.monitor(Some(env), &env.pid());
        namespace
    }

    /// The owner now waits for the job of `token`: its exit cancels it.
    pub fn await_job(&self, token: &Arc<CancelToken>) {
        let mut awaited = lock(&self.awaited);
        awaited.retain(|token| !token.is_finished());
        awaited.push(Arc::clone(token));
    }

    /// The handle of a job the owner will wait for at once, in place of the one it waited for
    /// before. That one is made new again when nothing else holds it (its worker is done with
    /// it), as it nearly always is: a handle is aligned to cache lines, and a fresh one an
    /// aligned allocation, the slow path of the allocator. A job given up while it still runs
    /// keeps its own.
    pub fn new_looked_for(&self) -> Arc<JobHandle> {
        let mut looked_for = lock(&self.looked_for);
        match looked_for.as_mut().and_then(Arc::get_mut) {
            Some(done) => *done = JobHandle::looked_for_at_once(),
            None => {
                let running = looked_for.replace(Arc::new(JobHandle::looked_for_at_once()));
                // Its worker lets it go.
                drop(running);
            }
        }
        let handle = looked_for.as_ref().expect("just put there");
        Arc::clone(handle)
    }

    /// The handle of the job the owner last waited for at once.
    pub fn looked_for(&self) -> Option<Arc<JobHandle>> {
        lock(&self.looked_for).clone()
    }

    fn globals<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let globals = self
            .globals
            .get_or_try_init(py, || -> PyResult<Py<PyDict>> {
                let globals = PyDict::new(py);
                globals.set_item("__builtins__", py.import("builtins")?)?;
                globals.set_item("__name__", "__main__")?;
                // What channel code needs, there whichever language runs it (Erlang, Elixir
                // and Gleam see the same namespace): no import for the common case.
                let channel = py.import("erlang.channel")?;
                for name in NAMESPACE_IMPORTS {
                    globals.set_item(name, channel.getattr(name)?)?;
                }
                Ok(globals.unbind())
            })?;
        Ok(globals.bind(py).clone())
    }
}

/// No answer yet; the caller will find it in its mailbox.
const PENDING: u8 = 0;
/// The answer is sent (or being sent) as a message.
const DELIVERED: u8 = 1;
/// The caller gave up: no answer will reach it.
const ABANDONED: u8 = 2;
/// No answer yet; the caller looks at the handle (`py_answer:look/2`), or will as soon as
/// the submit returns: the answer is kept in the handle for it, not sent.
const POLLING: u8 = 3;
/// The answer is parked in the handle.
const PARKED: u8 = 4;
/// The caller took the parked answer.
const TAKEN: u8 = 5;
/// The answer is `{ok, Value}` with `Value` small plain data, kept encoded in the handle
/// (`AnswerBlock`).
const KEPT_ENCODED: u8 = 6;

/// What a polling caller looks at, again and again, and the encoding of a small answer, on
/// lines of their own (as `py_channel:call/3`'s caller, `beam/caller.rs`).
#[repr(C, align(128))]
#[derive(Default)]
struct AnswerBlock {
    state: AtomicU8,
    /// Bytes of the answer kept in `bytes`, written before the state says `KEPT_ENCODED`.
    length: AtomicUsize,
    bytes: KeptBytes<KEPT_ANSWER_BYTES>,
}

/// What an `AnswerBlock` holds after its state and length.
const KEPT_ANSWER_BYTES: usize = 128 - 16;

const _: () = assert!(size_of::<AnswerBlock>() == 128);

/// The caller's hold on a job: it can make sure no late answer reaches it (a timeout), and
/// cancel the job (`py:cancel/1`, a timeout, or its own exit, seen by the monitor of its
/// namespace or, for a job without one, by a monitor of the job's own).
#[derive(Default)]
pub struct JobHandle {
    answer: AnswerBlock,
    /// The answer, while `PARKED`: for a polling caller, a message it takes with
    /// [`JobHandle::poll`] instead of a send from the worker, which took 0.8-1.0 us of a
    /// `py:call`'s 4 (a send from a thread that is not a scheduler: the process looked up,
    /// thread progress held off, its signal queue locked while its owner polls it). A
    /// small plain value is kept encoded instead (`KEPT_ENCODED`): a message built in the
    /// job's env, copied out by the caller and cleared on its scheduler, took 1.9 us from
    /// the value converted to the caller having it.
    parked: Mutex<Option<ParkedAnswer>>,
    /// The stages of a job timed that kept its answer encoded: its `Timings`, let go by the
    /// caller, on the scheduler that made them.
    kept_timings: Mutex<Option<Box<Timings>>>,
    /// The job's env, with its inputs (if few, `env_pool::few_terms`), once its answer is
    /// kept encoded: the caller lets it go when it takes the answer, on its scheduler, where
    /// the inputs were copied in. Cleared on the worker thread, each heap block went back to
    /// that scheduler as delayed work, handed out at its next time slice's end (`py:call`'s
    /// p99 5.9-7.2 against 5.4-5.9 us, `make bench` table 3, A/B x4).
    inputs: Mutex<Option<PooledEnv>>,
    /// A worker thread has begun the job.
    started: AtomicBool,
    pub token: Arc<CancelToken>,
    /// For a job without a namespace (`py_start`): the caller, monitored while the job runs,
    /// whose exit cancels the job.
    caller: Mutex<Option<Monitor>>,
}

#[rustler::resource_impl]
impl Resource for JobHandle {
    fn down<'a>(&'a self, _env: Env<'a>, _pid: LocalPid, _monitor: Monitor) {
        self.token.cancel();
    }
}

impl JobHandle {
    /// The handle of a job whose caller looks for the answer as soon as the submit returns
    /// (`py_answer:look/2`): the answer is kept for it from the start, until it stops looking.
    /// A caller whose time slice ended between the submit and its first look had its answer
    /// sent from the worker's thread, a message allocated outside the schedulers and freed
    /// on one: work for the VM's aux thread, which then took a core for microseconds
    /// (1,800 sends a second in a loop of `py:call`s, at 300,000 calls a second).
    fn looked_for_at_once() -> Self {
        let handle = JobHandle::default();
        handle.answer.state.store(POLLING, Ordering::Relaxed);
        handle
    }

    /// True if the answer will never be sent; false if it is sent or on its way.
    pub fn abandon(&self) -> bool {
        self.answer
            .state
            .compare_exchange(PENDING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub fn started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// Names the job in the worker pool (`worker_pool::handed_job_waits_on`): the handle's
    /// address, which no other live handle has.
    pub fn ticket(&self) -> usize {
        self as *const JobHandle as usize
    }

    /// The worker's side, for a polling caller: keeps `value`, if it is small plain data,
    /// encoded for it (the answer `{ok, Value}`). False if it is not kept: not small plain
    /// data, or the caller no longer polls; the answer is then made as usual.
    /// A timed job's stages (`timings`) are kept with it (taken from `timings` if kept).
    /// `free_early`: nothing left of the job can wait (see `lets_go_without_code`).
    /// `inputs`: the job's env, handed to the caller with the answer if kept (see
    /// `JobHandle::inputs`); `None` leaves it with the job.
    fn keep_encoded(
        &self,
        value: &Bound<'_, PyAny>,
        timings: &mut Option<Box<Timings>>,
        free_early: bool,
        mut inputs: Option<&mut PooledEnv>,
    ) -> bool {
        flat_term::with_scratch(|encoded| {
            let fits = matches!(flat_term::encode(value, encoded), Ok(Some(_)))
                && encoded.len() <= KEPT_ANSWER_BYTES;
            if !fits {
                return false;
            }
            if let Some(timings) = timings.take() {
                timings.mark("result");
                *lock(&self.kept_timings) = Some(timings);
            }
            // SAFETY: the job's one worker answers once, here; the caller reads the bytes
            // only once the state below says they are kept.
            unsafe { self.answer.bytes.write(encoded) };
            self.answer.length.store(encoded.len(), Ordering::Relaxed);
            if free_early {
                worker_pool::job_ending();
            }
            if let Some(env) = inputs.as_deref_mut() {
                *lock(&self.inputs) = Some(env.hand_over());
            }
            let kept = self.transition(POLLING, KEPT_ENCODED);
            if let (false, Some(env)) = (kept, inputs) {
                *env = lock(&self.inputs)
                    .take()
                    .expect("only the caller takes the inputs, once the answer is kept");
            }
            if !kept {
                *timings = lock(&self.kept_timings).take();
                if let Some(timings) = timings {
                    // The stage ends again when the answer is made as usual.
                    timings.marks.borrow_mut().pop();
                }
            }
            kept
        })
    }

    /// The worker's side: `message`, a term of `env`, goes to the caller `to`: parked here
    /// while the caller polls, else sent. False if nobody will have it (the caller gave up).
    /// A large answer is always sent: the caller would copy it in a NIF call, on its scheduler.
    fn hand_over(&self, env: PooledEnv, message: ErlNifTerm, to: &LocalPid) -> bool {
        let mut answer = ParkedAnswer { env, message };
        loop {
            let state = self.answer.state.load(Ordering::Acquire);
            match state {
                POLLING if answer.is_small() => {
                    *lock(&self.parked) = Some(answer);
                    if self.transition(POLLING, PARKED) {
                        return true;
                    }
                    // The caller stopped polling meanwhile: send it after all.
                    answer = lock(&self.parked).take().expect(
                        "only this thread parks, and only the caller unparks a PARKED answer",
                    );
                }
                POLLING | PENDING if self.transition(state, DELIVERED) => return answer.send(to),
                POLLING | PENDING => {}
                _ => return false,
            }
        }
    }

    /// The caller's side, while it polls for the answer: `Polled::Parked` with the message
    /// (now the caller's), `Sent` if it is in the mailbox or on its way, else `NotYet` (and
    /// the worker will park the answer). Never blocks: the lock is only held to move it.
    pub fn poll(&self) -> Polled<'_> {
        loop {
            match self.answer.state.load(Ordering::Acquire) {
                PENDING if self.transition(PENDING, POLLING) => return Polled::NotYet,
                PENDING => {}
                POLLING => return Polled::NotYet,
                done => return self.answered(done),
            }
        }
    }

    /// The caller stops polling and will wait in `receive`: the answer is sent from now on.
    /// `Polled::Parked` if it was parked meanwhile.
    pub fn stop_polling(&self) -> Polled<'_> {
        if self.transition(POLLING, PENDING) {
            return Polled::NotYet;
        }
        match self.answer.state.load(Ordering::Acquire) {
            PENDING => Polled::NotYet,
            done => self.answered(done),
        }
    }

    /// What a polling caller finds once the worker is done with the answer (`state`).
    fn answered(&self, state: u8) -> Polled<'_> {
        match state {
            KEPT_ENCODED => {
                // Only the caller leaves KEPT_ENCODED, and it is this thread.
                self.answer.state.store(TAKEN, Ordering::Release);
                let length = self.answer.length.load(Ordering::Relaxed);
                let marks = lock(&self.kept_timings)
                    .take()
                    .map(|timings| timings.marks.into_inner())
                    .unwrap_or_default();
                // The job's few inputs, let go here, not under the lock.
                let inputs = lock(&self.inputs).take();
                drop(inputs);
                // SAFETY: the state read (`Acquire`) said the bytes were kept.
                Polled::Encoded(unsafe { self.answer.bytes.read(length) }, marks)
            }
            PARKED => {
                // Only the caller leaves PARKED, and it is this thread.
                self.answer.state.store(TAKEN, Ordering::Release);
                lock(&self.parked)
                    .take()
                    .map_or(Polled::Gone, Polled::Parked)
            }
            DELIVERED => Polled::Sent,
            // Taken or given up: the caller has no answer coming.
            _ => Polled::Gone,
        }
    }

    fn transition(&self, from: u8, to: u8) -> bool {
        self.answer
            .state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Cancels the job if the process `caller` exits before it is done.
    pub fn watch_caller(handle: &ResourceArc<JobHandle>, env: Env<'_>, caller: &LocalPid) {
        if let Some(monitor) = handle.monitor(Some(env), caller) {
            *lock(&handle.caller) = Some(monitor);
        }
    }

    /// The job is done: its caller's exit no longer matters. Called from the job's thread.
    fn stop_watching(handle: &HeldHandle) {
        handle.token.finish();
        // Only a handle held as a term watches its caller itself (`watch_caller`).
        if let HeldHandle::Term(handle) = handle {
            if let Some(monitor) = lock(&handle.caller).take() {
                handle.demonitor(None, &monitor);
            }
        }
    }
}

pub enum Work {
    Start,
    Exec {
        code: SavedTerm,
    },
    Eval {
        code: SavedTerm,
        locals: SavedTerm,
    },
    Call {
        module: SavedTerm,
        function: SavedTerm,
        args: SavedTerm,
        kwargs: SavedTerm,
        /// `py:stream`: what the call returns (a generator) is sent item by item into this
        /// channel, which is closed at the end.
        stream_to: Option<SavedTerm>,
    },
}

/// Who hears about the outcome.
pub enum Answer {
    /// `{py_response, Ref, Result}` to the caller.
    Reply { to: LocalPid, reference: SavedTerm },
    /// Nobody: failures are logged at error level.
    Cast,
}

pub struct Job {
    /// When the caller asked for the stages' times (`make bench`'s breakdowns). Boxed: a
    /// job is moved to its worker whole, across cores, and the marks inline made every job
    /// 232 bytes larger, timed or not (`py:call`'s median 0.1 us higher, A/B in
    /// docs/threading.md).
    pub timings: Option<Box<Timings>>,
    pub env: PooledEnv,
    /// The inputs saved in `env` are few terms (`env_pool::few_terms`): the caller of a kept
    /// answer may let the env go on its scheduler.
    pub few_inputs: bool,
    pub work: Work,
    pub namespace: Option<ResourceArc<Namespace>>,
    /// Where the code's output goes: the caller's group leader.
    pub output: Option<LocalPid>,
    pub answer: Answer,
    pub handle: HeldHandle,
}

/// Who holds a job's handle besides the job: the caller, as a term (`py:spawn_call`,
/// `py:start`, `py:cast`), or the caller's namespace, for a call it waits for at once. The
/// caller names the job to the NIFs that look for its answer by the same term.
pub enum HeldHandle {
    Term(ResourceArc<JobHandle>),
    Namespace(Arc<JobHandle>),
}

impl<'a> rustler::Decoder<'a> for HeldHandle {
    fn decode(term: Term<'a>) -> NifResult<Self> {
        if let Ok(namespace) = term.decode::<&Namespace>() {
            return namespace
                .looked_for()
                .map(HeldHandle::Namespace)
                .ok_or(rustler::Error::BadArg);
        }
        term.decode().map(HeldHandle::Term)
    }
}

impl std::ops::Deref for HeldHandle {
    type Target = JobHandle;

    fn deref(&self) -> &JobHandle {
        match self {
            HeldHandle::Term(handle) => handle,
            HeldHandle::Namespace(handle) => handle,
        }
    }
}

/// The stages a timed job passed, and when: inline in its `Timings` and in the handle, not
/// in an allocation of their own (one made on the caller's scheduler and freed on the
/// worker's thread took 0.4 us of the stage it was timed in). The `Timings` box itself is
/// made before the clock starts, and goes back with a kept answer to be freed by the caller,
/// on the thread that made it: freed by the worker, it put 0.35 us into the caller's last
/// stage.
pub type StageMarks = SmallVec<[(&'static str, u64); 8]>;

/// When each stage of a job ended, in nanoseconds since the submitting NIF was entered.
/// Kept only for a job submitted with `timed` (the bench's breakdowns of `py:call` and
/// `py:eval`): the answer is then `{py_timed, Ref, Result, [{Stage, Ns}]}`.
pub struct Timings {
    origin: Instant,
    marks: RefCell<StageMarks>,
}

impl Timings {
    /// Boxed before the clock starts, so that its allocation is in no stage.
    pub fn start_now() -> Box<Self> {
        let mut timings = Box::new(Timings {
            origin: Instant::now(),
            marks: RefCell::new(StageMarks::new()),
        });
        timings.origin = Instant::now();
        timings
    }

    pub fn mark(&self, stage: &'static str) {
        let nanos = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.marks.borrow_mut().push((stage, nanos));
    }
}

/// Python's verdict: a term to return, or the exception's name, message and traceback.
enum Outcome {
    Value(Option<Py<PyAny>>),
    Raised {
        name: String,
        message: String,
        traceback: String,
    },
    NotStarted(String),
    Cancelled,
}

impl Job {
    pub fn run(mut self) {
        self.handle.started.store(true, Ordering::Release);
        self.mark("started");
        let token = Arc::clone(&self.handle.token);
        if token.is_cancelled() {
            return self.finish(None, Outcome::Cancelled);
        }
        if let Err(reason) = interpreter::ensure_started() {
            return self.finish(None, Outcome::NotStarted(reason));
        }
        Python::attach(|py| {
            thread_state::keep_for_this_thread(py);
            self.mark("gil");
            let evaluated = output::directed_to(py, self.output, || {
                cancel::run_as(py, &token, || self.evaluate(py))
            });
            let outcome = match evaluated {
                _ if token.is_cancelled() => Outcome::Cancelled,
                Ok(value) => Outcome::Value(value),
                Err(error) if error.is_instance_of::<Cancelled>(py) => Outcome::Cancelled,
                Err(error) => raised(py, error),
            };
            // Answered before the GIL is let go: the result is converted once, straight into
            // the message, rather than after a second wait for the GIL.
            self.finish(Some(py), outcome)
        })
    }

    /// Answers the caller (if anyone waits), stops watching it, and logs an exception.
    fn finish(&mut self, py: Option<Python<'_>>, outcome: Outcome) {
        let delivered = self.answer(py, &outcome);
        // The result goes now: its finalizers (a `__del__`, which may wait) run before this
        // worker says it is free.
        let traceback = match outcome {
            Outcome::Raised { traceback, .. } => Some(traceback),
            result => {
                drop(result);
                None
            }
        };
        // The caller may submit its next job as soon as it has the answer: this worker takes
        // it (rather than another one woken for it, see `worker_pool::job_ending`). All that
        // is left of the job is bounded, and runs no Python code.
        worker_pool::job_ending();
        JobHandle::stop_watching(&self.handle);
        if let Some(traceback) = traceback {
            let level = if delivered {
                atoms::debug()
            } else {
                atoms::error()
            };
            log(level, &traceback);
        }
    }

    fn evaluate(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.env.run(|env| {
            let input = |saved: &SavedTerm| saved.load(env);
            match &self.work {
                Work::Start => Ok(None),
                Work::Exec { code } => {
                    let globals = self.globals(py)?;
                    let code = compiled(py, input(code), Mode::Exec)?;
                    run_code(py, &code, &globals, &globals)?;
                    Ok(None)
                }
                Work::Eval { code, locals } => {
                    let globals = self.globals(py)?;
                    let locals = to_python(py, input(locals), BinaryMode::Auto)?;
                    let locals = locals.cast_into::<PyDict>()?;
                    self.mark("arguments");
                    let code = compiled(py, input(code), Mode::Eval)?;
                    self.mark("lookup");
                    let result = run_code(py, &code, &globals, &locals)?;
                    self.mark("call");
                    Ok(Some(result.unbind()))
                }
                Work::Call {
                    module,
                    function,
                    args,
                    kwargs,
                    stream_to,
                } => {
                    let args = argument_tuple(py, input(args))?;
                    let kwargs = input(kwargs);
                    // No keyword arguments (the common case): no dict made to say so.
                    let kwargs = match kwargs.map_size() {
                        Ok(0) => None,
                        _ => Some(to_python(py, kwargs, BinaryMode::Auto)?.cast_into::<PyDict>()?),
                    };
                    self.mark("arguments");
                    let Some(channel) = stream_to else {
                        let callable = self.callable(py, input(module), input(function))?;
                        self.mark("lookup");
                        let result = callable.call(args, kwargs.as_ref())?;
                        self.mark("call");
                        return Ok(Some(result.unbind()));
                    };
                    // The channel closes whatever happens, even if the function is not found,
                    // so a reader never waits for items that will not come.
                    let channel = to_python(py, input(channel), BinaryMode::Auto)?;
                    let produced = self
                        .callable(py, input(module), input(function))
                        .and_then(|callable| callable.call(args, kwargs.as_ref()));
                    let stream = py.import("erlang._stream")?;
                    match produced {
                        Ok(produced) => stream.call_method1("pump", (channel, produced))?,
                        Err(error) => {
                            stream.call_method1("close", (channel,))?;
                            return Err(error);
                        }
                    };
                    Ok(Some(py.None()))
                }
            }
        })
    }

    fn mark(&self, stage: &'static str) {
        if let Some(timings) = &self.timings {
            timings.mark(stage);
        }
    }

    fn globals<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        match &self.namespace {
            Some(namespace) => namespace.globals(py),
            None => Ok(PyDict::new(py)),
        }
    }

    /// `module.function`, where `function` may be a dotted path (`path.join`) and the module
    /// `__main__` means the caller's own namespace (functions defined with `py:exec`).
    fn callable<'py>(
        &self,
        py: Python<'py>,
        module: Term<'_>,
        function: Term<'_>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let module = name_object(py, module)?;
        let function = name_object(py, function)?;
        let text = function.to_str()?;
        let mut path = text.split('.');
        let first_text = path.next().unwrap_or_default();
        // An undotted name is looked up by its interned string itself.
        let first = if first_text.len() == text.len() {
            function.clone()
        } else {
            PyString::new(py, first_text)
        };
        let mut target = if module.to_str()? == "__main__" {
            self.globals(py)?.get_item(&first)?.ok_or_else(|| {
                pyo3::exceptions::PyNameError::new_err(format!("name '{first}' is not defined"))
            })?
        } else {
            imported(py, &module)?.getattr(&first)?
        };
        for attribute in path {
            target = target.getattr(attribute)?;
        }
        Ok(target)
    }

    /// Sends `{py_response, Ref, Result}` to the caller, built in the job's own env (its
    /// inputs are no longer needed), or parks it in the handle for a caller that polls. False
    /// if nobody heard it.
    fn answer(&mut self, py: Option<Python<'_>>, outcome: &Outcome) -> bool {
        let Job {
            env,
            few_inputs,
            answer,
            handle,
            timings,
            ..
        } = self;
        let Answer::Reply { to, reference } = answer else {
            return false;
        };
        if handle.answer.state.load(Ordering::Acquire) == ABANDONED {
            return false;
        }
        // When nothing left of the job can wait, its worker is free before the caller can
        // have the answer (and submit its next job): a window after it, however short, let
        // the next job wake a second worker now and then, and the two then took turns for
        // good, both spinning. Else `finish` frees it once the result is gone.
        let free_early = match (py, outcome) {
            (Some(py), Outcome::Value(Some(value))) => lets_go_without_code(value.bind(py)),
            (None, Outcome::Value(Some(_))) => false,
            _ => true,
        };
        if let (Some(py), Outcome::Value(Some(value))) = (py, outcome) {
            if handle.answer.state.load(Ordering::Acquire) == POLLING
                && handle.keep_encoded(
                    value.bind(py),
                    timings,
                    free_early,
                    if *few_inputs { Some(&mut *env) } else { None },
                )
            {
                return true;
            }
        }
        let message = env.run(|env| {
            let reference = reference.load(env);
            let result = result_term(env, py, outcome);
            if let Some(timings) = timings {
                timings.mark("result");
                let marks = timings.marks.borrow();
                return (atoms::py_timed(), reference, result, marks.as_slice())
                    .encode(env)
                    .as_c_arg();
            }
            match outcome {
                // The traceback rides along for `py:last_traceback/0`.
                Outcome::Raised { traceback, .. } => {
                    (atoms::py_response(), reference, result, traceback.as_str()).encode(env)
                }
                _ => (atoms::py_response(), reference, result).encode(env),
            }
            .as_c_arg()
        });
        if free_early {
            worker_pool::job_ending();
        }
        handle.hand_over(env.hand_over(), message, to)
    }
}

/// Whether letting go of `value` runs no Python code: another reference holds it, or it is
/// of a built-in type without finalizer of its own or items (not a subclass).
fn lets_go_without_code(value: &Bound<'_, PyAny>) -> bool {
    // SAFETY: reading the count of a live object, with the GIL held.
    let shared = unsafe { ffi::Py_REFCNT(value.as_ptr()) } > 1;
    let exact = value.get_type_ptr();
    shared
        || value.is_none()
        || [
            &raw mut ffi::PyLong_Type,
            &raw mut ffi::PyFloat_Type,
            &raw mut ffi::PyBool_Type,
            &raw mut ffi::PyUnicode_Type,
            &raw mut ffi::PyBytes_Type,
        ]
        .contains(&exact)
}

/// The largest answer kept for a polling caller, which copies it on its scheduler.
const PARK_MAX_BYTES: usize = 64 * 1024;

/// A job's answer, a term of its env, kept for the caller (see [`JobHandle::poll`]).
pub struct ParkedAnswer {
    env: PooledEnv,
    message: ErlNifTerm,
}

// SAFETY: the env and its term move between threads whole; only one thread uses them at a
// time (the handle's lock, then the caller).
unsafe impl Send for ParkedAnswer {}

impl ParkedAnswer {
    /// The message, copied into the caller's `env`; the job's env is cleared when this goes.
    pub fn message<'a>(&self, env: Env<'a>) -> Term<'a> {
        // SAFETY: `message` is a term of `self.env`, which is not cleared while `self` lives.
        unsafe { Term::new(env, enif_make_copy(env.as_c_arg(), self.message)) }
    }

    /// Small enough for the caller to copy on its scheduler (measured only for a caller
    /// that polls).
    fn is_small(&self) -> bool {
        self.env.run(|env| {
            // SAFETY: a term of this env, which is not cleared while `self` lives.
            let message = unsafe { Term::new(env, self.message) };
            term_scan::scan(message, None).copied() <= PARK_MAX_BYTES
        })
    }

    /// Sends the message to `to` from this thread (not a scheduler); false if `to` is gone.
    fn send(self, to: &LocalPid) -> bool {
        let raw_env = self.env.run(|env| env.as_c_arg());
        // SAFETY: a process-independent env and a term of it; the env is cleared (dropped)
        // right after, as `enif_send` requires.
        unsafe { enif_send(std::ptr::null_mut(), to.as_c_arg(), raw_env, self.message) == 1 }
    }
}

/// What a polling caller found (see [`JobHandle::poll`]). Returned by value for the NIF to
/// build its answer from at once: the stage marks inline cost a copy, boxed an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Polled<'h> {
    NotYet,
    Parked(ParkedAnswer),
    /// The value of the answer `{ok, Value}`, encoded (`flat_term.rs`), and for a timed job
    /// its stages.
    Encoded(&'h [u8], StageMarks),
    Sent,
    /// Taken already, or given up: nothing is coming.
    Gone,
}

fn result_term<'a>(env: Env<'a>, py: Option<Python<'_>>, outcome: &Outcome) -> Term<'a> {
    match outcome {
        Outcome::Value(None) => atoms::ok().encode(env),
        Outcome::Value(Some(value)) => with_gil(py, |py| match to_erlang(env, value.bind(py)) {
            Ok(term) => (atoms::ok(), term).encode(env),
            Err(error) => match raised(py, error) {
                Outcome::Raised { name, message, .. } => error_term(env, &name, &message),
                _ => atoms::error().encode(env),
            },
        }),
        Outcome::Raised { name, message, .. } => error_term(env, name, message),
        Outcome::Cancelled => (atoms::error(), atoms::cancelled()).encode(env),
        Outcome::NotStarted(reason) => (
            atoms::error(),
            (atoms::python_not_started(), reason.as_str()),
        )
            .encode(env),
    }
}

/// `{error, {Name, Message}}`. The name is an atom if that atom exists (every built-in
/// exception's does, see `interpreter.rs`, and so does any name Erlang code
/// matches on), else a binary: classes made at run time must not fill the atom table, which
/// is never garbage-collected.
fn error_term<'a>(env: Env<'a>, name: &str, message: &str) -> Term<'a> {
    let name = rustler::Atom::existing_from_utf8_bytes(env, name.as_bytes())
        .map(|atom| atom.encode(env))
        .unwrap_or_else(|_| name.encode(env));
    (atoms::error(), (name, message)).encode(env)
}

fn raised(py: Python<'_>, error: PyErr) -> Outcome {
    let name = error
        .get_type(py)
        .name()
        .map(|name| name.to_string())
        .unwrap_or_else(|_| "Exception".into());
    let message = error
        .value(py)
        .str()
        .map(|text| text.to_string())
        .unwrap_or_default();
    let traceback = py
        .import("traceback")
        .and_then(|module| {
            module.call_method1(
                "format_exception",
                (error.get_type(py), error.value(py), error.traceback(py)),
            )
        })
        .and_then(|lines| PyString::new(py, "").call_method1("join", (lines,)))
        .and_then(|text| text.extract::<String>())
        .unwrap_or_else(|_| format!("{name}: {message}"));
    Outcome::Raised {
        name,
        message,
        traceback,
    }
}

/// The positional arguments of a call, a list term, as the tuple the call takes.
fn argument_tuple<'py>(py: Python<'py>, list: Term<'_>) -> PyResult<Bound<'py, PyTuple>> {
    let not_a_list = || PyTypeError::new_err("the arguments of a call must be a proper list");
    // The length first: an improper list's iterator would stop at its tail without a word.
    let mut items = Vec::with_capacity(list.list_length().map_err(|_| not_a_list())?);
    for item in list.into_list_iterator().map_err(|_| not_a_list())? {
        items.push(to_python(py, item, BinaryMode::Auto)?);
    }
    PyTuple::new(py, items)
}

/// The module `name`, from `sys.modules` when it is there and fully initialized: that look-up
/// takes 0.1 µs where `import` takes 1.5 µs (it goes through `builtins.__import__`). A module
/// another thread is still importing goes through `import`, which waits for it.
fn imported<'py>(py: Python<'py>, name: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: the GIL is held; the result is a new reference, or NULL with or without an
    // exception set (not imported yet).
    let found =
        unsafe { Bound::from_owned_ptr_or_opt(py, pyo3::ffi::PyImport_GetModule(name.as_ptr())) };
    if let Some(module) = found {
        // A module seen imported in full on this thread is not asked again (two look-ups
        // of its spec per call): held here, it stays the object at that address.
        let key = module.as_ptr() as usize;
        if IMPORTED.with(|imported| imported.borrow().contains_key(&key)) {
            return Ok(module);
        }
        let initializing = module
            .getattr(intern!(py, "__spec__"))
            .and_then(|spec| spec.getattr(intern!(py, "_initializing")))
            .and_then(|flag| flag.is_truthy())
            .unwrap_or(false);
        if !initializing {
            IMPORTED.with(|imported| imported.borrow_mut().insert(key, module.clone().unbind()));
            return Ok(module);
        }
    }
    PyErr::take(py);
    Ok(py.import(name)?.into_any())
}

/// Runs `f` with the GIL: the one held, or taken for it.
fn with_gil<R>(held: Option<Python<'_>>, f: impl for<'py> FnOnce(Python<'py>) -> R) -> R {
    match held {
        Some(py) => f(py),
        None => Python::attach(f),
    }
}

fn log(level: rustler::Atom, traceback: &str) {
    if let Some(runtime) = callbacks::runtime() {
        let _ = OwnedEnv::new().send_and_clear(&runtime, |env| {
            (atoms::py_log(), level, traceback).encode(env)
        });
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Mode {
    Exec,
    Eval,
}

/// Compiled code objects by source, so a request repeated with other locals does not pay
/// for parsing again. Emptied when full: sources generated on the fly must not grow it.
type CodeCache = HashMap<(Mode, Vec<u8>), Py<PyAny>>;
static CODE_CACHE: Mutex<Option<CodeCache>> = Mutex::new(None);
const CODE_CACHE_ENTRIES: usize = 512;

fn compiled<'py>(py: Python<'py>, source: Term<'_>, mode: Mode) -> PyResult<Bound<'py, PyAny>> {
    let source = rustler::Binary::from_term(source)
        .map_err(|_| PyTypeError::new_err("Python source must be a binary"))?;
    let key = (mode, source.as_slice().to_vec());
    if let Some(code) = lock(&CODE_CACHE).as_ref().and_then(|cache| cache.get(&key)) {
        return Ok(code.bind(py).clone());
    }
    let text = CString::new(source.as_slice())
        .map_err(|_| PyValueError::new_err("Python source contains a NUL byte"))?;
    let mode_name = match mode {
        Mode::Exec => "exec",
        Mode::Eval => "eval",
    };
    let code = py.import("builtins")?.getattr("compile")?.call1((
        text.to_str()
            .map_err(|_| PyValueError::new_err("Python source is not UTF-8"))?,
        "<erlang>",
        mode_name,
    ))?;
    let mut cache = lock(&CODE_CACHE);
    let cache = cache.get_or_insert_with(HashMap::new);
    if cache.len() >= CODE_CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(key, code.clone().unbind());
    Ok(code)
}

fn run_code<'py>(
    py: Python<'py>,
    code: &Bound<'py, PyAny>,
    globals: &Bound<'py, PyDict>,
    locals: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: a code object from compile(), two dicts, the GIL held; the result is a new
    // reference or NULL with an exception set.
    unsafe {
        let result = pyo3::ffi::PyEval_EvalCode(code.as_ptr(), globals.as_ptr(), locals.as_ptr());
        Bound::from_owned_ptr_or_err(py, result)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

thread_local! {
    /// The names of modules and functions called by atom, as interned Python strings, by the
    /// atom's term (the same in every env, and never freed): made once per thread, not for
    /// every call (text from the atom table, then a Python string to look up with).
    static NAMES: RefCell<HashMap<usize, Py<PyString>>> = RefCell::new(HashMap::new());
    /// Modules `py:call` found imported in full, by address (see `imported`).
    static IMPORTED: RefCell<HashMap<usize, Py<PyAny>>> = RefCell::new(HashMap::new());
}

/// A module or function name (an atom or a binary) as a Python string.
fn name_object<'py>(py: Python<'py>, term: Term<'_>) -> PyResult<Bound<'py, PyString>> {
    if !term.is_atom() {
        return Ok(PyString::new(py, &name(py, term)?));
    }
    // SAFETY: ErlNifTerm is a transparent machine word; an atom's is its identity.
    let key: usize = unsafe { std::mem::transmute(term.as_c_arg()) };
    let cached = NAMES.with(|names| names.borrow().get(&key).map(|name| name.bind(py).clone()));
    if let Some(name) = cached {
        return Ok(name);
    }
    let name = PyString::intern(py, &name(py, term)?);
    NAMES.with(|names| names.borrow_mut().insert(key, name.clone().unbind()));
    Ok(name)
}

/// A module or function name: an atom or a binary, read as text without a Python object
/// made for it where it can be (an `erlang.Atom` is a str subclass built through its class).
fn name(py: Python<'_>, term: Term<'_>) -> PyResult<String> {
    let text = if term.is_atom() {
        // Latin-1 atoms; an atom of other characters takes the long way.
        term.atom_to_string().ok()
    } else {
        rustler::Binary::from_term(term).ok().and_then(|binary| {
            std::str::from_utf8(binary.as_slice())
                .ok()
                .map(str::to_owned)
        })
    };
    match text {
        Some(text) => Ok(text),
        None => to_python(py, term, BinaryMode::Auto)?
            .extract::<String>()
            .map_err(|_| {
                PyTypeError::new_err("a module or function name must be an atom or a binary")
            }),
    }
}
