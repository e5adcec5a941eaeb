//! A process waiting in `py_channel:call/3` for the reply to its request. The request goes
//! into the channel as `{Caller, Request}`; Python answers with `reply(caller, term)`, an
//! Erlang reader with `py_channel:reply/2`, once.
//!
//! The caller looks for its reply for a few microseconds before it sleeps in `receive`
//! (`py_answer.erl`): a round trip that ends in a plain `receive` waits for the caller's
//! scheduler, which went to sleep with it (17-28 us of an 18-30 us round trip on this
//! project's 2-core machine). While it looks, a reply of small plain data is kept here for
//! it, in its flat encoding (`flat_term.rs`), and the caller builds it from there: a message
//! from a Python thread (not a scheduler) cost half a microsecond more. A reply of up to
//! `INLINE_REPLY_BYTES` is written beside the state word, so the look that finds it has its
//! bytes too, and nothing is allocated; a larger one is boxed. Any other reply, and
//! any reply once the caller sleeps, is the message `{py_channel_reply, Tag, Reply}`, `Tag`
//! an integer the caller chose (not the caller's term: a reference to the resource in the
//! message would move its count between the threads twice more per call).
//!
//! A caller that gives up (its timeout) and a reply race on one word, `state`: whichever
//! comes first wins, so a late reply is never sent, and one kept or on its way is taken.

use crate::beam::atoms;
use crate::beam::channel_resource::ChannelResource;
use crate::beam::flat_term;
use crate::beam::kept_bytes::KeptBytes;
use crate::channel::ReaderSpins;
use crate::worker_pool::affinity;
use rustler::sys::{enif_keep_resource, enif_make_resource, enif_release_resource};
use rustler::{Atom, Encoder, Env, LocalPid, NifResult, Resource, ResourceArc, Term};
use std::ffi::c_void;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// No reply yet; the caller looks for it here (`caller_poll`): a reply of small plain data
/// is kept here for it.
const LOOKING: usize = 0;
/// No reply yet; the caller sleeps in `receive`: a reply is sent.
const SLEEPING: usize = 1;
/// A reply was sent as a message (or is being sent).
const SENT: usize = 2;
/// The caller gave up: no reply will reach it.
const GAVE_UP: usize = 3;
/// The caller took the reply kept for it.
const TAKEN: usize = 4;
/// The low bits of a state that says a reply of `state >> 3` bytes is kept in the caller's
/// `ReplyBlock`. Any other value is the `Box<BoxedReply>` of a larger reply kept for the
/// caller (a pointer, aligned to 8, so never below 8 and never with these bits).
const KEPT_INLINE: usize = 5;
const TAG_BITS: usize = 0b111;

/// A reply kept for a looking caller too large for its `ReplyBlock`: its flat encoding
/// (`flat_term.rs`).
type BoxedReply = Vec<u8>;

/// The bytes a `ReplyBlock` holds after its state and flag.
const INLINE_REPLY_BYTES: usize = 128 - 16;

/// What the caller looks at, again and again, and a small reply's bytes. On lines of its
/// own: the caller reads it while the reader marks the request taken and counts references
/// to the caller, which sharing its line made the request's trip 0.5 us slower.
#[repr(C, align(128))]
struct ReplyBlock {
    /// `LOOKING`, `SLEEPING`, `SENT`, `GAVE_UP`, `TAKEN`, or a kept reply. Python moves it
    /// only out of `LOOKING` and `SLEEPING`; the caller process does everything else, one
    /// step at a time, so a kept reply has one owner at a time.
    state: AtomicUsize,
    /// Set by the one replier allowed to write `bytes`, never cleared. Read only by
    /// repliers: a second reply at once (from another thread) is boxed instead, and the
    /// state decides which of the two is made.
    writing: AtomicBool,
    /// A small reply's flat encoding, written before the state says it is kept.
    bytes: KeptBytes<INLINE_REPLY_BYTES>,
}

const _: () = assert!(size_of::<ReplyBlock>() == 128);

pub struct Caller {
    pub pid: LocalPid,
    /// The tag of the reply of its process's current call.
    tag: AtomicU64,
    reply: ReplyBlock,
    /// A reader has the request: Python made an `erlang.Caller` of it.
    taken: AtomicBool,
    /// The `CallerRef`s of this caller: a queued request's, Python's `erlang.Caller`s.
    holders: AtomicUsize,
    /// This caller was made a term for someone other than its process (an Erlang reader, a
    /// term Python built, a request waiting for room): references nobody counts.
    shared_as_term: AtomicBool,
}

#[rustler::resource_impl]
impl Resource for Caller {}

