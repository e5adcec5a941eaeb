//! The channel as a BEAM resource: the core channel over frames, owned by a process.
//!
//! The resource type is registered here rather than through rustler's `ResourceArc`: rustler
//! finds a resource's type by hashing its `TypeId` on every decode, which measured at about a
//! tenth of a send. Here the type pointer is kept in a static, and `ChannelHandle` is the
//! counted reference (what `ResourceArc` would be).

use crate::beam::frame::{ArenaSlot, Frame};
use crate::beam::owners;
use crate::beam::task_wake::{Awaits, TaskWake};
use crate::channel::{Channel, Signal, TryRecvError};
use rustler::sys::{
    c_void, enif_alloc_resource, enif_get_resource, enif_keep_resource, enif_make_resource,
    enif_release_resource, ErlNifEnv, ErlNifResourceDown, ErlNifResourceDtor, ErlNifResourceFlags,
    ErlNifResourceType, ErlNifResourceTypeInit,
};
use rustler::{Decoder, Encoder, EnifAllocator, Env, Error, LocalPid, NifResult, Term};
use std::ffi::CStr;
use std::mem::{align_of, size_of, MaybeUninit};
use std::ops::Deref;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Channels allocated and not yet freed, for `py_channel:stats/0`.
static LIVE_CHANNELS: AtomicUsize = AtomicUsize::new(0);

/// Queue blocks (4 KB each) come from the BEAM's allocator, not malloc. glibc gives memory back
/// to the OS only from the top of its per-thread heaps, so blocks freed among chunks it still
/// holds stay resident: 100,000 channels made and dropped kept ~400 MB for good. The BEAM's
/// allocators take blocks freed on any thread back to their carriers and unmap a carrier once
/// it is empty; what they hold also shows in `erlang:memory()`.
static QUEUE_ALLOCATOR: EnifAllocator = EnifAllocator;

static CHANNEL_TYPE: AtomicPtr<ErlNifResourceType> = AtomicPtr::new(ptr::null_mut());

pub struct ChannelResource {
    pub channel: Channel<Frame, TaskWake>,
    /// Where the terms sent to this channel are held (see `frame::TermArena`).
    pub arena: Mutex<ArenaSlot>,
    /// The owner's key in `owners.rs` (0 until adopted).
    owner: AtomicUsize,
}

impl ChannelResource {
    pub fn new(max_size: u64) -> Self {
        LIVE_CHANNELS.fetch_add(1, Ordering::Relaxed);
        ChannelResource {
            channel: Channel::with_block_allocator(max_size, &QUEUE_ALLOCATOR),
            arena: Mutex::new(ArenaSlot::default()),
            owner: AtomicUsize::new(0),
        }
    }

    /// Set by `owners::adopt`, which keeps the channel in its owner's set until it is freed.
    pub fn set_owner(&self, owner: usize) {
        self.owner.store(owner, Ordering::Release);
    }

    /// Closes the channel and wakes every parked reader and sender. `env` is the caller's,
    /// when there is one.
    pub fn close(&self, env: Option<Env<'_>>) {
        self.wake(self.channel.close(), env);
    }

    /// Takes the oldest frame without waiting, waking a sender waiting for the room it frees.
    pub fn take(&self, env: Option<Env<'_>>) -> Result<Frame, TryRecvError> {
        self.channel.try_recv(|sender| self.wake([sender], env))
    }

    /// Takes up to `max` frames, handing each to `each` until it answers `false`; how many
    /// were taken (`Channel::try_recv_many`).
    pub fn take_many(
        &self,
        max: usize,
        each: impl FnMut(Frame) -> bool,
        env: Option<Env<'_>>,
    ) -> usize {
        self.channel
            .try_recv_many(max, each, |sender| self.wake([sender], env))
    }

    /// Fires task wakers the core handed back. One whose task is gone cannot be delivered:
    /// the wake goes to the next task waiting for the same thing, so no frame waits while a
    /// live reader sleeps, and no room goes unused while a live sender sleeps.
    pub fn wake(&self, wakes: impl IntoIterator<Item = TaskWake>, env: Option<Env<'_>>) {
        for wake in wakes {
            let mut next = Some(wake);
            while let Some(wake) = next.take() {
                let awaits = wake.awaits();
                if !wake.fire(env) {
                    next = match awaits {
                        Awaits::Frame => self.channel.pass_on_wake(),
                        Awaits::Room => self.channel.pass_on_send_wake(),
                    };
                }
            }
        }
    }

    pub fn live_count() -> usize {
        LIVE_CHANNELS.load(Ordering::Relaxed)
    }
}

