use super::*;
#[cfg(target_os = "linux")]
use crate::worker_pool::tests::{bind_to, cores_of, eventually, two_cores_or_skip};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

/// A frame of a chosen weight carrying a value to check order and uniqueness.
#[derive(Debug, PartialEq, Eq)]
struct Item {
    value: u64,
    bytes: usize,
}

impl Weighed for Item {
    fn weight(&self) -> usize {
        self.bytes
    }
}

fn item(value: u64, bytes: usize) -> Item {
    Item { value, bytes }
}

/// A task waker as the NIF uses them: firing it sends the task a message.
type Wake = mpsc::Sender<()>;
type TestChannel = Channel<Item, Wake>;

fn no_pass_on(_: Wake) {
    panic!("no task reader exists in this test");
}

#[test]
fn frames_come_out_in_send_order() {
    let channel = TestChannel::new(0);
    for value in 0..1000 {
        channel.send(item(value, 8)).unwrap();
    }
    for value in 0..1000 {
        assert_eq!(channel.try_recv(no_pass_on).unwrap().value, value);
    }
    assert_eq!(channel.try_recv(no_pass_on), Err(TryRecvError::Empty));
}

#[test]
fn prepare_send_changes_nothing() {
    // Before the first block, inside one, at its last slot and past it, after reads.
    let channel = TestChannel::new(0);
    channel.prepare_send();
    for value in 0..200 {
        channel.prepare_send();
        channel.send(item(value, 8)).unwrap();
        if value % 3 == 0 {
            channel.prepare_send();
        }
    }
    assert_eq!((channel.len(), channel.size()), (200, 1600));
    for value in 0..200 {
        channel.prepare_send();
        assert_eq!(channel.try_recv(no_pass_on).unwrap().value, value);
    }
    channel.prepare_send();
    assert!(channel.is_empty());
}

#[test]
fn size_counts_the_bytes_queued() {
    let channel = TestChannel::new(0);
    channel.send(item(1, 10)).unwrap();
    channel.send(item(2, 32)).unwrap();
    assert_eq!(channel.size(), 42);
    assert_eq!(channel.len(), 2);
    channel.try_recv(no_pass_on).unwrap();
    assert_eq!(channel.size(), 32);
    channel.try_recv(no_pass_on).unwrap();
    assert_eq!(channel.size(), 0);
    assert!(channel.is_empty());
}

#[test]
fn a_weightless_frame_still_counts_one_byte() {
    let channel = TestChannel::new(0);
    channel.send(item(1, 0)).unwrap();
    assert_eq!(channel.size(), 1);
    channel.close();
    // Not "closed" while the frame is queued.
    assert_eq!(channel.try_recv(no_pass_on).unwrap().value, 1);
    assert_eq!(channel.try_recv(no_pass_on), Err(TryRecvError::Closed));
}

#[test]
fn busy_when_the_frame_would_overflow_max_size() {
    let channel = TestChannel::new(100);
    channel.send(item(1, 60)).unwrap();
    channel.send(item(2, 40)).unwrap(); // exactly full is allowed
    assert!(matches!(
        channel.send(item(3, 1)),
        Err(TrySendError::Busy(_))
    ));
    assert_eq!(channel.size(), 100);
    channel.try_recv(no_pass_on).unwrap();
    assert!(channel.send(item(3, 60)).is_ok());
    assert_eq!(channel.size(), 100);
}

#[test]
fn too_large_when_the_frame_alone_exceeds_max_size() {
    let channel = TestChannel::new(100);
    assert!(matches!(
        channel.send(item(1, 101)),
        Err(TrySendError::TooLarge(_))
    ));
    // Even on an empty channel, and without disturbing the accounting.
    assert_eq!(channel.size(), 0);
    assert!(channel.send(item(2, 100)).is_ok());
}

#[test]
fn totals_count_frames_and_bytes_sent_received_and_refused() {
    let channel = TestChannel::new(1000);
    assert_eq!(channel.totals(), Totals::default());
    // Across several of the queue's blocks.
    for value in 0..200 {
        channel.send(item(value, 5)).unwrap();
    }
    assert!(matches!(
        channel.send(item(200, 1)),
        Err(TrySendError::Busy(_))
    ));
    assert!(matches!(
        channel.send(item(201, 7)),
        Err(TrySendError::Busy(_))
    ));
    // Refused for other reasons: not `busy`, and not sent.
    assert!(matches!(
        channel.send(item(202, 1001)),
        Err(TrySendError::TooLarge(_))
    ));
    for _ in 0..150 {
        channel.try_recv(no_pass_on).unwrap();
    }
    let expected = Totals {
        sent: 200,
        received: 150,
        busy: 2,
        sent_bytes: 1000,
        received_bytes: 750,
    };
    assert_eq!(channel.totals(), expected);
    channel.close();
    assert!(matches!(
        channel.send(item(203, 1)),
        Err(TrySendError::Closed(_))
    ));
    assert_eq!(channel.totals(), expected);
}

#[test]
fn totals_taken_while_streaming_never_show_more_received_than_sent() {
    const PER_SENDER: u64 = 50_000;
    let channel = Arc::new(TestChannel::new(4096));
    let senders: Vec<_> = (0..3)
        .map(|_| {
            let channel = Arc::clone(&channel);
            thread::spawn(move || {
                for value in 0..PER_SENDER {
                    while channel.send(item(value, 8)).is_err() {
                        thread::yield_now();
                    }
                }
            })
        })
        .collect();
    let reader = {
        let channel = Arc::clone(&channel);
        thread::spawn(
            move || {
                while channel.recv_timeout(None, no_pass_on).is_ok() {}
            },
        )
    };
    while senders.iter().any(|sender| !sender.is_finished()) {
        let totals = channel.totals();
        assert!(totals.received <= totals.sent, "{totals:?}");
        assert!(totals.received_bytes <= totals.sent_bytes, "{totals:?}");
    }
    senders
        .into_iter()
        .for_each(|sender| sender.join().unwrap());
    channel.close();
    reader.join().unwrap();
    let totals = channel.totals();
    assert_eq!(
        (totals.sent, totals.received),
        (3 * PER_SENDER, 3 * PER_SENDER)
    );
    assert_eq!(totals.sent_bytes, 8 * 3 * PER_SENDER);
    assert_eq!(totals.received_bytes, totals.sent_bytes);
}

