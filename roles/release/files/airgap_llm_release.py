#!/usr/bin/env python3
"""The host's releases: what an install left running, kept so that a rollback can go back to it.

A release is the live venv (the target of the venv link), each service's model snapshot (the target of
its model link), and the rendered unit and environment files (sha256, mode, owner, and a copy under
``<releases>/<id>/files/``). Its id is a hash of those, so an install that changes nothing records
nothing. ``<releases>/state.json`` holds ``{"live": release, "previous": release | null,
"rolled_back": {"from": id, "to": id, "at": time} | null}``; only the live and previous releases' copies
are kept.

usage:
  airgap_llm_release.py record SPEC_JSON     after an install: the host's state becomes the live release
  airgap_llm_release.py restore SPEC_JSON    go to the previous release (--to previous) or back to the
                                             recorded live one after a failed install (--to live)
  airgap_llm_release.py show RELEASES_DIR    the state, as JSON

SPEC_JSON (record): {"releases_dir", "venv_link", "model_links": {service: link}, "files": [path],
                     "units": [unit, in start order], "restart_inputs": {unit: [path]}, "bundle": str}
SPEC_JSON (restore): {"releases_dir", "venv_link", "to": "previous" | "live"}
Each prints one JSON object; exit 0 ok, 1 refused or failed (the object says why).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

STATE = "state.json"


# --- pure logic ---------------------------------------------------------------------------------


def release_id(venv: str | None, models: dict[str, str], files: dict[str, dict[str, Any]], units: list[str]) -> str:
    """A hash of what the release is made of (not of when it was made)."""
    body = {"venv": venv, "models": models, "files": {p: m["sha256"] for p, m in files.items()}, "units": units}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]


def next_state(state: dict[str, Any], release: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The state after an install left ``release`` running, and what to report about it.

    The same release as the live one: nothing changes. Otherwise the live one becomes the previous one
    (re-installing the previous release swaps the two). A live release that a rollback put there is
    replaced loudly: the report names it.
    """
    live = state.get("live")
    if live is not None and live["id"] == release["id"]:
        return state, {"changed": False, "live": live["id"], "previous": (state.get("previous") or {}).get("id")}
    replaced = None
    if live is not None and state.get("rolled_back"):
        replaced = {"live": live["id"], **state["rolled_back"]}
    new = {"live": release, "previous": live, "rolled_back": None}
    report = {"changed": True, "live": release["id"], "previous": None if live is None else live["id"],
              "replaced_rolled_back": replaced}
    return new, report


def after_rollback(state: dict[str, Any], now: float) -> dict[str, Any]:
    """Live and previous swap; the state remembers that the live release came from a rollback."""
    live, previous = state["live"], state["previous"]
    return {"live": previous, "previous": live,
            "rolled_back": {"from": live["id"], "to": previous["id"], "at": round(now)}}


def restarts(units: list[str], inputs: dict[str, list[str]], changed: set[str]) -> list[str]:
    """The units, in start order, that were started from something the restore changed."""
    return [u for u in units if any(p in changed for p in inputs.get(u, []))]


def summary(release: dict[str, Any] | None) -> dict[str, Any] | None:
    """What status shows of a release."""
    if release is None:
        return None
    return {"id": release["id"], "created": release.get("created"), "bundle": release.get("bundle"),
            "venv": os.path.basename(str(release.get("venv") or "")),
            "models": {s: os.path.basename(str(d)) for s, d in sorted((release.get("models") or {}).items())}}


# --- the host -------------------------------------------------------------------------------------


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def link_target(path: str) -> str | None:
    try:
        target = os.readlink(path)
    except OSError:
        return None
    return os.path.normpath(os.path.join(os.path.dirname(path), target))


