defmodule Py do
  @moduledoc """
  Running Python in the interpreter embedded in the BEAM.

  Python runs on threads the NIF owns: a call queues a job and the caller waits
  in an ordinary `receive`, so no scheduler ever waits for Python or the GIL.
  Every job starts at once, so a long-running call (a loop over a `PyChannel`)
  never holds up a short one. Code run with `exec/1` and `eval/2` sees a
  namespace of the calling process (freed when it exits); functions it defines
  are callable as `call(:__main__, name, args)`.

  Every namespace starts with `Channel`, `ChannelClosed` and `reply` of
  `erlang.channel`, whichever language made it: the same Python source runs
  from Elixir, Erlang and Gleam. Anything else is imported as usual
  (`import erlang` for `erlang.call`, `erlang.Atom`, ...).

  Terms convert both ways without loss where the languages allow: integers of
  any size, floats, binaries (`str` when valid UTF-8, else `bytes`), atoms (as
  `erlang.Atom`, a `str`), lists, tuples, maps, pids, references and channels.
  Python's `None` comes back as `:none`, or as `nil` with
  `config :py_channel, python_none: nil`.

  A call that gives no result returns one of (see `t:error/0`, and the outcome
  table of every language in the channel guide, `docs/channel.md`):

    * `{:error, {exception_name, message}}`: the Python code raised; the
      traceback is logged. The name is an atom for built-in exceptions and
      names some module mentions, else a binary (classes made at run time do
      not fill the atom table);
    * `{:error, :timeout}`: no answer in time (the late answer is discarded);
    * `{:error, {:python_not_started, reason}}`: the interpreter could not be
      started; no Python code ran.

  ## Examples

      iex> Py.eval("21 * 2")
      {:ok, 42}
      iex> Py.eval("x * y", %{x: 6, y: 7})
      {:ok, 42}
      iex> Py.call(:math, :sqrt, [16])
      {:ok, 4.0}
      iex> Py.call(:json, :dumps, [%{"a" => 1}], %{sort_keys: true})
      {:ok, ~s({"a": 1})}
      iex> :ok = Py.exec("def double(x):\\n    return 2 * x\\n")
      iex> Py.call(:__main__, :double, [21])
      {:ok, 42}
      iex> {:error, {:ZeroDivisionError, _message}} = Py.eval("1 / 0")

  `Channel` and `reply` need no import:

      iex> {:ok, channel} = PyChannel.new()
      iex> :ok = PyChannel.send(channel, {self(), :hello})
      iex> :ok = PyChannel.close(channel)
      iex> Py.eval("[reply(pid, term) for pid, term in Channel(ch)]", %{ch: channel})
      {:ok, [true]}
      iex> receive do: (:hello -> :replied), after: (5_000 -> :no_reply)
      :replied

  This module is a thin layer over the Erlang module `:py`: same arguments,
  same results, same defaults.
  """

  @typedoc "Why a call gave no result: an exception, a timeout, or no interpreter."
  @type error :: :py.py_error()

  @typedoc "A call started with `spawn_call/4`."
  @type pending :: :py.pending()

  @typedoc """
  Options of the functions that wait: `timeout:` in ms or `:infinity` (the
  default is `:py`'s, 30 s). A timeout stops the Python code and answers
  `{:error, :timeout}`.
  """
  @type options :: [timeout: timeout()]

  @doc """
  Runs Python statements in the caller's namespace.

      iex> Py.exec("import time", timeout: 5_000)
      :ok
  """
  @spec exec(iodata(), options()) :: :ok | error()
  def exec(code, options \\ []), do: :py.exec(code, Map.new(options))

  @doc """
  `exec/2` that raises `Py.Error` (with the exception's type, message and
  traceback) instead of returning `{:error, reason}`.

      iex> Py.exec!("answer = 42")
      :ok
      iex> Py.exec!("raise KeyError('k')")
      ** (Py.Error) KeyError: 'k'
  """
  @spec exec!(iodata(), options()) :: :ok
  def exec!(code, options \\ []), do: code |> exec(options) |> ok!()

  @doc """
  Evaluates a Python expression, with local variables (atom or string names),
  as a map or a keyword list; options come third.

      iex> Py.eval("x + 1", %{x: 41}, timeout: 5_000)
      {:ok, 42}
      iex> Py.eval("x + y", x: 40, y: 2)
      {:ok, 42}
  """
  @spec eval(iodata(), map() | keyword(), options()) :: {:ok, term()} | error()
  def eval(code, locals \\ %{}, options \\ []) do
    case timeout(options) do
      :default -> :py.eval(code, Map.new(locals))
      timeout -> :py.eval(code, Map.new(locals), timeout)
    end
  end

  @doc """
  `eval/3` that returns the value itself, and raises `Py.Error` instead of
  returning `{:error, reason}`.

      iex> Py.eval!("6 * 7")
      42
      iex> Py.eval!("1 / 0")
      ** (Py.Error) ZeroDivisionError: division by zero
  """
  @spec eval!(iodata(), map() | keyword(), options()) :: term()
  def eval!(code, locals \\ %{}, options \\ []), do: code |> eval(locals, options) |> ok!()

  @doc """
  Calls `module.function(*args, **kwargs)` and waits for the result.
  `function` may be a dotted path; module `:__main__` is the caller's
  namespace. `kwargs` is a map or a keyword list; the last argument is
  `options()` or, as in `:py`, a timeout.

      iex> Py.call(:json, :dumps, [%{"b" => 1, "a" => 2}], sort_keys: true)
      {:ok, ~s({"a": 2, "b": 1})}
  """
  @spec call(
          atom() | binary(),
          atom() | binary(),
          list(),
          map() | keyword(),
          options() | timeout()
        ) :: {:ok, term()} | error()
  def call(module, function, args \\ [], kwargs \\ %{}, options \\ []) do
    case timeout(options) do
      :default -> :py.call(module, function, args, Map.new(kwargs))
      timeout -> :py.call(module, function, args, Map.new(kwargs), timeout)
    end
  end

  @doc """
  `call/5` that returns the value itself, and raises `Py.Error` (type,
  message, traceback) instead of returning `{:error, reason}`.

      iex> Py.call!(:math, :sqrt, [16])
      4.0
      iex> Py.call!(:math, :sqrt, [-1])
      ** (Py.Error) ValueError: math domain error
  """
  @spec call!(
          atom() | binary(),
          atom() | binary(),
          list(),
          map() | keyword(),
          options() | timeout()
        ) :: term()
  def call!(module, function, args \\ [], kwargs \\ %{}, options \\ []),
    do: module |> call(function, args, kwargs, options) |> ok!()

  @doc """
  Starts `module.function(*args, **kwargs)` in a `Task`, for `Task.await/2`,
  `Task.yield/2`, `Task.shutdown/2` and the `{ref, result}` messages a
  GenServer handles in `handle_info/2`, as for any task. The task's result is
  `{:ok, value}` or `{:error, reason}`, as `call/5` returns. Shutting the task
  down (or its caller exiting) cancels the Python call. Options:
  `timeout:` for the Python call (default `:infinity`: the task's own
  `Task.await/2` timeout bounds the wait).

      iex> task = Py.async(:math, :factorial, [10])
      iex> Task.await(task)
      {:ok, 3628800}
      iex> :ok = Py.exec("import time")
      iex> slow = Py.async(:time, :sleep, [10])
      iex> Task.yield(slow, 50)
      nil
      iex> Task.shutdown(slow, :brutal_kill)
      nil
  """
  @spec async(atom() | binary(), atom() | binary(), list(), map() | keyword(), options()) ::
          Task.t()
  def async(module, function, args \\ [], kwargs \\ %{}, options \\ []) do
    options = Keyword.merge([timeout: :infinity], options)
    Task.async(fn -> call(module, function, args, kwargs, options) end)
  end

  @doc """
  Starts a call and returns at once; collect the result with `await/2`.

      iex> pending = Py.spawn_call(:math, :factorial, [20])
      iex> Py.await(pending)
      {:ok, 2432902008176640000}
  """
  @spec spawn_call(atom() | binary(), atom() | binary(), list()) :: pending()
  def spawn_call(module, function, args \\ []), do: :py.spawn_call(module, function, args)

  @doc "Starts `module.function(*args, **kwargs)` and returns at once (`kwargs` a map or keyword list)."
  @spec spawn_call(atom() | binary(), atom() | binary(), list(), map() | keyword()) :: pending()
  def spawn_call(module, function, args, kwargs),
    do: :py.spawn_call(module, function, args, Map.new(kwargs))

  @doc "The result of a `spawn_call/4`, waiting as long as it takes."
  @spec await(pending()) :: {:ok, term()} | error()
  defdelegate await(pending), to: :py

  @doc """
  The result of a `spawn_call/4`, or `{:error, :timeout}` after the timeout
  (`options()` or a timeout in ms); a timeout stops the Python code and
  discards its result.
  """
  @spec await(pending(), options() | timeout()) :: {:ok, term()} | error()
  def await(pending, options) do
    case timeout(options) do
      :default -> :py.await(pending)
      timeout -> :py.await(pending, timeout)
    end
  end

  @doc """
  Stops a call started with `spawn_call/4`: its Python code gets
  `erlang.Cancelled`, and `await/2` answers `{:error, :cancelled}` (a call
  already done keeps its result). Returns at once.

      iex> :ok = Py.exec("def forever():\\n    while True: pass")
      iex> pending = Py.spawn_call(:__main__, :forever, [])
      iex> Py.cancel(pending)
      :ok
      iex> Py.await(pending, 5000)
      {:error, :cancelled}
  """
  @spec cancel(pending()) :: :ok
  defdelegate cancel(pending), to: :py

  @doc """
  The formatted traceback (file and line of every frame) of the most recent
  call of this process that answered `{:error, {exception_name, message}}`,
  or `nil` if none did.

      iex> {:error, {:ZeroDivisionError, _}} = Py.eval("1 / 0")
      iex> Py.last_traceback() =~ ~r/line 1.*ZeroDivisionError: division by zero/s
      true
  """
  @spec last_traceback() :: binary() | nil
  def last_traceback do
    case :py.last_traceback() do
      :undefined -> nil
      traceback -> traceback
    end
  end

  @doc """
  Runs `module.function(*args, **kwargs)` as a process linked to the caller,
  for a supervisor: see `child_spec/1`. Options: `:module` and `:function`
  (required), `:args` (default `[]`) and `:kwargs` (a map or keyword list).
  """
  @spec start_link(keyword()) :: {:ok, pid()}
  def start_link(options) do
    options = Keyword.validate!(options, [:module, :function, args: [], kwargs: %{}])

    start_link(
      Keyword.fetch!(options, :module),
      Keyword.fetch!(options, :function),
      Keyword.fetch!(options, :args),
      kwargs: options[:kwargs]
    )
  end

  @doc """
  Runs `module.function(*args, **kwargs)` as a process linked to the caller
  (`:py.start_link/4`). It lives exactly as long as the Python call: it exits
  `:normal` when the call returns and `{:python, exception_name, message}`
  when it raises (the traceback is logged at error level). When it is told to
  exit (its supervisor shuts it down, a linked process crashes, it is
  killed) the Python call is cancelled, and the process waits for the call
  to stop before it exits, so a restarted consumer never runs beside the old
  one. Options: `:kwargs` (a map or keyword list).
  """
  @spec start_link(atom() | binary(), atom() | binary(), list(), keyword()) :: {:ok, pid()}
  def start_link(module, function, args, options \\ []) do
    options = Keyword.validate!(options, kwargs: %{})
    :py.start_link(module, function, args, %{kwargs: Map.new(options[:kwargs])})
  end

  @doc """
  A child spec running a Python call under a supervisor:
  `{Py, module: ..., function: ..., args: [...]}`, with the options of
  `start_link/1` and, for the supervisor, `:id` (default `Py`), `:restart`
  (default `:transient`: restarted when it crashes or is killed, not when
  the Python call returns) and `:shutdown` (default 5000 ms: the time the
  Python code has to stop once cancelled).

  A channel consumer under a supervisor: the Python code, in a module on
  `sys.path`,

      # consumers.py
      from erlang.channel import Channel, reply

      def forward(channel, collector):
          for term in Channel(channel):
              reply(collector, term)

  and the supervisor, which restarts a consumer that crashes or is killed;
  the terms it had not taken stay queued for the next one:

      {:ok, channel} = PyChannel.new(max_size: 65_536)

      children = [
        {Py, module: :consumers, function: :forward, args: [channel, self()]}
      ]

      Supervisor.start_link(children, strategy: :one_for_one)

  A term is taken when the reader returns it: a consumer stopped between
  taking a term and handling it has lost that term (`reply` itself is
  native, so `for ...: reply(...)` has no such gap).
  """
  @spec child_spec(keyword()) :: Supervisor.child_spec()
  def child_spec(options) do
    {spec, options} = Keyword.split(options, [:id, :restart, :shutdown])

    %{
      id: Keyword.get(spec, :id, Py),
      start: {Py, :start_link, [options]},
      restart: Keyword.get(spec, :restart, :transient),
      shutdown: Keyword.get(spec, :shutdown, 5_000),
      type: :worker
    }
  end

  @doc """
  A `Stream` of what the Python generator `module.function(*args, **kwargs)`
  yields (or an async generator, or any iterable it returns), lazily: the
  call starts when the stream is first read, runs on its own thread, and is
  paused while `:max_size` bytes (65,536 by default) of items wait to be
  read. If the generator raises, the stream raises `Py.Error` after the items
  before the error. Halting early (`Enum.take/2`) stops the generator (its
  `finally` blocks run). Options: `:kwargs` (a map or keyword list),
  `:max_size`. The Erlang `:py.stream/4` gives the channel and the pending
  call instead.

      iex> Py.stream(:builtins, :range, [5]) |> Enum.to_list()
      [0, 1, 2, 3, 4]
      iex> :ok = Py.exec("def squares():\\n    n = 0\\n    while True:\\n        yield n * n\\n        n += 1\\n")
      iex> Py.stream(:__main__, :squares, []) |> Enum.take(4)
      [0, 1, 4, 9]
  """
  @spec stream(atom() | binary(), atom() | binary(), list(), keyword()) :: Enumerable.t()
  def stream(module, function, args \\ [], options \\ []) do
    options = Keyword.validate!(options, kwargs: %{}, max_size: 65_536)
    start_options = %{kwargs: Map.new(options[:kwargs]), max_size: options[:max_size]}

    Stream.resource(
      fn ->
        {:ok, channel, pending} = :py.stream(module, function, args, start_options)
        {:running, channel, pending}
      end,
      &next_streamed/1,
      &stop_stream/1
    )
  end

  defp next_streamed({:running, channel, pending} = running) do
    case :py_channel.recv(channel, :infinity) do
      {:ok, item} ->
        {[item], running}

      {:error, :closed} ->
        case :py.await(pending) do
          {:ok, _none} -> {:halt, :done}
          # Raised on the next step, so that the stop below knows the call is over.
          {:error, reason} -> {[], {:failed, Py.Error.from_reason(reason)}}
        end
    end
  end

  defp next_streamed({:failed, error}), do: raise(error)

  defp stop_stream({:running, channel, pending}) do
    # Halted early: the generator stops (cancelled; a send it waits in wakes at the close)
    # before the stream returns, and its answer is taken so none reaches the mailbox later.
    :ok = :py.cancel(pending)
    :ok = :py_channel.close(channel)
    _ = :py.await(pending, 5_000)
    :ok
  end

  defp stop_stream(_over), do: :ok

  @doc "Calls without waiting for the result; a failure is logged."
  @spec cast(atom() | binary(), atom() | binary(), list()) :: :ok
  def cast(module, function, args \\ []), do: :py.cast(module, function, args)

  @doc "Calls `module.function(*args, **kwargs)` without waiting for the result (`kwargs` a map or keyword list)."
  @spec cast(atom() | binary(), atom() | binary(), list(), map() | keyword()) :: :ok
  def cast(module, function, args, kwargs), do: :py.cast(module, function, args, Map.new(kwargs))

  @doc """
  Makes `fun` callable from Python as `erlang.call(name, *args)`: it is applied
  to the arguments, so its arity is the number Python passes (an arity-1
  function gets the one argument; the Erlang `:py.register_function/2` gives
  an arity-1 function the argument list instead, as erlang_python does). A
  call with another number of arguments raises `erlang.CallError` in Python.

      iex> :ok = Py.register_function(:add, fn a, b -> a + b end)
      iex> :ok = Py.register_function(:up, &String.upcase/1)
      iex> :ok = Py.exec("import erlang")
      iex> Py.eval("erlang.call('add', 2, 3)")
      {:ok, 5}
      iex> Py.eval("erlang.call('up', 'shout')")
      {:ok, "SHOUT"}
  """
  @spec register_function(atom() | binary(), function()) :: :ok
  def register_function(name, fun) when is_function(fun),
    do: :py.register_function(name, fn args when is_list(args) -> apply(fun, args) end)

  @spec unregister_function(atom() | binary()) :: :ok
  defdelegate unregister_function(name), to: :py

  @doc "The embedded Python's `sys.version`."
  @spec version() :: {:ok, binary()} | error()
  defdelegate version(), to: :py

  @doc ~S"""
  Which Python the node embeds: its executable, libpython, version, prefix, the venv
  activated at start, the directories of the app env `python_path`, the NIF loaded for it
  and `sys.path` as it is now. The Python is configuration read when `:py_channel` starts
  (see `docs/deployment.md`).

      iex> {:ok, info} = Py.info()
      iex> info.version =~ ~r/^3\.1[0-3]\./
      true
      iex> File.exists?(info.executable)
      true
  """
  @spec info() :: {:ok, map()} | error()
  defdelegate info(), to: :py

  @doc ~S"""
  Puts the directory `path` first on `sys.path` (once), so Python finds the modules in it.

      iex> dir = Path.join(System.tmp_dir!(), "py_doctest_path")
      iex> File.mkdir_p!(dir)
      iex> File.write!(Path.join(dir, "doctest_module.py"), "ANSWER = 42\n")
      iex> Py.add_path(dir)
      :ok
      iex> Py.eval("__import__('doctest_module').ANSWER")
      {:ok, 42}
  """
  @spec add_path(Path.t()) :: :ok | error()
  defdelegate add_path(path), to: :py

  @doc """
  Makes the packages of the virtualenv at `path` importable. A venv made by another Python
  minor version than the embedded one is refused with `{:error, {:ValueError, message}}`.
  """
  @spec activate_venv(Path.t()) :: :ok | error()
  defdelegate activate_venv(path), to: :py

  defp ok!(:ok), do: :ok
  defp ok!({:ok, value}), do: value
  defp ok!({:error, reason}), do: raise(Py.Error.from_reason(reason))

  defp timeout(timeout) when is_integer(timeout) or timeout == :infinity, do: timeout

  defp timeout(options) when is_list(options) do
    case Keyword.validate(options, [:timeout]) do
      {:ok, options} -> Keyword.get(options, :timeout, :default)
      {:error, unknown} -> raise ArgumentError, "unknown options: #{inspect(unknown)}"
    end
  end
end
