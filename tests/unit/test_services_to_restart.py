"""The host-side helper that decides restarts from the host (roles/inference_service/files/services-to-restart)."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .conftest import REPO
from .conftest import load_script as load_role_script

SCRIPT = REPO / "roles" / "inference_service" / "files" / "services-to-restart"


def load_script() -> ModuleType:
    return load_role_script(SCRIPT, "services_to_restart")


def run(module: ModuleType, monkeypatch: pytest.MonkeyPatch, units: dict[str, list[str]],
        states: dict[str, dict[str, str]]) -> dict[str, Any]:
    monkeypatch.setattr(module, "unit_states", lambda names: {n: states[n] for n in names if n in states})
    out = io.StringIO()
    monkeypatch.setattr(module.sys, "stdout", out)
    assert module.main(["services-to-restart", json.dumps({"units": units})]) == 0
    return dict(json.loads(out.getvalue()))


def started(seconds_ago: float) -> str:
    return str(int((time.monotonic() - seconds_ago) * 1_000_000))


def test_a_service_older_than_one_of_its_files_restarts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_script()
    unit, env, venv = tmp_path / "a.service", tmp_path / "a.env", tmp_path / "venv"
    for f in (unit, env):
        f.write_text("x")
    (tmp_path / "venvs-1").mkdir()
    venv.symlink_to(tmp_path / "venvs-1")
    old = time.time() - 100
    for f in (unit, env):
        os.utime(f, (old, old))
    os.utime(venv, (old, old), follow_symlinks=False)
    os.utime(tmp_path / "venvs-1", (old, old))
    units = {"a.service": [str(unit), str(env), str(venv), str(tmp_path / "missing")],
             "b.service": [str(unit)]}
    states = {"a.service": {"ActiveState": "active", "ExecMainStartTimestampMonotonic": started(50),
                            "NeedDaemonReload": "no"},
              "b.service": {"ActiveState": "inactive", "ExecMainStartTimestampMonotonic": "0",
                            "NeedDaemonReload": "no"}}
    assert run(module, monkeypatch, units, states) == {"restart": [], "reasons": {}, "daemon_reload": False}

    # the venv link switched after the service started: it runs the old venv
    venv.unlink()
    (tmp_path / "venvs-2").mkdir()
    venv.symlink_to(tmp_path / "venvs-2")
    result = run(module, monkeypatch, units, states)
    assert result["restart"] == ["a.service"] and result["reasons"]["a.service"] == [str(venv)]
    # a service that is not running is started, not restarted, whatever changed
    assert "b.service" not in result["restart"]


def test_a_unit_waiting_for_a_daemon_reload_asks_for_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_script()
    states = {"a.service": {"ActiveState": "active", "ExecMainStartTimestampMonotonic": started(1),
                            "NeedDaemonReload": "yes"}}
    assert run(module, monkeypatch, {"a.service": []}, states)["daemon_reload"] is True
