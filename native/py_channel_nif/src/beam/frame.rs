//! A queued message, stored so that it is process-independent and comes back exact
//! (pids, refs, funs, bignums, improper lists, channels).
//!
//! A term is copied, as Erlang's `!` copies a message: small terms by value, binaries over 64
//! bytes by reference count, so a 1 MiB binary costs no more to queue than a 100-byte one.
//! The copy goes into an env shared with neighbouring frames (`TermArena`): an env of its own
//! per frame would cost about 2.7 KB, which makes a deep queue slow (measured by `make bench`).
//!
//! Small plain data is stored encoded instead, in memory of its own (`flat_term.rs` says
//! why), and built by the reader.
//!
//! One exception: a term holding the very channel it is sent to. A copy would keep the channel
//! alive from inside its own queue, a cycle never freed, so that term is encoded in external
//! term format instead, which names the channel without holding it (the channel is alive
//! whenever one of its frames is read). Other channels in it are held alongside. A term that
//! holds other channels gets an arena of its own, so they are let go once it is received.

use crate::beam::caller::{Caller, CallerRef};
use crate::beam::channel_resource::{ChannelHandle, ChannelResource};
use crate::beam::flat_chunks::{ChunkMemory, EncodedSlice};
use crate::beam::flat_term::{self, NotEncoded};
use crate::beam::term_scan::{scan, TermScan};
use crate::channel::Weighed;
use rustler::sys::{
    enif_alloc_env, enif_clear_env, enif_free_env, enif_make_copy, ErlNifEnv, ErlNifTerm,
};
use rustler::{Env, OwnedBinary, ResourceArc, Term};
use std::cell::RefCell;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

pub struct Frame {
    stored: Stored,
    bytes: usize,
}

/// Small, so that a queue slot fits a cache line; the rare forms are boxed. A call's request
/// is boxed too, though the box costs it 0.3 us: each other way tried of holding its caller
/// (a fourth form with a drop of its own, a flag in `EncodedSlice`'s drop, a list in the
/// chunk) made Erlang readers of plain frames 10-15 % slower (A/B, `make bench` tables 2
/// and 6), for a reason not found: not the drop's work alone, as the chunk's list added
/// none to it.
enum Stored {
    Copied(ArenaTerm),
    Boxed(Box<BoxedTerm>),
    /// Small plain data, encoded (`flat_term.rs`): the reader builds it.
    Plain(EncodedSlice),
}

enum BoxedTerm {
    /// A term that holds the channel it is sent to, in external term format.
    Etf(EncodedTerm),
    /// A request of `py_channel:call/3`, `{Caller, Request}` with `Request` small plain
    /// data, encoded (`flat_term::encode_call`): it holds a reference to the caller, whose
    /// pointer is in the encoding. Copied as a term, the caller's resource made the request's
    /// trip to a Python reader 0.5 us slower.
    Call(CallEncoding),
}

/// The encoding of a request of `py_channel:call/3`, which holds a reference to its caller.
struct CallEncoding(EncodedSlice);

impl Drop for CallEncoding {
    fn drop(&mut self) {
        // SAFETY: the reference `Frame::call` gave this encoding.
        drop(unsafe { CallerRef::adopt(flat_term::call_caller(self.0.as_slice())) });
    }
}

struct EncodedTerm {
    etf: OwnedBinary,
    #[expect(dead_code, reason = "held only to keep the channels alive")]
    channels: Vec<ChannelHandle>,
}

