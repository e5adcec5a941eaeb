# The native module the NIF registers in the embedded interpreter (it exists only there);
# the package `erlang` re-exports its public names. test/py_stubs_tests.erl checks this stub
# against the real module with mypy.stubtest.

from typing import Any, Literal, TypedDict, final, type_check_only

from typing_extensions import Self, disjoint_base

__all__ = [
    "send",
    "reply",
    "call",
    "_write_output",
    "_flush_output",
    "_log",
    "Pid",
    "Ref",
    "Term",
    "ChannelRef",
    "_ChannelReader",
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

class ProcessError(RuntimeError): ...
class ChannelClosed(Exception): ...
class CallError(Exception): ...
class Cancelled(BaseException): ...

def send(pid: Pid, term: object) -> None: ...
def reply(pid: Pid, term: object) -> bool:
    """Sends ``term`` to the Erlang process ``pid`` (``Pid ! Term``) and returns True, as
    erlang_python's ``reply`` does; raises erlang.ProcessError (a RuntimeError) if it is not
    alive."""
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
    sent: int
    received: int
    busy: int
    sent_bytes: int
    received_bytes: int

@disjoint_base
class _ChannelReader:
    def __new__(cls, channel: ChannelRef | _ChannelReader, binary: Literal["auto", "bytes"] = "auto") -> Self: ...
    # `timeout` in seconds; `timeout_ms` for code written against erlang_python.
    def receive(self, timeout: float | None = None, *, timeout_ms: int | None = None) -> Any: ...
    # `default` when the channel is empty, so a received None can be told apart.
    def try_receive(self, default: object = None) -> Any: ...
    def receive_many(
        self, max_items: int, timeout: float | None = None, *, timeout_ms: int | None = None
    ) -> list[Any]: ...
    def close(self) -> None: ...
    def info(self) -> ChannelInfo: ...
    @property
    def ref(self) -> ChannelRef: ...
    def __iter__(self) -> Self: ...
    def __next__(self) -> Any: ...
    def _park_fd(self, fd: int, eventfd: bool) -> int | None: ...
    def _cancel_wait(self, waiter_id: int) -> None: ...
