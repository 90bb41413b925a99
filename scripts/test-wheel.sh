#!/usr/bin/env bash
# Test the built wheel as users get it: install it (with the test extras) into a
# fresh venv ($WHEEL_VENV, default .venvs/wheel) and run the whole pytest suite
# from a temporary directory, so that `import dce_session` resolves to
# site-packages and never to the source tree's python/.
# Usage: scripts/test-wheel.sh [WHEEL]   (default: the one wheel in dist/)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
WHEEL_VENV="${WHEEL_VENV:-.venvs/wheel}"

wheel="${1:-}"
if [[ -z "$wheel" ]]; then
    shopt -s nullglob
    wheels=(dist/*.whl)
    [[ ${#wheels[@]} -eq 1 ]] || { echo "test-wheel.sh: expected one wheel in dist/, found ${#wheels[@]}" >&2; exit 1; }
    wheel="${wheels[0]}"
fi
wheel="$(cd "$(dirname "$wheel")" && pwd)/$(basename "$wheel")"

echo "==> fresh venv $WHEEL_VENV with $(basename "$wheel")[test]" >&2
rm -rf "$WHEEL_VENV"
mkdir -p "$(dirname "$WHEEL_VENV")"
"$PYTHON" -m venv "$WHEEL_VENV"
WPY="$(cd "$WHEEL_VENV" && pwd)/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$WPY" -m pip install -q "${wheel}[test]"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
unset PYTHONPATH VIRTUAL_ENV
installed="$("$WPY" -c 'import dce_session, sys; print(dce_session.__file__)')"
echo "==> dce_session imports from $installed" >&2
case "$installed" in
    "$ROOT/python/"*) echo "test-wheel.sh: dce_session resolved to the source tree" >&2; exit 1 ;;
    */site-packages/*) ;;
    *) echo "test-wheel.sh: dce_session is not from site-packages" >&2; exit 1 ;;
esac

echo "==> pytest (installed wheel) from $tmp" >&2
DCE_SESSION_EXPECT_INSTALLED=1 "$WPY" -m pytest \
    -c "$ROOT/pyproject.toml" --rootdir "$ROOT" -p no:cacheprovider \
    "$ROOT/tests" "$ROOT/benches"
