#!/bin/sh
# Builds the NIF with cargo and installs it as priv/native/py_channel_nif.so, with the Python
# package `erlang` beside it in priv/python. Used by mix (compile), rebar3 (pre-hook) and the
# Makefile, so there is one way to build.
#
# The NIF embeds (links) libpython, so it is built for one Python: the `python3` on PATH, or
# PY_CHANNEL_PYTHON=/path/to/python3. Each Python version gets its own cargo target dir.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
crate="$root/native/py_channel_nif"

python="${PY_CHANNEL_PYTHON:-$(command -v python3)}"
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
target="${CARGO_TARGET_DIR:-$crate/target/python$version}"
features="${PY_CHANNEL_NIF_FEATURES:-}"

PYO3_PYTHON="$python" cargo build --quiet --release --manifest-path "$crate/Cargo.toml" \
    --target-dir "$target" ${features:+--features "$features"}

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
echo "$python" > "$root/priv/native/python"

rm -rf "$root/priv/python.tmp"
cp -R "$root/python" "$root/priv/python.tmp"
find "$root/priv/python.tmp" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$root/priv/python"
mv "$root/priv/python.tmp" "$root/priv/python"
