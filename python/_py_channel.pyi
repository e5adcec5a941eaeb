# The native module the NIF registers in the embedded interpreter (it exists only there);
# the package `erlang` re-exports its public names. test/py_stubs_tests.erl checks this stub
# against the real module with mypy.stubtest.

import sys
from typing import Any, Literal, TypedDict, final, type_check_only

from typing_extensions import Self, disjoint_base

__all__ = [
    "send",
    "reply",
    "call",
    "_write_output",
    "_flush_output",
    "_log",
    "Binary",
    "Pid",
    "Ref",
    "Term",
    "ChannelRef",
    "Caller",
    "_NativeChannel",
    "ChannelClosed",
    "ProcessError",
    "CallError",
    "Cancelled",
]

# Term classes: made only by the conversion of an Erlang term (no constructor), and final.

@final
class Pid:
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

# What a memoryview of an Erlang binary exports (`memoryview.obj`): read-only bytes.
@final
class Binary:
    def __len__(self) -> int: ...
    if sys.version_info >= (3, 12):
        # No __release_buffer__: releasing a view only drops its reference to this object.
        def __buffer__(self, flags: int, /) -> memoryview: ...

@final
class Ref:
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Term:
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class ChannelRef:
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

# An Erlang process waiting in py_channel:call/3: its request comes as (caller, request).
@final
class Caller:
    @property
    def pid(self) -> Pid: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

class ProcessError(RuntimeError): ...
class ChannelClosed(Exception): ...
class CallError(Exception): ...
class Cancelled(BaseException): ...

def send(pid: Pid | Term, term: object) -> None:
    """Sends ``term`` to the Erlang process ``pid`` (``Pid ! Term``). A process on another
    node arrives in Python as the ``Term`` of its pid: sent to as well, through the
    ``py_runtime`` process, without knowing whether it is alive."""
def reply(to: Pid | Term | Caller, term: object) -> bool:
    """Sends ``term`` to the Erlang process ``to`` (``Pid ! Term``) and returns True, as
    erlang_python's ``reply`` does; raises erlang.ProcessError (a RuntimeError) if a local
    process is not alive. To a :class:`Caller` (a request of ``py_channel:call/3``): its
    reply, True if delivered, False if the caller no longer waits (it timed out or exited);
    a second reply to one caller raises ValueError."""
def call(name: str, *args: object) -> Any: ...
def _write_output(stream: int, text: str) -> None: ...
def _flush_output(stream: int) -> None: ...
def _log(level: str, name: str, message: str) -> None: ...

# Only for type checkers: at run time info() returns a plain dict with these keys.
@type_check_only
class ChannelInfo(TypedDict):
    size: int
    max_size: int
    closed: bool
    length: int
    waiting_readers: int
    waiting_senders: int
    sent: int
    received: int
    busy: int
    sent_bytes: int
    received_bytes: int

@disjoint_base
class _NativeChannel:
    def __new__(cls, channel: ChannelRef | _NativeChannel, binary: Literal["auto", "bytes", "memoryview"] = "auto") -> Self: ...
    # `timeout` in seconds; `timeout_ms` for code written against erlang_python.
    def receive(self, timeout: float | None = None, *, timeout_ms: int | None = None) -> Any: ...
    # `default` when the channel is empty, so a received None can be told apart.
    def try_receive(self, default: object = None) -> Any: ...
    def receive_many(
        self, max_items: int, timeout: float | None = None, *, timeout_ms: int | None = None
    ) -> list[Any]: ...
    # Waits for room (GIL released); `timeout` in seconds, `timeout_ms` in milliseconds.
    def send(self, term: object, timeout: float | None = None, *, timeout_ms: int | None = None) -> None: ...
    def try_send(self, term: object) -> bool: ...
    def close(self) -> None: ...
    def info(self) -> ChannelInfo: ...
    @property
    def ref(self) -> ChannelRef: ...
    def __iter__(self) -> Self: ...
    def __next__(self) -> Any: ...
    def _park_fd(self, fd: int, eventfd: bool) -> int | None: ...
    def _cancel_wait(self, waiter_id: int) -> None: ...
    def _park_sender(self, term: object, fd: int, eventfd: bool, ticket: int | None) -> int | None: ...
    def _cancel_send(self, waiter_id: int) -> None: ...
