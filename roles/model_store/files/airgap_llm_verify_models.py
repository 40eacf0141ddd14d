#!/usr/bin/env python3
"""Verify staged model files against the bundle manifest's sha256, re-hashing only what changed.

Runs on the host (Python 3.8+, standard library only). Input: a JSON file with the manifest entries
of the host's models::

    {"format": 1, "prefix": "models/hub/",
     "entries": [{"path": "models/hub/models--org--name/blobs/<hash>", "size": N, "sha256": "..."},
                 {"path": "models/hub/models--org--name/snapshots/<commit>/config.json",
                  "link": "../../blobs/<hash>", "size": N, "sha256": "..."}, ...]}

Each path minus ``prefix`` is looked up under ``--root`` (the hub directory). Regular files are
hashed unless the record (``--record``) says this exact file (same size and mtime_ns) was already
verified with the expected sha256; links must exist and hold the expected link text. Files are hashed
in parallel (hashlib releases the GIL on large reads).

The record is JSON ``{"format": 1, "files": {path: {"size", "mtime_ns", "sha256"}}}``, keyed by the
path under the root; it keeps only entries that were verified and are still expected, and is
rewritten (atomically) only when it changes. A file that fails is dropped from it, so a later run
hashes it again.

Prints a JSON report on stdout::

    {"ok": true, "files": 12, "links": 11, "hashed": 0, "hashed_bytes": 0, "trusted": 12,
     "record_changed": false, "failures": [{"path": ..., "problem": ..., "detail": ...}]}

Exit status: 0 everything matches, 1 a file is missing, of the wrong size, corrupted or a bad link
(the report names each), 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import stat
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

RECORD_FORMAT = 1
CHUNK = 4 << 20


class Entry(NamedTuple):
    """One expected file (``link`` is None) or symlink, its path relative to the root."""

    path: str
    size: int
    sha256: str
    link: str | None = None


class Seen(NamedTuple):
    """What ``lstat`` found at a path: kind is "file", "link", "other"; ``link`` the link text."""

    kind: str
    size: int = 0
    mtime_ns: int = 0
    link: str | None = None


class Failure(NamedTuple):
    path: str
    problem: str  # missing | size-mismatch | corrupted | bad-link | not-a-file
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "problem": self.problem, "detail": self.detail}


class Plan(NamedTuple):
    to_hash: list[Entry]
    trusted: list[Entry]
    failures: list[Failure]


class InputProblem(Exception):
    """The expected-entries file or the arguments are unusable."""


# --- pure logic ---------------------------------------------------------------------------------


def parse_expected(data: Any) -> list[Entry]:
    """Entries from the expected-entries JSON, paths made relative to the root (``prefix`` removed)."""
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise InputProblem("expected a JSON object with an 'entries' list")
    prefix = data.get("prefix", "")
    out = []
    for i, raw in enumerate(data["entries"]):
        try:
            path = raw["path"]
            size = raw["size"]
            sha = raw["sha256"]
        except (TypeError, KeyError) as exc:
            raise InputProblem(f"entries[{i}]: missing {exc}") from None
        if not isinstance(path, str) or not path.startswith(prefix):
            raise InputProblem(f"entries[{i}]: path {path!r} is not under {prefix!r}")
        rel = path[len(prefix):]
        parts = rel.split("/")
        if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise InputProblem(f"entries[{i}]: unsafe path {path!r}")
        out.append(Entry(rel, int(size), str(sha), raw.get("link")))
    return out


def plan_checks(entries: list[Entry], seen: dict[str, Seen | None], record: dict[str, Any]) -> Plan:
    """Which regular files must be hashed, which the record vouches for, and what is already wrong.

    A file is trusted when the record has it with the same size, the same mtime_ns and the expected
    sha256; anything else present with the right size is hashed. Links are checked here in full.
    """
    to_hash: list[Entry] = []
    trusted: list[Entry] = []
    failures: list[Failure] = []
    for entry in entries:
        found = seen.get(entry.path)
        if entry.link is not None:
            if found is None:
                failures.append(Failure(entry.path, "missing", f"expected a link to {entry.link}"))
            elif found.kind != "link":
                failures.append(Failure(entry.path, "bad-link", f"not a link; expected a link to {entry.link}"))
            elif found.link != entry.link:
                failures.append(Failure(entry.path, "bad-link", f"points to {found.link}, expected {entry.link}"))
            continue
        if found is None:
            failures.append(Failure(entry.path, "missing", f"expected {entry.size} bytes, sha256 {entry.sha256}"))
        elif found.kind != "file":
            failures.append(Failure(entry.path, "not-a-file", f"found a {found.kind}, expected a regular file"))
        elif found.size != entry.size:
            failures.append(Failure(entry.path, "size-mismatch", f"{found.size} bytes, expected {entry.size}"))
        else:
            known = record.get(entry.path)
            if (
                isinstance(known, dict)
                and known.get("size") == found.size
                and known.get("mtime_ns") == found.mtime_ns
                and known.get("sha256") == entry.sha256
            ):
                trusted.append(entry)
            else:
                to_hash.append(entry)
    return Plan(to_hash, trusted, failures)


def new_record(
    entries: list[Entry],
    seen: dict[str, Seen | None],
    trusted: list[Entry],
    hashed: dict[str, str],
) -> dict[str, dict[str, Any]]:
    """The record after this run: every file trusted or hashed to its expected value, nothing else."""
    out: dict[str, dict[str, Any]] = {}
    good = {e.path for e in trusted}
    good.update(e.path for e in entries if e.link is None and hashed.get(e.path) == e.sha256)
    for entry in entries:
        if entry.path in good:
            found = seen[entry.path]
            assert found is not None
            out[entry.path] = {"size": found.size, "mtime_ns": found.mtime_ns, "sha256": entry.sha256}
    return out


def hash_failures(to_hash: list[Entry], hashed: dict[str, str]) -> list[Failure]:
    """A failure for every hashed file whose content differs from the manifest."""
    return [
        Failure(e.path, "corrupted", f"sha256 {hashed[e.path]}, expected {e.sha256}")
        for e in to_hash
        if hashed.get(e.path) != e.sha256
    ]


# --- the file system ----------------------------------------------------------------------------


def look(root: str, entries: list[Entry]) -> dict[str, Seen | None]:
    out: dict[str, Seen | None] = {}
    for entry in entries:
        full = os.path.join(root, entry.path)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            out[entry.path] = None
            continue
        except NotADirectoryError:
            out[entry.path] = None
            continue
        if stat.S_ISLNK(st.st_mode):
            out[entry.path] = Seen("link", 0, st.st_mtime_ns, os.readlink(full))
        elif stat.S_ISREG(st.st_mode):
            out[entry.path] = Seen("file", st.st_size, st.st_mtime_ns)
        else:
            out[entry.path] = Seen("other")
    return out


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(CHUNK)
            if not chunk:
                break
            digest.update(chunk)
    return digest.hexdigest()


def hash_all(root: str, entries: list[Entry], workers: int) -> dict[str, str]:
    if not entries:
        return {}
    # Biggest first, so that one huge file does not start last and run alone.
    ordered = sorted(entries, key=lambda e: e.size, reverse=True)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(ordered)))) as pool:
        digests = pool.map(lambda e: sha256_of(os.path.join(root, e.path)), ordered)
        # zip(strict=...) needs Python 3.10; hosts may have 3.8.
        return {e.path: d for e, d in zip(ordered, digests)}  # noqa: B905


def load_record(path: str) -> dict[str, Any]:
    """The record's files, or {} when it is missing or unreadable (then everything is hashed)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT or not isinstance(data.get("files"), dict):
        return {}
    return data["files"]


