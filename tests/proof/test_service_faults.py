"""Service faults on real systemd targets: a disk too small for the models, a service crash-looping on a
bad engine argument, one target unreachable among two, and a reboot. One install of the local-cpu
inventory on both targets of the set "svcfault" (10.213.14.0/24) is shared; each test puts back what it
broke.

Order: the disk test runs first, on a target nothing was installed on yet; then the shared install;
then the crash loop (target 1), the unreachable target (target 2, which then boots again) and the reboot
(target 1).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import tiny_models
import yaml
from deployments import REPO, Deployment, cli, ssh, unit_props

from airgap_llm.cli import main

pytestmark = pytest.mark.e2e

DEPLOYMENT = Deployment(
    name="svcfault",
    subnet=ipaddress.IPv4Network("10.213.14.0/24"),
    inventory=REPO / "inventories" / "local-cpu",
    cache="demo",
    models=tiny_models.all_models_cache,
    count=2,
)

UNITS = ("airgap-llm-embed.service", "airgap-llm-chat.service")
PORTS = {"embed": 8001, "chat": 8003}
BAD_ARG = "--no-such-engine-flag"


@pytest.fixture(scope="module", autouse=True)
def small_disk_minimum(inventory: Path) -> None:
    """The targets share this machine's disk with every other target set: preflight asks for the room
    the tiny models need (0.4 GiB), 2 GiB at least, not the 20 GiB floor meant for a real host."""
    (inventory / "group_vars" / "all.yml").write_text("airgap_llm_preflight_min_free_gib: 2\n")


def note(text: str) -> None:
    """Measured figures, shown whatever pytest captures."""
    print(f"[svcfault] {text}", file=sys.__stderr__, flush=True)


def install(capsys: pytest.CaptureFixture[str], inventory: Path, bundle: Path, *extra: str) -> tuple[int, Any]:
    return cli(capsys, "install", "-i", str(inventory), "--bundle", str(bundle), "--json", *extra)


def copy_inventory(inventory: Path, dest: Path) -> Path:
    """A copy with the same credentials/ (the same API key: nothing restarts for a new key)."""
    shutil.copytree(inventory, dest)
    return dest


def services_vars(inv: Path) -> tuple[Path, dict[str, Any]]:
    path = inv / "group_vars" / "airgap_llm.yml"
    return path, yaml.safe_load(path.read_text())


# Run inside a target: each unit's ActiveState and the HTTP status of its /health, as JSON.
PROBE = r"""python3 - <<'EOF'
import json, re, subprocess, urllib.request
env = open("/etc/airgap-llm/common.env").read()
m = re.search(r"^VLLM_HOST_IP=(.*)$", env, re.M)
host = (m.group(1).strip() if m else "") or "127.0.0.1"
host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
out = {}
for name, port in %s.items():
    unit = "airgap-llm-%%s.service" %% name
    active = subprocess.run(["systemctl", "is-active", unit], capture_output=True, text=True).stdout.strip()
    try:
        with urllib.request.urlopen("http://%%s:%%d/health" %% (host, port), timeout=3) as r:
            health = r.status
    except Exception as e:
        health = str(e)
    out[name] = [active, health]
