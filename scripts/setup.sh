#!/usr/bin/env bash
# Bring a machine and the project venv to the state `make demo|test|bench|lint` need.
#
# Idempotent and fast when nothing changed:
#   1. redis-server and redis-sentinel (apt-get, as root or via sudo) when not on PATH;
#   2. the venv ($VENV, default .venv), created when missing or broken;
#   3. build tools + the package's test/lint extras, re-installed only when
#      pyproject.toml or this script changed;
#   4. the Rust extension built in place (`maturin develop`, editable), rebuilt
#      only when Cargo.toml, Cargo.lock, rust/ or the build profile changed.
#
# Environment:
#   VENV           venv directory (default: .venv)
#   BUILD_PROFILE  release (default: what users get and benchmarks measure) or dev
#   PYTHON         interpreter used to create the venv (default: python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${VENV:-.venv}"
BUILD_PROFILE="${BUILD_PROFILE:-release}"
PYTHON="${PYTHON:-python3}"

# Build tools pinned here so every machine (and CI) builds the same way.
MATURIN_REQ="maturin==1.16.0"
ZIGLANG_REQ="ziglang==0.15.2"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'setup.sh: error: %s\n' "$*" >&2; exit 1; }

hash_of() { # hash_of FILE_OR_DIR... -> one sha256 of contents and names
    local f
    for f in "$@"; do
        if [[ -d "$f" ]]; then
            find "$f" -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
        elif [[ -e "$f" ]]; then
            sha256sum "$f"
        fi
    done | sha256sum | cut -d' ' -f1
}

# --- 1. redis-server and redis-sentinel ---------------------------------------
# Debian ships them as two packages (redis-sentinel: the Sentinel tests).
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
if ((${#missing[@]})); then
    log "${missing[*]} not found: installing with apt-get"
    if [[ "$(id -u)" -eq 0 ]]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    else
        die "${missing[*]} missing and this user is neither root nor has sudo; install: apt-get install -y ${missing[*]}"
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
    for binary in "${missing[@]}"; do
        command -v "$binary" >/dev/null 2>&1 || die "$binary still not on PATH after apt-get install"
    done
fi

# --- 2. Rust toolchain (cannot be installed from here: it must be present) ----
command -v cargo >/dev/null 2>&1 || die "cargo not found: install a Rust toolchain (rustup) first"
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

# --- 3. venv -----------------------------------------------------------------
if ! "$VENV/bin/python" -c 'import sys; assert sys.version_info >= (3, 10)' >/dev/null 2>&1; then
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found"
    "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), sys.version' \
        || die "$PYTHON is older than 3.10"
    log "creating venv $VENV with $("$PYTHON" --version 2>&1)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    rm -f "$VENV/.dce-deps-stamp" "$VENV/.dce-build-stamp"
fi
VENV_ABS="$(cd "$VENV" && pwd)"
export VIRTUAL_ENV="$VENV_ABS"
export PATH="$VENV_ABS/bin:$PATH"
export PYO3_PYTHON="$VENV_ABS/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# --- 4. dependencies + editable install ---------------------------------------
deps_hash="$(hash_of pyproject.toml scripts/setup.sh)"
build_hash="$(hash_of Cargo.toml Cargo.lock rust pyproject.toml)-$BUILD_PROFILE"
deps_stamp="$VENV_ABS/.dce-deps-stamp"
build_stamp="$VENV_ABS/.dce-build-stamp"

profile_args=()
[[ "$BUILD_PROFILE" == "release" ]] && profile_args=(--release)

if [[ "$(cat "$deps_stamp" 2>/dev/null)" != "$deps_hash" ]]; then
    log "installing build tools and the test/lint extras into $VENV"
    python -m pip install -q --upgrade pip
    python -m pip install -q "$MATURIN_REQ" "$ZIGLANG_REQ"
    log "building the extension ($BUILD_PROFILE) and installing dce-session editable"
    # maturin develop: pip-installs dependencies + extras, builds the extension
    # into python/dce_session/ and points the venv at python/ (editable).
    maturin develop --extras test,lint "${profile_args[@]}"
    echo "$build_hash" >"$build_stamp"
    echo "$deps_hash" >"$deps_stamp"
elif [[ "$(cat "$build_stamp" 2>/dev/null)" != "$build_hash" ]] \
    || ! compgen -G "python/dce_session/_core*.so" >/dev/null; then
    log "Rust sources changed: rebuilding the extension in place ($BUILD_PROFILE)"
    maturin develop --skip-install "${profile_args[@]}"
    echo "$build_hash" >"$build_stamp"
fi
