"""The nodes of a multi-node service must start on the same live venv (cluster_runtime)."""

from __future__ import annotations

import json
import subprocess
import sys

from airgap_llm.cluster_runtime import NODE_RUNTIME_PROBE, host_runtime_problems, runtime_problems

A = {"venv": "py3.11-abc", "python": "3.11.7", "ray": "2.48.0", "vllm": "0.32.0"}
HOSTS = ("h100-a", "h100-b")


def test_nodes_on_the_same_venv_start() -> None:
    assert runtime_problems("llm", "ray", HOSTS, {"h100-a": A, "h100-b": dict(A)}) == []


def test_a_different_live_venv_is_refused_naming_both_nodes_and_ids() -> None:
    b = {**A, "venv": "py3.11-def"}
    [msg] = runtime_problems("llm", "mp", HOSTS, {"h100-a": A, "h100-b": b})
    assert msg == ("service llm spans h100-a, h100-b, which must run the same venv, but the live venv differs: "
                   "h100-a py3.11-abc, h100-b py3.11-def")


def test_each_differing_version_is_named() -> None:
    b = {**A, "venv": "x", "python": "3.12.3", "ray": "2.49.0", "vllm": "0.33.0"}
    problems = runtime_problems("llm", "ray", HOSTS, {"h100-a": A, "h100-b": b})
    assert [p.split("but the ")[1].split(" differs")[0] for p in problems] == [
        "live venv", "Python version", "vLLM version", "Ray version"]
    assert "h100-a 3.11.7, h100-b 3.12.3" in problems[1]


def test_ray_backend_needs_ray_in_every_venv() -> None:
    no_ray = {**A, "ray": None}
    problems = runtime_problems("llm", "ray", HOSTS, {"h100-a": no_ray, "h100-b": no_ray})
    assert problems == ["service llm runs on Ray, but the live venv of h100-a, h100-b has no ray (the bundle "
                        "carries it for a Ray service: rebuild the bundle with this inventory)"]
    assert runtime_problems("llm", "mp", HOSTS, {"h100-a": no_ray, "h100-b": no_ray}) == []


def test_a_node_left_out_of_the_run_is_refused() -> None:
    [msg] = runtime_problems("llm", "ray", HOSTS, {"h100-a": A, "h100-b": None})
    assert "but h100-b is not in this run (left out by --limit" in msg and "name every node" in msg


def test_a_node_without_a_venv_is_refused_but_not_in_check_mode() -> None:
    reports = {"h100-a": A, "h100-b": {"venv": None}}
    [msg] = runtime_problems("llm", "ray", HOSTS, reports)
    assert "but h100-b has no live venv" in msg
    assert runtime_problems("llm", "ray", HOSTS, reports, check_mode=True) == []
    # check mode still compares the nodes that have one
    three = ("a", "b", "c")
    got = runtime_problems("llm", "mp", three, {"a": A, "b": {**A, "venv": "other"}, "c": {"venv": None}},
                           check_mode=True)
    assert got and "a py3.11-abc, b other" in got[0] and "c " not in got[0].split("differs:")[1]


def test_host_plan_form_checks_only_multi_node_services() -> None:
    plan = {"services": [
        {"name": "emb", "cluster": None},
        {"name": "llm", "cluster": {"hosts": list(HOSTS), "backend": "ray"}},
    ]}
    assert host_runtime_problems(plan, {"h100-a": A, "h100-b": A}) == []
    assert len(host_runtime_problems(plan, {"h100-a": A, "h100-b": {**A, "python": "3.12.0"}})) == 1


def test_the_probe_reports_this_python(tmp_path: object) -> None:
    out = subprocess.run([sys.executable, "-c", NODE_RUNTIME_PROBE], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got["python"] == ".".join(str(n) for n in sys.version_info[:3])
    assert got["venv"] and set(got) == {"venv", "python", "ray", "vllm"}
