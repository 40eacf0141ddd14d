from __future__ import annotations

from airgap_llm.status_report import journals, parse_systemctl_show, report, state_text

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


FAILED_SHOW = """Id=airgap-llm-chat.service
LoadState=loaded
ActiveState=active
SubState=running
Result=success
NRestarts=0
MainPID=10
ActiveEnterTimestamp=Mon 2026-11-23 02:45:00 UTC

Id=airgap-llm-embed.service
LoadState=loaded
ActiveState=failed
SubState=failed
Result=start-limit-hit
NRestarts=3
MainPID=0
ActiveEnterTimestamp=
"""

EMBED_JOURNAL = [
    "api_server.py: error: unrecognized arguments: --no-such-engine-flag",
    "airgap-llm-embed.service: Main process exited, code=exited, status=2/INVALIDARGUMENT",
    "airgap-llm-embed.service: Start request repeated too quickly.",
    "Failed to start airgap-llm-embed.service - airgap-llm embed.",
]

# What the status role registers: journal read only for the service that did not answer /health.
JOURNAL = {"results": [
    {"item": PLAN["services"][0], "skipped": True, "changed": False},
    {"item": PLAN["services"][1], "stdout": "\n".join(EMBED_JOURNAL), "stdout_lines": EMBED_JOURNAL},
]}

HEALTH = {"results": [
    {"item": {"name": "chat"}, "status": 200},
    {"item": {"name": "embed"}, "status": -1, "msg": "Connection refused"},
]}


def test_journals_are_keyed_by_unit_and_skipped_items_left_out() -> None:
    assert journals(JOURNAL) == {"airgap-llm-embed.service": EMBED_JOURNAL}
    assert journals({"results": [{"item": "u.service", "stdout": "a\nb"}]}) == {"u.service": ["a", "b"]}
    assert journals(None) == {} and journals({"results": []}) == {}


def test_failed_service_carries_its_result_restarts_and_journal() -> None:
    rep = report(PLAN, FAILED_SHOW, HEALTH, "{}", JOURNAL)
    chat, embed = rep["services"]
    assert (chat["ok"], chat["result"], chat["journal"]) == (True, "success", [])
    assert (embed["ok"], embed["result"], embed["restarts"]) == (False, "start-limit-hit", 3)
    assert embed["journal"] == EMBED_JOURNAL
    assert state_text(embed) == "failed/failed (start-limit-hit), 3 restarts"
    assert state_text(chat) == "active/running"
    assert state_text({**chat, "restarts": 1}) == "active/running, 1 restart"


def test_journal_lines_of_a_healthy_service_are_not_reported() -> None:
    healthy = {"results": [{"item": {"name": "chat"}, "status": 200}, {"item": {"name": "embed"}, "status": 200}]}
    show = FAILED_SHOW.replace("ActiveState=failed", "ActiveState=active")
    journal = {"results": [{"item": s, "stdout_lines": ["old line"]} for s in PLAN["services"]]}
    rep = report(PLAN, show, healthy, "{}", journal)
    assert [s["journal"] for s in rep["services"]] == [[], []]


def test_report_without_journal_still_works() -> None:
    rep = report(PLAN, SHOW, HEALTH, "")
    assert [s["journal"] for s in rep["services"]] == [[], []]


def test_status_command_lists_failures_with_their_journal() -> None:
    from rich.console import Console

    from airgap_llm.commands import status

    rep = report(PLAN, FAILED_SHOW, HEALTH, "{}", JOURNAL)
    result = {"ok": False, "hosts": {"gpu-1": rep, "gpu-2": None}, "failures": [
        {"host": "gpu-1", "service": "embed", "detail": f"{state_text(rep['services'][1])}, health Connection refused",
         "journal": rep["services"][1]["journal"]},
        {"host": "gpu-2", "service": None, "detail": "no report (host failed or unreachable)"},
    ]}
    console = Console(width=200, record=True)
    console.print(status.table(result))
    journal = status.journals_text(result)
    assert journal is not None
    console.print(journal)
    text = console.export_text()
    assert "failed/failed (start-limit-hit)" in text
    assert ("gpu-1 embed: failed/failed (start-limit-hit), 3 restarts, health Connection refused; "
            "the last 4 lines of its journal:") in text
    assert "  api_server.py: error: unrecognized arguments: --no-such-engine-flag" in text
    assert "no report" in text
    assert status.journals_text({"failures": []}) is None
