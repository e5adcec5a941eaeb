//! A queued message, stored so that it is process-independent and comes back exact
//! (pids, refs, funs, bignums, improper lists, channels).
//!
//! A term is copied, as Erlang's `!` copies a message: small terms by value, binaries over 64
//! bytes by reference count, so a 1 MiB binary costs no more to queue than a 100-byte one.
//! The copy goes into an env shared with neighbouring frames (`TermArena`): an env of its own
//! per frame would cost about 2.7 KB, which makes a deep queue slow (measured by `make bench`).
//!
//! One exception: a term holding the very channel it is sent to. A copy would keep the channel
//! alive from inside its own queue, a cycle never freed, so that term is encoded in external
//! term format instead, which names the channel without holding it (the channel is alive
//! whenever one of its frames is read). Other channels in it are held alongside.

use crate::channel::Weighed;
use crate::channel_resource::ChannelResource;
use crate::term_scan::scan;
use rustler::sys::{enif_alloc_env, enif_free_env, enif_make_copy, ErlNifEnv, ErlNifTerm};
use rustler::{Env, OwnedBinary, ResourceArc, Term};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, Weak};

pub struct Frame {
    stored: Stored,
    bytes: usize,
}

enum Stored {
    Copied(ArenaTerm),
    Encoded {
        etf: OwnedBinary,
        #[expect(dead_code, reason = "held only to keep the channels alive")]
        channels: Vec<ResourceArc<ChannelResource>>,
    },
}

impl Frame {
    /// Stores `term` for the channel `destination`.
    pub fn encode(term: Term<'_>, destination: &ChannelResource) -> Frame {
        let scan = scan(term, Some(destination));
        let stored = if scan.holds_destination {
            Stored::Encoded {
                etf: term.to_binary(),
                channels: scan.other_channels,
            }
        } else {
            Stored::Copied(ArenaSlot::hold(&destination.arena, term, scan.bytes))
        };
        Frame {
            stored,
            bytes: scan.bytes,
        }
    }

    /// The term, for reading only, in `env`: not copied when it can be read where it is.
    /// Python readers use this; the term must not be kept beyond the frame.
    pub fn read<'a>(&'a self, env: Env<'a>) -> Term<'a> {
        match &self.stored {
            // SAFETY: the term is immutable and lives as long as the frame's arena, which
            // outlives 'a; reading it needs nothing from the env it is presented in.
            Stored::Copied(held) => unsafe { Term::new(env, held.term) },
            Stored::Encoded { .. } => self.decode(env),
        }
    }

    /// The term, copied into `env`.
    pub fn decode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match &self.stored {
            Stored::Copied(held) => held.copy_into(env),
            // SAFETY: the bytes were produced by enif_term_to_binary in this VM.
            Stored::Encoded { etf, .. } => {
                unsafe { env.binary_to_term_trusted(etf.as_slice()) }
                    .expect("a frame holds valid external term format")
                    .0
            }
        }
    }
}

impl Weighed for Frame {
    fn weight(&self) -> usize {
        self.bytes
    }
}

/// A term held in an arena env.
pub struct ArenaTerm {
    #[expect(dead_code, reason = "held only to keep the arena alive")]
    arena: Arc<TermArena>,
    term: ErlNifTerm,
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
/// into. It is freed when the last frame in it is received, so a term received early stays in
/// memory only until its arena-mates are received too: an arena takes at most
/// `ARENA_MAX_FRAMES` frames and about `ARENA_MAX_BYTES` of them.
struct TermArena {
    env: NonNull<ErlNifEnv>,
}

const ARENA_MAX_FRAMES: u32 = 64;
const ARENA_MAX_BYTES: usize = 1 << 20;

// SAFETY: appending to the env happens only under the channel's `ArenaSlot` lock, or on an
// arena private to one frame; reading terms of it is safe from any thread (see `ArenaTerm`).
unsafe impl Send for TermArena {}
unsafe impl Sync for TermArena {}

impl TermArena {
    fn new() -> Arc<TermArena> {
        // SAFETY: enif_alloc_env may be called from any thread.
        let env = NonNull::new(unsafe { enif_alloc_env() }).expect("enif_alloc_env failed");
        Arc::new(TermArena { env })
    }

    /// Copies `term` in. The caller has exclusive use of the arena for appending.
    fn hold(self: Arc<Self>, term: Term<'_>) -> ArenaTerm {
        // SAFETY: `term` is valid in its env; appends to this env are serialized by the caller.
        let term = unsafe { enif_make_copy(self.env.as_ptr(), term.as_c_arg()) };
        ArenaTerm { arena: self, term }
    }
}

impl Drop for TermArena {
    fn drop(&mut self) {
        // SAFETY: allocated by enif_alloc_env; no frame refers to it any more.
        unsafe { enif_free_env(self.env.as_ptr()) }
    }
}

/// A channel's arena being filled. Weak, so an arena whose frames were all received is freed
/// at once rather than when the next send arrives.
#[derive(Default)]
pub struct ArenaSlot {
    arena: Weak<TermArena>,
    frames: u32,
    bytes: usize,
}

impl ArenaSlot {
    /// Copies `term` into the channel's current arena, starting a new one when it is full or
    /// gone. A sender never waits: if another sender is appending, this one uses an arena of
    /// its own.
    fn hold(slot: &Mutex<ArenaSlot>, term: Term<'_>, bytes: usize) -> ArenaTerm {
        let Ok(mut slot) = slot.try_lock() else {
            return TermArena::new().hold(term);
        };
        let current = slot
            .arena
            .upgrade()
            .filter(|_| slot.frames < ARENA_MAX_FRAMES && slot.bytes < ARENA_MAX_BYTES);
        let arena = current.unwrap_or_else(|| {
            let fresh = TermArena::new();
            *slot = ArenaSlot {
                arena: Arc::downgrade(&fresh),
                frames: 0,
                bytes: 0,
            };
            fresh
        });
        slot.frames += 1;
        slot.bytes += bytes;
        arena.hold(term)
    }
}
