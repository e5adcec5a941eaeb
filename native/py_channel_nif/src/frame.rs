//! A queued message, stored so that it is process-independent and comes back exact
//! (pids, refs, funs, bignums, improper lists, channels).
//!
//! Two layouts, chosen by measurement (`make bench`):
//! - a binary is held by reference, as Erlang's `!` does (binaries over 64 bytes are
//!   reference-counted, smaller ones copied): a 1 MiB binary costs no more to queue than a
//!   100-byte one. The reference lives in an env shared with neighbouring frames
//!   (`BinaryArena`), as an env of its own per frame would cost more than the copy it saves;
//! - any other term is encoded in external term format (ETF): one compact allocation, cheap
//!   to free from any thread.
//!
//! Either way a frame's size, what `max_size` and `size` count, is its length in ETF.

use crate::channel::Weighed;
use crate::channel_resource::ChannelResource;
use rustler::sys::{enif_alloc_env, enif_free_env, enif_make_copy, ErlNifEnv, ErlNifTerm};
use rustler::{Binary, Env, OwnedBinary, ResourceArc, Term, TermType};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, Weak};

/// ETF of a binary: version byte, BINARY_EXT tag, 4-byte length, then the bytes.
const BINARY_ETF_OVERHEAD: usize = 6;

/// The ETF tag of local references, resources (and so channels) among them.
const NEWER_REFERENCE_EXT: u8 = b'Z';

pub enum Frame {
    Encoded {
        etf: OwnedBinary,
        /// Channels inside the message. The encoded bytes only name a channel; these keep it
        /// alive until the frame is received, so the term decodes to the same live channel.
        #[expect(dead_code, reason = "held only for its references")]
        pinned_channels: Vec<ResourceArc<ChannelResource>>,
    },
    SharedBinary(SharedBinary),
}

impl Frame {
    /// Stores `term` for the channel `destination`.
    pub fn encode(term: Term<'_>, destination: &ChannelResource) -> Frame {
        if let Ok(binary) = Binary::from_term(term) {
            let shared = ArenaSlot::hold(&destination.binary_arena, term, binary.len());
            return Frame::SharedBinary(shared);
        }
        let etf = term.to_binary();
        // A cheap byte scan first: only a term holding a reference can hold a channel.
        let pinned_channels = if etf.as_slice().contains(&NEWER_REFERENCE_EXT) {
            channels_inside(term, destination)
        } else {
            Vec::new()
        };
        Frame::Encoded {
            etf,
            pinned_channels,
        }
    }

    /// The term, rebuilt in `env`.
    pub fn decode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match self {
            // SAFETY: the bytes were produced by enif_term_to_binary in this VM.
            Frame::Encoded { etf, .. } => {
                unsafe { env.binary_to_term_trusted(etf.as_slice()) }
                    .expect("a frame holds valid external term format")
                    .0
            }
            Frame::SharedBinary(shared) => shared.copy_into(env),
        }
    }
}

impl Weighed for Frame {
    fn weight(&self) -> usize {
        match self {
            Frame::Encoded { etf, .. } => etf.len(),
            Frame::SharedBinary(shared) => shared.len + BINARY_ETF_OVERHEAD,
        }
    }
}

/// A large binary, held by reference in an arena env; copying it out only bumps the binary's
/// reference count.
pub struct SharedBinary {
    #[expect(dead_code, reason = "held only to keep the arena alive")]
    arena: Arc<BinaryArena>,
    term: ErlNifTerm,
    len: usize,
}

// SAFETY: `term` is immutable once made; readers only copy it out (enif_make_copy reads the
// term, never the env it lives in), while a sender may be appending other terms to the arena.
unsafe impl Send for SharedBinary {}
unsafe impl Sync for SharedBinary {}

impl SharedBinary {
    fn copy_into<'a>(&self, env: Env<'a>) -> Term<'a> {
        // SAFETY: `self.term` lives in the arena's env, kept alive by `self.arena`.
        unsafe { Term::new(env, enif_make_copy(env.as_c_arg(), self.term)) }
    }
}

