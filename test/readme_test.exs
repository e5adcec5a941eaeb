defmodule ReadmeTest do
  # Every code block of README.md runs here, so the README stays true. The Gleam block
  # runs in the Gleam suite (scripts/build_gleam.mjs compiles it as a test).
  use ExUnit.Case, async: true

  @readme Path.expand("../README.md", __DIR__)
  @external_resource @readme

  defp blocks(language) do
    ~r/```#{language}\n(.*?)```/s
    |> Regex.scan(File.read!(@readme), capture: :all_but_first)
    |> List.flatten()
  end

  test "the README has a block in each language" do
    for language <- ["erlang", "elixir", "gleam", "python"] do
      assert blocks(language) != [], "no #{language} block"
    end
  end

  # Outside the BEAM, as a user's pytest runs it: in the venv `make test-pytest` makes.
  test "the pytest block passes against the Python block, outside the BEAM" do
    [consumer, pytest] = blocks("python")
    dir = Path.join(System.tmp_dir!(), "py_channel_readme_#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    File.write!(Path.join(dir, "consumer.py"), consumer)
    File.write!(Path.join(dir, "test_readme.py"), pytest)

    {version, 0} =
      System.cmd(System.get_env("PY_CHANNEL_PYTHON", "python3"), [
        "-c",
        "import sys; print('%d.%d' % sys.version_info[:2], end='')"
      ])

    python = Path.expand("../_build/pytest-venv/#{version}/bin/python", __DIR__)
    assert File.exists?(python), "no #{python}: make test-pytest makes it"
    {output, status} = System.cmd(python, ["-m", "pytest", "-q", "-p", "no:cacheprovider", dir])
    assert status == 0, output
    assert output =~ "1 passed"
  end

  test "the Erlang blocks run" do
    for block <- blocks("erlang") do
      {:ok, tokens, _} = :erl_scan.string(String.to_charlist(block))
      {:ok, expressions} = :erl_parse.parse_exprs(tokens)
      # In a process of its own, as a user's shell would be.
      task = Task.async(fn -> :erl_eval.exprs(expressions, []) end)
      assert {:value, _, _} = Task.await(task, 30_000)
    end
  end

  test "the Elixir blocks run" do
    for block <- blocks("elixir") do
      task = Task.async(fn -> Code.eval_string(block) end)
      assert {_, _} = Task.await(task, 30_000)
    end
  end

  test "the Python block serves requests, sync and async" do
    [python, _pytest] = blocks("python")

    task =
      Task.async(fn ->
        :ok = Py.exec(python)

        for function <- [:serve, :serve_async] do
          {:ok, channel} = PyChannel.new()

          server =
            case function do
              :serve ->
                Py.spawn_call(:__main__, :serve, [channel])

              :serve_async ->
                :ok =
                  Py.exec(
                    "import asyncio\ndef run_async(ref):\n    asyncio.run(serve_async(ref))\n"
                  )

                Py.spawn_call(:__main__, :run_async, [channel])
            end

          :ok = PyChannel.send(channel, {:request, self(), "four"})
          assert_receive {:done, 4}, 5_000
          :ok = PyChannel.close(channel)
          assert {:ok, :none} = Py.await(server, 5_000)
        end
      end)

    Task.await(task, 30_000)
  end
end
