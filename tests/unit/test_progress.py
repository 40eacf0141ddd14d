"""RunProgress follows ansible-runner events into a hosts x steps picture and a summary."""

from __future__ import annotations

from typing import Any

from airgap_llm.progress import CHANGED, FAILED, OK, PENDING, SKIPPED, UNREACHABLE, RunProgress, failure_message


def ev(kind: str, **data: Any) -> dict[str, Any]:
    return {"event": kind, "event_data": data}


def test_steps_follow_play_names_and_states_only_get_worse() -> None:
    p = RunProgress()
    p.feed(ev("playbook_on_play_start", play="Preflight: read-only checks"))
    p.feed(ev("runner_on_start", host="a"))
    p.feed(ev("runner_on_ok", host="a", res={"changed": False}))
    p.feed(ev("runner_on_ok", host="b", res={"changed": False}))
    p.feed(ev("playbook_on_play_start", play="Runtime: the venv"))
    p.feed(ev("runner_on_ok", host="a", res={"changed": True}))
    p.feed(ev("runner_on_ok", host="a", res={"changed": False}))
    p.feed(ev("runner_on_skipped", host="b"))
    assert p.hosts == ["a", "b"]
    assert p.state("a", "preflight") == OK
    assert p.state("a", "runtime") == CHANGED  # a later ok task does not hide the change
    assert p.state("b", "runtime") == SKIPPED
    assert p.state("a", "services") == PENDING


def test_failures_and_unreachable_hosts_are_recorded() -> None:
    p = RunProgress()
    p.feed(ev("playbook_on_play_start", play="Services: units"))
    p.feed(ev("playbook_on_task_start", task="Start"))
    p.feed(ev("runner_on_failed", host="a", task="Start", res={"msg": ["unit x failed", ["line 1", "line 2"]]}))
    p.feed(ev("runner_on_failed", host="a", task="Ignored", ignore_errors=True, res={"msg": "nope"}))
    p.feed(ev("runner_on_unreachable", host="b", task="Gathering Facts", res={"msg": "ssh: no route"}))
    p.feed(ev("playbook_on_stats", ok={"a": 3}, changed={"a": 1}, failures={"a": 1}, dark={"b": 1}))
    assert p.state("a", "services") == FAILED and p.state("b", "services") == UNREACHABLE
    assert [(f.host, f.step, f.unreachable) for f in p.failures] == [("a", "services", False), ("b", "services", True)]
    assert p.failures[0].message == "unit x failed\nline 1\nline 2"
    assert not p.ok
    assert p.stats["a"].changed == 1 and p.stats["b"].unreachable == 1


def test_set_fact_values_are_collected_per_host() -> None:
    p = RunProgress()
    p.feed(ev("playbook_on_play_start", play="Validate: requests"))
    p.feed(ev("runner_on_ok", host="a", res={"ansible_facts": {"airgap_llm_validate_results": [1]}}))
    assert p.facts == {"a": {"airgap_llm_validate_results": [1]}}


def test_clean_run_is_ok_and_counts_changes() -> None:
    p = RunProgress()
    p.feed(ev("playbook_on_stats", ok={"a": 5, "b": 5}, changed={"a": 0, "b": 2}))
    assert p.ok and p.changed_total == 2


def test_failure_message_from_loop_items() -> None:
    res = {"msg": "One or more items failed", "results": [
        {"failed": False, "item": "x"},
        {"failed": True, "_ansible_item_label": "airgap-llm-chat.service", "msg": "timeout"},
    ]}
    assert failure_message(res) == "One or more items failed\nairgap-llm-chat.service: timeout"
    assert failure_message({"stderr": "boom"}) == "boom"
    assert failure_message({}) == "failed (no message)"
