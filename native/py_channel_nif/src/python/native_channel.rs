//! The native half of `erlang.channel.Channel`: reading a channel from Python.
//!
//! Every wait releases the GIL. A blocked `receive` parks its thread in the channel core; an
//! `async_receive` parks a file descriptor that the sender writes to, so neither the sending
//! NIF nor the waking path ever takes the GIL. Frames are converted straight from where they
//! are stored, without copying the term first.

use crate::beam::channel_resource::ChannelHandle;
use crate::beam::frame::Frame;
use crate::beam::task_wake::{Awaits, TaskWake};
use crate::channel::{
    Cancelled, Parked, RecvTimeoutError, SendOrPark, SendTimeoutError, TryRecvError, TrySendError,
};
use crate::conversion::term_classes::PyChannelRef;
use crate::conversion::type_name;
use crate::conversion::{flat_term, to_erlang, to_erlang_plain};
use crate::conversion::{to_python_from_frame, BinaryMode};
use crate::python::cancel;
use pyo3::exceptions::{PyException, PyTimeoutError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rustler::OwnedEnv;
use std::cell::RefCell;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

pyo3::create_exception!(
    _py_channel,
    ChannelClosed,
    PyException,
    "The channel is closed and every message in it has been received."
);

thread_local! {
    /// The env a thread builds the terms it sends in, before they are copied into a frame.
    static WRITING: RefCell<OwnedEnv> = RefCell::new(OwnedEnv::new());
    /// The env a thread presents frames in while converting them. Most frames are read where
    /// they are stored, or from their flat encoding, and put nothing in it; a frame stored in
    /// external term format is decoded into it, and it is cleared once the frame (or the
    /// batch) is converted, so nothing received stays held once Python drops it.
    static SCRATCH: RefCell<OwnedEnv> = RefCell::new(OwnedEnv::new());
}

/// Converts received frames to Python objects on this thread: `convert` is handed an env to
/// present them in and the conversion of one frame, raw (`to_python_from_frame`).
fn with_scratch_env<R>(
    mode: BinaryMode,
    convert: impl FnOnce(&mut dyn FnMut(&Frame) -> *mut ffi::PyObject) -> R,
    py: Python<'_>,
) -> R {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut env) => {
            let mut decoded = false;
            let result = env.run(|env| {
                convert(&mut |frame| {
                    // An encoded frame is read from its encoding: only a frame `read`
                    // decodes leaves terms in the env.
                    decoded |= frame.encoding().is_none() && frame.is_decoded_when_read();
                    to_python_from_frame(py, env, frame, mode)
                })
            });
            if decoded {
                env.clear();
            }
            result
        }
        // Re-entered from inside a conversion: use an env of its own.
        Err(_) => OwnedEnv::new()
            .run(|env| convert(&mut |frame| to_python_from_frame(py, env, frame, mode))),
    })
}

/// Converts a Python object to a frame for `channel`: TypeError or ValueError, naming the
/// problem, if it has no term. The cheapest way that fits the object:
/// 1. small plain data: encoded in memory of its own, for the reader to build
///    (`conversion/flat_term.rs` says why);
/// 2. anything else without a channel in it: built straight in the channel's arena, when no
///    other sender is appending to it;
/// 3. else: built in this thread's env and copied (`Frame::encode`).
fn python_to_frame(channel: &ChannelHandle, object: &Bound<'_, PyAny>) -> PyResult<Frame> {
    channel.channel.prepare_send();
    if let Some(frame) = encoded_frame(channel, object)? {
        return Ok(frame);
    }
    if let Some(built) = Frame::build(channel, |env| to_erlang_plain(env, object)) {
        return built;
    }
    let encode = |env: &mut OwnedEnv| {
        let frame = env.run(|env| to_erlang(env, object).map(|term| Frame::encode(term, channel)));
        env.clear();
        frame
    };
    WRITING.with(|writing| match writing.try_borrow_mut() {
        Ok(mut env) => encode(&mut env),
        // Re-entered from inside a conversion: use an env of its own.
        Err(_) => encode(&mut OwnedEnv::new()),
    })
}

