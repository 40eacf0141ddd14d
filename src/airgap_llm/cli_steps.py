"""A named step of a longer command, timed and shown as it starts and ends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from airgap_llm.console import console


@contextmanager
def step(title: str) -> Iterator[None]:
    console.rule(f"[bold]{title}", align="left")
    started = time.monotonic()
    try:
        yield
    except BaseException:
        console.print(f"[bold red]failed[/] after {time.monotonic() - started:.1f} s: {title}")
        raise
    console.print(f"[green]done[/] in {time.monotonic() - started:.1f} s")
