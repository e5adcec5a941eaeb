defmodule PyChannel do
  @moduledoc """
  A backpressured channel from BEAM processes to Python code running in the
  embedded interpreter.

  A channel is a FIFO of terms held in native memory. Any process may `send/2`
  to it; Python reads it (`for msg in Channel(ref)`, or `await ch.async_receive()`)
  and answers with `reply(pid, term)`; `call/3` sends a request and waits for
  that reply. Elixir processes may read it too, with
  `try_receive/1`, `recv/2` and `stream/1`, or receive its terms as messages
  after `subscribe/2`.

  Sending never blocks and never waits for Python. It returns `:ok` (queued),
  `:busy` (the queued bytes plus this term's would exceed `:max_size`: retry
  later), `{:error, :too_large}` (the term alone exceeds `:max_size`) or
  `{:error, :closed}`. A term accepted with `:ok` is received exactly once, or
  is still queued: `close/1` stops new sends, but readers still drain what is
  queued before they see the end. The channel guide (`docs/channel.md`) has
  a table of every outcome as Erlang, Elixir, Gleam and Python spell it.

  A channel is owned by the process that created it (or `owner: pid`), like an
  ETS table: when the owner exits, the channel closes. Its memory is freed when
  the last reference to it, in Elixir, Erlang or Python, is gone.

  ## Examples

      iex> {:ok, channel} = PyChannel.new(max_size: 1_000)
      iex> PyChannel.send(channel, {:hello, "world"})
      :ok
      iex> PyChannel.info(channel).size > 0
      true
      iex> PyChannel.try_receive(channel)
      {:ok, {:hello, "world"}}
      iex> PyChannel.try_receive(channel)
      {:error, :empty}
      iex> PyChannel.send(channel, String.duplicate("x", 2_000))
      {:error, :too_large}
      iex> PyChannel.close(channel)
      :ok
      iex> PyChannel.send(channel, :late)
      {:error, :closed}

  Python reads the same channel (see `Py`):

      iex> {:ok, channel} = PyChannel.new()
      iex> :ok = PyChannel.send(channel, 20)
      iex> :ok = PyChannel.send(channel, 22)
      iex> :ok = PyChannel.close(channel)
      iex> Py.eval("sum(Channel(ch))", %{ch: channel})
      {:ok, 42}

  The wrapper is thin: every function is the Erlang `:py_channel` one, which
  keeps erlang_python's contract.
  """

  @typedoc "A channel. It can be sent in messages, stored, and passed to Python."
  @type t :: :py_channel.channel()

  @typedoc """
  A process waiting in `call/3`: its request comes to the reader as
  `{caller, request}`, and `reply/2` (Python's `reply(caller, term)`) answers
  it, once.
  """
  @type caller :: :py_channel.caller()

  @typedoc "`:max_size` in bytes (0, the default, is unlimited); `:owner`, a local pid."
  @type option :: {:max_size, non_neg_integer()} | {:owner, pid()}

  @typedoc """
  `:size` (bytes queued, as `term_size/1` counts them), `:max_size` (0 is
  unlimited), `:closed`, `:length` (terms queued) and `:waiting_readers`
  (readers parked right now), `:waiting_senders` (senders waiting for room
  right now); and running totals since the channel was made:
  `:sent` (terms accepted), `:received` (terms taken), `:busy` (sends refused
  with `:busy`), `:sent_bytes` and `:received_bytes`. The keys of
  `:py_channel.info/1`.
  """
  @type info :: :py_channel.info()

  @doc """
  Creates a channel owned by the caller (or by `:owner`).

  Options come as a keyword list or a map. A bad value or an unknown option
  gives `{:error, {:badarg, key}}`.

      iex> {:ok, _channel} = PyChannel.new(max_size: 65_536)
      iex> PyChannel.new(max_size: -1)
      {:error, {:badarg, :max_size}}
      iex> PyChannel.new(colour: :blue)
      {:error, {:badarg, :colour}}
  """
  @spec new([option()] | %{optional(atom()) => term()}) ::
          {:ok, t()} | {:error, {:badarg, term()}}
  def new(options \\ [])

  def new(options) when is_list(options) do
    if Keyword.keyword?(options) do
      :py_channel.new(Map.new(options))
    else
      raise ArgumentError,
            "PyChannel.new/1 expects a keyword list or a map, got: #{inspect(options)}"
    end
  end

  def new(options) when is_map(options), do: :py_channel.new(options)

  @doc "Queues `term` without blocking. See the module doc for the answers."
  @spec send(t(), term()) :: :ok | :busy | {:error, :closed | :too_large}
  defdelegate send(channel, term), to: :py_channel

  @doc """
  Queues `term`, waiting up to `timeout` ms (or `:infinity`) for room:
  `{:error, :timeout}` if none came (nothing is queued). The wait is an
  ordinary `receive`; waiting senders are woken in the order they began to
  wait, once readers leave the channel at most half full. With a timeout of 0 it is `send/2` answering
  `{:error, :timeout}` instead of `:busy`.

      iex> {:ok, channel} = PyChannel.new(max_size: 16)
      iex> :ok = PyChannel.send(channel, 1, 0)
      iex> :ok = PyChannel.send(channel, 2, 0)
      iex> PyChannel.send(channel, 3, 10)
      {:error, :timeout}
  """
  @spec send(t(), term(), timeout()) :: :ok | {:error, :timeout | :closed | :too_large}
  defdelegate send(channel, term, timeout), to: :py_channel

  @doc """
  Queues the terms in order while they fit, without waiting, and says how
  many were accepted; `{:error, :closed}` if the channel was closed before the
  first.

      iex> {:ok, channel} = PyChannel.new(max_size: 16)
      iex> PyChannel.send_many(channel, [1, 2, 3])
      {:ok, 2}
  """
  @spec send_many(t(), [term()]) :: {:ok, non_neg_integer()} | {:error, :closed}
  defdelegate send_many(channel, terms), to: :py_channel

  @doc """
  A `Collectable` that fills `channel`, waiting for room (`send/3`) for each
  term: `Enum.into(rows, PyChannel.into(channel))`. `timeout` bounds each
  wait (`:infinity` by default); a term that cannot be sent (closed, too
  large, timed out) raises `PyChannel.SendError`, the terms before it being
  queued.

      iex> {:ok, channel} = PyChannel.new(max_size: 64)
      iex> reader = Task.async(fn -> Py.eval("list(Channel(ch))", %{ch: channel}) end)
      iex> _ = Enum.into(1..100, PyChannel.into(channel))
      iex> :ok = PyChannel.close(channel)
      iex> Task.await(reader)
      {:ok, Enum.to_list(1..100)}
  """
  @spec into(t(), timeout()) :: PyChannel.Into.t()
  def into(channel, timeout \\ :infinity) do
    if :py_channel.is_timeout(timeout) do
      %PyChannel.Into{channel: channel, timeout: timeout}
    else
      raise ArgumentError, "PyChannel.into/2: not a timeout: #{inspect(timeout)}"
    end
  end

  @doc """
  Sends `{caller, request}` and waits up to `timeout` ms in all (5000 by
  default, or `:infinity`) for the reader's reply: `{:ok, reply}`, or
  `{:error, :timeout}` (a later reply is dropped: nothing reaches the
  mailbox), `{:error, :closed}`, `{:error, :too_large}`. The request waits for
  room as `send/3` does. A Python reader answers with `reply(caller, term)`;
  one written for `{pid, request}` and `reply(pid, term)` works unchanged.

  The caller looks for its reply for a few microseconds before it sleeps, so
  a fast reader's reply does not wait for the caller's scheduler to wake up
  (the `:await_spin` application setting; see the threading guide).

      iex> {:ok, channel} = PyChannel.new()
      iex> :ok = Py.exec("def double(ref):\\n    for caller, n in Channel(ref):\\n        reply(caller, 2 * n)")
      iex> server = Py.spawn_call(:__main__, :double, [channel])
      iex> PyChannel.call(channel, 21)
      {:ok, 42}
      iex> :ok = PyChannel.close(channel)
      iex> Py.await(server)
      {:ok, :none}
  """
  @spec call(t(), term(), timeout()) :: {:ok, term()} | {:error, :timeout | :closed | :too_large}
  defdelegate call(channel, request, timeout \\ 5000), to: :py_channel

  @doc """
  Answers a request of `call/3` taken by an Elixir reader: `:ok` (also when
  the caller no longer waits, as `send/2` to a process that has exited), or
  `{:error, :already_replied}`: a caller gets one reply.

      iex> {:ok, channel} = PyChannel.new()
      iex> reader = Task.async(fn ->
      ...>   {:ok, {caller, {:add, a, b}}} = PyChannel.recv(channel, 5_000)
      ...>   {PyChannel.reply(caller, a + b), PyChannel.reply(caller, :again)}
      ...> end)
      iex> PyChannel.call(channel, {:add, 2, 3})
      {:ok, 5}
      iex> Task.await(reader)
      {:ok, {:error, :already_replied}}
  """
  @spec reply(caller(), term()) :: :ok | {:error, :already_replied}
  defdelegate reply(caller, reply), to: :py_channel

  @doc "Closes the channel: sends fail from now on, queued terms can still be received. Idempotent."
  @spec close(t()) :: :ok
  defdelegate close(channel), to: :py_channel

  @doc """
  The channel's state and running totals (see `t:info/0`).

      iex> {:ok, channel} = PyChannel.new(max_size: 100)
      iex> :ok = PyChannel.send(channel, :one)
      iex> :busy = PyChannel.send(channel, :binary.copy("x", 80))
      iex> PyChannel.info(channel)
      %{size: 8, max_size: 100, closed: false, length: 1, waiting_readers: 0,
        waiting_senders: 0, sent: 1, received: 0, busy: 1, sent_bytes: 8, received_bytes: 0}
  """
  @spec info(t()) :: info()
  defdelegate info(channel), to: :py_channel

  @doc "Takes the oldest queued term without waiting."
  @spec try_receive(t()) :: {:ok, term()} | {:error, :empty | :closed}
  defdelegate try_receive(channel), to: :py_channel

  @doc """
  Takes the oldest queued term, waiting up to `timeout` milliseconds in an
  ordinary `receive`. Several processes may wait on one channel; each term goes
  to exactly one of them.

      iex> {:ok, channel} = PyChannel.new()
      iex> PyChannel.recv(channel, 10)
      {:error, :timeout}
  """
  @spec recv(t(), timeout()) :: {:ok, term()} | {:error, :closed | :timeout}
  defdelegate recv(channel, timeout), to: :py_channel

  @doc "Takes the oldest queued term, waiting as long as it takes (or until the close)."
  @spec recv(t()) :: {:ok, term()} | {:error, :closed}
  defdelegate recv(channel), to: :py_channel

  @doc """
  Subscribes the calling process to the channel: it receives the terms as
  messages, like a socket in `active: n` mode, instead of calling `recv/2` in
  a loop of its own. The messages, each carrying `channel` as passed:

    * `{:py_channel, channel, term}`: a term taken from the channel, one per
      unit of credit;
    * `{:py_channel_passive, channel}`: the credit ran out (sent once, after
      the last term it paid for); call `subscribe/2` again for more;
    * `{:py_channel_closed, channel}`: the channel is closed and drained (seen
      while credit is left); the subscription has ended.

  `credit` is added to what is left. `subscribe(channel, 0)` stops the
  subscription and returns once no further `{:py_channel, channel, _}` message
  can arrive: terms already delivered stay in the mailbox, the rest stay
  queued. Each term goes to exactly one reader of the channel (subscribers,
  `recv/2` callers, Python). A credit that is not a non-negative integer, or
  something that is not a channel, raises `ArgumentError`.

      iex> {:ok, channel} = PyChannel.new()
      iex> :ok = PyChannel.send(channel, :hello)
      iex> PyChannel.subscribe(channel, 2)
      :ok
      iex> receive do
      ...>   {:py_channel, ^channel, term} -> term
      ...> end
      :hello
      iex> PyChannel.close(channel)
      :ok
      iex> receive do
      ...>   {:py_channel_closed, ^channel} -> :closed
      ...> end
      :closed

  A GenServer asks for more in `handle_info/2`:

      def handle_info({:py_channel, _channel, term}, state), do: {:noreply, handle(term, state)}
      def handle_info({:py_channel_passive, channel}, state) do
        :ok = PyChannel.subscribe(channel, 100)
        {:noreply, state}
      end
      def handle_info({:py_channel_closed, _channel}, state), do: {:stop, :normal, state}
  """
  @spec subscribe(t(), non_neg_integer()) :: :ok
  defdelegate subscribe(channel, credit), to: :py_channel

  @doc """
  The channel's terms as a lazy `Stream`, read with `recv/1` until the channel
  is closed and drained. A term is taken only when the consumer asks for the
  next element, so a stream halted early (`Enum.take/2`) leaves the rest
  queued for the next reader.

      iex> {:ok, channel} = PyChannel.new()
      iex> for n <- 1..5, do: :ok = PyChannel.send(channel, n)
      iex> :ok = PyChannel.close(channel)
      iex> channel |> PyChannel.stream() |> Enum.take(2)
      [1, 2]
      iex> channel |> PyChannel.stream() |> Enum.to_list()
      [3, 4, 5]
  """
  @spec stream(t()) :: Enumerable.t()
  def stream(channel) do
    Stream.unfold(channel, fn channel ->
      case :py_channel.recv(channel) do
        {:ok, term} -> {term, channel}
        {:error, :closed} -> nil
      end
    end)
  end

  @doc """
  The bytes `term` counts against `:max_size`: about the memory it takes
  (8 bytes a word, a binary its length plus 16).

      iex> PyChannel.term_size("hello")
      21
  """
  @spec term_size(term()) :: non_neg_integer()
  defdelegate term_size(term), to: :py_channel

  @doc """
  Makes channels readable from Python code written for erlang_python, through
  `erlang.call("_py_channel_receive", ref)` and its siblings.
  """
  @spec register_callbacks() :: :ok
  defdelegate register_callbacks(), to: :py_channel

  @doc """
  Node-wide counters: `:live_channels` (channels not yet freed),
  `:python_threads` (threads Python runs on, busy or idle),
  `:python_jobs_running` and `:python_jobs_queued` (Python calls running, and
  waiting for a thread on its way). See `:py_channel.stats/0`.
  """
  @spec stats() :: %{
          live_channels: non_neg_integer(),
          python_threads: non_neg_integer(),
          python_jobs_running: non_neg_integer(),
          python_jobs_queued: non_neg_integer()
        }
  defdelegate stats(), to: :py_channel
end
