from _py_channel import (
    Binary as Binary,
    CallError as CallError,
    Caller as Caller,
    Cancelled as Cancelled,
    ChannelClosed as ChannelClosed,
    ChannelRef as ChannelRef,
    Pid as Pid,
    ProcessError as ProcessError,
    Ref as Ref,
    Term as Term,
    call as call,
    send as send,
)

from .channel import Channel as Channel, reply as reply

__all__ = [
    "Atom",
    "Binary",
    "CallError",
    "Caller",
    "Cancelled",
    "Channel",
    "ChannelClosed",
    "ChannelRef",
    "Pid",
    "ProcessError",
    "Ref",
    "Term",
    "call",
    "reply",
    "send",
]

class Atom(str): ...