/// A process-independent env that the large binaries of consecutive sends to one channel are
/// copied into. One env per binary would cost about 2.7 KB each (the env and a minimum-size
/// heap fragment), which makes a deep queue of them slow; sharing keeps that to a few words.
/// It is freed when the last frame in it is received, so a binary received early stays
/// referenced only until its arena-mates are received too: an arena takes at most
/// `ARENA_MAX_FRAMES` binaries and `ARENA_MAX_BYTES` of them.
pub struct BinaryArena {
    env: NonNull<ErlNifEnv>,
}

const ARENA_MAX_FRAMES: u32 = 64;
const ARENA_MAX_BYTES: usize = 1 << 20;

// SAFETY: appending to the env happens only under the channel's `ArenaSlot` lock (or on a
// private arena); reading terms of it is safe from any thread (see `SharedBinary`).
unsafe impl Send for BinaryArena {}
unsafe impl Sync for BinaryArena {}

impl BinaryArena {
    fn new() -> Arc<BinaryArena> {
        // SAFETY: enif_alloc_env may be called from any thread.
        let env = NonNull::new(unsafe { enif_alloc_env() }).expect("enif_alloc_env failed");
        Arc::new(BinaryArena { env })
    }

    /// Copies `binary` into the arena. The caller has exclusive use of the arena for appending.
    fn hold(self: Arc<Self>, binary: Term<'_>, len: usize) -> SharedBinary {
        // SAFETY: `binary` is valid in its env; appends to this env are serialized by the caller.
        let term = unsafe { enif_make_copy(self.env.as_ptr(), binary.as_c_arg()) };
        SharedBinary {
            arena: self,
            term,
            len,
        }
    }
}

impl Drop for BinaryArena {
    fn drop(&mut self) {
        // SAFETY: allocated by enif_alloc_env; no frame refers to it any more.
        unsafe { enif_free_env(self.env.as_ptr()) }
    }
}

/// A channel's arena being filled. Weak, so an arena whose frames were all received is freed
/// at once rather than when the next large binary arrives.
#[derive(Default)]
pub struct ArenaSlot {
    arena: Weak<BinaryArena>,
    frames: u32,
    bytes: usize,
}

impl ArenaSlot {
    /// Copies `binary` into the channel's current arena, starting a new one when it is full or
    /// gone. A sender never waits: if another sender is appending, this one uses an arena of
    /// its own.
    pub fn hold(slot: &Mutex<ArenaSlot>, binary: Term<'_>, len: usize) -> SharedBinary {
        let Ok(mut slot) = slot.try_lock() else {
            return BinaryArena::new().hold(binary, len);
        };
        let current = slot
            .arena
            .upgrade()
            .filter(|_| slot.frames < ARENA_MAX_FRAMES && slot.bytes < ARENA_MAX_BYTES);
        let arena = current.unwrap_or_else(|| {
            let fresh = BinaryArena::new();
            *slot = ArenaSlot {
                arena: Arc::downgrade(&fresh),
                frames: 0,
                bytes: 0,
            };
            fresh
        });
        slot.frames += 1;
        slot.bytes += len;
        arena.hold(binary, len)
    }
}

/// Every channel inside `term` except `destination` (a channel holding itself would be a
/// cycle that is never freed). An explicit stack makes any nesting depth safe.
fn channels_inside(
    term: Term<'_>,
    destination: &ChannelResource,
) -> Vec<ResourceArc<ChannelResource>> {
    let mut found = Vec::new();
    let mut pending = vec![term];
    while let Some(term) = pending.pop() {
        match term.get_type() {
            TermType::Ref => {
                if let Ok(channel) = term.decode::<ResourceArc<ChannelResource>>() {
                    if !std::ptr::eq(&*channel, destination) {
                        found.push(channel);
                    }
                }
            }
            TermType::Tuple => {
                if let Ok(elements) = rustler::types::tuple::get_tuple(term) {
                    pending.extend(elements);
                }
            }
            TermType::List => {
                let mut rest = term;
                while let Ok((head, tail)) = rest.list_get_cell() {
                    pending.push(head);
                    rest = tail;
                }
                if !rest.is_empty_list() {
                    pending.push(rest); // improper tail
                }
            }
            TermType::Map => {
                if let Some(entries) = rustler::types::map::MapIterator::new(term) {
                    for (key, value) in entries {
                        pending.push(key);
                        pending.push(value);
                    }
                }
            }
            _ => {}
        }
    }
    found
}
