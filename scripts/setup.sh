#!/usr/bin/env bash
# Installs what the build needs on a fresh Debian machine, and only what is missing:
# Erlang/OTP, Elixir and rebar3 from Debian's packages (hex.pm is never needed), a C toolchain for
# cargo's linker, Python's headers and shared library (the NIF embeds CPython), venv support
# and pip, Node for the Gleam compiler, Rust when no cargo is on PATH, and mypy for the
# Python the NIF embeds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

packages=(erlang-nox erlang-dev elixir rebar3 gcc libc6-dev make curl ca-certificates
          python3 python3-dev python3-venv python3-pip)
# Node runs the Gleam compiler's WASM build; any Node from 18 on does.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    echo "setup: installing Rust (stable) with rustup"
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
fi

# mypy, for the Python the node embeds unless configured otherwise (py_loader's choice:
# PY_CHANNEL_PYTHON, else the python3 on PATH): its stubtest
# runs inside the embedded interpreter (test/py_stubs_tests.erl), so it must be importable
# there, built for that Python version. It goes into a directory of this checkout, one per
# Python version, put on the path by the tests: Debian's python3 refuses pip installs into
# its own environment and user site (PEP 668), and nothing outside the checkout changes.
# Pinned: a newer stubtest may find new kinds of difference.
mypy_version=2.4.1
python="${PY_CHANNEL_PYTHON:-$(command -v python3)}"
python_version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
mypy_dir="$root/.tools/mypy/python$python_version"
if ! PYTHONPATH="$mypy_dir" "$python" -c "import sys, mypy.version
sys.exit(mypy.version.__version__ != '$mypy_version')" 2>/dev/null; then
    echo "setup: installing mypy $mypy_version for $python into $mypy_dir"
    rm -rf "$mypy_dir"
    PIP_ROOT_USER_ACTION=ignore "$python" -m pip install --quiet --disable-pip-version-check \
        --no-warn-script-location --target "$mypy_dir" "mypy==$mypy_version"
fi

# A venv with uvloop and numpy, for the tests that run async_receive on uvloop
# (test/py_reader_tests.erl) and round-trip numpy data (test/py_payload_tests.erl):
# installed here, so no test reaches the network. One per Python version, like mypy above.
# A package that cannot be installed has its tests skipped, saying so.
test_venv="$root/_build/test-venv/$python_version"
for package in uvloop numpy; do
    if ! "$test_venv/bin/python" -c "import $package" 2>/dev/null; then
        echo "setup: installing $package into $test_venv"
        { [ -x "$test_venv/bin/python" ] || "$python" -m venv "$test_venv"; } &&
            "$test_venv/bin/python" -m pip install --quiet --disable-pip-version-check "$package" \
            || echo "setup: $package not installed; its tests will be skipped"
    fi
done
