//! The interpreter's raw allocations (`PyMem_RawMalloc`, which also serves every object larger
//! than pymalloc's 512 bytes), with large blocks kept for reuse.
//!
//! Why: inside the BEAM, a 1 MiB `bytes` took about ten times as long to make as in a
//! standalone `python3`. glibc serves a block of 128 KiB or more with a fresh `mmap`, so
//! every page of it faults on first touch and the block is unmapped when freed. A standalone
//! program soon stops paying that: the first time such a block is freed, glibc raises its
//! mmap threshold (and trim threshold) past the block's size, and later blocks come from the
//! heap, already mapped. The BEAM sets two of glibc's tuning parameters at start
//! (`mallopt(M_TRIM_THRESHOLD, 128 KiB)`, `mallopt(M_TOP_PAD, 0)`), and setting any of them
//! turns that adjustment off for the whole process: every large block
//! stays an `mmap` and a page fault per 4 KiB. The VM's settings are its own business, so this
//! changes nothing for other code: the interpreter alone keeps its large blocks, up to
//! `CACHED_BYTES_MAX`, and hands them out again for blocks of about their size.
//!
//! Installed between `Py_PreInitialize` and the interpreter's initialization, as the C API
//! asks, so every raw block has passed through it. Each block starts with a header saying
//! whether it is large (and its capacity): a small one goes straight back to the allocator
//! it came from.

use pyo3::ffi;
use std::os::raw::c_void;
use std::ptr;
use std::sync::{Mutex, OnceLock};

/// Blocks from this size up are kept for reuse: glibc's default mmap threshold.
const LARGE_BYTES: usize = 128 * 1024;
/// The largest block kept, and all kept blocks together at most.
const CACHED_BLOCK_MAX: usize = 16 * 1024 * 1024;
const CACHED_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Large blocks are sized in steps of this, so that blocks of about one size fit each other.
const LARGE_STEP: usize = 64 * 1024;
/// In front of every block: its capacity if large, else 0 and the size asked for. Keeps
/// 16-byte alignment.
const HEADER: usize = 16;

/// The allocator Python had before (glibc's, or its debug hooks), which ours wraps.
static UNDERLYING: OnceLock<Underlying> = OnceLock::new();

struct Underlying(ffi::PyMemAllocatorEx);

// SAFETY: a raw allocator may be called from any thread (its context is for it to use).
unsafe impl Send for Underlying {}
unsafe impl Sync for Underlying {}

struct Cache {
    /// Free large blocks (header included) and their capacities.
    blocks: Vec<(usize, usize)>,
    bytes: usize,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    blocks: Vec::new(),
    bytes: 0,
});

/// Installs the allocator. Call once, after `Py_PreInitialize` and before the interpreter is
/// initialized.
pub fn install() {
    let mut underlying = ffi::PyMemAllocatorEx {
        ctx: ptr::null_mut(),
        malloc: None,
        calloc: None,
        realloc: None,
        free: None,
    };
    // SAFETY: reads the current raw allocator into `underlying`.
    unsafe {
        ffi::PyMem_GetAllocator(ffi::PyMemAllocatorDomain::PYMEM_DOMAIN_RAW, &mut underlying)
    };
    if UNDERLYING.set(Underlying(underlying)).is_err() {
        return; // installed already
    }
    let mut ours = ffi::PyMemAllocatorEx {
        ctx: ptr::null_mut(),
        malloc: Some(raw_malloc),
        calloc: Some(raw_calloc),
        realloc: Some(raw_realloc),
        free: Some(raw_free),
    };
    // SAFETY: the functions follow PyMemAllocatorEx's contract (thread-safe, no GIL needed).
    unsafe { ffi::PyMem_SetAllocator(ffi::PyMemAllocatorDomain::PYMEM_DOMAIN_RAW, &mut ours) };
}

fn underlying() -> &'static ffi::PyMemAllocatorEx {
    &UNDERLYING.get().expect("installed before any allocation").0
}

