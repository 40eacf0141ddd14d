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

Two more modes serve the staging of models from a bundle (roles/model_store):

``--watch CMD...`` runs CMD (rsync's receiving side, given as rsync's ``--rsync-path``) with this
process's stdin and stdout, and meanwhile hashes every expected file that appears complete under its
final name below the root (rsync writes into a temporary name, or into its partial dir, and renames a
file into place only once it is whole), so hashing overlaps the transfer. Files that match are added
to the record (under a lock, merged with what is there); nothing is printed on stdout (it is rsync's
channel). The exit status is CMD's.

With ``--state FILE`` (the relay's state file of a host that serves others, see
airgap_llm_model_relay.py), the files verified so far are added to it as they are, with the folder
``receiving``, and ``done`` (CMD exited 0) or ``failed`` at the end; nothing when FILE's directory does not
exist (a host that serves no one).

``--publish DEST`` makes DEST (the live hub) match the root (the verified staging copy) for the
expected entries: each file is hard-linked into place under a temporary name and renamed over the old
one (a running service keeps reading the old inode; no reader ever sees a half-written file), links
are made the same way, and files, links and empty directories under the entries' model directories
that the entries do not list are removed, except what a kept snapshot holds (``--keep SNAPSHOT_DIR``,
repeated: the snapshots of the host's live and previous releases, so that a rollback finds its model;
the files of such a snapshot and the blobs its links point at stay). It refuses (exit 1, nothing
changed) unless the record vouches for every file, i.e. only files verified with their expected
sha256 reach DEST. Prints
``{"ok": true, "changed": [model dirs], "placed": N, "removed": N, "links": [services]}``.

With ``--links-dir DIR`` and ``--link SERVICE=FOLDER@REVISION`` (repeated), a publish that succeeded then
points ``DIR/SERVICE`` at ``DEST/FOLDER/snapshots/<commit>`` (the commit is REVISION when it is one, else
what ``DEST/FOLDER/refs/REVISION`` names), each link made under a temporary name and renamed over the old
one; ``links`` lists the services whose link changed. A revision without a ref or a snapshot fails the
run (exit 1) after the publish, with the failures named.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
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
    ino: int = 0


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


def only_under(entries: list[Entry], folders: list[str]) -> list[Entry]:
    """The entries below any of the given top-level directories (all of them when none is given)."""
    if not folders:
        return entries
    return [e for e in entries if e.path.split("/", 1)[0] in folders]


def vouched(entry: Entry, found: Seen | None, record: dict[str, Any]) -> bool:
    """Whether the record says this exact regular file was verified with the entry's sha256."""
    known = record.get(entry.path)
    return (
        found is not None
        and found.kind == "file"
        and isinstance(known, dict)
        and known.get("size") == found.size == entry.size
        and known.get("mtime_ns") == found.mtime_ns
        and known.get("sha256") == entry.sha256
    )


def ready_to_hash(entry: Entry, found: Seen | None, record: dict[str, Any]) -> bool:
    """A regular file of the expected size under its final name that the record does not vouch for."""
    return (
        entry.link is None
        and found is not None
        and found.kind == "file"
        and found.size == entry.size
        and not vouched(entry, found, record)
    )


def publish_order(entry: Entry) -> tuple[int, str]:
    """Blobs first, then other files, then links (which point at blobs), refs last (they name snapshots)."""
    top = entry.path.split("/")[1] if entry.path.count("/") >= 1 else ""
    if top == "refs":
        return (3, entry.path)
    if entry.link is not None:
        return (2, entry.path)
    return (0 if top == "blobs" else 1, entry.path)


def to_place(entries: list[Entry], src: dict[str, Seen | None], dest: dict[str, Seen | None]) -> list[Entry]:
    """Entries whose destination is not already the source's file (same inode) or the same link."""
    out = []
    for entry in entries:
        have, want = dest.get(entry.path), src.get(entry.path)
        if entry.link is not None:
            if have is None or have.kind != "link" or have.link != entry.link:
                out.append(entry)
        elif have is None or want is None or have.kind != "file" or have.ino != want.ino:
            out.append(entry)
    return sorted(out, key=publish_order)


