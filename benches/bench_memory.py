"""Redis memory per session, ours vs Flask-Session, starsessions and Django's
cache engine over django-redis (issue 10 item 6). The measuring runs in a
process of its own (``memory_peers.py``: Django's settings are process-wide)
against this run's Redis; every store's data is read back before it is
measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def test_memory_per_session(benchmark: Any, url: str) -> None:
    found: dict[str, Any] = {}

    def measure() -> None:
        done = subprocess.run(
            [sys.executable, "-m", "benches.memory_peers", url], cwd=ROOT,
            env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
            capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-4000:]
        found.update(json.loads(done.stdout))

    benchmark.group = "memory"
    benchmark.pedantic(measure, rounds=1, iterations=1)
    stores = found["stores"]
    assert set(stores) == {"ours", "Flask-Session", "starsessions",
                           "Django cache engine (django-redis)"}
    for entry in stores.values():
        assert len(entry["keys"]) == 1
        assert entry["session_bytes"] > 0
    assert 0 < stores["ours"]["index_per_session"] < stores["ours"]["session_bytes"]
    benchmark.extra_info.update(kind="memory", section="memory", **found)
