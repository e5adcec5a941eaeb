#!/bin/sh
# Installs the NIFs in priv/native, with the Python package `erlang` beside them in
# priv/python. Used by mix (compile), rebar3 (pre-hook) and the Makefile, so there is one way
# to build.
#
# Which Python the node embeds is chosen when py_channel starts (app env `python`,
# PY_CHANNEL_PYTHON), not here: this builds one NIF per supported Python minor,
# priv/native/py_channel_nif-py3.X.so, each leaving libpython's symbols to be resolved at
# load, and priv/native/py_loader.so, the small NIF that opens the chosen libpython first.
# No Python is needed to build, and no environment variable changes what is built.
#
# Precompiled NIFs for this target and NIF version are used when checksum-py_channel_nif.exs
# (written at release) lists them and they download and verify; otherwise, or with
# PY_CHANNEL_BUILD=1, cargo builds them from source, each in its own target dir.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
crate="$root/native/py_channel_nif"
version=2.3.0
pythons="3.10 3.11 3.12 3.13"
native="$root/priv/native"
mkdir -p "$native"

case "$(uname -s)" in Darwin) library_ext=dylib ;; *) library_ext=so ;; esac

install_file() {
    # Replace only when changed: a rewritten .so under a running VM would be read half-written.
    if ! cmp -s "$1" "$2"; then
        cp "$1" "$2.tmp"
        mv "$2.tmp" "$2"
    fi
}

# A source build makes NIF version 2.15, which every VM from OTP 22 on loads.
nif_version=2.15

precompiled() {
    [ "${PY_CHANNEL_BUILD:-0}" != 1 ] || return 1
    checksums="$root/checksum-py_channel_nif.exs"
    [ -f "$checksums" ] || return 1
    case "$(uname -s)-$(uname -m)" in
        Linux-x86_64) triple=x86_64-unknown-linux-gnu ;;
        Linux-aarch64) triple=aarch64-unknown-linux-gnu ;;
        Darwin-x86_64) triple=x86_64-apple-darwin ;;
        Darwin-arm64) triple=aarch64-apple-darwin ;;
        *) return 1 ;;
    esac
    if [ -e /etc/alpine-release ]; then triple=$(echo "$triple" | sed 's/-gnu$/-musl/'); fi
    vm_nif=$(erl -noshell -eval 'io:format("~s", [erlang:system_info(nif_version)]), halt().')
    # The newest NIF version released that this VM can load (a VM loads older ones).
    expected=""
    for candidate in 2.16 2.15; do
        newer=$(printf '%s\n%s\n' "$candidate" "$vm_nif" | sort -V | tail -n 1)
        [ "$newer" = "$vm_nif" ] || continue
        name="libpy_channel_nif-v$version-nif-$candidate-$triple.tar.gz"
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
    mkdir "$work/unpacked"
    tar -xzf "$work/$name" -C "$work/unpacked"
    for file in py_loader.so $(for python in $pythons; do echo "py_channel_nif-py$python.so"; done); do
        [ -f "$work/unpacked/$file" ] || { echo "build_nif: $name lacks $file" >&2; return 1; }
    done
    for file in "$work"/unpacked/*.so; do
        install_file "$file" "$native/$(basename "$file")"
    done
    echo "build_nif: using precompiled $name"
}

from_source() {
    host=$(rustc -vV | sed -n 's/^host: //p')
    echo "build_nif: building py_channel_nif $version for $host, NIF $nif_version," \
         "one per Python $pythons (the Python is chosen at start)"
    cargo build --quiet --release --manifest-path "$crate/Cargo.toml" \
        --target-dir "$crate/target/loader" --no-default-features --features loader
    install_file "$crate/target/loader/release/libpy_channel_nif.$library_ext" "$native/py_loader.so"
    for python in $pythons; do
        # What pyo3 needs to know of a Python, written out: none has to be installed here,
        # and the link to libpython is left out (py_loader opens the one chosen at start).
        target="$crate/target/py$python"
        mkdir -p "$target"
        printf '%s\n' implementation=CPython "version=$python" shared=true abi3=false \
            "lib_name=python$python" pointer_width=64 build_flags= \
            suppress_build_script_link_lines=true > "$target/pyo3-config.txt.new"
        install_file "$target/pyo3-config.txt.new" "$target/pyo3-config.txt"
        PYO3_CONFIG_FILE="$target/pyo3-config.txt" cargo build --quiet --release \
            --manifest-path "$crate/Cargo.toml" --target-dir "$target" \
            --no-default-features --features "nif_version_$(echo $nif_version | tr . _)"
        install_file "$target/release/libpy_channel_nif.$library_ext" \
            "$native/py_channel_nif-py$python.so"
    done
}

precompiled || from_source
# What earlier versions installed: one NIF linked to one Python, and the Python it was for.
rm -f "$native/py_channel_nif.so" "$native/python"

rm -rf "$root/priv/python.tmp"
cp -R "$root/python" "$root/priv/python.tmp"
find "$root/priv/python.tmp" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$root/priv/python"
mv "$root/priv/python.tmp" "$root/priv/python"
