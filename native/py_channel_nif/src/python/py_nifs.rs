//! The NIFs behind the Erlang module `py`. Each copies its arguments into a job, hands the
//! job to a worker thread and returns: no scheduler ever waits for Python or the GIL.

use crate::beam::answer_look;
use crate::beam::atoms;
use crate::beam::env_pool::{self, PooledEnv};
use crate::beam::flat_term;
use crate::conversion;
use crate::python::callbacks::{self, CallbackHandle};
use crate::python::interpreter;
use crate::python::jobs::{Answer, HeldHandle, Job, JobHandle, Namespace, Polled, Timings, Work};
use crate::worker_pool::{self, affinity};
use rustler::{Atom, Encoder, Env, LocalPid, NifResult, ResourceArc, Term};

/// What names the job submitted, for the caller's later NIF calls about it (`HeldHandle`
/// decodes it): its handle, or for a call the caller waits for at once, its namespace.
type Submitted<'a> = NifResult<Term<'a>>;

/// Who hears the outcome of a job.
#[derive(Clone, Copy, PartialEq)]
enum Reply {
    /// Nobody (`py:cast`).
    Nobody,
    /// The caller: `{py_response, Ref, Result}`, which it may look for later (`py:await/2`).
    Caller,
    /// The caller, which looks for the answer as soon as the submit returns.
    CallerLooking,
    /// The caller, looking at once, with the time each stage took:
    /// `{py_timed, Ref, Result, Stages}`.
    CallerTimed,
}

impl Reply {
    fn looks_at_once(self) -> bool {
        matches!(self, Reply::CallerLooking | Reply::CallerTimed)
    }
}

impl<'a> rustler::Decoder<'a> for Reply {
    fn decode(term: Term<'a>) -> NifResult<Self> {
        if term.is_atom() {
            let env = term.get_env();
            if term == atoms::timed().to_term(env) {
                return Ok(Reply::CallerTimed);
            }
            if term == atoms::look().to_term(env) {
                return Ok(Reply::CallerLooking);
            }
        }
        Ok(if term.decode::<bool>()? {
            Reply::Caller
        } else {
            Reply::Nobody
        })
    }
}

/// Hands a job to the workers. `inputs` are copied into the job's own env first.
/// `namespace` is the caller's namespace term, if the job runs in one.
fn submit<'a, const N: usize>(
    env: Env<'a>,
    reference: Term<'a>,
    namespace: Option<Term<'a>>,
    output: Option<LocalPid>,
    reply: Reply,
    inputs: [Term<'a>; N],
    work: impl FnOnce([rustler::env::SavedTerm; N]) -> Work,
) -> Submitted<'a> {
    let namespace = match namespace {
        Some(term) => Some((term, term.decode::<ResourceArc<Namespace>>()?)),
        None => None,
    };
    let timings = (reply == Reply::CallerTimed).then(Timings::start_now);
    let job_env = PooledEnv::take();
    // Only an answer kept for a caller hands its inputs over.
    let few_inputs = reply != Reply::Nobody && env_pool::few_terms(&inputs);
    let saved = inputs.map(|input| job_env.save(input));
    let answer = if reply != Reply::Nobody {
        Answer::Reply {
            to: env.pid(),
            reference: job_env.save(reference),
        }
    } else {
        Answer::Cast
    };
    // Every job its caller waits for at once (`py:call`, `eval`, `exec`) runs in a namespace.
    let (held, named_by) = match &namespace {
        Some((term, namespace)) if reply.looks_at_once() => {
            let handle = namespace.new_looked_for();
            namespace.await_job(&handle.token);
            (HeldHandle::Namespace(handle), *term)
        }
        _ => {
            let handle = ResourceArc::new(JobHandle::default());
            match (&namespace, reply) {
                (_, Reply::Nobody) => {}
                (Some((_, namespace)), _) => namespace.await_job(&handle.token),
                (None, _) => JobHandle::watch_caller(&handle, env, &env.pid()),
            }
            let term = handle.encode(env);
            (HeldHandle::Term(handle), term)
        }
    };
    if let Some(timings) = &timings {
        timings.mark("submitted");
    }
    let ticket = held.ticket();
    let job = Job {
        timings,
        env: job_env,
        few_inputs,
        work: work(saved),
        namespace: namespace.map(|(_, namespace)| namespace),
        output,
        answer,
        handle: held,
    };
    worker_pool::submit(Box::new(move || job.run()), ticket)
        .map_err(|reason| rustler::Error::Term(Box::new(reason)))?;
    Ok(named_by)
}

