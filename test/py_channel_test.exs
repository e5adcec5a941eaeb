defmodule PyChannelTest do
  use ExUnit.Case, async: true
  doctest PyChannel
  doctest Py

  test "new/1 takes a keyword list or a map; anything else is an argument error" do
    assert {:ok, _} = PyChannel.new(%{max_size: 10})
    assert {:ok, _} = PyChannel.new(max_size: 10, owner: self())
    assert {:error, {:badarg, :owner}} = PyChannel.new(owner: :nobody)
    assert_raise ArgumentError, fn -> PyChannel.new([1, 2]) end
    assert_raise FunctionClauseError, fn -> PyChannel.new(:nope) end
  end

  test "an Elixir process streams to a Python reader and receives its replies" do
    :ok =
      Py.exec("""
      def answer_each(channel_ref):
          count = 0
          for tag, sender, n in Channel(channel_ref):
              reply(sender, (erlang.Atom('squared'), n, n * n))
              count += 1
          return count
      """)

    {:ok, channel} = PyChannel.new(max_size: 4_096)
    reader = Py.spawn_call(:__main__, :answer_each, [channel])

    for n <- 1..5_000 do
      send_retrying(channel, {:number, self(), n})
    end

    :ok = PyChannel.close(channel)
    assert {:ok, 5_000} = Py.await(reader, 30_000)

    squares = for _ <- 1..5_000, do: assert_receive({:squared, n, sq} when sq == n * n, 5_000)
    assert Enum.map(squares, fn {:squared, n, _} -> n end) == Enum.to_list(1..5_000)
  end

  test "Elixir processes read a channel with recv/2, each term once" do
    {:ok, channel} = PyChannel.new(max_size: 1_024)
    parent = self()

    readers =
      for _ <- 1..3 do
        spawn_link(fn -> send(parent, {self(), drain(channel, [])}) end)
      end

    Enum.each(1..3_000, &send_retrying(channel, &1))
    :ok = PyChannel.close(channel)

    received =
      Enum.flat_map(readers, fn pid -> assert_receive({^pid, items}, 10_000) && items end)

    assert Enum.sort(received) == Enum.to_list(1..3_000)
  end

  defp drain(channel, acc) do
    case PyChannel.recv(channel, 10_000) do
      {:ok, item} -> drain(channel, [item | acc])
      {:error, :closed} -> acc
    end
  end

  defp send_retrying(channel, term) do
    case PyChannel.send(channel, term) do
      :ok ->
        :ok

      :busy ->
        Process.sleep(0)
        send_retrying(channel, term)
    end
  end
end