thread_local! {
    /// The buffer a thread encodes the terms it sends in, before they are copied into a chunk.
    static ENCODING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A term on its way into a channel: stored encoded already, or scanned, to be copied.
pub enum Prepared {
    Encoded(Frame),
    Scanned(TermScan),
}

impl Prepared {
    /// The bytes of term its frame copies (an encoding is small).
    pub fn copied_bytes(&self) -> usize {
        match self {
            Prepared::Encoded(_) => 0,
            Prepared::Scanned(scan) => scan.copied(),
        }
    }
}

impl Weighed for Prepared {
    fn weight(&self) -> usize {
        match self {
            Prepared::Encoded(frame) => frame.weight(),
            Prepared::Scanned(scan) => scan.bytes,
        }
    }
}

impl Frame {
    /// Stores `term` for the channel `destination`.
    pub fn encode(term: Term<'_>, destination: &ChannelResource) -> Frame {
        match Self::prepare(term, destination) {
            Prepared::Encoded(frame) => frame,
            Prepared::Scanned(scan) => Self::encode_scanned(term, scan, destination),
        }
    }

    /// `term` stored encoded if it is small plain data (`flat_term.rs`), else scanned for
    /// `destination`. Inlined: its answer, copied back from a call, stalled a batch's loop.
    #[inline(always)]
    pub fn prepare(term: Term<'_>, destination: &ChannelResource) -> Prepared {
        let encoded = ENCODING.with(|buffer| {
            let Ok(mut buffer) = buffer.try_borrow_mut() else {
                return Err(NotEncoded::Other);
            };
            flat_term::encode(term, &mut buffer)
                .map(|bytes| Frame::from_encoding(&buffer, bytes, destination))
        });
        match encoded {
            Ok(frame) => Prepared::Encoded(frame),
            Err(NotEncoded::SharedBinary(size)) => Prepared::Scanned(TermScan::shared_binary(size)),
            Err(NotEncoded::Other) => Prepared::Scanned(scan(term, Some(destination))),
        }
    }

    /// `term` copied as a term, scanned for `destination` (`term_scan.rs`).
    pub fn encode_scanned(term: Term<'_>, scan: TermScan, destination: &ChannelResource) -> Frame {
        FrameBatch::new(destination).encode(term, scan)
    }

    /// A frame for the channel `destination` of the flat encoding `encoded` (`flat_term.rs`),
    /// `bytes` as `max_size` counts the term.
    pub fn from_encoding(encoded: &[u8], bytes: usize, destination: &ChannelResource) -> Frame {
        let channel = std::ptr::from_ref(destination) as usize;
        Frame {
            stored: Stored::Plain(EncodedSlice::copy_of(channel, encoded)),
            bytes,
        }
    }

    /// The request `{Caller, Request}` of `py_channel:call/3` for the channel
    /// `destination`, encoded if `request` is small plain data (`flat_term.rs`); `None` if
    /// it is not, and the caller stores the tuple as a term.
    pub fn call(
        caller: &ResourceArc<Caller>,
        request: Term<'_>,
        destination: &ChannelResource,
    ) -> Option<Frame> {
        ENCODING.with(|buffer| {
            let mut buffer = buffer.try_borrow_mut().ok()?;
            let bytes = flat_term::encode_call(caller.as_c_arg(), request, &mut buffer).ok()?;
            let channel = std::ptr::from_ref(destination) as usize;
            let encoded = EncodedSlice::copy_of(channel, &buffer);
            // The frame's reference, given back when it goes (`CallEncoding`).
            CallerRef::from_arc(caller.clone()).into_raw();
            Some(Frame {
                stored: Stored::Boxed(Box::new(BoxedTerm::Call(CallEncoding(encoded)))),
                bytes,
            })
        })
    }

    /// The frame's flat encoding, when it is stored so (`flat_term.rs`).
    pub fn encoding(&self) -> Option<&[u8]> {
        self.encoded().map(EncodedSlice::as_slice)
    }

    /// Where the frame's flat encoding is: plain data, or a call's request.
    fn encoded(&self) -> Option<&EncodedSlice> {
        match &self.stored {
            Stored::Plain(encoded) => Some(encoded),
            Stored::Boxed(boxed) => match &**boxed {
                BoxedTerm::Call(CallEncoding(encoded)) => Some(encoded),
                BoxedTerm::Etf(_) => None,
            },
            Stored::Copied(_) => None,
        }
    }

    /// Stores the term `build` makes for the channel `destination`, made straight in the
    /// channel's current arena: no temporary env to fill and clear, no second copy (a
    /// Python sender's case, where building the term is the conversion). `build` answers
    /// `None`, before it makes anything, for a term that would hold a channel (which must
    /// not sit among other terms, see the module doc). `None` as well when another sender is
    /// appending to the arena right now. Either way the caller builds the term in an env of
    /// its own and uses [`encode`](Self::encode).
    pub fn build<E>(
        destination: &ChannelResource,
        build: impl for<'a> FnOnce(Env<'a>) -> Option<Result<Term<'a>, E>>,
    ) -> Option<Result<Frame, E>> {
        // A scheduler sending meanwhile takes an arena of its own, and so does a send
        // re-entered from inside `build` on this thread.
        let mut slot = try_lock_arena(destination)?;
        let reserved = slot.current.get_or_insert_with(Reserved::fresh);
        let env = reserved.env;
        // SAFETY: appends to the arena's env are serialized by the slot's lock, held here;
        // the env lives as long as the arena, which the slot holds.
        let arena_env = unsafe { Env::new(&(), env.as_ptr()) };
        let built = build(arena_env);
        let Some(Ok(term)) = built else {
            // What was made before the error or the refusal stays in the env until the
            // arena goes: retire it now, and never reuse it, so that cannot add up.
            reserved.copied = usize::MAX;
            slot.current = None;
            return match built {
                Some(Err(error)) => Some(Err(error)),
                _ => None,
            };
        };
        let scan = scan(term, Some(destination));
        debug_assert!(!scan.holds_destination && scan.other_channels.is_empty());
        let arena = reserved.take(&scan);
        if reserved.is_full() {
            slot.current = None;
        }
        Some(Ok(Frame {
            stored: Stored::Copied(ArenaTerm {
                arena,
                term: term.as_c_arg(),
            }),
            bytes: scan.bytes,
        }))
    }

    /// The term, for reading only, in `env`: not copied when it can be read where it is.
    /// Python readers use this; the term must not be kept beyond the frame.
    pub fn read<'a>(&'a self, env: Env<'a>) -> Term<'a> {
        match &self.stored {
            // SAFETY: the term is immutable and lives as long as the frame's arena, which
            // outlives 'a; reading it needs nothing from the env it is presented in.
            Stored::Copied(held) => unsafe { Term::new(env, held.term) },
            Stored::Boxed(_) | Stored::Plain(_) => self.decode(env),
        }
    }

    /// What keeps the frame's memory alive: the term `read` presents, or the bytes of its
    /// `encoding`. `None` for a term decoded when read.
    pub fn memory(&self) -> Option<TermMemory> {
        match &self.stored {
            Stored::Copied(held) => Some(TermMemory(Held::Arena(held.arena.clone()))),
            _ => self
                .encoded()
                .map(|encoded| TermMemory(Held::Chunk(encoded.memory()))),
        }
    }

    /// Whether `read` decodes the term into the env it is given (rather than presenting it
    /// where it is stored).
    pub fn is_decoded_when_read(&self) -> bool {
        matches!(self.stored, Stored::Boxed(_) | Stored::Plain(_))
    }

    /// The term, copied into `env`.
    pub fn decode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match &self.stored {
            Stored::Copied(held) => held.copy_into(env),
            Stored::Plain(encoded) => flat_term::decode(env, encoded.as_slice()),
            Stored::Boxed(boxed) => match &**boxed {
                // SAFETY: the bytes were produced by enif_term_to_binary in this VM.
                BoxedTerm::Etf(encoded) => {
                    unsafe { env.binary_to_term_trusted(encoded.etf.as_slice()) }
                        .expect("a frame holds valid external term format")
                        .0
                }
                BoxedTerm::Call(CallEncoding(encoded)) => {
                    flat_term::decode(env, encoded.as_slice())
                }
            },
        }
    }
}

