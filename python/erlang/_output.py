"""``sys.stdout`` and ``sys.stderr`` of the embedded interpreter.

Each writes whole lines to the group leader of the Erlang process the running code works for
(an IEx shell, a piped ``erl -noshell``, ``capture_io``), or, on a thread Python code started
itself, to the node's standard output. A partial line waits, per thread, for its newline or a
``flush()`` (done at the end of every call); the buffering is the native module's.
"""

import io

from _py_channel import _flush_output, _write_output


class Output(io.TextIOBase):
    """A line-buffered text stream that writes to Erlang."""

    encoding = "utf-8"

    def __init__(self, stream: int, name: str) -> None:
        super().__init__()
        self._stream = stream
        self._name = name

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
        _write_output(self._stream, text)
        return len(text)

    def flush(self) -> None:
        _flush_output(self._stream)


def install() -> None:
    """Makes ``print`` and ``sys.stdout``/``sys.stderr`` writes reach Erlang."""
    import sys

    sys.stdout = Output(1, "<stdout>")
    sys.stderr = Output(2, "<stderr>")
