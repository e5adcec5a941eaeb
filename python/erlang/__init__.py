"""The Erlang side of the embedded interpreter.

Terms arrive as Python objects (see the type table in the py_channel docs): atoms as
:class:`Atom`, pids as :class:`Pid`, references as :class:`Ref`, channels as
:class:`ChannelRef`, a process waiting in ``py_channel:call/3`` as :class:`Caller`,
anything else without a Python counterpart as :class:`Term`. Each goes back to Erlang as
the same term.
"""

from ._atom import Atom
from ._native import (
    Binary,
    CallError,
    Caller,
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


def _venv_version(path: str) -> str | None:
    """The ``major.minor`` of the Python that made the venv at ``path``, from its pyvenv.cfg
    (``version`` of venv and virtualenv, ``version_info`` of uv), or None if it says none."""
    import os
    import re

    try:
        with open(os.path.join(path, "pyvenv.cfg"), encoding="utf-8") as config:
            text = config.read()
    except OSError:
        return None
    found = re.search(r"^\s*version(?:_info)?\s*=\s*(\d+)\.(\d+)", text, re.MULTILINE)
    return f"{found.group(1)}.{found.group(2)}" if found else None


def _add_path(path: str) -> None:
    """Puts ``path`` first on sys.path, once (``py:add_path/1``)."""
    import sys

    if path in sys.path:
        sys.path.remove(path)
    sys.path.insert(0, path)


def _activate_venv(path: str) -> None:
    """Makes the packages of the virtualenv at ``path`` importable (``py:activate_venv/1``)."""
    import glob
    import os
    import site
    import sys

    path = os.path.abspath(path)
    made_by = _venv_version(path)
    running = "%d.%d" % sys.version_info[:2]
    if made_by is not None and made_by != running:
        raise ValueError(
            f"the venv {path} was made by Python {made_by}, and the embedded Python is"
            f" {running}: make the venv with Python {running}"
        )
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
