defmodule Py do
  @moduledoc """
  Running Python in the interpreter embedded in the BEAM.

  Python runs on threads the NIF owns: a call queues a job and the caller waits
  in an ordinary `receive`, so no scheduler ever waits for Python or the GIL.
  Every job starts at once, so a long-running call (a loop over a `PyChannel`)
  never holds up a short one. Code run with `exec/1` and `eval/2` sees a
  namespace of the calling process (freed when it exits); functions it defines
  are callable as `call(:__main__, name, args)`. The namespace has `Channel`,
  `ChannelClosed` and `reply` from `erlang.channel` already imported.

  Terms convert both ways without loss where the languages allow: integers of
  any size, floats, binaries (`str` when valid UTF-8, else `bytes`), atoms (as
  `erlang.Atom`, a `str`), lists, tuples, maps, pids, references and channels.
  Python's `None` comes back as `:none`, or as `nil` with
  `config :py_channel, python_none: nil`. A Python exception comes back as
  `{:error, {exception_name, message}}`, with the traceback logged; the name is
  an atom for built-in exceptions and names some module mentions, else a
  binary (classes made at run time do not fill the atom table).

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

  This module is a thin layer over the Erlang module `:py`.
  """

  @typedoc "A Python exception, a timeout, or another failure."
  @type error :: {:error, {atom() | binary(), binary()} | :timeout | term()}

  @typedoc "A call started with `spawn_call/4`."
  @type pending :: :py.pending()

  @doc "Runs Python statements in the caller's namespace."
  @spec exec(iodata()) :: :ok | error()
  def exec(code), do: with_prelude(fn -> :py.exec(code) end)

  @doc "Evaluates a Python expression, with optional local variables (atom or string names)."
  @spec eval(iodata(), map()) :: {:ok, term()} | error()
  def eval(code, locals \\ %{}), do: with_prelude(fn -> :py.eval(code, locals) end)

  @doc """
  Calls `module.function(*args, **kwargs)` and waits up to `timeout` ms (30 s by
  default). `function` may be a dotted path; module `:__main__` is the caller's
  namespace.
  """
  @spec call(atom() | binary(), atom() | binary(), list(), map(), timeout()) ::
          {:ok, term()} | error()
  def call(module, function, args \\ [], kwargs \\ %{}, timeout \\ 30_000) do
    with_prelude(fn -> :py.call(module, function, args, kwargs, timeout) end)
  end

  @doc """
  Starts a call and returns at once; collect the result with `await/2`.

      iex> pending = Py.spawn_call(:math, :factorial, [20])
      iex> Py.await(pending)
      {:ok, 2432902008176640000}
  """
  @spec spawn_call(atom() | binary(), atom() | binary(), list(), map()) :: pending()
  def spawn_call(module, function, args \\ [], kwargs \\ %{}) do
    with_prelude(fn -> :py.spawn_call(module, function, args, kwargs) end)
  end

  @doc "The result of a `spawn_call/4`; after a timeout the result is discarded."
  @spec await(pending(), timeout()) :: {:ok, term()} | error()
  defdelegate await(pending, timeout \\ :infinity), to: :py

  @doc "Calls without waiting for the result; a failure is logged."
  @spec cast(atom() | binary(), atom() | binary(), list(), map()) :: :ok
  def cast(module, function, args \\ [], kwargs \\ %{}) do
    with_prelude(fn -> :py.cast(module, function, args, kwargs) end)
  end

  @doc """
  Makes `fun` callable from Python as `erlang.call(name, *args)`. A function of
  arity 1 receives the argument list; others are applied to the arguments.

      iex> :ok = Py.register_function(:add, fn a, b -> a + b end)
      iex> Py.eval("erlang.call('add', 2, 3)")
      {:ok, 5}
  """
  @spec register_function(atom() | binary(), function()) :: :ok
  defdelegate register_function(name, fun), to: :py

  @spec unregister_function(atom() | binary()) :: :ok
  defdelegate unregister_function(name), to: :py

  @doc "The embedded Python's `sys.version`."
  @spec version() :: {:ok, binary()} | error()
  defdelegate version(), to: :py

  @doc "Makes the packages of the virtualenv at `path` importable."
  @spec activate_venv(Path.t()) :: :ok | error()
  defdelegate activate_venv(path), to: :py

  # `erlang` and the channel names are imported once into each process's namespace.
  @prelude "import erlang\nfrom erlang.channel import Channel, ChannelClosed, reply\n"

  defp with_prelude(run) do
    unless Process.get({__MODULE__, :prelude}) do
      :ok = :py.exec(@prelude)
      Process.put({__MODULE__, :prelude}, true)
    end

    run.()
  end
end
