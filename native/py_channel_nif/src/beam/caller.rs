//! A process waiting in `py_channel:call/3` for the reply to its request. The request goes
//! into the channel as `{Caller, Request}`; Python answers with `reply(caller, term)`, an
//! Erlang reader with `py_channel:reply/2`, once: the message `{py_channel_reply, Tag,
//! Reply}`, `Tag` an integer the caller chose. An integer, not the caller's own term: a
//! reference to a resource in the message would move the resource's count between the
//! Python thread and the caller's scheduler twice more per call.
//!
//! The caller looks in its mailbox for a few microseconds before it sleeps in `receive`
//! (`py_answer.erl`): a round trip that ends in a plain `receive` waits for the caller's
//! scheduler, which went to sleep with it (17-28 us of an 18-30 us round trip on this
//! project's 2-core machine). A caller that gives up (its timeout) and a reply race here:
//! whichever comes first wins, so a late reply is never sent, and one on its way is taken.

use crate::beam::atoms;
use rustler::sys::{enif_keep_resource, enif_make_resource, enif_release_resource};
use rustler::{Atom, Encoder, Env, LocalPid, Resource, ResourceArc, Term};
use std::ffi::c_void;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// No reply yet, and the caller waits for one.
const WAITING: u8 = 0;
/// A reply was sent (or is being sent).
const REPLIED: u8 = 1;
/// The caller gave up: no reply will be sent.
const GAVE_UP: u8 = 2;

pub struct Caller {
    pub pid: LocalPid,
    tag: u64,
    state: AtomicU8,
    /// A reader has the request: Python made an `erlang.Caller` of it.
    taken: AtomicBool,
}

#[rustler::resource_impl]
impl Resource for Caller {}

/// Why a reply is not sent.
#[derive(Debug, PartialEq, Eq)]
pub enum NotSent {
    /// The caller gave up (timed out) before.
    GaveUp,
    /// A reply was sent before this one.
    AlreadyReplied,
}

impl Caller {
    /// Python converted the request: a reader has it.
    pub fn mark_taken(&self) {
        if !self.taken.load(Ordering::Relaxed) {
            self.taken.store(true, Ordering::Release);
        }
    }

    /// Why a reply would not be sent now, if it would not: checked before one is made.
    pub fn not_waiting(&self) -> Option<NotSent> {
        Self::not_sent(self.state.load(Ordering::Acquire))
    }

    /// The replier's claim, right before it sends: from now on the caller cannot give up.
    pub fn claim_reply(&self) -> Result<(), NotSent> {
        match self
            .state
            .compare_exchange(WAITING, REPLIED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(()),
            Err(state) => Err(Self::not_sent(state).expect("the state left WAITING")),
        }
    }

    fn not_sent(state: u8) -> Option<NotSent> {
        match state {
            WAITING => None,
            GAVE_UP => Some(NotSent::GaveUp),
            _ => Some(NotSent::AlreadyReplied),
        }
    }

    /// The reply message, `{py_channel_reply, Tag, Reply}`.
    pub fn message<'a>(&self, env: Env<'a>, reply: Term<'a>) -> Term<'a> {
        (atoms::py_channel_reply(), self.tag, reply).encode(env)
    }
}

/// A counted reference to a caller, by its resource's pointer: what a queued request's flat
/// encoding holds (`flat_term.rs`), and what Python's `erlang.Caller` holds. (A
/// `ResourceArc` cannot be made back from a pointer.)
pub struct CallerRef(NonNull<c_void>);

// SAFETY: a resource's count is atomic, and `Caller` is Sync.
unsafe impl Send for CallerRef {}
unsafe impl Sync for CallerRef {}

impl CallerRef {
    pub fn of(caller: &ResourceArc<Caller>) -> CallerRef {
        // SAFETY: a live resource, kept once more for the new reference.
        unsafe { enif_keep_resource(caller.as_c_arg()) };
        let this = CallerRef(NonNull::new(caller.as_c_arg() as *mut c_void).expect("a resource"));
        // Every `CallerRef` comes from here: `Deref` finds the value where rustler put it.
        assert!(
            std::ptr::eq(&*this, &**caller),
            "rustler's resource layout is not the one CallerRef::deref assumes"
        );
        this
    }