#[rustler::nif]
fn py_start<'a>(env: Env<'a>, reference: Term<'a>) -> Submitted<'a> {
    submit(env, reference, None, None, Reply::Caller, [], |[]| {
        Work::Start
    })
}

#[rustler::nif]
fn py_exec<'a>(
    env: Env<'a>,
    reference: Term<'a>,
    namespace: Term<'a>,
    output: LocalPid,
    code: Term<'a>,
) -> Submitted<'a> {
    submit(
        env,
        reference,
        Some(namespace),
        Some(output),
        Reply::CallerLooking,
        [code],
        |[code]| Work::Exec { code },
    )
}

/// `reply` is `look` (the caller looks for the answer at once), true (later: `py:await/2`),
/// or `timed` (looks at once; the answer has the stages' times). An exec's caller always
/// looks at once.
#[rustler::nif]
fn py_eval<'a>(
    env: Env<'a>,
    reference: Term<'a>,
    namespace: Term<'a>,
    output: LocalPid,
    code: Term<'a>,
    locals: Term<'a>,
    reply: Reply,
) -> Submitted<'a> {
    submit(
        env,
        reference,
        Some(namespace),
        Some(output),
        reply,
        [code, locals],
        |[code, locals]| Work::Eval { code, locals },
    )
}

/// `reply` as for `py_eval`, or false for a cast: nobody hears the result. `output` is where
/// the code's `print` goes: the caller's group leader.
#[allow(clippy::too_many_arguments)]
#[rustler::nif]
fn py_call<'a>(
    env: Env<'a>,
    reference: Term<'a>,
    namespace: Term<'a>,
    output: LocalPid,
    module: Term<'a>,
    function: Term<'a>,
    arguments: Term<'a>, // not `args`: the nif macro uses that name
    kwargs: Term<'a>,
    reply: Reply,
) -> Submitted<'a> {
    submit(
        env,
        reference,
        Some(namespace),
        Some(output),
        reply,
        [module, function, arguments, kwargs],
        |[module, function, args, kwargs]| Work::Call {
            module,
            function,
            args,
            kwargs,
            stream_to: None,
        },
    )
}

/// `py:stream`: calls `module.function(*args, **kwargs)` and sends what the generator it
/// returns yields into `channel`, waiting for room, then closes the channel. The answer is
/// `{ok, none}` or the exception.
#[allow(clippy::too_many_arguments)]
#[rustler::nif]
fn py_stream<'a>(
    env: Env<'a>,
    reference: Term<'a>,
    namespace: Term<'a>,
    output: LocalPid,
    module: Term<'a>,
    function: Term<'a>,
    arguments: Term<'a>,
    kwargs: Term<'a>,
    channel: Term<'a>,
) -> Submitted<'a> {
    submit(
        env,
        reference,
        Some(namespace),
        Some(output),
        Reply::Caller,
        [module, function, arguments, kwargs, channel],
        |[module, function, args, kwargs, channel]| Work::Call {
            module,
            function,
            args,
            kwargs,
            stream_to: Some(channel),
        },
    )
}

/// `abandoned`: the answer will never arrive. `delivered`: it is in the mailbox or on its way.
#[rustler::nif]
fn py_abandon(handle: HeldHandle) -> Atom {
    if handle.abandon() {
        atoms::abandoned()
    } else {
        atoms::delivered()
    }
}

/// A caller looking for its answer (`py:take_answer/3`): `not_yet` (an answer finished
/// from now on is kept in the handle for it, not sent), `sent` (it is in the mailbox or on
/// its way), or the answer's message, `{py_response, Ref, Result}` as it would have come.
#[rustler::nif]
fn py_poll<'a>(env: Env<'a>, handle: HeldHandle) -> NifResult<Term<'a>> {
    polled(env, handle.poll())
}

/// A caller looking for a short call's answer (`py_answer:look/2`): `py_poll` again and
/// again, inside this one call (`beam/answer_look.rs`), for up to `spin_micros`, or until
/// `begun_micros` have passed with no worker thread on the job. The same answers as
/// `py_poll`; `not_yet` when it stops looking.
#[rustler::nif]
fn py_look<'a>(
    env: Env<'a>,
    handle: HeldHandle,
    begun_micros: u64,
    spin_micros: u64,
) -> NifResult<Term<'a>> {
    let found = answer_look::look(
        env,
        begun_micros,
        spin_micros,
        || match handle.poll() {
            Polled::NotYet => None,
            answered => Some(answered),
        },
        || handle.started(),
    );
    polled(env, found.unwrap_or(Polled::NotYet))
}

