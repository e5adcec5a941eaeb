#!/bin/sh
# Installs the NIF as priv/native/py_channel_nif.so, with the Python package `erlang` beside
# it in priv/python. Used by mix (compile), rebar3 (pre-hook) and the Makefile, so there is
# one way to build.
#
# The NIF embeds (links) libpython, so it is made for one Python: the `python3` on PATH, or
# PY_CHANNEL_PYTHON=/path/to/python3. A precompiled NIF for this target, NIF version and
# Python is used when checksum-py_channel_nif.exs (written at release) lists one and it
# downloads and verifies; otherwise, or with PY_CHANNEL_BUILD=1, cargo builds it from
# source, each Python version in its own target dir.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
crate="$root/native/py_channel_nif"
version=2.3.0

python="${PY_CHANNEL_PYTHON:-$(command -v python3)}"
python_version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
installed="$root/priv/native/py_channel_nif.so"
mkdir -p "$root/priv/native"

install_nif() {
    # Replace only when changed: a rewritten .so under a running VM would be read half-written.
    if ! cmp -s "$1" "$installed"; then
        cp "$1" "$installed.tmp"
        mv "$installed.tmp" "$installed"
    fi
}

precompiled() {
    [ "${PY_CHANNEL_BUILD:-0}" != 1 ] || return 1
    checksums="$root/checksum-py_channel_nif.exs"
    [ -f "$checksums" ] || return 1
    vm_nif=$(erl -noshell -eval 'io:format("~s", [erlang:system_info(nif_version)]), halt().')
    case "$(uname -s)-$(uname -m)" in
        Linux-x86_64) triple=x86_64-unknown-linux-gnu ;;
        Linux-aarch64) triple=aarch64-unknown-linux-gnu ;;
        Darwin-x86_64) triple=x86_64-apple-darwin ;;
        Darwin-arm64) triple=aarch64-apple-darwin ;;
        *) return 1 ;;
    esac
    if [ -e /etc/alpine-release ]; then triple=$(echo "$triple" | sed 's/-gnu$/-musl/'); fi
    # The newest NIF version built that this VM can load (a VM loads older NIF versions).
    expected=""
    for nif_version in 2.16 2.15; do
        newer=$(printf '%s\n%s\n' "$nif_version" "$vm_nif" | sort -V | tail -n 1)
        [ "$newer" = "$vm_nif" ] || continue
        name="libpy_channel_nif-v$version-nif-$nif_version-py$python_version-$triple.so.tar.gz"
        expected=$(grep -F "\"$name\"" "$checksums" | sed 's/.*"sha256:\([0-9a-f]*\)".*/\1/')
        [ -z "$expected" ] || break
    done
    [ -n "$expected" ] || return 1
    base="${PY_CHANNEL_PRECOMPILED_URL:-https://github.com/py-channel/py_channel/releases/download/v$version}"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    curl -fsSL "$base/$name" -o "$work/$name" || return 1
    actual=$(sha256sum "$work/$name" | cut -d' ' -f1)
    if [ "$actual" != "$expected" ]; then
        echo "build_nif: checksum mismatch for $name, building from source" >&2
        return 1
    fi
    tar -xzf "$work/$name" -C "$work"
    install_nif "$work/libpy_channel_nif.so"
    echo "build_nif: using precompiled $name"
}

from_source() {
    target="${CARGO_TARGET_DIR:-$crate/target/python$python_version}"
    features="${PY_CHANNEL_NIF_FEATURES:-}"
    PYO3_PYTHON="$python" cargo build --quiet --release --manifest-path "$crate/Cargo.toml" \
        --target-dir "$target" ${features:+--features "$features"}
    case "$(uname -s)" in
        Darwin) install_nif "$target/release/libpy_channel_nif.dylib" ;;
        *) install_nif "$target/release/libpy_channel_nif.so" ;;
    esac
}

precompiled || from_source
echo "$python" > "$root/priv/native/python"

rm -rf "$root/priv/python.tmp"
cp -R "$root/python" "$root/priv/python.tmp"
find "$root/priv/python.tmp" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$root/priv/python"
mv "$root/priv/python.tmp" "$root/priv/python"
