"""What the package takes from the native module ``_py_channel``, which the NIF registers in
the embedded interpreter. Outside the BEAM (a consumer's unit tests) there is none: the
same names then come from ``erlang._standalone``, which reads and replies through the
stand-ins of ``erlang.testing`` and says clearly what needs the BEAM."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import _py_channel as native
else:
    try:
        import _py_channel as native
    except ModuleNotFoundError:
        from . import _standalone as native

Binary = native.Binary
CallError = native.CallError
Caller = native.Caller
Cancelled = native.Cancelled
ChannelClosed = native.ChannelClosed
ChannelRef = native.ChannelRef
Pid = native.Pid
ProcessError = native.ProcessError
Ref = native.Ref
Term = native.Term
_NativeChannel = native._NativeChannel
call = native.call
reply = native.reply
send = native.send
