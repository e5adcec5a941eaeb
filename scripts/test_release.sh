#!/bin/sh
# Releases made with `mix release` and `rebar3 release` from a project that depends on this
# checkout, each started with the Python set in its runtime configuration (config/runtime.exs,
# config/sys.config.src) to one that lives elsewhere than any the build saw: a venv made in a
# temporary directory by another Python minor than the default. Then the same releases
# started with a Python that does not exist: the start is an error naming it, the node is up
# (py_channel is loaded at boot and started by the code, as docs/deployment.md shows for
# nodes that must boot whatever the Python).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
rebar_release="$work/rebarapp/_build/default/rel/rel_app/bin/rel_app"
cleanup() {
    [ ! -x "$rebar_release" ] || "$rebar_release" stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# A Python of another minor than the default python3, from pyenv, at a new path (a venv).
default_minor=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
base=""
for minor in 3.12 3.13 3.11 3.10; do
    [ "$minor" != "$default_minor" ] || continue
    base=$(ls -d "$pyenv_root"/versions/$minor.*/bin/python3 2>/dev/null | sort -V | tail -n 1)
    [ -z "$base" ] || break
done
[ -n "$base" ] || { echo "test_release: no second Python under $pyenv_root/versions"; exit 1; }
"$base" -m venv --without-pip "$work/elsewhere"
python="$work/elsewhere/bin/python3"
minor=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

expect() { # expect LABEL PATTERN OUTPUT
    if ! printf '%s\n' "$3" | grep -q -- "$2"; then
        echo "test_release: $1: expected /$2/ in:"; printf '%s\n' "$3"; exit 1
    fi
}

# mix release
mkdir -p "$work/mixapp/config"
cat > "$work/mixapp/mix.exs" <<EOF
defmodule RelApp.MixProject do
  use Mix.Project

  def project,
    do: [app: :rel_app, version: "0.1.0", deps: [{:py_channel, path: "$root"}]]

  def application, do: [extra_applications: [:logger]]
end
EOF
cat > "$work/mixapp/config/runtime.exs" <<'EOF'
import Config
config :py_channel, python: System.get_env("REL_PYTHON")
EOF
(cd "$work/mixapp" && MIX_ENV=prod mix release --quiet >/dev/null)
mix_release="$work/mixapp/_build/prod/rel/rel_app/bin/rel_app"
out=$(env -u PY_CHANNEL_PYTHON REL_PYTHON="$python" "$mix_release" eval '
  {:ok, _} = Application.ensure_all_started(:py_channel)
  {:ok, info} = Py.info()
  {:ok, 4.0} = Py.call(:math, :sqrt, [16])
  IO.puts("python #{info.executable} #{info.version} #{info.nif}")')
expect "mix release" "python $python $minor\.[0-9]* .*/rel_app/lib/py_channel-[0-9.]*/priv/native/py_channel_nif-py$minor\$" "$out"
out=$(env -u PY_CHANNEL_PYTHON REL_PYTHON="$work/nowhere/python3" "$mix_release" eval '
  {:error, {:py_channel, {reason, _}}} = Application.ensure_all_started(:py_channel)
  IO.puts("refused #{:py_channel_app.format_error(reason)}; node up: #{1 + 1}")' 2>&1)
expect "mix release, no Python" "refused py_channel cannot use the Python $work/nowhere/python3: no such file; node up: 2" "$out"
echo "test_release: mix release runs with the Python its runtime.exs names ($python, $minor)"

# rebar3 release (the dependency from _checkouts: no Hex)
mkdir -p "$work/rebarapp/src" "$work/rebarapp/config" "$work/rebarapp/_checkouts"
ln -s "$root" "$work/rebarapp/_checkouts/py_channel"
cat > "$work/rebarapp/rebar.config" <<'EOF'
{deps, [py_channel]}.
{relx, [{release, {rel_app, "0.1.0"}, [rel_app, {py_channel, load}]},
        {sys_config_src, "config/sys.config.src"},
        {dev_mode, false}, {include_erts, true}, {extended_start_script, true}]}.
EOF
cat > "$work/rebarapp/src/rel_app.app.src" <<'EOF'
{application, rel_app, [{description, "a release that uses py_channel"}, {vsn, "0.1.0"},
                        {applications, [kernel, stdlib]}, {env, []}]}.
EOF
cat > "$work/rebarapp/config/sys.config.src" <<'EOF'
[{py_channel, [{python, "${REL_PYTHON}"}]}].
EOF
(cd "$work/rebarapp" && rebar3 release >/dev/null)
unset PY_CHANNEL_PYTHON
rebar_eval() { # the release runs as a daemon with REL_PYTHON=$1; evaluates $2 in it
    REL_PYTHON="$1" "$rebar_release" daemon
    tries=0
    until "$rebar_release" ping >/dev/null 2>&1; do
        tries=$((tries + 1))
        [ "$tries" -lt 100 ] || { echo "test_release: the rebar3 release did not start"; exit 1; }
        sleep 0.2
    done
    "$rebar_release" eval "$2"
    "$rebar_release" stop >/dev/null
}
out=$(rebar_eval "$python" '
  {ok, _} = application:ensure_all_started(py_channel),
  {ok, #{executable := E, version := V, nif := N}} = py:info(),
  {ok, 4.0} = py:call(math, sqrt, [16]),
  lists:flatten(io_lib:format("python ~ts ~ts ~ts", [E, V, N])).')
expect "rebar3 release" "python $python $minor\.[0-9]* .*/rel_app/lib/py_channel-[0-9.]*/priv/native/py_channel_nif-py$minor\"" "$out"
out=$(rebar_eval "$work/nowhere/python3" '
  {error, {py_channel, {Reason, _}}} = application:ensure_all_started(py_channel),
  lists:flatten(io_lib:format("refused ~ts; node up: ~b",
                              [py_channel_app:format_error(Reason), 1 + 1])).')
expect "rebar3 release, no Python" "refused py_channel cannot use the Python $work/nowhere/python3: no such file; node up: 2" "$out"
echo "test_release: rebar3 release runs with the Python its sys.config.src names ($python, $minor)"
