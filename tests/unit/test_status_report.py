from __future__ import annotations

from airgap_llm.status_report import parse_systemctl_show, report

SHOW = """Id=airgap-llm-chat.service
LoadState=loaded
ActiveState=active
SubState=running
NRestarts=2
MainPID=10
ActiveEnterTimestamp=Mon 2026-11-23 02:45:00 UTC

Id=airgap-llm-embed.service
LoadState=loaded
ActiveState=failed
SubState=failed
NRestarts=3
MainPID=0
ActiveEnterTimestamp=
"""

PLAN = {"services": [
    {"name": "chat", "unit": "airgap-llm-chat.service", "kind": "chat", "port": 8003, "gpus": [0]},
    {"name": "embed", "unit": "airgap-llm-embed.service", "kind": "embedding", "port": 8001, "gpus": []},
]}


def test_parse_systemctl_show() -> None:
    units = parse_systemctl_show(SHOW)
    assert units["airgap-llm-chat.service"]["NRestarts"] == "2"
    assert units["airgap-llm-embed.service"]["ActiveState"] == "failed"


def test_report_marks_failed_and_unhealthy_services() -> None:
    health = {"results": [
        {"item": {"name": "chat"}, "status": 200},
        {"item": {"name": "embed"}, "status": -1, "msg": "Connection refused"},
    ]}
    rep = report(PLAN, SHOW, health, '{"chat": 20480}')
    chat, embed = rep["services"]
    assert chat["ok"] and chat["gpu_memory_mib"] == 20480 and chat["restarts"] == 2
    assert not embed["ok"] and embed["health"] == "Connection refused" and embed["active"] == "failed"
    assert rep["ok"] is False
