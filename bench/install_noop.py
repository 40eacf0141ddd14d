#!/usr/bin/env python3
"""Cost growth with hosts: ``airgap-llm install`` no-op rerun time on 1, 2 and 4 targets, side by side.

Starts the benchmark target set ``benchnoop`` (four systemd containers on the internal network
10.213.16.0/24, no route out), installs the light inventory ``bench/inventories/noop`` (the ``embed``
service of the local-cpu demo only) on all four from the demo bundle, then times no-op reruns of
``airgap-llm install --json`` limited (``--limit``) to the first 1, 2 and 4 targets, interleaved
(1, 2, 4, 1, 2, 4, ...) so that drift in the machine's load hits every count alike. Every rerun must
report ``changed: 0`` (a rerun that changes something is printed and makes the exit status 1).

Prints, per host count: median, min, max and spread of the wall time, the controller's CPU seconds
(ansible and its SSH clients: the CPU time of this script's finished child processes) and the targets'
CPU seconds (their containers' cgroups), then the ratios 2/1 and 4/1 of the medians (target: 4 hosts
under 1.5x of 1 host). With ``--profile`` it also runs ``ansible-playbook`` once more per count with the
``ansible.posix.profile_tasks`` callback and prints the tasks whose time grows most from 1 to 4 hosts.

Run it under the shared lock so other vLLM loads do not skew the figures; it needs about 6 GiB:

    flock /tmp/airgap-llm-heavy.lock .venv/bin/python bench/install_noop.py [--reps 5] [--profile] [--keep]

``--keep`` leaves the targets up and installed (a later run reuses them: its first install is then a
no-op too); by default they are torn down at the end.

The controller's CPU seconds per extra host are the CPU of the largest count less that of the smallest,
divided by the hosts between them, per rep; the median and range over the reps are printed. They depend on
the machine's speed: to read them against an earlier version on the same machine, ``--against REV``
(repeatable) runs ``git archive`` exports of those commits interleaved with this checkout (this checkout,
REV, ..., then the reverse order in the next rep) and prints one row per version. A version may rewrite a
file another version wrote (a helper's new content): such a rerun reports changes, which are printed and
then do not fail the benchmark.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402
from benchlib import fmt, markdown_table, ratio, summary  # noqa: E402


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def targets_cpu(ts: Any) -> dict[str, float]:
    """CPU seconds used so far by each target container (its cgroup: v2 cpu.stat or v1 cpuacct.usage)."""
    out: dict[str, float] = {}
    for t in ts.targets:
        path = (
            subprocess.run(
                ["podman", "inspect", "--format", "{{.State.CgroupPath}}", t.name],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .lstrip("/")
        )
        v2 = Path("/sys/fs/cgroup") / path / "cpu.stat"
        v1 = Path("/sys/fs/cgroup/cpuacct") / path / "cpuacct.usage"
        if v2.is_file():
            usec = next(int(ln.split()[1]) for ln in v2.read_text().splitlines() if ln.startswith("usage_usec"))
            out[t.name] = usec / 1e6
        elif v1.is_file():
            out[t.name] = int(v1.read_text()) / 1e9
        else:
            out[t.name] = float("nan")
    return out


def profile(inv: Path, bundle: Path, limit: str) -> dict[str, float]:
    """Per-task seconds of one ``ansible-playbook site.yml`` rerun with the profile_tasks callback."""
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(benchlib.REPO / "ansible.cfg"),
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
        "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all",
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(inv),
            str(benchlib.REPO / "playbooks" / "site.yml"),
            "-e",
            f"airgap_llm_bundle_dir={bundle}",
            "--limit",
            limit,
        ],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=benchlib.REPO,
    )
    if proc.returncode != 0:
        raise SystemExit(f"profiled rerun failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    recap = proc.stdout.split("TASKS RECAP", 1)[-1]
    return benchlib.parse_profile(recap)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="timed reruns per host count (default 5)")
    parser.add_argument("--counts", default="1,2,4", help="host counts, comma-separated, at most 4 (default 1,2,4)")
    benchlib.add_bundle_argument(parser, "on the four targets")
    parser.add_argument("--profile", action="store_true", help="also profile one rerun per count (profile_tasks)")
    parser.add_argument("--keep", action="store_true", help="leave the targets up and installed")
    parser.add_argument("--against", action="append", default=[], metavar="REV",
                        help="also time this commit, interleaved with this checkout (repeatable)")
    args = parser.parse_args()
    try:
        counts = [int(c) for c in args.counts.split(",")]
    except ValueError:
        parser.error(f"--counts: expected numbers like 1,2,4, got {args.counts!r}")
    if not counts or min(counts) < 1 or max(counts) > 4:
        parser.error(f"--counts: each count must be 1 to 4, got {args.counts!r}")
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    benchlib.ensure_bundle(parser, args.bundle)
    versions = [benchlib.Version("this checkout"), *(benchlib.export_commit(rev) for rev in args.against)]

    benchlib.header([Path(sys.executable).name, *sys.argv])
    ts = benchlib.target_set(4)
    failed = False
    try:
        benchlib.start(ts)
        inv = benchlib.inventory_for(ts)
        names = [t.name for t in ts.targets]
        benchlib.wait_for_memory(6)
        first = benchlib.install(inv, args.bundle)
        if first.rc != 0:
            print(f"first install failed (exit {first.rc}): {first.result}", file=sys.stderr)
            return 1
        print(f"first install on {len(names)} hosts: {fmt(first.seconds)}, changed {first.changed}")

        runs: dict[tuple[str, int], list[tuple[float, float, float, int]]] = {
            (v.label, n): [] for v in versions for n in counts
        }
        for rep in range(args.reps):
            for version in versions if rep % 2 == 0 else versions[::-1]:
                for n in counts:
                    cpu0, tcpu0 = children_cpu(), targets_cpu(ts)
                    run = benchlib.install(inv, args.bundle, limit=",".join(names[:n]), version=version)
                    cpu = children_cpu() - cpu0
                    tcpu1 = targets_cpu(ts)
                    tcpu = sum(tcpu1[h] - tcpu0[h] for h in names[:n])
                    runs[(version.label, n)].append((run.seconds, cpu, tcpu, run.changed))
                    who = f"{version.label}, " if len(versions) > 1 else ""
                    print(
                        f"  rep {rep + 1}, {who}{n} host(s): {fmt(run.seconds)}, changed {run.changed}, "
                        f"controller CPU {cpu:.1f} s, targets CPU {tcpu:.1f} s, load {benchlib.loadavg()}",
                        flush=True,
                    )
                    if run.rc != 0 or (run.changed != 0 and len(versions) == 1):
                        failed = True
                        print(f"    NOT A NO-OP (exit {run.rc}): {run.result}", file=sys.stderr)

        def column(label: str, n: int, i: int) -> list[float]:
            return [r[i] for r in runs[(label, n)]]

        walls = {n: column(versions[0].label, n, 0) for n in counts}
        ctl = {n: column(versions[0].label, n, 1) for n in counts}
        tgt = {n: column(versions[0].label, n, 2) for n in counts}
        changed = {n: [int(c) for c in column(versions[0].label, n, 3)] for n in counts}
        stats = {n: summary(walls[n]) for n in counts}
        base = stats[counts[0]]
        rows = []
        for n in counts:
            s = stats[n]
            cpu = summary(ctl[n]).median
            tcpu = summary(tgt[n]).median
            rows.append(
                [
                    f"{n}",
                    fmt(s.median),
                    f"{fmt(s.low)} - {fmt(s.high)}",
                    f"{s.spread:.0%}",
                    f"{ratio(s, base):.2f}x",
                    f"{cpu:.1f} s",
                    f"{tcpu:.1f} s",
                    f"{(cpu + tcpu) / s.median / (os.cpu_count() or 1):.0%}",
                    f"{max(changed[n])}",
                ]
            )
        print()
        print(f"no-op reruns of `airgap-llm install --json --limit <first N>`, {args.reps} per count, interleaved:")
        print()
        print(
            markdown_table(
                [
                    "hosts",
                    "median",
                    "min - max",
                    "spread",
                    f"/ {counts[0]} host",
                    "controller CPU",
                    "targets CPU",
                    "CPU busy (both / cores)",
                    "changed (max)",
                ],
                rows,
            )
        )
        print()
        for n in counts[1:]:
            note = " (target: under 1.5x)" if n == 4 and counts[0] == 1 else ""
            print(f"ratio {n}/{counts[0]}: {ratio(stats[n], base):.2f}x{note}")
        few, many = counts[0], counts[-1]
        if many > few:
            per_host = {
                v.label: summary(benchlib.per_extra_host(column(v.label, few, 1), column(v.label, many, 1), many - few))
                for v in versions
            }
            own = per_host[versions[0].label]
            print(f"controller CPU per extra host ({many} hosts - {few}, per rep): {own.median:.1f} s "
                  f"({own.low:.1f} - {own.high:.1f}; target: 5 s or less)")
            if len(versions) > 1:
                print()
                print(f"interleaved with this checkout, {args.reps} reruns each (medians):")
                print()
                rows = []
                for v in versions:
                    w = {n: summary(column(v.label, n, 0)) for n in (few, many)}
                    c = {n: summary(column(v.label, n, 1)).median for n in (few, many)}
                    ph = per_host[v.label]
                    rows.append([
                        v.label, fmt(w[few].median), f"{c[few]:.1f} s", fmt(w[many].median), f"{c[many]:.1f} s",
                        f"{ratio(w[many], w[few]):.2f}x", f"{ph.median:.1f} s ({ph.low:.1f} - {ph.high:.1f})",
                        f"{ph.median / own.median:.2f}",
                    ])
                print(markdown_table(["version", f"{few} host wall", "controller", f"{many} hosts wall", "controller",
                                      f"{many} / {few}", "controller per extra host", "/ this checkout"], rows))
        print(f"load average at end: {benchlib.loadavg()}")

        if args.profile:
            profiles = {n: profile(inv, args.bundle, ",".join(names[:n])) for n in (counts[0], counts[-1])}
            lo, hi = profiles[counts[0]], profiles[counts[-1]]
            growth = sorted(((hi.get(k, 0.0) - lo.get(k, 0.0), k) for k in set(lo) | set(hi)), reverse=True)
            print()
            print(
                f"profile_tasks, one rerun each: total {sum(lo.values()):.1f} s ({counts[0]} host), "
                f"{sum(hi.values()):.1f} s ({counts[-1]} hosts); tasks growing most:"
            )
            print()
            print(
                markdown_table(
                    ["task", f"{counts[0]} host", f"{counts[-1]} hosts", "growth"],
                    [[k, f"{lo.get(k, 0.0):.2f} s", f"{hi.get(k, 0.0):.2f} s", f"{d:+.2f} s"] for d, k in growth[:15]],
                )
            )
    finally:
        benchlib.finish(ts, args.keep)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