impl Drop for Caller {
    fn drop(&mut self) {
        // A reply kept for a caller that went before it took it.
        if let Some(Kept::Boxed(kept)) = Self::kept(*self.reply.state.get_mut()) {
            // SAFETY: the box the state held, which nobody else can take any more.
            drop(unsafe { Box::from_raw(kept) });
        }
    }
}

/// Why a reply is not made.
#[derive(Debug, PartialEq, Eq)]
pub enum NotSent {
    /// The caller gave up (timed out) before.
    GaveUp,
    /// A reply was made before this one.
    AlreadyReplied,
}

/// What a reply kept for a looking caller came to (see [`Caller::keep`]).
pub enum Keep {
    Kept,
    /// The caller stopped looking meanwhile: send the reply.
    Send,
    NotSent(NotSent),
}

/// Where a reply is kept, as the state says.
enum Kept {
    /// In the `ReplyBlock`, this many bytes.
    Inline(usize),
    Boxed(*mut BoxedReply),
}

/// A reply kept for a caller, taken out of its state.
pub enum KeptReply {
    /// In the caller's `ReplyBlock`, this many bytes.
    Inline(usize),
    Boxed(Box<BoxedReply>),
}

/// What a looking caller found (see [`Caller::poll`]).
pub enum Polled {
    NotYet,
    /// The reply kept for it, now its own.
    Kept(KeptReply),
    /// The reply is in the mailbox or on its way.
    Sent,
    /// Taken already, or given up: nothing is coming.
    Gone,
}

impl Caller {
    /// Python converted the request: a reader has it.
    pub fn mark_taken(&self) {
        if !self.taken.load(Ordering::Relaxed) {
            self.taken.store(true, Ordering::Release);
        }
    }

    /// Why a reply would not be made now, if it would not: checked before one is made.
    pub fn not_waiting(&self) -> Option<NotSent> {
        match self.reply.state.load(Ordering::Acquire) {
            LOOKING | SLEEPING => None,
            GAVE_UP => Some(NotSent::GaveUp),
            _ => Some(NotSent::AlreadyReplied),
        }
    }

    /// Whether the caller looks for its reply here (one kept here is found).
    pub fn is_looking(&self) -> bool {
        self.reply.state.load(Ordering::Acquire) == LOOKING
    }

    /// The replier's side: keeps `reply`, a flat encoding, for the looking caller.
    pub fn keep(&self, reply: &[u8]) -> Keep {
        let inline =
            reply.len() <= INLINE_REPLY_BYTES && !self.reply.writing.swap(true, Ordering::Relaxed);
        let kept = if inline {
            // SAFETY: this replier alone writes the bytes (it set `writing`), and the caller
            // reads them only once the state published below says they are kept.
            unsafe { self.reply.bytes.write(reply) };
            reply.len() << 3 | KEPT_INLINE
        } else {
            Box::into_raw(Box::new(reply.to_vec())) as usize
        };
        match self
            .reply
            .state
            .compare_exchange(LOOKING, kept, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Keep::Kept,
            Err(state) => {
                if let Some(Kept::Boxed(boxed)) = Self::kept(kept) {
                    // SAFETY: not published: still this thread's.
                    drop(unsafe { Box::from_raw(boxed) });
                }
                match state {
                    SLEEPING => Keep::Send,
                    GAVE_UP => Keep::NotSent(NotSent::GaveUp),
                    _ => Keep::NotSent(NotSent::AlreadyReplied),
                }
            }
        }
    }

    /// The replier's claim right before it sends a reply as a message: from now on the
    /// caller cannot give up, and will take the message.
    pub fn claim_send(&self) -> Result<(), NotSent> {
        self.settle(SENT).map_err(|state| match state {
            GAVE_UP => NotSent::GaveUp,
            _ => NotSent::AlreadyReplied,
        })
    }

    /// Moves the state from no reply yet (`LOOKING` or `SLEEPING`) to `to`; `Err` with the
    /// state found once it has left them.
    fn settle(&self, to: usize) -> Result<(), usize> {
        loop {
            match self.reply.state.load(Ordering::Acquire) {
                state @ (LOOKING | SLEEPING) => {
                    if self
                        .reply
                        .state
                        .compare_exchange(state, to, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return Ok(());
                    }
                }
                state => return Err(state),
            }
        }
    }

    /// The caller's look: never waits.
    fn poll(&self) -> Polled {
        match self.reply.state.load(Ordering::Acquire) {
            LOOKING => Polled::NotYet,
            state => self.answered(state),
        }
    }

    /// The caller stops looking, and will sleep in `receive`: a reply is sent from now on.
    fn stop_polling(&self) -> Polled {
        match self.reply.state.compare_exchange(
            LOOKING,
            SLEEPING,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Polled::NotYet,
            Err(state) => self.answered(state),
        }
    }