/// Way 1 of `python_to_frame`: `None` when the object is not small plain data.
fn encoded_frame(channel: &ChannelHandle, object: &Bound<'_, PyAny>) -> PyResult<Option<Frame>> {
    flat_term::with_scratch(|buffer| {
        let size = flat_term::encode(object, buffer)?;
        Ok(size.map(|size| Frame::from_encoding(buffer, size, channel)))
    })
}

/// A refused send as the exception Python code sees.
fn send_refused<T>(refused: TrySendError<T>) -> PyErr {
    match refused {
        TrySendError::Closed(_) => ChannelClosed::new_err("the channel is closed"),
        TrySendError::TooLarge(_) => {
            PyValueError::new_err("the message alone is larger than the channel's max_size")
        }
        TrySendError::Busy(_) => PyTimeoutError::new_err("no room in the channel"),
    }
}

/// A Python timeout as a duration: `timeout` in seconds, or `timeout_ms` in milliseconds (the
/// unit erlang_python's `Channel` used, where -1 means for ever), not both. None, infinity,
/// a negative `timeout_ms` and timeouts too long for a `Duration` all mean "wait for ever".
fn timeout_duration(timeout: Option<f64>, timeout_ms: Option<f64>) -> PyResult<Option<Duration>> {
    let seconds = match (timeout, timeout_ms) {
        (Some(_), Some(_)) => {
            return Err(PyValueError::new_err(
                "give timeout (seconds) or timeout_ms (milliseconds), not both",
            ))
        }
        (Some(seconds), None) => seconds,
        (None, Some(milliseconds)) if milliseconds < 0.0 => return Ok(None),
        (None, Some(milliseconds)) => milliseconds / 1000.0,
        (None, None) => return Ok(None),
    };
    if seconds >= 0.0 {
        Ok(Duration::try_from_secs_f64(seconds).ok())
    } else {
        Err(PyValueError::new_err(
            "timeout must be a non-negative number of seconds or None",
        ))
    }
}

#[pyclass(frozen, subclass, module = "erlang.channel", name = "_NativeChannel")]
pub struct NativeChannel {
    channel: ChannelHandle,
    mode: BinaryMode,
    /// An error met by `receive_many` after it had taken other messages: those are returned
    /// first and the error is raised by the next call, so no message taken is lost.
    deferred_error: Mutex<Option<PyErr>>,
    has_deferred_error: AtomicBool,
}

impl NativeChannel {
    /// Raises the error `receive_many` put off, if any.
    fn raise_deferred(&self) -> PyResult<()> {
        if !self.has_deferred_error.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut deferred = self
            .deferred_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.has_deferred_error.store(false, Ordering::Release);
        deferred.take().map_or(Ok(()), Err)
    }

    fn defer(&self, error: PyErr) {
        let mut deferred = self
            .deferred_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *deferred = Some(error);
        self.has_deferred_error.store(true, Ordering::Release);
    }

