"""Python calls run by py:start_link in the supervision tests (test/py_supervision_tests.erl,
test/py_channel_test.exs)."""

import time

import erlang
from erlang.channel import Channel, reply


def forward(channel: object, collector: erlang.Pid, pause: float = 0.0) -> None:
    """Sends every term of the channel to collector; returns once it is closed and drained.
    With a pause (seconds), spins that long after each term is handled, so that a kill is
    likely to land while terms are queued."""
    for term in Channel(channel):
        reply(collector, term)
        deadline = time.monotonic() + pause
        while time.monotonic() < deadline:
            pass


def spin(watcher: erlang.Pid) -> None:
    """Burns CPU until cancelled, telling watcher when it starts and when it stops."""
    try:
        erlang.send(watcher, erlang.Atom("spinning"))
        while True:
            pass
    finally:
        erlang.send(watcher, erlang.Atom("stopped"))


def fail(message: str) -> None:
    raise ValueError(message)  # the tests look for this line in the logged traceback


def answer() -> int:
    return 42
