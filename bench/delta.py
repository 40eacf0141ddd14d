#!/usr/bin/env python3
"""What a delta bundle saves on a revision-only change of one model, and what ``bundle patch`` costs on
the far side against copying the full bundle.

In a temporary directory: a model (``--shards`` safetensors files of random content, ``--gb`` in all,
and a config.json) in a local Hugging Face cache at revision ``main``; bundle A built from it; then a new
revision of the model (config.json changed, a generation_config.json added, the weights unchanged), the
bundle B built directly from it and the delta from A to B (``--since A/manifest.json``), all with
the real ``bundle build`` code (models part, ``--models-from``). Printed:

- the bytes the delta carries against the full bundle B (and the delta directory on disk);
- the far side, best of ``--repeat`` runs: ``cp -a B`` (the full bundle copied in; as fast as it gets
  without verification), ``cp -a B`` then ``bundle verify``, ``bundle patch A DELTA`` with hard links
  (one file system: the usual case), and ``bundle patch`` forced to copy (as across file systems).
  ``bundle patch`` includes its verification of the new bundle (a full re-hash). The data stays in
  the page cache (just written); each run starts after ``sync``.

    python bench/delta.py [--gb 1] [--shards 4] [--repeat 3] [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from airgap_llm.bundle import layout  # noqa: E402
from airgap_llm.bundle.build import build_bundle  # noqa: E402
from airgap_llm.bundle.context import BuildOptions  # noqa: E402
from airgap_llm.bundle.hashing import default_workers  # noqa: E402
from airgap_llm.bundle.patch import patch_bundle  # noqa: E402
from airgap_llm.bundle.verify import verify_bundle  # noqa: E402
from airgap_llm.tinymodels.hf_cache import write_hf_cache  # noqa: E402

REPO_ID = "sentence-transformers/all-MiniLM-L6-v2"
INVENTORY = f"""\
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
        model: {REPO_ID}
        revision: main
        port: 8001
        gpus: []
"""
BLOCK = 64 << 20


def write_random(path: Path, size: int, seed: int) -> None:
    block = bytearray(os.urandom(min(BLOCK, size)))
    with path.open("wb") as fh:
        left = size
        while left:
            block[:8] = (seed * 1_000_003 + left).to_bytes(8, "little")  # no two blocks alike
            n = min(left, len(block))
            fh.write(memoryview(block)[:n])
            left -= n


def revision(src: Path, hub: Path, config: dict[str, object], extra: dict[str, str]) -> None:
    """The model in ``src`` with this config.json (and extra small files) as ``main`` in the cache."""
    (src / "config.json").write_text(json.dumps(config))
    for name, text in extra.items():
        (src / name).write_text(text)
    write_hf_cache(src, hub, REPO_ID, revision="main")


def build(inventory: Path, out: Path, cache: Path, since: Path | None = None) -> float:
    start = time.perf_counter()
    build_bundle(BuildOptions(inventory=inventory, out=out, models_from=cache, only=("models",), since=since))
    return time.perf_counter() - start


def best_of(repeat: int, fn: Callable[[], None], cleanup: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        cleanup()
        os.sync()  # no writeback of the previous run during this one
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    cleanup()
    return min(times)


@contextmanager
def copies_only() -> Iterator[None]:
    """``bundle patch`` as across file systems: every hard link refused, so every file is copied."""
    real = layout.link_atomic
    layout.link_atomic = lambda src, dst: False
    try:
        yield
    finally:
        layout.link_atomic = real


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=1.0, help="model weights in GB (default 1)")
    parser.add_argument("--shards", type=int, default=4, help="safetensors files (default 4)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per far-side measurement, best kept (default 3)")
    parser.add_argument("--dir", type=Path, default=None, help="where to create the temporary directory")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="airgap-llm-bench-delta-", dir=args.dir))
    try:
        inventory = tmp / "inventory.yml"
        inventory.write_text(INVENTORY)
        src, cache = tmp / "model", tmp / "hf"
        src.mkdir()
        per_shard = int(args.gb * 1e9) // args.shards
        for i in range(1, args.shards + 1):
            write_random(src / f"model-{i:05d}-of-{args.shards:05d}.safetensors", per_shard, i)
        a, b, delta, new = tmp / "a", tmp / "b", tmp / "delta", tmp / "far-side"
        revision(src, cache / "hub", {"hidden_size": 384, "torch_dtype": "float32"}, {})
        t_a = build(inventory, a, cache)
        revision(src, cache / "hub", {"hidden_size": 384, "torch_dtype": "bfloat16"}, {"generation_config.json": "{}"})
        t_b = build(inventory, b, cache)
        t_delta = build(inventory, delta, cache, since=a / "manifest.json")
        info = json.loads((delta / "delta.json").read_text())

        def remove_new() -> None:
            shutil.rmtree(new, ignore_errors=True)
            shutil.rmtree(layout.PARTIAL_SUFFIX.join([str(new), ""]), ignore_errors=True)

        def cp() -> None:
            subprocess.run(["cp", "-a", str(b), str(new)], check=True)

        def cp_verify() -> None:
            cp()
            assert verify_bundle(new).ok

        def patch() -> None:
            report = patch_bundle(a, delta, new)
            assert report.ok and report.copied == 0, report

        def patch_copying() -> None:
            with copies_only():
                report = patch_bundle(a, delta, new)
            assert report.ok and report.linked == 0, report

        far = {
            "cp -a B (the full bundle)": best_of(args.repeat, cp, remove_new),
            "cp -a B + bundle verify": best_of(args.repeat, cp_verify, remove_new),
            "bundle patch A DELTA (hard links, verified)": best_of(args.repeat, patch, remove_new),
            "bundle patch A DELTA (copies, verified)": best_of(args.repeat, patch_copying, remove_new),
        }
        delta_disk = du(delta)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    full, carried = info["full_bytes"], info["carried_bytes"]
    print(f"machine: {cpu}, {default_workers()} cores, {platform.system()} {platform.release()}, "
          f"Python {platform.python_version()}")
    print(f"model: {args.shards} safetensors files, {full / 1e9:.2f} GB; new revision: config.json changed, "
          "generation_config.json added, weights unchanged")
    print(f"builds: A {t_a:.1f} s, B directly {t_b:.1f} s, the delta A -> B {t_delta:.1f} s")
    print(f"full bundle B: {full} bytes in {info['files']} files")
    print(f"delta A -> B:  {carried} bytes in {len(info['carried'])} files carried "
          f"({carried / full:.1e} of the full bundle); {delta_disk} bytes on disk with manifest.json, "
          f"SHA256SUMS and delta.json ({delta_disk / full:.1e})")
    print(f"far side, best of {args.repeat} runs:")
    base = far["cp -a B + bundle verify"]
    for name, secs in far.items():
        print(f"  {name:<46} {secs:7.2f} s  {secs / base:5.2f}x of cp -a + verify")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
