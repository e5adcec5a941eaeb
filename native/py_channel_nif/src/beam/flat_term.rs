//! A flat encoding of small plain terms, which a queued frame stores in place of the term
//! itself (`frame.rs`): the reader builds the term, or the Python object, from it. The
//! encoding is private to this VM and lives no longer than the frame it is in.
//!
//! Why not copy the term, as `!` does? Copied into the channel's arena, a term is walked three
//! times on its way in (measured by `term_scan.rs`, sized and copied by `enif_make_copy`), and
//! a Python reader then asks ERTS about every node again (its type, its elements, its bytes),
//! a call each. Encoded, it is walked once on each side, and read back without a call.
//!
//! And for a Python sender: building its terms with the NIF API allocates them from the BEAM
//! (each binary a heap fragment of its own, from an allocator instance that threads other
//! than schedulers share behind a mutex). Encoded into memory of its own (`flat_chunks.rs`),
//! the term costs the sender no BEAM allocation at all.
//!
//! Plain data from Erlang means: immediates (atoms, local pids, small integers, `[]`, and
//! local ports where the VM makes them immediate), integers of 64 bits, floats, binaries the
//! VM keeps on a heap (up to 64 bytes: larger ones are better shared by reference), proper
//! lists and tuples, up to `ENCODED_MAX_BYTES` and `ENCODED_MAX_DEPTH`. (A Python sender
//! encodes binaries up to `ENCODED_MAX_BYTES`: it copies them anyway, `conversion/flat_term.rs`.) Anything else is stored as a term (`frame.rs`). Immediates travel as
//! their terms, the same value in every env: the reader looks nothing up (external term format
//! would make it take the atom table's lock for every atom).
//!
//! The size counted against `max_size` is worked out as `term_scan.rs` counts the term, so a
//! term weighs the same however it is stored, and whichever language sent it.

use crate::beam::caller::CallerRef;
use crate::beam::term_scan;
use rustler::sys::{
    enif_get_double, enif_get_int64, enif_get_list_cell, enif_get_tuple, enif_get_uint64,
    enif_inspect_binary, enif_is_empty_list, enif_make_double, enif_make_int64,
    enif_make_list_from_array, enif_make_tuple_from_array, enif_make_uint64, enif_term_type,
    ErlNifBinary, ErlNifEnv, ErlNifTerm, ErlNifTermType,
};
use rustler::{Env, NewBinary, Term};
use smallvec::SmallVec;
use std::ffi::c_void;
use std::mem::MaybeUninit;

const IMMEDIATE: u8 = 0;
const INT: u8 = 1;
const UINT: u8 = 2;
const FLOAT: u8 = 3;
const BINARY: u8 = 4;
const LIST: u8 = 5;
const TUPLE: u8 = 6;
const CALLER: u8 = 7;

/// As `term_scan.rs` counts: a word, and a binary's two words of header.
pub const WORD: usize = 8;

/// About the largest encoding made (the item that passes it may end one): a larger term is
/// copied as a term, which costs no more per byte.
pub const ENCODED_MAX_BYTES: usize = 4096;

/// The deepest nesting the Erlang side encodes: the walk recurses on a scheduler's stack.
const ENCODED_MAX_DEPTH: usize = 64;

/// The largest binary encoded (ERL_ONHEAP_BIN_LIMIT, as `term_scan.rs`): a larger one is
/// shared by reference wherever its term is copied, so copying its bytes would cost more.
const ENCODED_BINARY_MAX: usize = 64;

/// The primary tag of an immediate term in ERTS: such a term is its own value, valid in
/// every env for the life of the VM.
const IMMEDIATE_TAG_MASK: usize = 0b11;
const IMMEDIATE_TAG: usize = 0b11;

