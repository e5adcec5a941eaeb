"""A consumer as an application would write it, run in the BEAM by py_channel, and here
unit-tested outside it (test_sample_consumer.py) with erlang.testing."""

from __future__ import annotations

from typing import Any

from erlang import Atom
from erlang.channel import Channel, reply

RESULT = Atom("result")


def squares(channel_ref: Any) -> int:
    """Answers each ``(sender, n)`` with ``(result, n * n)``; returns how many it answered."""
    answered = 0
    for sender, n in Channel(channel_ref):
        reply(sender, (RESULT, n * n))
        answered += 1
    return answered


def produce(channel_ref: Any, rows: list[str]) -> None:
    """Writes each row, upper-cased, then closes the channel."""
    with Channel(channel_ref) as channel:
        for row in rows:
            channel.send(row.upper())


async def total(channel_ref: Any) -> int:
    """Sums what comes, reading through the event loop."""
    result = 0
    async for n in Channel(channel_ref):
        result += n
    return result
