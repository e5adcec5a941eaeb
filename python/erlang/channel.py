"""Reading and writing a py_channel channel from Python.

An Erlang process creates the channel (``py_channel:new/1``) and passes it to Python, as an
argument of ``py:call``/``py:spawn_call`` or in ``py:eval`` locals. Python reads it::

    from erlang.channel import Channel, reply

    def serve(channel_ref):
        for request, sender, payload in Channel(channel_ref):
            reply(sender, (request, len(payload)))

Iteration (sync or ``async for``) ends when the channel is closed and every message in it
has been received. Any number of readers, threads and coroutines alike, may read one
channel: each message goes to exactly one of them. Every wait releases the GIL, and a
coroutine waiting in ``async_receive`` is woken through its event loop (``add_reader`` on a
file descriptor the sender writes to): no polling, no sleeping loop, on any asyncio loop.

Python writes to a channel as well, for Erlang (``py_channel:recv/2``, ``subscribe/2``) or
another Python reader to read, with backpressure::

    def produce(channel_ref, rows):
        ch = Channel(channel_ref)
        for row in rows:
            ch.send(row)          # waits (GIL released) while the channel is full
        ch.close()

``try_send`` does not wait (False when full) and ``await ch.async_send(row)`` waits through
the event loop.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

# Straight from the native module (through _native, which outside the BEAM gives the
# stand-ins of erlang.testing), not through this package's __init__ (which imports us).
# reply is native: a consumer's `for pid, term in ch: reply(pid, term)` runs no bytecode of
# its own between taking a term and sending it, so a cancel never falls in between.
from ._native import ChannelClosed, _NativeChannel, reply

if TYPE_CHECKING:
    import asyncio

    from typing_extensions import Self

__all__ = ["Channel", "ChannelClosed", "reply"]


class Channel(_NativeChannel):
    """An end of an Erlang channel, to read from (``receive``, ``for``, ``async for``) and to
    write to (``send``, ``try_send``, ``async_send``).

    ``Channel(ref, binary='bytes')`` delivers every binary as ``bytes`` (by default a binary
    that is valid UTF-8 arrives as ``str``); ``binary='memoryview'`` as a read-only
    ``memoryview`` over the Erlang binary's own bytes, never copied, which keeps the binary
    alive as long as it (or anything made from it, such as ``numpy.frombuffer``) lives.
    """

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> Literal[False]:
        self.close()
        return False

    async def async_receive(self) -> Any:
        """The next message, waiting without blocking the event loop's thread. Raises
        ChannelClosed once the channel is closed and drained."""
        while True:
            try:
                return self.receive(0)
            except TimeoutError:
                pass
            await self._wait_readable()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.async_receive()
        except ChannelClosed:
            raise StopAsyncIteration from None

    async def async_send(self, term: object) -> None:
        """Queues ``term``, waiting for room without blocking the event loop's thread (the
        loop is woken through a file descriptor when a reader frees room: no polling).
        Raises ChannelClosed if the channel is closed, ValueError if the message alone is
        larger than ``max_size``. Cancelling the coroutine queues nothing."""
        if self.try_send(term):
            return
        import asyncio

        loop = asyncio.get_running_loop()
        read_fd, write_fd, is_eventfd = _wake_descriptors()
        try:
            ticket: int | None = None
            while True:
                try:
                    waiter = self._park_sender(term, write_fd, is_eventfd, ticket)
                except BaseException:
                    # Woken, but failing to try again: the wake goes to the next sender.
                    if ticket is not None:
                        self._cancel_send(ticket)
                    raise
                if waiter is None:
                    return
                room = loop.create_future()
                loop.add_reader(read_fd, _resolve, room)
                try:
                    await room
                except BaseException:
                    # Cancelled: a wake we were given goes to the next waiting sender.
                    self._cancel_send(waiter)
                    raise
                finally:
                    loop.remove_reader(read_fd)
                _drain(read_fd)
                ticket = waiter
        finally:
            os.close(read_fd)
            if write_fd != read_fd:
                os.close(write_fd)

    async def _wait_readable(self) -> None:
        """Returns once a message or the close has arrived (another reader may take it)."""
        import asyncio

        loop = asyncio.get_running_loop()
        read_fd, write_fd, is_eventfd = _wake_descriptors()
        try:
            waiter = self._park_fd(write_fd, is_eventfd)
            if waiter is None:
                return
            ready = loop.create_future()
            loop.add_reader(read_fd, _resolve, ready)
            try:
                await ready
            except BaseException:
                # Cancelled: a wake we were given goes to another reader.
                self._cancel_wait(waiter)
                raise
            finally:
                loop.remove_reader(read_fd)
        finally:
            os.close(read_fd)
            if write_fd != read_fd:
                os.close(write_fd)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _drain(read_fd: int) -> None:
    """Empties a wake descriptor, so the next wait does not end at once."""
    try:
        while os.read(read_fd, 8):
            pass
    except BlockingIOError:
        pass


def _wake_descriptors() -> tuple[int, int, bool]:
    """(read end, write end, is_eventfd): an eventfd where there is one, else a pipe."""
    if hasattr(os, "eventfd"):
        fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        return fd, fd, True
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    return read_fd, write_fd, False