print(json.dumps(out))
EOF"""


def probe(target_set: Any, target: Any) -> dict[str, list[Any]]:
    return dict(json.loads(ssh(target_set, target, PROBE % json.dumps(PORTS))))


def wait_all_healthy(target_set: Any, target: Any, timeout_s: float = 600) -> float:
    """Seconds until every unit is active and answers /health 200 (polled from inside the target)."""
    started = time.monotonic()
    seen: dict[str, list[Any]] = {}
    while time.monotonic() - started < timeout_s:
        try:
            seen = probe(target_set, target)
        except (subprocess.CalledProcessError, RuntimeError, ValueError) as e:  # sshd or systemd not up yet
            seen = {"ssh": [str(e)]}
        if seen and all(v == ["active", 200] for v in seen.values()) and set(seen) == set(PORTS):
            return time.monotonic() - started
        time.sleep(2)
    raise AssertionError(f"{target.name}: services not all active and healthy after {timeout_s} s: {seen}")


def api_key(inventory: Path) -> str:
    return (inventory / "credentials" / "airgap_llm_api_key").read_text().strip()


def post(url: str, body: dict[str, Any], key: str) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(req, timeout=120) as r:  # noqa: S310 - the target's address
        assert r.status == 200
        return dict(json.loads(r.read()))


def get_status(url: str, key: str | None = None) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - the target's address
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def host_snapshot(target_set: Any, target: Any) -> str:
    """What an install would change on a host: units, configuration, venvs, models, users, packages."""
    return ssh(
        target_set,
        target,
        "ls -la /etc/systemd/system; ls -la /etc/airgap-llm /opt/airgap-llm /var/lib/airgap-llm 2>&1; "
        "find /var/lib/airgap-llm /opt/airgap-llm -maxdepth 3 2>/dev/null | sort | md5sum; "
        "getent passwd | sort | md5sum; dpkg-query -W | md5sum; ls /etc/apt/sources.list.d; "
        "systemctl list-units --all --no-legend 'airgap-llm*'",
    )


def container_pid(name: str) -> str:
    return subprocess.run(
        ["podman", "inspect", "-f", "{{.State.Pid}}", name], capture_output=True, text=True, check=True
    ).stdout.strip()


# ------------------------------------------------------------------------------------------------- disk


def test_disk_too_small_for_the_models_is_refused_with_the_numbers(
    bundle: Path, inventory: Path, target_set: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 64 MiB file system under /var/lib/airgap-llm on a fresh target: preflight refuses, naming the
    path, the free and required sizes, and nothing changes on that host."""
    second = target_set.targets[1]
    ssh(target_set, second, "mkdir /var/lib/airgap-llm")
    # The container has no CAP_SYS_ADMIN: mount from the host, in the container's mount namespace.
    nsenter = ["nsenter", "-t", container_pid(second.name), "-m"]
    subprocess.run([*nsenter, "mount", "-t", "tmpfs", "-o", "size=64m", "svcfault-small", "/var/lib/airgap-llm"],
                   check=True)
    try:
        before = host_snapshot(target_set, second)
        started = time.monotonic()
        rc, result = install(capsys, inventory, bundle, "--limit", second.name)
        note(f"disk too small: install refused in {time.monotonic() - started:.1f} s")
        assert rc == 1, result
        host = result["hosts"][second.name]
        assert host["result"] == "failed" and host["stopped_at"] == "preflight", host
        assert host["stats"]["changed"] == 0, host
        assert all(state == "pending" for step, state in host["steps"].items() if step != "preflight"), host
        (failure,) = result["failures"]
        msg = failure["message"]
        note(f"disk too small: {msg}")
        assert f"not enough free disk on {second.name} under /var/lib/airgap-llm" in msg, msg
        assert "(file system /var/lib/airgap-llm) for models" in msg, msg
        assert "0.06 GiB free, 2 GiB required" in msg, msg
        assert "67108864 bytes free, 2147483648 bytes required" in msg, msg
        assert "at least airgap_llm_preflight_min_free_gib=2" in msg, msg
        assert host_snapshot(target_set, second) == before
    finally:
        subprocess.run([*nsenter, "umount", "/var/lib/airgap-llm"], check=True)
        ssh(target_set, second, "rmdir /var/lib/airgap-llm")


# ------------------------------------------------------------------------------------------ the install


@pytest.fixture(scope="module")
def installed(bundle: Path, inventory: Path, target_set: Any) -> dict[str, Any]:
    started = time.monotonic()
    rc = main(["install", "-i", str(inventory), "--bundle", str(bundle), "--json"])
    seconds = time.monotonic() - started
    note(f"first install of both targets in parallel: {seconds:.0f} s")
    assert rc == 0, "first install failed"
    return {"seconds": seconds}


# ------------------------------------------------------------------------------------------- crash loop