/// The channel's arena slot, or `None` (never a wait) while another sender appends to it. A
/// panic that poisoned the lock left the slot consistent: every change to it is one step.
fn try_lock_arena(destination: &ChannelResource) -> Option<MutexGuard<'_, ArenaSlot>> {
    match destination.arena.try_lock() {
        Ok(slot) => Some(slot),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// Frames one sender makes for a channel one after another, copied into the channel's arena
/// under one hold of its lock: taking and releasing the lock for every frame would make the
/// copies wait for each other's stores to reach memory, a cache miss at a time.
pub struct FrameBatch<'c> {
    /// `None` when another sender is appending to the arena: this batch's frames then take
    /// arenas of their own rather than wait.
    slot: Option<MutexGuard<'c, ArenaSlot>>,
}

impl<'c> FrameBatch<'c> {
    pub fn new(destination: &'c ChannelResource) -> Self {
        FrameBatch {
            slot: try_lock_arena(destination),
        }
    }

    /// Stores `term`, scanned for this batch's channel.
    pub fn encode(&mut self, term: Term<'_>, scan: TermScan) -> Frame {
        let stored = if scan.holds_destination {
            Stored::Boxed(Box::new(BoxedTerm::Etf(EncodedTerm {
                etf: term.to_binary(),
                channels: scan.other_channels,
            })))
        } else if !scan.other_channels.is_empty() {
            // Alone in an arena, so the channels it holds are let go as soon as it is
            // received: in the channel's shared arena they would stay referenced until the
            // arena's other frames went too, and two channels holding each other there
            // would never be freed.
            Stored::Copied(TermArena::hold_alone(term))
        } else {
            match &mut self.slot {
                Some(slot) => Stored::Copied(slot.hold(term, &scan)),
                None => Stored::Copied(TermArena::hold_alone(term)),
            }
        };
        Frame {
            stored,
            bytes: scan.bytes,
        }
    }
}

