"""The inference_service scenario: units, files and the running services as a sysadmin sees them."""

from __future__ import annotations

from typing import Any

import pytest

SERVICES = {"web": 3000, "api": 8080}


@pytest.mark.parametrize("name", SERVICES)
def test_unit_is_enabled_active_and_healthy(host: Any, name: str) -> None:
    svc = host.service(f"airgap-llm-{name}")
    assert svc.is_enabled and svc.is_running
    props = host.check_output(f"systemctl show -p User,Group,PartOf,NRestarts,LimitNOFILE airgap-llm-{name}")
    assert "User=airgap-llm" in props and "Group=airgap-llm" in props
    assert "PartOf=airgap-llm.target" in props and "LimitNOFILE=65536" in props
    ip = host.check_output("hostname -I").split()[0]
    code = host.check_output(
        f"python3 -c \"import urllib.request as u; print(u.urlopen('http://{ip}:{SERVICES[name]}/').status)\""
    )
    assert code == "200"


def test_unit_starts_with_ansible_managed_and_hardening(host: Any) -> None:
    unit = host.file("/etc/systemd/system/airgap-llm-web.service")
    assert unit.content_string.startswith("# Ansible managed")
    for setting in (
        "ProtectSystem=strict",
        "NoNewPrivileges=true",
        "PrivateTmp=true",
        "PrivateDevices=true",
        "KillMode=mixed",
        "TimeoutStopSec=30",
        "Restart=on-failure",
        "ExecStartPost=",
    ):
        assert setting in unit.content_string
    exposure = host.check_output("systemd-analyze security --no-pager airgap-llm-web.service | tail -n 1")
    score = float(exposure.split("level for airgap-llm-web.service:")[1].split()[0])
    assert score <= 3.0, exposure


def test_second_service_starts_after_the_first_only_if_they_share(host: Any) -> None:
    # Two CPU app services: apps are not chained (only engine services share cores and memory).
    unit = host.file("/etc/systemd/system/airgap-llm-api.service").content_string
    assert "After=network-online.target\n" in unit


def test_files_and_modes(host: Any) -> None:
    key = host.file("/etc/airgap-llm/api-key.env")
    assert key.user == "root" and key.group == "root" and key.mode == 0o600
    assert (
        key.content_string.startswith("VLLM_API_KEY=") and len(key.content_string.strip()) == len("VLLM_API_KEY=") + 48
    )
    for name in ("common.env", "web.env", "api.env"):
        f = host.file(f"/etc/airgap-llm/{name}")
        assert f.user == "root" and f.group == "airgap-llm" and f.mode == 0o640
    assert "GREETING=shalom" in host.file("/etc/airgap-llm/web.env").content_string
    common = host.file("/etc/airgap-llm/common.env").content_string
    for line in (
        "HF_HUB_OFFLINE=1",
        "TRANSFORMERS_OFFLINE=1",
        "VLLM_NO_USAGE_STATS=1",
        "DO_NOT_TRACK=1",
        "VLLM_HOST_IP=10.213.7.11",
        "AIRGAP_LLM_OPEN_PATHS=/health /ping /metrics /version",
    ):
        assert line in common
    cache = host.file("/var/cache/airgap-llm")
    assert cache.user == "airgap-llm" and cache.mode == 0o750
    assert host.user("airgap-llm").shell == "/usr/sbin/nologin"


def test_the_target_starts_everything(host: Any) -> None:
    assert host.service("airgap-llm.target").is_enabled
    wants = host.check_output("systemctl show -p Wants airgap-llm.target")
    assert "airgap-llm-web.service" in wants and "airgap-llm-api.service" in wants


def test_stale_unit_was_stopped_and_removed(host: Any) -> None:
    assert not host.file("/etc/systemd/system/airgap-llm-old.service").exists
    assert not host.service("airgap-llm-old").is_running


def test_crashed_service_is_restarted_by_systemd(host: Any) -> None:
    before = host.check_output("systemctl show -p MainPID,NRestarts --value airgap-llm-api").split()
    host.run(f"kill -9 {before[0]}")
    host.run(
        "for i in $(seq 60); do systemctl is-active -q airgap-llm-api && "
        f'[ "$(systemctl show -p MainPID --value airgap-llm-api)" != {before[0]} ] && break; sleep 0.5; done'
    )
    after = host.check_output("systemctl show -p MainPID,NRestarts --value airgap-llm-api").split()
    assert after[0] not in ("0", before[0])
    assert int(after[1]) == int(before[1]) + 1


def test_api_key_middleware_is_installed_and_refuses_without_the_key(host: Any) -> None:
    guard = host.file("/opt/airgap-llm/libexec/python/airgap_llm_guard.py")
    assert guard.user == "root" and guard.mode == 0o644
    # The engine units load it; here it runs with the host's Python on a bare ASGI app.
    out = host.check_output(
        "cd /opt/airgap-llm/libexec/python && python3 -c \"import asyncio, airgap_llm_guard as g\n"
        "sent = []\n"
        "async def app(s, r, w): sent.append('app')\n"
        "async def send(m): sent.append(m.get('status'))\n"
        "mw = g.RequireApiKey(app, api_key='k', open_paths='/health')\n"
        "for path in ('/invocations', '/health'):\n"
        "    asyncio.run(mw({'type': 'http', 'method': 'POST', 'path': path, 'headers': []}, None, send))\n"
        "print(sent)\""
    )
    assert out == "[401, None, 'app']"
