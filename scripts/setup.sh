#!/usr/bin/env bash
# Installs what the build needs on a fresh Debian machine, and only what is missing:
# Erlang/OTP, Elixir and rebar3 from Debian's packages (hex.pm is never needed), a C toolchain for
# cargo's linker, Python's headers and shared library (the NIF embeds CPython) and venv
# support, Node for the Gleam compiler, and Rust when no cargo is on PATH.
set -euo pipefail

packages=(erlang-nox erlang-dev elixir rebar3 gcc libc6-dev make curl ca-certificates
          python3 python3-dev python3-venv)
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
