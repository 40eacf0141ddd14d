"""roles/release's host helper: release ids, live/previous bookkeeping, what a restore restarts and refuses."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, load_script

rel = load_script(REPO / "roles" / "release" / "files" / "airgap_llm_release.py", "airgap_llm_release")


def release(rid: str, venv: str = "/v/1") -> dict[str, Any]:
    return {"id": rid, "venv": venv, "models": {}, "files": {}, "units": [], "restart_inputs": {}}


def test_release_id_depends_on_content_only() -> None:
    files = {"/u": {"sha256": "aa", "mode": 0o644, "uid": 0, "gid": 0}}
    a = rel.release_id("/v/1", {"s": "/snap/1"}, files, ["u"])
    assert a == rel.release_id("/v/1", {"s": "/snap/1"}, {"/u": {"sha256": "aa", "mode": 0o600, "uid": 1, "gid": 1}},
                               ["u"])
    assert a != rel.release_id("/v/2", {"s": "/snap/1"}, files, ["u"])
    assert a != rel.release_id("/v/1", {"s": "/snap/2"}, files, ["u"])
    assert a != rel.release_id("/v/1", {"s": "/snap/1"}, {"/u": {**files["/u"], "sha256": "bb"}}, ["u"])


def test_next_state_keeps_one_previous_and_names_a_replaced_rollback() -> None:
    empty = {"live": None, "previous": None, "rolled_back": None}
    s1, r1 = rel.next_state(empty, release("A"))
    assert r1 == {"changed": True, "live": "A", "previous": None, "replaced_rolled_back": None}
    same, r = rel.next_state(s1, release("A"))
    assert same is s1 and r["changed"] is False
    s2, r2 = rel.next_state(s1, release("B"))
    assert (s2["live"]["id"], s2["previous"]["id"]) == ("B", "A")
    s3, _ = rel.next_state(s2, release("C"))
    assert (s3["live"]["id"], s3["previous"]["id"]) == ("C", "B")  # A is no longer kept
    back = rel.after_rollback(s3, 100.0)
    assert (back["live"]["id"], back["previous"]["id"]) == ("B", "C")
    assert back["rolled_back"] == {"from": "C", "to": "B", "at": 100}
    s4, r4 = rel.next_state(back, release("D"))
    assert r4["replaced_rolled_back"] == {"live": "B", "from": "C", "to": "B", "at": 100}
    assert s4["rolled_back"] is None and s4["previous"]["id"] == "B"


def test_restarts_only_units_started_from_what_changed() -> None:
    inputs = {"u1": ["/venv", "/m/a", "/e/a.env"], "u2": ["/venv", "/m/b"], "u3": ["/e/c.env"]}
    assert rel.restarts(["u1", "u2", "u3"], inputs, {"/m/b"}) == ["u2"]
    assert rel.restarts(["u1", "u2", "u3"], inputs, {"/venv"}) == ["u1", "u2"]
    assert rel.restarts(["u3", "u1"], inputs, {"/e/c.env", "/e/a.env"}) == ["u3", "u1"]
    assert rel.restarts(["u1"], inputs, set()) == []


def host(tmp_path: Path) -> dict[str, Any]:
    """A host tree: a venv link, a model link, a unit and an env file."""
    (tmp_path / "venvs" / "v1").mkdir(parents=True)
    (tmp_path / "snap" / "r1").mkdir(parents=True)
    (tmp_path / "models").mkdir()
    os.symlink(tmp_path / "venvs" / "v1", tmp_path / "venv")
    os.symlink(tmp_path / "snap" / "r1", tmp_path / "models" / "embed")
    (tmp_path / "units").mkdir()
    unit, env = tmp_path / "units" / "airgap-llm-embed.service", tmp_path / "embed.env"
    unit.write_text("[Service]\nExecStart=a\n")
    env.write_text("X=1\n")
    return {"releases_dir": str(tmp_path / "releases"), "venv_link": str(tmp_path / "venv"),
            "model_links": {"embed": str(tmp_path / "models" / "embed")}, "files": [str(unit), str(env)],
            "units": ["airgap-llm-embed.service"],
            "restart_inputs": {"airgap-llm-embed.service": [str(unit), str(env), str(tmp_path / "venv")]},
            "bundle": "/b"}


def test_record_keeps_copies_of_live_and_previous_only(tmp_path: Path) -> None:
    spec = host(tmp_path)
    rc, r1 = rel.record(spec)
    assert rc == 0 and r1["changed"] and r1["previous"] is None
    assert rel.record(spec)[1]["changed"] is False  # nothing changed: nothing recorded
    unit = Path(spec["files"][0])
    for n in (2, 3):
        unit.write_text(f"[Service]\nExecStart={n}\n")
        rc, r = rel.record(spec)
        assert rc == 0 and r["changed"]
    state = json.loads((tmp_path / "releases" / "state.json").read_text())
    assert state["live"]["venv"] == str(tmp_path / "venvs" / "v1")
    assert state["live"]["models"] == {"embed": str(tmp_path / "snap" / "r1")}
    kept = sorted(p.name for p in (tmp_path / "releases").iterdir() if p.is_dir())
    assert kept == sorted([state["live"]["id"], state["previous"]["id"]]) and r1["live"] not in kept
    copy = tmp_path / "releases" / state["previous"]["id"] / "files" / str(unit).lstrip("/")
    assert copy.read_text() == "[Service]\nExecStart=2\n"
    assert rel.show(spec["releases_dir"])["live"]["venv"] == "v1"


def test_restore_refuses_without_a_previous_release_or_with_one_incomplete(tmp_path: Path) -> None:
    spec = host(tmp_path)
    restore = {"releases_dir": spec["releases_dir"], "venv_link": spec["venv_link"],
               "models_dir": str(tmp_path / "models"), "to": "previous"}
    rc, r = rel.restore(restore)
    assert rc == 1 and "no release is recorded" in r["refused"]
    rel.record(spec)
    rc, r = rel.restore(restore)
    assert rc == 1 and r["refused"].startswith("no previous release is kept on this host (live: ")
    # A previous release whose venv was removed behind our back: refused before anything changes.
    (tmp_path / "venvs" / "v2").mkdir()
    os.unlink(spec["venv_link"])
    os.symlink(tmp_path / "venvs" / "v2", spec["venv_link"])
    rel.record(spec)
    (tmp_path / "venvs" / "v1").rmdir()
    rc, r = rel.restore(restore)
    assert rc == 1 and "is incomplete on this host: missing " + str(tmp_path / "venvs" / "v1") in r["refused"]
    assert os.readlink(spec["venv_link"]) == str(tmp_path / "venvs" / "v2")


def test_restore_puts_back_files_and_links_and_swaps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []

    class Done:
        returncode = 0
        stdout = stderr = ""

    def fake_systemctl(*args: str) -> Done:
        calls.append(args)
        return Done()

    monkeypatch.setattr(rel, "systemctl", fake_systemctl)
    spec = host(tmp_path)
    rel.record(spec)
    unit = Path(spec["files"][0])
    unit.write_text("[Service]\nExecStart=new\n")
    (tmp_path / "snap" / "r2").mkdir()
    os.unlink(tmp_path / "models" / "embed")
    os.symlink(tmp_path / "snap" / "r2", tmp_path / "models" / "embed")
    stale = tmp_path / "units" / "airgap-llm-added.service"
    stale.write_text("[Service]\n")
    rel.record(spec)
    rc, r = rel.restore({"releases_dir": spec["releases_dir"], "venv_link": spec["venv_link"],
                         "models_dir": str(tmp_path / "models"), "to": "previous"})
    assert rc == 0, r
    assert unit.read_text() == "[Service]\nExecStart=a\n"
    assert os.readlink(tmp_path / "models" / "embed") == str(tmp_path / "snap" / "r1")
    assert r["restarted"] == ["airgap-llm-embed.service"] and r["removed_units"] == ["airgap-llm-added.service"]
    assert not stale.exists() and ("daemon-reload",) in calls and ("restart", "airgap-llm-embed.service") in calls
    state = json.loads((tmp_path / "releases" / "state.json").read_text())
    assert state["rolled_back"]["to"] == state["live"]["id"] == r["release"]
