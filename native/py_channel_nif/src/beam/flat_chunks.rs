//! The memory flat-encoded terms (`flat_term.rs`) are kept in until their frames are read:
//! each sending thread writes into a chunk of its own, one encoding after another, and a
//! chunk is freed when the last frame in it is dropped.
//!
//! A chunk holds the frames of one channel only, and is no larger than what its thread has
//! just written to that channel in a row: a frame left queued keeps alive at most as many
//! bytes again of its own channel's frames, never a chunk of frames other channels read
//! long ago (memory no `max_size` counts and `erlang:memory/0` does not show). A stream
//! fills chunks of `CHUNK_BYTES`.

use std::cell::{RefCell, UnsafeCell};
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Where a sender thread's encodings are kept until their frames are read: chunks written one
/// after another, each freed when the last frame in it is dropped. A fresh allocation per
/// frame, freed by the reader on another thread, never finds memory freed on its own thread:
/// glibc served every one from its slow path, a third of a Python sender's time (perf).
pub struct EncodedSlice {
    chunk: NonNull<Chunk>,
    start: u32,
    length: u32,
}

// SAFETY: the slice's bytes are written before the frame holding it is queued, and never
// again; the chunk lives until its last slice and its writer are gone (`Chunk::release`).
unsafe impl Send for EncodedSlice {}
unsafe impl Sync for EncodedSlice {}

/// On lines of its own: the reader that drops slices writes `references`, and nothing the
/// writer reads per frame may share its line (the writer keeps the bytes' address in its
/// [`Filling`]; reading it here, beside the count, stalled every send on the reader's
/// writes: perf put 87 % of `Frame::from_encoding` on that load).
#[repr(align(128))]
struct Chunk {
    /// Written once each, by the writer, before any reader can see them: never zeroed first.
    bytes: Box<[UnsafeCell<MaybeUninit<u8>>]>,
    /// Slices handed out and not yet dropped, plus those its writer still holds in reserve.
    references: AtomicUsize,
}

const CHUNK_BYTES: usize = 16 * 1024;
/// References a chunk starts with, handed out one per slice: counting each slice in would
/// share the count's cache line with the reader dropping slices.
const CHUNK_SLICES: usize = 256;

impl Chunk {
    fn fresh(capacity: usize) -> NonNull<Chunk> {
        let bytes = (0..capacity)
            .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
            .collect();
        let chunk = Box::new(Chunk {
            bytes,
            references: AtomicUsize::new(CHUNK_SLICES),
        });
        NonNull::from(Box::leak(chunk))
    }

    /// Where the chunk's bytes start (they are written through this address, never moved).
    fn bytes(chunk: NonNull<Chunk>) -> *mut u8 {
        // SAFETY: a fresh chunk, alive: its maker holds all its references.
        UnsafeCell::raw_get(unsafe { chunk.as_ref() }.bytes.as_ptr()).cast::<u8>()
    }

    /// Gives `count` references back; the last one frees the chunk.
    ///
    /// # Safety
    /// The caller owns `count` references to a live chunk.
    unsafe fn release(chunk: NonNull<Chunk>, count: usize) {
        if count == 0 {
            // Nothing held: the chunk may already be gone with its last slice.
            return;
        }
        // SAFETY: live while the caller holds references.
        let left = unsafe { chunk.as_ref() }
            .references
            .fetch_sub(count, Ordering::AcqRel);
        if left == count {
            // SAFETY: no reference is left; made by Box::leak in `fresh`.
            drop(unsafe { Box::from_raw(chunk.as_ptr()) });
        }
    }
}

/// This thread's chunk being filled, for one channel.
struct Writer {
    /// The channel the chunk's frames are for (its address: an identity, never followed).
    channel: usize,
    /// Bytes written for `channel` since this thread last wrote for another one.
    run: usize,
    current: Option<Filling>,
}

struct Filling {
    chunk: NonNull<Chunk>,
    /// The chunk's first byte.
    bytes: *mut u8,
    capacity: usize,
    used: usize,
    /// References still held in reserve for the next slices.
    reserved: usize,
}

impl Filling {
    /// Fetches the lines the next frames go into for writing, while the caller goes on: that
    /// memory was last held by the reader that freed it, and stores into lines elsewhere
    /// stall the sender (perf: after each frame's copy).
    fn prefetch_next(&self) {
        for ahead in [CACHE_LINE, 2 * CACHE_LINE] {
            let at = (self.used & !(CACHE_LINE - 1)) + ahead;
            if at < self.capacity {
                crate::channel::prefetch_for_write(self.bytes.wrapping_add(at));
            }
        }
    }
}