#[test]
fn refused_frames_come_back_to_the_sender() {
    let channel = TestChannel::new(10);
    channel.close();
    let refused = channel.send(item(7, 1)).unwrap_err();
    assert_eq!(refused.reason(), "closed");
    assert_eq!(refused.into_inner(), item(7, 1));
}

#[test]
fn unlimited_when_max_size_is_zero() {
    let channel = TestChannel::new(0);
    channel.send(item(1, 1 << 40)).unwrap();
    channel.send(item(2, 1 << 40)).unwrap();
    assert_eq!(channel.size(), 2 << 40);
    // Up to the 128 TiB the byte count holds, and no further.
    let left = (MAX_BYTES - channel.size()) as usize;
    assert!(matches!(
        channel.send(item(3, left + 1)),
        Err(TrySendError::Busy(_))
    ));
    channel.send(item(3, left)).unwrap();
    assert_eq!(channel.size(), MAX_BYTES);
}

#[test]
fn the_end_is_seen_while_another_reader_still_holds_the_last_frame() {
    // A reader that popped the last frame after close but has not yet taken its bytes off the
    // count: another reader looking now must see the end, not park for a wake that never
    // comes.
    let channel = TestChannel::new(0);
    channel.send(item(1, 8)).unwrap();
    channel.close();
    let _mid_receive = channel.queue.pop().expect("the frame");
    assert_eq!(channel.size(), 8);
    assert_eq!(channel.try_recv(no_pass_on), Err(TryRecvError::Closed));
    let (wake, _woken) = mpsc::channel();
    assert!(matches!(channel.park_task(wake), Parked::Ready(_)));
}

#[test]
fn readers_parked_during_a_send_in_flight_at_close_all_wake_when_it_lands() {
    let channel = TestChannel::new(0);
    // A send that passed its check before the close, frame not yet in the queue.
    channel
        .queue
        .sender_line()
        .word
        .fetch_add(8 + IN_FLIGHT_ONE, Ordering::SeqCst);
    channel.close();
    assert_eq!(channel.try_recv(no_pass_on), Err(TryRecvError::Empty));
    let mut woken = Vec::new();
    for _ in 0..3 {
        let (wake, receiver) = mpsc::channel();
        assert!(matches!(channel.park_task(wake), Parked::Waiting(_)));
        woken.push(receiver);
    }
    let wakes = channel.land(item(1, 8));
    assert_eq!(wakes.len(), 3, "every parked reader must look again");
    assert_eq!(channel.try_recv(no_pass_on).unwrap().value, 1);
    assert_eq!(channel.try_recv(no_pass_on), Err(TryRecvError::Closed));
}

#[test]
fn readers_racing_a_close_all_end() {
    // Many readers, few frames, close racing with the last sends: every reader ends.
    for _ in 0..300 {
        let channel = Arc::new(TestChannel::new(0));
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let channel = channel.clone();
                thread::spawn(move || {
                    let mut taken = 0;
                    loop {
                        match channel.recv_timeout(Some(Duration::from_secs(5)), no_pass_on) {
                            Ok(_) => taken += 1,
                            Err(RecvTimeoutError::Closed) => return taken,
                            Err(RecvTimeoutError::Timeout) => {
                                panic!("a reader waited past the end")
                            }
                        }
                    }
                })
            })
            .collect();
        let sender = {
            let channel = channel.clone();
            thread::spawn(move || (0..3).filter(|&n| channel.send(item(n, 1)).is_ok()).count())
        };
        channel.close();
        let accepted = sender.join().unwrap();
        let total: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
        assert_eq!(total, accepted);
    }
}

#[test]
fn close_keeps_queued_frames_for_readers_to_drain() {
    let channel = TestChannel::new(0);
    for value in 0..3 {
        channel.send(item(value, 4)).unwrap();
    }
    channel.close();
    assert!(channel.is_closed());
    assert!(matches!(
        channel.send(item(9, 4)),
        Err(TrySendError::Closed(_))
    ));
    for value in 0..3 {
        assert_eq!(channel.try_recv(no_pass_on).unwrap().value, value);
    }
    assert_eq!(channel.try_recv(no_pass_on), Err(TryRecvError::Closed));
    assert_eq!(
        channel.recv_timeout(None, no_pass_on),
        Err(RecvTimeoutError::Closed)
    );
}

#[test]
fn close_is_idempotent() {
    let channel = TestChannel::new(0);
    channel.close();
    channel.close();
    assert!(channel.is_closed());
    assert_eq!(channel.try_recv(no_pass_on), Err(TryRecvError::Closed));
}

#[test]
fn recv_timeout_gives_timeout_after_the_timeout() {
    let channel = TestChannel::new(0);
    let started = Instant::now();
    assert_eq!(
        channel.recv_timeout(Some(Duration::from_millis(50)), no_pass_on),
        Err(RecvTimeoutError::Timeout)
    );
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(channel.waiting_readers(), 0);
}

/// Waits until `count` readers are parked, so a test knows the wake-up path is exercised.
fn wait_for_parked(channel: &TestChannel, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while channel.waiting_readers() < count {
        assert!(Instant::now() < deadline, "readers never parked");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_send_wakes_a_thread_blocked_in_recv() {
    let channel = Arc::new(TestChannel::new(0));
    let reader = {
        let channel = channel.clone();
        thread::spawn(move || channel.recv_timeout(None, no_pass_on))
    };
    wait_for_parked(&channel, 1);
    assert!(channel.send(item(42, 8)).unwrap().is_empty());
    assert_eq!(reader.join().unwrap().unwrap().value, 42);
}

#[test]
fn close_wakes_every_blocked_thread() {
    let channel = Arc::new(TestChannel::new(0));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let channel = channel.clone();
            thread::spawn(move || channel.recv_timeout(None, no_pass_on))
        })
        .collect();
    wait_for_parked(&channel, 4);
    assert!(channel.close().is_empty());
    for reader in readers {
        assert_eq!(reader.join().unwrap(), Err(RecvTimeoutError::Closed));
    }
}

