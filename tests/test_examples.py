"""The framework examples run: each one's ``--selftest`` drives its app through a
real request cycle (the framework's test client) against the test Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("name", ["fastapi", "flask", "django"])
def test_example_selftest(redis_url: str, name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / f"{name}_app.py"), "--selftest"],
        env={**os.environ, "REDIS_URL": redis_url}, capture_output=True, text=True,
        timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{name} example: ok" in done.stdout