def test_crash_loop_stops_at_the_start_limit_and_status_shows_the_journal(
    installed: dict[str, Any],
    bundle: Path,
    inventory: Path,
    target_set: Any,
    target: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """embed gets an engine argument vLLM refuses: the install names it with its journal, systemd gives
    up after its start limit, `status` shows it failed with the journal's last lines, chat keeps
    answering; the good inventory installed again brings embed back."""
    bad = copy_inventory(inventory, tmp_path / "bad")
    path, group = services_vars(bad)
    embed_vars = group["airgap_llm_services"]["embed"]
    embed_vars["extra_args"] = [*embed_vars["extra_args"], BAD_ARG]
    path.write_text(yaml.safe_dump(group, sort_keys=False))  # the services keep their order (and units)
    chat_before = unit_props(target_set, target, "airgap-llm-chat.service")
    try:
        started = time.monotonic()
        rc, result = install(capsys, bad, bundle, "--limit", target.name)
        steps = result["hosts"][target.name]["steps"]
        note(f"crash loop: install failed after {time.monotonic() - started:.0f} s, steps {steps}")
        assert rc == 1, result
        assert result["hosts"][target.name]["result"] == "failed"
        assert result["hosts"][target.name]["stopped_at"] == "services"
        assert {(f["host"], f["step"]) for f in result["failures"]} == {(target.name, "services")}, result["failures"]
        header = "airgap-llm-embed.service did not become healthy; the last lines of its journal:"
        (failure,) = [f for f in result["failures"] if header in f["message"]]
        assert BAD_ARG in failure["message"], failure["message"]
        note("crash loop: install says " + failure["message"])

        # systemd restarts it RestartSec apart until its start limit, then leaves it failed.
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            props = unit_props(target_set, target, "airgap-llm-embed.service", "ActiveState", "SubState", "Result",
                               "NRestarts")
            if props["ActiveState"] == "failed":
                break
            time.sleep(3)
        gave_up = time.monotonic() - started
        note(f"crash loop: embed failed for good {gave_up:.0f} s after the install began, props {props}")
        assert props["ActiveState"] == "failed", props
        assert props["Result"] in ("start-limit-hit", "exit-code"), props
        journal = ssh(target_set, target, "journalctl --no-pager -o cat -u airgap-llm-embed.service")
        assert "Start request repeated too quickly." in journal
        time.sleep(25)  # more than two RestartSec: no further attempt
        later = unit_props(target_set, target, "airgap-llm-embed.service", "ActiveState", "SubState", "Result",
                           "NRestarts")
        assert later == props, (props, later)

        # status: embed failed, with the journal's last lines naming the bad argument; chat ok.
        rc, status = cli(capsys, "status", "-i", str(bad), "--limit", target.name, "--json")
        assert rc == 1, status
        services = {s["name"]: s for s in status["hosts"][target.name]["services"]}
        embed, chat = services["embed"], services["chat"]
        assert (embed["active"], embed["sub"], embed["ok"]) == ("failed", "failed", False), embed
        assert embed["result"] == props["Result"] and embed["restarts"] == int(props["NRestarts"]), embed
        assert any(BAD_ARG in line for line in embed["journal"]), embed["journal"]
        assert any("Start request repeated too quickly." in line for line in embed["journal"]), embed["journal"]
        assert (chat["active"], chat["healthy"], chat["journal"]) == ("active", True, []), chat
        (failed,) = status["failures"]
        assert failed["service"] == "embed" and failed["journal"] == embed["journal"], failed
        assert failed["detail"].startswith("failed/failed"), failed

        rc, human = cli(capsys, "status", "-i", str(bad), "--limit", target.name)
        assert rc == 1
        assert f"{target.name} embed: failed/failed" in human, human
        assert "lines of its journal:" in human and BAD_ARG in human, human
        note("crash loop: status shows\n" + human)

        # chat was never restarted and still serves, with the key.
        assert unit_props(target_set, target, "airgap-llm-chat.service") == chat_before, steps
        base = f"http://{target.ip}:{PORTS['chat']}"
        key = api_key(bad)
        assert get_status(f"{base}/health") == 200
        assert get_status(f"{base}/v1/models") == 401
        model = post(f"{base}/v1/chat/completions", {"model": _model_id(base, key), "max_tokens": 8,
                                                      "messages": [{"role": "user", "content": "Say hello."}]}, key)
        assert model["choices"][0]["message"]["content"].strip(), model
    finally:
        # The good inventory again: embed comes back.
        started = time.monotonic()
        rc, result = install(capsys, inventory, bundle, "--limit", target.name)
        seconds = time.monotonic() - started
        note(f"crash loop: recovery install {seconds:.0f} s, steps {result['hosts'][target.name]['steps']}")
    assert rc == 0, result
    assert probe(target_set, target) == {"embed": ["active", 200], "chat": ["active", 200]}
    rc, status = cli(capsys, "status", "-i", str(inventory), "--limit", target.name, "--json")
    assert rc == 0 and status["failures"] == [], status


def _model_id(base: str, key: str) -> str:
    req = urllib.request.Request(f"{base}/v1/models", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - the target's address
        return str(json.loads(r.read())["data"][0]["id"])


# ---------------------------------------------------------------------------------- unreachable target


def test_one_target_unreachable_the_other_completes(
    installed: dict[str, Any],
    bundle: Path,
    inventory: Path,
    target_set: Any,
    target: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Target 2 is powered off: the install completes on target 1, names target 2 unreachable, exits 1."""
    second = target_set.targets[1]
    env = {**os.environ, "CONTAINERS_CONF": str(REPO / "tests" / "hosts" / "containers.conf")}
    subprocess.run(["podman", "stop", "-t", "5", second.name], check=True, capture_output=True, env=env)
    try:
        started = time.monotonic()
        rc, result = install(capsys, inventory, bundle)
        note(f"unreachable: install over both targets took {time.monotonic() - started:.0f} s")
        assert rc == 1, result
        assert result["unreachable"] == [second.name] and result["failed"] == [], result
        first = result["hosts"][target.name]
        assert first["result"] == "ok" and first["stats"]["failed"] == 0, first
        assert first["stats"]["changed"] == 0, first
        assert {step: first["steps"][step] for step in ("preflight", "runtime", "models", "services", "validate")} \
            == dict.fromkeys(("preflight", "runtime", "models", "services", "validate"), "ok"), first
        gone = result["hosts"][second.name]
        assert (gone["result"], gone["stopped_at"]) == ("unreachable", "preflight"), gone
        assert gone["stats"]["unreachable"] == 1, gone
        (failure,) = result["failures"]
        assert failure["host"] == second.name and failure["unreachable"], failure
        note(f"unreachable: {failure['message']}")

        rc, text = cli(capsys, "install", "-i", str(inventory), "--bundle", str(bundle), "--limit", second.name)
        assert rc == 1
        assert f"unreachable: {second.name}" in text and "UNREACHABLE in preflight" in text, text
    finally:
        # Power it on again: a boot, with no Ansible.
        started = time.monotonic()
        target_set.restart(second)
        seconds = wait_all_healthy(target_set, second)
        note(f"unreachable: {second.name} back and healthy {time.monotonic() - started:.0f} s after power-on "
             f"({seconds:.0f} s after SSH answered)")


# --------------------------------------------------------------------------------------------- reboot


def test_reboot_brings_every_service_back_without_ansible(
    installed: dict[str, Any], target_set: Any, target: Any
) -> None:
    before = {u: unit_props(target_set, target, u, "InvocationID") for u in UNITS}
    started = time.monotonic()
    target_set.restart(target)
    ssh_up = time.monotonic() - started
    healthy = wait_all_healthy(target_set, target)
    note(f"reboot: SSH back in {ssh_up:.0f} s, all services active and healthy {ssh_up + healthy:.0f} s after "
         "the restart")
    after = {u: unit_props(target_set, target, u, "ActiveState", "SubState", "InvocationID") for u in UNITS}
    for unit in UNITS:
        assert after[unit]["ActiveState"] == "active" and after[unit]["SubState"] == "running", after
        assert after[unit]["InvocationID"] != before[unit]["InvocationID"], (before, after)