const _: () = assert!(
    size_of::<Frame>() <= 48,
    "a frame must fit a queue slot's cache line"
);

impl Weighed for Frame {
    fn weight(&self) -> usize {
        self.bytes
    }
}

/// A term held in an arena env.
pub struct ArenaTerm {
    arena: ArenaRef,
    term: ErlNifTerm,
}

/// Keeps the memory a received term was stored in alive, so its binaries can be read where
/// they are (a `memoryview` in Python) after the frame is gone.
pub struct TermMemory(#[expect(dead_code, reason = "held only to keep the memory alive")] Held);

#[expect(dead_code, reason = "held only to keep the memory alive")]
enum Held {
    Arena(ArenaRef),
    Chunk(ChunkMemory),
}

// SAFETY: `term` is immutable once made, and reading it (enif_make_copy reads the term, never
// the env it lives in) is safe while a sender appends other terms to the same arena.
unsafe impl Send for ArenaTerm {}
unsafe impl Sync for ArenaTerm {}

impl ArenaTerm {
    fn copy_into<'a>(&self, env: Env<'a>) -> Term<'a> {
        // SAFETY: `self.term` lives in the arena's env, kept alive by `self.arena`.
        unsafe { Term::new(env, enif_make_copy(env.as_c_arg(), self.term)) }
    }
}

/// A process-independent env that the terms of consecutive sends to one channel are copied
/// into. It is freed when the last frame in it is received. An arena takes at most
/// `ARENA_MAX_FRAMES` frames, about `ARENA_MAX_BYTES` of copied terms and about
/// `ARENA_MAX_SHARED_BYTES` of binaries shared by reference, so a term received early stays
/// in memory only until its arena-mates are received too (a large term fills an arena on its
/// own and goes with its frame). Shared binaries are counted apart: they cost an arena a
/// reference, not their size, and counted as copied they made a stream of 16 KiB binaries
/// take a new env every four sends, and of 1 MiB binaries one every send (making and freeing
/// an env costs more than a send). The price: a binary received early stays alive until its
/// arena-mates, all queued behind it, are received too.
struct TermArena {
    env: NonNull<ErlNifEnv>,
    /// For a channel's frames, made on a scheduler or on a thread of ours: recycled for the
    /// same kind of thread rather than freed, if it stayed small (see `RecycledEnvs`).
    recycle: Option<Maker>,
    /// Bytes of the frames put in it (as `max_size` counts them), written once, when the slot
    /// lets the arena go: per frame, it would share the reference count's cache line.
    bytes: AtomicUsize,
}

/// The kind of thread an arena was made on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Maker {
    Scheduler,
    /// A thread of ours: a Python sender.
    Foreign,
}

impl Maker {
    fn of_this_thread() -> Maker {
        if rustler::thread::is_scheduler_thread() {
            Maker::Scheduler
        } else {
            Maker::Foreign
        }
    }

    fn recycled(self) -> &'static Mutex<RecycledEnvs> {
        static SCHEDULERS: Mutex<RecycledEnvs> = Mutex::new(RecycledEnvs(Vec::new()));
        static FOREIGN: Mutex<RecycledEnvs> = Mutex::new(RecycledEnvs(Vec::new()));
        match self {
            Maker::Scheduler => &SCHEDULERS,
            Maker::Foreign => &FOREIGN,
        }
    }
}

/// Envs of arenas given back by whoever received their last frame, for a sender on the same
/// kind of thread as the one that made them to clear (freeing their memory on its own
/// thread) and fill again.
///
/// Memory freed on another kind of thread than the one that took it costs both sides: the
/// BEAM's allocators give threads that are not schedulers one shared instance behind a
/// mutex, which a Python sender allocating and an Erlang reader freeing met on for a fifth
/// of the sender's time; and memory a scheduler took and a Python reader frees is handed
/// back to that scheduler, which is woken to take it (seen with perf as most of the CPU a
/// producer waiting on a Python reader used).
struct RecycledEnvs(Vec<NonNull<ErlNifEnv>>);

