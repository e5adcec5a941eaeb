"""The Erlang side of the embedded interpreter.

Terms arrive as Python objects (see the type table in the py_channel docs): atoms as
:class:`Atom`, pids as :class:`Pid`, references as :class:`Ref`, channels as
:class:`ChannelRef`, anything else without a Python counterpart as :class:`Term`. Each goes
back to Erlang as the same term.
"""

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
    call,
    send,
)

from .channel import Channel, reply

__all__ = [
    "Atom",
    "Binary",
    "CallError",
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


class Atom(str):
    """An Erlang atom. A ``str``, so ``msg[0] == 'request'`` holds; only an ``Atom``
    becomes an atom on the way back (a plain ``str`` becomes a binary)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Atom({str.__repr__(self)})"


def _activate_venv(path: str) -> None:
    """Makes the packages of the virtualenv at ``path`` importable (``py:activate_venv/1``)."""
    import glob
    import os
    import site
    import sys

    path = os.path.abspath(path)
    candidates = glob.glob(os.path.join(path, "lib", "python*", "site-packages"))
    candidates += glob.glob(os.path.join(path, "Lib", "site-packages"))
    if not candidates:
        raise FileNotFoundError(f"no site-packages under {path}")
    for site_packages in candidates:
        before = list(sys.path)
        site.addsitedir(site_packages)
        added = [entry for entry in sys.path if entry not in before]
        # Ahead of the base interpreter's packages, as an activated venv would be.
        for entry in reversed([site_packages] + added):
            if entry in sys.path:
                sys.path.remove(entry)
            sys.path.insert(0, entry)
    sys.prefix = path
    os.environ["VIRTUAL_ENV"] = path
