#!/bin/sh
# Draws the figures `make bench` measured (table 11, tab-separated) into a PNG with matplotlib,
# installed from PyPI into a venv of the build dir the first time.
set -eu
figures="$1"
png="$2"
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/_build/plot-venv"
if ! "$venv/bin/python" -c "import matplotlib" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check matplotlib
fi
MPLBACKEND=Agg "$venv/bin/python" "$root/scripts/plot_bench.py" "$figures" "$png"