// SAFETY: an env here belongs to nobody until taken out, under the mutex.
unsafe impl Send for RecycledEnvs {}

/// Envs kept for reuse at most, and the bytes an arena may have held to be kept: an env is
/// cleared only when reused, so what it holds (large binaries included) must stay small.
const RECYCLED_ENVS_MAX: usize = 8;
const RECYCLED_ARENA_MAX_BYTES: usize = 16 * 1024;

const ARENA_MAX_FRAMES: u32 = 64;
const ARENA_MAX_BYTES: usize = 64 * 1024;
const ARENA_MAX_SHARED_BYTES: usize = 64 * 1024 * 1024;

// SAFETY: appending to the env happens only under the channel's `ArenaSlot` lock, or on an
// arena private to one frame; reading terms of it is safe from any thread (see `ArenaTerm`).
unsafe impl Send for TermArena {}
unsafe impl Sync for TermArena {}

impl TermArena {
    /// An arena for a channel's frames (`ArenaSlot`).
    fn new() -> TermArena {
        Self::make(Some(Maker::of_this_thread()))
    }

    fn make(recycle: Option<Maker>) -> TermArena {
        // Never waits: a reader giving an env back meanwhile keeps it for the next time.
        let recycled = recycle.and_then(|maker| {
            maker
                .recycled()
                .try_lock()
                .ok()
                .and_then(|mut recycled| recycled.0.pop())
        });
        let env = match recycled {
            // SAFETY: the env's last arena is gone; clearing frees its terms on this thread.
            Some(env) => unsafe {
                enif_clear_env(env.as_ptr());
                env
            },
            // SAFETY: enif_alloc_env may be called from any thread.
            None => NonNull::new(unsafe { enif_alloc_env() }).expect("enif_alloc_env failed"),
        };
        TermArena {
            env,
            recycle,
            bytes: AtomicUsize::new(0),
        }
    }

    /// Copies `term` into an arena of its own.
    fn hold_alone(term: Term<'_>) -> ArenaTerm {
        let own = TermArena::make(None);
        let env = own.env;
        // SAFETY: a fresh arena with its one reference, owned by the frame made here.
        let own = unsafe { ArenaRef::from_raw(ArenaRef::counted(own, 1)) };
        TermArena::hold(own, env, term)
    }

    /// Copies `term` into `arena`, whose env is `env`. The caller has exclusive use of the
    /// arena for appending.
    fn hold(arena: ArenaRef, env: NonNull<ErlNifEnv>, term: Term<'_>) -> ArenaTerm {
        // SAFETY: `term` is valid in its env; appends to this env are serialized by the caller.
        let term = unsafe { enif_make_copy(env.as_ptr(), term.as_c_arg()) };
        ArenaTerm { arena, term }
    }
}

impl Drop for TermArena {
    fn drop(&mut self) {
        let small = *self.bytes.get_mut() <= RECYCLED_ARENA_MAX_BYTES;
        if let Some(maker) = self.recycle.filter(|_| small) {
            if let Ok(mut recycled) = maker.recycled().try_lock() {
                if recycled.0.len() < RECYCLED_ENVS_MAX {
                    recycled.0.push(self.env);
                    return;
                }
            }
        }
        // SAFETY: allocated by enif_alloc_env; no frame refers to it any more.
        unsafe { enif_free_env(self.env.as_ptr()) }
    }
}

/// A counted reference to a `TermArena`, as an `Arc` would be, except that a fresh arena is
/// made with every reference its slot will hand out, and the unused ones are given back, in
/// one step each. An `Arc` counts one at a time: 63 atomic steps to make an arena and as many
/// to retire it, which cost more than the sends themselves where large binaries fill an
/// arena in a few frames.
struct ArenaRef(NonNull<Counted>);

struct Counted {
    references: AtomicUsize,
    arena: TermArena,
}

// SAFETY: as `Arc<TermArena>`: the arena is Send and Sync, the count atomic.
unsafe impl Send for ArenaRef {}
unsafe impl Sync for ArenaRef {}

impl ArenaRef {
    /// `arena`, counted with `references` references that the caller now owns.
    fn counted(arena: TermArena, references: usize) -> NonNull<Counted> {
        NonNull::from(Box::leak(Box::new(Counted {
            references: AtomicUsize::new(references),
            arena,
        })))
    }