def extras(expected: set[str], found: list[str]) -> list[str]:
    """Paths found (files and links, relative) that no entry lists."""
    return sorted(p for p in found if p not in expected)


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
            out[entry.path] = Seen("link", 0, st.st_mtime_ns, os.readlink(full), st.st_ino)
        elif stat.S_ISREG(st.st_mode):
            out[entry.path] = Seen("file", st.st_size, st.st_mtime_ns, None, st.st_ino)
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


class RecordLock:
    """An exclusive lock beside the record, held while it is read, merged and rewritten."""

    def __init__(self, record_path: str | None) -> None:
        self.path = record_path + ".lock" if record_path else None
        self.fd = -1

    def __enter__(self) -> RecordLock:
        if self.path:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases the lock
            self.fd = -1


def merge_record(path: str, verified: dict[str, dict[str, Any]]) -> bool:
    """Add freshly verified files to the record on disk; True when it changed."""
    if not verified:
        return False
    with RecordLock(path):
        files = load_record(path)
        merged = dict(files)
        merged.update(verified)
        if merged == files:
            return False
        save_record(path, merged)
        return True


def replace_json(path: str, data: dict[str, Any], prefix: str, durable: bool) -> None:
    """Write ``data`` to a temporary file beside ``path`` (0644; fsync'ed when ``durable``) and rename it over."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1 if durable else None, sort_keys=True)
            fh.write("\n")
            if durable:
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


def save_record(path: str, files: dict[str, dict[str, Any]]) -> None:
    replace_json(path, {"format": RECORD_FORMAT, "files": files}, ".verified.", durable=True)


# --- the relay's state file (read by the hosts that pull from this one) --------------------------------
STATE_FORMAT = 1
HEARTBEAT_S = 5.0


def load_state(path: str) -> dict[str, Any]:
    """The relay state: per folder "receiving" | "done" | "failed", and the files verified (path -> sha256)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        data = None
    if (not isinstance(data, dict) or data.get("format") != STATE_FORMAT
            or not isinstance(data.get("folders"), dict) or not isinstance(data.get("verified"), dict)):
        return {"format": STATE_FORMAT, "folders": {}, "verified": {}}
    return data


def update_state(
    path: str | None, folders: dict[str, str] | None = None, verified: dict[str, str] | None = None
) -> None:
    """Merge folder states and verified files into the state file (under a lock, replaced atomically, 0644),
    and note the time (``alive``): while a copy arrives here, its receiver calls this every few seconds, so
    a host pulling from this one tells a long file from a receiver that died.

    Nothing when ``path`` is None or its directory does not exist: only a host that serves others has one."""
    if not path or not os.path.isdir(os.path.dirname(path)):
        return
    with RecordLock(path):
        state = load_state(path)
        state["folders"].update(folders or {})
        state["verified"].update(verified or {})
        state["alive"] = int(time.time())
        # Read by the hosts pulling from this one during the run only: no fsync.
        replace_json(path, state, ".state.", durable=False)


def vouched_files(root: str, entries: list[Entry], record: dict[str, Any]) -> dict[str, str]:
    """The regular files the record vouches for as they are now: path -> sha256."""
    files = [e for e in entries if e.link is None]
    seen = look(root, files)
    return {e.path: e.sha256 for e in files if vouched(e, seen[e.path], record)}


def load_entries(expected_path: str, folders: list[str]) -> list[Entry]:
    with open(expected_path, encoding="utf-8") as fh:
        return only_under(parse_expected(json.load(fh)), folders)


