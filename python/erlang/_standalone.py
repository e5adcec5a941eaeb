"""The names of the native module ``_py_channel`` for an interpreter that is not embedded
in the BEAM (see ``erlang._native``): reading and replying go to the stand-ins of
``erlang.testing``; what needs the BEAM says so when used."""

from __future__ import annotations

from typing import Any, Literal, NoReturn

from . import testing
from .testing import Caller as Caller
from .testing import ChannelClosed as ChannelClosed
from .testing import Pid as Pid

_OUTSIDE = "outside the BEAM (no py_channel NIF in this interpreter)"


class ProcessError(RuntimeError):
    """The Erlang process is not alive."""


class CallError(Exception):
    """An Erlang function called with erlang.call failed or does not exist."""


class Cancelled(BaseException):
    """The call was cancelled from Erlang."""


class _OnlyInTheBeam:
    """Terms of these kinds come only from Erlang."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError(f"{type(self).__name__} terms come only from Erlang: {_OUTSIDE}")


class Ref(_OnlyInTheBeam):
    """An Erlang reference."""


class Term(_OnlyInTheBeam):
    """An Erlang term without a Python counterpart."""


class ChannelRef(_OnlyInTheBeam):
    """A channel handle."""


class Binary(_OnlyInTheBeam):
    """The exporter behind a memoryview of an Erlang binary."""


class _NativeChannel(testing.Channel):
    """Reads and writes the ``erlang.testing.Channel`` given in place of a channel handle."""

    def __init__(
        self, channel: object, binary: Literal["auto", "bytes", "memoryview"] = "auto"
    ) -> None:
        if not isinstance(channel, testing.Channel):
            raise TypeError(
                f"Channel() needs a channel from Erlang, {_OUTSIDE}: "
                f"in tests, pass an erlang.testing.Channel (got {type(channel).__name__})"
            )
        # The same items and writes as the stand-in given: a view of it.
        self.__dict__ = channel.__dict__

    def _park_fd(self, fd: int, eventfd: bool) -> NoReturn:
        raise TimeoutError("no message, and an erlang.testing.Channel gets no more")

    def _cancel_wait(self, waiter_id: int) -> None:
        pass

    def _park_sender(self, term: object, fd: int, eventfd: bool, ticket: int | None) -> NoReturn:
        raise TimeoutError("the channel is full (its max_size messages are in sent)")

    def _cancel_send(self, waiter_id: int) -> None:
        pass


def send(pid: object, term: object) -> None:
    """Appends ``term`` to the ``messages`` of an ``erlang.testing.Pid``."""
    if not isinstance(pid, testing.Pid):
        raise TypeError(f"send() needs an erlang.testing.Pid {_OUTSIDE}, not {type(pid).__name__}")
    testing.send(pid, term)


def reply(to: object, term: object) -> bool:
    """``testing.reply``: to an ``erlang.testing.Pid`` or ``erlang.testing.Caller``."""
    if not isinstance(to, (testing.Pid, testing.Caller)):
        raise TypeError(
            f"reply() needs an erlang.testing.Pid or Caller {_OUTSIDE}, not {type(to).__name__}"
        )
    return testing.reply(to, term)


def call(name: str, *args: object) -> Any:
    """Erlang functions are there only in the BEAM."""
    raise CallError(f"erlang.call({name!r}) has no Erlang to call {_OUTSIDE}")