/// One item of an encoding, as [`Cursor`] reads it.
pub enum Item<'b> {
    /// An atom, a local pid (or port), a small integer, or `[]`.
    Immediate(ErlNifTerm),
    Int(i64),
    UInt(u64),
    Float(f64),
    Binary(&'b [u8]),
    /// A list of this many items, which follow.
    List(usize),
    /// A tuple of this many items, which follow.
    Tuple(usize),
    /// The caller of a `py_channel:call/3` request, by its resource's pointer: the frame
    /// holds a reference to it (`frame.rs`), valid while the frame lives.
    Caller(*const c_void),
}

/// Reads an encoding item after item, depth first.
pub struct Cursor<'b> {
    bytes: &'b [u8],
}

impl<'b> Cursor<'b> {
    pub fn new(bytes: &'b [u8]) -> Self {
        Cursor { bytes }
    }

    /// The next item. Panics past the end: an encoding is made here and never changed.
    pub fn next_item(&mut self) -> Item<'b> {
        let (&tag, rest) = self.bytes.split_first().expect("a well-formed encoding");
        self.bytes = rest;
        match tag {
            IMMEDIATE => Item::Immediate(term_from_bits(self.word())),
            INT => Item::Int(self.word() as i64),
            UINT => Item::UInt(self.word()),
            FLOAT => Item::Float(f64::from_bits(self.word())),
            BINARY => {
                let length = self.count();
                let (data, rest) = self.bytes.split_at(length);
                self.bytes = rest;
                Item::Binary(data)
            }
            LIST => Item::List(self.count()),
            CALLER => Item::Caller(self.word() as usize as *const c_void),
            _ => Item::Tuple(self.count()),
        }
    }

    /// Whether the next item is the immediate `term` and the one after it a binary: a tuple
    /// `{bytes, B}` or `{memoryview, B}` looked at before it is read.
    pub fn next_is_tagged_binary(&self, term: ErlNifTerm) -> bool {
        let bits = term_bits(term).to_ne_bytes();
        self.bytes.len() > 9
            && self.bytes[0] == IMMEDIATE
            && self.bytes[1..9] == bits
            && self.bytes[9] == BINARY
    }

    fn word(&mut self) -> u64 {
        let (word, rest) = self.bytes.split_at(8);
        self.bytes = rest;
        u64::from_ne_bytes(word.try_into().expect("eight bytes"))
    }

    fn count(&mut self) -> usize {
        let (count, rest) = self.bytes.split_at(4);
        self.bytes = rest;
        u32::from_ne_bytes(count.try_into().expect("four bytes")) as usize
    }
}

/// Appends an immediate term (an atom, a local pid).
pub fn put_immediate(term: ErlNifTerm, out: &mut Vec<u8>) {
    put_word(IMMEDIATE, term_bits(term), out);
}

/// Appends an integer; its size as `term_scan.rs` counts it.
pub fn put_int(value: i64, out: &mut Vec<u8>) -> usize {
    put_word(INT, value as u64, out);
    WORD
}

/// Appends an integer above `i64::MAX`; its size as `term_scan.rs` counts it.
pub fn put_uint(value: u64, out: &mut Vec<u8>) -> usize {
    put_word(UINT, value, out);
    2 * WORD
}

/// Appends a float; its size as `term_scan.rs` counts it.
pub fn put_float(value: f64, out: &mut Vec<u8>) -> usize {
    put_word(FLOAT, value.to_bits(), out);
    2 * WORD
}

/// Appends a binary; its size as `term_scan.rs` counts it, or `None` if the encoding would
/// pass `ENCODED_MAX_BYTES`.
pub fn put_binary(bytes: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    if out.len() + bytes.len() > ENCODED_MAX_BYTES {
        return None;
    }
    put_count(BINARY, bytes.len(), out);
    out.extend_from_slice(bytes);
    Some(2 * WORD + bytes.len())
}

/// Appends the head of a list of `items` items, which the caller appends next; `None` if the
/// encoding could not fit them.
pub fn put_list(items: usize, out: &mut Vec<u8>) -> Option<()> {
    put_container(LIST, items, out)
}

