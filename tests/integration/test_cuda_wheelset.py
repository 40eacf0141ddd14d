"""The CUDA wheel set of ``vllm[audio]==0.32.0`` for CPython 3.12 (Ubuntu 24.04's glibc), resolved
against the real package index as ``bundle build`` asks pip for it (no GPU needed; a dry run, about
a minute), and FlashInfer's companions at vLLM's ``flashinfer-python`` version: the build adds them
when the index has them, and says which it lacks otherwise."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from airgap_llm.bundle.spec import WheelSetSpec
from airgap_llm.bundle.wheels import companion_requirements, fetch_companions, pip_command, wheel_pin

pytestmark = pytest.mark.slow

SPEC = WheelSetSpec("3.12", (2, 39), ("vllm[audio]==0.32.0",), (), ("gpu-box",))


def test_cuda_set_pins_flashinfer_and_its_companions_are_fetched_or_named(tmp_path: Path) -> None:
    cmd = pip_command(SPEC, tmp_path / "unused", ["--isolated"])
    at = cmd.index("download")
    report = tmp_path / "report.json"
    resolve = [*cmd[:at], "install", "--dry-run", "--ignore-installed", "--target", str(tmp_path / "t"),
               "--report", str(report), "--quiet", *cmd[at + 3:]]  # fmt: skip  (drops "download --dest DIR")
    proc = subprocess.run(resolve, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    installed = json.loads(report.read_text())["install"]
    pins = {str(i["metadata"]["name"]).lower(): str(i["metadata"]["version"]) for i in installed}
    assert pins["vllm"] == "0.32.0" and pins["torch"] == "2.13.0"
    assert len(pins) > 150, f"{len(pins)} wheels"
    flashinfer = pins["flashinfer-python"]
    assert flashinfer == "0.7.0.post1", "vLLM 0.32.0 pins flashinfer-python==0.7.0.post1"

    names = [f"{n.replace('-', '_')}-{v}-py3-none-any.whl" for n, v in pins.items()]
    wanted = companion_requirements(names)
    assert wanted == [f"flashinfer-cubin=={flashinfer}", f"flashinfer-jit-cache=={flashinfer}"]
    dest = tmp_path / "companions"
    dest.mkdir()
    missing = fetch_companions(SPEC, dest, ["--isolated"], names)
    got = {"==".join(wheel_pin(p.name)) for p in dest.glob("*.whl")}
    assert sorted(got | set(missing)) == sorted(wanted), (got, missing)  # each one fetched, or named missing
    # What the index held when this was written (2026-11-30): flashinfer-cubin up to 0.6.13 and no
    # flashinfer-jit-cache on PyPI, so neither companion of 0.7.0.post1 can travel; the build says so.
    print(f"flashinfer-python {flashinfer}: fetched {sorted(got)}, not on the index {missing}")