#[test]
fn a_parked_task_gets_its_waker_back_on_send() {
    let channel = TestChannel::new(0);
    let (wake, woken) = mpsc::channel();
    let Parked::Waiting(_) = channel.park_task(wake) else {
        panic!("nothing queued, the task must wait");
    };
    let handed_back = channel.send(item(1, 8)).unwrap();
    assert_eq!(handed_back.len(), 1, "the task's waker");
    handed_back[0].send(()).unwrap();
    woken.try_recv().unwrap();
    assert_eq!(channel.waiting_readers(), 0);
}

#[test]
fn a_task_is_ready_at_once_when_a_frame_or_the_close_is_there() {
    let channel = TestChannel::new(0);
    channel.send(item(1, 8)).unwrap();
    let (wake, _woken) = mpsc::channel();
    assert!(matches!(channel.park_task(wake), Parked::Ready(_)));
    channel.try_recv(no_pass_on).unwrap();
    channel.close();
    let (wake, _woken) = mpsc::channel();
    assert!(matches!(channel.park_task(wake), Parked::Ready(_)));
}

#[test]
fn close_hands_back_every_parked_task() {
    let channel = TestChannel::new(0);
    for _ in 0..3 {
        let (wake, _woken) = mpsc::channel();
        channel.park_task(wake);
    }
    assert_eq!(channel.close().len(), 3);
    assert_eq!(channel.waiting_readers(), 0);
}

#[test]
fn each_send_wakes_one_reader_in_park_order() {
    let channel = TestChannel::new(0);
    let (first, first_woken) = mpsc::channel();
    let (second, second_woken) = mpsc::channel();
    channel.park_task(first);
    channel.park_task(second);
    channel.send(item(1, 8)).unwrap()[0].send(()).unwrap();
    assert!(first_woken.try_recv().is_ok());
    assert!(second_woken.try_recv().is_err());
    assert_eq!(channel.waiting_readers(), 1);
}

#[test]
fn cancelling_a_woken_task_passes_the_wake_on() {
    let channel = TestChannel::new(0);
    let (first, _) = mpsc::channel();
    let (second, second_woken) = mpsc::channel();
    let Parked::Waiting(first_id) = channel.park_task(first) else {
        panic!()
    };
    channel.park_task(second);
    // The first task is woken for this frame but gives up without taking it.
    let _first_wake = channel.send(item(1, 8)).unwrap();
    let Cancelled::AlreadyWoken(Some(pass_on)) = channel.cancel_task(first_id) else {
        panic!("the frame is still queued: the second task must be woken");
    };
    pass_on.send(()).unwrap();
    assert!(second_woken.try_recv().is_ok());
}

#[test]
fn a_wake_that_cannot_be_delivered_goes_to_the_next_reader() {
    let channel = TestChannel::new(0);
    let (gone, gone_woken) = mpsc::channel();
    drop(gone_woken); // the first reader is gone: its waker cannot be fired
    let (live, live_woken) = mpsc::channel();
    channel.park_task(gone);
    channel.park_task(live);
    let wakes = channel.send(item(1, 8)).unwrap();
    assert!(wakes[0].send(()).is_err());
    let next = channel.pass_on_wake().expect("the frame is still queued");
    next.send(()).unwrap();
    assert!(live_woken.try_recv().is_ok());
    channel.try_recv(no_pass_on).unwrap();
    assert!(
        channel.pass_on_wake().is_none(),
        "nothing queued, no one to wake"
    );
}

#[test]
fn a_timeout_too_long_for_the_clock_waits_like_none() {
    let channel = Arc::new(TestChannel::new(0));
    let reader = {
        let channel = channel.clone();
        thread::spawn(move || channel.recv_timeout(Some(Duration::MAX), no_pass_on))
    };
    wait_for_parked(&channel, 1);
    channel.send(item(7, 8)).unwrap();
    assert_eq!(reader.join().unwrap().unwrap().value, 7);
}

/// Whether the senders' word says a reader is parked: what a send looks at to decide to wake.
fn parked_flag(channel: &TestChannel) -> bool {
    channel.queue.sender_line().word.load(Ordering::SeqCst) & PARKED != 0
}

#[test]
fn the_parked_flag_follows_the_waiter_list() {
    let channel = TestChannel::new(0);
    assert!(!parked_flag(&channel));
    let (first, _) = mpsc::channel();
    let (second, _) = mpsc::channel();
    let Parked::Waiting(first_id) = channel.park_task(first) else {
        panic!()
    };
    let Parked::Waiting(second_id) = channel.park_task(second) else {
        panic!()
    };
    assert!(parked_flag(&channel));
    assert!(matches!(
        channel.cancel_task(first_id),
        Cancelled::Withdrawn
    ));
    assert!(parked_flag(&channel), "one reader is still parked");
    assert!(matches!(
        channel.cancel_task(second_id),
        Cancelled::Withdrawn
    ));
    assert!(!parked_flag(&channel));
    // With nobody parked a send wakes nobody; parked again, the next send finds the reader.
    assert!(channel.send(item(1, 8)).unwrap().is_empty());
    channel.try_recv(no_pass_on).unwrap();
    let (third, third_woken) = mpsc::channel();
    channel.park_task(third);
    channel.send(item(2, 8)).unwrap()[0].send(()).unwrap();
    assert!(third_woken.try_recv().is_ok());
    assert!(!parked_flag(&channel));
}

