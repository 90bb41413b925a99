#!/usr/bin/env bash
# Build the release wheel: one abi3 wheel for every CPython >= 3.10, manylinux2014,
# cross-linked with zig (from the `ziglang` PyPI package in the venv).
# Leaves exactly one wheel in $DIST (default dist/) and prints its path.
# Expects scripts/setup.sh to have run (maturin and ziglang in $VENV).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-.venv}"
DIST="${DIST:-dist}"
VENV_ABS="$(cd "$VENV" && pwd)"
export VIRTUAL_ENV="$VENV_ABS"
export PATH="$VENV_ABS/bin:$PATH"
export PYO3_PYTHON="$VENV_ABS/bin/python"

rm -rf "$DIST"
mkdir -p "$DIST"
echo "==> maturin build --release --zig --compatibility manylinux2014 -i python3" >&2
maturin build --release --zig --compatibility manylinux2014 -i python3 --out "$DIST" >&2

shopt -s nullglob
wheels=("$DIST"/*.whl)
if [[ ${#wheels[@]} -ne 1 ]]; then
    echo "build-wheel.sh: expected exactly one wheel in $DIST, found ${#wheels[@]}: ${wheels[*]:-none}" >&2
    exit 1
fi
wheel="${wheels[0]}"
name="$(basename "$wheel")"
case "$name" in
    *-abi3-*manylinux2014*) ;;
    *)
        echo "build-wheel.sh: $name is not an abi3 manylinux2014 wheel" >&2
        exit 1
        ;;
esac
echo "==> built $name" >&2
echo "$wheel"
