#!/bin/sh
# Builds the NIF with cargo and installs it as priv/native/py_channel_nif.so.
# Used by mix (compile), rebar3 (pre-hook) and the Makefile, so there is one way to build it.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
crate="$root/native/py_channel_nif"
target="${CARGO_TARGET_DIR:-$crate/target}"
features="${PY_CHANNEL_NIF_FEATURES:-}"

cargo build --quiet --release --manifest-path "$crate/Cargo.toml" --target-dir "$target" \
    ${features:+--features "$features"}

case "$(uname -s)" in
    Darwin) built="$target/release/libpy_channel_nif.dylib" ;;
    *) built="$target/release/libpy_channel_nif.so" ;;
esac
mkdir -p "$root/priv/native"
# Copy only when changed: a rewritten .so under a running VM would be read half-written.
if ! cmp -s "$built" "$root/priv/native/py_channel_nif.so"; then
    cp "$built" "$root/priv/native/py_channel_nif.so.tmp"
    mv "$root/priv/native/py_channel_nif.so.tmp" "$root/priv/native/py_channel_nif.so"
fi
