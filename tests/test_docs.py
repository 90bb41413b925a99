"""The examples in docstrings and in README.md run, so they never rot."""

from __future__ import annotations

import doctest
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = [
    "dce_session.errors",
    "dce_session.core",
    "dce_session.session",
    "dce_session._flows",
    "dce_session.testing",
    "dce_session.integrations.websocket",
    "dce_session.integrations._common",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert attempted > 0, f"{name} has no example"
    assert failed == 0


DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", DOCS)
def test_doc_examples(redis_url: str, page: str, store: Any) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), re.S)
    if page == "README.md":
        assert blocks, "README.md has no python example"
    for number, block in enumerate(blocks, 1):
        store.flushdb()
        code = block.replace("redis://localhost:6379/0", redis_url)
        exec(compile(code, f"{page} python block {number}", "exec"), {"__name__": "docs"})


def test_every_doc_page_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in DOCS[1:]:
        assert f"({page})" in readme or f"({page.removeprefix('docs/')})" in readme \
            or any(f"({page.removeprefix('docs/')})" in (ROOT / other).read_text()
                   for other in DOCS[1:]), f"{page} is not linked"


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