    /// What a caller finds once the state left `LOOKING`.
    fn answered(&self, state: usize) -> Polled {
        match (state, Self::kept(state)) {
            (_, Some(kept)) => {
                // Only the caller leaves a kept reply's state, and this is it.
                self.reply.state.store(TAKEN, Ordering::Release);
                Polled::Kept(match kept {
                    Kept::Inline(length) => KeptReply::Inline(length),
                    // SAFETY: the box the state held, now out of it.
                    Kept::Boxed(boxed) => KeptReply::Boxed(unsafe { Box::from_raw(boxed) }),
                })
            }
            (SENT, None) => Polled::Sent,
            (SLEEPING, None) => Polled::NotYet,
            _ => Polled::Gone,
        }
    }

    /// The caller gives up: `None` if no reply will reach it, else what it finds of the
    /// reply (sent, or kept for it if it never stopped looking).
    fn give_up(&self) -> Option<Polled> {
        self.settle(GAVE_UP).err().map(|state| self.answered(state))
    }

    fn kept(state: usize) -> Option<Kept> {
        if state & TAG_BITS == KEPT_INLINE {
            Some(Kept::Inline(state >> 3))
        } else {
            (state > TAKEN).then_some(Kept::Boxed(state as *mut BoxedReply))
        }
    }

    /// The reply kept in the `ReplyBlock`, once taken out of the state.
    fn inline_reply(&self, length: usize) -> &[u8] {
        // SAFETY: the caller read (`Acquire`) the state that said so.
        unsafe { self.reply.bytes.read(length) }
    }

    /// The reply message, `{py_channel_reply, Tag, Reply}`.
    pub fn message<'a>(&self, env: Env<'a>, reply: Term<'a>) -> Term<'a> {
        let tag = self.tag.load(Ordering::Relaxed);
        (atoms::py_channel_reply(), tag, reply).encode(env)
    }

    /// The caller is made a term for others (see `shared_as_term`): it is never renewed.
    pub fn mark_shared_as_term(&self) {
        self.shared_as_term.store(true, Ordering::Relaxed);
    }

    /// Makes this caller, whose call is over, the caller of its process's next call, tagged
    /// `tag`, if nothing but its process holds it: no reader has its last request or an
    /// `erlang.Caller` of it, and it never was a term of anyone else's. False otherwise.
    fn renew(&self, tag: u64) -> bool {
        // Acquire: what the last holder did before it let go (a reply written) is done.
        if self.holders.load(Ordering::Acquire) != 0 || self.shared_as_term.load(Ordering::Relaxed)
        {
            return false;
        }
        let state = self.reply.state.swap(LOOKING, Ordering::Relaxed);
        if let Some(Kept::Boxed(kept)) = Self::kept(state) {
            // SAFETY: the box of a reply never taken, which nobody else can reach.
            drop(unsafe { Box::from_raw(kept) });
        }
        self.reply.writing.store(false, Ordering::Relaxed);
        self.taken.store(false, Ordering::Relaxed);
        self.tag.store(tag, Ordering::Relaxed);
        true
    }

    /// What the caller's NIFs answer for `polled`: `not_yet`, `sent`, or the reply's
    /// message, built from the reply kept for it.
    fn polled<'a>(&self, env: Env<'a>, polled: Polled) -> NifResult<Term<'a>> {
        Ok(match polled {
            Polled::NotYet => atoms::not_yet().encode(env),
            Polled::Sent => atoms::sent().encode(env),
            Polled::Kept(KeptReply::Inline(length)) => {
                self.message(env, flat_term::decode(env, self.inline_reply(length)))
            }
            Polled::Kept(KeptReply::Boxed(reply)) => {
                self.message(env, flat_term::decode(env, &reply))
            }
            // The caller's own steps never ask then.
            Polled::Gone => return Err(rustler::Error::BadArg),
        })
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
    /// Takes over `caller`'s reference.
    pub fn from_arc(caller: ResourceArc<Caller>) -> CallerRef {
        caller.holders.fetch_add(1, Ordering::Relaxed);
        let this = CallerRef(NonNull::new(caller.as_c_arg() as *mut c_void).expect("a resource"));
        // Every `CallerRef` comes from here: `Deref` finds the value where rustler put it.
        assert!(
            std::ptr::eq(&*this, &*caller),
            "rustler's resource layout is not the one CallerRef::deref assumes"
        );
        std::mem::forget(caller);
        this
    }

    /// A new reference to the caller resource at `raw`.
    ///
    /// # Safety
    /// `raw` is the pointer of a live `Caller` resource (as [`CallerRef::as_raw`] gave).
    pub unsafe fn kept(raw: *const c_void) -> CallerRef {
        // SAFETY: as the caller's.
        unsafe { enif_keep_resource(raw) };
        let this = CallerRef(NonNull::new(raw as *mut c_void).expect("a resource"));
        this.holders.fetch_add(1, Ordering::Relaxed);
        this
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

    /// The caller as a term of `env`, for someone other than its process.
    pub fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        self.mark_shared_as_term();
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
        self.holders.fetch_sub(1, Ordering::Release);
        // SAFETY: the reference this holds.
        unsafe { enif_release_resource(self.as_raw()) };
    }
}