    fn convert<'py>(&self, py: Python<'py>, frame: Frame) -> PyResult<Bound<'py, PyAny>> {
        let object = with_scratch_env(self.mode, |convert| convert(&frame), py);
        // SAFETY: a new reference, or null with the error set.
        unsafe { Bound::from_owned_ptr_or_err(py, object) }
    }

    /// Blocks (GIL released) for the next frame.
    fn wait_for_frame(&self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<Frame> {
        match self.channel.take(None) {
            Err(TryRecvError::Empty) => self.wait_for_next_frame(py, timeout),
            Ok(frame) => Ok(frame),
            Err(TryRecvError::Closed) => Err(ChannelClosed::new_err("the channel is closed")),
        }
    }

    /// Like `wait_for_frame`, for a caller that just found the queue empty: every look at an
    /// empty queue reads the line the senders write next, so none is wasted.
    fn wait_for_next_frame(&self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<Frame> {
        let channel = &self.channel;
        let this_thread = std::thread::current();
        let received = py.detach(|| {
            cancel::interruptible(Box::new(move || this_thread.unpark()), |cancelled| {
                channel
                    .channel
                    .recv_until(timeout, |task| channel.wake([task], None), cancelled)
            })
        });
        match received {
            Some(Ok(frame)) => Ok(frame),
            Some(Err(RecvTimeoutError::Closed)) => {
                Err(ChannelClosed::new_err("the channel is closed"))
            }
            Some(Err(RecvTimeoutError::Timeout)) => {
                Err(PyTimeoutError::new_err("no message within the timeout"))
            }
            None => Err(cancel::cancelled_in_wait(py)),
        }
    }
}

#[pymethods]
impl NativeChannel {
    #[new]
    #[pyo3(signature = (channel, binary = "auto"))]
    fn new(channel: &Bound<'_, PyAny>, binary: &str) -> PyResult<Self> {
        let channel = if let Ok(handle) = channel.cast::<PyChannelRef>() {
            handle.get().channel.clone()
        } else if let Ok(reader) = channel.cast::<NativeChannel>() {
            reader.get().channel.clone()
        } else {
            return Err(PyTypeError::new_err(format!(
                "Channel() needs a channel from Erlang (erlang.ChannelRef), not {}",
                type_name(channel)
            )));
        };
        let mode = match binary {
            "auto" => BinaryMode::Auto,
            "bytes" => BinaryMode::Bytes,
            "memoryview" => BinaryMode::MemoryView,
            other => {
                return Err(PyValueError::new_err(format!(
                    "binary must be 'auto', 'bytes' or 'memoryview', not {other:?}"
                )))
            }
        };
        Ok(NativeChannel {
            channel,
            mode,
            deferred_error: Mutex::new(None),
            has_deferred_error: AtomicBool::new(false),
        })
    }

    /// The next message, waiting up to `timeout` seconds (or `timeout_ms` milliseconds;
    /// forever if neither). Raises ChannelClosed once the channel is closed and drained,
    /// TimeoutError on timeout.
    #[pyo3(signature = (timeout = None, *, timeout_ms = None))]
    fn receive<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
        timeout_ms: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let timeout = timeout_duration(timeout, timeout_ms)?;
        self.raise_deferred()?;
        let frame = self.wait_for_frame(py, timeout)?;
        self.convert(py, frame)
    }

    /// The next message if one is queued, else `default` (None unless given: pass a sentinel
    /// to tell an empty channel from a received `none`, which arrives as None). Raises
    /// ChannelClosed once the channel is closed and drained.
    #[pyo3(signature = (default = None))]
    fn try_receive<'py>(
        &self,
        py: Python<'py>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.raise_deferred()?;
        match self.channel.take(None) {
            Ok(frame) => self.convert(py, frame),
            Err(TryRecvError::Empty) => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
            Err(TryRecvError::Closed) => Err(ChannelClosed::new_err("the channel is closed")),
        }
    }

    /// Up to `max_items` messages: waits (up to `timeout`) for the first, then takes what is
    /// queued without waiting. An empty list on timeout; ChannelClosed once closed and
    /// drained. A message that cannot be converted after others were taken ends the batch:
    /// those are returned and the error is raised by the next call.
    #[pyo3(signature = (max_items, timeout = None, *, timeout_ms = None))]
    fn receive_many<'py>(
        &self,
        py: Python<'py>,
        max_items: usize,
        timeout: Option<f64>,
        timeout_ms: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let timeout = timeout_duration(timeout, timeout_ms)?;
        self.raise_deferred()?;
        let batch = PyList::empty(py);
        if max_items == 0 {
            return Ok(batch);
        }
        let first = match self.wait_for_frame(py, timeout) {
            Ok(frame) => frame,
            Err(error) if error.is_instance_of::<PyTimeoutError>(py) => return Ok(batch),
            Err(error) => return Err(error),
        };
        batch.append(self.convert(py, first)?)?;
        // The rest as they are queued, in one go: each object appended as it is made; one
        // that fails to convert ends the batch and is raised by the next call.
        let mut failed = None;
        with_scratch_env(
            self.mode,
            |convert| {
                self.channel.take_many(
                    max_items - 1,
                    |frame| {
                        let object = convert(&frame);
                        // SAFETY: `object` is a new reference (PyList_Append takes its own) or
                        // null with the error set.
                        unsafe {
                            if !object.is_null() && ffi::PyList_Append(batch.as_ptr(), object) == 0
                            {
                                ffi::Py_DECREF(object);
                                return true;
                            }
                            ffi::Py_XDECREF(object);
                        }
                        failed = Some(PyErr::fetch(py));
                        false
                    },
                    None,
                )
            },
            py,
        );
        if let Some(error) = failed {
            self.defer(error);
        }
        Ok(batch)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Iteration ends (StopIteration) when the channel is closed and drained.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.raise_deferred()?;
        let frame = match self.channel.take(None) {
            Ok(frame) => frame,
            Err(TryRecvError::Closed) => return Ok(None),
            Err(TryRecvError::Empty) => match self.wait_for_next_frame(py, None) {
                Ok(frame) => frame,
                Err(error) if error.is_instance_of::<ChannelClosed>(py) => return Ok(None),
                Err(error) => return Err(error),
            },
        };
        self.convert(py, frame).map(Some)
    }

    /// Queues `term`, waiting (GIL released) while the channel is full: up to `timeout`
    /// seconds (`timeout_ms` milliseconds; for ever if neither). TimeoutError if no room came
    /// in time (nothing is queued), ChannelClosed if the channel is closed, ValueError if the
    /// message alone is larger than `max_size`.
    #[pyo3(signature = (term, timeout = None, *, timeout_ms = None))]
    fn send(
        &self,
        py: Python<'_>,
        term: &Bound<'_, PyAny>,
        timeout: Option<f64>,
        timeout_ms: Option<f64>,
    ) -> PyResult<()> {
        let timeout = timeout_duration(timeout, timeout_ms)?;
        let frame = match self
            .channel
            .channel
            .send(python_to_frame(&self.channel, term)?)
        {
            Ok(wakes) => {
                self.channel.wake(wakes, None);
                return Ok(());
            }
            Err(TrySendError::Busy(frame)) => frame,
            Err(refused) => return Err(send_refused(refused)),
        };
        let channel = &self.channel;
        let this_thread = std::thread::current();
        let sent = py.detach(|| {
            cancel::interruptible(Box::new(move || this_thread.unpark()), |cancelled| {
                channel.channel.send_until(
                    frame,
                    timeout,
                    |task| channel.wake([task], None),
                    cancelled,
                )
            })
        });
        match sent {
            Some(Ok(())) => Ok(()),
            Some(Err(SendTimeoutError::Timeout(_))) => Err(PyTimeoutError::new_err(
                "no room in the channel within the timeout",
            )),
            Some(Err(SendTimeoutError::Closed(frame))) => {
                Err(send_refused(TrySendError::Closed(frame)))
            }
            Some(Err(SendTimeoutError::TooLarge(frame))) => {
                Err(send_refused(TrySendError::TooLarge(frame)))
            }
            None => Err(cancel::cancelled_in_wait(py)),
        }
    }

    /// Queues `term` if it fits now: True, or False when the channel is full. ChannelClosed
    /// if closed, ValueError if the message alone is larger than `max_size`.
    fn try_send(&self, term: &Bound<'_, PyAny>) -> PyResult<bool> {
        match self
            .channel
            .channel
            .send(python_to_frame(&self.channel, term)?)
        {
            Ok(wakes) => {
                self.channel.wake(wakes, None);
                Ok(true)
            }
            Err(TrySendError::Busy(_)) => Ok(false),
            Err(refused) => Err(send_refused(refused)),
        }
    }

    /// `async_send`'s step: queues `term` if it fits (None), else parks a coroutine among the
    /// senders waiting for room and returns its ticket: `fd` is written once when room comes
    /// or the channel closes, and the coroutine calls again with that `ticket` (None the first
    /// time), keeping its place in line. The ticket also withdraws it (`_cancel_send`).
    #[pyo3(signature = (term, fd, eventfd, ticket))]
    fn _park_sender(
        &self,
        term: &Bound<'_, PyAny>,
        fd: i32,
        eventfd: bool,
        ticket: Option<u64>,
    ) -> PyResult<Option<u64>> {
        let frame = python_to_frame(&self.channel, term)?;
        // SAFETY: the caller keeps the descriptor open for the duration of this call; we keep
        // our own duplicate.
        let owned: OwnedFd = unsafe { BorrowedFd::borrow_raw(fd) }
            .try_clone_to_owned()
            .map_err(PyErr::from)?;
        let waker = TaskWake::Descriptor {
            fd: owned,
            eventfd,
            awaits: Awaits::Room,
        };
        match self.channel.channel.send_or_park(frame, waker, ticket) {
            // The coroutine's own descriptor, if written meanwhile, is closed unread.
            SendOrPark::Sent(wakes, _) => {
                self.channel.wake(wakes, None);
                Ok(None)
            }
            SendOrPark::Parked(id, _frame) => Ok(Some(id)),
            SendOrPark::Refused(refused, _) => Err(send_refused(refused)),
        }
    }

    /// Withdraws a coroutine waiting for room that stopped waiting; a wake it had already been
    /// given is passed on to the next waiting sender.
    fn _cancel_send(&self, py: Python<'_>, waiter_id: u64) {
        let channel = &self.channel;
        py.detach(|| {
            if let Cancelled::AlreadyWoken(pass_on) = channel.channel.cancel_send(waiter_id) {
                channel.wake(pass_on, None);
            }
        });
    }

    /// Closes the channel for every sender and wakes every reader; queued messages can still
    /// be received. Idempotent.
    fn close(&self, py: Python<'_>) {
        let channel = &self.channel;
        py.detach(|| channel.close(None));
    }

    /// The fields of `py_channel:info/1`: `size` (bytes queued), `max_size`, `closed`,
    /// `length` (messages queued), `waiting_readers` (readers parked), and the running
    /// totals `sent`, `received`, `busy`, `sent_bytes`, `received_bytes`.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let core = &self.channel.channel;
        let totals = core.totals();
        let info = PyDict::new(py);
        info.set_item("size", core.size())?;
        info.set_item("max_size", core.max_size())?;
        info.set_item("closed", core.is_closed())?;
        info.set_item("length", core.len())?;
        info.set_item("waiting_readers", core.waiting_readers())?;
        info.set_item("waiting_senders", core.waiting_senders())?;
        info.set_item("sent", totals.sent)?;
        info.set_item("received", totals.received)?;
        info.set_item("busy", totals.busy)?;
        info.set_item("sent_bytes", totals.sent_bytes)?;
        info.set_item("received_bytes", totals.received_bytes)?;
        Ok(info)
    }

    /// The channel as a term for Erlang (`reply(pid, ch.ref)` sends the same channel back).
    #[getter]
    fn r#ref(&self, py: Python<'_>) -> PyResult<Py<PyChannelRef>> {
        Py::new(
            py,
            PyChannelRef {
                channel: self.channel.clone(),
            },
        )
    }

    /// Parks a coroutine: `fd` (an eventfd, or a pipe's write end) is written once when a
    /// message or the close arrives. None if one is there already; else an id for
    /// `_cancel_wait`.
    fn _park_fd(&self, fd: i32, eventfd: bool) -> PyResult<Option<u64>> {
        // SAFETY: the caller passes a descriptor it keeps open for the duration of this call;
        // we keep our own duplicate.
        let owned: OwnedFd = unsafe { BorrowedFd::borrow_raw(fd) }
            .try_clone_to_owned()
            .map_err(PyErr::from)?;
        match self.channel.channel.park_task(TaskWake::Descriptor {
            fd: owned,
            eventfd,
            awaits: Awaits::Frame,
        }) {
            Parked::Ready(_) => Ok(None),
            Parked::Waiting(id) => Ok(Some(id)),
        }
    }

    /// Withdraws a parked coroutine that stopped waiting; a wake it had already been given is
    /// passed on to another reader.
    fn _cancel_wait(&self, py: Python<'_>, waiter_id: u64) {
        let channel = &self.channel;
        py.detach(|| {
            if let Cancelled::AlreadyWoken(pass_on) = channel.channel.cancel_task(waiter_id) {
                channel.wake(pass_on, None);
            }
        });
    }
}
