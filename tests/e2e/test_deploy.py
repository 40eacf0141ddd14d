"""Install the local-cpu bundle on a target with no route out, then prove the promises of the deploy:
real answers, API key enforced, idempotent rerun, restart and crash recovery under systemd, and a
missing model refused before any host changes."""

from __future__ import annotations

import ipaddress
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import tiny_models
import yaml
from deployments import REPO, Deployment, cli, ssh, unit_props

from airgap_llm.cli import main

pytestmark = pytest.mark.e2e

# The demo's inventory and bundle (shared with `make demo`: the build is incremental), on the target
# set "e2e" (10.213.10.0/24).
DEPLOYMENT = Deployment(
    name="e2e",
    subnet=ipaddress.IPv4Network("10.213.10.0/24"),
    inventory=REPO / "inventories" / "local-cpu",
    cache="demo",
    models=tiny_models.all_models_cache,
)


def wait_active(target_set: Any, target: Any, unit: str, timeout_s: float = 300) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        props = unit_props(target_set, target, unit)
        if props["ActiveState"] == "active":
            return props
        time.sleep(2)
    raise AssertionError(f"{unit} not active after {timeout_s} s: {props}")


@pytest.fixture(scope="module")
def installed(bundle: Path, inventory: Path, target_set: Any, target: Any) -> dict[str, Any]:
    started = time.monotonic()
    rc = main(["install", "-i", str(inventory), "--bundle", str(bundle), "--json"])
    assert rc == 0, "first install failed"
    return {"seconds": time.monotonic() - started}


def test_target_has_no_route_out(target_set: Any, target: Any) -> None:
    assert ssh(target_set, target, "ip -4 route show default") == ""
    out = target_set.ssh(target, "ip route get 1.1.1.1 2>&1 || true").stdout
    assert "unreachable" in out


def test_check_mode_on_a_fresh_target_changes_nothing(
    bundle: Path, inventory: Path, target_set: Any, target: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`install --check` before the first install: it reports what would change and changes nothing."""
    probe = (
        "ls /etc/systemd/system; ls -d /opt/airgap-llm /var/lib/airgap-llm /etc/airgap-llm 2>&1; "
        "id airgap-llm 2>&1; true"
    )
    before = ssh(target_set, target, probe)
    rc, result = cli(capsys, "install", "-i", str(inventory), "--bundle", str(bundle), "--check", "--json")
    assert rc == 0, result
    assert result["changed"] > 0, result
    assert ssh(target_set, target, probe) == before


def test_validate_gets_real_answers(
    installed: dict[str, Any], inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, result = cli(capsys, "validate", "-i", str(inventory), "--json")
    assert rc == 0, result
    (checks,) = result["hosts"].values()
    by = {(c["service"], c["check"]): c for c in checks}
    assert by[("embed", "embedding")]["detail"] == "384-dim vector"
    assert by[("chat", "chat")]["ok"] and by[("chat", "chat")]["detail"] != "empty answer"
    assert by[("embed", "auth")]["detail"] == "401 without the API key"
    assert by[("chat", "auth")]["ok"]


def test_status_reports_active_and_healthy(
    installed: dict[str, Any], inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, result = cli(capsys, "status", "-i", str(inventory), "--json")
    assert rc == 0, result
    (rep,) = result["hosts"].values()
    assert {s["name"]: (s["active"], s["healthy"]) for s in rep["services"]} == {
        "embed": ("active", True),
        "chat": ("active", True),
    }


def test_second_install_changes_nothing_and_restarts_nothing(
    installed: dict[str, Any],
    bundle: Path,
    inventory: Path,
    target_set: Any,
    target: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = {u: unit_props(target_set, target, u) for u in ("airgap-llm-embed", "airgap-llm-chat")}
    rc, result = cli(capsys, "install", "-i", str(inventory), "--bundle", str(bundle), "--json")
    assert rc == 0, result
    assert result["changed"] == 0, {h: r["changed_tasks"] for h, r in result["hosts"].items()}
    after = {u: unit_props(target_set, target, u) for u in before}
    assert after == before


def test_systemctl_restart_brings_the_service_back(installed: dict[str, Any], target_set: Any, target: Any) -> None:
    before = unit_props(target_set, target, "airgap-llm-embed")
    ssh(target_set, target, "systemctl restart airgap-llm-embed")  # returns once /health answers
    after = unit_props(target_set, target, "airgap-llm-embed")
    assert after["ActiveState"] == "active" and after["MainPID"] != before["MainPID"]


def test_killed_engine_is_restarted_by_systemd(installed: dict[str, Any], target_set: Any, target: Any) -> None:
    before = unit_props(target_set, target, "airgap-llm-chat")
    ssh(target_set, target, f"kill -9 {before['MainPID']}")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        now = unit_props(target_set, target, "airgap-llm-chat")
        if now["ActiveState"] == "active" and now["MainPID"] not in ("0", before["MainPID"]):
            break
        time.sleep(2)
    assert int(now["NRestarts"]) == int(before["NRestarts"]) + 1, now
    assert now["ActiveState"] == "active"


def test_missing_model_is_refused_before_any_host_changes(
    installed: dict[str, Any],
    bundle: Path,
    inventory: Path,
    tmp_path: Path,
    target_set: Any,
    target: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inv = tmp_path / "inv"
    shutil.copytree(inventory, inv)
    group_file = inv / "group_vars" / "airgap_llm.yml"
    group = yaml.safe_load(group_file.read_text())
    group["airgap_llm_services"]["rerank"] = {
        "kind": "embedding",
        "model": "example-org/not-in-bundle",
        "revision": "main",
        "port": 8010,
        "gpus": [],
    }
    group_file.write_text(yaml.safe_dump(group))
    units_before = ssh(target_set, target, "ls /etc/systemd/system")
    rc = main(["install", "-i", str(inv), "--bundle", str(bundle)])
    err = capsys.readouterr().err
    assert rc == 1
    assert "service rerank: model example-org/not-in-bundle@main is not in the bundle" in err
    assert "nothing was changed" in err
    assert ssh(target_set, target, "ls /etc/systemd/system") == units_before
