//! The native half of `erlang.channel.Channel`: reading a channel from Python.
//!
//! Every wait releases the GIL. A blocked `receive` parks its thread in the channel core; an
//! `async_receive` parks a file descriptor that the sender writes to, so neither the sending
//! NIF nor the waking path ever takes the GIL. Frames are converted straight from where they
//! are stored, without copying the term first.

#![cfg(feature = "nif")]

use crate::channel::{Cancelled, Parked, RecvError};
use crate::channel_resource::ChannelHandle;
use crate::conversion::{to_python, BinaryMode};
use crate::frame::Frame;
use crate::python_module::type_name;
use crate::python_types::PyChannelRef;
use crate::reader_wake::ReaderWake;
use pyo3::exceptions::{PyException, PyTimeoutError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rustler::OwnedEnv;
use std::cell::RefCell;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

pyo3::create_exception!(
    _py_channel,
    ChannelClosed,
    PyException,
    "The channel is closed and every message in it has been received."
);

/// How many frames a thread converts in its scratch env before clearing it. Most frames need
/// no scratch memory at all (they are read where they are stored).
const SCRATCH_CLEAR_EVERY: u32 = 1024;

thread_local! {
    static SCRATCH: RefCell<(OwnedEnv, u32)> = RefCell::new((OwnedEnv::new(), 0));
}

/// Converts a received frame to a Python object on this thread.
fn frame_to_python<'py>(
    py: Python<'py>,
    frame: &Frame,
    mode: BinaryMode,
) -> PyResult<Bound<'py, PyAny>> {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => {
            let (env, used) = &mut *scratch;
            let converted = env.run(|env| to_python(py, frame.read(env), mode));
            *used += 1;
            if *used >= SCRATCH_CLEAR_EVERY {
                env.clear();
                *used = 0;
            }
            converted
        }
        // Re-entered from inside a conversion: use an env of its own.
        Err(_) => OwnedEnv::new().run(|env| to_python(py, frame.read(env), mode)),
    })
}

/// A Python timeout in seconds (None: forever) as a duration.
fn timeout_duration(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(seconds) if seconds >= 0.0 && seconds.is_finite() => {
            Ok(Some(Duration::from_secs_f64(seconds)))
        }
        Some(_) => Err(PyValueError::new_err(
            "timeout must be a non-negative number",
        )),
    }
}

#[pyclass(frozen, subclass, module = "erlang.channel", name = "_ChannelReader")]
pub struct ChannelReader {
    channel: ChannelHandle,
    mode: BinaryMode,
}

impl ChannelReader {
    fn convert<'py>(&self, py: Python<'py>, frame: Frame) -> PyResult<Bound<'py, PyAny>> {
        frame_to_python(py, &frame, self.mode)
    }

    /// Blocks (GIL released) for the next frame.
    fn wait_for_frame(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Frame> {
        let timeout = timeout_duration(timeout)?;
        match self.channel.channel.try_recv() {
            Err(RecvError::Empty) => self.wait_for_next_frame(py, timeout),
            Ok(frame) => Ok(frame),
            Err(RecvError::Closed) => Err(ChannelClosed::new_err("the channel is closed")),
        }
    }

    /// Like `wait_for_frame`, for a caller that just found the queue empty: every look at an
    /// empty queue reads the line the senders write next, so none is wasted.
    fn wait_for_next_frame(&self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<Frame> {
        let channel = &self.channel;
        let received = py.detach(|| {
            channel
                .channel
                .recv_timeout(timeout, |other_reader| other_reader.fire(None))
        });
        match received {
            Ok(frame) => Ok(frame),
            Err(RecvError::Closed) => Err(ChannelClosed::new_err("the channel is closed")),
            Err(RecvError::Empty) => Err(PyTimeoutError::new_err("no message within the timeout")),
        }
    }
}

#[pymethods]
impl ChannelReader {
    #[new]
    #[pyo3(signature = (channel, binary = "auto"))]
    fn new(channel: &Bound<'_, PyAny>, binary: &str) -> PyResult<Self> {
        let channel = if let Ok(handle) = channel.cast::<PyChannelRef>() {
            handle.get().channel.clone()
        } else if let Ok(reader) = channel.cast::<ChannelReader>() {
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
            other => {
                return Err(PyValueError::new_err(format!(
                    "binary must be 'auto' or 'bytes', not {other:?}"
                )))
            }
        };
        Ok(ChannelReader { channel, mode })
    }

    /// The next message, waiting up to `timeout` seconds (forever if None). Raises
    /// ChannelClosed once the channel is closed and drained, TimeoutError on timeout.
    #[pyo3(signature = (timeout = None))]
    fn receive<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let frame = self.wait_for_frame(py, timeout)?;
        self.convert(py, frame)
    }

    /// The next message if one is queued, else None. Raises ChannelClosed once the channel
    /// is closed and drained.
    fn try_receive<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self.channel.channel.try_recv() {
            Ok(frame) => self.convert(py, frame).map(Some),
            Err(RecvError::Empty) => Ok(None),
            Err(RecvError::Closed) => Err(ChannelClosed::new_err("the channel is closed")),
        }
    }

    /// Up to `max_items` messages: waits (up to `timeout`) for the first, then takes what is
    /// queued without waiting. An empty list on timeout; ChannelClosed once closed and
    /// drained.
    #[pyo3(signature = (max_items, timeout = None))]
    fn receive_many<'py>(
        &self,
        py: Python<'py>,
        max_items: usize,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
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
        while batch.len() < max_items {
            match self.channel.channel.try_recv() {
                Ok(frame) => batch.append(self.convert(py, frame)?)?,
                Err(_) => break,
            }
        }
        Ok(batch)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Iteration ends (StopIteration) when the channel is closed and drained.
    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let frame = match self.channel.channel.try_recv() {
            Ok(frame) => frame,
            Err(RecvError::Closed) => return Ok(None),
            Err(RecvError::Empty) => match self.wait_for_next_frame(py, None) {
                Ok(frame) => frame,
                Err(error) if error.is_instance_of::<ChannelClosed>(py) => return Ok(None),
                Err(error) => return Err(error),
            },
        };
        self.convert(py, frame).map(Some)
    }

    /// Closes the channel for every sender and wakes every reader; queued messages can still
    /// be received. Idempotent.
    fn close(&self, py: Python<'_>) {
        let channel = &self.channel;
        py.detach(|| channel.close(None));
    }

    /// `{'size': bytes queued, 'max_size': ..., 'closed': ..., 'length': messages queued}`.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let core = &self.channel.channel;
        let info = PyDict::new(py);
        info.set_item("size", core.size())?;
        info.set_item("max_size", core.max_size())?;
        info.set_item("closed", core.is_closed())?;
        info.set_item("length", core.len())?;
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
        match self
            .channel
            .channel
            .park_task(ReaderWake::Descriptor { fd: owned, eventfd })
        {
            Parked::Ready(_) => Ok(None),
            Parked::Waiting(id) => Ok(Some(id)),
        }
    }

    /// Withdraws a parked coroutine that stopped waiting; a wake it had already been given is
    /// passed on to another reader.
    fn _cancel_wait(&self, py: Python<'_>, waiter_id: u64) {
        let channel = &self.channel;
        py.detach(|| {
            if let Cancelled::AlreadyWoken(Some(other_reader)) =
                channel.channel.cancel_task(waiter_id)
            {
                other_reader.fire(None);
            }
        });
    }
}