def run(
    expected_path: str, root: str, record_path: str | None, workers: int, folders: list[str] | None = None
) -> tuple[int, dict[str, Any]]:
    entries = load_entries(expected_path, folders or [])
    record = load_record(record_path) if record_path else {}
    seen = look(root, entries)
    plan = plan_checks(entries, seen, record)
    hashed = hash_all(root, plan.to_hash, workers)
    failures = plan.failures + hash_failures(plan.to_hash, hashed)
    updated = new_record(entries, seen, plan.trusted, hashed)
    changed = False
    if record_path is not None:
        with RecordLock(record_path):
            # Keep what the record says of other models' files (another run may have verified them).
            on_disk = load_record(record_path)
            # With every entry given, the record keeps only what is still expected.
            ours = {e.path for e in entries}
            merged = {p: v for p, v in on_disk.items() if folders and p not in ours}
            merged.update(updated)
            changed = merged != on_disk
            if changed:
                save_record(record_path, merged)
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


def watch(cmd: list[str], root: str, entries: list[Entry], record_path: str, workers: int, poll_s: float = 0.2,
          state_path: str | None = None) -> int:
    """Run ``cmd``; hash each expected file as it appears whole under its final name; record the good ones
    (and name them in the relay's state file as they are verified, when there is one)."""
    files = [e for e in entries if e.link is None]
    record = load_record(record_path)
    folders = sorted({e.path.split("/", 1)[0] for e in entries})
    update_state(state_path, {f: "receiving" for f in folders}, vouched_files(root, files, record))
    announced: set[str] = set()
    queued: dict[str, tuple[int, int, int]] = {}
    pending: dict[Future[str], tuple[Entry, Seen]] = {}
    verified: dict[str, dict[str, Any]] = {}

    def sweep(pool: ThreadPoolExecutor) -> None:
        seen = look(root, files)
        for entry in files:
            found = seen[entry.path]
            if found is None or not ready_to_hash(entry, found, record):
                continue
            key = (found.size, found.mtime_ns, found.ino)
            if queued.get(entry.path) != key:
                queued[entry.path] = key
                pending[pool.submit(sha256_of, os.path.join(root, entry.path))] = (entry, found)

    def collect(block: bool) -> None:
        for future in list(pending):
            if not block and not future.done():
                continue
            entry, found = pending.pop(future)
            try:
                digest = future.result()
            except OSError:
                continue  # replaced or removed while read: the verify step looks again
            now = look(root, [entry])[entry.path]
            if digest == entry.sha256 and now == found:
                verified[entry.path] = {"size": found.size, "mtime_ns": found.mtime_ns, "sha256": entry.sha256}

    # rsync handles these itself; here they must not kill the watcher before the child is reaped.
    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
        signal.signal(sig, lambda *_: None)
    beat = [time.monotonic()]

    def announce() -> None:
        # The record first: a host that pulls a file from this one gets it from a copy the record vouches for.
        fresh = {p: v["sha256"] for p, v in verified.items() if p not in announced}
        if fresh or time.monotonic() - beat[0] >= HEARTBEAT_S:
            merge_record(record_path, verified)
            update_state(state_path, verified=fresh)
            announced.update(fresh)
            beat[0] = time.monotonic()

    child = subprocess.Popen(cmd)  # noqa: S603 (rsync's own server command line)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        while child.poll() is None:
            sweep(pool)
            collect(block=False)
            if state_path:
                announce()
            time.sleep(poll_s)
        if child.returncode == 0:
            sweep(pool)  # files renamed into place at the very end
        collect(block=True)
    merge_record(record_path, verified)
    update_state(state_path, {f: "done" if child.returncode == 0 else "failed" for f in folders},
                 {p: v["sha256"] for p, v in verified.items() if p not in announced})
    return child.returncode


def walk_files(top: str, base: str) -> list[str]:
    """Files and links below ``top`` (not following links), as paths relative to ``base``."""
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            out.append(os.path.relpath(os.path.join(dirpath, name), base))
    return out