#[test]
fn a_reader_parking_between_sparse_sends_is_woken_every_time() {
    let channel = Arc::new(TestChannel::new(0));
    let reader = {
        let channel = channel.clone();
        thread::spawn(move || {
            let mut values = Vec::new();
            while let Ok(frame) = channel.recv_timeout(None, no_pass_on) {
                values.push(frame.value);
            }
            values
        })
    };
    for value in 0..200 {
        // Long enough for the reader to stop spinning and park before each frame.
        if value % 20 == 0 {
            wait_for_parked(&channel, 1);
        }
        assert!(channel.send(item(value, 8)).unwrap().is_empty());
    }
    channel.close();
    assert_eq!(reader.join().unwrap(), (0..200).collect::<Vec<_>>());
}

#[test]
fn cancelling_a_task_still_parked_just_removes_it() {
    let channel = TestChannel::new(0);
    let (wake, _) = mpsc::channel();
    let Parked::Waiting(id) = channel.park_task(wake) else {
        panic!()
    };
    assert!(matches!(channel.cancel_task(id), Cancelled::Withdrawn));
    assert_eq!(channel.waiting_readers(), 0);
    assert!(channel.send(item(1, 8)).unwrap().is_empty());
}

#[test]
fn queued_frames_are_dropped_with_the_channel() {
    struct Counted(Arc<AtomicUsize>);
    impl Weighed for Counted {
        fn weight(&self) -> usize {
            1
        }
    }
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicUsize::new(0));
    let channel: Channel<Counted, ()> = Channel::new(0);
    for _ in 0..100 {
        channel.send(Counted(dropped.clone())).unwrap();
    }
    drop(channel);
    assert_eq!(dropped.load(Ordering::SeqCst), 100);
}

/// A task reader as an Erlang process runs it: park, wait for the wake, try again; on giving
/// up, cancel and fire whatever wake is handed on.
fn task_reader(channel: &TestChannel, taken: &mut Vec<u64>) {
    loop {
        match channel.try_recv(no_pass_on) {
            Ok(frame) => {
                taken.push(frame.value);
                continue;
            }
            Err(TryRecvError::Closed) => return,
            Err(TryRecvError::Empty) => {}
        }
        let (wake, woken) = mpsc::channel();
        match channel.park_task(wake) {
            Parked::Ready(_) => continue,
            Parked::Waiting(id) => {
                if woken.recv_timeout(Duration::from_millis(2)).is_err() {
                    // Give up now and then, as a timed-out `receive` does, to test the hand-off.
                    if let Cancelled::AlreadyWoken(Some(other)) = channel.cancel_task(id) {
                        let _ = other.send(());
                    }
                }
            }
        }
    }
}

#[test]
fn many_producers_and_mixed_readers_get_every_frame_exactly_once() {
    const PRODUCERS: u64 = 8;
    const PER_PRODUCER: u64 = 20_000;
    let channel = Arc::new(TestChannel::new(4096));
    let thread_readers: Vec<_> = (0..3)
        .map(|_| {
            let channel = channel.clone();
            thread::spawn(move || {
                let mut taken = Vec::new();
                loop {
                    let fire = |wake: Wake| {
                        let _ = wake.send(());
                    };
                    match channel.recv_timeout(Some(Duration::from_millis(3)), fire) {
                        Ok(frame) => taken.push(frame.value),
                        Err(RecvTimeoutError::Closed) => return taken,
                        Err(RecvTimeoutError::Timeout) => {}
                    }
                }
            })
        })
        .collect();
    let task_readers: Vec<_> = (0..3)
        .map(|_| {
            let channel = channel.clone();
            thread::spawn(move || {
                let mut taken = Vec::new();
                task_reader(&channel, &mut taken);
                taken
            })
        })
        .collect();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let channel = channel.clone();
            thread::spawn(move || {
                for n in 0..PER_PRODUCER {
                    let mut frame = item(producer * PER_PRODUCER + n, 1 + (n % 64) as usize);
                    loop {
                        match channel.send(frame) {
                            Ok(wakes) => {
                                for wake in wakes {
                                    let _ = wake.send(());
                                }
                                break;
                            }
                            Err(TrySendError::Busy(back)) => {
                                frame = back;
                                thread::yield_now();
                            }
                            Err(other) => panic!("unexpected {other:?}"),
                        }
                    }
                }
            })
        })
        .collect();
    for producer in producers {
        producer.join().unwrap();
    }
    for wake in channel.close() {
        let _ = wake.send(());
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for reader in thread_readers.into_iter().chain(task_readers) {
        for value in reader.join().unwrap() {
            assert!(seen.insert(value), "{value} received twice");
            total += 1;
        }
    }
    assert_eq!(total, PRODUCERS * PER_PRODUCER);
    assert_eq!(channel.size(), 0);
}

#[test]
fn a_close_racing_with_sends_loses_no_accepted_frame() {
    close_racing_loses_no_accepted_frame(|channel| {
        (0..1000)
            .take_while(|&n| channel.send(item(n, 1)).is_ok())
            .count()
    });
}

/// A close racing a sender (`send_all`, which answers how many frames were accepted) and a
/// reader, 200 times: the reader gets every accepted frame.
fn close_racing_loses_no_accepted_frame(send_all: fn(&TestChannel) -> usize) {
    for _ in 0..200 {
        let channel = Arc::new(TestChannel::new(0));
        let sender = {
            let channel = channel.clone();
            thread::spawn(move || send_all(&channel))
        };
        let reader = {
            let channel = channel.clone();
            thread::spawn(move || {
                let mut received = 0;
                while channel.recv_timeout(None, no_pass_on).is_ok() {
                    received += 1;
                }
                received
            })
        };
        thread::yield_now();
        channel.close();
        let accepted = sender.join().unwrap();
        assert_eq!(reader.join().unwrap(), accepted);
    }
}

#[test]
fn every_error_is_a_std_error_with_a_one_line_message() {
    fn message(error: &dyn std::error::Error) -> String {
        error.to_string()
    }
    let messages = [
        message(&TrySendError::Busy(())),
        message(&TrySendError::TooLarge(())),
        message(&TrySendError::Closed(())),
        message(&TryRecvError::Empty),
        message(&TryRecvError::Closed),
        message(&RecvTimeoutError::Timeout),
        message(&RecvTimeoutError::Closed),
    ];
    for text in &messages {
        assert!(!text.is_empty() && !text.contains('\n'), "{text:?}");
    }
    // Empty and timed out are told apart, in the type and in the words.
    assert_ne!(messages[3], messages[5]);
}

