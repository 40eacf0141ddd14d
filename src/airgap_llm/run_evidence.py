"""The evidence of a failed run: ansible-runner's artifacts (``stdout``, ``job_events/``, ``status``,
``rc``, ``command``) kept under ``<cache>/runs/<timestamp>/`` (``$AIRGAP_LLM_CACHE`` or
``~/.cache/airgap-llm``), the newest ``KEEP`` of them; a successful run keeps nothing.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from airgap_llm.cache import cache_root

KEEP = 10
_STAMP = "%Y%m%dT%H%M%S.%fZ"


def runs_root() -> Path:
    return cache_root() / "runs"


def run_name(now: datetime) -> str:
    """``20261130T134501.123456Z``: sorts as the runs happened."""
    return now.astimezone(UTC).strftime(_STAMP)


def keep(artifacts: Path, root: Path | None = None, now: datetime | None = None, limit: int = KEEP) -> Path:
    """Move ``artifacts`` (a run's artifact directory) to ``<root>/<timestamp>/``, then rotate.

    Returns the kept directory (mode 0700: the events hold task results).
    """
    root = runs_root() if root is None else root
    root.mkdir(parents=True, exist_ok=True)
    dest = root / run_name(now or datetime.now(UTC))
    while dest.exists():
        dest = dest.with_name(dest.name + "-1")
    shutil.move(str(artifacts), str(dest))
    dest.chmod(0o700)
    rotate(root, limit)
    return dest


def rotate(root: Path, limit: int = KEEP) -> list[Path]:
    """Remove all but the newest ``limit`` run directories under ``root``; return those removed."""
    if not root.is_dir():
        return []
    runs = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())
    removed = runs[: max(len(runs) - limit, 0)]
    for old in removed:
        shutil.rmtree(old, ignore_errors=True)
    return removed
