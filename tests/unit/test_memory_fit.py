"""The memory fit (rule ``memory-fit``), failed GPUs and ``plan --suggest``, against caches of the real
models' configs and safetensors headers (tests/fixtures/model_shapes.py: sparse files, nothing downloaded)."""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from airgap_llm.cli import main
from airgap_llm.errors import InputError
from airgap_llm.gpumap import plan_host
from airgap_llm.memory.check import assess_memory, check_memory
from airgap_llm.memory.estimate import GIB, EngineSettings, kv_bytes_per_token
from airgap_llm.memory.model_files import find_models, source_from_cache
from airgap_llm.memory.model_shape import model_shape
from airgap_llm.memory.safetensors_header import model_weight_files, read_header, weights_size
from airgap_llm.memory.suggest import suggest_host

from .conftest import REPO

sys.path.insert(0, str(REPO / "tests" / "fixtures"))
import model_shapes  # noqa: E402

GPU_INVENTORIES = ["a100-1x40g", "a100-8x80g", "h100-8x80g", "h100nvl-2node"]
LLAMA70 = "meta-llama/Llama-3.3-70B-Instruct"
DICTA = "dicta-il/dictalm2.0-instruct"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_shapes.write_models(tmp_path_factory.mktemp("hf") / "hub")


def host(gpu: tuple[int, float], **services: dict[str, Any]) -> dict[str, Any]:
    count, mem = gpu
    for i, svc in enumerate(services.values()):
        svc.setdefault("port", 8001 + i)
        svc.setdefault("revision", "main")
    return {"airgap_llm_gpu": {"model": "GPU", "count": count, "memory_gib": mem}, "airgap_llm_services": services}


def fit(hub: Path, hostvars: dict[str, Any]) -> tuple[list[str], list[str], dict[str, Any]]:
    plan = plan_host("box-1", hostvars)
    assert not plan.problems, plan.problems
    models, missing = find_models(source_from_cache(hub), [plan])
    assert not missing
    a = assess_memory([plan], models)
    return [str(p) for p in a.problems], [w for _, w in a.warnings], a.as_dicts().get("box-1", {})


# --- the cases of the issue -------------------------------------------------------------------------


def test_4b_embedding_in_6_gib_is_refused(hub: Path) -> None:
    problems, _, mem = fit(
        hub, host((1, 40), embedding={"kind": "embedding", "model": "Qwen/Qwen3-Embedding-4B", "gpus": [0],
                                      "gpu_memory_gib": 6, "max_model_len": 8192})
    )
    assert mem["embedding"]["weights_gib"] == pytest.approx(7.49, abs=0.01)  # 8,043,548,672 bytes of bf16
    assert len(problems) == 1
    assert problems[0].startswith("host box-1, service embedding, GPU 0: Qwen/Qwen3-Embedding-4B@main needs 7.49 GiB")
    assert "before any KV cache, more than its share 6.00 GiB" in problems[0] and problems[0].endswith("[memory-fit]")


def test_7b_bf16_in_14_gib_is_refused_and_its_awq_fits(hub: Path) -> None:
    def llm(model: str) -> dict[str, Any]:
        return host((1, 40), llm={"kind": "chat", "model": model, "gpus": [0], "gpu_memory_gib": 14,
                                  "max_model_len": 8192})

    problems, _, mem = fit(hub, llm(DICTA))
    assert mem["llm"]["weights_gib"] == pytest.approx(13.51, abs=0.01) and not mem["llm"]["fits"]
    assert len(problems) == 1 and "service llm, GPU 0: dicta-il/dictalm2.0-instruct@main needs" in problems[0]
    problems, warnings, mem = fit(hub, llm(DICTA + "-AWQ"))
    assert problems == [] and warnings == []
    assert mem["llm"]["fits"] and mem["llm"]["weights_gib"] < 4 and mem["llm"]["max_concurrent_seqs"] >= 4


