"""Structure of the tiny-model Hugging Face caches built by tests/fixtures/tiny_models.py.

Cheap when the converted models are cached: only the cache tree is rewritten (symlinks and small
blob copies) into a temp dir. The conversion itself (tool venv + GGUF -> safetensors) is the job of
``make demo`` / the e2e setup; when its output is absent the test skips and says so.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

from airgap_llm.bundle.layout import model_folder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
sys.path.insert(0, str(FIXTURES))

import tiny_models  # noqa: E402

SMOLLM2_DIR = tiny_models.cache_dir() / tiny_models.SMOLLM2_PACKAGE / tiny_models.SMOLLM2_VERSION / "model"


def safetensors_tensor_names(path: Path) -> list[str]:
    """Tensor names listed in a safetensors file's JSON header."""
    with path.open("rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(header_len))
    return sorted(name for name in header if name != "__metadata__")


def check_snapshot(hub_root: Path, repo_id: str, snapshot: Path) -> None:
    repo_dir = hub_root / model_folder(repo_id)
    commit = (repo_dir / "refs" / "main").read_text().strip()
    assert (repo_dir / "snapshots" / commit).resolve() == snapshot.resolve()
    assert snapshot.is_dir()
    for link in snapshot.rglob("*"):
        if link.is_symlink():
            assert link.resolve().parent == (repo_dir / "blobs").resolve(), link
            assert link.resolve().is_file(), f"dangling snapshot link {link}"


# ------------------------------------------------------------------ pure helpers, always run


def test_requirements_key_changes_with_pins() -> None:
    a = tiny_models.requirements_key(["torch==2.13.0", "transformers==5.23.0"])
    b = tiny_models.requirements_key(["torch==2.13.0", "transformers==5.24.0"])
    assert a != b
    assert a == tiny_models.requirements_key(["torch==2.13.0", "transformers==5.23.0"])


def test_convert_requirements_are_pinned_and_cpu_torch() -> None:
    for req in tiny_models.CONVERT_REQUIREMENTS:
        assert "==" in req, f"unpinned tool requirement {req}"
    assert "torch==2.13.0" in tiny_models.CONVERT_REQUIREMENTS


def test_model_dir_complete(tmp_path: Path) -> None:
    assert not tiny_models.model_dir_complete(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    (tmp_path / "model.safetensors").write_bytes(b"x")
    assert not tiny_models.model_dir_complete(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    assert tiny_models.model_dir_complete(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert not tiny_models.model_dir_complete(tmp_path)


def test_demo_services_match_the_local_cpu_inventory() -> None:
    assert tiny_models.DEMO_SERVICES == {
        "embed": ("sentence-transformers/all-MiniLM-L6-v2", "main"),
        "chat": ("HuggingFaceTB/SmolLM2-135M-Instruct", "main"),
    }


def test_safetensors_header_reader(tmp_path: Path) -> None:
    header = json.dumps({"__metadata__": {"format": "pt"}, "w": {"dtype": "F32", "shape": [1],
                                                                 "data_offsets": [0, 4]}}).encode()
    path = tmp_path / "t.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0\0\0\0")
    assert safetensors_tensor_names(path) == ["w"]


# ------------------------------------------------------------------ the cached SmolLM2 fixture


@pytest.fixture(scope="module")
def smollm2_snapshot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if not tiny_models.model_dir_complete(SMOLLM2_DIR):
        pytest.skip(
            f"converted SmolLM2 not cached at {SMOLLM2_DIR}; build it with "
            "`python tests/fixtures/tiny_models.py HUB_ROOT --only smollm2` (make demo / e2e setup does)"
        )
    hub = tmp_path_factory.mktemp("hf") / "hub"
    return hub, tiny_models.smollm2_cache(hub)


def test_smollm2_cache_layout(smollm2_snapshot: tuple[Path, Path]) -> None:
    hub, snapshot = smollm2_snapshot
    check_snapshot(hub, tiny_models.SMOLLM2_REPO, snapshot)


def test_smollm2_config(smollm2_snapshot: tuple[Path, Path]) -> None:
    config = json.loads((smollm2_snapshot[1] / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["hidden_size"] == 576
    assert config["num_hidden_layers"] == 30
    assert config["vocab_size"] == 49152
    assert "quantization_config" not in config, "a GGUF quantization config would make vLLM expect GGUF"


def test_smollm2_weights(smollm2_snapshot: tuple[Path, Path]) -> None:
    names = safetensors_tensor_names(smollm2_snapshot[1] / "model.safetensors")
    assert "model.embed_tokens.weight" in names
    assert "model.layers.29.self_attn.q_proj.weight" in names
    assert len(names) == 272


def test_smollm2_tokenizer_has_chat_template(smollm2_snapshot: tuple[Path, Path]) -> None:
    snapshot = smollm2_snapshot[1]
    template = (snapshot / "chat_template.jinja").read_text()
    assert "<|im_start|>" in template and "add_generation_prompt" in template
    tokenizer = json.loads((snapshot / "tokenizer.json").read_text())
    added = {tok["content"] for tok in tokenizer["added_tokens"]}
    assert {"<|im_start|>", "<|im_end|>"} <= added
    tok_config = json.loads((snapshot / "tokenizer_config.json").read_text())
    assert tok_config["eos_token"] == "<|im_end|>"


def test_all_models_cache_names_both_services(smollm2_snapshot: tuple[Path, Path]) -> None:
    hub = smollm2_snapshot[0]
    snapshots = tiny_models.all_models_cache(hub)
    assert set(snapshots) == {"embed", "chat"}
    for service, (repo_id, _revision) in tiny_models.DEMO_SERVICES.items():
        check_snapshot(hub, repo_id, snapshots[service])
        json.loads((snapshots[service] / "config.json").read_text())


# ------------------------------------------------------------------ the random-weight fixtures


def _cached_or_skip(model_dir: Path, option: str) -> Path:
    if not tiny_models.model_dir_complete(model_dir):
        pytest.skip(
            f"{option} fixture not cached at {model_dir}; build it with "
            f"`python tests/fixtures/tiny_models.py HUB_ROOT --only {option}`"
        )
    return model_dir


def test_whisper_cache_structure(tmp_path: Path) -> None:
    _cached_or_skip(tiny_models.cache_dir() / "whisper-tiny-random" / "model", "whisper")
    hub = tmp_path / "hub"
    snapshot = tiny_models.whisper_tiny_cache(hub)
    check_snapshot(hub, tiny_models.WHISPER_REPO, snapshot)
    config = json.loads((snapshot / "config.json").read_text())
    assert config["architectures"] == ["WhisperForConditionalGeneration"]
    assert config["num_mel_bins"] == 80
    assert config["vocab_size"] == 51865
    features = json.loads((snapshot / "preprocessor_config.json").read_text())
    assert features["feature_size"] == 80 and features["sampling_rate"] == 16000
    vocab = json.loads((snapshot / "tokenizer.json").read_text())
    added = {tok["content"]: tok["id"] for tok in vocab["added_tokens"]}
    assert added["<|startoftranscript|>"] == 50258
    assert added["<|he|>"] == 50279
    assert added["<|notimestamps|>"] == 50363
    assert "model.encoder.conv1.weight" in safetensors_tensor_names(snapshot / "model.safetensors")


def test_vlm_cache_structure(tmp_path: Path) -> None:
    _cached_or_skip(tiny_models.cache_dir() / "idefics3-tiny-random" / "model", "vlm")
    hub = tmp_path / "hub"
    snapshot = tiny_models.vlm_tiny_cache(hub)
    check_snapshot(hub, tiny_models.VLM_REPO, snapshot)
    config = json.loads((snapshot / "config.json").read_text())
    assert config["architectures"] == ["Idefics3ForConditionalGeneration"]
    vocab = json.loads((snapshot / "tokenizer.json").read_text())
    added = {tok["content"]: tok["id"] for tok in vocab["added_tokens"]}
    assert config["image_token_id"] == added["<image>"]
    assert "<image>" in (snapshot / "chat_template.jinja").read_text()
    processor = json.loads((snapshot / "processor_config.json").read_text())
    assert processor["image_seq_len"] == 4
    names = safetensors_tensor_names(snapshot / "model.safetensors")
    assert any(name.startswith("model.vision_model.") for name in names)
