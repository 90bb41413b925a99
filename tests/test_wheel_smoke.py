"""The suite runs against the build it means to: the in-place one, or an installed wheel.

``scripts/test-wheel.sh`` sets ``DCE_SESSION_EXPECT_INSTALLED=1`` when it runs the
suite against the wheel installed in a fresh venv; then ``dce_session`` must come
from site-packages, never from the source tree's ``python/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dce_session
from dce_session import _core

SOURCE_TREE = Path(__file__).resolve().parents[1] / "python"


def test_core_is_the_abi3_extension() -> None:
    assert Path(_core.__file__).name == "_core.abi3.so"
    assert _core.is_valid_sid(_core.generate_sid(60))


def test_imports_come_from_the_build_the_suite_means() -> None:
    """Installed wheel: site-packages, never the source tree. In-place build
    (``make test``): the source tree's ``python/``."""
    installed = bool(os.environ.get("DCE_SESSION_EXPECT_INSTALLED"))
    for module in (dce_session, _core):
        path = Path(str(module.__file__)).resolve()
        assert (SOURCE_TREE in path.parents) is not installed, path
        if installed:
            assert "site-packages" in path.parts, path
