//! The channel's FIFO: an unbounded, lock-free, multi-producer multi-consumer queue of blocks
//! of slots, in the manner of crossbeam's `SegQueue`, with these changes for a stream between
//! two cores:
//!
//! - A reader does not look at the producers' tail for every frame. It keeps the last tail it
//!   read beside the head (`tail_seen`, only ever behind the real tail, which only grows), and
//!   once it has caught up with that, it learns whether the next frame is there from that
//!   frame's slot (`written_at`), reading the tail again only once a block. A reader draining
//!   frames that a producer is still adding to would otherwise pull the tail's cache line away
//!   from the producer once per frame (and per look at an empty queue), and the producer's
//!   next claim would have to fetch it back.
//! - A batch claims as many slots of a block as it can with one compare-and-swap
//!   (`push_many`).
//! - A drained block is kept as a spare for the next one, so a steady stream does not
//!   allocate, zero and free a block (freed on the reader's core, allocated on the sender's)
//!   every few dozen frames.
//!
//! Layout: positions count up forever (`index >> SHIFT`); each lap of `LAP` positions is one
//! block of `BLOCK_CAP` slots plus one position that means "the next block is being put in
//! place". The head's lowest bit (`HAS_NEXT`) says the block after the head's is known to
//! exist, so a reader need not look at the tail at all until it reaches it.
//!
//! Blocks come from the allocator the queue is given (the NIF gives the BEAM's, see
//! `channel_resource.rs`), the first one only with the first push: a queue never sent to
//! holds no block.
//!
//! Reclaiming a block: the reader of its last slot starts, and every reader still inside the
//! block when that happens is left to finish (`DESTROY`), so a block is reused or freed only
//! once no thread can touch it. A thread touches a block only after its compare-and-swap on
//! the index claimed a slot of it, and indexes never repeat, so a stale block pointer is
//! never followed; the one exception, a reader peeking at the head's slot before it claims
//! it, is counted (`peekers`), and no block is freed while one peeks (`free_unseen`).

use crossbeam_utils::{Backoff, CachePadded};
use std::alloc::{handle_alloc_error, GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{fence, AtomicPtr, AtomicU8, AtomicUsize, Ordering};

const LAP: usize = 64;
const BLOCK_CAP: usize = LAP - 1;
const SHIFT: usize = 1;
const HAS_NEXT: usize = 1;

/// `Slot::reader` bits.
const READ: u8 = 1;
const DESTROY: u8 = 2;

/// A cache line per slot: the reader marking slot `i` read and the producer writing slot
/// `i + 1` would otherwise pass one line back and forth for every frame.
#[repr(align(64))]
struct Slot<T> {
    value: UnsafeCell<MaybeUninit<T>>,
    /// Set (1) by the producer once `value` is written; a plain store, since only it writes.
    written: AtomicU8,
    /// `READ` once the reader is done with the slot; `DESTROY` if the block's reclaimer found
    /// it still in use and left the rest of the reclaiming to that reader.
    reader: AtomicU8,
}

impl<T> Slot<T> {
    fn wait_written(&self) {
        let backoff = Backoff::new();
        while self.written.load(Ordering::Acquire) == 0 {
            backoff.snooze();
        }
    }
}

struct Block<T> {
    next: AtomicPtr<Block<T>>,
    slots: [Slot<T>; BLOCK_CAP],
}

/// What a reader peeking at the head's slot saw (`Queue::written_at`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Peek {
    Written,
    /// Not written yet, or no block yet.
    NotWritten,
    /// The head is no longer where the reader looked.
    Moved,
}

/// Where a queue's blocks come from and go back to.
pub type BlockAllocator = &'static (dyn GlobalAlloc + Sync);

impl<T> Block<T> {
    const LAYOUT: Layout = Layout::new::<Block<T>>();