#[test]
fn a_stopped_wait_ends_and_leaves_no_waiter() {
    let channel = Arc::new(TestChannel::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (channel, stop) = (channel.clone(), stop.clone());
        thread::spawn(move || channel.recv_until(None, no_pass_on, &|| stop.load(Ordering::SeqCst)))
    };
    wait_for_parked(&channel, 1);
    stop.store(true, Ordering::SeqCst);
    reader.thread().unpark();
    assert!(reader.join().unwrap().is_none(), "the wait was stopped");
    assert_eq!(channel.waiting_readers(), 0);
    // A frame sent now is still there for the next reader.
    channel.send(item(5, 8)).unwrap();
    assert_eq!(channel.try_recv(no_pass_on).unwrap().value, 5);
}

// ---- Senders waiting for room (senders.rs) ----

fn wait_until(condition: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not met in 10 s"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_thread_sender_waits_for_room_and_a_receive_wakes_it() {
    let channel = Arc::new(TestChannel::new(16));
    channel.send(item(1, 16)).unwrap();
    let sender = {
        let channel = Arc::clone(&channel);
        thread::spawn(move || channel.send_timeout(item(2, 8), None, no_pass_on))
    };
    wait_until(|| channel.waiting_senders() == 1);
    assert_eq!(channel.len(), 1);
    assert_eq!(channel.try_recv(no_pass_on).unwrap().value, 1);
    assert!(sender.join().unwrap().is_ok());
    assert_eq!(channel.try_recv(no_pass_on).unwrap().value, 2);
    assert_eq!(channel.waiting_senders(), 0);
}

#[test]
fn try_recv_many_takes_in_order_up_to_max_and_counts_what_it_took() {
    let channel = TestChannel::new(0);
    for value in 0..300 {
        channel.send(item(value, 8)).unwrap();
    }
    let mut seen = Vec::new();
    assert_eq!(
        channel.try_recv_many(
            200,
            |frame| {
                seen.push(frame.value);
                true
            },
            no_pass_on
        ),
        200
    );
    assert_eq!(seen, (0..200).collect::<Vec<_>>());
    assert_eq!((channel.len(), channel.size()), (100, 800));
    // `each` stops the batch: the frame it was handed is taken, and counted.
    seen.clear();
    let taken = channel.try_recv_many(
        50,
        |frame| {
            seen.push(frame.value);
            frame.value < 209
        },
        no_pass_on,
    );
    assert_eq!((taken, seen.last().copied()), (10, Some(209)));
    assert_eq!((channel.len(), channel.size()), (90, 720));
    // Fewer queued than max: all of them.
    assert_eq!(channel.try_recv_many(1000, |_| true, no_pass_on), 90);
    assert_eq!((channel.len(), channel.size()), (0, 0));
    assert_eq!(channel.try_recv_many(10, |_| true, no_pass_on), 0);
}

#[test]
fn try_recv_many_counts_what_it_took_when_each_panics() {
    let channel = TestChannel::new(0);
    for value in 0..10 {
        channel.send(item(value, 8)).unwrap();
    }
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        channel.try_recv_many(
            10,
            |frame| {
                assert!(frame.value < 3, "a conversion that fails badly");
                true
            },
            no_pass_on,
        )
    }));
    assert!(panicked.is_err());
    // Four taken (the fourth panicked): 48 bytes of the 80 are left, in six frames.
    assert_eq!((channel.len(), channel.size()), (6, 48));
}

#[test]
fn try_recv_many_wakes_a_sender_waiting_for_room() {
    let channel = Arc::new(TestChannel::new(16));
    channel.send(item(1, 8)).unwrap();
    channel.send(item(2, 8)).unwrap();
    let sender = {
        let channel = Arc::clone(&channel);
        thread::spawn(move || channel.send_timeout(item(3, 8), None, no_pass_on))
    };
    wait_until(|| channel.waiting_senders() == 1);
    // Woken by the first frame's count, the sender may land its frame while the batch is
    // still taking: it then comes in this batch.
    let mut values = Vec::new();
    channel.try_recv_many(
        10,
        |frame| {
            values.push(frame.value);
            true
        },
        no_pass_on,
    );
    assert!(sender.join().unwrap().is_ok());
    while let Ok(frame) = channel.try_recv(no_pass_on) {
        values.push(frame.value);
    }
    assert_eq!(values, [1, 2, 3]);
}