impl Drop for ChannelResource {
    fn drop(&mut self) {
        LIVE_CHANNELS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Registers the resource type; called once from the NIF's `load`.
pub fn open_resource_type(env: Env<'_>) -> bool {
    // The owner is watched by `owners.rs`, one monitor per owning process: no down callback.
    let resource_type = open_type(env, c"py_channel", destructor as *const _, ptr::null());
    CHANNEL_TYPE.store(resource_type, Ordering::Release);
    !resource_type.is_null()
}

/// Registers a resource type of this NIF (null on failure); from `load` only.
pub(super) fn open_type(
    env: Env<'_>,
    name: &CStr,
    dtor: *const ErlNifResourceDtor,
    down: *const ErlNifResourceDown,
) -> *mut ErlNifResourceType {
    let init = ErlNifResourceTypeInit {
        dtor,
        stop: ptr::null(),
        down,
        #[cfg(feature = "nif_version_2_16")]
        members: 3,
        #[cfg(feature = "nif_version_2_16")]
        dyncall: ptr::null(),
    };
    let mut tried = MaybeUninit::uninit();
    // SAFETY: called from `load` with its env; the name is a static C string.
    unsafe {
        #[cfg(feature = "nif_version_2_16")]
        let open = rustler::sys::enif_init_resource_type;
        #[cfg(not(feature = "nif_version_2_16"))]
        let open = rustler::sys::enif_open_resource_type_x;
        open(
            env.as_c_arg(),
            name.as_ptr(),
            &init,
            ErlNifResourceFlags::ERL_NIF_RT_CREATE,
            tried.as_mut_ptr(),
        )
        .cast_mut()
    }
}

fn resource_type() -> *const ErlNifResourceType {
    CHANNEL_TYPE.load(Ordering::Acquire)
}

/// The allocation holds a `ChannelResource` at the first suitably aligned address: the BEAM
/// aligns resources to 8 bytes, the channel's cache-padded counters want more.
const ALLOCATION: usize = size_of::<ChannelResource>() + align_of::<ChannelResource>();

fn data(object: *const c_void) -> *mut ChannelResource {
    let align = align_of::<ChannelResource>();
    let offset = align - (object as usize % align);
    // SAFETY: the allocation is ALLOCATION bytes, so the aligned address plus the struct fits.
    unsafe {
        object
            .cast::<u8>()
            .add(offset)
            .cast::<ChannelResource>()
            .cast_mut()
    }
}

unsafe extern "C" fn destructor(_env: *mut ErlNifEnv, object: *mut c_void) {
    // SAFETY: the BEAM calls this once, when the last reference is gone. The channel leaves
    // its owner's set first, so the owner's exit never closes it while it is freed.
    unsafe {
        let channel = data(object);
        let owner = (*channel).owner.load(Ordering::Acquire);
        if owner != 0 {
            owners::release(owner, &*channel);
        }
        ptr::drop_in_place(channel)
    }
}

/// A counted reference to a channel resource, like rustler's `ResourceArc`.
pub struct ChannelHandle {
    object: *const c_void,
}

// SAFETY: the resource is reference-counted by the BEAM and `ChannelResource` is Send + Sync.
unsafe impl Send for ChannelHandle {}
unsafe impl Sync for ChannelHandle {}

impl ChannelHandle {
    pub fn new(resource: ChannelResource) -> ChannelHandle {
        // SAFETY: the type is registered at load; the allocation is written before any use.
        unsafe {
            let object = enif_alloc_resource(resource_type(), ALLOCATION);
            assert!(!object.is_null(), "enif_alloc_resource failed");
            ptr::write(data(object), resource);
            ChannelHandle { object }
        }
    }

    /// Makes `pid` the channel's owner: its exit closes it. False if `pid` is dead.
    pub fn monitor(&self, env: Env<'_>, pid: &LocalPid) -> bool {
        owners::adopt(env, pid, self)
    }

    pub fn ptr_eq(&self, resource: &ChannelResource) -> bool {
        ptr::eq(data(self.object), resource)
    }
}

impl Deref for ChannelHandle {
    type Target = ChannelResource;

    fn deref(&self) -> &ChannelResource {
        // SAFETY: the handle holds a reference, so the resource is alive and initialised.
        unsafe { &*data(self.object) }
    }
}

impl Clone for ChannelHandle {
    fn clone(&self) -> Self {
        // SAFETY: a live resource; the new handle owns the extra reference.
        unsafe { enif_keep_resource(self.object) };
        ChannelHandle {
            object: self.object,
        }
    }
}

impl Drop for ChannelHandle {
    fn drop(&mut self) {
        // SAFETY: releases the reference this handle owns, from any thread.
        unsafe { enif_release_resource(self.object) }
    }
}

impl Encoder for ChannelHandle {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        // SAFETY: a live resource; the term keeps its own reference.
        unsafe { Term::new(env, enif_make_resource(env.as_c_arg(), self.object)) }
    }
}

/// The resource object a term refers to, if it is a channel.
fn object_of(term: Term<'_>) -> Option<*const c_void> {
    let mut object = ptr::null();
    // SAFETY: reads the term; `object` is written only on success.
    let found = unsafe {
        enif_get_resource(
            term.get_env().as_c_arg(),
            term.as_c_arg(),
            resource_type(),
            &mut object,
        )
    };
    (found != 0).then_some(object)
}

impl<'a> Decoder<'a> for ChannelHandle {
    fn decode(term: Term<'a>) -> NifResult<Self> {
        let object = object_of(term).ok_or(Error::BadArg)?;
        // SAFETY: the term keeps the resource alive while we take our own reference.
        unsafe { enif_keep_resource(object) };
        Ok(ChannelHandle { object })
    }
}

impl<'a> Decoder<'a> for &'a ChannelResource {
    fn decode(term: Term<'a>) -> NifResult<Self> {
        let object = object_of(term).ok_or(Error::BadArg)?;
        // SAFETY: the term, alive for 'a, keeps the resource alive.
        Ok(unsafe { &*data(object) })
    }
}
