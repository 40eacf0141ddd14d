#!/usr/bin/env python3
"""Throughput of ``airgap-llm bundle verify`` against ``sha256sum``, side by side in one run.

Writes synthetic files (a few GB) into a temporary bundle, then times, on the same files:

- ``sha256sum f1 f2 ...``: one process, files one after another (the single-stream baseline);
- ``verify_bundle`` with 1 worker (this code, single stream);
- ``verify_bundle`` with one thread per core, and with one process per core;

and prints GB/s and the ratios: verify / sha256sum, verify / (cores x sha256sum) (the goal is >= 0.8),
and verify / (cores x its own single stream) (parallel efficiency). Each measurement is the best of
``--repeat`` runs. By default the data stays in the page cache (it was just written and fits in RAM);
``--cold`` drops the page cache before every run (needs root) to include disk reads.

    python bench/verify.py [--gb 4] [--files 16] [--repeat 3] [--cold] [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from airgap_llm.bundle.hashing import Mode, default_workers  # noqa: E402
from airgap_llm.bundle.index import index_paths, list_under  # noqa: E402
from airgap_llm.bundle.manifest import Manifest, save_manifest  # noqa: E402
from airgap_llm.bundle.verify import verify_bundle  # noqa: E402

BLOCK = 64 << 20


def write_files(root: Path, total: int, count: int) -> list[Path]:
    base = root / "wheels" / "cp311-manylinux_2_36_x86_64"
    base.mkdir(parents=True)
    block = bytearray(os.urandom(BLOCK))
    paths = []
    per_file = total // count
    for i in range(count):
        path = base / f"synthetic_{i:03d}-1.0-py3-none-any.whl"
        with path.open("wb") as fh:
            left = per_file
            while left:
                block[:8] = (i * 1_000_003 + left).to_bytes(8, "little")  # no two blocks alike
                n = min(left, BLOCK)
                fh.write(memoryview(block)[:n])
                left -= n
        paths.append(path)
    return paths


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def best_of(repeat: int, cold: bool, fn: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        if cold:
            drop_caches()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=4.0, help="total data in GB (default 4)")
    parser.add_argument("--files", type=int, default=16, help="number of files (default 16)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement, best kept (default 3)")
    parser.add_argument("--cold", action="store_true", help="drop the page cache before every run (root)")
    parser.add_argument("--dir", type=Path, default=None, help="where to create the temporary bundle")
    args = parser.parse_args()

    cores = default_workers()
    total = int(args.gb * 1e9) // args.files * args.files
    if args.cold and not drop_caches():
        print("cannot drop the page cache (needs root); use the warm mode", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="airgap-llm-bench-", dir=args.dir))
    try:
        t0 = time.perf_counter()
        paths = write_files(tmp, total, args.files)
        written = time.perf_counter() - t0
        manifest = Manifest(inventory="bench")
        for art in index_paths(tmp, list_under(tmp, "wheels"), "wheel", lambda p: "synthetic"):
            manifest.add(art)
        save_manifest(tmp, manifest)

        def sha256sum() -> None:
            subprocess.run(["sha256sum", *map(str, paths)], check=True, stdout=subprocess.DEVNULL)

        def verify(workers: int, mode: Mode) -> Callable[[], None]:
            def run() -> None:
                report = verify_bundle(tmp, workers=workers, mode=mode)
                assert report.ok, report.failures

            return run

        results = {
            "sha256sum, 1 process": best_of(args.repeat, args.cold, sha256sum),
            "verify, 1 thread": best_of(args.repeat, args.cold, verify(1, "threads")),
            f"verify, {cores} threads": best_of(args.repeat, args.cold, verify(cores, "threads")),
            f"verify, {cores} processes": best_of(args.repeat, args.cold, verify(cores, "processes")),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    gbps = {name: total / secs / 1e9 for name, secs in results.items()}
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    cache = "cold (page cache dropped before each run)" if args.cold else "warm (in page cache: just written, fits RAM)"
    print(
        f"machine: {cpu}, {cores} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"
    )
    print(f"data: {args.files} files, {total / 1e9:.2f} GB total, {cache}; written at {total / written / 1e9:.2f} GB/s")
    print(f"best of {args.repeat} runs each:")
    for name, secs in results.items():
        print(f"  {name:<24} {secs:7.2f} s  {gbps[name]:6.2f} GB/s")
    single = gbps["sha256sum, 1 process"]
    own_single = gbps["verify, 1 thread"]
    for name in (f"verify, {cores} threads", f"verify, {cores} processes"):
        print(f"{name}:")
        rows = [
            ("/ sha256sum single stream", gbps[name] / single, ""),
            (f"/ ({cores} cores x sha256sum)", gbps[name] / (cores * single), "(goal >= 0.8)"),
            (f"/ ({cores} cores x verify 1 thread)", gbps[name] / (cores * own_single), "(parallel efficiency)"),
        ]
        for label, ratio, note in rows:
            print(f"  {label:<34} = {ratio:5.2f}x  {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
