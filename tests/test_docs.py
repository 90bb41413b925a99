"""The examples in docstrings and in README.md run, so they never rot."""

from __future__ import annotations

import doctest
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = [
    "dce_session.errors",
    "dce_session.core",
    "dce_session.session",
    "dce_session._flows",
    "dce_session.testing",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert attempted > 0, f"{name} has no example"
    assert failed == 0


def test_readme_examples(redis_url: str) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks, "README.md has no python example"
    for number, block in enumerate(blocks, 1):
        code = block.replace("redis://localhost:6379/0", redis_url)
        exec(compile(code, f"README.md python block {number}", "exec"), {"__name__": "readme"})


def test_quickstart_runs(redis_url: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        env={**os.environ, "REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "logged in" in done.stdout
