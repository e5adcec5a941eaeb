"""pytest, outside the BEAM: `make test-pytest` (part of `make test`)."""

from __future__ import annotations

import asyncio

import pytest

import erlang
import sample_consumer
from erlang import testing


def test_no_native_module_here() -> None:
    # These tests run without py_channel's NIF: erlang imports all the same.
    with pytest.raises(ModuleNotFoundError):
        import _py_channel  # noqa: F401
    assert erlang.Pid is testing.Pid


def test_squares_replies_to_each_sender() -> None:
    alice, bob = testing.Pid("alice"), testing.Pid("bob")
    channel = testing.Channel([(alice, 3), (bob, 4), (alice, 5)])
    assert sample_consumer.squares(channel) == 3
    assert alice.messages == [("result", 9), ("result", 25)]
    assert isinstance(alice.messages[0][0], erlang.Atom)
    assert bob.messages == [("result", 16)]


def test_squares_answers_calls_once() -> None:
    # A request of py_channel:call/3 comes with an erlang.Caller: one reply each.
    caller, gone = testing.Caller("caller"), testing.Caller("gone", waiting=False)
    assert erlang.Caller is testing.Caller
    assert sample_consumer.squares(testing.Channel([(caller, 6), (gone, 7)])) == 2
    assert caller.messages == [("result", 36)]
    assert gone.messages == []
    assert erlang.reply(gone, "late") is False
    with pytest.raises(ValueError, match="already replied"):
        erlang.reply(caller, "again")


def test_produce_writes_then_closes() -> None:
    channel = testing.Channel()
    sample_consumer.produce(channel, ["a", "b"])
    assert channel.sent == ["A", "B"]
    assert channel.closed
    with pytest.raises(erlang.ChannelClosed):
        channel.send("late")


def test_a_full_channel_refuses() -> None:
    channel = testing.Channel(max_size=1)
    assert channel.try_send(1)
    assert not channel.try_send(2)
    with pytest.raises(TimeoutError):
        channel.send(3)


def test_async_reader() -> None:
    assert asyncio.run(sample_consumer.total(testing.Channel([1, 2, 3]))) == 6


def test_an_open_channel_does_not_wait() -> None:
    channel = testing.Channel([1], more=True)
    assert erlang.Channel(channel).receive() == 1
    with pytest.raises(TimeoutError):
        erlang.Channel(channel).receive(timeout=5)
    assert channel.try_receive("none") == "none"
    assert channel.receive_many(10) == []


def test_what_needs_the_beam_says_so() -> None:
    with pytest.raises(TypeError, match="erlang.testing.Channel"):
        erlang.Channel(object())
    with pytest.raises(TypeError, match="erlang.testing.Pid"):
        erlang.send(object(), "x")
    with pytest.raises(erlang.CallError, match="no Erlang"):
        erlang.call("anything")