def load_state(releases_dir: str) -> dict[str, Any]:
    try:
        with open(os.path.join(releases_dir, STATE), encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {"live": None, "previous": None, "rolled_back": None}
    return dict(data)


def write_atomic(path: str, data: bytes, mode: int = 0o600, uid: int = 0, gid: int = 0) -> None:
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".airgap-llm-tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, mode)
    if os.geteuid() == 0:
        os.chown(tmp, uid, gid)
    os.replace(tmp, path)


def save_state(releases_dir: str, state: dict[str, Any]) -> None:
    write_atomic(os.path.join(releases_dir, STATE), json.dumps(state, indent=1, sort_keys=True).encode() + b"\n")


def switch_link(link: str, target: str) -> None:
    """Point ``link`` at ``target`` with one rename (readers see the old target or the new one)."""
    tmp = link + ".airgap-llm-tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def copy_of(releases_dir: str, rel_id: str, path: str) -> str:
    return os.path.join(releases_dir, rel_id, "files", path.lstrip("/"))


def prune(releases_dir: str, state: dict[str, Any]) -> list[str]:
    keep = {r["id"] for r in (state.get("live"), state.get("previous")) if r}
    removed = []
    for name in sorted(os.listdir(releases_dir)):
        full = os.path.join(releases_dir, name)
        if os.path.isdir(full) and name not in keep:
            shutil.rmtree(full)
            removed.append(name)
    return removed


def record(spec: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    rdir = spec["releases_dir"]
    os.makedirs(rdir, mode=0o700, exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    for path in spec["files"]:
        st = os.stat(path)
        files[path] = {"sha256": sha256_of(path), "mode": st.st_mode & 0o7777, "uid": st.st_uid, "gid": st.st_gid}
    venv = link_target(spec["venv_link"])
    models = {s: t for s, link in sorted(spec["model_links"].items()) if (t := link_target(link)) is not None}
    units = list(spec["units"])
    rid = release_id(venv, models, files, units)
    release = {"id": rid, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "bundle": spec.get("bundle"),
               "venv": venv, "models": models, "files": files, "units": units,
               "restart_inputs": spec["restart_inputs"]}
    state = load_state(rdir)
    new, report = next_state(state, release)
    if report["changed"]:
        for path in files:
            dest = copy_of(rdir, rid, path)
            os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
            shutil.copy2(path, dest)
        save_state(rdir, new)
    report["pruned"] = prune(rdir, new)
    return 0, {"ok": True, **report}


def systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False)


def journal(unit: str, lines: int = 30) -> list[str]:
    out = subprocess.run(["journalctl", "--no-pager", "--output=cat", "-n", str(lines), "-u", unit],
                         capture_output=True, text=True, check=False).stdout
    return out.splitlines()


def refused(why: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    return 1, {"ok": False, "refused": why, **extra}


def restore(spec: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    rdir, to = spec["releases_dir"], spec["to"]
    state = load_state(rdir)
    live = state.get("live")
    if live is None:
        return refused("no release is recorded on this host (installed before releases were kept?)")
    target = state.get(to)
    if target is None:
        return refused(f"no previous release is kept on this host (live: {live['id']}): nothing to roll back to")
    # Check everything before changing anything.
    missing = [p for p in target["files"] if not os.path.isfile(copy_of(rdir, target["id"], p))]
    if target.get("venv") and not os.path.isdir(target["venv"]):
        missing.append(target["venv"])
    missing += [d for d in target["models"].values() if not os.path.isdir(d)]
    if missing:
        return refused(f"release {target['id']} is incomplete on this host: missing {', '.join(missing)}")

    changed: set[str] = set()
    venv_link = spec["venv_link"]
    if target.get("venv") and link_target(venv_link) != target["venv"]:
        switch_link(venv_link, target["venv"])
        changed.add(venv_link)
    links_dir = spec.get("models_dir")
    for service, snapshot in target["models"].items():
        link = os.path.join(links_dir, service) if links_dir else None
        if link and link_target(link) != snapshot:
            switch_link(link, snapshot)
            changed.add(link)
    for path, meta in target["files"].items():
        if os.path.isfile(path) and sha256_of(path) == meta["sha256"]:
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(copy_of(rdir, target["id"], path), "rb") as fh:
            write_atomic(path, fh.read(), meta["mode"], meta["uid"], meta["gid"])
        changed.add(path)
    # Units of services the target release does not have (added by the release left): stopped and removed.
    unit_dirs = {os.path.dirname(p) for p in target["files"] if p.endswith(".service")}
    env_dirs = {os.path.dirname(p) for p in target["files"] if p.endswith(".env")}
    removed = []
    for unit_dir in sorted(unit_dirs):
        for path in sorted(glob.glob(os.path.join(unit_dir, "airgap-llm-*.service"))):
            unit = os.path.basename(path)
            if path in target["files"]:
                continue
            systemctl("disable", "--now", unit)
            os.unlink(path)
            removed.append(unit)
            name = unit[len("airgap-llm-"):-len(".service")]
            for env in (os.path.join(d, f"{name}.env") for d in env_dirs):
                if env not in target["files"] and os.path.isfile(env):
                    os.unlink(env)
    if any(p.endswith((".service", ".target")) for p in changed) or removed:
        systemctl("daemon-reload")

    to_restart = restarts(target["units"], target["restart_inputs"], changed)
    restarted, started = [], []
    for unit in target["units"]:
        if unit in to_restart:
            verb = "restart"
        elif systemctl("is-active", "--quiet", unit).returncode != 0:
            verb = "start"
        else:
            continue
        systemctl("reset-failed", unit)  # a unit that failed to start (its start limit hit) may start again
        result = systemctl(verb, unit)
        if result.returncode != 0:
            return 1, {"ok": False, "to": to, "release": target["id"], "failed_unit": unit,
                       "detail": (result.stderr or result.stdout).strip(), "journal": journal(unit),
                       "changed": sorted(changed), "restarted": restarted, "started": started}
        (restarted if verb == "restart" else started).append(unit)

    previous_live = live["id"]
    if to == "previous":
        save_state(rdir, after_rollback(state, time.time()))
    return 0, {"ok": True, "to": to, "release": target["id"], "from": previous_live, "changed": sorted(changed),
               "removed_units": removed, "restarted": restarted, "started": started}


def show(releases_dir: str) -> dict[str, Any]:
    state = load_state(releases_dir)
    return {"live": summary(state.get("live")), "previous": summary(state.get("previous")),
            "rolled_back": state.get("rolled_back")}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("record", "restore", "show"):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[1] == "show":
        print(json.dumps(show(argv[2]), sort_keys=True))
        return 0
    spec = json.loads(argv[2])
    rc, report = record(spec) if argv[1] == "record" else restore(spec)
    print(json.dumps(report, sort_keys=True))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
