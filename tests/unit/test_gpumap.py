"""The GPU-map rules of DESIGN.md, each shown with a valid and an invalid map."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from airgap_llm.gpumap import plan_host, plan_hosts
from airgap_llm.units import engine_args, start_order

TEST_BOX: dict[str, Any] = {
    "airgap_llm_target_os": "ubuntu-22.04",
    "airgap_llm_target_python": "3.11",  # vLLM 0.32 needs >= 3.11; jammy's python3 is 3.10
    "airgap_llm_gpu": {"model": "A100-40GB", "count": 1, "memory_gib": 40},
    "airgap_llm_services": {
        "ocr": {"kind": "ocr", "model": "rednote-hilab/dots.ocr", "revision": "main", "port": 8002,
                "gpus": [0], "gpu_memory_utilization": 0.30},
        "whisper": {"kind": "transcription", "model": "ivrit-ai/whisper-large-v3", "revision": "main",
                    "port": 8004, "gpus": [0], "gpu_memory_utilization": 0.15},
        "embedding": {"kind": "embedding", "model": "Qwen/Qwen3-Embedding-4B", "revision": "main",
                      "port": 8001, "gpus": [0], "gpu_memory_utilization": 0.15},
        "llm": {"kind": "chat", "model": "dicta-il/dictalm2.0-instruct-AWQ", "revision": "main",
                "port": 8003, "gpus": [0], "gpu_memory_utilization": 0.35},
    },
}


def box(**changes: Any) -> dict[str, Any]:
    """The test box with service fields changed: box(llm={"gpu_memory_utilization": 0.4})."""
    hv = copy.deepcopy(TEST_BOX)
    for name, fields in changes.items():
        if name.startswith("airgap_llm_"):
            hv[name] = fields
            continue
        for key, value in fields.items():
            if value is None:
                hv["airgap_llm_services"][name].pop(key, None)
            else:
                hv["airgap_llm_services"][name][key] = value
    return hv


def texts(hv: dict[str, Any], host: str = "h1") -> list[str]:
    return [str(p) for p in plan_host(host, hv).problems]


def rules(hv: dict[str, Any]) -> list[str]:
    return [p.rule for p in plan_host("h1", hv).problems]


def test_test_box_is_valid_and_fills_gpu0_to_the_ceiling() -> None:
    plan = plan_host("h1", TEST_BOX)
    assert plan.ok, plan.problems
    (gpu0,) = plan.gpu_usage()
    assert gpu0.used == pytest.approx(0.95)
    assert [n for n, _ in gpu0.services] == ["ocr", "whisper", "embedding", "llm"]
    assert plan.engine == "vllm"
    assert plan.python == "3.11"


def test_over_committed_gpu_names_host_gpu_services_and_numbers() -> None:
    (msg,) = texts(box(llm={"gpu_memory_utilization": 0.40}))
    assert msg.startswith("host h1, GPU 0: over-committed")
    for part in ("ocr 0.3", "whisper 0.15", "embedding 0.15", "llm 0.4", "= 1 ", "ceiling 0.95", "[gpu-memory]"):
        assert part in msg


def test_ceiling_is_configurable() -> None:
    assert rules(box(airgap_llm_gpu_memory_ceiling=0.90)) == ["gpu-memory"]
    assert plan_host("h1", box(llm={"gpu_memory_utilization": 0.40}, airgap_llm_gpu_memory_ceiling=1.0)).ok


def test_out_of_range_gpu() -> None:
    (msg,) = texts(box(whisper={"gpus": [1]}))
    assert msg == (
        "host h1, service whisper, GPU 1: GPU index 1 is out of range: the host has 1 GPU(s), "
        "indexes 0..0 [gpu-index]"
    )


def test_negative_and_duplicate_gpu_indexes() -> None:
    assert rules(box(whisper={"gpus": [-1]})) == ["gpu-index"]
    assert "more than once" in texts(box(whisper={"gpus": [0, 0], "tensor_parallel_size": None}))[0]


def test_gpu_service_on_host_without_gpus() -> None:
    hv = box()
    del hv["airgap_llm_gpu"]
    problems = texts(hv)
    assert any("has no airgap_llm_gpu" in p for p in problems)


def test_duplicate_port_names_both_services() -> None:
    problems = texts(box(whisper={"port": 8003}))
    assert "host h1, service whisper: port 8003 is also used by llm [port-unique]" in problems
    assert "host h1, service llm: port 8003 is also used by whisper [port-unique]" in problems


@pytest.mark.parametrize("port", [0, 70000, "8080", None, True])
def test_bad_port(port: Any) -> None:
    hv = box()
    hv["airgap_llm_services"]["llm"]["port"] = port
    assert "port" in rules(hv)


def test_tensor_parallel_must_equal_gpu_count() -> None:
    hv = box(
        airgap_llm_gpu={"model": "A100", "count": 8, "memory_gib": 80},
    )
    hv["airgap_llm_services"] = {
        "llm": {"kind": "chat", "model": "m/x", "revision": "r", "port": 1, "gpus": [2, 3],
                "gpu_memory_utilization": 0.9, "tensor_parallel_size": 4}
    }
    (msg,) = texts(hv)
    assert "tensor_parallel_size 4 must equal the number of GPUs on the host (2: [2, 3])" in msg
    hv["airgap_llm_services"]["llm"]["tensor_parallel_size"] = 2
    plan = plan_host("h1", hv)
    assert plan.ok
    assert plan.services[0].tensor_parallel_size == 2
    assert plan.services[0].cuda_visible_devices == "2,3"


def test_tensor_parallel_defaults_to_gpu_count() -> None:
    hv = box(airgap_llm_gpu={"model": "H100", "count": 8, "memory_gib": 80})
    hv["airgap_llm_services"] = {
        "llm": {"kind": "chat", "model": "m/x", "port": 1, "gpus": [0, 1, 2, 3], "gpu_memory_utilization": 0.9}
    }
    svc = plan_host("h1", hv).services[0]
    assert svc.tensor_parallel_size == 4
    assert engine_args(svc)[:8] == [
        "--served-model-name", "llm", "--port", "1", "--tensor-parallel-size", "4",
        "--gpu-memory-utilization", "0.9",
    ]


def test_misspelt_key_is_an_error_with_a_suggestion() -> None:
    hv = box(llm={"gpu_memory_utilisation": 0.35, "gpu_memory_utilization": None})
    problems = texts(hv)
    assert (
        "host h1, service llm: unknown key 'gpu_memory_utilisation' (did you mean 'gpu_memory_utilization'?) "
        "[unknown-key]" in problems
    )


def test_unknown_key_without_a_close_match() -> None:
    assert "unknown key 'colour' [unknown-key]" in texts(box(llm={"colour": "red"}))[0]


def test_unknown_gpu_key() -> None:
    hv = box(airgap_llm_gpu={"model": "A100", "count": 1, "memory_gib": 40, "memry_gib": 1})
    assert "airgap_llm_gpu has unknown key 'memry_gib' (did you mean 'memory_gib'?)" in texts(hv)[0]


def test_gpu_field_on_cpu_service() -> None:
    hv = box()
    hv["airgap_llm_services"]["gateway"] = {
        "kind": "app", "port": 8080, "gpus": [], "command": ["bin/gw"], "gpu_memory_utilization": 0.1,
    }
    assert texts(hv) == [
        "host h1, service gateway: a CPU service (gpus: []) takes no GPU field, but sets "
        "gpu_memory_utilization [cpu-service]"
    ]


def test_memory_needs_exactly_one_of_fraction_and_gib() -> None:
    assert "exactly one" in texts(box(llm={"gpu_memory_gib": 14}))[0]
    assert "needs gpu_memory_utilization" in texts(box(llm={"gpu_memory_utilization": None}))[0]


def test_gpu_memory_gib_is_converted_with_memory_gib() -> None:
    plan = plan_host("h1", box(llm={"gpu_memory_utilization": None, "gpu_memory_gib": 14}))
    assert plan.ok
    llm = next(s for s in plan.services if s.name == "llm")
    assert llm.memory_fraction == 0.35
    assert llm.memory_gib == 14.0
    # 15 GiB = 0.375 pushes GPU 0 past the ceiling.
    assert rules(box(llm={"gpu_memory_utilization": None, "gpu_memory_gib": 15})) == ["gpu-memory"]
    assert "more than one GPU's memory" in texts(box(llm={"gpu_memory_utilization": None, "gpu_memory_gib": 41}))[0]


@pytest.mark.parametrize("util", [0, 1.5, -0.1, "0.3"])
def test_bad_fraction(util: Any) -> None:
    assert "memory" in rules(box(llm={"gpu_memory_utilization": util}))


def test_gpu_service_needs_a_model() -> None:
    assert texts(box(llm={"model": None})) == [
        "host h1, service llm: a chat service needs a model (a Hugging Face model id) [model]"
    ]


def test_bad_model_id_and_kind() -> None:
    assert rules(box(llm={"model": "not a model"})) == ["model"]
    assert texts(box(llm={"kind": "reranker"})) == [
        "host h1, service llm: unknown kind 'reranker' (did you mean 'rerank'?): kind must be one of chat, "
        "embedding, transcription, ocr, rerank, app, gateway, webui [kind]"
    ]


def test_kind_typo_gets_a_did_you_mean_and_a_missing_kind_says_so() -> None:
    assert texts(box(llm={"kind": "embeding"})) == [
        "host h1, service llm: unknown kind 'embeding' (did you mean 'embedding'?): kind must be one of "
        "chat, embedding, transcription, ocr, rerank, app, gateway, webui [kind]"
    ]
    assert texts(box(llm={"kind": None})) == [
        "host h1, service llm: kind is missing: set one of chat, embedding, transcription, ocr, rerank, app, "
        "gateway, webui [kind]"
    ]


def test_missing_port_says_it_is_missing() -> None:
    assert texts(box(llm={"port": None})) == [
        "host h1, service llm: port is missing: each service needs its own port in 1..65535 [port]"
    ]
    assert texts(box(llm={"port": 70000})) == [
        "host h1, service llm: port must be a whole number in 1..65535, got 70000 [port]"
    ]


def test_gpu_memory_gib_on_a_host_without_gpus_is_reported_once() -> None:
    hv = {
        "airgap_llm_services": {
            "llm": {"kind": "chat", "model": "o/m", "port": 8003, "gpus": [0], "gpu_memory_gib": 10},
        },
    }
    assert texts(hv) == [
        "host h1, service llm, GPU 0: uses GPU 0 but the host has no airgap_llm_gpu (no GPUs) [gpu-index]"
    ]


def test_invalid_service_name() -> None:
    hv = box()
    hv["airgap_llm_services"]["my.llm"] = hv["airgap_llm_services"].pop("llm")
    assert rules(hv) == ["service-name"]


def test_all_problems_are_collected_in_one_run() -> None:
    hv = box(
        llm={"gpu_memory_utilization": 0.60, "port": 8001},
        whisper={"gpus": [3], "gpu_memry": 1},
    )
    found = set(rules(hv))
    assert {"gpu-memory", "port-unique", "gpu-index", "unknown-key"} <= found


def test_missing_revision_defaults_to_main_with_a_warning() -> None:
    plan = plan_host("h1", box(llm={"revision": None}))
    assert plan.ok
    assert next(s for s in plan.services if s.name == "llm").revision == "main"
    assert any("no revision given" in w for w in plan.warnings)


def test_engine_args_per_kind() -> None:
    plan = plan_host("h1", TEST_BOX)
    args = {s.name: engine_args(s) for s in plan.services}
    assert "--runner" in args["embedding"] and args["embedding"][args["embedding"].index("--runner") + 1] == "pooling"
    assert "--trust-remote-code" in args["ocr"]
    assert "--trust-remote-code" not in args["llm"] and "--runner" not in args["llm"]
    for svc in plan.services:
        assert engine_args(svc)[:2] == ["--served-model-name", svc.name]
        assert "--gpu-memory-utilization" in engine_args(svc)
        assert svc.cuda_visible_devices == "0"


def test_extra_args_are_passed_verbatim_last() -> None:
    plan = plan_host("h1", box(llm={"extra_args": ["--quantization", "awq"], "max_model_len": 8192}))
    llm = next(s for s in plan.services if s.name == "llm")
    assert engine_args(llm)[-2:] == ["--quantization", "awq"]
    assert engine_args(llm)[engine_args(llm).index("--max-model-len") + 1] == "8192"


def test_colocated_gpu_services_start_one_after_another() -> None:
    plan = plan_host("h1", TEST_BOX)
    after = start_order(plan.services)
    assert after["ocr"] == []
    assert after["whisper"] == ["airgap-llm-ocr.service"]
    assert after["llm"] == ["airgap-llm-ocr.service", "airgap-llm-whisper.service", "airgap-llm-embedding.service"]


def test_services_on_separate_gpus_start_independently() -> None:
    hv = {
        "airgap_llm_gpu": {"model": "A100", "count": 8, "memory_gib": 80},
        "airgap_llm_services": {
            "a": {"kind": "chat", "model": "o/a", "port": 1, "gpus": [0, 1], "gpu_memory_utilization": 0.9},
            "b": {"kind": "embedding", "model": "o/b", "port": 2, "gpus": [2], "gpu_memory_utilization": 0.9},
            "c": {"kind": "ocr", "model": "o/c", "port": 3, "gpus": [1], "gpu_memory_utilization": 0.05},
        },
    }
    plan = plan_host("h1", hv)
    assert plan.ok, plan.problems
    assert start_order(plan.services) == {"a": [], "b": [], "c": ["airgap-llm-a.service"]}


def test_cpu_host_uses_vllm_cpu_and_chains_engine_services() -> None:
    hv = {
        "airgap_llm_target_os": "debian-12",
        "airgap_llm_services": {
            "embed": {"kind": "embedding", "model": "o/e", "port": 8001, "gpus": []},
            "chat": {"kind": "chat", "model": "o/c", "port": 8003},
            "web": {"kind": "app", "port": 3000, "command": ["bin/web", "--port", "3000"]},
        },
    }
    plan = plan_host("h1", hv)
    assert plan.ok, plan.problems
    assert plan.engine == "vllm-cpu"
    assert plan.gpu_usage() == []
    by = {s.name: s for s in plan.services}
    after = start_order(plan.services)
    assert after["chat"] == ["airgap-llm-embed.service"]
    assert engine_args(by["web"]) == [] and after["web"] == []
    assert "--gpu-memory-utilization" not in engine_args(by["chat"])
    assert by["chat"].cuda_visible_devices == ""


def test_app_rules() -> None:
    hv = {"airgap_llm_services": {"web": {"kind": "app", "port": 3000}}}
    assert "needs command" in texts(hv)[0]
    hv = {"airgap_llm_services": {"web": {"kind": "app", "port": 3000, "command": ["x"], "model": "o/m"}}}
    assert "takes no model" in texts(hv)[0]


def test_engine_override_checked() -> None:
    assert rules(box(airgap_llm_engine="vllm-cpu")) == ["engine"]
    assert rules(box(airgap_llm_engine="tgi")) == ["engine"]


def test_unsupported_target_os() -> None:
    (msg,) = texts(box(airgap_llm_target_os="centos-7"))
    assert "airgap_llm_target_os 'centos-7' is not supported" in msg


def test_env_values_are_strings_and_names_checked() -> None:
    plan = plan_host("h1", box(llm={"env": {"VLLM_LOGGING_LEVEL": "DEBUG", "N": 3, "FLAG": True}}))
    llm = next(s for s in plan.services if s.name == "llm")
    assert llm.env == {"VLLM_LOGGING_LEVEL": "DEBUG", "N": "3", "FLAG": "1"}
    assert rules(box(llm={"env": {"1BAD": "x"}})) == ["env"]
    assert rules(box(llm={"env": ["A=1"]})) == ["env"]


def test_services_must_be_a_mapping() -> None:
    assert rules({"airgap_llm_services": ["llm"]}) == ["services"]


def test_multi_node_service_needs_enough_hosts() -> None:
    one = {
        "airgap_llm_gpu": {"model": "H100 NVL", "count": 1, "memory_gib": 93},
        "airgap_llm_services": {
            "llm": {"kind": "chat", "model": "o/m", "port": 8003, "gpus": [0], "gpu_memory_utilization": 0.9,
                    "nodes": 2}
        },
        "airgap_llm_cluster_interface": "eth0",
    }
    plans = plan_hosts({"n1": {**one, "ansible_host": "10.0.0.4"}, "n2": {**one, "ansible_host": "10.0.0.5"}})
    assert all(p.ok for p in plans)
    args = engine_args(plans[0].services[0])
    assert args[args.index("--pipeline-parallel-size") + 1] == "2"
    assert args[args.index("--distributed-executor-backend") + 1] == "ray"
    (bad,) = plan_hosts({"n1": {**one, "ansible_host": "10.0.0.4"}})
    assert [str(p) for p in bad.problems] == [
        "host n1, service llm: spans 2 hosts but only 1 host(s) of the inventory define it (n1) [nodes]"
    ]


_NODE_ADDRESSES = iter(f"10.0.0.{i}" for i in range(10, 250))


def _node(**changes: Any) -> dict[str, Any]:
    svc = {"kind": "chat", "model": "o/m", "revision": "main", "port": 8003, "gpus": [0],
           "gpu_memory_utilization": 0.9, "nodes": 2}
    svc.update(changes)
    return {
        "airgap_llm_gpu": {"model": "H100 NVL", "count": 2, "memory_gib": 93},
        "airgap_llm_services": {"llm": svc},
        "airgap_llm_cluster_interface": "eth0",
        "airgap_llm_cluster_address": next(_NODE_ADDRESSES),
    }


def test_multi_node_hosts_must_agree_on_nodes() -> None:
    plans = plan_hosts({"n1": _node(), "n2": _node(nodes=3)})
    assert [str(p) for p in plans[1].problems] == [
        "host n2, service llm: nodes differs between the hosts that define it: n1 2, n2 3 [nodes]"
    ]
    assert not plans[0].ok


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"model": "o/other"}, "model differs: n1 'o/m', n2 'o/other'"),
        ({"revision": "v2"}, "revision differs: n1 'main', n2 'v2'"),
        ({"port": 8004}, "port differs: n1 8003, n2 8004"),
        ({"gpus": [0, 1]}, "the GPU count (tensor_parallel_size) differs: n1 1, n2 2"),
        ({"gpu_memory_utilization": 0.5}, "memory_fraction differs: n1 0.9, n2 0.5"),
    ],
)
def test_multi_node_hosts_must_define_the_service_the_same_way(change: dict[str, Any], words: str) -> None:
    plans = plan_hosts({"n1": _node(), "n2": _node(**change)})
    for plan in plans:
        assert [str(p) for p in plan.problems] == [
            f"host {plan.host}, service llm: spans 2 hosts, which must define it the same way, but {words} [nodes]"
        ]


def test_as_dict_is_json_serialisable() -> None:
    import json

    plan = plan_host("h1", TEST_BOX)
    data = plan.as_dict()
    assert type(plan).from_dict(json.loads(json.dumps(data))) == plan
    assert json.loads(json.dumps(data))["gpus"][0]["headroom_fraction"] == 0.0


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("airgap_llm_service", "airgap_llm_services"),
        ("airgap_llm_gpus", "airgap_llm_gpu"),
        ("airgap_llm_gpu_memory_celing", "airgap_llm_gpu_memory_ceiling"),
        ("airgap_llm_target_oss", "airgap_llm_target_os"),
    ],
)
def test_a_misspelt_host_variable_is_an_error(typo: str, meant: str) -> None:
    hv = box(**{typo: {"x": 1}})
    assert texts(hv) == [
        f"host h1: variable '{typo}' is not one airgap-llm reads (did you mean '{meant}'?) [unknown-variable]"
    ]


def test_role_variables_are_not_taken_for_typos() -> None:
    hv = box(
        airgap_llm_guard=True,
        airgap_llm_api_key="k",
        airgap_llm_hosts="all",
        airgap_llm_bundle_dir="/srv/bundle",
        airgap_llm_preflight_min_free_gib=20,
        airgap_llm_inference_service_user="airgap-llm",
    )
    assert plan_host("h1", hv).ok


def test_the_plan_the_roles_see_is_the_json_form_of_the_same_objects() -> None:
    import json

    from airgap_llm.gpumap import HostPlan

    hv = box(airgap_llm_gpu={"model": "A100-40GB", "count": 2, "memory_gib": 40, "failed": [1]},
             airgap_llm_min_concurrent_seqs=2, airgap_llm_paths={"state_dir": "/data/agl"})
    hv["ansible_host"] = "10.1.2.3"
    plan = plan_host("h1", hv)
    again = HostPlan.from_dict(json.loads(json.dumps(plan.as_dict())))
    assert again == plan
    assert again.paths.models_dir == "/data/agl/models" and again.address == "10.1.2.3"


def test_the_engine_must_accept_the_target_python() -> None:
    hv = box(airgap_llm_target_python=None)
    hv.pop("airgap_llm_target_python")
    assert texts(hv) == [
        "host h1: vllm 0.32.0 needs Python >=3.11,<3.15 (its Requires-Python), but the venv would be built with "
        "Python 3.10 (the python3 of airgap_llm_target_os ubuntu-22.04); set airgap_llm_target_python: \"3.11\" "
        "(the bundle then carries jammy's python3.11 packages for the venv) [target-python]"
    ]
    # vLLM 0.31 still takes 3.10; an OS with no fitting Python says so
    assert plan_host("h1", {**hv, "airgap_llm_vllm_version": "0.31.0"}).ok
    (msg,) = texts(box(airgap_llm_target_os="debian-12", airgap_llm_target_python="3.10"))
    assert msg.endswith("leave airgap_llm_target_python unset: debian-12's python3 is 3.11 [target-python]")
    # a release the table does not know is left to bundle build
    assert plan_host("h1", box(airgap_llm_vllm_version="0.40.0", airgap_llm_target_python="3.10")).ok
