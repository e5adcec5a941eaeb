#!/usr/bin/env bash
# Installs what the build needs on a fresh Debian machine, and only what is missing:
# Erlang/OTP and Elixir from Debian's packages (hex.pm is never needed), a C toolchain for
# cargo's linker, and Rust when no cargo is on PATH.
set -euo pipefail

missing=()
command -v erl >/dev/null 2>&1 || missing+=(erlang-nox)
[ -e /usr/lib/erlang/usr/include/erl_nif.h ] || [ -n "$(command -v erl >/dev/null 2>&1 && erl -noshell -eval 'io:format("~s",[filelib:wildcard(code:root_dir()++"/usr/include/erl_nif.h")]),halt().' 2>/dev/null)" ] || missing+=(erlang-dev)
command -v elixir >/dev/null 2>&1 || missing+=(elixir)
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v make >/dev/null 2>&1 || missing+=(make)

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        echo "setup: cargo is in ~/.cargo/bin; add it to PATH" >&2
    else
        echo "setup: installing Rust (stable) with rustup"
        curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
    fi
    exit_hint='export PATH="$HOME/.cargo/bin:$PATH"'
    echo "setup: then run: $exit_hint" >&2
fi