const CACHE_LINE: usize = 64;

impl Drop for Filling {
    fn drop(&mut self) {
        // SAFETY: the writer owns its reserved references.
        unsafe { Chunk::release(self.chunk, self.reserved) };
    }
}

thread_local! {
    static WRITER: RefCell<Writer> = const {
        RefCell::new(Writer {
            channel: 0,
            run: 0,
            current: None,
        })
    };
}

impl EncodedSlice {
    /// A copy of `encoded`, a frame for the channel whose address is `channel`, in this
    /// thread's chunk for that channel.
    pub fn copy_of(channel: usize, encoded: &[u8]) -> EncodedSlice {
        WRITER.with(|writer| {
            let Ok(mut writer) = writer.try_borrow_mut() else {
                return EncodedSlice::alone(encoded);
            };
            if writer.channel != channel {
                // The chunk for the other channel is let go (its reserve given back).
                *writer = Writer {
                    channel,
                    run: 0,
                    current: None,
                };
            }
            writer.run += encoded.len();
            let full = writer.current.as_ref().is_none_or(|current| {
                current.reserved == 0 || current.used + encoded.len() > current.capacity
            });
            if full {
                // As large as this run so far: chunks double while a channel is written to
                // in a row, up to CHUNK_BYTES.
                let capacity = writer.run.min(CHUNK_BYTES).max(encoded.len());
                let chunk = Chunk::fresh(capacity);
                writer.current = Some(Filling {
                    chunk,
                    bytes: Chunk::bytes(chunk),
                    capacity,
                    used: 0,
                    reserved: CHUNK_SLICES,
                });
            }
            let current = writer.current.as_mut().expect("a chunk was just made");
            let slice = EncodedSlice::write(current.chunk, current.bytes, current.used, encoded);
            current.used += encoded.len();
            current.reserved -= 1;
            current.prefetch_next();
            slice
        })
    }

    /// In a chunk of its own (re-entered while this thread's writer is in use).
    fn alone(encoded: &[u8]) -> EncodedSlice {
        let chunk = Chunk::fresh(encoded.len());
        let slice = EncodedSlice::write(chunk, Chunk::bytes(chunk), 0, encoded);
        // SAFETY: the chunk starts with CHUNK_SLICES references; the slice keeps one.
        unsafe { Chunk::release(chunk, CHUNK_SLICES - 1) };
        slice
    }

    /// Copies `encoded` into `chunk` (whose first byte is at `bytes`) at `at`, past anything
    /// handed out before, with one of the caller's references.
    fn write(chunk: NonNull<Chunk>, bytes: *mut u8, at: usize, encoded: &[u8]) -> EncodedSlice {
        // SAFETY: the range is this writer's alone, inside the chunk, and not yet read by
        // anyone: readers only see a slice after its frame is queued.
        unsafe { std::ptr::copy_nonoverlapping(encoded.as_ptr(), bytes.add(at), encoded.len()) }
        EncodedSlice {
            chunk,
            start: at as u32,
            length: encoded.len() as u32,
        }
    }

    /// A reference of its own to the memory this slice lives in, so its bytes can be read
    /// where they are (a `memoryview` in Python) after the slice is gone.
    pub fn memory(&self) -> ChunkMemory {
        // SAFETY: live while this slice is; a new reference, owned by the result.
        unsafe { self.chunk.as_ref() }
            .references
            .fetch_add(1, Ordering::Relaxed);
        ChunkMemory(self.chunk)
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: written (so initialized) before this slice existed, never again; the chunk
        // lives as long as this slice.
        unsafe {
            let bytes = &self.chunk.as_ref().bytes;
            let start = UnsafeCell::raw_get(bytes.as_ptr().add(self.start as usize));
            std::slice::from_raw_parts(start.cast::<u8>(), self.length as usize)
        }
    }
}

impl Drop for EncodedSlice {
    fn drop(&mut self) {
        // SAFETY: the slice owns one reference.
        unsafe { Chunk::release(self.chunk, 1) };
    }
}

/// Keeps a chunk alive: see [`EncodedSlice::memory`].
pub struct ChunkMemory(NonNull<Chunk>);

// SAFETY: as `EncodedSlice`: the bytes are never written again, the count is atomic.
unsafe impl Send for ChunkMemory {}
unsafe impl Sync for ChunkMemory {}

impl Drop for ChunkMemory {
    fn drop(&mut self) {
        // SAFETY: this handle owns one reference.
        unsafe { Chunk::release(self.0, 1) };
    }
}
