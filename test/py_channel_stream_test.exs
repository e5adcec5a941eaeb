defmodule PyChannelStreamTest do
  use ExUnit.Case, async: true

  # A GenServer that reads a channel through a subscription, asking for more
  # credit each time it runs out, and reports everything it got at the close.
  defmodule Collector do
    use GenServer

    @credit 50

    def start_link(channel, report_to),
      do: GenServer.start_link(__MODULE__, {channel, report_to})

    @impl true
    def init({channel, report_to}) do
      :ok = PyChannel.subscribe(channel, @credit)
      {:ok, %{report_to: report_to, terms: []}}
    end

    @impl true
    def handle_info({:py_channel, _channel, term}, state),
      do: {:noreply, %{state | terms: [term | state.terms]}}

    def handle_info({:py_channel_passive, channel}, state) do
      :ok = PyChannel.subscribe(channel, @credit)
      {:noreply, state}
    end

    def handle_info({:py_channel_closed, _channel}, state) do
      send(state.report_to, {:collected, self(), Enum.reverse(state.terms)})
      {:stop, :normal, state}
    end
  end

  test "stream/1 round trips 100,000 terms in order" do
    {:ok, channel} = PyChannel.new(max_size: 8_192)
    producer = Task.async(fn -> produce(channel, 1..100_000) end)
    assert Enum.to_list(PyChannel.stream(channel)) == Enum.to_list(1..100_000)
    assert :ok = Task.await(producer, 60_000)
    assert %{length: 0, received: 100_000} = PyChannel.info(channel)
  end

  test "Enum.into and PyChannel.stream round trip 100,000 terms, with backpressure" do
    {:ok, channel} = PyChannel.new(max_size: 4_096)
    terms = for n <- 1..100_000, do: {:item, n}

    producer =
      Task.async(fn ->
        Enum.into(terms, PyChannel.into(channel))
        PyChannel.close(channel)
      end)

    assert Enum.to_list(PyChannel.stream(channel)) == terms
    assert :ok = Task.await(producer, 60_000)
    assert %{busy: busy, waiting_senders: 0} = PyChannel.info(channel)
    assert busy > 0
  end

  test "Py.stream: a generator's items, then Py.Error with the traceback if it raises" do
    :ok =
      Py.exec("""
      def rows(count, fail_at=None):
          for n in range(count):
              if n == fail_at:
                  raise KeyError(n)
              yield {'n': n}
      """)

    assert Enum.to_list(Py.stream(:__main__, :rows, [3])) == [
             %{"n" => 0},
             %{"n" => 1},
             %{"n" => 2}
           ]

    stream = Py.stream(:__main__, :rows, [100], kwargs: [fail_at: 2], max_size: 64)
    error = assert_raise Py.Error, fn -> Enum.each(stream, &send(self(), {:row, &1})) end
    assert error.type == :KeyError
    assert error.traceback =~ ~r/line 4, in rows/
    assert_received {:row, %{"n" => 0}}
    assert_received {:row, %{"n" => 1}}
    refute_received {:row, _}
  end

  test "Py.stream halted early stops the generator and leaves no message behind" do
    :ok =
      Py.exec("""
      import builtins
      builtins.py_stream_test_stopped = []
      def endless():
          try:
              n = 0
              while True:
                  yield n
                  n += 1
          finally:
              builtins.py_stream_test_stopped.append(True)
      """)

    assert Enum.take(Py.stream(:__main__, :endless, [], max_size: 64), 5) == [0, 1, 2, 3, 4]
    assert {:ok, [true]} = Py.eval("__import__('builtins').py_stream_test_stopped")
    refute_receive _, 100
  end

  test "a stream halted early takes nothing more: the rest stays queued" do
    {:ok, channel} = PyChannel.new()
    for n <- 1..10, do: :ok = PyChannel.send(channel, n)

    assert Enum.take(PyChannel.stream(channel), 3) == [1, 2, 3]
    assert %{length: 7, received: 3} = PyChannel.info(channel)
    assert PyChannel.try_receive(channel) == {:ok, 4}

    # Each new stream picks up where the last reader stopped.
    assert Enum.take(PyChannel.stream(channel), 2) == [5, 6]
    :ok = PyChannel.close(channel)
    assert Enum.to_list(PyChannel.stream(channel)) == Enum.to_list(7..10)
    assert Enum.to_list(PyChannel.stream(channel)) == []
  end

  test "a GenServer subscribed in init and renewing in handle_info gets every term" do
    {:ok, channel} = PyChannel.new(max_size: 4_096)
    {:ok, collector} = Collector.start_link(channel, self())
    ref = Process.monitor(collector)
    producer = Task.async(fn -> produce(channel, 1..20_000) end)
    assert :ok = Task.await(producer, 60_000)

    assert_receive {:collected, ^collector, terms}, 60_000
    assert terms == Enum.to_list(1..20_000)
    assert_receive {:DOWN, ^ref, :process, ^collector, :normal}, 5_000
    assert %{length: 0, waiting_readers: 0} = PyChannel.info(channel)
  end

  test "subscribe/2 with a bad credit or a non-channel raises ArgumentError" do
    {:ok, channel} = PyChannel.new()
    assert_raise ArgumentError, fn -> PyChannel.subscribe(channel, -1) end
    assert_raise ArgumentError, fn -> PyChannel.subscribe(channel, :infinity) end
    assert_raise ArgumentError, fn -> PyChannel.subscribe(make_ref(), 1) end
    assert_raise ArgumentError, fn -> PyChannel.stream(:not_a_channel) |> Enum.take(1) end
  end

  # Sends every term, retrying while the channel is full, then closes it.
  defp produce(channel, terms) do
    Enum.each(terms, &send_retrying(channel, &1))
    PyChannel.close(channel)
  end

  defp send_retrying(channel, term) do
    case PyChannel.send(channel, term) do
      :ok ->
        :ok

      :busy ->
        :erlang.yield()
        send_retrying(channel, term)
    end
  end
end
