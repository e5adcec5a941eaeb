defmodule Py.Error do
  @moduledoc """
  A Python call that gave no result, as an exception: raised by `Py.call!/5`,
  `Py.eval!/3`, `Py.exec!/2`, and by `Py.stream/4` when the generator fails.

  `type` is the exception's class name (an atom or a binary, as in
  `{:error, {type, message}}`) or, when Python did not raise, one of
  `:timeout`, `:cancelled` and `:python_not_started`; `traceback` is the
  formatted Python traceback when there is one.
  """
  defexception [:type, :message, :traceback]

  @type t :: %__MODULE__{type: atom() | binary(), message: binary(), traceback: binary() | nil}

  @doc """
  The exception for the reason of an `{:error, reason}` that `Py` returned, with the
  calling process's last traceback (see `Py.last_traceback/0`) for a Python exception.

      iex> Py.Error.from_reason(:cancelled).message
      "the call was cancelled"
  """
  @spec from_reason(term()) :: t()
  def from_reason({type, message})
      when (is_atom(type) or is_binary(type)) and is_binary(message) do
    %__MODULE__{type: type, message: message, traceback: Py.last_traceback()}
  end

  def from_reason(:timeout),
    do: %__MODULE__{type: :timeout, message: "no answer within the timeout"}

  def from_reason(:cancelled),
    do: %__MODULE__{type: :cancelled, message: "the call was cancelled"}

  def from_reason({:python_not_started, reason}),
    do: %__MODULE__{type: :python_not_started, message: "Python could not be started: #{reason}"}

  @impl true
  def message(%__MODULE__{type: type, message: message})
      when type in [:timeout, :cancelled, :python_not_started],
      do: message

  def message(%__MODULE__{type: type, message: message}), do: "#{type}: #{message}"
end
