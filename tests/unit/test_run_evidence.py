"""A failed run's ansible-runner artifacts are kept (rotated, newest 10) and named in the failure
summary and --json; a successful run keeps nothing; OS and runner errors exit 2 on one line."""

from __future__ import annotations

import stat
import sys
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from airgap_llm import run_evidence
from airgap_llm.cli import main
from airgap_llm.errors import UsageError
from airgap_llm.run_report import failures_text, run_result
from airgap_llm.runner import run_playbook

INVENTORY = Path(__file__).resolve().parents[2] / "inventories" / "local-cpu"
T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def _artifacts(tmp_path: Path, name: str = "ident") -> Path:
    art = tmp_path / "private" / "artifacts" / name
    (art / "job_events").mkdir(parents=True)
    (art / "stdout").write_text("TASK [preflight] fatal: boom\n")
    return art


def test_run_names_sort_in_time_order() -> None:
    names = [run_evidence.run_name(T0 + timedelta(seconds=s)) for s in (0, 1, 59, 3600)]
    assert names == sorted(names)
    assert names[0] == "20261130T120000.000000Z"


def test_keep_moves_the_artifacts_and_keeps_the_newest_ten(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    kept = [run_evidence.keep(_artifacts(tmp_path, f"i{i}"), root, T0 + timedelta(minutes=i)) for i in range(12)]
    left = sorted(p.name for p in root.iterdir())
    assert left == sorted(p.name for p in kept[2:])
    assert not kept[0].exists() and not kept[1].exists()
    newest = kept[-1]
    assert (newest / "stdout").read_text().startswith("TASK [preflight]")
    assert (newest / "job_events").is_dir()
    assert stat.S_IMODE(newest.stat().st_mode) == 0o700


def test_keep_never_overwrites_a_run_of_the_same_instant(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    first = run_evidence.keep(_artifacts(tmp_path, "a"), root, T0)
    second = run_evidence.keep(_artifacts(tmp_path, "b"), root, T0)
    assert first != second and first.is_dir() and second.is_dir()


def test_rotate_ignores_a_missing_root(tmp_path: Path) -> None:
    assert run_evidence.rotate(tmp_path / "absent") == []


# ----------------------------------------------------------------- run_playbook with a stand-in runner

FAILED_EVENTS: list[dict[str, Any]] = [
    {"event": "playbook_on_play_start", "event_data": {"play": "preflight"}},
    {"event": "runner_on_failed", "event_data": {"host": "demo-1", "task": "check", "res": {"msg": "boom"}}},
    {"event": "playbook_on_stats", "event_data": {"ok": {"demo-1": 1}, "failures": {"demo-1": 1}}},
]
OK_EVENTS: list[dict[str, Any]] = [
    {"event": "playbook_on_play_start", "event_data": {"play": "preflight"}},
    {"event": "runner_on_ok", "event_data": {"host": "demo-1", "task": "check", "res": {}}},
    {"event": "playbook_on_stats", "event_data": {"ok": {"demo-1": 1}}},
]


def _fake_runner(monkeypatch: pytest.MonkeyPatch, status: str, events: list[dict[str, Any]],
                 error: Exception | None = None) -> None:
    from ansible_runner.exceptions import AnsibleRunnerException  # the real exception types

    def run(**kwargs: Any) -> Any:
        if error is not None:
            raise error
        art = Path(kwargs["private_data_dir"]) / "artifacts" / "some-ident"
        art.mkdir(parents=True)
        (art / "stdout").write_text("PLAY [preflight]\nfatal: [demo-1]: FAILED! => boom\n")
        for event in events:
            kwargs["event_handler"](event)
        stdout = types.SimpleNamespace(read=lambda: "fatal")
        return types.SimpleNamespace(status=status, rc=0 if status == "successful" else 2, stdout=stdout)

    module = types.ModuleType("ansible_runner")
    module.run = run  # type: ignore[attr-defined]
    exceptions = types.ModuleType("ansible_runner.exceptions")
    exceptions.AnsibleRunnerException = AnsibleRunnerException  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ansible_runner", module)
    monkeypatch.setitem(sys.modules, "ansible_runner.exceptions", exceptions)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AIRGAP_LLM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_failed_run_keeps_its_artifacts_and_the_summary_names_them(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_runner(monkeypatch, "failed", FAILED_EVENTS)
    progress = run_playbook("preflight.yml", INVENTORY)
    assert progress.artifacts is not None
    kept = Path(progress.artifacts)
    assert kept.parent == cache / "runs"
    assert "fatal: [demo-1]" in (kept / "stdout").read_text()
    assert run_result(progress)["artifacts"] == str(kept)
    console = Console(record=True, width=300)
    console.print(failures_text(progress))
    assert str(kept) in console.export_text()


def test_a_successful_run_keeps_nothing(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_runner(monkeypatch, "successful", OK_EVENTS)
    progress = run_playbook("preflight.yml", INVENTORY)
    assert progress.artifacts is None
    assert not (cache / "runs").exists() or not any((cache / "runs").iterdir())
    assert run_result(progress)["artifacts"] is None


def test_a_run_that_could_not_start_names_its_artifacts(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_runner(monkeypatch, "failed", [])
    with pytest.raises(UsageError, match=r"(?s)could not run .*ansible-runner.s artifacts: .*runs/"):
        run_playbook("preflight.yml", INVENTORY)
    assert len(list((cache / "runs").iterdir())) == 1


def test_a_runner_configuration_error_exits_2_on_one_line(
    cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ansible_runner.exceptions import ConfigurationError

    _fake_runner(monkeypatch, "failed", [], error=ConfigurationError("private_data_dir\nis not writable"))
    assert main(["status", "-i", str(INVENTORY)]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert err.count("\n") == 0, err
    assert "ansible-runner refused to run status.yml: private_data_dir is not writable" in err


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (PermissionError(13, "Permission denied", "/root/.cache/airgap-llm/runs"),
         "error: permission denied: /root/.cache/airgap-llm/runs"),
        (OSError(28, "No space left on device"), "error: no space left on device"),
    ],
)
def test_os_errors_exit_2_on_one_line(
    cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], exc: OSError, expected: str
) -> None:
    _fake_runner(monkeypatch, "failed", [], error=exc)
    assert main(["validate", "-i", str(INVENTORY)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == expected
