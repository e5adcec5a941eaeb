"""What the package takes from the native module ``_py_channel``, which the NIF registers in
the embedded interpreter. Outside the BEAM (a consumer's unit tests) there is none: the
same names then come from ``erlang._standalone``, which reads and replies through the
stand-ins of ``erlang.testing`` and says clearly what needs the BEAM."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _py_channel import (
        Binary,
        CallError,
        Cancelled,
        ChannelClosed,
        ChannelRef,
        Pid,
        ProcessError,
        Ref,
        Term,
        _NativeChannel,
        call,
        reply,
        send,
    )
else:
    try:
        from _py_channel import (
            Binary,
            CallError,
            Cancelled,
            ChannelClosed,
            ChannelRef,
            Pid,
            ProcessError,
            Ref,
            Term,
            _NativeChannel,
            call,
            reply,
            send,
        )
    except ModuleNotFoundError:
        from ._standalone import (
            Binary,
            CallError,
            Cancelled,
            ChannelClosed,
            ChannelRef,
            Pid,
            ProcessError,
            Ref,
            Term,
            _NativeChannel,
            call,
            reply,
            send,
        )

__all__ = [
    "Binary",
    "CallError",
    "Cancelled",
    "ChannelClosed",
    "ChannelRef",
    "Pid",
    "ProcessError",
    "Ref",
    "Term",
    "_NativeChannel",
    "call",
    "reply",
    "send",
]