def test_70b_tp4_on_80gb_at_090_fits(hub: Path) -> None:
    problems, _, mem = fit(
        hub, host((8, 80), llm={"kind": "chat", "model": LLAMA70, "gpus": [0, 1, 2, 3],
                                "gpu_memory_utilization": 0.90, "max_model_len": 32768})
    )
    assert problems == []
    m = mem["llm"]
    assert m["weights_gib"] == pytest.approx(141107412992 / 4 / GIB, abs=0.01)
    assert m["kv_bytes_per_token"] == 2 * 80 * (8 // 4) * 128 * 2
    assert m["share_gib"] == 72.0 and m["needed_gib"] < 72


def test_70b_tp2_on_40gb_is_refused(hub: Path) -> None:
    problems, _, _ = fit(
        hub, host((2, 40), llm={"kind": "chat", "model": LLAMA70, "gpus": [0, 1], "gpu_memory_utilization": 0.90,
                                "max_model_len": 8192})
    )
    assert len(problems) == 1
    assert "service llm: meta-llama/Llama-3.3-70B-Instruct@main (tensor parallel 2) needs 65.71 GiB of weights" in (
        problems[0]
    )
    assert "per GPU on GPUs 0, 1 before any KV cache" in problems[0]


def test_70b_with_128k_context_in_half_an_80gb_gpu_gets_a_max_model_len_hint(hub: Path) -> None:
    problems, _, mem = fit(
        hub, host((4, 80), llm={"kind": "chat", "model": LLAMA70, "gpus": [0, 1, 2, 3],
                                "gpu_memory_utilization": 0.50, "max_model_len": 131072})
    )
    largest = mem["llm"]["largest_max_model_len"]
    assert 0 < largest < 131072 and largest % 256 == 0
    assert len(problems) == 1
    assert "KV cache 10.00 for one sequence of max_model_len 131072" in problems[0]
    assert f"set max_model_len to at most {largest}" in problems[0]
    # the hint is right: that length fits the same share
    problems, _, _ = fit(
        hub, host((4, 80), llm={"kind": "chat", "model": LLAMA70, "gpus": [0, 1, 2, 3],
                                "gpu_memory_utilization": 0.50, "max_model_len": largest})
    )
    assert problems == []


def test_unset_max_model_len_means_the_models_own(hub: Path) -> None:
    problems, _, mem = fit(
        hub, host((4, 80), llm={"kind": "chat", "model": LLAMA70, "gpus": [0, 1, 2, 3],
                                "gpu_memory_utilization": 0.50})
    )
    assert mem["llm"]["max_model_len"] == 131072 and mem["llm"]["max_model_len_from"] == "model"
    assert len(problems) == 1 and "(unset: the model's own max_position_embeddings)" in problems[0]


def test_few_concurrent_sequences_warn(hub: Path) -> None:
    hv = host((1, 40), llm={"kind": "chat", "model": DICTA + "-AWQ", "gpus": [0], "gpu_memory_gib": 9,
                            "max_model_len": 8192})
    problems, warnings, mem = fit(hub, hv)
    assert problems == [] and mem["llm"]["max_concurrent_seqs"] < 4
    assert len(warnings) == 1 and "fewer than airgap_llm_min_concurrent_seqs 4" in warnings[0]
    hv["airgap_llm_min_concurrent_seqs"] = 1
    assert fit(hub, hv)[1] == []


def test_tensor_parallel_must_divide_the_heads(hub: Path) -> None:
    plan = plan_host("box-1", host((8, 80), ocr={"kind": "ocr", "model": "rednote-hilab/dots.ocr",
                                                 "gpus": [0, 1, 2, 3, 4, 5, 6, 7], "gpu_memory_utilization": 0.5}))
    models, _ = find_models(source_from_cache(hub), [plan])
    problems = [str(p) for p in check_memory([plan], models)]
    words = "tensor_parallel_size 8 (its number of GPUs) does not divide the 12 attention heads"
    assert any(words in p for p in problems)


# --- the pieces -------------------------------------------------------------------------------------


def test_header_reader_reads_only_the_header(hub: Path, tmp_path: Path) -> None:
    shard = next((hub / "models--meta-llama--Llama-3.3-70B-Instruct" / "snapshots").glob("*/model-00001-*"))
    assert shard.stat().st_size > 4 * GIB and shard.stat().st_blocks * 512 < 1024 * 1024  # a sparse file
    header = read_header(shard)
    assert header["model.embed_tokens.weight"] == {
        "dtype": "BF16", "shape": [128256, 8192], "data_offsets": [0, 128256 * 8192 * 2]
    }
    total = weights_size(shard.parent.glob("*.safetensors"))
    assert total.by_dtype == {"BF16": 141107412992} and total.files == 30
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", 64) + b"{")
    with pytest.raises(InputError, match="header cut short"):
        read_header(bad)
    (tmp_path / "pytorch_model.bin").write_bytes(b"x" * 1000)
    (tmp_path / "training_args.bin").write_bytes(b"x" * 10)
    assert weights_size([tmp_path / "pytorch_model.bin", tmp_path / "training_args.bin"]).total == 1000
    # beside safetensors, the pickles are not what the engine loads
    assert weights_size([tmp_path / "pytorch_model.bin", shard]).total == tensor_total(header)


def test_only_the_files_the_engine_loads_count(tmp_path: Path) -> None:
    snap = model_shapes.write_model(tmp_path / "hub", model_shapes.MODELS[DICTA])
    (snap / "original").mkdir()
    (snap / "original" / "consolidated.00.pth").write_bytes(b"x" * 4096)  # not read by the engine
    shards = sorted(snap.glob("model-*.safetensors"))
    (snap / "consolidated.safetensors").symlink_to(shards[0])  # the same weights again, outside the index
    files = model_weight_files(snap)
    assert [p.name for p in files if p.suffix == ".safetensors"] == [p.name for p in shards]
    assert weights_size(files).total == 14502338560


def tensor_total(header: dict[str, Any]) -> int:
    return sum(
        (v["data_offsets"][1] - v["data_offsets"][0]) for k, v in header.items() if k != "__metadata__"
    )


def test_shapes_of_the_other_families() -> None:
    whisper = model_shape(model_shapes.MODELS["ivrit-ai/whisper-large-v3"].config)
    assert (whisper.layers, whisper.kv_heads, whisper.head_dim, whisper.encoder_positions) == (32, 20, 64, 1500)
    assert whisper.max_position == 448
    dots = model_shape(model_shapes.MODELS["rednote-hilab/dots.ocr"].config)
    assert (dots.layers, dots.kv_heads, dots.head_dim, dots.vision) == (28, 2, 128, True)
    nested = model_shape({"model_type": "llava", "vision_config": {"hidden_size": 1024},
                          "text_config": {"num_hidden_layers": 40, "num_attention_heads": 32, "hidden_size": 5120,
                                          "num_key_value_heads": 8, "max_position_embeddings": 32768}})
    assert (nested.layers, nested.kv_heads, nested.head_dim, nested.vision) == (40, 8, 160, True)
    mla = model_shape({"model_type": "deepseek_v3", "num_hidden_layers": 61, "num_attention_heads": 128,
                       "hidden_size": 7168, "num_key_value_heads": 128, "kv_lora_rank": 512,
                       "qk_rope_head_dim": 64})
    assert kv_bytes_per_token(mla, EngineSettings(tensor_parallel=8)) == 61 * 576 * 2
    qwen = model_shape(model_shapes.MODELS["Qwen/Qwen2.5-32B-Instruct"].config)
    assert qwen.sliding_window is None  # use_sliding_window: false
    bert = model_shape({"model_type": "bert", "num_hidden_layers": 6, "num_attention_heads": 12, "hidden_size": 384})
    assert kv_bytes_per_token(bert, EngineSettings()) == 0


def test_kv_formula_tp_pp_and_fp8() -> None:
    llama = model_shape(model_shapes.MODELS[LLAMA70].config)
    assert kv_bytes_per_token(llama, EngineSettings()) == 2 * 80 * 8 * 128 * 2
    assert kv_bytes_per_token(llama, EngineSettings(tensor_parallel=16)) == 2 * 80 * 1 * 128 * 2
    assert kv_bytes_per_token(llama, EngineSettings(pipeline_parallel=2)) == 2 * 40 * 8 * 128 * 2
    assert kv_bytes_per_token(llama, EngineSettings(kv_cache_dtype="fp8_e4m3")) == 2 * 80 * 8 * 128


# --- the command line -------------------------------------------------------------------------------


def run_plan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["plan", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", GPU_INVENTORIES)
def test_shipped_inventory_fits_its_real_models(name: str, hub: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_plan(capsys, "-i", str(REPO / "inventories" / name), "--models-from", str(hub.parent))
    assert code == 0, out + err
    assert "memory per GPU" in out and "NO" not in out and "GPU map OK" in out


def test_json_has_a_memory_object_per_service(hub: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_plan(capsys, "-i", str(REPO / "inventories" / "h100-8x80g"), "--models-from", str(hub), "--json")
    result = json.loads(out)
    assert code == 0 and result["memory_check"].startswith("checked from the local cache")
    (h,) = result["hosts"].values()
    mem = {s["name"]: s["memory"] for s in h["services"] if s["gpus"]}  # the gateway runs on the CPU
    assert set(mem) == {"llm", "ocr", "embedding", "whisper"}
    assert set(mem["llm"]) >= {"weights_gib", "kv_per_seq_gib", "overhead_gib", "needed_gib", "share_gib", "fits",
                               "max_concurrent_seqs"}


def test_without_model_files_the_check_is_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_plan(capsys, "-i", str(REPO / "inventories" / "a100-1x40g"))
    assert code == 0 and "memory check skipped" in out
    code, out, _ = run_plan(capsys, "-i", str(REPO / "inventories" / "a100-1x40g"), "--json")
    assert json.loads(out)["memory_check"].startswith("memory check skipped")


def test_memory_failure_in_failures_and_exit_1(
    hub: Path, make_inventory: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    group = yaml.safe_load((REPO / "inventories" / "a100-1x40g" / "group_vars" / "airgap_llm.yml").read_text())
    group["airgap_llm_services"]["embedding"]["model"] = "Qwen/Qwen3-Embedding-4B"
    inv = make_inventory(group, {"a100-test-01": {}})
    code, out, _ = run_plan(capsys, "-i", str(inv), "--models-from", str(hub), "--json")
    result = json.loads(out)
    assert code == 1 and [(f["service"], f["rule"], f["gpu"]) for f in result["failures"]] == [
        ("embedding", "memory-fit", 0)
    ]


def test_missing_model_is_named(
    tmp_path: Path, make_inventory: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    partial = model_shapes.write_models(tmp_path / "partial" / "hub", ["Qwen/Qwen3-Embedding-0.6B"])
    inv = make_inventory(
        yaml.safe_load((REPO / "inventories" / "a100-1x40g" / "group_vars" / "airgap_llm.yml").read_text()),
        {"a100-test-01": {}},
    )
    code, out, _ = run_plan(capsys, "-i", str(inv), "--models-from", str(partial))
    assert code == 1
    named = "host a100-test-01, service llm: model dicta-il/dictalm2.0-instruct-AWQ revision main: not in the local "
    assert named in out.replace("\n", " ")
    assert "[model-files]" in out


def test_bundle_as_the_source(hub: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "bundle"
    model_shapes.write_models(bundle / "models" / "hub", [LLAMA70])
    (bundle / "manifest.json").write_text(json.dumps({"format": 1, "artifacts": []}))
    code, out, err = run_plan(capsys, "-i", str(REPO / "inventories" / "h100nvl-2node"), "--bundle", str(bundle))
    assert code == 0, out + err
    assert "memory fit checked from the bundle" in out


# --- failed GPUs and --suggest ----------------------------------------------------------------------


def test_service_on_a_failed_gpu_is_refused() -> None:
    hv = host((8, 80), whisper={"kind": "transcription", "model": "ivrit-ai/whisper-large-v3", "gpus": [7],
                                "gpu_memory_utilization": 0.9})
    hv["airgap_llm_gpu"]["failed"] = [7]
    (problem,) = plan_host("box-1", hv).problems
    assert str(problem).startswith("host box-1, service whisper, GPU 7: is placed on GPU 7, which airgap_llm_gpu.fail")
    assert problem.rule == "gpu-failed"
    hv["airgap_llm_gpu"]["failed"] = [8]
    assert [p.rule for p in plan_host("box-1", hv).problems] == ["gpu-spec"]


def suggest(capsys: pytest.CaptureFixture[str], inv: Path, hub: Path) -> tuple[int, dict[str, Any], str]:
    code, out, err = run_plan(capsys, "-i", str(inv), "--models-from", str(hub), "--suggest", "--json")
    return code, json.loads(out), err


@pytest.mark.parametrize("name", GPU_INVENTORIES)
def test_suggested_map_passes_plan(
    name: str, hub: Path, make_inventory: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, result, _ = suggest(capsys, REPO / "inventories" / name, hub)
    assert code == 0, result["failures"]
    group = yaml.safe_load((REPO / "inventories" / name / "group_vars" / "airgap_llm.yml").read_text())
    hosts = yaml.safe_load((REPO / "inventories" / name / "hosts.yml").read_text())
    first = next(iter(result["hosts"].values()))
    group["airgap_llm_services"] = first["airgap_llm_services"]
    # The hosts keep their own variables: a multi-node service needs each node's address (ansible_host).
    by_host = {h: dict(v or {}) for g in hosts.values() for h, v in (g.get("hosts") or {}).items()}
    code, out, err = run_plan(capsys, "-i", str(make_inventory(group, by_host)),
                              "--models-from", str(hub))
    assert code == 0, out + err


def test_suggest_moves_services_off_a_failed_gpu(
    hub: Path, make_inventory: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    group = yaml.safe_load((REPO / "inventories" / "h100-8x80g" / "group_vars" / "airgap_llm.yml").read_text())
    group["airgap_llm_gpu"]["failed"] = [2]
    inv = make_inventory(group, {"h100-hgx-01": {}})
    code, out, _ = run_plan(capsys, "-i", str(inv))
    assert code == 1 and "service llm, GPU 2: is placed on GPU 2" in out
    code, result, _ = suggest(capsys, inv, hub)
    assert code == 0, result["failures"]
    services = result["hosts"]["h100-hgx-01"]["airgap_llm_services"]
    assert all(2 not in s.get("gpus", []) for s in services.values())
    assert services["llm"]["tensor_parallel_size"] == 4 and len(services["llm"]["gpus"]) == 4


def test_suggest_moves_only_what_sits_on_the_failed_gpu(
    hub: Path, make_inventory: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    group = yaml.safe_load((REPO / "inventories" / "h100-8x80g" / "group_vars" / "airgap_llm.yml").read_text())
    group["airgap_llm_gpu"]["failed"] = [5]
    inv = make_inventory(group, {"h100-hgx-01": {}})
    code, result, _ = suggest(capsys, inv, hub)
    assert code == 0, result["failures"]
    services = result["hosts"]["h100-hgx-01"]["airgap_llm_services"]
    for name in ("llm", "embedding", "whisper"):
        assert services[name] == group["airgap_llm_services"][name]
    assert services["ocr"]["gpus"] == [4] and "tensor_parallel_size" not in services["ocr"]
    code, out, _ = run_plan(capsys, "-i", str(inv), "--models-from", str(hub), "--suggest")
    assert code == 0
    assert "# moved or resized (what an install restarts): ocr GPUs 4,5 at 0.9 -> 4 at 0.9" in out
    pasted = yaml.safe_load(out.split("\n\n")[0])  # the YAML block is pasteable as printed
    assert pasted["airgap_llm_services"] == services


def test_suggest_says_why_nothing_fits(
    hub: Path, make_inventory: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    inv = make_inventory(host((2, 40), llm={"kind": "chat", "model": LLAMA70, "gpus": [0, 1],
                                            "gpu_memory_utilization": 0.9}), {"box-1": {}})
    code, result, _ = suggest(capsys, inv, hub)
    assert code == 1
    (failure,) = result["failures"]
    assert (failure["host"], failure["service"], failure["rule"]) == ("box-1", "llm", "memory-fit")
    assert failure["text"].startswith("host box-1, service llm: meta-llama/Llama-3.3-70B-Instruct needs")
    assert "even on 2 GPU(s)" in failure["text"]


def test_suggest_packs_small_services_and_gives_big_ones_tensor_parallel(hub: Path) -> None:
    hv = host((8, 80),
              llm={"kind": "chat", "model": LLAMA70, "gpus": [0], "gpu_memory_utilization": 0.9,
                   "max_model_len": 8192},
              embed={"kind": "embedding", "model": "Qwen/Qwen3-Embedding-0.6B", "gpus": [1],
                     "gpu_memory_utilization": 0.5, "max_model_len": 8192},
              whisper={"kind": "transcription", "model": "ivrit-ai/whisper-large-v3", "gpus": [2],
                       "gpu_memory_utilization": 0.5})
    plan = plan_host("box-1", hv)
    models, _ = find_models(source_from_cache(hub), [plan])
    s = suggest_host(plan, models)
    assert s.ok
    assert s.placements["llm"].tensor_parallel == 2 and s.placements["llm"].gpus == (0, 1)
    assert s.placements["embed"].gpus == s.placements["whisper"].gpus == (2,)
    assert s.placements["embed"].fraction + s.placements["whisper"].fraction <= 0.90
    # four sequences of 32k do not fit two GPUs' KV caches next to 65.7 GiB of weights each: four GPUs then
    hv["airgap_llm_services"]["llm"]["max_model_len"] = 32768
    assert suggest_host(plan_host("box-1", hv), models).placements["llm"].tensor_parallel == 4


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = str(REPO / "inventories" / "a100-1x40g")
    with pytest.raises(SystemExit) as exc:
        main(["plan", "-i", inv, "--models-from", str(tmp_path), "--bundle", str(tmp_path)])
    assert exc.value.code == 2
    code, _, err = run_plan(capsys, "-i", inv, "--models-from", str(tmp_path / "nope"))
    assert code == 2 and "no such directory" in err
    code, _, err = run_plan(capsys, "-i", inv, "--bundle", str(tmp_path))
    assert code == 2 and "no manifest.json" in err
    code, _, err = run_plan(capsys, "-i", inv, "--suggest")
    assert code == 2 and "plan --suggest needs the models' files" in err