    fn new(allocator: BlockAllocator) -> *mut Block<T> {
        // SAFETY: the layout is not zero-sized; every field is valid when zeroed: null
        // pointer, zero flags, uninit values.
        let block = unsafe { allocator.alloc_zeroed(Self::LAYOUT) };
        if block.is_null() {
            handle_alloc_error(Self::LAYOUT);
        }
        block.cast()
    }

    /// # Safety
    /// `this` came from `Block::new(allocator)` and no thread uses it any more.
    unsafe fn free(this: *mut Block<T>, allocator: BlockAllocator) {
        unsafe { allocator.dealloc(this.cast(), Self::LAYOUT) }
    }

    /// Makes a reclaimed block as good as new. Its values were all moved out.
    ///
    /// # Safety
    /// No other thread may be using the block, except to peek at its `written` flags (see
    /// `Queue::written_at`): hence atomic stores.
    unsafe fn reset(this: *mut Block<T>) {
        let block = unsafe { &*this };
        block.next.store(ptr::null_mut(), Ordering::Relaxed);
        for slot in &block.slots {
            slot.written.store(0, Ordering::Relaxed);
            slot.reader.store(0, Ordering::Relaxed);
        }
    }

    fn wait_next(&self) -> *mut Block<T> {
        let backoff = Backoff::new();
        loop {
            let next = self.next.load(Ordering::Acquire);
            if !next.is_null() {
                return next;
            }
            backoff.snooze();
        }
    }
}

struct Head<T, R> {
    index: AtomicUsize,
    block: AtomicPtr<Block<T>>,
    /// A tail index read earlier: the real tail is at or past it.
    tail_seen: AtomicUsize,
    /// Readers looking at the head's slot before claiming it (`written_at`): while any is, no
    /// block is given back to the allocator.
    peekers: AtomicUsize,
    /// One reclaimed block, ready to be the next one.
    spare: AtomicPtr<Block<T>>,
    /// Reclaimed blocks that could not be freed because a reader was peeking (rare), linked
    /// through their `next`: freed by the next reclaim that finds no reader peeking, or with
    /// the queue.
    retired: AtomicPtr<Block<T>>,
    allocator: BlockAllocator,
    /// The user's readers' fields, on the readers' cache line.
    companion: R,
}

struct Tail<T, S> {
    index: AtomicUsize,
    block: AtomicPtr<Block<T>>,
    /// The user's senders' fields, on the senders' cache line.
    companion: S,
}

/// Two padded cache lines, one written by readers, one by senders. `R` and `S` are fields
/// of the queue's user that readers and senders write: they share those lines, and so do
/// the block recycling's fields (a sender touches them once per block), so a channel holds
/// two padded lines where it held five (an idle channel is 384 bytes smaller).
pub struct Queue<T, R = (), S = ()> {
    head: CachePadded<Head<T, R>>,
    tail: CachePadded<Tail<T, S>>,
}

// SAFETY: values move between threads through the queue, as through a channel.
unsafe impl<T: Send, R: Send, S: Send> Send for Queue<T, R, S> {}
unsafe impl<T: Send, R: Sync, S: Sync> Sync for Queue<T, R, S> {}

/// Slots before position `position` (one position per lap is not a slot).
fn slots_before(position: usize) -> usize {
    position - position / LAP
}

impl<T, R: Default, S: Default> Queue<T, R, S> {
    /// An empty queue: it holds no block until the first push.
    pub fn new(allocator: BlockAllocator) -> Self {
        Queue {
            head: CachePadded::new(Head {
                index: AtomicUsize::new(0),
                block: AtomicPtr::new(ptr::null_mut()),
                tail_seen: AtomicUsize::new(0),
                peekers: AtomicUsize::new(0),
                spare: AtomicPtr::new(ptr::null_mut()),
                retired: AtomicPtr::new(ptr::null_mut()),
                allocator,
                companion: R::default(),
            }),
            tail: CachePadded::new(Tail {
                index: AtomicUsize::new(0),
                block: AtomicPtr::new(ptr::null_mut()),
                companion: S::default(),
            }),
        }
    }
}

