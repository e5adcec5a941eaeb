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

  test "Enum.into fills a channel, waiting for room: 100,000 terms round trip" do
    {:ok, channel} = PyChannel.new(max_size: 4_096)
    reader = Task.async(fn -> drain(channel, []) end)
    terms = for n <- 1..100_000, do: {:row, n, "payload"}
    assert %PyChannel.Into{} = Enum.into(terms, PyChannel.into(channel))
    :ok = PyChannel.close(channel)
    assert Enum.reverse(Task.await(reader, 60_000)) == terms
    assert %{busy: busy, sent: 100_000} = PyChannel.info(channel)
    assert busy > 0

    # A term that cannot be sent raises, after the terms before it were queued.
    {:ok, small} = PyChannel.new(max_size: 16)

    error =
      assert_raise PyChannel.SendError, fn -> Enum.into([1, 2, 3], PyChannel.into(small, 10)) end

    assert error.reason == :timeout and error.term == 3
    assert PyChannel.info(small).length == 2
    :ok = PyChannel.close(small)
    assert_raise PyChannel.SendError, ~r/closed/, fn -> Enum.into([4], PyChannel.into(small)) end
    assert_raise ArgumentError, fn -> PyChannel.into(small, -1) end
  end

  describe "supervising Python" do
    # Crashes here are on purpose: keep their reports out of the test output.
    @describetag :capture_log

    setup do
      # The consumers of test/python/py_supervised.py.
      dir = Path.expand("python", __DIR__)

      {:ok, _} =
        Py.eval("d in __import__('sys').path or __import__('sys').path.insert(0, d)", %{d: dir})

      :ok
    end

    test "a consumer killed mid-stream is restarted and finishes the stream, nothing lost" do
      count = 10_000
      {:ok, channel} = PyChannel.new(max_size: 4_096)

      # 50 us of work after each term handled: the producer runs ahead of the consumer.
      children = [
        {Py,
         id: :consumer,
         module: :py_supervised,
         function: :forward,
         args: [channel, self(), 0.00005]}
      ]

      {:ok, supervisor} = Supervisor.start_link(children, strategy: :one_for_one)
      producer = Task.async(fn -> for n <- 1..count, do: send_retrying(channel, n) end)

      first = receive_integers(div(count, 3))
      [{:consumer, consumer, :worker, [Py]}] = Supervisor.which_children(supervisor)
      Process.exit(consumer, :kill)
      rest = receive_integers(count - div(count, 3))
      Task.await(producer, 30_000)

      assert Enum.sort(first ++ rest) == Enum.to_list(1..count)
      [{:consumer, restarted, :worker, [Py]}] = Supervisor.which_children(supervisor)
      assert is_pid(restarted) and restarted != consumer

      # Closed and drained, the consumer's call returns: it exits :normal (transient, so
      # not restarted), and nothing more arrives.
      ref = Process.monitor(restarted)
      :ok = PyChannel.close(channel)
      assert_receive {:DOWN, ^ref, :process, ^restarted, :normal}, 10_000
      refute_receive _, 100
      Supervisor.stop(supervisor)
    end

    test "start_link: exit reasons, and a shutdown that stops the Python" do
      Process.flag(:trap_exit, true)
      {:ok, pid} = Py.start_link(:py_supervised, :answer, [])
      assert_receive {:EXIT, ^pid, :normal}, 5_000

      {:ok, pid} = Py.start_link(module: :py_supervised, function: :fail, kwargs: [message: "kw"])
      assert_receive {:EXIT, ^pid, {:python, :ValueError, "kw"}}, 5_000
      assert Py.last_traceback() == nil

      {:ok, pid} = Py.start_link(:py_supervised, :spin, [self()])
      assert_receive :spinning, 5_000
      Process.exit(pid, :shutdown)
      assert_receive {:EXIT, ^pid, :shutdown}, 5_000
      assert_receive :stopped

      assert_raise ArgumentError, fn -> Py.start_link(module: :m, function: :f, bogus: 1) end
    end
  end

  defp receive_integers(0), do: []

  defp receive_integers(n) do
    receive do
      term when is_integer(term) -> [term | receive_integers(n - 1)]
    after
      30_000 -> flunk("#{n} terms missing")
    end
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