def place(src: str, dest: str, link: str | None) -> None:
    """Put a hard link of ``src`` (or a symlink to ``link``) at ``dest``, atomically replacing what is there."""
    parent = os.path.dirname(dest)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    tmp = os.path.join(parent, "." + os.path.basename(dest) + ".airgap-llm-tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    if link is None:
        os.link(src, tmp)
    else:
        os.symlink(link, tmp)
    os.replace(tmp, dest)


def kept_paths(dest: str, keep: list[str]) -> set[str]:
    """Paths (relative to ``dest``) that a kept snapshot directory holds: its files and links, and the files
    its links resolve to (the blobs). A kept directory outside ``dest`` or missing keeps nothing."""
    out: set[str] = set()
    real_dest = os.path.realpath(dest)
    for snap in keep:
        top = os.path.normpath(os.path.join(dest, snap))
        rel_top = os.path.relpath(top, dest)
        if rel_top.startswith("..") or not os.path.isdir(top):
            continue
        for path in walk_files(top, dest):
            out.add(path)
            full = os.path.join(dest, path)
            if os.path.islink(full):
                target = os.path.relpath(os.path.realpath(full), real_dest)
                if not target.startswith(".."):
                    out.add(target)
    return out


def snapshots_in_use(links_dir: str | None, releases_state: str | None) -> list[str]:
    """The snapshot directories the services' links point at now, and those the host's live and previous
    releases name (``{"live": {"models": {service: dir}}, "previous": {...}}``); absent files name none."""
    out: list[str] = []
    if links_dir and os.path.isdir(links_dir):
        for name in sorted(os.listdir(links_dir)):
            path = os.path.join(links_dir, name)
            if os.path.islink(path):
                out.append(os.path.join(links_dir, os.readlink(path)))
    if releases_state and os.path.isfile(releases_state):
        with open(releases_state, encoding="utf-8") as fh:
            state = json.load(fh)
        for which in ("live", "previous"):
            release = state.get(which) or {}
            out += [str(d) for d in (release.get("models") or {}).values()]
    return out


def publish(root: str, dest: str, entries: list[Entry], record_path: str,
            keep: list[str] | None = None) -> tuple[int, dict[str, Any]]:
    """Make ``dest`` match the verified ``root`` for these entries (see the module's docstring)."""
    record = load_record(record_path)
    seen = look(root, entries)
    plan = plan_checks(entries, seen, record)
    if plan.to_hash or plan.failures:
        unverified = [Failure(e.path, "not-verified", "not verified in the staging area") for e in plan.to_hash]
        failures = sorted(plan.failures + unverified)
        return 1, {"ok": False, "changed": [], "placed": 0, "removed": 0, "failures": [f.to_json() for f in failures]}
    moves = to_place(entries, seen, look(dest, entries))
    for entry in moves:
        place(os.path.join(root, entry.path), os.path.join(dest, entry.path), entry.link)
    folders = sorted({e.path.split("/", 1)[0] for e in entries})
    expected = {e.path for e in entries} | kept_paths(dest, keep or [])
    removed = []
    for folder in folders:
        for path in extras(expected, walk_files(os.path.join(dest, folder), dest)):
            os.unlink(os.path.join(dest, path))
            removed.append(path)
        for dirpath, _dirs, _files in os.walk(os.path.join(dest, folder), topdown=False):
            if not os.listdir(dirpath) and dirpath != os.path.join(dest, folder):
                os.rmdir(dirpath)
    changed = sorted({p.split("/", 1)[0] for p in [e.path for e in moves] + removed})
    return 0, {"ok": True, "changed": changed, "placed": len(moves), "removed": len(removed), "failures": []}


COMMIT = re.compile(r"^[0-9a-f]{40}$")


def parse_link(text: str) -> tuple[str, str, str]:
    """``SERVICE=FOLDER@REVISION`` as its three parts; InputProblem when it is not of that form."""
    service, _, rest = text.partition("=")
    folder, _, revision = rest.rpartition("@")
    if not service or "/" in service or not folder or "/" in folder or not revision or "/" in revision:
        raise InputProblem(f"--link {text!r}: expected SERVICE=FOLDER@REVISION")
    return service, folder, revision


def link_services(hub: str, links_dir: str, links: list[tuple[str, str, str]]) -> tuple[list[str], list[Failure]]:
    """Point ``links_dir/<service>`` at ``hub/<folder>/snapshots/<commit>`` for each (service, folder,
    revision); the services whose link changed, and a failure for each revision without a ref or snapshot."""
    changed: list[str] = []
    failures: list[Failure] = []
    for service, folder, revision in links:
        commit = revision
        if not COMMIT.match(revision):
            ref = os.path.join(hub, folder, "refs", revision)
            try:
                with open(ref, encoding="utf-8") as fh:
                    commit = fh.read().strip()
            except OSError as exc:
                failures.append(Failure(f"{folder}/refs/{revision}", "missing", f"no ref for {service}: {exc}"))
                continue
        target = os.path.join(hub, folder, "snapshots", commit)
        if not commit or "/" in commit or commit.startswith(".") or not os.path.isdir(target):
            failures.append(Failure(f"{folder}/snapshots/{commit}", "missing", f"no snapshot for {service}"))
            continue
        dest = os.path.join(links_dir, service)
        if os.path.islink(dest) and os.readlink(dest) == target:
            continue
        place("", dest, target)
        changed.append(service)
    return sorted(changed), failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--expected", required=True, help="JSON file of the manifest entries to check")
    parser.add_argument("--root", required=True, help="the directory the entries' paths are relative to")
    parser.add_argument("--record", help="the record of verified files (read, and rewritten when it changes)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="hashing threads")
    parser.add_argument("--only", action="append", default=[], metavar="DIR", help="only entries below DIR")
    parser.add_argument("--publish", metavar="DEST", help="put the verified files of the root in place under DEST")
    parser.add_argument("--keep", action="append", default=[], metavar="SNAPSHOT_DIR",
                        help="with --publish: a snapshot directory (absolute or below DEST) whose files stay")
    parser.add_argument("--keep-links", metavar="DIR", help="with --publish: keep the snapshots DIR's links point at")
    parser.add_argument("--keep-releases", metavar="STATE_JSON",
                        help="with --publish: keep the snapshots of the host's live and previous releases")
    parser.add_argument("--links-dir", metavar="DIR", help="with --publish and --link: where the services' links are")
    parser.add_argument("--link", action="append", default=[], metavar="SERVICE=FOLDER@REVISION",
                        help="with --publish and --links-dir: point DIR/SERVICE at the revision's snapshot")
    parser.add_argument("--state", metavar="FILE", help="with --watch: the relay's state file to keep up to date")
    parser.add_argument("--watch", nargs=argparse.REMAINDER, help="run this command, hashing files as they arrive")
    args = parser.parse_args(argv)
    if (args.watch is not None or args.publish) and not args.record:
        parser.error("--watch and --publish need --record")
    if args.link and not (args.links_dir and args.publish):
        parser.error("--link needs --links-dir and --publish")
    if args.watch is not None:
        if not args.watch:
            parser.error("--watch needs a command")
        try:
            entries = load_entries(args.expected, args.only)
        except (OSError, ValueError, InputProblem) as exc:
            print(f"airgap_llm_verify_models: {exc}", file=sys.stderr)
            return 2
        return watch(args.watch, args.root, entries, args.record, args.workers, state_path=args.state)
    try:
        if args.publish:
            links = [parse_link(text) for text in args.link]
            rc, report = publish(args.root, args.publish, load_entries(args.expected, args.only), args.record,
                                 args.keep + snapshots_in_use(args.keep_links, args.keep_releases))
            if rc == 0 and links:
                report["links"], failures = link_services(args.publish, args.links_dir, links)
                if failures:
                    rc, report["ok"] = 1, False
                    report["failures"] = [f.to_json() for f in sorted(failures)]
        else:
            rc, report = run(args.expected, args.root, args.record, args.workers, args.only)
    except (OSError, ValueError, InputProblem) as exc:
        print(json.dumps({"ok": False, "error": str(exc)}))
        return 2
    print(json.dumps(report, sort_keys=True))
    return rc


if __name__ == "__main__":
    sys.exit(main())
