#!/usr/bin/env python3
"""The cost of a safe upgrade: ``airgap-llm upgrade`` of two hosts against a plain ``install`` of the same
change.

Starts the target set ``upbench`` (two systemd containers on the internal network 10.213.48.0/24, no
route out), installs release A, the light inventory ``bench/inventories/noop`` (the demo's ``embed``
service), then, ``--reps`` times, interleaved: release B (one engine argument added, so the service restarts
on both hosts) by ``install`` (both hosts at once, validate at the end), ``rollback`` to A (untimed),
release B by ``upgrade`` (the first host as canary, then the other: two installs and two validations),
``rollback`` to A (untimed). Every timed run must exit 0 and change the release on both hosts.

Prints per way the median, min and max wall time, and the ratio upgrade / install: the overhead of the
canary and the per-batch validations.

    flock /tmp/airgap-llm-heavy.lock .venv/bin/python bench/upgrade.py [--reps 2] [--keep]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402
import targets  # noqa: E402  (tests/hosts/targets.py, on the path through benchlib)
from benchlib import fmt, markdown_table, summary  # noqa: E402

SET_NAME = "upbench"
SUBNET = ipaddress.IPv4Network("10.213.48.0/24")
B_ARGS = ["--enforce-eager", "--max-num-seqs", "8"]


def cli(*args: str) -> tuple[float, int, dict[str, Any]]:
    """One ``airgap-llm`` command as a user runs it (a separate process), timed end to end."""
    start = time.perf_counter()
    proc = subprocess.run([str(benchlib.CLI), *args, "--json"], capture_output=True, text=True, check=False)
    secs = time.perf_counter() - start
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        result = {"error": (proc.stdout + proc.stderr)[-3000:]}
    return secs, proc.returncode, result


def set_args(inv: Path, args: list[str]) -> None:
    path = inv / "group_vars" / "airgap_llm.yml"
    data = yaml.safe_load(path.read_text())
    data["airgap_llm_services"]["embed"]["extra_args"] = args
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=2, help="timed runs of each way (default 2)")
    benchlib.add_bundle_argument(parser, "on the two targets")
    parser.add_argument("--keep", action="store_true", help="leave the targets up and installed")
    args = parser.parse_args()
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    benchlib.ensure_bundle(parser, args.bundle)

    benchlib.header([Path(sys.executable).name, *sys.argv])
    os.environ.setdefault("CONTAINERS_CONF", str(benchlib.REPO / "tests" / "hosts" / "containers.conf"))
    ts = targets.TargetSet(SET_NAME, count=2, subnet=SUBNET, group="airgap_llm")
    failed = False
    try:
        benchlib.start(ts)
        inv = benchlib.inventory_for(ts)
        a_args = yaml.safe_load((inv / "group_vars" / "airgap_llm.yml").read_text())["airgap_llm_services"][
            "embed"]["extra_args"]
        benchlib.wait_for_memory(4)
        first = benchlib.install(inv, args.bundle)
        if first.rc != 0:
            print(f"first install failed (exit {first.rc}): {first.result}", file=sys.stderr)
            return 1
        print(f"first install (release A) on 2 hosts: {fmt(first.seconds)}", flush=True)
        bundle = str(args.bundle)
        walls: dict[str, list[float]] = {"install": [], "upgrade": []}
        for rep in range(args.reps):
            for way in ("install", "upgrade"):
                set_args(inv, B_ARGS)
                extra = ["--canary", ts.targets[0].name] if way == "upgrade" else []
                secs, rc, result = cli(way, "-i", str(inv), "--bundle", bundle, *extra)
                releases = (result.get("releases") or {}) if way == "install" else {
                    h: {"changed": r.get("release_changed")} for h, r in (result.get("hosts") or {}).items()}
                moved = sorted(h for h, r in releases.items() if (r or {}).get("changed"))
                print(f"  rep {rep + 1}, {way} A -> B: {fmt(secs)}, exit {rc}, release changed on {moved}, "
                      f"load {benchlib.loadavg()}", flush=True)
                if rc != 0 or len(moved) != 2:
                    failed = True
                    print(f"    NOT A -> B on both hosts: {json.dumps(result)[-2000:]}", file=sys.stderr)
                walls[way].append(secs)
                set_args(inv, a_args)
                back_secs, back_rc, back = cli("rollback", "-i", str(inv))
                print(f"    rollback to A (untimed): {fmt(back_secs)}, exit {back_rc}", flush=True)
                if back_rc != 0:
                    print(f"rollback failed: {json.dumps(back)[-2000:]}", file=sys.stderr)
                    return 1
        stats = {way: summary(v) for way, v in walls.items()}
        print()
        print(f"release A -> B (one engine argument: the service restarts) on 2 hosts, {args.reps} run(s) each, "
              "interleaved:")
        print()
        print(markdown_table(
            ["way", "median", "min - max", "/ install"],
            [[way, fmt(s.median), f"{fmt(s.low)} - {fmt(s.high)}", f"{s.median / stats['install'].median:.2f}x"]
             for way, s in stats.items()],
        ))
        print()
        print(f"overhead of the canary and validations: {fmt(stats['upgrade'].median - stats['install'].median)} "
              f"({stats['upgrade'].median / stats['install'].median:.2f}x)")
        print(f"load average at end: {benchlib.loadavg()}")
    finally:
        if args.keep:
            print(f"targets kept: {', '.join(t.name for t in ts.targets)} (down: tests/hosts/targets.py down "
                  f"--name {SET_NAME})")
        else:
            ts.down()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
