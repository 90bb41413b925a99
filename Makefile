# dce-session developer commands. `make help` lists them.
# Every target sets the machine up first (scripts/setup.sh: redis-server, the
# venv, the editable build), so each one works on a fresh machine.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.NOTPARALLEL:

VENV ?= .venv
WHEEL_VENV ?= .venvs/wheel
export VENV WHEEL_VENV

# Tools (python, ruff, mypy, pytest, maturin) resolve from the venv; pyo3's build
# script sees the same interpreter as maturin, so cargo's cache is shared.
VENV_ABS := $(abspath $(VENV))
export VIRTUAL_ENV := $(VENV_ABS)
export PATH := $(VENV_ABS)/bin:$(PATH)
export PYO3_PYTHON := $(VENV_ABS)/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK := 1
unexport PYTHONPATH

PY := $(VENV_ABS)/bin/python

define rust_lint
	cargo fmt --check
	cargo clippy --all-targets --all-features -- -D warnings
endef

define py_lint
	ruff check python tests benches examples
	mypy --strict python/dce_session
	python -m mypy.stubtest dce_session._core
endef

.PHONY: setup
setup: ## Install redis-server if missing, create the venv, build the extension in place
	bash scripts/setup.sh

.PHONY: demo
demo: setup ## Run examples/quickstart.py in the venv
	$(PY) examples/quickstart.py

.PHONY: fleet
fleet: setup ## Run the two-server websocket example (examples/fleet) on :8001 and :8002
	$(PY) examples/fleet/run.py

.PHONY: example-fastapi example-flask example-django
example-fastapi: setup ## Serve examples/fastapi_app.py on http://127.0.0.1:8000
	$(PY) examples/fastapi_app.py

example-flask: setup ## Serve examples/flask_app.py on http://127.0.0.1:5000
	$(PY) examples/flask_app.py

example-django: setup ## Serve examples/django_app.py on http://127.0.0.1:8001
	$(PY) examples/django_app.py

.PHONY: lint
lint: setup ## cargo fmt --check, clippy -D warnings, ruff check, mypy --strict, stubtest
	$(rust_lint)
	$(py_lint)

.PHONY: test
test: setup ## Lint, Rust tests, pytest on the editable build, then pytest on the built abi3 wheel
	$(rust_lint)
	cargo test
	$(py_lint)
	$(PY) -m pytest
	bash scripts/build-wheel.sh >/dev/null
	bash scripts/test-wheel.sh

.PHONY: wheel
wheel: setup ## Build the release abi3 manylinux2014 wheel into dist/ (maturin --zig)
	bash scripts/build-wheel.sh

.PHONY: bench
bench: ## Benchmarks on a release build: benches/results.json, then benches/README.md
	BUILD_PROFILE=release bash scripts/setup.sh
	$(PY) -m pytest benches --benchmark-enable --benchmark-json=benches/results.json
	if [[ -f benches/report.py ]]; then \
		$(PY) benches/report.py benches/results.json > benches/README.md.tmp; \
		mv benches/README.md.tmp benches/README.md; \
	fi
	@# pytest-benchmark stores every timing (tens of MB): keep only the stats.
	$(PY) -c 'import json, sys; p = sys.argv[1]; d = json.load(open(p)); \
		[b["stats"].pop("data", None) for b in d["benchmarks"]]; \
		open(p, "w").write(json.dumps(d, indent=2) + "\n")' benches/results.json

.PHONY: help
help: ## List the targets
	@echo "usage: make TARGET"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