    /// A new reference to the caller resource at `raw`.
    ///
    /// # Safety
    /// `raw` is the pointer of a live `Caller` resource (as [`CallerRef::as_raw`] gave).
    pub unsafe fn kept(raw: *const c_void) -> CallerRef {
        // SAFETY: as the caller's.
        unsafe { enif_keep_resource(raw) };
        CallerRef(NonNull::new(raw as *mut c_void).expect("a resource"))
    }

    /// Takes over the reference that [`CallerRef::into_raw`] gave up.
    ///
    /// # Safety
    /// `raw` came from `into_raw`, once.
    pub unsafe fn adopt(raw: *const c_void) -> CallerRef {
        CallerRef(NonNull::new(raw as *mut c_void).expect("a resource"))
    }

    /// The pointer, keeping the reference (see [`CallerRef::adopt`]).
    pub fn into_raw(self) -> *const c_void {
        let raw = self.as_raw();
        std::mem::forget(self);
        raw
    }

    pub fn as_raw(&self) -> *const c_void {
        self.0.as_ptr()
    }

    /// The caller as a term of `env`.
    pub fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        // SAFETY: a live resource; the term holds a reference of its own.
        unsafe { Term::new(env, enif_make_resource(env.as_c_arg(), self.as_raw())) }
    }
}

impl Deref for CallerRef {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        // Where rustler's `ResourceArc::new` put the value in the resource's memory
        // (`align_alloced_mem_for_struct`): past the start, at the next address aligned for
        // it, a whole alignment on when the start is aligned already.
        let raw = self.0.as_ptr() as *const u8;
        let align = std::mem::align_of::<Caller>();
        let offset = align - raw as usize % align;
        // SAFETY: a live `Caller` resource, made by `ResourceArc::new` at that address.
        unsafe { &*(raw.add(offset) as *const Caller) }
    }
}

impl Clone for CallerRef {
    fn clone(&self) -> CallerRef {
        // SAFETY: a live resource.
        unsafe { CallerRef::kept(self.as_raw()) }
    }
}

impl Drop for CallerRef {
    fn drop(&mut self) {
        // SAFETY: the reference this holds.
        unsafe { enif_release_resource(self.as_raw()) };
    }
}

/// A caller for the calling process, whose reply will be tagged with `tag`.
pub fn new_caller(env: Env<'_>, tag: u64) -> ResourceArc<Caller> {
    ResourceArc::new(Caller {
        pid: env.pid(),
        tag,
        state: AtomicU8::new(WAITING),
        taken: AtomicBool::new(false),
    })
}

/// The caller gives up: `abandoned` (no reply will be sent) or `replied` (the reply is in
/// the mailbox or on its way).
#[rustler::nif]
fn caller_abandon(caller: ResourceArc<Caller>) -> Atom {
    match caller
        .state
        .compare_exchange(WAITING, GAVE_UP, Ordering::AcqRel, Ordering::Acquire)
    {
        Ok(_) | Err(GAVE_UP) => atoms::abandoned(),
        Err(_) => atoms::replied(),
    }
}

/// Whether a Python reader has taken the request: a caller looking for its reply stops
/// looking if none has (the reader may be waiting for its very core).
#[rustler::nif]
fn caller_taken(caller: ResourceArc<Caller>) -> bool {
    caller.taken.load(Ordering::Acquire)
}

/// An Erlang reader's reply: `ok` (sent, or the caller no longer waits, as `!` to a process
/// that has exited), `{error, already_replied}`.
#[rustler::nif]
fn caller_reply<'a>(env: Env<'a>, caller: ResourceArc<Caller>, reply: Term<'a>) -> Term<'a> {
    let message = caller.message(env, reply);
    match caller.claim_reply() {
        Ok(()) => {
            // A process that has exited gets nothing, as with `!`.
            let _ = env.send(&caller.pid, message);
            atoms::ok().encode(env)
        }
        Err(NotSent::GaveUp) => atoms::ok().encode(env),
        Err(NotSent::AlreadyReplied) => (atoms::error(), atoms::already_replied()).encode(env),
    }
}
