//! The bound on nesting. Conversion recurses once per level, so a deep enough term or object
//! would overflow the stack: that must be a clean error on every thread that converts. The
//! project's workers have 16 MiB of stack, threads Python starts 8 MiB (or whatever
//! `threading.stack_size` says), so besides a fixed bound the stack actually left is checked.

use pyo3::exceptions::PyValueError;
use pyo3::PyResult;
use std::cell::Cell;

/// Deeper nesting than this is an error whatever the stack.
pub const MAX_DEPTH: usize = 10_000;

/// Stack kept free below the deepest level for what a level calls (CPython, ERTS) and for
/// the error's own unwinding. A level takes under 2 KB.
const STACK_RESERVE: usize = 512 * 1024;

/// Levels between two looks at the stack: 16 levels take far less than the reserve.
const CHECK_EVERY: usize = 16;

thread_local! {
    /// The lowest address this thread's conversions may reach; 0 if unknown (then only
    /// `MAX_DEPTH` applies).
    static STACK_FLOOR: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Fails if going one level deeper than `depth` would exceed the bound or the stack.
/// `what` names what is nested ("term" or "object") for the message.
pub fn enter(depth: usize, what: &str) -> PyResult<()> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "{what} nested deeper than {MAX_DEPTH} levels"
        )));
    }
    if depth % CHECK_EVERY == CHECK_EVERY - 1 && !stack_has_room() {
        return Err(PyValueError::new_err(format!(
            "{what} nested deeper than this thread's stack allows ({depth} levels)"
        )));
    }
    Ok(())
}

fn stack_has_room() -> bool {
    let floor = STACK_FLOOR.with(|cached| match cached.get() {
        Some(floor) => floor,
        None => {
            let floor = stack_floor();
            cached.set(Some(floor));
            floor
        }
    });
    // The address of a local is where the stack is now (it grows down).
    let here = &floor as *const usize as usize;
    here > floor
}

/// The lowest address of this thread's stack plus the reserve.
#[cfg(target_os = "linux")]
fn stack_floor() -> usize {
    // SAFETY: the attribute object is initialised by pthread_getattr_np, read, then destroyed.
    unsafe {
        let mut attributes = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
        if libc::pthread_getattr_np(libc::pthread_self(), attributes.as_mut_ptr()) != 0 {
            return 0;
        }
        let mut attributes = attributes.assume_init();
        let mut low = std::ptr::null_mut();
        let mut size = 0;
        let found = libc::pthread_attr_getstack(&attributes, &mut low, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attributes);
        if found {
            low as usize + STACK_RESERVE
        } else {
            0
        }
    }
}

#[cfg(target_os = "macos")]
fn stack_floor() -> usize {
    // SAFETY: both calls only read the calling thread's own attributes.
    unsafe {
        let this = libc::pthread_self();
        let high = libc::pthread_get_stackaddr_np(this) as usize;
        high - libc::pthread_get_stacksize_np(this) + STACK_RESERVE
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn stack_floor() -> usize {
    0
}
