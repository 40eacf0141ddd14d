#!/usr/bin/env python3
"""Model staging to many hosts: relay (hosts pass verified copies on) against direct push, 4 hosts / 1.

Starts four targets (set ``rlfanout``, a free /24), limits every link to ``--mbit`` (default 200 Mbit/s)
with ``tc``: a token bucket on each target's interface (what the host sends) and on the target
network's bridge on this machine (what the controller sends: one link, as a bastion's), so the links,
not the CPUs, are the bottleneck. The bundle holds one synthetic model of ``--gib`` GiB (random shards
in the Hugging Face cache layout, as bench/staging.py makes it). Each run starts from hosts that hold
nothing and times ``ansible-playbook playbooks/models.yml`` (plan, copy, sha256 on every host, publish):

- 1 host (the controller sends the model once: relay and direct push are the same run);
- 4 hosts with the relay, for each ``--fanout`` (``airgap_llm_model_store_fanout``; default: 1, a chain,
  and 2, the role's default);
- 4 hosts with direct push (``airgap_llm_model_store_relay: false``).

It prints the ratios 4 hosts / 1 host (the relay's goal: <= 1.5; direct push: about 4) and the model
of how the time grows with N (the relay's tree from ``airgap_llm.relay.relay_waves``, every level at once,
each host passing a shard on as soon as it verified it: the busiest sender's share of its link, plus
one shard per level to fill the pipeline; store-and-forward waves, as the relay ran before, for
comparison; direct push: N copies through the controller's link). Figures are printed, never asserted.

    .venv/bin/python bench/fanout.py [--gib 2] [--mbit 200] [--fanout 1 --fanout 2] [--keep]

Runtime: about 1 + 1.4 + 2.5 + 4 transfers of ``--gib`` at ``--mbit`` plus the set-up: about 15 min with
the defaults (86 s per transfer of 2 GiB at 200 Mbit/s). Needs root, podman, tc and nsenter, and about
3 x gib GiB of free disk.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402
import staging  # noqa: E402  (bench/staging.py: the synthetic bundle)
import targets  # noqa: E402  (tests/hosts/targets.py, on the path through benchlib)
import yaml  # noqa: E402

from airgap_llm.relay import relay_waves  # noqa: E402

REPO = benchlib.REPO
SET_NAME = "rlfanout"
HF = "/var/lib/airgap-llm"
GOAL_RELAY = 1.5


# --------------------------------------------------------------------------------- the model (pure)


def relay_model(n: int, fanout: int) -> float:
    """Time of a relay to n hosts, in units of one transfer over one link.

    Each wave takes as long as its busiest sender: a host (or the controller) sending to k hosts at once
    shares its link k ways, so that wave lasts k transfers.
    """
    waves = relay_waves({f"h{i}": ["m"] for i in range(n)}, fanout=fanout)
    total = 0.0
    for wave in waves:
        per_source: dict[str | None, int] = {}
        for t in wave:
            per_source[t.source] = per_source.get(t.source, 0) + 1
        total += max(per_source.values())
    return total


def pipelined_model(n: int, fanout: int, shards: int) -> float:
    """Time of the pipelined relay to n hosts (the role's pass), in transfers over one link.

    Every level of the tree runs at once: a sender feeding k hosts gives each 1/k of its link, so the
    model arrives everywhere at the busiest sender's share (k transfers), after the pipeline fills: each
    level below the first starts one shard (1/shards of the model, at that share) after its parent.
    """
    waves = relay_waves({f"h{i}": ["m"] for i in range(n)}, fanout=fanout)
    per_source: dict[str | None, int] = {}
    for wave in waves:
        for t in wave:
            per_source[t.source] = per_source.get(t.source, 0) + 1
    busiest = max(per_source.values(), default=1)
    return busiest * (1 + (len(waves) - 1) / shards)


def direct_model(n: int) -> float:
    """Direct push: n copies through the controller's one link."""
    return float(n)


# ------------------------------------------------------------------------------------------ the run


def shape(ts: Any, mbit: int) -> list[str]:
    """A token bucket of ``mbit`` on every target's eth0 (entered from here) and on the network's bridge."""
    done = []
    rate = f"{mbit}mbit"
    for t in ts.targets:
        pid = subprocess.run(["podman", "inspect", "-f", "{{.State.Pid}}", t.name], check=True,
                             capture_output=True, text=True).stdout.strip()
        subprocess.run(["nsenter", "-t", pid, "-n", "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf",
                        "rate", rate, "burst", "512kb", "latency", "100ms"], check=True)
        done.append(f"{t.name}:eth0")
    bridge = targets.bridge_of(ts.network)
    subprocess.run(["tc", "qdisc", "replace", "dev", bridge, "root", "tbf", "rate", rate, "burst", "512kb",
                    "latency", "100ms"], check=True)
    done.append(f"controller:{bridge}")
    return done


def unshape(ts: Any) -> None:
    try:
        bridge = targets.bridge_of(ts.network)
    except Exception:  # noqa: BLE001 (the network may be gone already)
        return
    subprocess.run(["tc", "qdisc", "del", "dev", bridge, "root"], check=False, capture_output=True)


def write_inventory(work: Path, ts: Any, count: int, fanout: int, relay: bool) -> Path:
    inv = work / f"inv-{count}-{'relay' if relay else 'direct'}"
    (inv / "group_vars").mkdir(parents=True, exist_ok=True)
    group_vars = {
        "airgap_llm_target_os": "debian-12",
        "airgap_llm_model_store_relay": relay,
        "airgap_llm_model_store_fanout": fanout,
        "airgap_llm_services": {"bench": {"kind": "embedding", "model": staging.MODEL, "revision": "main",
                                          "port": 8001, "gpus": []}},
    }
    (inv / "group_vars" / "airgap_llm.yml").write_text(yaml.safe_dump(group_vars))
    hosts = {"airgap_llm": {"hosts": {
        t.name: {"ansible_host": str(t.ip), "ansible_user": "root",
                 "ansible_ssh_private_key_file": str(ts.key_file),
                 "ansible_ssh_common_args": targets.SSH_COMMON_ARGS}
        for t in ts.targets[:count]}}}
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    return inv


def reset(ts: Any) -> None:
    for t in ts.targets:
        ts.ssh(t, f"rm -rf {HF}")


def run_models(inv: Path, bundle: Path) -> tuple[float, str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inv),
            str(REPO / "playbooks" / "models.yml"), "-e", f"airgap_llm_bundle_dir={bundle}",
            # No facts in this play: two hashing threads on each host.
            "-e", json.dumps({"airgap_llm_model_store_verify_workers": 2})]
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    secs = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return secs, proc.stdout


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=2.0, help="size of the synthetic model (default 2)")
    parser.add_argument("--shards", type=int, default=8, help="number of weight shards (default 8)")
    parser.add_argument("--mbit", type=int, default=200, help="every link's rate in Mbit/s (default 200)")
    parser.add_argument("--fanout", type=int, action="append",
                        help="airgap_llm_model_store_fanout of a relay run (repeat; default: 1 and 2)")
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/airgap-llm-bench-fanout"))
    parser.add_argument("--keep", action="store_true", help="keep the bundle under --work")
    args = parser.parse_args(argv)
    fanouts = args.fanout or [1, 2]
    benchlib.header([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    args.work.mkdir(parents=True, exist_ok=True)
    bundle = staging.make_bundle(args.work / f"bundle-{args.gib:g}g-{args.shards}", args.gib, args.shards)
    size = staging.bundle_bytes(bundle)
    link_s = size * 8 / (args.mbit * 1e6)
    ts = targets.TargetSet(SET_NAME, count=4, group="airgap_llm")
    ts.down()
    times: dict[str, float] = {}
    waves_seen: list[str] = []
    try:
        ts.up()
        shaped = shape(ts, args.mbit)
        print(f"links limited to {args.mbit} Mbit/s: {', '.join(shaped)}; model {size / 2**30:.2f} GiB "
              f"({size * 8 / 1e6:.0f} Mbit: {link_s:.0f} s per transfer at line rate)", flush=True)
        runs = [("1 host", 1, True, fanouts[0])]
        runs += [(f"4 hosts, relay, fan-out {f}", 4, True, f) for f in fanouts]
        runs += [("4 hosts, direct push", 4, False, fanouts[0])]
        for key, count, relay, fanout in runs:
            reset(ts)
            staging.drop_caches()
            secs, out = run_models(write_inventory(args.work, ts, count, fanout, relay), bundle)
            times[key] = secs
            waves_seen += [f"{key}: " + line.split('"msg": "', 1)[1].strip().rstrip('"')
                           for line in out.splitlines() if '"msg": "relay wave' in line or '"msg": "relay pass' in line]
            print(f"{key}: {secs:.1f} s", flush=True)
    finally:
        unshape(ts)
        ts.down()
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)

    one = times["1 host"]
    rows = [["1 host", f"{one:.1f}", "1.00", "1", ""]]
    for f in fanouts:
        ratio = times[f"4 hosts, relay, fan-out {f}"] / one
        rows.append([f"4 hosts, relay, fan-out {f}", f"{times[f'4 hosts, relay, fan-out {f}']:.1f}", f"{ratio:.2f}",
                     f"{pipelined_model(4, f, args.shards):.2f}",
                     f"<= {GOAL_RELAY} ({'met' if ratio <= GOAL_RELAY else 'missed'})"])
    rows.append(["4 hosts, direct push", f"{times['4 hosts, direct push']:.1f}",
                 f"{times['4 hosts, direct push'] / one:.2f}", f"{direct_model(4):g}", "about 4"])
    print()
    print("relay plan as the runs showed it:", *waves_seen, sep="\n  ")
    print()
    print(benchlib.markdown_table(["run", "seconds", "/ 1 host", "model (transfers)", "goal"], rows))
    print()
    counts = (1, 2, 4, 8, 16, 32, 64)
    print(f"Model, in transfers of the model over one link ({link_s:.0f} s each here at line rate; "
          f"{args.shards} shards):")
    print(benchlib.markdown_table(
        ["N hosts"] + [str(n) for n in counts],
        [[f"relay, fan-out {f}"] + [f"{pipelined_model(n, f, args.shards):.2f}" for n in counts] for f in (1, 2, 3)]
        + [[f"store-and-forward waves, fan-out {f}"] + [f"{relay_model(n, f):g}" for n in counts] for f in (1, 2)]
        + [["direct push"] + [f"{direct_model(n):g}" for n in counts]]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
