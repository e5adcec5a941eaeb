#!/bin/sh
# Checks the precompiled-NIF path of build_nif.sh end to end: a release artifact served over
# HTTP is downloaded, verified against checksum-py_channel_nif.exs and installed; a wrong
# checksum, or PY_CHANNEL_BUILD=1, builds from source instead.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
server_pid=""
cleanup() {
    [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
    rm -rf "$work" "$root/checksum-py_channel_nif.exs"
}
trap cleanup EXIT

python=$(command -v python3)
nif_version=$(erl -noshell -eval 'io:format("~s", [erlang:system_info(nif_version)]), halt().')
case "$(uname -m)" in x86_64) arch=x86_64 ;; aarch64 | arm64) arch=aarch64 ;; esac
name="libpy_channel_nif-v2.3.0-nif-$nif_version-$arch-unknown-linux-gnu.tar.gz"
installed="$root/priv/native/py_channel_nif-py3.12.so"

# The "release": the NIFs built from source (one per Python minor, and the loader), with a
# marker to tell them apart once installed.
sh "$root/scripts/build_nif.sh"
mkdir "$work/release" "$work/artifact"
cp "$root"/priv/native/*.so "$work/artifact/"
for file in "$work"/artifact/*.so; do printf 'precompiled-marker' >> "$file"; done
tar -czf "$work/release/$name" -C "$work/artifact" .
sum=$(sha256sum "$work/release/$name" | cut -d' ' -f1)

port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$python" -m http.server "$port" --bind 127.0.0.1 --directory "$work/release" >/dev/null 2>&1 &
server_pid=$!
sleep 1

echo "%{\"$name\" => \"sha256:$sum\"}" > "$root/checksum-py_channel_nif.exs"
PY_CHANNEL_PRECOMPILED_URL="http://127.0.0.1:$port" sh "$root/scripts/build_nif.sh" | grep -q "using precompiled"
grep -q precompiled-marker "$installed"
grep -q precompiled-marker "$root/priv/native/py_loader.so"
echo "precompiled: downloaded, verified and installed"

echo "%{\"$name\" => \"sha256:0000\"}" > "$root/checksum-py_channel_nif.exs"
PY_CHANNEL_PRECOMPILED_URL="http://127.0.0.1:$port" sh "$root/scripts/build_nif.sh" 2>&1 | grep -q "checksum mismatch"
! grep -q precompiled-marker "$installed"
! grep -q precompiled-marker "$root/priv/native/py_loader.so"
echo "precompiled: a wrong checksum falls back to the source build"

echo "%{\"$name\" => \"sha256:$sum\"}" > "$root/checksum-py_channel_nif.exs"
PY_CHANNEL_BUILD=1 PY_CHANNEL_PRECOMPILED_URL="http://127.0.0.1:$port" sh "$root/scripts/build_nif.sh"
! grep -q precompiled-marker "$installed"
! grep -q precompiled-marker "$root/priv/native/py_loader.so"
echo "precompiled: PY_CHANNEL_BUILD=1 builds from source"