/// As [`put_list`], for a tuple.
pub fn put_tuple(items: usize, out: &mut Vec<u8>) -> Option<()> {
    put_container(TUPLE, items, out)
}

/// The size `term_scan.rs` counts for a list of `items` items, beside the items' own: a cell
/// is two words, the head's counted with the head, this is the tail's; `[]` is a word.
pub fn list_size(items: usize) -> usize {
    WORD * items.max(1)
}

/// The size `term_scan.rs` counts for a tuple, beside its items'.
pub const TUPLE_SIZE: usize = WORD;

fn put_container(tag: u8, items: usize, out: &mut Vec<u8>) -> Option<()> {
    // Every item takes at least a byte.
    if out.len() + items > ENCODED_MAX_BYTES {
        return None;
    }
    put_count(tag, items, out);
    Some(())
}

fn put_word(tag: u8, value: u64, out: &mut Vec<u8>) {
    out.push(tag);
    out.extend_from_slice(&value.to_ne_bytes());
}

fn put_count(tag: u8, items: usize, out: &mut Vec<u8>) {
    out.push(tag);
    out.extend_from_slice(&(items as u32).to_ne_bytes());
}

/// A term's bits (for an immediate term, its value in every env).
fn term_bits(term: ErlNifTerm) -> u64 {
    // SAFETY: ErlNifTerm is a transparent word.
    unsafe { std::mem::transmute::<ErlNifTerm, usize>(term) as u64 }
}

fn term_from_bits(bits: u64) -> ErlNifTerm {
    // SAFETY: the bits of an immediate term `term_bits` gave.
    unsafe { std::mem::transmute::<usize, ErlNifTerm>(bits as usize) }
}

/// Why a term is not encoded (`out` is then of no use).
pub enum NotEncoded {
    /// A binary larger than the VM keeps on a heap, of this many bytes, on its own: it is
    /// shared by reference, and this is all `term_scan.rs` would find.
    SharedBinary(usize),
    /// Anything else that is not small plain data.
    Other,
}

/// Encodes `term` into `out` (cleared first) and answers its size as `term_scan.rs` counts it.
pub fn encode(term: Term<'_>, out: &mut Vec<u8>) -> Result<usize, NotEncoded> {
    out.clear();
    let (env, raw) = (term.get_env().as_c_arg(), term.as_c_arg());
    if is_immediate(raw) {
        put_immediate(raw, out);
        return Ok(WORD);
    }
    // SAFETY: `raw` is a term of `env`.
    let kind = unsafe { enif_term_type(env, raw) };
    if matches!(kind, ErlNifTermType::ERL_NIF_TERM_TYPE_BITSTRING) {
        // A large binary is the usual term that is not encoded: measured here, it is not
        // walked again by `term_scan.rs`.
        // SAFETY: `raw` is a term of `env`, used within this call.
        return match unsafe { whole_bytes(env, raw) } {
            Some(bytes) if bytes.len() > ENCODED_BINARY_MAX => {
                Err(NotEncoded::SharedBinary(bytes.len()))
            }
            Some(bytes) => put_binary(bytes, out).ok_or(NotEncoded::Other),
            None => Err(NotEncoded::Other),
        };
    }
    encode_boxed(env, raw, kind, out, 0).ok_or(NotEncoded::Other)
}

/// Encodes the request `{Caller, Request}` of `py_channel:call/3` into `out` (cleared
/// first): the caller as the pointer of its resource, which the frame made of this holds a
/// reference to (`frame.rs`), `request` as [`encode`] would. Answers the size as
/// `term_scan.rs` counts the tuple.
pub fn encode_call(
    caller: *const c_void,
    request: Term<'_>,
    out: &mut Vec<u8>,
) -> Result<usize, NotEncoded> {
    out.clear();
    put_tuple(2, out).ok_or(NotEncoded::Other)?;
    put_word(CALLER, caller as usize as u64, out);
    let (env, raw) = (request.get_env().as_c_arg(), request.as_c_arg());
    let size = encode_node(env, raw, out, 1).ok_or(NotEncoded::Other)?;
    Ok(TUPLE_SIZE + term_scan::SMALL_BOXED + size)
}