impl<T, R, S> Queue<T, R, S> {
    /// The readers' fields of the user (see [`Queue`]).
    pub fn reader_line(&self) -> &R {
        &self.head.companion
    }

    /// The senders' fields of the user (see [`Queue`]).
    pub fn sender_line(&self) -> &S {
        &self.tail.companion
    }

    fn take_spare_or_new(&self) -> *mut Block<T> {
        let spare = self.head.spare.swap(ptr::null_mut(), Ordering::Acquire);
        if spare.is_null() {
            Block::new(self.head.allocator)
        } else {
            spare
        }
    }

    /// Keeps `block` (unused by any thread but peeking readers) as the spare, or frees it if
    /// there is one.
    fn recycle(&self, block: *mut Block<T>) {
        // SAFETY: the caller owns `block`; peekers only read its flags.
        unsafe { Block::reset(block) };
        if self
            .head
            .spare
            .compare_exchange(ptr::null_mut(), block, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            self.free_unseen(block);
        }
    }

    /// Keeps `block`, which was never part of the queue, as the spare, or frees it.
    fn recycle_unpublished(&self, block: *mut Block<T>) {
        if self
            .head
            .spare
            .compare_exchange(ptr::null_mut(), block, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            // SAFETY: allocated by `Block::new`, and no other thread ever saw it.
            unsafe { Block::free(block, self.head.allocator) };
        }
    }

