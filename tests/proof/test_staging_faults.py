"""Model staging under faults, on a target with the demo's two services really running:

- a weight file corrupted in the bundle, sent by direct push (``airgap_llm_model_store_relay: false``): the
  install refuses, naming the file and both hashes, before the services step (nothing restarted, both
  services keep answering), and the verified file on the host is left as it was; the good bundle then
  installs without restarting anything. (With the relay, the default, a host that already holds a verified
  copy of the manifest's file takes nothing from the bundle, so a corrupted bundle file never reaches it;
  a copy that does reach a host and fails its hash is refused there: tests/proof/test_model_relay.py.)
- ``kill -9`` of the ``airgap-llm install`` process group while rsync is moving a model file: no partial
  file under a final name (in the hub the services read, or in the staging area), the partial data kept
  aside; the rerun completes, re-sends none of the files that had arrived whole, and the final tree
  verifies.

Target set ``stagefault`` (10.213.12.0/24). About 8 minutes (4 of them the first install).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import tiny_models
import yaml
from deployments import REPO, Deployment, ssh, unit_props

from airgap_llm.cli import main

pytestmark = pytest.mark.e2e

DEPLOYMENT = Deployment(
    name="stagefault",
    subnet=ipaddress.IPv4Network("10.213.12.0/24"),
    inventory=REPO / "inventories" / "local-cpu",
    cache="demo",
    models=tiny_models.all_models_cache,
)

HF = "/var/lib/airgap-llm/hf"
HUB = f"{HF}/hub"
STAGING = f"{HF}/.airgap-llm-staging"
CHAT = "models--HuggingFaceTB--SmolLM2-135M-Instruct"
PREFIX = "models/hub/"
UNITS = ("airgap-llm-embed.service", "airgap-llm-chat.service")
HEALTH = {"embed": 8001, "chat": 8003}
CLI = Path(sys.executable).parent / "airgap-llm"


@pytest.fixture(scope="module")
def installed(bundle: Path, inventory: Path) -> None:
    assert main(["install", "-i", str(inventory), "--bundle", str(bundle), "--json"]) == 0, "first install failed"


# ---------------------------------------------------------------- helpers


def artifacts(bundle: Path) -> list[dict[str, Any]]:
    return list(json.loads((bundle / "manifest.json").read_text())["artifacts"])


def model_copy(bundle: Path, dest: Path) -> Path:
    """A copy of the bundle sharing its files (hard links): files to change must be replaced, not edited."""
    subprocess.run(["cp", "-al", str(bundle), str(dest)], check=True)
    return dest


def install(inventory: Path, bundle: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), "install", "-i", str(inventory), "--bundle", str(bundle), "--json"],
        capture_output=True, text=True, timeout=1200,
    )


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (from /proc), whatever their process group or session."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def kill_run(proc: subprocess.Popen[str]) -> None:
    """kill -9 of the whole run, as a controller crash does: the install's process group and every process
    it started. (Ansible runs each module, here synchronize and its rsync and ssh, in a session of its
    own: killing the process group alone leaves that rsync running, and it finishes the copy.)"""
    tree = process_tree(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def remote_files(target_set: Any, target: Any, root: str) -> dict[str, tuple[int, int]]:
    """path under root -> (inode, size) of every regular file."""
    out = ssh(target_set, target, f"cd {root} && find . -type f -printf '%P %i %s\\n'")
    return {p: (int(i), int(s)) for p, i, s in (line.split(" ") for line in out.splitlines())}


def remote_sha(target_set: Any, target: Any, path: str) -> str:
    return ssh(target_set, target, f"sha256sum {path}").split()[0]


def services_state(target_set: Any, target: Any) -> dict[str, dict[str, str]]:
    return {u: unit_props(target_set, target, u, "ActiveState", "MainPID", "ActiveEnterTimestampMonotonic")
            for u in UNITS}


def assert_answering(target_set: Any, target: Any) -> None:
    for name, port in HEALTH.items():
        with urllib.request.urlopen(f"http://{target.ip}:{port}/health", timeout=10) as answer:
            assert answer.status == 200, f"{name} /health answered {answer.status}"


# ---------------------------------------------------------------- a corrupted weight file in the bundle


def test_corrupted_weight_in_bundle_is_refused_before_any_restart(
    installed: None, bundle: Path, inventory: Path, target_set: Any, target: Any, tmp_path: Path
) -> None:
    weights = max((a for a in artifacts(bundle) if a["path"].startswith(PREFIX + CHAT + "/blobs/")),
                  key=lambda a: a["size"])
    rel = weights["path"][len(PREFIX):]
    bad = model_copy(bundle, tmp_path / "bundle")
    data = bytearray((bundle / weights["path"]).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size, new mtime
    (bad / weights["path"]).unlink()  # break the hard link: the real bundle stays good
    (bad / weights["path"]).write_bytes(bytes(data))
    bad_sha = hashlib.sha256(data).hexdigest()

    before = services_state(target_set, target)
    hub_before = remote_files(target_set, target, HUB)
    assert all(s["ActiveState"] == "active" for s in before.values()), before

    # Direct push: rsync compares the bundle's file with the host's (size and time) and sends the changed one.
    direct = tmp_path / "inventory"
    shutil.copytree(inventory, direct)
    (direct / "group_vars" / "all.yml").write_text(yaml.safe_dump({"airgap_llm_model_store_relay": False}))
    result = install(direct, bad)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    said = result.stdout + result.stderr
    assert weights["path"] in said, said[-3000:]
    assert f"sha256 {bad_sha}, expected {weights['sha256']}" in said, said[-3000:]
    assert "corrupted" in said

    # Nothing restarted, both services keep answering, the verified file in the hub is untouched.
    assert services_state(target_set, target) == before
    assert_answering(target_set, target)
    assert remote_files(target_set, target, HUB) == hub_before
    assert remote_sha(target_set, target, f"{HUB}/{rel}") == weights["sha256"]

    # The good bundle then installs: the bad copy in the staging area is replaced, nothing restarts.
    result = install(inventory, bundle)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert services_state(target_set, target) == before
    assert remote_files(target_set, target, HUB) == hub_before
    assert remote_sha(target_set, target, f"{STAGING}/{rel}") == weights["sha256"]
    assert_answering(target_set, target)


# ---------------------------------------------------------------- kill -9 during the copy


def with_new_files(bundle: Path, dest: Path, count: int, size: int) -> tuple[Path, list[dict[str, Any]]]:
    """A bundle copy whose chat model gains ``count`` files of random data (a new revision's files)."""
    new = model_copy(bundle, dest)
    manifest = json.loads((bundle / "manifest.json").read_text())
    ref = next(a for a in manifest["artifacts"] if a["path"] == f"{PREFIX}{CHAT}/refs/main")
    commit = (bundle / ref["path"]).read_text().strip()
    added = []
    for i in range(count):
        data = os.urandom(size)
        sha = hashlib.sha256(data).hexdigest()
        blob = new / PREFIX / CHAT / "blobs" / sha
        blob.write_bytes(data)
        link = new / PREFIX / CHAT / "snapshots" / commit / f"extra-{i}.dat"
        link.symlink_to(f"../../blobs/{sha}")
        source = "test: random data"  # every artifact names where it came from
        entry = {"path": f"{PREFIX}{CHAT}/blobs/{sha}", "kind": "model", "size": size, "sha256": sha, "source": source}
        added.append(entry)
        manifest["artifacts"] += [
            entry,
            {"path": f"{PREFIX}{CHAT}/snapshots/{commit}/extra-{i}.dat", "kind": "model", "size": size,
             "sha256": sha, "source": source, "link": f"../../blobs/{sha}"},
        ]
    (new / "manifest.json").unlink()
    (new / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return new, added


def test_install_killed_while_copying_a_model_resumes_and_verifies(
    installed: None, bundle: Path, inventory: Path, target_set: Any, target: Any, tmp_path: Path
) -> None:
    new, added = with_new_files(bundle, tmp_path / "bundle", count=3, size=96 << 20)
    names = {a["path"].rsplit("/", 1)[1] for a in added}
    # The same inventory (and API key), with the copy held to 40 MB/s so that a file is surely in flight.
    slow = tmp_path / "inventory"
    shutil.copytree(inventory, slow)
    slow_vars = {"airgap_llm_model_store_rsync_opts": ["--bwlimit=40m"]}
    (slow / "group_vars" / "all.yml").write_text(yaml.safe_dump(slow_vars))
    blobs = f"{STAGING}/{CHAT}/blobs"

    log = (tmp_path / "install.log").open("w")
    proc = subprocess.Popen([str(CLI), "install", "-i", str(slow), "--bundle", str(new)], text=True,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    killed_at = None
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            listing = target_set.exec(target, "sh", "-c", f"ls -a {blobs} 2>/dev/null || true").stdout.split()
            whole = names & set(listing)
            in_flight = [n for n in listing if n.startswith(".") and n[1:].split(".")[0] in names]
            if whole and in_flight:
                kill_run(proc)
                killed_at = (sorted(whole), in_flight)
                break
            time.sleep(0.1)
    finally:
        if proc.poll() is None and killed_at is None:
            kill_run(proc)
        proc.wait()
        log.close()
    log_tail = (tmp_path / "install.log").read_text()[-3000:]
    assert killed_at is not None, f"never saw a new model file in flight:\n{log_tail}"
    time.sleep(3)  # the host's rsync sees the connection gone and keeps its partial file aside

    # No partial file under a final name: every new file present is whole and verifies; the hub
    # (what the services read) got none of them; the interrupted file's data is in the partial dir.
    staged = remote_files(target_set, target, blobs)
    arrived = {a["path"].rsplit("/", 1)[1]: a for a in added if a["path"].rsplit("/", 1)[1] in staged}
    assert arrived and len(arrived) < len(added), (killed_at, staged)
    for name, a in arrived.items():
        assert staged[name][1] == a["size"], name
        assert remote_sha(target_set, target, f"{blobs}/{name}") == a["sha256"], name
    hub = remote_files(target_set, target, f"{HUB}/{CHAT}/blobs")
    assert not names & set(hub), "a new file reached the hub before verification"
    assert not [p for p in hub if p.startswith(".")], hub
    partial = {p: s for p, s in staged.items() if p.startswith(".airgap-llm-partial/")}
    assert partial and all(0 < size < added[0]["size"] for _, size in partial.values()), staged

    # The rerun (full speed) completes; the files that had arrived whole are not sent again.
    result = install(inventory, new)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    after = remote_files(target_set, target, blobs)
    for name in arrived:
        assert after[name][0] == staged[name][0], f"{name} was sent again"
    assert not [p for p in after if p.startswith(".")], after  # partial dir and temporary files gone
    hub = remote_files(target_set, target, f"{HUB}/{CHAT}/blobs")
    for a in added:
        name = a["path"].rsplit("/", 1)[1]
        assert hub[name] == after[name], name  # the verified staging file itself (a hard link)
        assert remote_sha(target_set, target, f"{HUB}/{CHAT}/blobs/{name}") == a["sha256"]
    assert not [p for p in hub if p.startswith(".")], hub

    # The final tree verifies against the manifest, hashing every file again from scratch.
    report = json.loads(ssh(target_set, target, (
        f"python3 /usr/local/libexec/airgap-llm/airgap_llm_verify_models.py --expected {HF}/.airgap-llm-expected.json"
        f" --root {HUB}")))
    assert report["ok"] and report["hashed"] == report["files"], report
    assert_answering(target_set, target)
