"""Releases, a rolling upgrade with a canary and automatic rollback, and `rollback`, on two CPU targets with
no route out.

Release A is tests/e2e/inventories/cpu-upgrade (one embedding service per host); B adds an engine argument;
C adds one vLLM refuses, so the service cannot start. The three share the demo's bundle: the releases
differ in their rendered units. The tests run in order, each on the state the one before left.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import tiny_models
import yaml
from deployments import REPO, Deployment, demo_bundle, ssh, unit_props
from deployments import cli as _cli

from airgap_llm.cli import main

pytestmark = pytest.mark.e2e

DEPLOYMENT = Deployment(
    name="up",
    subnet=ipaddress.IPv4Network("10.213.47.0/24"),
    inventory=REPO / "tests" / "e2e" / "inventories" / "cpu-upgrade",
    cache="demo",  # the demo's bundle carries this inventory's model, engine and wheel set
    models=tiny_models.all_models_cache,
    count=2,
)
UNIT = "airgap-llm-embed.service"
B_ARGS = ["--enforce-eager", "--max-num-seqs", "8"]
C_ARGS = ["--enforce-eager", "--max-num-seqs", "8", "--no-such-engine-flag"]
STATE = "/var/lib/airgap-llm/releases/state.json"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    """The CLI's JSON, without what earlier commands of the module printed."""
    capsys.readouterr()
    return _cli(capsys, *args)


@pytest.fixture(scope="module")
def bundle(deployment: Deployment, hf_home: Path) -> Path:
    return demo_bundle(deployment, hf_home)


def set_args(inventory: Path, args: list[str]) -> None:
    path = inventory / "group_vars" / "airgap_llm.yml"
    data = yaml.safe_load(path.read_text())
    data["airgap_llm_services"]["embed"]["extra_args"] = args
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def exec_start(target_set: Any, t: Any) -> str:
    return ssh(target_set, t, f"systemctl show -p ExecStart --value {UNIT}")


def releases(capsys: pytest.CaptureFixture[str], inventory: Path) -> dict[str, Any]:
    rc, result = cli(capsys, "status", "-i", str(inventory), "--json")
    assert rc == 0, result
    return {h: rep["releases"] for h, rep in result["hosts"].items()}


def embed(inventory: Path, t: Any) -> None:
    key = (inventory / "credentials" / "airgap_llm_api_key").read_text().strip()
    body = json.dumps({"model": "embed", "input": "shalom"}).encode()
    request = urllib.request.Request(f"http://{t.ip}:8001/v1/embeddings", data=body,
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert len(json.loads(response.read())["data"][0]["embedding"]) == 384


class ClientLoop:
    """Requests to one host, one after another, until stopped: how many were sent and how many failed."""

    def __init__(self, inventory: Path, t: Any) -> None:
        self.sent = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(inventory, t), daemon=True)

    def _run(self, inventory: Path, t: Any) -> None:
        while not self._stop.is_set():
            self.sent += 1
            try:
                embed(inventory, t)
            except Exception as exc:  # noqa: BLE001 - every kind of failure counts
                self.failed.append(repr(exc))
            self._stop.wait(0.5)

    def __enter__(self) -> ClientLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


@pytest.fixture(scope="module")
def installed_a(bundle: Path, inventory: Path, target_set: Any) -> dict[str, Any]:
    started = time.monotonic()
    rc = main(["install", "-i", str(inventory), "--bundle", str(bundle)])
    return {"rc": rc, "seconds": round(time.monotonic() - started, 1)}


