"""``sys.stdout`` and ``sys.stderr`` of the embedded interpreter.

Each writes whole lines to the group leader of the Erlang process the running code works for
(an IEx shell, a piped ``erl -noshell``, ``capture_io``), or, on a thread Python code started
itself, to the node's standard output. A partial line waits, per thread, for its newline or a
``flush()`` (done at the end of every call).
"""

import io
import threading

from _py_channel import _write_output


class Output(io.TextIOBase):
    """A line-buffered text stream that writes to Erlang."""

    encoding = "utf-8"

    def __init__(self, stream: int, name: str) -> None:
        super().__init__()
        self._stream = stream
        self._name = name
        self._pending = threading.local()

    @property
    def name(self) -> str:
        return self._name

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        pending: str = getattr(self._pending, "text", "") + text
        complete, newline, rest = pending.rpartition("\n")
        self._pending.text = rest
        if newline:
            _write_output(self._stream, complete + newline)
        return len(text)

    def flush(self) -> None:
        pending: str = getattr(self._pending, "text", "")
        if pending:
            self._pending.text = ""
            _write_output(self._stream, pending)


def install() -> None:
    """Makes ``print`` and ``sys.stdout``/``sys.stderr`` writes reach Erlang."""
    import sys

    sys.stdout = Output(1, "<stdout>")
    sys.stderr = Output(2, "<stderr>")
