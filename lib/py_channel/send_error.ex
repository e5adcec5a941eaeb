defmodule PyChannel.SendError do
  @moduledoc """
  Raised by `PyChannel.into/2`'s collectable when a term cannot be sent:
  `reason` is `:closed`, `:too_large` or `:timeout`, `term` the term.
  """
  defexception [:reason, :term]

  @impl true
  def message(%{reason: reason}) do
    case reason do
      :closed -> "the channel is closed"
      :too_large -> "the term alone is larger than the channel's max_size"
      :timeout -> "no room in the channel within the timeout"
    end
  end
end