#[test]
fn send_timeout_times_out_gives_the_frame_back_and_leaves_no_parked_sender() {
    let channel = TestChannel::new(16);
    channel.send(item(1, 16)).unwrap();
    match channel.send_timeout(item(2, 8), Some(Duration::from_millis(20)), no_pass_on) {
        Err(SendTimeoutError::Timeout(frame)) => assert_eq!(frame.value, 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(channel.waiting_senders(), 0);
    // A zero timeout is a send that answers Timeout instead of Busy.
    assert!(matches!(
        channel.send_timeout(item(3, 8), Some(Duration::ZERO), no_pass_on),
        Err(SendTimeoutError::Timeout(_))
    ));
    assert!(matches!(
        channel.send_timeout(item(4, 17), None, no_pass_on),
        Err(SendTimeoutError::TooLarge(_))
    ));
    channel.try_recv(no_pass_on).unwrap();
    assert!(channel
        .send_timeout(item(5, 8), Some(Duration::ZERO), no_pass_on)
        .is_ok());
}

#[test]
fn close_wakes_every_waiting_sender_with_closed() {
    let channel = Arc::new(TestChannel::new(8));
    channel.send(item(0, 8)).unwrap();
    let senders: Vec<_> = (1..=3)
        .map(|value| {
            let channel = Arc::clone(&channel);
            thread::spawn(move || channel.send_timeout(item(value, 8), None, no_pass_on))
        })
        .collect();
    wait_until(|| channel.waiting_senders() == 3);
    channel.close();
    for sender in senders {
        assert!(matches!(
            sender.join().unwrap(),
            Err(SendTimeoutError::Closed(_))
        ));
    }
    assert_eq!(channel.waiting_senders(), 0);
    // The queued frame still drains.
    assert_eq!(channel.try_recv(no_pass_on).unwrap().value, 0);
}

/// A task sender (an Erlang process in `send/3`) parked with a waker.
fn park_task_sender(channel: &TestChannel, value: u64) -> (WaiterId, mpsc::Receiver<()>) {
    let (waker, wake) = mpsc::channel();
    match channel.send_or_park(item(value, 8), waker, None) {
        SendOrPark::Parked(ticket, _) => (ticket, wake),
        other => panic!("{other:?}"),
    }
}

fn fill(channel: &TestChannel, frames: u64) {
    for value in 0..frames {
        channel.send(item(100 + value, 8)).unwrap();
    }
}

/// Receives one frame and fires the task wakers it hands back.
fn receive_firing(channel: &TestChannel) -> usize {
    let mut fired = 0;
    channel
        .try_recv(|waker: Wake| {
            fired += 1;
            let _ = waker.send(());
        })
        .unwrap();
    fired
}

#[test]
fn waiting_senders_are_woken_in_the_order_they_began_to_wait() {
    let channel = TestChannel::new(32);
    fill(&channel, 4);
    let senders: Vec<_> = (1..=3)
        .map(|value| park_task_sender(&channel, value))
        .collect();
    // Over half full: nobody is woken.
    assert_eq!(receive_firing(&channel), 0);
    // Half full: the first in line.
    assert_eq!(receive_firing(&channel), 1);
    let mut order = Vec::new();
    let mut pending: Vec<_> = senders.into_iter().enumerate().collect();
    while let Some(index) = pending
        .iter()
        .position(|(_, (_, wake))| wake.try_recv().is_ok())
    {
        let (position, (ticket, _)) = pending.remove(index);
        let (waker, wake) = mpsc::channel();
        match channel.send_or_park(item(position as u64, 8), waker, Some(ticket)) {
            // Sent: with the channel at most half full, its pass-on wakes the next in line;
            // over half full, the receive that brings it down to half does.
            SendOrPark::Sent(pass_on, _) => {
                order.push(position);
                let half_full = channel.size() <= 16;
                assert_eq!(pass_on.is_empty(), !half_full || pending.is_empty());
                pass_on.into_iter().for_each(|w| w.send(()).unwrap());
                if !half_full && !pending.is_empty() {
                    while receive_firing(&channel) == 0 {}
                }
            }
            SendOrPark::Parked(again, _) => {
                assert_eq!(again, ticket);
                pending.push((position, (ticket, wake)));
                // No room left: the next receive at half full wakes it again.
                while receive_firing(&channel) == 0 {}
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(order, vec![0, 1, 2]);
    assert_eq!(channel.waiting_senders(), 0);
}

#[test]
fn a_woken_sender_that_finds_no_room_keeps_its_place() {
    let channel = TestChannel::new(32);
    fill(&channel, 4);
    let (first_ticket, first_wake) = park_task_sender(&channel, 1);
    let (_, second_wake) = park_task_sender(&channel, 2);
    receive_firing(&channel);
    assert_eq!(receive_firing(&channel), 1);
    assert!(first_wake.try_recv().is_ok());
    // A sender that does not wait takes the room first.
    fill(&channel, 2);
    let (waker, first_wake) = mpsc::channel();
    assert!(matches!(
        channel.send_or_park(item(1, 8), waker, Some(first_ticket)),
        SendOrPark::Parked(ticket, _) if ticket == first_ticket
    ));
    // Still first: the next wake is the first sender's, not the second's.
    receive_firing(&channel);
    assert_eq!(receive_firing(&channel), 1);
    assert!(first_wake.try_recv().is_ok());
    assert!(second_wake.try_recv().is_err());
}

#[test]
fn a_receive_that_empties_the_channel_wakes_every_waiting_sender() {
    // A woken sender may vanish before it retries (a killed process): with nothing left to
    // receive, the others must not be left parked in an empty channel.
    let channel = TestChannel::new(16);
    channel.send(item(0, 16)).unwrap();
    let (_, first_wake) = park_task_sender(&channel, 1);
    let (_, second_wake) = park_task_sender(&channel, 2);
    assert_eq!(receive_firing(&channel), 2);
    assert_eq!(channel.size(), 0);
    drop(first_wake);
    assert!(second_wake.try_recv().is_ok());
    assert_eq!(channel.waiting_senders(), 0);
}

#[test]
fn a_sender_woken_then_cancelled_passes_the_wake_on() {
    let channel = TestChannel::new(32);
    fill(&channel, 4);
    let (first_ticket, _first_wake) = park_task_sender(&channel, 1);
    let (_, second_wake) = park_task_sender(&channel, 2);
    let mut fired = Vec::new();
    channel.try_recv(|waker| fired.push(waker)).unwrap();
    channel.try_recv(|waker| fired.push(waker)).unwrap();
    assert_eq!(fired.len(), 1);
    // The first gives up after its wake was fired: the wake goes to the second.
    match channel.cancel_send(first_ticket) {
        Cancelled::AlreadyWoken(Some(next)) => next.send(()).unwrap(),
        other => panic!("{other:?}"),
    }
    assert!(second_wake.try_recv().is_ok());
    assert_eq!(channel.waiting_senders(), 0);
    // A parked sender withdrawn before any wake: nothing to pass on.
    fill(&channel, 2);
    let (ticket, _) = park_task_sender(&channel, 4);
    assert!(matches!(channel.cancel_send(ticket), Cancelled::Withdrawn));
    assert_eq!(channel.waiting_senders(), 0);
}

#[test]
fn a_stopped_sender_ends_and_leaves_no_parked_sender() {
    let channel = Arc::new(TestChannel::new(8));
    channel.send(item(0, 8)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (channel, stop) = (Arc::clone(&channel), Arc::clone(&stop));
        thread::spawn(move || {
            channel
                .send_until(item(1, 8), None, no_pass_on, &|| {
                    stop.load(Ordering::Acquire)
                })
                .is_none()
        })
    };
    wait_until(|| channel.waiting_senders() == 1);
    stop.store(true, Ordering::Release);
    sender.thread().unpark();
    assert!(sender.join().unwrap());
    assert_eq!(channel.waiting_senders(), 0);
    assert_eq!(channel.len(), 1);
}

#[test]
fn waiting_senders_and_readers_move_every_frame_once_and_never_overfill() {
    const PER_SENDER: u64 = 20_000;
    const SENDERS: u64 = 4;
    let channel = Arc::new(TestChannel::new(64));
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let channel = Arc::clone(&channel);
            thread::spawn(move || {
                for n in 0..PER_SENDER {
                    let value = sender * PER_SENDER + n;
                    channel
                        .send_timeout(item(value, 1 + (value % 16) as usize), None, no_pass_on)
                        .unwrap();
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let channel = Arc::clone(&channel);
            thread::spawn(move || {
                let mut seen = Vec::new();
                while let Ok(frame) = channel.recv_timeout(None, no_pass_on) {
                    assert!(channel.size() <= 64);
                    seen.push(frame.value);
                }
                seen
            })
        })
        .collect();
    senders.into_iter().for_each(|s| s.join().unwrap());
    channel.close();
    let mut all: Vec<u64> = readers
        .into_iter()
        .flat_map(|r| r.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..SENDERS * PER_SENDER).collect::<Vec<_>>());
    assert_eq!(channel.waiting_senders(), 0);
}

#[test]
fn senders_are_woken_once_the_channel_is_half_empty() {
    let channel = TestChannel::new(40);
    for value in 0..5 {
        channel.send(item(value, 8)).unwrap();
    }
    let (waker, _wake) = mpsc::channel();
    let SendOrPark::Parked(..) = channel.send_or_park(item(5, 8), waker, None) else {
        panic!("not parked")
    };
    // 32 and 24 bytes left: above half of 40, nobody is woken.
    for _ in 0..2 {
        channel
            .try_recv(|_| panic!("woken above the low-water mark"))
            .unwrap();
    }
    // 16 bytes: at most half full, the waiting sender is woken.
    let mut fired = Vec::new();
    channel.try_recv(|waker| fired.push(waker)).unwrap();
    assert_eq!(fired.len(), 1);
    assert_eq!(channel.waiting_senders(), 0);
}

/// `send_many` of `values`, each weighing `bytes`: (accepted, why it stopped, frames made).
fn send_many_items(
    channel: &TestChannel,
    values: &[(u64, usize)],
) -> (usize, Option<TrySendError<()>>, usize) {
    let mut made = 0;
    let pending = values
        .iter()
        .map(|&(value, bytes)| item(value, bytes))
        .collect();
    let sent = channel.send_many(pending, |frame| {
        made += 1;
        frame
    });
    assert!(sent.wakes.is_empty(), "no reader is parked");
    (sent.accepted, sent.refused, made)
}

#[test]
fn send_many_queues_in_order_what_fits_makes_nothing_else_and_says_why_it_stopped() {
    let channel = TestChannel::new(100);
    let batch: Vec<_> = (0..5).map(|n| (n, 30)).collect();
    assert_eq!(
        send_many_items(&channel, &batch),
        (3, Some(TrySendError::Busy(())), 3)
    );
    assert_eq!(channel.size(), 90);
    assert_eq!(channel.totals().busy, 1);
    assert_eq!(
        send_many_items(&channel, &[(9, 30)]),
        (0, Some(TrySendError::Busy(())), 0)
    );
    for value in 0..3 {
        assert_eq!(channel.try_recv(no_pass_on).unwrap().value, value);
    }
    // A frame that can never fit stops the batch as too large, whatever room there is.
    assert_eq!(
        send_many_items(&channel, &[(3, 30), (4, 101), (5, 30)]),
        (1, Some(TrySendError::TooLarge(())), 1)
    );
    assert_eq!(
        send_many_items(&channel, &[(6, 101)]),
        (0, Some(TrySendError::TooLarge(())), 0)
    );
    assert_eq!(send_many_items(&channel, &[]), (0, None, 0));
    assert_eq!(send_many_items(&channel, &[(7, 40), (8, 30)]), (2, None, 2));
    let values: Vec<u64> = (0..3)
        .map(|_| channel.try_recv(no_pass_on).unwrap().value)
        .collect();
    assert_eq!(values, [3, 7, 8]);
    channel.close();
    assert_eq!(
        send_many_items(&channel, &[(9, 1)]),
        (0, Some(TrySendError::Closed(())), 0)
    );
    let totals = channel.totals();
    assert_eq!(
        (totals.sent, totals.received, totals.sent_bytes),
        (6, 6, 190)
    );
}

#[test]
fn send_many_wakes_one_parked_reader_per_frame() {
    let channel = TestChannel::new(0);
    let readers: Vec<_> = (0..5)
        .map(|_| {
            let (wake, woken) = mpsc::channel();
            assert!(matches!(channel.park_task(wake), Parked::Waiting(_)));
            woken
        })
        .collect();
    let sent = channel.send_many(vec![item(1, 1), item(2, 1), item(3, 1)], |frame| frame);
    assert_eq!(sent.accepted, 3);
    for wake in sent.wakes {
        wake.send(()).unwrap();
    }
    let woken: Vec<bool> = readers.iter().map(|r| r.try_recv().is_ok()).collect();
    assert_eq!(
        woken,
        [true, true, true, false, false],
        "first parked, first woken"
    );
    assert_eq!(channel.waiting_readers(), 2);
}

#[test]
fn batches_from_racing_producers_arrive_once_in_order_and_never_overfill() {
    const PRODUCERS: u64 = 4;
    const PER_PRODUCER: u64 = 50_000;
    const MAX_SIZE: u64 = 2000;
    let channel = Arc::new(TestChannel::new(MAX_SIZE));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let channel = channel.clone();
            thread::spawn(move || {
                let mut next = 0;
                let mut batch_size = 1;
                while next < PER_PRODUCER {
                    // Batches of 1 to 150, so claims start and end anywhere in a block.
                    batch_size = batch_size * 7 % 151;
                    let end = (next + batch_size).min(PER_PRODUCER);
                    let batch = (next..end)
                        .map(|n| item(producer << 32 | n, 1 + (n % 16) as usize))
                        .collect();
                    let sent = channel.send_many(batch, |frame| frame);
                    for wake in sent.wakes {
                        let _ = wake.send(());
                    }
                    match sent.refused {
                        None | Some(TrySendError::Busy(())) => {}
                        Some(other) => panic!("unexpected {other:?}"),
                    }
                    if sent.accepted == 0 {
                        thread::yield_now();
                    }
                    next += sent.accepted as u64;
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let channel = channel.clone();
            thread::spawn(move || {
                let mut taken = Vec::new();
                loop {
                    assert!(channel.size() <= MAX_SIZE);
                    match channel.recv_timeout(Some(Duration::from_millis(3)), |wake: Wake| {
                        let _ = wake.send(());
                    }) {
                        Ok(frame) => taken.push(frame.value),
                        Err(RecvTimeoutError::Closed) => return taken,
                        Err(RecvTimeoutError::Timeout) => {}
                    }
                }
            })
        })
        .collect();
    for producer in producers {
        producer.join().unwrap();
    }
    channel.close();
    let mut seen = HashSet::new();
    for reader in readers {
        let mut last = vec![None::<u64>; PRODUCERS as usize];
        for value in reader.join().unwrap() {
            assert!(seen.insert(value), "{value} received twice");
            let (producer, n) = ((value >> 32) as usize, value & 0xffff_ffff);
            assert!(last[producer].is_none_or(|l| l < n), "out of order");
            last[producer] = Some(n);
        }
    }
    assert_eq!(seen.len() as u64, PRODUCERS * PER_PRODUCER);
    assert_eq!(channel.size(), 0);
}

#[test]
fn a_close_racing_with_batches_loses_no_accepted_frame() {
    close_racing_loses_no_accepted_frame(|channel| {
        let mut accepted = 0;
        for batch in 0..100 {
            let frames = (0..10).map(|n| item(batch * 10 + n, 1)).collect();
            let sent = channel.send_many(frames, |frame| frame);
            accepted += sent.accepted;
            if sent.refused.is_some() {
                break;
            }
        }
        accepted
    });
}

/// Reads until a frame of value `STOP`, each wait shorter than a spin: the reader spins
/// nearly all the time.
#[cfg(target_os = "linux")]
fn read_spinning(channel: &TestChannel) {
    const STOP: u64 = u64::MAX;
    loop {
        match channel.recv_timeout(Some(Duration::from_micros(40)), no_pass_on) {
            Ok(frame) if frame.value == STOP => return,
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Closed) => panic!("closed"),
        }
    }
}

/// A thread reader tells on which core it spins for a frame; nothing a moment after it took
/// one (it is busy with it), nor while it is parked.
#[cfg(target_os = "linux")]
#[test]
fn a_spinning_reader_tells_its_core() {
    let Some(cores) = two_cores_or_skip("other core to tell") else {
        return;
    };
    let (here, there) = (cores[0] as u32, cores[1] as u32);
    let channel = Arc::new(TestChannel::new(0));
    assert_eq!(channel.where_reader_spins(here), ReaderSpins::NotKnown);
    let (took_stop, go_on) = (mpsc::channel(), mpsc::channel());
    let reader = thread::spawn({
        let channel = channel.clone();
        move || {
            bind_to(&cores[..1]);
            read_spinning(&channel);
            took_stop.0.send(()).unwrap();
            go_on.1.recv().unwrap();
            // A wait long past its spin: the reader parks.
            channel.recv_timeout(Some(Duration::from_secs(10)), no_pass_on)
        }
    });
    assert!(eventually(
        || channel.where_reader_spins(here) == ReaderSpins::Here
    ));
    assert!(eventually(
        || channel.where_reader_spins(there) == ReaderSpins::Elsewhere
    ));
    channel.send(item(u64::MAX, 8)).unwrap();
    took_stop.1.recv().unwrap();
    assert!(eventually(
        || channel.where_reader_spins(here) == ReaderSpins::NotKnown
    ));
    go_on.0.send(()).unwrap();
    assert!(eventually(|| channel.waiting_readers() == 1));
    assert_eq!(channel.where_reader_spins(here), ReaderSpins::NotKnown);
    channel.send(item(1, 8)).unwrap();
    assert_eq!(reader.join().unwrap().unwrap().value, 1);
}

/// A reader asked to leave the core it spins on moves off it, and may then run wherever it
/// could before.
#[cfg(target_os = "linux")]
#[test]
fn a_reader_asked_to_leave_its_core_moves_off_it() {
    let Some(cores) = two_cores_or_skip("core to move to") else {
        return;
    };
    let channel = Arc::new(TestChannel::new(0));
    let reader = thread::spawn({
        let channel = channel.clone();
        let cores = cores.clone();
        move || {
            // On the first core, free to run on any.
            bind_to(&cores[..1]);
            bind_to(&cores);
            read_spinning(&channel);
            cores_of(0)
        }
    });
    let spinning_on = || {
        cores
            .iter()
            .map(|&core| core as u32)
            .find(|&core| channel.where_reader_spins(core) == ReaderSpins::Here)
    };
    let found = std::cell::Cell::new(None);
    assert!(eventually(|| {
        found.set(spinning_on());
        found.get().is_some()
    }));
    let crowded = found.get().unwrap();
    channel.ask_reader_to_leave(crowded);
    assert!(eventually(
        || channel.where_reader_spins(crowded) == ReaderSpins::Elsewhere
    ));
    channel.send(item(u64::MAX, 8)).unwrap();
    assert_eq!(reader.join().unwrap(), cores, "its binding is as before");
}
