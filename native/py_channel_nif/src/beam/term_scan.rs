//! One pass over a term before it is queued: its size in bytes, what `max_size` and `size`
//! count, and the channels inside it. An explicit stack makes any nesting depth safe.
//!
//! The size is about the memory the term takes as the BEAM lays it out: 8 bytes a word, a
//! binary its length plus two words, a fun a fixed header plus what it captures. It is an
//! estimate, exact enough for backpressure.

use crate::beam::channel_resource::{ChannelHandle, ChannelResource};
use rustler::sys::{
    enif_get_int64, enif_get_list_cell, enif_get_tuple, enif_get_uint64, enif_inspect_binary,
    enif_is_empty_list, enif_release_binary, enif_term_to_binary, enif_term_type, ErlNifBinary,
    ErlNifTerm, ErlNifTermType,
};
use rustler::types::map::MapIterator;
use rustler::{Env, Term};
use smallvec::SmallVec;
use std::mem::MaybeUninit;

const WORD: usize = 8;
/// Refs, and pids or ports of other nodes: a header and a few words.
pub const SMALL_BOXED: usize = 4 * WORD;
/// A fun's header and code pointer.
const FUN: usize = 8 * WORD;
/// The largest binary the VM keeps on a process heap (ERL_ONHEAP_BIN_LIMIT): larger ones are
/// shared by reference count wherever the term is copied.
const ON_HEAP_BINARY_MAX: usize = 64;

pub struct TermScan {
    pub bytes: usize,
    /// Of `bytes`, those of binaries shared by reference rather than copied with the term
    /// (larger than the VM's on-heap limit of 64 bytes).
    pub shared: usize,
    /// The term holds the channel it is being sent to.
    pub holds_destination: bool,
    /// Every other channel inside the term.
    pub other_channels: Vec<ChannelHandle>,
}

impl TermScan {
    /// The bytes a copy of the term copies: all but its binaries shared by reference.
    pub fn copied(&self) -> usize {
        self.bytes - self.shared
    }

    /// What a scan finds in a binary of `size` bytes, larger than the VM keeps on a heap.
    pub fn shared_binary(size: usize) -> TermScan {
        debug_assert!(size > ON_HEAP_BINARY_MAX);
        TermScan {
            bytes: 2 * WORD + size,
            shared: size,
            holds_destination: false,
            other_channels: Vec::new(),
        }
    }
}

