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
      import erlang
      from erlang.channel import Channel, reply

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

  # The same Python source as test/py_tests.erl runs from Erlang: Channel, ChannelClosed and
  # reply come with every process namespace, not from this wrapper.
  @serve """
  def serve(ref):
      for sender, value in Channel(ref):
          reply(sender, ('doubled', 2 * value))
      try:
          Channel(ref).receive(0)
      except ChannelClosed:
          return 'closed'
  """

  test "Channel, ChannelClosed and reply need no import" do
    task =
      Task.async(fn ->
        :ok = Py.exec(@serve)
        {:ok, channel} = PyChannel.new()
        server = Py.spawn_call(:__main__, :serve, [channel])
        for n <- 1..3, do: :ok = PyChannel.send(channel, {self(), n})
        :ok = PyChannel.close(channel)
        replies = for _ <- 1..3, do: assert_receive({"doubled", n}, 5_000) && n
        {Py.await(server, 10_000), replies}
      end)

    assert {{:ok, "closed"}, [2, 4, 6]} = Task.await(task, 15_000)

    assert {:ok, true} =
             Py.eval(
               "Channel is __import__('erlang.channel').channel.Channel and " <>
                 "reply is __import__('erlang.channel').channel.reply"
             )
  end

  test "Py raises nothing of its own: every failure is :py's answer" do
    assert {:error, {:NameError, _}} = Py.eval("undefined_name")
    assert {:error, {:ModuleNotFoundError, _}} = Py.call(:no_such_module, :f)
    assert {:error, :timeout} = Py.call(:time, :sleep, [1], %{}, 10)
    assert {:error, :timeout} = Py.await(Py.spawn_call(:time, :sleep, [1]), 10)
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

  test "timeout: stops the Python code of every Py function that waits" do
    :ok =
      Py.exec(
        "import builtins\nbuiltins.py_ex_spins = 0\ndef spin():\n    while True:\n        builtins.py_ex_spins += 1\n"
      )

    assert {:error, :timeout} = Py.call(:__main__, :spin, [], %{}, timeout: 200)
    assert {:error, :timeout} = Py.eval("spin()", %{}, timeout: 200)
    assert {:error, :timeout} = Py.exec("spin()", timeout: 200)
    assert {:error, :timeout} = Py.await(Py.spawn_call(:__main__, :spin, []), timeout: 200)

    # Stopped: the counter no longer moves.
    Process.sleep(100)
    {:ok, before} = Py.eval("builtins.py_ex_spins")
    Process.sleep(300)
    assert {:ok, ^before} = Py.eval("builtins.py_ex_spins")

    assert_raise ArgumentError, fn -> Py.exec("x = 1", tiemout: 5) end
  end

  test "print output is captured by capture_io" do
    output = ExUnit.CaptureIO.capture_io(fn -> :ok = Py.exec("print('seen by capture_io')") end)
    assert output == "seen by capture_io\n"
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