def save_record(path: str, files: dict[str, dict[str, Any]]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".verified.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"format": RECORD_FORMAT, "files": files}, fh, indent=1, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def run(expected_path: str, root: str, record_path: str | None, workers: int) -> tuple[int, dict[str, Any]]:
    with open(expected_path, encoding="utf-8") as fh:
        entries = parse_expected(json.load(fh))
    record = load_record(record_path) if record_path else {}
    seen = look(root, entries)
    plan = plan_checks(entries, seen, record)
    hashed = hash_all(root, plan.to_hash, workers)
    failures = plan.failures + hash_failures(plan.to_hash, hashed)
    updated = new_record(entries, seen, plan.trusted, hashed)
    changed = record_path is not None and updated != record
    if changed and record_path is not None:
        save_record(record_path, updated)
    report = {
        "ok": not failures,
        "files": sum(1 for e in entries if e.link is None),
        "links": sum(1 for e in entries if e.link is not None),
        "hashed": len(hashed),
        "hashed_bytes": sum(e.size for e in plan.to_hash),
        "trusted": len(plan.trusted),
        "record_changed": changed,
        "failures": [f.to_json() for f in sorted(failures)],
    }
    return (0 if not failures else 1), report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--expected", required=True, help="JSON file of the manifest entries to check")
    parser.add_argument("--root", required=True, help="the directory the entries' paths are relative to")
    parser.add_argument("--record", help="the record of verified files (read, and rewritten when it changes)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="hashing threads")
    args = parser.parse_args(argv)
    try:
        rc, report = run(args.expected, args.root, args.record, args.workers)
    except (OSError, ValueError, InputProblem) as exc:
        print(json.dumps({"ok": False, "error": str(exc)}))
        return 2
    print(json.dumps(report, sort_keys=True))
    return rc


if __name__ == "__main__":
    sys.exit(main())
