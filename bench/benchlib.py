"""What bench/install_noop.py and bench/time_to_healthy.py share: the machine line, the benchmark target
set (``benchnoop``: four systemd containers on the internal network 10.213.16.0/24), a copy of the light
inventory pointed at them, the CLI run, and median/spread figures.

Pure helpers (``summary``, ``ratio``, ``per_extra_host``, ``markdown_table``, ``parse_profile``) take no I/O.
``Version`` and ``export_commit`` let a benchmark run an earlier commit beside this checkout.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import ipaddress
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "tests" / "hosts") not in sys.path:
    sys.path.insert(0, str(REPO / "tests" / "hosts"))

import targets  # noqa: E402  (tests/hosts/targets.py)

SET_NAME = "benchnoop"
SUBNET = ipaddress.IPv4Network("10.213.16.0/24")
INVENTORY = REPO / "bench" / "inventories" / "noop"
DEFAULT_BUNDLE = Path(os.environ.get("AIRGAP_LLM_CACHE", Path.home() / ".cache" / "airgap-llm")) / "demo" / "bundle"
CLI = Path(sys.executable).parent / "airgap-llm"
HEAVY_LOCK = "/tmp/airgap-llm-heavy.lock"


def add_bundle_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--bundle",
        type=Path,
        default=DEFAULT_BUNDLE,
        help=f"bundle to install from {what} (default {DEFAULT_BUNDLE}, built when missing)",
    )


def ensure_bundle(parser: argparse.ArgumentParser, bundle: Path) -> None:
    """The demo bundle is built when it is missing (as `make demo` builds it); another must exist."""
    if (bundle / "manifest.json").is_file():
        return
    if bundle != DEFAULT_BUNDLE:
        parser.error(f"--bundle {bundle}: no manifest.json (not a bundle)")
    if str(REPO / "tests" / "fixtures") not in sys.path:
        sys.path.insert(0, str(REPO / "tests" / "fixtures"))
    import tiny_models  # tests/fixtures/tiny_models.py: the demo's tiny models in a local HF cache

    hf_home = bundle.parent / "hf"
    tiny_models.all_models_cache(hf_home / "hub")
    subprocess.run(
        [str(CLI), "bundle", "build", "-i", str(REPO / "inventories" / "local-cpu"), "-o", str(bundle),
         "--models-from", str(hf_home)],
        check=True,
    )


# ------------------------------------------------------------------------------------------ pure figures


@dataclass(frozen=True)
class Summary:
    """Median and spread of one measurement's repetitions (seconds)."""

    n: int
    median: float
    low: float
    high: float

    @property
    def spread(self) -> float:
        """(max - min) / median: 0.10 means the slowest run took 10 % of the median longer than the fastest."""
        return (self.high - self.low) / self.median if self.median else 0.0


def summary(samples: Sequence[float]) -> Summary:
    if not samples:
        raise ValueError("no samples")
    return Summary(len(samples), statistics.median(samples), min(samples), max(samples))


def ratio(a: Summary, b: Summary) -> float:
    """Ratio of medians a / b."""
    return a.median / b.median


def per_extra_host(low: Sequence[float], high: Sequence[float], hosts_between: int) -> list[float]:
    """Rep by rep, the larger host count's figure less the smaller's, per host between them."""
    if hosts_between < 1 or len(low) != len(high):
        raise ValueError(f"per_extra_host: {len(low)} and {len(high)} reps, {hosts_between} hosts between")
    return [(h - lo) / hosts_between for lo, h in zip(low, high, strict=True)]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table; columns after the first are right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def parse_profile(text: str) -> dict[str, float]:
    """Per-task seconds from the ``ansible.posix.profile_tasks`` recap of an ``ansible-playbook`` run.

    Recap lines look like ``role : task name ------------------- 1.23s``. A task name seen twice (the
    same task in two plays) gets its times summed.
    """
    tasks: dict[str, float] = {}
    for line in text.splitlines():
        line = line.rstrip()
        if not line.endswith("s") or " -" not in line:
            continue
        name, _, rest = line.rpartition(" -")
        figure = rest.lstrip("-").strip()
        try:
            secs = float(figure[:-1])
        except ValueError:
            continue
        name = name.rstrip("-").strip()
        if name:
            tasks[name] = tasks.get(name, 0.0) + secs
    return tasks


# ------------------------------------------------------------------------------------------ the machine


def machine() -> str:
    """CPU model, cores, RAM, kernel, Python: the line every result starts with."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    mem_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_kib / 2**20:.0f} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def available_gib() -> float:
    kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemAvailable")
    )
    return kib / 2**20


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def header(argv: Sequence[str]) -> None:
    """Print machine, date and the exact command, for bench/RESULTS.md."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"machine: {machine()}")
    print(f"date: {now}; load average at start: {loadavg()}; memory available: {available_gib():.1f} GiB")
    print(f"command: {shlex.join(argv)}")


