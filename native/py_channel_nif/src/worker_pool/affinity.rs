//! The cores a thread of ours may run on. A thread inherits its creator's CPU binding, and
//! ours are created by NIF calls, on scheduler threads: with the schedulers bound (`+sbt db`,
//! `+sbt ts`, ...) each is bound to one core, and so was every Python thread it started, and
//! every `threading.Thread` those started (a node whose jobs all came from one scheduler ran
//! all its Python on one core, beside that scheduler). A thread of ours takes the cores of
//! the VM's main thread instead, which ERTS never binds: all the cores the VM was given
//! (`taskset`, a cgroup's cpuset). ERTS does the same for the threads it creates itself
//! (`enif_thread_create` among them: `erts_sched_bind_atthrcreate_child`); `std::thread`
//! does not go through it.
//!
//! Also the core a thread runs on, and a thread's move off a core it shares with the thread
//! that waits for it (see `Channel::ask_reader_to_leave`).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Lets the calling thread run on every core the VM's main thread may. Nothing happens where
/// the binding cannot be read or set (not Linux, refused, or a machine with more than the
/// 1,024 cores a `cpu_set_t` holds): the thread keeps the one it has.
pub fn take_the_vm_cores() {
    #[cfg(target_os = "linux")]
    // SAFETY: `cpu_set_t` is plain data, and both calls get its exact size.
    unsafe {
        let mut cores: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // The process id names its main thread.
        if libc::sched_getaffinity(libc::getpid(), size, &mut cores) == 0 {
            libc::sched_setaffinity(0, size, &cores);
        }
    }
}

/// The core the calling thread runs on, where the OS tells (Linux).
pub fn current_core() -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: no arguments. glibc reads the core from the thread's rseq area (or asks
        // the vDSO): no system call.
        let core = unsafe { libc::sched_getcpu() };
        if core >= 0 {
            return Some(core as u32);
        }
    }
    None
}

/// The least time between two tries of one thread: a kernel that keeps putting it back (or
/// a thread that may not leave) would otherwise pay a move, or system calls, for every frame.
const TRIES_APART: Duration = Duration::from_millis(1);

thread_local! {
    static LAST_TRY: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Moves the calling thread off `core`, if it runs there and may run elsewhere, then lets it
/// run on every core it could before: the OS leaves it where it moved until it next
/// balances. True if it moved. Tried at most once a millisecond per thread; nothing happens
/// where the binding cannot be read or set (not Linux, refused, a core past `CPU_SETSIZE`).
pub fn step_off(core: u32) -> bool {
    if current_core() != Some(core) {
        return false;
    }
    let now = Instant::now();
    if LAST_TRY
        .get()
        .is_some_and(|last| now.duration_since(last) < TRIES_APART)
    {
        return false;
    }
    LAST_TRY.set(Some(now));
    move_off(core as usize)
}

#[cfg(target_os = "linux")]
fn move_off(core: usize) -> bool {
    if core >= libc::CPU_SETSIZE as usize {
        return false;
    }
    // SAFETY: `cpu_set_t` is plain data, every call gets its exact size, and `CPU_CLR` and
    // `CPU_COUNT` look at bits below `CPU_SETSIZE` only.
    unsafe {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        let mut cores: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size, &mut cores) != 0 {
            return false;
        }
        let mut others = cores;
        libc::CPU_CLR(core, &mut others);
        // Setting a binding without the thread's core moves it before the call returns.
        if libc::CPU_COUNT(&others) == 0 || libc::sched_setaffinity(0, size, &others) != 0 {
            return false;
        }
        // Never left narrowed: should its binding have become unsettable meanwhile (a
        // cpuset changed), the thread takes the VM's cores.
        if libc::sched_setaffinity(0, size, &cores) != 0 {
            take_the_vm_cores();
        }
    }
    true
}

#[cfg(not(target_os = "linux"))]
fn move_off(_core: usize) -> bool {
    false
}
