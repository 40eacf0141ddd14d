"""Multi-node services: each host's part in the plan, the Ray and mp units, status and validate verdicts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airgap_llm.gpumap import HostPlan, plan_hosts
from airgap_llm.host_files import restart_inputs, service_env, service_files, unit_names
from airgap_llm.plan_model import RAY_HEAD_UNIT, RAY_WORKER_UNIT, ClusterPlan, ray_ports
from airgap_llm.status_report import report
from airgap_llm.units import UnitSettings, engine_args, ray_args
from airgap_llm.validation import cluster_verdict

from .conftest import REPO
from .conftest import load_script as load_role_script

GPU = {"model": "H100-NVL-94GB", "count": 1, "memory_gib": 93}


def _hosts(backend: str = "ray", n: int = 2, gpus: bool = True) -> dict[str, dict[str, Any]]:
    llm: dict[str, Any] = {"kind": "chat", "model": "o/m", "revision": "main", "port": 8003, "nodes": n,
                           "distributed_backend": backend}
    if gpus:
        llm.update(gpus=[0], gpu_memory_utilization=0.9)
    else:
        llm["gpus"] = []
    return {
        f"n{i}": {
            **({"airgap_llm_gpu": GPU} if gpus else {}),
            "airgap_llm_services": {"llm": llm},
            "airgap_llm_cluster_interface": "eth1",
            "ansible_host": f"192.0.2.{40 + i}",
            "airgap_llm_cluster_address": f"10.0.0.{i}",
        }
        for i in range(1, n + 1)
    }


def _plans(backend: str = "ray", n: int = 2, gpus: bool = True) -> list[HostPlan]:
    plans = plan_hosts(_hosts(backend, n, gpus))
    assert all(p.ok for p in plans), [str(x) for p in plans for x in p.problems]
    return plans


def _files(plan: HostPlan) -> dict[str, str]:
    return {f.path: f.content for f in service_files(plan, UnitSettings(), "# managed", plan.address or "0.0.0.0")}


def test_each_host_gets_its_part_head_first() -> None:
    head, worker = _plans()
    h, w = head.services[0].cluster, worker.services[0].cluster
    assert h == ClusterPlan("ray", 2, 0, ("n1", "n2"), "10.0.0.1", "10.0.0.1", "eth1")
    assert w is not None and (w.rank, w.role, w.head, w.head_address, w.address) == (1, "worker", "n1", "10.0.0.1",
                                                                                    "10.0.0.2")
    assert head.services[0].serves_api and not worker.services[0].serves_api
    assert (head.services[0].unit, worker.services[0].unit) == ("airgap-llm-llm.service", RAY_WORKER_UNIT)


def test_mp_ranks_follow_the_inventory_order() -> None:
    plans = _plans("mp", 3, gpus=False)
    assert [p.services[0].role for p in plans] == ["head", "rank 1", "rank 2"]
    assert [p.services[0].unit for p in plans] == ["airgap-llm-llm.service"] * 3


def test_the_plan_round_trips_through_json() -> None:
    for plan in _plans():
        back = HostPlan.from_dict(json.loads(json.dumps(plan.as_dict())))
        assert back == plan
        assert back.as_dict()["services"][0]["cluster"]["role"] in ("head", "worker")


def test_cluster_address_defaults_to_the_inventory_address() -> None:
    hv = _hosts()
    for h in hv.values():
        del h["airgap_llm_cluster_address"]
    plans = plan_hosts(hv)
    assert all(p.ok for p in plans)
    assert [p.cluster_address for p in plans] == ["192.0.2.41", "192.0.2.42"]


def test_ray_ports_take_the_worker_range_whole() -> None:
    head, node = ray_ports(True), ray_ports(False)
    assert {6379, 10001, 6380, 10002, 10999} <= head and 11000 not in head
    assert 6379 not in node and 10001 not in node and 6380 in node


def test_engine_args_per_backend() -> None:
    head, worker = _plans()
    args = engine_args(head.services[0])
    assert args[args.index("--distributed-executor-backend") + 1] == "ray" and "--nnodes" not in args
    r0, r1 = (p.services[0] for p in _plans("mp", gpus=False))
    a0, a1 = engine_args(r0), engine_args(r1)
    assert a0[a0.index("--nnodes") + 1] == "2" and a0[a0.index("--node-rank") + 1] == "0"
    assert a0[a0.index("--master-addr") + 1] == "10.0.0.1" and "--headless" not in a0
    assert a1[a1.index("--node-rank") + 1] == "1" and "--headless" in a1
    assert a1[a1.index("--distributed-executor-backend") + 1] == "mp"


def test_ray_args_head_and_worker() -> None:
    head, worker = (p.services[0] for p in _plans())
    h, w = ray_args(head), ray_args(worker)
    assert h[0] == "--head" and "--port=6379" in h and "--node-ip-address=10.0.0.1" in h and "--num-gpus=1" in h
    assert w[0] == "--address=10.0.0.1:6379" and "--node-ip-address=10.0.0.2" in w and "--port=6379" not in w
    assert "--include-dashboard=false" in h and "--disable-usage-stats" in w
    # ray start refuses the head's switches on a worker ("should only be specified ... with --head").
    assert not [a for a in w if a.startswith(("--include-dashboard", "--temp-dir"))]
    assert "--temp-dir=/var/cache/airgap-llm/ray" in h
    assert ray_args(_plans("mp", gpus=False)[0].services[0]) == []


def test_head_gets_the_ray_head_and_the_serving_unit_worker_only_its_ray_unit() -> None:
    head, worker = _plans()
    hf, wf = _files(head), _files(worker)
    unit = "/etc/systemd/system/"
    assert f"{unit}{RAY_HEAD_UNIT}" in hf and f"{unit}airgap-llm-llm.service" in hf
    assert f"{unit}{RAY_WORKER_UNIT}" not in hf
    assert f"{unit}{RAY_WORKER_UNIT}" in wf and f"{unit}airgap-llm-llm.service" not in wf
    serving = hf[f"{unit}airgap-llm-llm.service"]
    assert "ExecStartPre=/opt/airgap-llm/venv/bin/python /opt/airgap-llm/libexec/ray-wait-cluster 10.0.0.1:6379 2 1" \
        in serving
    assert f"Requires=airgap-llm.nvidia-devices.service {RAY_HEAD_UNIT}" in serving
    assert f"PartOf=airgap-llm.target {RAY_HEAD_UNIT}" in serving
    ray_head = hf[f"{unit}{RAY_HEAD_UNIT}"]
    assert "Type=simple" in ray_head and "Restart=always" in ray_head and "StartLimitIntervalSec=0" in ray_head
    assert "api-key.env" not in ray_head and "DeviceAllow=/dev/nvidia0 rw" in ray_head
    assert "ray start --block --head" in ray_head
    assert "Wants=airgap-llm-ray-worker.service" in wf[f"{unit}airgap-llm.target"]


def test_environment_per_node() -> None:
    head, worker = _plans()
    he, we = service_env(head.services[0], "# m"), service_env(worker.services[0], "# m")
    assert "VLLM_HOST_IP=10.0.0.1" in he and "VLLM_HOST_IP=10.0.0.2" in we
    for env in (he, we):
        assert "NCCL_SOCKET_IFNAME=eth1" in env and "GLOO_SOCKET_IFNAME=eth1" in env
        assert "RAY_ADDRESS=10.0.0.1:6379" in env
    mp = service_env(_plans("mp", gpus=False)[1].services[0], "# m")
    assert "RAY_ADDRESS" not in mp and "GLOO_SOCKET_IFNAME=eth1" in mp
    # The serving unit of a multi-node service does not pin Gloo to loopback.
    assert "GLOO_SOCKET_IFNAME=lo" not in _files(head)["/etc/systemd/system/airgap-llm-llm.service"]


def test_mp_headless_rank_has_no_api_and_no_health_wait() -> None:
    r0, r1 = _plans("mp", gpus=False)
    u0 = _files(r0)["/etc/systemd/system/airgap-llm-llm.service"]
    u1 = _files(r1)["/etc/systemd/system/airgap-llm-llm.service"]
    assert "-m vllm.entrypoints.openai.api_server" in u0 and "ExecStartPost=" in u0
    assert "-m airgap_llm_headless /var/lib/airgap-llm/models/llm" in u1 and "--headless" in u1
    assert "ExecStartPost=" not in u1 and "--middleware" not in u1


def test_unit_names_and_restart_inputs() -> None:
    head, worker = _plans()
    assert unit_names(head) == [RAY_HEAD_UNIT, "airgap-llm-llm.service"]
    assert unit_names(worker) == [RAY_WORKER_UNIT]
    hi, wi = restart_inputs(head), restart_inputs(worker)
    assert set(hi) == {RAY_HEAD_UNIT, "airgap-llm-llm.service"} and set(wi) == {RAY_WORKER_UNIT}
    assert "/opt/airgap-llm/libexec/ray-wait-cluster" in hi["airgap-llm-llm.service"]
    assert f"/etc/systemd/system/{RAY_WORKER_UNIT}" in wi[RAY_WORKER_UNIT]
    assert "/opt/airgap-llm/venv" in wi[RAY_WORKER_UNIT]


def test_status_report_shows_the_role_and_skips_health_on_workers() -> None:
    _, worker = _plans()
    plan = worker.as_dict()
    show = f"Id={RAY_WORKER_UNIT}\nLoadState=loaded\nActiveState=active\nSubState=running\nNRestarts=0\n"
    rep = report(plan, show, {"results": []}, "{}")
    (svc,) = rep["services"]
    assert rep["ok"] and svc["role"] == "worker" and svc["port"] is None and svc["healthy"] is None
    assert svc["health"] == "no API on this node"


@pytest.mark.parametrize(
    ("result", "how", "ok", "detail"),
    [
        ({"rc": 0, "stdout": "Ray cluster at 10.0.0.1:6379: 2 of 2 nodes", "item": {"name": "llm", "kind": "chat"}},
         "ray", True, "Ray cluster at 10.0.0.1:6379: 2 of 2 nodes"),
        ({"rc": 1, "stdout": "", "stderr": "x\nonly 1 of 2 nodes", "item": {"name": "llm", "kind": "chat"}},
         "ray", False, "only 1 of 2 nodes"),
        ({"rc": 3, "stdout": "inactive", "item": {"name": "llm", "kind": "chat", "unit": "u", "role": "rank 1"}},
         "unit", False, "u is inactive"),
        ({"rc": 0, "stdout": "active", "item": {"name": "llm", "kind": "chat", "unit": "u", "role": "worker"}},
         "unit", True, "u is active"),
    ],
)
def test_cluster_verdicts(result: dict[str, Any], how: str, ok: bool, detail: str) -> None:
    verdict = cluster_verdict(result, how)
    assert verdict["ok"] is ok and verdict["detail"] == detail and verdict["service"] == "llm"


def _wait_helper() -> Any:
    path = REPO / "roles" / "inference_service" / "files" / "ray-wait-cluster"
    return load_role_script(path, "ray_wait_cluster")


def test_wait_helper_counts_alive_nodes_with_their_gpus() -> None:
    helper = _wait_helper()
    nodes = [
        {"Alive": True, "Resources": {"GPU": 1.0, "CPU": 8}, "NodeManagerAddress": "10.0.0.1"},
        {"Alive": False, "Resources": {"GPU": 1.0}, "NodeManagerAddress": "10.0.0.2"},
        {"Alive": True, "Resources": {"CPU": 8}, "NodeManagerAddress": "10.0.0.3"},
    ]
    assert helper._ready(nodes, 1) == ["10.0.0.1"]
    assert helper._ready(nodes, 0) == ["10.0.0.1", "10.0.0.3"]
    assert helper.main(["ray-wait-cluster"]) == 2


def test_the_object_store_size_reaches_ray_start_on_every_node() -> None:
    hosts = _hosts()
    for hv in hosts.values():
        hv["airgap_llm_ray_object_store_gib"] = 8
    plans = plan_hosts(hosts)
    assert all(p.ok for p in plans) and plans[0].ray_object_store_gib == 8.0
    assert HostPlan.from_dict(json.loads(json.dumps(plans[0].as_dict()))).ray_object_store_gib == 8.0
    for plan in plans:
        ray_unit = next(v for k, v in _files(plan).items() if k.endswith(("ray-head.service", "ray-worker.service")))
        assert f"--object-store-memory={8 * 2**30}" in ray_unit
    assert "--object-store-memory" not in " ".join(ray_args(_plans()[0].services[0]))


@pytest.mark.parametrize("value", [0, -1, "8G", True, 0.05])
def test_an_object_store_size_that_is_no_number_of_gib_is_refused(value: Any) -> None:
    hosts = _hosts()
    hosts["n2"]["airgap_llm_ray_object_store_gib"] = value
    n2 = plan_hosts(hosts)[1]
    assert [p.message for p in n2.problems if p.rule == "ray-object-store"] == [
        f"airgap_llm_ray_object_store_gib must be a number of GiB >= 0.1 (Ray's object store on this node, in "
        f"/dev/shm), got {value!r}"]
