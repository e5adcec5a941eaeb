"""The Python side of ``py:stream``: what a generator yields goes into a channel, with
backpressure (the generator is paused while the channel is full), and the channel is
closed at the end, however the generator ends."""

from __future__ import annotations

import asyncio
from typing import Any

from _py_channel import ChannelRef

from .channel import Channel


def pump(ref: ChannelRef, produced: object) -> None:
    """Sends every item of ``produced`` (an iterable, a generator, an async iterable or async
    generator) into the channel ``ref``, then closes it."""
    channel = Channel(ref)
    try:
        if hasattr(produced, "__aiter__"):
            asyncio.run(_pump_async(channel, produced))
        elif hasattr(produced, "__iter__") and not isinstance(produced, (str, bytes, bytearray)):
            _pump(channel, produced)
        else:
            raise TypeError(
                "py:stream needs a function that returns a generator or another iterable, "
                f"not {type(produced).__name__}"
            )
    finally:
        channel.close()


def close(ref: ChannelRef) -> None:
    """Closes the channel ``ref``: the stream ends before it began."""
    Channel(ref).close()


def _pump(channel: Channel, produced: Any) -> None:
    try:
        for item in produced:
            channel.send(item)
    finally:
        # Stopped early (cancelled, the reader closed the channel): the generator's own
        # cleanup (its finally blocks) runs now, not whenever it is collected.
        close_generator = getattr(produced, "close", None)
        if close_generator is not None:
            close_generator()


async def _pump_async(channel: Channel, produced: Any) -> None:
    try:
        async for item in produced:
            await channel.async_send(item)
    finally:
        close_generator = getattr(produced, "aclose", None)
        if close_generator is not None:
            await close_generator()