def wait_for_memory(gib: float, timeout_s: float = 600) -> None:
    """Wait until ``gib`` GiB are available (others' services share this machine's RAM)."""
    deadline = time.monotonic() + timeout_s
    while available_gib() < gib:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {available_gib():.1f} GiB available after {timeout_s:.0f} s; need {gib} GiB")
        print(f"waiting: {available_gib():.1f} GiB available, need {gib} GiB", file=sys.stderr)
        time.sleep(30)


# ------------------------------------------------------------------------------------------ targets and CLI


def target_set(count: int = 4) -> Any:
    """The benchmark target set (not started)."""
    os.environ.setdefault("CONTAINERS_CONF", str(REPO / "tests" / "hosts" / "containers.conf"))
    return targets.TargetSet(SET_NAME, count=count, subnet=SUBNET, group="airgap_llm")


def finish(ts: Any, keep: bool) -> None:
    """Tear the target set down, or say how to once it is kept for another run."""
    if keep:
        print(f"targets kept: {', '.join(t.name for t in ts.targets)} (down: tests/hosts/targets.py down "
              f"--name {SET_NAME})")
    else:
        ts.down()


def start(ts: Any) -> list[Any]:
    """Start the target set, or reuse it when every target already answers SSH (a run with --keep)."""
    try:
        for t in ts.targets:
            ts.ssh(t, "true")
    except (targets.TargetError, subprocess.CalledProcessError, OSError):
        return list(ts.up())
    return list(ts.targets)


def inventory_for(ts: Any, source: Path = INVENTORY) -> Path:
    """A temporary copy of ``source`` (without credentials/) whose hosts.yml points at ``ts``'s targets."""
    tmp = Path(tempfile.mkdtemp(prefix="airgap-llm-bench-inv-"))
    atexit.register(shutil.rmtree, tmp, True)  # it gets credentials/ (the API key) on the first install
    inv = tmp / source.name
    shutil.copytree(source, inv, ignore=shutil.ignore_patterns("credentials"))
    hosts = {
        t.name: {
            "ansible_host": str(t.ip),
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(ts.key_file),
            "ansible_ssh_common_args": targets.SSH_COMMON_ARGS,
        }
        for t in ts.targets
    }
    (inv / "hosts.yml").write_text(json.dumps({"airgap_llm": {"hosts": hosts}}, indent=2) + "\n")
    return inv


@dataclass(frozen=True)
class InstallRun:
    seconds: float
    rc: int
    result: dict[str, Any]

    @property
    def changed(self) -> int:
        return int(self.result.get("changed", -1))


@dataclass(frozen=True)
class Version:
    """A version of the project a benchmark runs: this checkout (``tree`` None) or an export of a commit."""

    label: str
    tree: Path | None = None

    def cli(self) -> list[str]:
        """The command line of this version's ``airgap-llm`` (an export runs on this checkout's venv)."""
        return [str(CLI)] if self.tree is None else [sys.executable, "-m", "airgap_llm.cli"]

    def env(self) -> dict[str, str]:
        """What points a run at this version's code, playbooks and roles."""
        if self.tree is None:
            return {}
        return {"PYTHONPATH": str(self.tree / "src"), "AIRGAP_LLM_HOME": str(self.tree)}


def export_commit(rev: str) -> Version:
    """``git archive`` of ``rev`` into a temporary directory (removed at exit), to run beside this checkout.
    Raises SystemExit naming ``rev`` when git does not know it."""
    found = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", "--short", f"{rev}^{{commit}}"],
                           capture_output=True, text=True, check=False)
    if found.returncode != 0:
        raise SystemExit(f"--against {rev}: not a commit of this repository")
    commit = found.stdout.strip()
    tree = Path(tempfile.mkdtemp(prefix=f"airgap-llm-bench-{commit}-"))
    atexit.register(shutil.rmtree, tree, True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return Version(commit, tree)


def install(
    inventory: Path,
    bundle: Path,
    limit: str | None = None,
    env: dict[str, str] | None = None,
    version: Version = Version("this checkout"),
) -> InstallRun:
    """``airgap-llm install --json`` of ``version`` as a user runs it (a separate process), timed end to end."""
    cmd = [*version.cli(), "install", "-i", str(inventory), "--bundle", str(bundle), "--json"]
    if limit:
        cmd += ["--limit", limit]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env={**os.environ, **version.env(), **(env or {})})
    secs = time.perf_counter() - start
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        result = {"error": (proc.stdout + proc.stderr)[-3000:]}
    return InstallRun(secs, proc.returncode, result)


def fmt(secs: float) -> str:
    return f"{secs:.1f} s"


def ssh_input(ts: Any, target: Any, command: str, stdin: str) -> str:
    """Run ``command`` on ``target`` over SSH (route-checked) with ``stdin``; its stdout. Raises on failure."""
    targets.check_route(str(target.ip), targets.bridge_of(ts.network))
    proc = subprocess.run(ts.ssh_command(target, command), input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{target.name}: `{command}` failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout
