//! Channel owners: one monitor per owning process, shared by all its channels.
//!
//! A monitor per channel made every `new/0` + drop cost a monitor and a demonitor signal to
//! the owner. A process making channels in a loop (a channel per request) queues those
//! signals to itself faster than it handles them, and creating a channel took 5 us in a
//! fresh process, 75-230 us in a busy one, against 1 us with the owner elsewhere (measured
//! by `make bench` table 10). Now the first channel of a process monitors it, through a
//! small watch resource, and the others join that watch: a channel's drop only leaves a
//! set, and the owner's exit closes every channel still in it.

use crate::beam::channel_resource::{open_type, ChannelResource};
use rustler::sys::{
    c_void, enif_alloc_resource, enif_monitor_process, enif_release_resource, ErlNifEnv,
    ErlNifMonitor, ErlNifPid, ErlNifResourceType,
};
use rustler::{Env, LocalPid};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;

static WATCH_TYPE: AtomicPtr<ErlNifResourceType> = AtomicPtr::new(ptr::null_mut());

/// Owner (the pid's term, an immediate) -> the channels it owns, as addresses of their
/// `ChannelResource`. A channel leaves its set in its destructor, under this lock, so the
/// owner's exit never touches a channel being freed.
static OWNERS: Mutex<Option<HashMap<usize, HashSet<usize>>>> = Mutex::new(None);

/// Registers the watch resource type; called once from the NIF's `load`.
pub fn open_watch_type(env: Env<'_>) -> bool {
    let watch_type = open_type(
        env,
        c"py_channel_owner",
        ptr::null(),
        owner_down as *const _,
    );
    WATCH_TYPE.store(watch_type, Ordering::Release);
    !watch_type.is_null()
}

/// The key of a local pid: its term, the same value in every env for the life of the VM.
fn key(pid: &LocalPid) -> usize {
    word(pid.as_c_arg())
}

fn word(pid: *const ErlNifPid) -> usize {
    // SAFETY: an ErlNifPid is one term, a machine word (erl_nif.h: `{ ERL_NIF_TERM pid; }`).
    unsafe { *pid.cast::<usize>() }
}

/// Makes `owner` the owner of `channel`: its exit closes it. False if `owner` is not alive.
pub fn adopt(env: Env<'_>, owner: &LocalPid, channel: &ChannelResource) -> bool {
    let mut owners = OWNERS.lock().unwrap_or_else(|p| p.into_inner());
    let owners = owners.get_or_insert_with(HashMap::new);
    let key = key(owner);
    let channels = match owners.entry(key) {
        Entry::Occupied(entry) => entry.into_mut(),
        Entry::Vacant(entry) => {
            if !watch(env, owner) {
                return false;
            }
            entry.insert(HashSet::new())
        }
    };
    channels.insert(channel as *const ChannelResource as usize);
    channel.set_owner(key);
    true
}

/// A channel is being freed: it leaves its owner's set.
pub fn release(owner: usize, channel: &ChannelResource) {
    let mut owners = OWNERS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(channels) = owners.as_mut().and_then(|owners| owners.get_mut(&owner)) {
        channels.remove(&(channel as *const ChannelResource as usize));
    }
}

/// A watch resource monitoring `owner`, held by the monitor until the owner exits.
fn watch(env: Env<'_>, owner: &LocalPid) -> bool {
    // SAFETY: the type is registered at load; the watch holds no data. The reference we
    // got is kept while the monitor lives, and released in `owner_down` (or here, if the
    // owner is already gone).
    unsafe {
        let watch = enif_alloc_resource(WATCH_TYPE.load(Ordering::Acquire), 0);
        assert!(!watch.is_null(), "enif_alloc_resource failed");
        let mut monitor = MaybeUninit::<ErlNifMonitor>::uninit();
        let monitored = enif_monitor_process(
            env.as_c_arg(),
            watch,
            owner.as_c_arg(),
            monitor.as_mut_ptr(),
        ) == 0;
        if !monitored {
            enif_release_resource(watch);
        }
        monitored
    }
}

/// The owner exited: close its channels, like an ETS table whose owner dies. Queued frames
/// still drain.
unsafe extern "C" fn owner_down(
    env: *mut ErlNifEnv,
    watch: *mut c_void,
    pid: *const ErlNifPid,
    _monitor: *const ErlNifMonitor,
) {
    // SAFETY: `pid` is the monitored process; the channels in the set are alive while the
    // lock is held (they leave it in their destructor, which takes the lock first).
    unsafe {
        let key = word(pid);
        let env = Env::new(&(), env);
        let mut owners = OWNERS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channels) = owners.as_mut().and_then(|owners| owners.remove(&key)) {
            for channel in channels {
                (*(channel as *const ChannelResource)).close(Some(env));
            }
        }
        drop(owners);
        enif_release_resource(watch);
    }
}