/// Scans `term` on its way into `destination` (`None`: only the size is wanted).
pub fn scan(term: Term<'_>, destination: Option<&ChannelResource>) -> TermScan {
    let env = term.get_env();
    let mut result = TermScan {
        bytes: 0,
        shared: 0,
        holds_destination: false,
        other_channels: Vec::new(),
    };
    // Most messages are small: their pending nodes fit on the stack, no allocation.
    let mut pending: SmallVec<[Term<'_>; 32]> = SmallVec::new();
    pending.push(term);
    while let Some(term) = pending.pop() {
        let bytes = node_size(
            env,
            term,
            &mut pending,
            &mut result.shared,
            &mut |reference| {
                if let Ok(channel) = reference.decode::<ChannelHandle>() {
                    if destination.is_some_and(|destination| channel.ptr_eq(destination)) {
                        result.holds_destination = true;
                    } else {
                        result.other_channels.push(channel);
                    }
                }
            },
        );
        result.bytes += bytes;
    }
    result
}

/// The bytes of one node; its children go onto `pending`, a reference to `on_reference`.
fn node_size<'a>(
    env: Env<'a>,
    term: Term<'a>,
    pending: &mut SmallVec<[Term<'a>; 32]>,
    shared: &mut usize,
    on_reference: &mut impl FnMut(Term<'a>),
) -> usize {
    let (raw_env, raw) = (env.as_c_arg(), term.as_c_arg());
    // SAFETY (all calls below): `raw` is a valid term of `raw_env`, and out-parameters are
    // read only when the call reports success.
    match unsafe { enif_term_type(raw_env, raw) } {
        ErlNifTermType::ERL_NIF_TERM_TYPE_ATOM
        | ErlNifTermType::ERL_NIF_TERM_TYPE_PID
        | ErlNifTermType::ERL_NIF_TERM_TYPE_PORT => WORD,
        ErlNifTermType::ERL_NIF_TERM_TYPE_FLOAT => 2 * WORD,
        ErlNifTermType::ERL_NIF_TERM_TYPE_REFERENCE => {
            on_reference(term);
            SMALL_BOXED
        }
        ErlNifTermType::ERL_NIF_TERM_TYPE_FUN => {
            // What a fun captures can hold channels (and a channel's own fun, itself): look.
            captured_terms(env, term, pending);
            FUN
        }
        ErlNifTermType::ERL_NIF_TERM_TYPE_INTEGER => {
            let (mut signed, mut unsigned) = (0, 0);
            if unsafe { enif_get_int64(raw_env, raw, &mut signed) } != 0 {
                WORD
            } else if unsafe { enif_get_uint64(raw_env, raw, &mut unsigned) } != 0 {
                2 * WORD
            } else {
                external_size(term)
            }
        }
        ErlNifTermType::ERL_NIF_TERM_TYPE_BITSTRING => {
            let mut binary = MaybeUninit::<ErlNifBinary>::uninit();
            if unsafe { enif_inspect_binary(raw_env, raw, binary.as_mut_ptr()) } != 0 {
                let size = unsafe { binary.assume_init() }.size;
                if size > ON_HEAP_BINARY_MAX {
                    *shared += size;
                }
                2 * WORD + size
            } else {
                // A bitstring that is not whole bytes: rare, so measured by encoding it.
                external_size(term)
            }
        }
        ErlNifTermType::ERL_NIF_TERM_TYPE_TUPLE => {
            let mut arity = 0;
            let mut elements = MaybeUninit::<*const ErlNifTerm>::uninit();
            if unsafe { enif_get_tuple(raw_env, raw, &mut arity, elements.as_mut_ptr()) } != 0 {
                let elements = unsafe { elements.assume_init() };
                for index in 0..arity as usize {
                    pending.push(unsafe { Term::new(env, *elements.add(index)) });
                }
            }
            WORD
        }
        ErlNifTermType::ERL_NIF_TERM_TYPE_LIST => {
            let mut cells = 0;
            let mut rest = raw;
            let (mut head, mut tail) = (MaybeUninit::uninit(), MaybeUninit::uninit());
            while unsafe { enif_get_list_cell(raw_env, rest, head.as_mut_ptr(), tail.as_mut_ptr()) }
                != 0
            {
                pending.push(unsafe { Term::new(env, head.assume_init()) });
                rest = unsafe { tail.assume_init() };
                cells += 1;
            }
            if cells == 0 {
                return WORD; // []
            }
            if unsafe { enif_is_empty_list(raw_env, rest) } == 0 {
                pending.push(unsafe { Term::new(env, rest) }); // an improper tail
            }
            // A cell is two words: the head's is counted with the head, this is the tail's.
            WORD * cells
        }
        ErlNifTermType::ERL_NIF_TERM_TYPE_MAP => {
            if let Some(entries) = MapIterator::new(term) {
                for (key, value) in entries {
                    pending.push(key);
                    pending.push(value);
                }
            }
            3 * WORD
        }
        _ => external_size(term),
    }
}

/// External term format tags (erl_ext_dist): a version byte, and a local fun.
const ETF_VERSION: u8 = 131;
const NEW_FUN_EXT: u8 = 112;
/// Where NEW_FUN_EXT's count of captured terms starts: version, tag, Size (4), Arity (1),
/// Uniq (16), Index (4).
const NUM_FREE_AT: usize = 27;
/// Terms between the header and the captured ones: Module, OldIndex, OldUniq, Pid.
const FUN_HEADER_TERMS: usize = 4;

/// Pushes the terms a local fun captures onto `pending`. The NIF API cannot look inside a
/// fun, so the fun is encoded and its captured terms decoded back one by one into `env`.
fn captured_terms<'a>(env: Env<'a>, fun: Term<'a>, pending: &mut SmallVec<[Term<'a>; 32]>) {
    let encoded = fun.to_binary();
    let mut etf = encoded.as_slice().to_vec();
    if etf.len() < NUM_FREE_AT + 4 || etf[0] != ETF_VERSION || etf[1] != NEW_FUN_EXT {
        return; // an external fun (fun M:F/A) captures nothing
    }
    let count_bytes = [etf[27], etf[28], etf[29], etf[30]];
    let captured = u32::from_be_bytes(count_bytes) as usize;
    let mut at = NUM_FREE_AT + 4;
    for index in 0..FUN_HEADER_TERMS + captured {
        // Each term is decoded where it lies, with a version byte written over the last byte
        // of the term before it (already decoded, so no longer needed).
        etf[at - 1] = ETF_VERSION;
        let Some((term, used)) = env.binary_to_term(&etf[at - 1..]) else {
            return;
        };
        if index >= FUN_HEADER_TERMS {
            pending.push(term);
        }
        at += used - 1;
    }
}

/// The size in external term format: exact, but it encodes the term, so only for rare kinds.
fn external_size(term: Term<'_>) -> usize {
    let mut binary = MaybeUninit::<ErlNifBinary>::uninit();
    // SAFETY: the binary is released right after reading its size.
    unsafe {
        if enif_term_to_binary(
            term.get_env().as_c_arg(),
            term.as_c_arg(),
            binary.as_mut_ptr(),
        ) == 0
        {
            return SMALL_BOXED;
        }
        let mut binary = binary.assume_init();
        let size = binary.size;
        enif_release_binary(&mut binary);
        size
    }
}