    /// # Safety
    /// The caller owns a reference to the live `counted`, which it hands to the result.
    unsafe fn from_raw(counted: NonNull<Counted>) -> ArenaRef {
        ArenaRef(counted)
    }

    /// Gives `count` references back; the last one frees the arena.
    ///
    /// # Safety
    /// The caller owns `count` references to the live `counted`.
    unsafe fn release(counted: NonNull<Counted>, count: usize) {
        if count == 0 {
            return;
        }
        // SAFETY: live while the caller holds references.
        let left = unsafe { counted.as_ref() }
            .references
            .fetch_sub(count, Ordering::Release);
        if left == count {
            // Every other holder's use of the arena happened before its release.
            fence(Ordering::Acquire);
            // SAFETY: no reference is left; made by Box::leak in `counted`.
            drop(unsafe { Box::from_raw(counted.as_ptr()) });
        }
    }
}

impl Clone for ArenaRef {
    fn clone(&self) -> Self {
        // SAFETY: live while this handle is.
        unsafe { self.0.as_ref() }
            .references
            .fetch_add(1, Ordering::Relaxed);
        ArenaRef(self.0)
    }
}

impl Drop for ArenaRef {
    fn drop(&mut self) {
        // SAFETY: this handle owns one reference.
        unsafe { ArenaRef::release(self.0, 1) };
    }
}

/// A channel's arena being filled.
///
/// The slot takes the arena's references for all its frames up front, and hands one to each
/// frame without touching the count. Counting each frame in would put the count's cache line
/// on both the sender's and the reader's core for every message. References left when the
/// arena is retired (full, or replaced) are given back then.
#[derive(Default)]
pub struct ArenaSlot {
    current: Option<Reserved>,
}

struct Reserved {
    /// The slot owns `references` references to it.
    arena: NonNull<Counted>,
    /// The arena's env, kept here: reading it from the arena would read the cache line of
    /// the arena's reference count, which readers write as they drop frames.
    env: NonNull<ErlNifEnv>,
    references: u32,
    /// Bytes of the terms copied into it, and of the binaries they share by reference.
    copied: usize,
    shared: usize,
}

// SAFETY: the pointer is a counted arena's, and the slot is only used under its mutex.
unsafe impl Send for ArenaSlot {}

impl Reserved {
    fn fresh() -> Reserved {
        let arena = TermArena::new();
        let env = arena.env;
        let arena = ArenaRef::counted(arena, ARENA_MAX_FRAMES as usize);
        Reserved {
            arena,
            env,
            references: ARENA_MAX_FRAMES,
            copied: 0,
            shared: 0,
        }
    }

    /// One of the reserved references, for a frame of the term `scan` measured.
    fn take(&mut self, scan: &TermScan) -> ArenaRef {
        self.references -= 1;
        self.copied = self.copied.saturating_add(scan.copied());
        self.shared += scan.shared;
        // SAFETY: the slot owned this reference; it now belongs to the returned handle.
        unsafe { ArenaRef::from_raw(self.arena) }
    }

    fn is_full(&self) -> bool {
        self.references == 0
            || self.copied >= ARENA_MAX_BYTES
            || self.shared >= ARENA_MAX_SHARED_BYTES
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        // SAFETY: the arena is alive: the slot still owns references to it, or it is retired
        // right as its last reference is taken, while that frame is not yet queued.
        let bytes = self.copied.saturating_add(self.shared);
        unsafe {
            self.arena
                .as_ref()
                .arena
                .bytes
                .store(bytes, Ordering::Relaxed)
        };
        // SAFETY: the references the slot still owns; the last one frees the arena.
        unsafe { ArenaRef::release(self.arena, self.references as usize) };
    }
}

impl ArenaSlot {
    /// Copies `term` into the channel's current arena, starting a new one when there is none.
    /// The caller holds the slot's lock.
    fn hold(&mut self, term: Term<'_>, scan: &TermScan) -> ArenaTerm {
        let reserved = self.current.get_or_insert_with(Reserved::fresh);
        let env = reserved.env;
        let arena = reserved.take(scan);
        if reserved.is_full() {
            // Retired at once, so a large term's arena goes with its frame.
            self.current = None;
        }
        TermArena::hold(arena, env, term)
    }
}
