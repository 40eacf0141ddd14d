"""bundle.model_files: which files of a model repository the bundle carries."""

from __future__ import annotations

import pytest

from airgap_llm.bundle.model_files import FileFilter, as_allow_patterns, choose, code_repos, default_choice
from airgap_llm.gpumap import plan_host

LLAMA = [
    "config.json", "generation_config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
    "model.safetensors.index.json", "original/consolidated.00.pth", "original/params.json", "original/tokenizer.model",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "README.md", "LICENSE", ".gitattributes",
    "USE_POLICY.md",
]  # fmt: skip


def test_default_takes_safetensors_configs_and_tokenizer_never_original() -> None:
    assert default_choice(LLAMA, remote_code=False) == {
        "config.json", "generation_config.json", "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors", "model.safetensors.index.json", "tokenizer.json",
        "tokenizer_config.json", "special_tokens_map.json",
    }  # fmt: skip


def test_duplicate_formats_are_left_out_and_bin_only_without_safetensors() -> None:
    both = ["config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack",
            "onnx/model.onnx", "model.gguf", "rust_model.ot", "openvino/openvino_model.bin", "vocab.txt"]  # fmt: skip
    assert default_choice(both, False) == {"config.json", "model.safetensors", "vocab.txt"}
    only_bin = ["config.json", "pytorch_model-00001-of-00002.bin", "pytorch_model.bin.index.json", "model.pth"]
    assert default_choice(only_bin, False) == {
        "config.json", "pytorch_model-00001-of-00002.bin", "pytorch_model.bin.index.json"
    }  # fmt: skip


def test_remote_code_py_files_and_chat_templates() -> None:
    files = ["config.json", "modeling_dots.py", "configuration_dots.py", "chat_template.jinja", "model.safetensors"]
    assert "modeling_dots.py" not in default_choice(files, False)
    assert {"modeling_dots.py", "configuration_dots.py", "chat_template.jinja"} <= default_choice(files, True)


def test_allow_replaces_the_default_ignore_removes_and_services_add_up() -> None:
    allow = FileFilter(allow=("original/*",))
    originals = {"original/consolidated.00.pth", "original/params.json", "original/tokenizer.model"}
    assert choose(LLAMA, [allow]) == originals
    ignore = FileFilter(ignore=("generation_config.json", "*.index.json"))
    chosen = choose(LLAMA, [ignore])
    assert "generation_config.json" not in chosen and "model.safetensors.index.json" not in chosen
    assert choose(LLAMA, [ignore, FileFilter()]) == default_choice(LLAMA, False)


def test_allow_patterns_match_exactly_the_chosen_paths() -> None:
    import fnmatch

    names = ["a[1].json", "b*.json", "c?.txt", "d.json"]
    patterns = as_allow_patterns(names[:3])
    assert [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)] == names[:3]


def test_auto_map_names_other_repositories() -> None:
    config = {"auto_map": {"AutoConfig": "configuration_x.XConfig",
                           "AutoModel": "org/code-repo--modeling_x.XModel",
                           "AutoTokenizer": ["other/tok--tokenization_x.XTokenizer", None]}}  # fmt: skip
    assert code_repos(config) == ["org/code-repo", "other/tok"]
    assert code_repos({}) == [] and code_repos({"auto_map": "x"}) == []


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("*.bin", "allow_patterns must be a list of glob patterns"),
        (["*.json", ""], "allow_patterns[1] must be a non-empty glob pattern string, got ''"),
        ([3], "allow_patterns[0] must be a non-empty glob pattern string, got 3"),
    ],
)
def test_bad_patterns_are_plan_problems_naming_the_service(value: object, words: str) -> None:
    svc = {"kind": "embedding", "model": "o/m", "port": 8001, "gpus": [], "allow_patterns": value}
    plan = plan_host("box", {"airgap_llm_services": {"emb": svc}})
    texts = [str(p) for p in plan.problems]
    assert any(words in t and "emb" in t for t in texts), texts


def test_patterns_reach_the_plan_and_apps_take_none() -> None:
    svc = {"kind": "embedding", "model": "o/m", "port": 8001, "gpus": [], "ignore_patterns": ["*.md"]}
    plan = plan_host("box", {"airgap_llm_services": {"emb": svc}})
    assert plan.problems == [] and plan.services[0].ignore_patterns == ("*.md",)
    app = {"kind": "app", "port": 3000, "command": ["x"], "allow_patterns": ["*"]}
    plan = plan_host("box", {"airgap_llm_services": {"web": app}})
    assert any("allow_patterns is for services with a model" in str(p) for p in plan.problems)
