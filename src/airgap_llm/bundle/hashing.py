"""sha256 of files, one at a time or many in parallel.

``hashlib`` releases the GIL while it hashes buffers larger than 2 KiB, so a thread pool reading 1 MiB
chunks keeps every core busy without the cost of processes; ``bench/verify.py`` measures threads
against processes and against ``sha256sum``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CHUNK = 1 << 20
Mode = Literal["threads", "processes"]
OnBytes = Callable[[int], None]


def sha256_file(path: str | os.PathLike[str], on_bytes: OnBytes | None = None, chunk: int = CHUNK) -> str:
    """The hex sha256 of a file's content (symlinks followed), reporting progress per chunk."""
    digest = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while True:
            n = fh.readinto(buf)
            if not n:
                break
            digest.update(view[:n])
            if on_bytes is not None:
                on_bytes(n)
    return digest.hexdigest()


def _hash_one(path: str) -> tuple[str, str | None, str | None]:
    try:
        return path, sha256_file(path), None
    except OSError as exc:
        return path, None, f"{exc.strerror or exc}"


@dataclass
class HashResult:
    digests: dict[str, str]  # key -> sha256
    errors: dict[str, str]  # key -> read error


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def hash_files(
    files: Sequence[tuple[str, Path, int]],
    workers: int | None = None,
    mode: Mode = "threads",
    on_bytes: OnBytes | None = None,
) -> HashResult:
    """Hash ``(key, path, size)`` items in parallel, largest first (so the pool ends together).

    ``on_bytes`` is called from worker threads with byte counts as they are read (threads mode) or
    with a whole file's size when it finishes (processes mode); it must be thread-safe.
    """
    workers = workers or default_workers()
    order = sorted(files, key=lambda item: item[2], reverse=True)
    keys = {str(path): key for key, path, _ in order}
    sizes = {str(path): size for _, path, size in order}
    digests: dict[str, str] = {}
    errors: dict[str, str] = {}
    if not order:
        return HashResult(digests, errors)

    def thread_job(path: str) -> tuple[str, str | None, str | None]:
        try:
            return path, sha256_file(path, on_bytes), None
        except OSError as exc:
            return path, None, f"{exc.strerror or exc}"

    pool: Executor
    if mode == "processes":
        pool = ProcessPoolExecutor(max_workers=workers)
        job: Callable[[str], tuple[str, str | None, str | None]] = _hash_one
    else:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sha256")
        job = thread_job
    with pool:
        futures = [pool.submit(job, str(path)) for _, path, _ in order]
        for fut in as_completed(futures):
            path, digest, error = fut.result()
            if digest is not None:
                digests[keys[path]] = digest
            else:
                errors[keys[path]] = error or "unreadable"
            if mode == "processes" and on_bytes is not None:
                on_bytes(sizes[path])
    return HashResult(digests, errors)
