"""Stand-ins for unit-testing Python code that reads and replies through py_channel, with
pytest or unittest, outside the BEAM (no Erlang, no native module)::

    # consumer.py
    from erlang.channel import Channel, reply

    def serve(channel_ref):
        for sender, n in Channel(channel_ref):
            reply(sender, n * n)

    # test_consumer.py
    from erlang import testing
    import consumer

    def test_serve():
        caller = testing.Pid("caller")
        consumer.serve(testing.Channel([(caller, 3), (caller, 4)]))
        assert caller.messages == [9, 16]

Outside the BEAM, ``erlang.channel.Channel(ref)`` reads a :class:`Channel` given as ``ref``
(any other ``ref`` is a TypeError saying why), and ``reply``/``erlang.send`` to a
:class:`Pid` append to its ``messages``; ``reply`` to a :class:`Caller` (a request of
``py_channel:call/3``) too, once. ``erlang.Pid`` is :class:`Pid` there, ``erlang.Caller``
:class:`Caller`. Inside the
BEAM these stand-ins are not used: the real channel and pids are.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Iterable

from ._atom import Atom

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Atom", "Caller", "Channel", "ChannelClosed", "Pid", "reply", "send"]


class ChannelClosed(Exception):
    """Raised by a read of a closed and drained channel, or a write to a closed one (outside
    the BEAM, the same class as ``erlang.ChannelClosed``)."""


class Pid:
    """A process to send to: what is sent arrives in ``messages``, in order."""

    def __init__(self, name: str = "pid") -> None:
        self.name = name
        self.messages: list[Any] = []

    def __repr__(self) -> str:
        return f"testing.Pid({self.name!r})"


class Caller:
    """A process waiting in ``py_channel:call/3``: its request comes as ``(caller, request)``.
    ``reply(caller, term)`` appends ``term`` to ``messages`` and answers True, once: a second
    reply is a ValueError, as in the BEAM. With ``waiting=False`` (a caller that timed out or
    exited) a reply is dropped and answers False."""

    def __init__(self, name: str = "caller", *, waiting: bool = True) -> None:
        self.pid = Pid(name)
        self.waiting = waiting
        self.messages: list[Any] = []

    def __repr__(self) -> str:
        return f"testing.Caller({self.pid.name!r})"


class Channel:
    """A channel fed from ``items``: reads return them in order, then raise ChannelClosed
    (so ``for msg in channel`` ends), as a channel closed by its Erlang producer. With
    ``more=True`` a drained channel raises TimeoutError instead, as one still open (it
    does not wait: nothing else will come). What is written (``send``, ``try_send``,
    ``async_send``) goes to ``sent``, until ``close()``. ``max_size`` (a number of
    messages, 0 for no limit) makes ``try_send`` answer False when ``sent`` has that
    many."""

    def __init__(
        self, items: Iterable[object] = (), *, more: bool = False, max_size: int = 0
    ) -> None:
        self._items: deque[object] = deque(items)
        self._more = more
        self.closed = False
        self.max_size = max_size
        self.sent: list[object] = []

    def _ended(self) -> bool:
        return not self._items and (self.closed or not self._more)

    def receive(self, timeout: float | None = None, *, timeout_ms: int | None = None) -> Any:
        """The next item; ChannelClosed when closed and empty, TimeoutError when open and
        empty (whatever the timeout)."""
        if self._items:
            return self._items.popleft()
        if self._ended():
            raise ChannelClosed("the channel is closed")
        raise TimeoutError("no message, and an erlang.testing.Channel gets no more")

    def try_receive(self, default: object = None) -> Any:
        """The next item, or ``default`` when there is none."""
        if self._items:
            return self._items.popleft()
        return default

    def receive_many(
        self, max_items: int, timeout: float | None = None, *, timeout_ms: int | None = None
    ) -> list[Any]:
        """Up to ``max_items`` items; ChannelClosed when closed and empty."""
        if self._ended():
            raise ChannelClosed("the channel is closed")
        batch: list[Any] = []
        while self._items and len(batch) < max_items:
            batch.append(self._items.popleft())
        return batch

    def send(
        self, term: object, timeout: float | None = None, *, timeout_ms: int | None = None
    ) -> None:
        """Appends ``term`` to ``sent``; ChannelClosed if closed, TimeoutError if full."""
        if not self.try_send(term):
            raise TimeoutError("the channel is full (its max_size messages are in sent)")

    def try_send(self, term: object) -> bool:
        """Appends ``term`` to ``sent``: False if full; ChannelClosed if closed."""
        if self.closed:
            raise ChannelClosed("the channel is closed")
        if self.max_size and len(self.sent) >= self.max_size:
            return False
        self.sent.append(term)
        return True

    def close(self) -> None:
        """Closes it: reads drain what is left, then raise ChannelClosed; writes raise."""
        self.closed = True

    def info(self) -> dict[str, Any]:
        """``size`` and ``length`` count the items left to read."""
        return {
            "size": len(self._items),
            "length": len(self._items),
            "max_size": self.max_size,
            "closed": self.closed,
            "sent": len(self.sent),
        }

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> Any:
        try:
            return self.receive()
        except ChannelClosed:
            raise StopIteration from None


def reply(to: Pid | Caller, term: object) -> bool:
    """Appends ``term`` to ``to.messages``; True, as the real ``reply``. A :class:`Caller`
    takes one reply (a second is a ValueError), and one that no longer waits none (False)."""
    if isinstance(to, Caller):
        if not to.waiting:
            return False
        if to.messages:
            raise ValueError("this call was already replied to: a caller gets one reply")
        to.messages.append(term)
        return True
    send(to, term)
    return True


def send(pid: Pid, term: object) -> None:
    """Appends ``term`` to ``pid.messages``."""
    if not isinstance(pid, Pid):
        raise TypeError(f"send() needs an erlang.testing.Pid, not {type(pid).__name__}")
    pid.messages.append(term)
