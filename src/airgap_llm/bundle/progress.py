"""Rich progress bars for hashing and downloads (written to stderr so --json stays clean)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from airgap_llm.bundle.hashing import OnBytes

stderr_console = Console(stderr=True, soft_wrap=True)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@contextmanager
def byte_progress(description: str, enabled: bool = True) -> Iterator[Progress]:
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=stderr_console,
        transient=True,
        disable=not enabled,
    )
    with progress:
        yield progress


def thread_safe_advance(progress: Progress, description: str, total: int) -> OnBytes:
    """Add a task and return a thread-safe callback that advances it by a byte count."""
    task = progress.add_task(description, total=total)
    lock = threading.Lock()

    def advance(n: int) -> None:
        with lock:
            progress.advance(task, n)

    return advance
