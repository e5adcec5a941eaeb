//! The cores a thread of ours may run on. A thread inherits its creator's CPU binding, and
//! ours are created by NIF calls, on scheduler threads: with the schedulers bound (`+sbt db`,
//! `+sbt ts`, ...) each is bound to one core, and so was every Python thread it started, and
//! every `threading.Thread` those started (a node whose jobs all came from one scheduler ran
//! all its Python on one core, beside that scheduler). A thread of ours takes the cores of
//! the VM's main thread instead, which ERTS never binds: all the cores the VM was given
//! (`taskset`, a cgroup's cpuset). ERTS does the same for the threads it creates itself
//! (`enif_thread_create` among them: `erts_sched_bind_atthrcreate_child`); `std::thread`
//! does not go through it.

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