/// The cache, unless another thread is using it right now: the caller then does without,
/// and never waits. (A child process `os.fork` made while a thread held it would otherwise
/// wait for ever; it only does without the cache.)
fn try_lock_cache() -> Option<std::sync::MutexGuard<'static, Cache>> {
    match CACHE.try_lock() {
        Ok(cache) => Some(cache),
        // Every change to the cache is one step: a panic cannot leave it half done.
        Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// `block` (header included) with its header written: the caller's pointer.
///
/// # Safety
/// `block` is null or at least `HEADER` bytes.
unsafe fn with_header(block: *mut c_void, header: Header) -> *mut c_void {
    if block.is_null() {
        return block;
    }
    let (capacity, size) = match header {
        Header::Large(capacity) => (capacity, 0),
        Header::Small(size) => (0, size),
    };
    unsafe {
        (block as *mut usize).write(capacity);
        (block as *mut usize).add(1).write(size);
        (block as *mut u8).add(HEADER) as *mut c_void
    }
}

#[derive(Clone, Copy)]
enum Header {
    /// A large block of this capacity.
    Large(usize),
    /// A small block, of this size.
    Small(usize),
}

impl Header {
    /// `Large` only for a block small enough to keep.
    fn filter_cached(self) -> Option<Header> {
        match self {
            Header::Large(capacity) if capacity <= CACHED_BLOCK_MAX => Some(self),
            _ => None,
        }
    }
}

/// The block behind a caller's pointer, and what its header says.
///
/// # Safety
/// `pointer` came from this allocator.
unsafe fn block_of(pointer: *mut c_void) -> (*mut c_void, Header) {
    unsafe {
        let block = (pointer as *mut u8).sub(HEADER) as *mut c_void;
        let capacity = (block as *const usize).read();
        let header = if capacity == 0 {
            Header::Small((block as *const usize).add(1).read())
        } else {
            Header::Large(capacity)
        };
        (block, header)
    }
}

fn large_capacity(size: usize) -> Option<usize> {
    size.checked_next_multiple_of(LARGE_STEP)
}

/// A kept block of at least `size` bytes and at most twice that, if there is one.
fn take_cached(size: usize) -> Option<(usize, usize)> {
    let mut cache = try_lock_cache()?;
    let index = cache
        .blocks
        .iter()
        .enumerate()
        .filter(|(_, &(_, capacity))| capacity >= size && capacity / 2 <= size)
        .min_by_key(|(_, &(_, capacity))| capacity)
        .map(|(index, _)| index)?;
    let (block, capacity) = cache.blocks.swap_remove(index);
    cache.bytes -= capacity;
    Some((block, capacity))
}

extern "C" fn raw_malloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
    let under = underlying();
    if size < LARGE_BYTES {
        let Some(total) = size.checked_add(HEADER) else {
            return ptr::null_mut();
        };
        // SAFETY: the underlying allocator, with its own context; the header fits.
        return unsafe {
            with_header(
                (under.malloc.unwrap())(under.ctx, total),
                Header::Small(size),
            )
        };
    }
    if let Some((block, capacity)) = take_cached(size) {
        // SAFETY: a kept block of `capacity` bytes plus the header.
        return unsafe { with_header(block as *mut c_void, Header::Large(capacity)) };
    }
    let Some(capacity) = large_capacity(size) else {
        return ptr::null_mut();
    };
    // SAFETY: as above.
    unsafe {
        with_header(
            (under.malloc.unwrap())(under.ctx, capacity + HEADER),
            Header::Large(capacity),
        )
    }
}

extern "C" fn raw_calloc(_ctx: *mut c_void, count: usize, size: usize) -> *mut c_void {
    let Some(bytes) = count.checked_mul(size) else {
        return ptr::null_mut();
    };
    let under = underlying();
    if bytes < LARGE_BYTES {
        // SAFETY: the underlying allocator zeroes the header too; written right after.
        return unsafe {
            with_header(
                (under.calloc.unwrap())(under.ctx, 1, bytes + HEADER),
                Header::Small(bytes),
            )
        };
    }
    // Zeroed pages from the system cost nothing until touched, which a kept block cannot
    // offer (it would be cleared byte by byte): large zeroed blocks are always fresh, and
    // are kept once freed.
    let Some(capacity) = large_capacity(bytes) else {
        return ptr::null_mut();
    };
    // SAFETY: as above.
    unsafe {
        with_header(
            (under.calloc.unwrap())(under.ctx, 1, capacity + HEADER),
            Header::Large(capacity),
        )
    }
}

extern "C" fn raw_realloc(ctx: *mut c_void, pointer: *mut c_void, size: usize) -> *mut c_void {
    if pointer.is_null() {
        return raw_malloc(ctx, size);
    }
    // SAFETY: `pointer` came from this allocator.
    let (block, header) = unsafe { block_of(pointer) };
    let under = underlying();
    let old_size = match header {
        Header::Small(_) if size < LARGE_BYTES => {
            // Small stays small: the underlying allocator moves it if it must.
            // SAFETY: `block` came from the underlying allocator.
            return unsafe {
                with_header(
                    (under.realloc.unwrap())(under.ctx, block, size + HEADER),
                    Header::Small(size),
                )
            };
        }
        Header::Large(capacity) if size <= capacity && size >= capacity / 2 => {
            return pointer; // still fits, without wasting half of it
        }
        Header::Small(old_size) | Header::Large(old_size) => old_size,
    };
    let moved = raw_malloc(ctx, size);
    if moved.is_null() {
        return moved;
    }
    // SAFETY: both are live blocks of at least the bytes copied.
    unsafe { ptr::copy_nonoverlapping(pointer as *const u8, moved as *mut u8, old_size.min(size)) };
    raw_free(ctx, pointer);
    moved
}

extern "C" fn raw_free(_ctx: *mut c_void, pointer: *mut c_void) {
    if pointer.is_null() {
        return;
    }
    // SAFETY: `pointer` came from this allocator.
    let (block, header) = unsafe { block_of(pointer) };
    if let Some(Header::Large(capacity)) = header.filter_cached() {
        if let Some(mut cache) = try_lock_cache() {
            if cache.bytes + capacity <= CACHED_BYTES_MAX {
                cache.bytes += capacity;
                cache.blocks.push((block as usize, capacity));
                return;
            }
        }
    }
    let under = underlying();
    (under.free.unwrap())(under.ctx, block);
}
