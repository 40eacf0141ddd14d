"""``airgap-llm plan``: exit codes and messages, on the shipped inventories and on broken ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from airgap_llm.cli import main

from .conftest import REPO

INVENTORIES = sorted(p.name for p in (REPO / "inventories").iterdir() if (p / "hosts.yml").exists())


def run_plan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["plan", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_all_five_profiles_are_shipped() -> None:
    assert INVENTORIES == ["a100-1x40g", "a100-8x80g", "h100-8x80g", "h100nvl-2node", "local-cpu"]


@pytest.mark.parametrize("name", INVENTORIES)
def test_shipped_inventory_plans_cleanly(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_plan(capsys, "-i", str(REPO / "inventories" / name))
    assert code == 0, out + err
    assert "GPU map OK" in out


def test_seed_allocations(capsys: pytest.CaptureFixture[str]) -> None:
    def gpus(name: str) -> dict[str, Any]:
        code, out, _ = run_plan(capsys, "-i", str(REPO / "inventories" / name), "--json")
        assert code == 0
        return json.loads(out)["hosts"]

    (box,) = gpus("a100-1x40g").values()
    assert [(s["name"], s["gib"]) for s in box["gpus"][0]["services"]] == [
        ("ocr", 10.0),
        ("whisper", 7.0),
        ("embedding", 7.0),
        ("llm", 14.0),
    ]
    (hgx,) = gpus("a100-8x80g").values()
    assert {s["name"]: s["gpus"] for s in hgx["services"]} == {
        "whisper": [0],
        "embedding": [1],
        "llm": [2, 3],
        "ocr": [4],
        "gateway": [],  # every shipped inventory: the gateway on 8080 and the web UI on 3000, on the CPU
        "webui": [],
    }
    assert [g["index"] for g in hgx["gpus"] if not g["services"]] == [5, 6, 7]
    (h100,) = gpus("h100-8x80g").values()
    assert {s["name"]: (s["gpus"], s["tensor_parallel_size"]) for s in h100["services"]} == {
        "llm": ([0, 1, 2, 3], 4),
        "ocr": ([4, 5], 2),
        "embedding": ([6], 1),
        "whisper": ([7], 1),
        "gateway": ([], 1),
        "webui": ([], 1),
    }
    nvl = gpus("h100nvl-2node")
    assert len(nvl) == 2 and all(h["services"][0]["nodes"] == 2 for h in nvl.values())
    (cpu,) = gpus("local-cpu").values()
    assert cpu["engine"] == "vllm-cpu" and cpu["gpus"] == []
    assert {s["name"]: s["port"] for s in cpu["services"]} == {"embed": 8001, "chat": 8003, "gateway": 8080,
                                                              "webui": 3000}


def test_table_shows_gib_fraction_and_headroom(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_plan(capsys, "-i", str(REPO / "inventories" / "a100-8x80g"))
    assert code == 0
    assert "headroom" in out and "spare" in out and "72.0" in out and "0.90" in out


def load_group(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "inventories" / name / "group_vars" / "airgap_llm.yml").read_text())


BAD_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "out-of-range GPU",
        lambda g: g["airgap_llm_services"]["whisper"].update(gpus=[1]),
        "service whisper, GPU 1: GPU index 1 is out of range",
    ),
    (
        "over-committed GPU",
        lambda g: g["airgap_llm_services"]["llm"].update(gpu_memory_utilization=0.40),
        "GPU 0: over-committed",
    ),
    (
        "duplicate port",
        lambda g: g["airgap_llm_services"]["ocr"].update(port=8001),
        "service ocr: port 8001 is also used by embedding",
    ),
    (
        "tensor parallel",
        lambda g: g["airgap_llm_services"]["llm"].update(tensor_parallel_size=2),
        "service llm: tensor_parallel_size 2 must equal the number of GPUs on the host (1: [0])",
    ),
    (
        "misspelt key",
        lambda g: g["airgap_llm_services"]["llm"].update(gpu_memory_utilisation=0.1),
        "unknown key 'gpu_memory_utilisation' (did you mean 'gpu_memory_utilization'?)",
    ),
]


@pytest.mark.parametrize(("what", "change", "message"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_invalid_map_exits_1_and_names_the_problem(
    what: str,
    change: Callable[[dict[str, Any]], None],
    message: str,
    make_inventory: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    group = load_group("a100-1x40g")
    change(group)
    inv = make_inventory(group, {"a100-test-01": {}})
    code, out, err = run_plan(capsys, "-i", str(inv))
    assert code == 1
    assert "host a100-test-01" in out and message in out
    assert "nothing was changed" in out
    code, out, _ = run_plan(capsys, "-i", str(inv), "--json")
    result = json.loads(out)
    assert code == 1 and result["ok"] is False
    assert any(message in f["text"] for f in result["failures"])


def test_gpu_field_on_cpu_service(make_inventory: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    group = load_group("local-cpu")
    group["airgap_llm_services"]["chat"]["gpu_memory_utilization"] = 0.5
    inv = make_inventory(group, {"demo-1": {}})
    code, out, _ = run_plan(capsys, "-i", str(inv))
    assert code == 1
    assert "service chat: a CPU service (gpus: []) takes no GPU field, but sets gpu_memory_utilization" in out


def test_host_vars_override_group_map(make_inventory: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    group = load_group("a100-1x40g")
    inv = make_inventory(group, {"good": {}, "bad": {}})
    (inv / "host_vars").mkdir()
    override = load_group("a100-1x40g")["airgap_llm_services"]
    override["llm"]["gpu_memory_utilization"] = 0.40
    (inv / "host_vars" / "bad.yml").write_text(yaml.safe_dump({"airgap_llm_services": override}))
    code, out, _ = run_plan(capsys, "-i", str(inv), "--json")
    result = json.loads(out)
    assert code == 1
    assert result["hosts"]["good"]["ok"] is True
    assert {f["host"] for f in result["failures"]} == {"bad"}


def test_nonexistent_inventory_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_plan(capsys, "-i", str(tmp_path / "nope"))
    assert code == 2
    assert "no such file or directory" in err


def test_broken_yaml_exits_1_naming_the_file(
    make_inventory: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    inv = make_inventory(load_group("local-cpu"), {"demo-1": {}})
    (inv / "group_vars" / "airgap_llm.yml").write_text("airgap_llm_services:\n  chat: [unclosed\n")
    code, _, err = run_plan(capsys, "-i", str(inv))
    assert code == 1
    assert "airgap_llm.yml" in err


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("airgap_llm_services:\n  chat:\n    kind: chat\n   port: 8003\n",
         "line 4, column 4: invalid YAML: expected <block end>, but found '<block mapping start>' (check this "
         "line's indentation against the lines above it)"),
        ("airgap_llm_services:\n\tchat: {}\n", "(YAML indents with spaces, never tabs)"),
        ("airgap_llm_services: {chat: {port: 8003}\n", "(a bracket or brace opened above is never closed)"),
        ("airgap_llm_target_os: debian: 12\n", "mapping values are not allowed here (a value holding ': ' needs "
         "quotes, or the indentation is off)"),
    ],
)
def test_broken_yaml_names_line_and_a_plain_hint(
    text: str, words: str, make_inventory: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    inv = make_inventory(load_group("local-cpu"), {"demo-1": {}})
    (inv / "group_vars" / "airgap_llm.yml").write_text(text)
    code, _, err = run_plan(capsys, "-i", str(inv))
    assert code == 1
    assert f"{inv / 'group_vars' / 'airgap_llm.yml'}: " in " ".join(err.split())
    assert words in " ".join(err.split())


def test_console_script_usage_error_exits_2() -> None:
    exe = Path(sys.executable).parent / "airgap-llm"
    proc = subprocess.run([str(exe), "plan"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "--inventory" in proc.stderr


def test_console_script_plan(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "airgap-llm"
    proc = subprocess.run(
        [str(exe), "plan", "-i", str(REPO / "inventories" / "local-cpu"), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ok"] is True


def test_credentials_directory_is_not_read_as_inventory(make_inventory: Callable[..., Path]) -> None:
    """The generated API key lives in the inventory's credentials/: it must never become a "host"."""
    inv = make_inventory(load_group("local-cpu"), {"demo-1": {}})
    (inv / "credentials").mkdir()
    secret = "Zx9" + "q" * 45
    (inv / "credentials" / "airgap_llm_api_key").write_text(secret)
    exe = Path(sys.executable).parent / "airgap-llm"
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_CONFIG"}
    proc = subprocess.run([str(exe), "plan", "-i", str(inv), "--json"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert list(json.loads(proc.stdout)["hosts"]) == ["demo-1"]
    assert secret not in proc.stdout + proc.stderr
