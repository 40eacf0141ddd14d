"""status: a multi-node service's state across its nodes (each node's unit, and what the Ray head sees)."""

from __future__ import annotations

from typing import Any

from airgap_llm.commands.status import cluster_table, cluster_text
from airgap_llm.status_report import cluster_states, ray_nodes, report

CLUSTER = {"backend": "ray", "nodes": 2, "hosts": ["nvl-a", "nvl-b"], "rank": 0, "head_address": "10.0.0.4"}


def _plan(role: str, unit: str, rank: int, serves_api: bool) -> dict[str, Any]:
    return {"services": [{"name": "llm", "unit": unit, "kind": "chat", "port": 8003, "gpus": [0, 1],
                          "role": role, "serves_api": serves_api, "cluster": {**CLUSTER, "rank": rank}}]}


def _show(unit: str, active: str = "active", sub: str = "running") -> str:
    return f"Id={unit}\nLoadState=loaded\nActiveState={active}\nSubState={sub}\nNRestarts=0\n"


HEAD_UNIT, WORKER_UNIT = "airgap-llm-llm.service", "airgap-llm-ray-worker.service"
RAY_OK = {"rc": 0, "stdout": "Ray cluster at 10.0.0.4:6379: 2 of 2 nodes with 2 GPU(s) each: 10.0.0.4, 10.0.0.5",
          "stderr": "", "item": {"name": "llm"}}
RAY_ONE = {"rc": 1, "stdout": "", "item": {"name": "llm"},
           "stderr": "Ray cluster at 10.0.0.4:6379: only 1 of 2 nodes with 2 GPU(s) each after 0 s (10.0.0.4): is "
                     "airgap-llm-ray-worker.service running on every other node, and are Ray's ports open?"}


def _reports(ray: dict[str, Any], worker_active: str = "active") -> dict[str, Any]:
    head = report(_plan("head", HEAD_UNIT, 0, True), _show(HEAD_UNIT), {"results": [
        {"item": {"name": "llm"}, "status": 200}]}, "{}", ray={"results": [ray]})
    worker = report(_plan("worker", WORKER_UNIT, 1, False),
                    _show(WORKER_UNIT, worker_active, "running" if worker_active == "active" else "failed"),
                    {"results": []}, "{}")
    return {"nvl-a": head, "nvl-b": worker}


def test_ray_nodes_reads_both_answers_of_the_wait_helper() -> None:
    assert ray_nodes(RAY_OK) == {"alive": 2, "nodes": 2, "ok": True, "detail": RAY_OK["stdout"]}
    one = ray_nodes(RAY_ONE)
    assert (one["alive"], one["nodes"], one["ok"]) == (1, 2, False)
    assert ray_nodes({"rc": 1, "stderr": "Traceback\nModuleNotFoundError: No module named 'ray'"})["detail"] == \
        "ModuleNotFoundError: No module named 'ray'"


def test_a_complete_cluster_is_ok_on_every_node() -> None:
    reps = _reports(RAY_OK)
    assert reps["nvl-a"]["ok"] and reps["nvl-b"]["ok"]
    [c] = cluster_states(reps)
    assert c["ok"] and c["node_units"] == {"nvl-a": "head: active/running", "nvl-b": "worker: active/running"}
    assert cluster_text(c) == "2 of 2 node units active; Ray: 2 of 2 nodes alive"


def test_a_worker_missing_from_ray_fails_the_head_and_the_cluster() -> None:
    reps = _reports(RAY_ONE)
    assert not reps["nvl-a"]["ok"] and reps["nvl-b"]["ok"]
    [c] = cluster_states(reps)
    assert not c["ok"] and cluster_text(c) == "2 of 2 node units active; Ray: 1 of 2 nodes alive"


def test_a_failed_worker_unit_and_a_host_without_report_are_shown() -> None:
    reps = _reports(RAY_OK, worker_active="failed")
    [c] = cluster_states(reps)
    assert not c["ok"] and c["node_units"]["nvl-b"] == "worker: failed/failed"
    [c] = cluster_states({"nvl-a": reps["nvl-a"], "nvl-b": None})
    assert c["node_units"]["nvl-b"] == "no report" and cluster_text(c).startswith("1 of 2 node units active")


def test_mp_clusters_need_no_ray_and_single_services_make_no_cluster() -> None:
    plan = _plan("rank 1", HEAD_UNIT, 1, False)
    plan["services"][0]["cluster"]["backend"] = "mp"
    rep = report(plan, _show(HEAD_UNIT), {"results": []}, "{}")
    [c] = cluster_states({"nvl-a": None, "nvl-b": rep})
    assert cluster_text(c) == "1 of 2 node units active"
    single = {"services": [{"name": "emb", "unit": "airgap-llm-emb.service", "kind": "embedding", "port": 8001,
                            "gpus": []}]}
    assert cluster_states({"h": report(single, _show("airgap-llm-emb.service"), {"results": []}, "{}")}) == []
    assert cluster_table({"clusters": []}) is None
    assert cluster_table({"clusters": cluster_states(_reports(RAY_OK))}) is not None