def test_install_records_a_release_on_each_host(installed_a: dict[str, Any], inventory: Path, target_set: Any,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert installed_a["rc"] == 0
    print(f"install A on two hosts: {installed_a['seconds']} s")
    rel = releases(capsys, inventory)
    assert set(rel) == {"up-1", "up-2"}
    for host, r in rel.items():
        assert r["live"] is not None and r["previous"] is None, (host, r)
        assert r["live"]["models"]["embed"] and r["live"]["venv"], r
    for t in target_set.targets:
        state = json.loads(ssh(target_set, t, f"cat {STATE}"))
        files = state["live"]["files"]
        assert f"/etc/systemd/system/{UNIT}" in files and "/etc/airgap-llm/embed.env" in files
        # A copy of each file, kept for rollback.
        assert ssh(target_set, t, f"cmp /etc/systemd/system/{UNIT} "
                   f"/var/lib/airgap-llm/releases/{state['live']['id']}/files/etc/systemd/system/{UNIT} && echo same") \
            == "same"


def test_upgrade_to_b_canary_first_then_the_other(inventory: Path, bundle: Path, target_set: Any,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    before = releases(capsys, inventory)
    set_args(inventory, B_ARGS)
    started = time.monotonic()
    rc, out = cli(capsys, "upgrade", "-i", str(inventory), "--bundle", str(bundle), "--canary", "up-1", "--json")
    print(f"upgrade A->B of two hosts: {time.monotonic() - started:.1f} s")
    assert rc == 0, out
    assert out["batches"] == [["up-1"], ["up-2"]]
    assert {h: r["result"] for h, r in out["hosts"].items()} == {"up-1": "upgraded", "up-2": "upgraded"}
    after = releases(capsys, inventory)
    for t in target_set.targets:
        assert "--max-num-seqs 8" in exec_start(target_set, t) or "--max-num-seqs ; 8" in exec_start(target_set, t)
        assert after[t.name]["previous"]["id"] == before[t.name]["live"]["id"]
        assert after[t.name]["live"]["id"] != before[t.name]["live"]["id"]
        embed(inventory, t)


def test_broken_upgrade_c_rolls_the_canary_back_and_leaves_host_2_untouched(
    inventory: Path, bundle: Path, target_set: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    h1, h2 = target_set.targets
    b = releases(capsys, inventory)
    h2_before = unit_props(target_set, h2, UNIT)
    set_args(inventory, C_ARGS)
    with ClientLoop(inventory, h2) as loop:
        rc, out = cli(capsys, "upgrade", "-i", str(inventory), "--bundle", str(bundle), "--json")
        time.sleep(2)
    assert rc == 1, out
    failure = out["failure"]
    assert failure["host"] == "up-1" and failure["step"].startswith("install"), failure
    assert UNIT in failure["reason"], failure
    assert failure["rolled_back_to"] == b["up-1"]["live"]["id"] and failure["answers"] is True, failure
    assert failure["not_reached"] == ["up-2"]
    assert out["hosts"]["up-2"]["result"] == "untouched"
    # The canary is on B again and answers; host 2 was never touched and answered every request.
    assert "--no-such-engine-flag" not in exec_start(target_set, h1) and "--max-num-seqs" in exec_start(target_set, h1)
    embed(inventory, h1)
    assert unit_props(target_set, h2, UNIT) == h2_before
    assert "--no-such-engine-flag" not in exec_start(target_set, h2)
    print(f"client loop on up-2 during the failed upgrade: {loop.sent} requests, {len(loop.failed)} failed")
    assert loop.sent > 0 and loop.failed == [], loop.failed
    now = releases(capsys, inventory)
    assert {h: r["live"]["id"] for h, r in now.items()} == {h: r["live"]["id"] for h, r in b.items()}


def test_rollback_to_a_and_back_to_b(inventory: Path, target_set: Any, capsys: pytest.CaptureFixture[str]) -> None:
    set_args(inventory, B_ARGS)  # the inventory as the hosts run it
    b = releases(capsys, inventory)
    rc, out = cli(capsys, "rollback", "-i", str(inventory), "--json")
    assert rc == 0, out
    for t in target_set.targets:
        r = out["hosts"][t.name]
        assert r["release"] == b[t.name]["previous"]["id"] and r["restarted"] == [UNIT], r
        assert "--max-num-seqs" not in exec_start(target_set, t)
        embed(inventory, t)
    a = releases(capsys, inventory)
    for h in a:
        assert a[h]["live"]["id"] == b[h]["previous"]["id"] and a[h]["previous"]["id"] == b[h]["live"]["id"]
        assert a[h]["rolled_back"]["from"] == b[h]["live"]["id"]
    # A second rollback goes back: the two swap again.
    rc, out = cli(capsys, "rollback", "-i", str(inventory), "--limit", "up-2", "--json")
    assert rc == 0 and list(out["hosts"]) == ["up-2"], out
    h1, h2 = target_set.targets
    assert "--max-num-seqs" in exec_start(target_set, h2) and "--max-num-seqs" not in exec_start(target_set, h1)
    embed(inventory, h2)
    assert releases(capsys, inventory)["up-2"]["live"]["id"] == b["up-2"]["live"]["id"]


def test_install_over_a_rollback_says_so_and_pruning_keeps_live_and_previous(
    inventory: Path, bundle: Path, target_set: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """up-1 is on A by a rollback. Before installing B over it: a venv and a model snapshot that no release
    names, and the previous release (B) pointed at a venv and a snapshot of its own: the install keeps the
    live and previous ones and removes the others."""
    h1 = target_set.targets[0]
    hub = "/var/lib/airgap-llm/hf/hub/models--sentence-transformers--all-MiniLM-L6-v2/snapshots"
    state = json.loads(ssh(target_set, h1, f"cat {STATE}"))
    assert state["rolled_back"] is not None
    live_venv = state["live"]["venv"]
    state["previous"]["venv"] = "/opt/airgap-llm/venvs/previous-kept"
    state["previous"]["models"]["embed"] = f"{hub}/previous-kept"
    ssh(target_set, h1, "mkdir -p /opt/airgap-llm/venvs/previous-kept /opt/airgap-llm/venvs/unnamed "
        f"{hub}/previous-kept {hub}/unnamed && touch {hub}/previous-kept/f {hub}/unnamed/f "
        f"&& echo '{json.dumps(state)}' > {STATE}")
    rc, out = cli(capsys, "install", "-i", str(inventory), "--bundle", str(bundle), "--limit", "up-1", "--json")
    assert rc == 0, out
    (line,) = out["replaced_rolled_back"]
    assert line.startswith("up-1 had been rolled back") and state["live"]["id"] in line, line
    venvs = set(ssh(target_set, h1, "ls /opt/airgap-llm/venvs").split())
    assert venvs == {live_venv.rsplit("/", 1)[1], "previous-kept"}, venvs
    snaps = set(ssh(target_set, h1, f"ls {hub}").split())
    assert "previous-kept" in snaps and "unnamed" not in snaps, snaps
    after = json.loads(ssh(target_set, h1, f"cat {STATE}"))
    assert after["previous"]["id"] == state["live"]["id"] and after["rolled_back"] is None
    kept = set(ssh(target_set, h1, "ls /var/lib/airgap-llm/releases").split())
    assert kept == {after["live"]["id"], after["previous"]["id"], "state.json"}, kept
