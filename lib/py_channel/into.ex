defmodule PyChannel.Into do
  @moduledoc """
  What `PyChannel.into/2` returns: a `Collectable` that sends every term to the
  channel with `PyChannel.send/3`, waiting for room.
  """
  @enforce_keys [:channel]
  defstruct [:channel, timeout: :infinity]

  @type t :: %__MODULE__{channel: PyChannel.t(), timeout: timeout()}

  defimpl Collectable do
    def into(%PyChannel.Into{channel: channel, timeout: timeout} = into) do
      collector = fn
        into, {:cont, term} ->
          case :py_channel.send(channel, term, timeout) do
            :ok -> into
            {:error, reason} -> raise PyChannel.SendError, reason: reason, term: term
          end

        into, :done ->
          into

        _into, :halt ->
          :ok
      end

      {into, collector}
    end
  end
end