/// The caller's pointer in an encoding [`encode_call`] made: after the tuple's head and the
/// item's tag.
pub fn call_caller(encoding: &[u8]) -> *const c_void {
    const AT: usize = 1 + 4 + 1;
    let word = encoding[AT..AT + 8].try_into().expect("eight bytes");
    u64::from_ne_bytes(word) as usize as *const c_void
}

fn is_immediate(term: ErlNifTerm) -> bool {
    term_bits(term) as usize & IMMEDIATE_TAG_MASK == IMMEDIATE_TAG
}

fn encode_node(
    env: *mut ErlNifEnv,
    term: ErlNifTerm,
    out: &mut Vec<u8>,
    depth: usize,
) -> Option<usize> {
    if out.len() >= ENCODED_MAX_BYTES {
        return None;
    }
    if is_immediate(term) {
        put_immediate(term, out);
        return Some(WORD);
    }
    if depth == ENCODED_MAX_DEPTH {
        return None;
    }
    // SAFETY: `term` is a term of `env`.
    let kind = unsafe { enif_term_type(env, term) };
    encode_boxed(env, term, kind, out, depth)
}

/// A term that is not immediate, of type `kind`.
fn encode_boxed(
    env: *mut ErlNifEnv,
    term: ErlNifTerm,
    kind: ErlNifTermType,
    out: &mut Vec<u8>,
    depth: usize,
) -> Option<usize> {
    // SAFETY (all calls below): `term` is a valid term of `env`, and out-parameters are read
    // only when the call reports success.
    unsafe {
        match kind {
            ErlNifTermType::ERL_NIF_TERM_TYPE_TUPLE => {
                let mut arity = 0;
                let mut elements = MaybeUninit::<*const ErlNifTerm>::uninit();
                if enif_get_tuple(env, term, &mut arity, elements.as_mut_ptr()) == 0 {
                    return None;
                }
                let elements = std::slice::from_raw_parts(elements.assume_init(), arity as usize);
                put_tuple(elements.len(), out)?;
                let mut size = TUPLE_SIZE;
                for &element in elements {
                    size += encode_node(env, element, out, depth + 1)?;
                }
                Some(size)
            }
            ErlNifTermType::ERL_NIF_TERM_TYPE_LIST => list(env, term, out, depth),
            ErlNifTermType::ERL_NIF_TERM_TYPE_BITSTRING => match whole_bytes(env, term) {
                Some(bytes) if bytes.len() <= ENCODED_BINARY_MAX => put_binary(bytes, out),
                _ => None,
            },
            ErlNifTermType::ERL_NIF_TERM_TYPE_FLOAT => {
                let mut value = 0.0;
                (enif_get_double(env, term, &mut value) != 0).then(|| put_float(value, out))
            }
            ErlNifTermType::ERL_NIF_TERM_TYPE_INTEGER => {
                let (mut signed, mut unsigned) = (0, 0);
                if enif_get_int64(env, term, &mut signed) != 0 {
                    Some(put_int(signed, out))
                } else if enif_get_uint64(env, term, &mut unsigned) != 0 {
                    Some(put_uint(unsigned, out))
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

/// The bytes of a bitstring of `env`; `None` if it is not whole bytes.
///
/// # Safety
/// `term` is a term of `env`; the bytes are used only while it lives.
unsafe fn whole_bytes<'e>(env: *mut ErlNifEnv, term: ErlNifTerm) -> Option<&'e [u8]> {
    let mut binary = MaybeUninit::<ErlNifBinary>::uninit();
    // SAFETY: as the caller's; the binary is read only if the call succeeds.
    unsafe {
        if enif_inspect_binary(env, term, binary.as_mut_ptr()) == 0 {
            return None;
        }
        let binary = binary.assume_init();
        if binary.size == 0 {
            return Some(&[]);
        }
        Some(std::slice::from_raw_parts(binary.data, binary.size))
    }
}

/// A non-empty list: its count is written once its cells are walked.
///
/// # Safety
/// `term` is a list of `env`.
unsafe fn list(
    env: *mut ErlNifEnv,
    term: ErlNifTerm,
    out: &mut Vec<u8>,
    depth: usize,
) -> Option<usize> {
    let head_at = out.len();
    put_list(0, out)?;
    let (mut cells, mut size) = (0, 0);
    let mut rest = term;
    let (mut head, mut tail) = (MaybeUninit::uninit(), MaybeUninit::uninit());
    // SAFETY: as the caller's; out-parameters are read only on success.
    unsafe {
        while enif_get_list_cell(env, rest, head.as_mut_ptr(), tail.as_mut_ptr()) != 0 {
            size += encode_node(env, head.assume_init(), out, depth + 1)?;
            rest = tail.assume_init();
            cells += 1;
        }
        if enif_is_empty_list(env, rest) == 0 {
            return None; // an improper list
        }
    }
    out[head_at + 1..head_at + 5].copy_from_slice(&(cells as u32).to_ne_bytes());
    Some(size + list_size(cells))
}

/// Builds in `env` the term an encoding holds. Iterative: the nesting a Python sender may
/// encode would overflow a scheduler's stack if this recursed.
pub fn decode<'a>(env: Env<'a>, bytes: &[u8]) -> Term<'a> {
    // Containers being filled: kind, items still to come, where their items start in `built`.
    // On the stack for the usual small message: no allocation on the reader's scheduler.
    let mut open: SmallVec<[(bool, usize, usize); 8]> = SmallVec::new();
    let mut built: SmallVec<[ErlNifTerm; 16]> = SmallVec::new();
    let raw_env = env.as_c_arg();
    let mut cursor = Cursor::new(bytes);
    loop {
        // SAFETY (all four): plain values made into terms of `env`.
        let value = match cursor.next_item() {
            Item::Immediate(term) => term,
            Item::Int(value) => unsafe { enif_make_int64(raw_env, value) },
            Item::UInt(value) => unsafe { enif_make_uint64(raw_env, value) },
            Item::Float(value) => unsafe { enif_make_double(raw_env, value) },
            // SAFETY: a live caller resource, held by the frame being read.
            Item::Caller(caller) => unsafe { CallerRef::kept(caller) }.encode(env).as_c_arg(),
            Item::Binary(data) => {
                let mut binary = NewBinary::new(env, data.len());
                binary.as_mut_slice().copy_from_slice(data);
                Term::from(binary).as_c_arg()
            }
            Item::List(0) => close(env, true, &[]),
            Item::Tuple(0) => close(env, false, &[]),
            Item::List(items) => {
                open.push((true, items, built.len()));
                continue;
            }
            Item::Tuple(items) => {
                open.push((false, items, built.len()));
                continue;
            }
        };
        built.push(value);
        // Close every container this item completed.
        while let Some((is_list, remaining, start)) = open.last_mut() {
            *remaining -= 1;
            if *remaining > 0 {
                break;
            }
            let (is_list, start) = (*is_list, *start);
            open.pop();
            let container = close(env, is_list, &built[start..]);
            built.truncate(start);
            built.push(container);
        }
        if open.is_empty() {
            // SAFETY: made in `env` above.
            return unsafe { Term::new(env, built[0]) };
        }
    }
}

fn close(env: Env<'_>, is_list: bool, items: &[ErlNifTerm]) -> ErlNifTerm {
    // SAFETY: `items` are terms of `env`.
    unsafe {
        if is_list {
            enif_make_list_from_array(env.as_c_arg(), items.as_ptr(), items.len() as u32)
        } else {
            enif_make_tuple_from_array(env.as_c_arg(), items.as_ptr(), items.len() as u32)
        }
    }
}