    /// Frees `block`, which no longer is the head's, once no reader can be peeking at it.
    /// Never waits: while a reader peeks, the block waits among the retired ones.
    fn free_unseen(&self, block: *mut Block<T>) {
        // Pairs with the fence in `written_at`: either that reader's count is seen here, or
        // it loads the head's block after the head moved off this one.
        fence(Ordering::SeqCst);
        if self.head.peekers.load(Ordering::SeqCst) != 0 {
            self.retire(block, block);
            return;
        }
        // Every retired block left the queue before it was retired, so with no reader
        // peeking now, none can be looking at one of them either.
        let mut next = self.head.retired.swap(ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: allocated by `Block::new`, unreachable from the queue, and no reader is
        // peeking: one that starts now finds the head in another block. The retired blocks
        // were taken off the list by the swap, so they are this thread's alone.
        unsafe {
            Block::free(block, self.head.allocator);
            while !next.is_null() {
                let block = next;
                next = (*block).next.load(Ordering::Relaxed);
                Block::free(block, self.head.allocator);
            }
        }
    }

    /// Puts the chain `first`..=`last` (linked through `next`) on the retired list.
    fn retire(&self, first: *mut Block<T>, last: *mut Block<T>) {
        let mut head = self.head.retired.load(Ordering::Relaxed);
        loop {
            // SAFETY: the chain is the caller's alone until the exchange publishes it.
            unsafe { (*last).next.store(head, Ordering::Relaxed) };
            match self.head.retired.compare_exchange_weak(
                head,
                first,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(current) => head = current,
            }
        }
    }

    /// Whether the slot at head position `head` is written: a frame is there to take. Read
    /// from the slot itself, so a reader that keeps up with its producer learns of the next
    /// frame from the one cache line the producer writes for it, and never takes the line of
    /// the producers' tail away from them.
    fn written_at(&self, head: usize) -> Peek {
        let offset = (head >> SHIFT) % LAP;
        if offset == BLOCK_CAP {
            return Peek::Moved;
        }
        self.head.peekers.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let block = self.head.block.load(Ordering::SeqCst);
        // Still the head after the block was loaded: the block is the head's (positions
        // never repeat), and it is not freed while this reader is counted.
        let peek = if self.head.index.load(Ordering::SeqCst) != head {
            Peek::Moved
        } else if block.is_null() {
            Peek::NotWritten
        // SAFETY: see above; the flag is atomic, whatever else happens to the block.
        } else if unsafe { (*block).slots.get_unchecked(offset) }
            .written
            .load(Ordering::Acquire)
            != 0
        {
            Peek::Written
        } else {
            Peek::NotWritten
        };
        self.head.peekers.fetch_sub(1, Ordering::Release);
        peek
    }

    /// Whether a frame is ready at the head (see `written_at`): `false` may also mean that
    /// another reader is taking it right now.
    pub fn front_is_written(&self) -> bool {
        self.written_at(self.head.index.load(Ordering::Acquire)) == Peek::Written
    }

    /// Asks the CPU to bring the line of the slot the next push writes into this core's
    /// cache, for writing. A sender calls it before it makes its frame: that line was last
    /// held by a reader, and a push that finds it elsewhere makes the send's closing atomic
    /// step wait for it (every locked instruction waits for the stores before it). A hint: a
    /// stale index or block only wastes it, and a prefetch never faults.
    pub fn prefetch_next_slot(&self) {
        let tail = self.tail.index.load(Ordering::Relaxed);
        let block = self.tail.block.load(Ordering::Relaxed);
        let offset = (tail >> SHIFT) % LAP;
        if block.is_null() || offset >= BLOCK_CAP {
            return;
        }
        let slot = block
            .cast::<u8>()
            .wrapping_add(std::mem::offset_of!(Block<T>, slots) + offset * size_of::<Slot<T>>());
        prefetch_for_write(slot);
    }

    pub fn push(&self, value: T) {
        self.push_each(std::iter::once(value));
    }

    /// Pushes every value of `values`, in order, claiming as many slots of a block as it can
    /// with one compare-and-swap on the tail: a batch costs one claim per block, not one per
    /// value. Values of other producers may come between two blocks' worth, never inside one.
    pub fn push_many(&self, values: std::vec::Drain<'_, T>) {
        self.push_each(values);
    }

    /// `values` must not panic: a slot claimed and never written would hold up its readers.
    fn push_each(&self, mut values: impl ExactSizeIterator<Item = T>) {
        let backoff = Backoff::new();
        let mut tail = self.tail.index.load(Ordering::Acquire);
        let mut block = self.tail.block.load(Ordering::Acquire);
        let mut next_block: *mut Block<T> = ptr::null_mut();
        while values.len() > 0 {
            let offset = (tail >> SHIFT) % LAP;
            if offset == BLOCK_CAP {
                // Another producer is putting the next block in place.
                backoff.snooze();
                tail = self.tail.index.load(Ordering::Acquire);
                block = self.tail.block.load(Ordering::Acquire);
                continue;
            }
            let claim = values.len().min(BLOCK_CAP - offset);
            let fills_block = offset + claim == BLOCK_CAP;
            // Claiming the last slot means installing the next block: have it ready first, so
            // producers waiting on the install wait as little as possible.
            if fills_block && next_block.is_null() {
                next_block = self.take_spare_or_new();
            }
            // A queue gets its first block from its first push: a channel that is made and
            // dropped without a frame costs no block.
            if block.is_null() {
                let first = Block::new(self.head.allocator);
                if self
                    .tail
                    .block
                    .compare_exchange(block, first, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
                {
                    self.head.block.store(first, Ordering::Release);
                    block = first;
                } else {
                    self.recycle_unpublished(first);
                    tail = self.tail.index.load(Ordering::Acquire);
                    block = self.tail.block.load(Ordering::Acquire);
                    continue;
                }
            }
            let new_tail = tail + (claim << SHIFT);
            match self.tail.index.compare_exchange_weak(
                tail,
                new_tail,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // SAFETY: the claimed slots' block is alive: it is reclaimed only after
                    // these slots are read, which waits for `written`.
                    unsafe {
                        if fills_block {
                            self.tail.block.store(next_block, Ordering::Release);
                            tail = new_tail.wrapping_add(1 << SHIFT);
                            self.tail.index.store(tail, Ordering::Release);
                            (*block).next.store(next_block, Ordering::Release);
                            next_block = ptr::null_mut();
                        }
                        for index in offset..offset + claim {
                            let slot = (*block).slots.get_unchecked(index);
                            let value = values.next().expect("an exact size iterator");
                            slot.value.get().write(MaybeUninit::new(value));
                            slot.written.store(1, Ordering::Release);
                        }
                    }
                    if values.len() > 0 {
                        tail = self.tail.index.load(Ordering::Acquire);
                        block = self.tail.block.load(Ordering::Acquire);
                    }
                }
                Err(current) => {
                    tail = current;
                    block = self.tail.block.load(Ordering::Acquire);
                    backoff.spin();
                }
            }
        }
        if !next_block.is_null() {
            self.recycle_unpublished(next_block);
        }
    }

    pub fn pop(&self) -> Option<T> {
        let backoff = Backoff::new();
        let mut head = self.head.index.load(Ordering::Acquire);
        let mut block = self.head.block.load(Ordering::Acquire);
        loop {
            let offset = (head >> SHIFT) % LAP;
            if offset == BLOCK_CAP {
                // Another reader is moving the head to the next block.
                backoff.snooze();
                head = self.head.index.load(Ordering::Acquire);
                block = self.head.block.load(Ordering::Acquire);
                continue;
            }
            let mut new_head = head + (1 << SHIFT);
            if new_head & HAS_NEXT == 0 {
                let tail = self.head.tail_seen.load(Ordering::Relaxed);
                if head >> SHIFT >= tail >> SHIFT {
                    // Caught up with the tail as last seen: the slot says whether a frame
                    // is there. Not yet written is `None` without a look at the tail: the
                    // queue is empty, or the oldest send is still in flight (whose landing
                    // wakes a parked reader; readers check the indexes before they park).
                    match self.written_at(head) {
                        Peek::Written => {}
                        Peek::NotWritten => return None,
                        Peek::Moved => {
                            backoff.spin();
                            head = self.head.index.load(Ordering::Acquire);
                            block = self.head.block.load(Ordering::Acquire);
                            continue;
                        }
                    }
                    // Once a block, see how far the producers are: a reader that fell
                    // behind then takes the frames up to there without looking at slots.
                    if offset == 0 {
                        let tail = self.tail.index.load(Ordering::Acquire);
                        self.head.tail_seen.store(tail, Ordering::Relaxed);
                        if (head >> SHIFT) / LAP != (tail >> SHIFT) / LAP {
                            new_head |= HAS_NEXT;
                        }
                    }
                } else if (head >> SHIFT) / LAP != (tail >> SHIFT) / LAP {
                    new_head |= HAS_NEXT;
                }
            }
            if block.is_null() {
                // The first push is putting the first block in place.
                backoff.snooze();
                head = self.head.index.load(Ordering::Acquire);
                block = self.head.block.load(Ordering::Acquire);
                continue;
            }
            match self.head.index.compare_exchange_weak(
                head,
                new_head,
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                // SAFETY: the claimed slot's block is alive until this reader marks it read.
                Ok(_) => unsafe {
                    if offset + 1 == BLOCK_CAP {
                        let next = (*block).wait_next();
                        let mut next_index = (new_head & !HAS_NEXT).wrapping_add(1 << SHIFT);
                        if !(*next).next.load(Ordering::Relaxed).is_null() {
                            next_index |= HAS_NEXT;
                        }
                        self.head.block.store(next, Ordering::Release);
                        self.head.index.store(next_index, Ordering::Release);
                    }
                    let slot = (*block).slots.get_unchecked(offset);
                    slot.wait_written();
                    let value = slot.value.get().read().assume_init();
                    if offset + 1 == BLOCK_CAP {
                        self.reclaim(block, 0);
                    } else if slot.reader.fetch_or(READ, Ordering::AcqRel) & DESTROY != 0 {
                        self.reclaim(block, offset + 1);
                    }
                    return Some(value);
                },
                Err(current) => {
                    head = current;
                    block = self.head.block.load(Ordering::Acquire);
                    backoff.spin();
                }
            }
        }
    }

    /// Reclaims `block` once slots `start..` are read, or leaves it to the first reader
    /// still inside.
    ///
    /// # Safety
    /// Every slot of the block is claimed and slots before `start` are read.
    unsafe fn reclaim(&self, block: *mut Block<T>, start: usize) {
        // The last slot's reader started the reclaiming, so it is not marked.
        for index in start..BLOCK_CAP - 1 {
            let slot = unsafe { (*block).slots.get_unchecked(index) };
            if slot.reader.load(Ordering::Acquire) & READ == 0
                && slot.reader.fetch_or(DESTROY, Ordering::AcqRel) & READ == 0
            {
                return; // that slot's reader carries on from there
            }
        }
        self.recycle(block);
    }

    pub fn is_empty(&self) -> bool {
        let head = self.head.index.load(Ordering::SeqCst);
        let tail = self.tail.index.load(Ordering::SeqCst);
        slots_before(head >> SHIFT) >= slots_before(tail >> SHIFT)
    }

    /// Frames ever pushed (a push in progress included).
    pub fn pushed(&self) -> u64 {
        slots_before(self.tail.index.load(Ordering::Acquire) >> SHIFT) as u64
    }

    /// Frames ever popped (a pop in progress included).
    pub fn popped(&self) -> u64 {
        slots_before(self.head.index.load(Ordering::Acquire) >> SHIFT) as u64
    }

    /// Frames queued: exact when nobody is pushing or popping.
    pub fn len(&self) -> usize {
        loop {
            let tail = self.tail.index.load(Ordering::SeqCst);
            let head = self.head.index.load(Ordering::SeqCst);
            if self.tail.index.load(Ordering::SeqCst) == tail {
                return slots_before(tail >> SHIFT).saturating_sub(slots_before(head >> SHIFT));
            }
        }
    }
}

impl<T, R, S> Drop for Queue<T, R, S> {
    fn drop(&mut self) {
        let mut head = *self.head.index.get_mut() & !HAS_NEXT;
        let tail = *self.tail.index.get_mut();
        let mut block = *self.head.block.get_mut();
        // SAFETY: nobody else holds the queue; slots from head to tail hold values.
        unsafe {
            while head >> SHIFT != tail >> SHIFT {
                let offset = (head >> SHIFT) % LAP;
                if offset < BLOCK_CAP {
                    let slot = (*block).slots.get_unchecked(offset);
                    (*slot.value.get()).assume_init_drop();
                } else {
                    let next = *(*block).next.get_mut();
                    Block::free(block, self.head.allocator);
                    block = next;
                }
                head = head.wrapping_add(1 << SHIFT);
            }
            if !block.is_null() {
                Block::free(block, self.head.allocator);
            }
            let spare = *self.head.spare.get_mut();
            if !spare.is_null() {
                Block::free(spare, self.head.allocator);
            }
            let mut retired = *self.head.retired.get_mut();
            while !retired.is_null() {
                let block = retired;
                retired = *(*block).next.get_mut();
                Block::free(block, self.head.allocator);
            }
        }
    }
}

/// `prefetchw` (a no-op on a CPU without it) or its equivalent: only a hint, never a fault,
/// whatever the address.
#[inline(always)]
pub fn prefetch_for_write(address: *const u8) {
    // SAFETY: a prefetch reads and writes nothing and cannot fault.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::asm!("prefetchw [{0}]", in(reg) address, options(nostack, preserves_flags, readonly));
    }
    // SAFETY: as above.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        std::arch::asm!("prfm pstl1keep, [{0}]", in(reg) address, options(nostack, preserves_flags, readonly));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = address;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// Counts its drops, to prove every value is dropped exactly once.
    struct Counted(Arc<AtomicUsize>, u64);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Counts the blocks it hands out and gets back.
    #[derive(Default)]
    struct Counting {
        allocated: AtomicUsize,
        live: AtomicUsize,
    }

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            self.allocated.fetch_add(1, Ordering::SeqCst);
            self.live.fetch_add(1, Ordering::SeqCst);
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            self.live.fetch_sub(1, Ordering::SeqCst);
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    fn counting() -> &'static Counting {
        Box::leak(Box::default())
    }

    #[test]
    fn no_block_until_the_first_push_and_every_block_goes_back() {
        let blocks = counting();
        let queue = Queue::<u64>::new(blocks);
        assert_eq!(queue.pop(), None);
        assert!(queue.is_empty());
        assert_eq!(blocks.allocated.load(Ordering::SeqCst), 0);
        drop(queue);
        assert_eq!(blocks.allocated.load(Ordering::SeqCst), 0);

        let queue = Queue::<_>::new(blocks);
        queue.push(1u64);
        assert_eq!(blocks.live.load(Ordering::SeqCst), 1);
        assert_eq!(queue.pop(), Some(1));
        for value in 0..10_000u64 {
            queue.push(value);
            assert_eq!(queue.pop(), Some(value));
        }
        // The current block and its spare, however long the stream.
        assert_eq!(blocks.live.load(Ordering::SeqCst), 2);
        for value in 0..1000u64 {
            queue.push(value);
        }
        drop(queue);
        assert_eq!(blocks.live.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn racing_first_pushes_install_one_block_and_lose_nothing() {
        const PRODUCERS: u64 = 4;
        const EACH: u64 = 100;
        for _ in 0..200 {
            let blocks = counting();
            let queue = Arc::new(Queue::<_>::new(blocks));
            let start = Arc::new(std::sync::Barrier::new(PRODUCERS as usize + 1));
            let producers: Vec<_> = (0..PRODUCERS)
                .map(|producer| {
                    let (queue, start) = (queue.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        for seq in 0..EACH {
                            queue.push(producer << 32 | seq);
                        }
                    })
                })
                .collect();
            // The reader starts with the producers, so it can meet the queue while its first
            // block is being put in place.
            start.wait();
            let mut seen = Vec::new();
            while seen.len() < (PRODUCERS * EACH) as usize {
                if let Some(value) = queue.pop() {
                    seen.push(value);
                }
            }
            for producer in producers {
                producer.join().unwrap();
            }
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len() as u64, PRODUCERS * EACH);
            assert_eq!(queue.pop(), None);
            drop(queue);
            assert_eq!(blocks.live.load(Ordering::SeqCst), 0);
        }
    }

    #[test]
    fn readers_peeking_while_blocks_are_reclaimed_lose_nothing_and_leak_no_block() {
        const READERS: usize = 4;
        const VALUES: u64 = 200_000;
        let blocks = counting();
        let queue = Arc::new(Queue::<_>::new(blocks));
        let taken = Arc::new(AtomicUsize::new(0));
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                let (queue, taken) = (queue.clone(), taken.clone());
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    while taken.load(Ordering::SeqCst) < VALUES as usize {
                        // Peeks as a spinning reader does, between takes of its own and of
                        // the others (which reclaim blocks meanwhile).
                        let _ = queue.front_is_written();
                        if let Some(value) = queue.pop() {
                            taken.fetch_add(1, Ordering::SeqCst);
                            seen.push(value);
                        }
                    }
                    seen
                })
            })
            .collect();
        for value in 0..VALUES {
            queue.push(value);
        }
        let mut all: Vec<u64> = readers
            .into_iter()
            .flat_map(|reader| reader.join().unwrap())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len() as u64, VALUES);
        assert!(!queue.front_is_written());
        drop(Arc::into_inner(queue).expect("the readers are gone"));
        assert_eq!(blocks.live.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn fifo_len_and_empty_across_blocks() {
        let queue = Queue::<_>::new(&System);
        assert!(queue.is_empty());
        assert_eq!(queue.pop(), None);
        for round in 0..3 {
            for value in 0..1000u64 {
                queue.push(value);
                assert_eq!(queue.len(), value as usize + 1);
            }
            for value in 0..1000u64 {
                assert_eq!(queue.pop(), Some(value), "round {round}");
            }
            assert!(queue.is_empty());
            assert_eq!(queue.len(), 0);
            assert_eq!(queue.pop(), None);
        }
    }

    #[test]
    fn batches_start_and_end_anywhere_in_a_block_and_keep_their_order() {
        let blocks = counting();
        let queue = Queue::<_>::new(blocks);
        let mut next = 0u64;
        let mut expected = 0u64;
        for size in [1, 62, 63, 64, 1, 200, 0, 126, 5] {
            let mut batch: Vec<u64> = (next..next + size).collect();
            next += size;
            queue.push_many(batch.drain(..));
            assert_eq!(queue.len() as u64, next - expected);
            // Read half of it back, so the head is anywhere too.
            for _ in 0..(next - expected) / 2 {
                assert_eq!(queue.pop(), Some(expected));
                expected += 1;
            }
        }
        while let Some(value) = queue.pop() {
            assert_eq!(value, expected);
            expected += 1;
        }
        assert_eq!(expected, next);
        drop(queue);
        assert_eq!(blocks.live.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn interleaved_push_pop_reuses_the_spare_block() {
        let queue = Queue::<_>::new(&System);
        for value in 0..10_000u64 {
            queue.push(value);
            queue.push(value + 1_000_000);
            assert_eq!(queue.pop(), Some(value));
            assert_eq!(queue.pop(), Some(value + 1_000_000));
        }
        assert!(!queue.head.spare.load(Ordering::SeqCst).is_null());
    }

    #[test]
    fn dropping_the_queue_drops_what_is_left_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        {
            let queue = Queue::<_>::new(&System);
            for value in 0..500 {
                queue.push(Counted(drops.clone(), value));
            }
            for _ in 0..130 {
                drop(queue.pop());
            }
            assert_eq!(drops.load(Ordering::SeqCst), 130);
        }
        assert_eq!(drops.load(Ordering::SeqCst), 500);
    }

    #[test]
    fn many_producers_many_readers_each_value_once_in_order_per_producer() {
        const PRODUCERS: u64 = 4;
        const READERS: usize = 4;
        const EACH: u64 = 100_000;
        let queue = Arc::new(Queue::<_>::new(&System));
        let drops = Arc::new(AtomicUsize::new(0));
        let taken = Arc::new(AtomicUsize::new(0));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|producer| {
                let queue = queue.clone();
                let drops = drops.clone();
                std::thread::spawn(move || {
                    for seq in 0..EACH {
                        queue.push(Counted(drops.clone(), producer << 32 | seq));
                    }
                })
            })
            .collect();
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                let queue = queue.clone();
                let taken = taken.clone();
                std::thread::spawn(move || {
                    let mut last = vec![None::<u64>; PRODUCERS as usize];
                    let mut seen = Vec::new();
                    while taken.load(Ordering::SeqCst) < (PRODUCERS * EACH) as usize {
                        match queue.pop() {
                            Some(Counted(_, value)) => {
                                taken.fetch_add(1, Ordering::SeqCst);
                                let (producer, seq) = (value >> 32, value & 0xffff_ffff);
                                let previous = &mut last[producer as usize];
                                assert!(previous.is_none_or(|p| p < seq), "out of order");
                                *previous = Some(seq);
                                seen.push(value);
                            }
                            None => std::thread::yield_now(),
                        }
                    }
                    seen
                })
            })
            .collect();
        for producer in producers {
            producer.join().unwrap();
        }
        let mut all: Vec<u64> = readers
            .into_iter()
            .flat_map(|reader| reader.join().unwrap())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len() as u64, PRODUCERS * EACH);
        assert!(queue.is_empty());
        assert_eq!(drops.load(Ordering::SeqCst), (PRODUCERS * EACH) as usize);
    }
}