/// The caller of the calling process's call tagged `tag`: the first of `previous` (callers
/// of its calls before, as terms) that can be renewed (`Caller::renew`), with its term, or
/// a new one. A new resource per call was 85 words on the process's virtual binary heap
/// each time, and they died in its garbage collections and time slices' ends, hundreds at
/// a time (each destructor aux work of its scheduler). Python's `for caller, request in ch`
/// holds the caller of the last request until the next one comes, so the process keeps a
/// few.
pub fn caller_for<'a>(
    env: Env<'a>,
    tag: u64,
    previous: &[Term<'a>],
) -> (ResourceArc<Caller>, Option<Term<'a>>) {
    // Only the caller renewed is kept (a reference counted), not each one looked at.
    let renewed = previous.iter().find(|term| {
        term.decode::<&Caller>()
            .is_ok_and(|caller| caller.pid == env.pid() && caller.renew(tag))
    });
    match renewed.and_then(|&term| Some((term.decode().ok()?, term))) {
        Some((caller, term)) => (caller, Some(term)),
        None => (
            ResourceArc::new(Caller {
                pid: env.pid(),
                tag: AtomicU64::new(tag),
                reply: ReplyBlock {
                    state: AtomicUsize::new(LOOKING),
                    writing: AtomicBool::new(false),
                    bytes: KeptBytes::default(),
                },
                taken: AtomicBool::new(false),
                holders: AtomicUsize::new(0),
                shared_as_term: AtomicBool::new(false),
            }),
            None,
        ),
    }
}

/// The caller looks for its reply: `not_yet`, `sent` (in the mailbox or on its way), or the
/// reply's message, `{py_channel_reply, Tag, Reply}`, kept for it.
#[rustler::nif]
fn caller_poll<'a>(env: Env<'a>, caller: &'a Caller) -> NifResult<Term<'a>> {
    caller.polled(env, caller.poll())
}

/// The caller stops looking and will wait in `receive`: a reply is sent from now on.
/// `not_yet`, `sent`, or the message of a reply kept for it meanwhile.
#[rustler::nif]
fn caller_stop_polling<'a>(env: Env<'a>, caller: &'a Caller) -> NifResult<Term<'a>> {
    caller.polled(env, caller.stop_polling())
}

/// The caller gives up (its timeout): `abandoned` (no reply will reach it), `sent` (the
/// reply is in the mailbox or on its way), or the message of a reply kept for it.
#[rustler::nif]
fn caller_abandon<'a>(env: Env<'a>, caller: &'a Caller) -> NifResult<Term<'a>> {
    match caller.give_up() {
        None => Ok(atoms::abandoned().encode(env)),
        Some(polled) => caller.polled(env, polled),
    }
}

/// Whether a caller that found no reply yet should go on looking: `taken` (a Python reader
/// has the request), `held_up` (not yet, but a reader spins on another core: the OS holds
/// it up a moment), or `not_taken`, when the reader may be waiting for the caller's own
/// core: the caller then sleeps and gives it up, and a reader spinning on it is asked to
/// move to another (two threads that take turns on one core stay together, the OS waking
/// each on the other's core).
#[rustler::nif]
fn caller_look_on(caller: &Caller, channel: &ChannelResource) -> Atom {
    if caller.taken.load(Ordering::Acquire) {
        return atoms::taken();
    }
    let Some(core) = affinity::current_core() else {
        return atoms::not_taken();
    };
    match channel.channel.where_reader_spins(core) {
        ReaderSpins::Elsewhere => atoms::held_up(),
        ReaderSpins::Here => {
            channel.channel.ask_reader_to_leave(core);
            atoms::not_taken()
        }
        ReaderSpins::NotKnown => atoms::not_taken(),
    }
}

/// An Erlang reader's reply: `ok` (sent, or the caller no longer waits, as `!` to a process
/// that has exited), `{error, already_replied}`.
#[rustler::nif]
fn caller_reply<'a>(env: Env<'a>, caller: &'a Caller, reply: Term<'a>) -> Term<'a> {
    let message = caller.message(env, reply);
    match caller.claim_send() {
        Ok(()) => {
            // A process that has exited gets nothing, as with `!`.
            let _ = env.send(&caller.pid, message);
            atoms::ok().encode(env)
        }
        Err(NotSent::GaveUp) => atoms::ok().encode(env),
        Err(NotSent::AlreadyReplied) => (atoms::error(), atoms::already_replied()).encode(env),
    }
}
