defmodule Mix.Tasks.Compile.PyChannelNif do
  @moduledoc false
  # Builds the Rust NIF with cargo and puts it in priv/native. Cargo's own
  # incremental build makes this a no-op when nothing changed.
  use Mix.Task.Compiler

  @impl true
  def run(_args) do
    case System.cmd("sh", ["scripts/build_nif.sh"], into: IO.stream(:stdio, :line)) do
      {_, 0} -> {:ok, []}
      {_, status} -> Mix.raise("building the NIF failed (exit #{status})")
    end
  end
end

defmodule PyChannel.MixProject do
  use Mix.Project

  @version "2.3.0"

  def project do
    [
      app: :py_channel,
      version: @version,
      elixir: "~> 1.14",
      description:
        "Embedded CPython in the BEAM with a fast, backpressured channel " <>
          "from Erlang, Elixir and Gleam processes to Python code.",
      compilers: [:py_channel_nif | Mix.compilers()],
      erlc_paths: ["src"],
      erlc_options: [:debug_info, :warnings_as_errors],
      start_permanent: Mix.env() == :prod,
      deps: deps(),
      package: package(),
      test_paths: ["test"]
    ]
  end

  def application do
    [mod: {:py_channel_app, []}]
  end

  # No dependencies: the NIF builds from source with cargo, offline.
  defp deps, do: []

  defp package do
    [
      licenses: ["Apache-2.0"],
      links: %{},
      # checksum-py_channel_nif.exs is written by the release workflow: with it, a build
      # uses the precompiled NIFs for its target; without, cargo builds them. `gleam/` is
      # the Gleam package py_channel_gleam, shipped here for a path dependency.
      files: ~w(
        lib src priv/.gitkeep python gleam scripts mix.exs rebar.config Makefile docs
        native/py_channel_nif/Cargo.toml native/py_channel_nif/Cargo.lock
        native/py_channel_nif/build.rs native/py_channel_nif/src
        checksum-py_channel_nif.exs README.md CHANGELOG.md LICENSE
      )
    ]
  end
end
