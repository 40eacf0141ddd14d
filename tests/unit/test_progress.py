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


def unreachable_run() -> RunProgress:
    """a completes, b cannot be reached at preflight, c fails a service."""
    p = RunProgress()
    p.feed(ev("playbook_on_play_start", play="Preflight: checks"))
    p.feed(ev("runner_on_ok", host="a", res={}))
    p.feed(ev("runner_on_unreachable", host="b", task="Reach the host",
              res={"msg": "ssh: connect to host 10.0.0.2 port 22: No route to host", "unreachable": True}))
    p.feed(ev("runner_on_ok", host="c", res={}))
    p.feed(ev("playbook_on_play_start", play="Services: units"))
    p.feed(ev("runner_on_ok", host="a", res={"changed": True}))
    p.feed(ev("runner_on_failed", host="c", task="Start", res={"msg": "unit x failed"}))
    p.feed(ev("playbook_on_stats", ok={"a": 9, "c": 4}, changed={"a": 1}, failures={"c": 1}, dark={"b": 1}))
    return p


def test_each_host_has_a_result_and_the_step_it_stopped_at() -> None:
    p = unreachable_run()
    assert [(h, p.host_result(h), p.stopped_at(h)) for h in p.hosts] == [
        ("a", OK, None),
        ("b", UNREACHABLE, "preflight"),
        ("c", FAILED, "services"),
    ]
    assert p.hosts_with(UNREACHABLE) == ["b"] and p.hosts_with(FAILED) == ["c"] and p.hosts_with(OK) == ["a"]
    assert RunProgress().host_result("x") == PENDING  # never reported


def test_unreachable_counted_from_the_stats_alone() -> None:
    p = RunProgress()
    p.feed(ev("playbook_on_stats", ok={"a": 1}, dark={"b": 1}))
    assert p.host_result("b") == UNREACHABLE and p.stopped_at("b") is None


def test_run_result_and_summary_name_the_unreachable_host() -> None:
    from rich.console import Console

    from airgap_llm.run_report import failures_text, outcome_line, run_result, summary_table

    p = unreachable_run()
    result = run_result(p)
    assert result["ok"] is False
    assert (result["unreachable"], result["failed"]) == (["b"], ["c"])
    assert result["hosts"]["b"]["result"] == "unreachable" and result["hosts"]["b"]["stopped_at"] == "preflight"
    assert result["hosts"]["a"]["result"] == "ok" and result["hosts"]["a"]["stopped_at"] is None
    assert outcome_line(p) == "unreachable: b; failed: c; completed: a"

    console = Console(width=200, record=True)
    console.print(summary_table(p))
    console.print(failures_text(p))
    text = console.export_text()
    assert "UNREACHABLE in preflight" in text and "FAILED in services" in text
    assert "unreachable: b; failed: c; completed: a" in text
    assert "b unreachable in preflight, task 'Reach the host':" in text
    assert "No route to host" in text


def test_changed_tasks_are_named_per_host() -> None:
    from airgap_llm.run_report import run_result

    p = RunProgress()
    p.feed(ev("playbook_on_play_start", play="Models: stage and verify"))
    p.feed(ev("runner_on_ok", host="a", task="Publish the verified files", res={"changed": True}))
    p.feed(ev("runner_on_ok", host="b", task="Publish the verified files", res={"changed": False}))
    p.feed(ev("playbook_on_stats", ok={"a": 1, "b": 1}, changed={"a": 1}))
    hosts = run_result(p)["hosts"]
    assert hosts["a"]["changed_tasks"] == ["models: Publish the verified files"]
    assert hosts["b"]["changed_tasks"] == []