/// The caller stops looking and will wait in `receive`: the answer is sent from now on.
/// `not_yet`, `sent`, or the message, if the answer was kept for it meanwhile.
#[rustler::nif]
fn py_stop_polling<'a>(env: Env<'a>, handle: HeldHandle) -> NifResult<Term<'a>> {
    polled(env, handle.stop_polling())
}

/// An answer kept encoded comes without the job's reference, which the caller has:
/// `{py_response, Result}`, or `{py_timed, Result, Stages}`.
fn polled<'a>(env: Env<'a>, polled: Polled<'_>) -> NifResult<Term<'a>> {
    Ok(match polled {
        Polled::NotYet => atoms::not_yet().encode(env),
        Polled::Sent => atoms::sent().encode(env),
        Polled::Parked(answer) => answer.message(env),
        Polled::Encoded(encoded, marks) => {
            let result = (atoms::ok(), flat_term::decode(env, encoded));
            if marks.is_empty() {
                (atoms::py_response(), result).encode(env)
            } else {
                (atoms::py_timed(), result, marks.as_slice()).encode(env)
            }
        }
        // Taken already or given up: the caller's own steps never ask then.
        Polled::Gone => return Err(rustler::Error::BadArg),
    })
}

/// Whether a worker thread has begun the job: a caller looking for a short call's answer
/// stops looking if it has not (see `py:take_answer/3`).
#[rustler::nif]
fn py_started(handle: HeldHandle) -> bool {
    handle.started()
}

/// For a caller whose job no worker has begun a few microseconds after its submit (see
/// `py_answer`): `taken` (begun after all), `held_up` (the job waits in the pool's handoff for
/// a watcher on another core, which the OS holds up a moment: the caller looks on), or
/// `not_taken` (the worker may be waiting for the caller's own core: the caller sleeps and
/// gives it up).
#[rustler::nif]
fn py_look_on(handle: HeldHandle) -> Atom {
    let held_up = matches!(
        (
            affinity::current_core(),
            worker_pool::handed_job_waits_on(handle.ticket())
        ),
        (Some(core), Some(watcher)) if watcher != core
    );
    // Asked after the handoff: a job no longer there may have begun meanwhile.
    if handle.started() {
        atoms::taken()
    } else if held_up {
        atoms::held_up()
    } else {
        atoms::not_taken()
    }
}

/// Stops the job: its Python code gets `erlang.Cancelled`, and its answer is
/// `{error, cancelled}` unless it was already done. Returns at once.
#[rustler::nif]
fn py_cancel(handle: HeldHandle) -> Atom {
    handle.token.cancel();
    atoms::ok()
}

#[rustler::nif]
fn py_namespace_new(env: Env<'_>) -> ResourceArc<Namespace> {
    Namespace::for_caller(env)
}

#[rustler::nif]
fn py_callback_reply(handle: ResourceArc<CallbackHandle>, result: Term<'_>) -> Atom {
    handle.answer(result);
    atoms::ok()
}

#[rustler::nif]
fn py_set_runtime(pid: LocalPid) -> Atom {
    callbacks::set_runtime(pid);
    atoms::ok()
}

/// The atom Python's `None` converts to: `none`, `nil` or `undefined`.
#[rustler::nif]
fn py_set_none_atom(name: Term<'_>) -> NifResult<Atom> {
    let name = name.atom_to_string()?;
    if conversion::set_none_atom(&name) {
        Ok(atoms::ok())
    } else {
        Err(rustler::Error::BadArg)
    }
}

/// `{Threads, JobsRunning, JobsQueued}` of the worker pool, for `py_channel:stats/0`.
#[rustler::nif]
fn py_pool_counts() -> (usize, usize, usize) {
    let (running, queued) = worker_pool::job_counts();
    (worker_pool::thread_count(), running, queued)
}

/// Set once, when the NIF loads: the Python `py_loader` chose, and what goes on its path.
/// The load info is a map (see `py_loader:load_info/1`); a missing key is a load failure.
pub fn load(load_info: Term<'_>) -> bool {
    let setup = (|| -> NifResult<interpreter::Setup> {
        let key = |name: &str| -> NifResult<Term<'_>> {
            load_info.map_get(Atom::from_str(load_info.get_env(), name)?)
        };
        let venv = key("venv")?;
        Ok(interpreter::Setup {
            executable: key("executable")?.decode()?,
            erlang_package: key("erlang_package")?.decode()?,
            python_path: key("python_path")?.decode()?,
            venv: if venv.is_atom() {
                None
            } else {
                Some(venv.decode()?)
            },
        })
    })();
    match setup {
        Ok(setup) => {
            interpreter::set_setup(setup);
            true
        }
        Err(_) => false,
    }
}
