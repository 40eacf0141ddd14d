"""Releases, a rolling upgrade with a canary and automatic rollback, and `rollback`, on two CPU targets with
no route out.

Bundle A is the demo's. Bundle B is made on the far side as a user makes it: the embedding model gets a new
revision (``refs/main`` moved to a new commit whose config.json differs; the weights are the same), a delta
from A is built with ``bundle build --since A/manifest.json``, patched into A with ``bundle patch`` and
verified. Release A is tests/e2e/inventories/cpu-upgrade (one embedding service per host) from bundle A;
B is bundle B with an engine argument added; C is bundle B with one more argument vLLM refuses, so the
service cannot start. The tests run in order, each on the state the one before left.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tiny_models
import yaml
from deployments import REPO, Deployment, demo_bundle, ssh, unit_props
from deployments import cli as _cli

from airgap_llm.bundle.layout import link_to_blob, model_folder, model_repo_dir
from airgap_llm.cli import main
from airgap_llm.tinymodels.hf_cache import MINILM_REPO, git_blob_sha1

pytestmark = pytest.mark.e2e

DEPLOYMENT = Deployment(
    name="up",
    subnet=ipaddress.IPv4Network("10.213.47.0/24"),
    inventory=REPO / "tests" / "e2e" / "inventories" / "cpu-upgrade",
    cache="demo",  # the demo's bundle carries this inventory's model, engine and wheel set
    models=tiny_models.all_models_cache,
    count=2,
)
UNIT = "airgap-llm-embed.service"
B_ARGS = ["--enforce-eager", "--max-num-seqs", "8"]
C_ARGS = ["--enforce-eager", "--max-num-seqs", "8", "--no-such-engine-flag"]
STATE = "/var/lib/airgap-llm/releases/state.json"
SNAPSHOTS = f"/var/lib/airgap-llm/hf/hub/{model_folder(MINILM_REPO)}/snapshots"  # the embed model's, on a host
LINK = "/var/lib/airgap-llm/models/embed"  # the embed service's model link (roles/model_store)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    """The CLI's JSON, without what earlier commands of the module printed."""
    capsys.readouterr()
    return _cli(capsys, *args)


@pytest.fixture(scope="module")
def bundle(deployment: Deployment, hf_home: Path) -> Path:
    """Bundle A."""
    return demo_bundle(deployment, hf_home)


@dataclass(frozen=True)
class BundleB:
    path: Path  # A patched with the delta
    delta: Path
    old: str  # the embed model's commit in A
    new: str  # its commit in B


def replace_file(path: Path, data: bytes) -> None:
    """Write ``path`` as a new file: in a hub copied with hard links, writing in place would change the
    file it shares with the original."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def copy_hub(src: Path, dst: Path) -> None:
    """A copy of a HF hub: files hard-linked (copied when on another file system), symlinks kept."""

    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, symlinks=True, copy_function=link)


def new_revision(hub: Path, repo_id: str) -> tuple[str, str]:
    """Move ``refs/main`` of ``repo_id`` to a new commit whose snapshot differs from the old one in
    config.json only (one key added, a new blob); the other files are the old snapshot's blobs."""
    repo = hub / model_folder(repo_id)
    old = (repo / "refs" / "main").read_text().strip()
    config = json.loads((repo / "snapshots" / old / "config.json").read_text())
    config["airgap_llm_test_revision"] = 2  # not a key of the model's architecture: the engine ignores it
    data = (json.dumps(config, indent=2) + "\n").encode()
    blob = repo / "blobs" / git_blob_sha1(data)
    replace_file(blob, data)
    new = hashlib.sha1(f"{repo_id}\n{old}\n{blob.name}".encode()).hexdigest()
    shutil.copytree(repo / "snapshots" / old, repo / "snapshots" / new, symlinks=True)
    link_to_blob(repo / "snapshots" / new / "config.json", blob)
    replace_file(repo / "refs" / "main", new.encode())
    return old, new


@pytest.fixture(scope="module")
def bundle_b(bundle: Path, hf_home: Path, tmp_path_factory: pytest.TempPathFactory) -> BundleB:
    """On the far side: a new revision of the embed model in a copy of the demo's hub (the shared cache is
    left as it is), a delta from A's manifest, A patched with it into B, B verified."""
    root = tmp_path_factory.mktemp("bundle-b")
    hub = root / "hf" / "hub"
    copy_hub(hf_home / "hub", hub)
    old, new = new_revision(hub, MINILM_REPO)
    assert (hf_home / "hub" / model_folder(MINILM_REPO) / "refs" / "main").read_text().strip() == old
    delta, out = root / "delta", root / "b"
    started = time.monotonic()
    assert main(["bundle", "build", "-i", str(REPO / "inventories" / "local-cpu"), "--models-from", str(hub.parent),
                 "--since", str(bundle / "manifest.json"), "-o", str(delta)]) == 0
    built = time.monotonic()
    assert main(["bundle", "patch", str(bundle), str(delta), "-o", str(out)]) == 0
    assert main(["bundle", "verify", str(out)]) == 0
    print(f"delta build {built - started:.1f} s, patch and verify {time.monotonic() - built:.1f} s")
    return BundleB(out, delta, old, new)


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """A measurement, printed past the capture: ``cli`` reads and drops what the test printed before it."""
    with capsys.disabled():
        print(f"\n  {line}")


def set_args(inventory: Path, args: list[str]) -> None:
    path = inventory / "group_vars" / "airgap_llm.yml"
    data = yaml.safe_load(path.read_text())
    data["airgap_llm_services"]["embed"]["extra_args"] = args
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def exec_start(target_set: Any, t: Any) -> str:
    return ssh(target_set, t, f"systemctl show -p ExecStart --value {UNIT}")


def releases(capsys: pytest.CaptureFixture[str], inventory: Path) -> dict[str, Any]:
    rc, result = cli(capsys, "status", "-i", str(inventory), "--json")
    assert rc == 0, result
    return {h: rep["releases"] for h, rep in result["hosts"].items()}


def model_link(target_set: Any, t: Any) -> str:
    """The snapshot the embed service's model link points at."""
    return ssh(target_set, t, f"readlink -f {LINK}")


def embed(inventory: Path, t: Any) -> None:
    key = (inventory / "credentials" / "airgap_llm_api_key").read_text().strip()
    body = json.dumps({"model": "embed", "input": "shalom"}).encode()
    request = urllib.request.Request(f"http://{t.ip}:8001/v1/embeddings", data=body,
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert len(json.loads(response.read())["data"][0]["embedding"]) == 384


class ClientLoop:
    """Requests to one host, one after another, until stopped: how many were sent and how many failed."""

    def __init__(self, inventory: Path, t: Any) -> None:
        self.sent = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(inventory, t), daemon=True)

    def _run(self, inventory: Path, t: Any) -> None:
        while not self._stop.is_set():
            self.sent += 1
            try:
                embed(inventory, t)
            except Exception as exc:  # noqa: BLE001 - every kind of failure counts
                self.failed.append(repr(exc))
            self._stop.wait(0.5)

    def __enter__(self) -> ClientLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def test_b_is_a_small_delta_patched_into_a(bundle: Path, bundle_b: BundleB) -> None:
    """The delta carries the new revision's config blob and ref (and what the build signs anew), never
    the weights; B holds A's weights as hard links and the new revision at ``refs/main``."""
    model = model_repo_dir(MINILM_REPO)
    info = json.loads((bundle_b.delta / "delta.json").read_text())
    carried: list[str] = info["carried"]
    print(f"delta A->B: {info['carried_bytes']} bytes carried ({len(carried)} of {info['files']} files) "
          f"of the full bundle's {info['full_bytes']} bytes: {', '.join(carried)}")
    config = Path(os.readlink(bundle_b.path / model / "snapshots" / bundle_b.new / "config.json")).name
    assert sorted(p for p in carried if p.startswith(f"{model}/")) == [f"{model}/blobs/{config}", f"{model}/refs/main"]
    assert info["carried_bytes"] * 1000 < info["full_bytes"], info
    weights = Path(os.readlink(bundle / model / "snapshots" / bundle_b.old / "model.safetensors")).name
    assert f"{model}/blobs/{weights}" not in carried
    assert not (bundle_b.delta / model / "blobs" / weights).exists()
    inode = (bundle / model / "blobs" / weights).stat().st_ino
    assert (bundle_b.path / model / "blobs" / weights).stat().st_ino == inode  # hard-linked from A by the patch
    assert (bundle_b.path / model / "refs" / "main").read_text().strip() == bundle_b.new != bundle_b.old
    assert (bundle / model / "refs" / "main").read_text().strip() == bundle_b.old  # A is as it was


@pytest.fixture(scope="module")
def installed_a(bundle: Path, inventory: Path, target_set: Any) -> dict[str, Any]:
    started = time.monotonic()
    rc = main(["install", "-i", str(inventory), "--bundle", str(bundle)])
    return {"rc": rc, "seconds": round(time.monotonic() - started, 1)}


def test_install_records_a_release_on_each_host(installed_a: dict[str, Any], inventory: Path, target_set: Any,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert installed_a["rc"] == 0
    report(capsys, f"install A on two hosts: {installed_a['seconds']} s")
    rel = releases(capsys, inventory)
    assert set(rel) == {"up-1", "up-2"}
    for host, r in rel.items():
        assert r["live"] is not None and r["previous"] is None, (host, r)
        assert r["live"]["models"]["embed"] and r["live"]["venv"], r
    for t in target_set.targets:
        state = json.loads(ssh(target_set, t, f"cat {STATE}"))
        assert model_link(target_set, t) == state["live"]["models"]["embed"], state["live"]["models"]
        files = state["live"]["files"]
        assert f"/etc/systemd/system/{UNIT}" in files and "/etc/airgap-llm/embed.env" in files
        # A copy of each file, kept for rollback.
        assert ssh(target_set, t, f"cmp /etc/systemd/system/{UNIT} "
                   f"/var/lib/airgap-llm/releases/{state['live']['id']}/files/etc/systemd/system/{UNIT} && echo same") \
            == "same"


def test_upgrade_to_b_canary_first_then_the_other(inventory: Path, bundle_b: BundleB, target_set: Any,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """B: a new engine argument and the embed model's new revision; the previous release (A) keeps the
    old snapshot named, and the host keeps it."""
    before = releases(capsys, inventory)
    assert {r["live"]["models"]["embed"] for r in before.values()} == {bundle_b.old}, before
    set_args(inventory, B_ARGS)
    started = time.monotonic()
    rc, out = cli(capsys, "upgrade", "-i", str(inventory), "--bundle", str(bundle_b.path), "--canary", "up-1",
                  "--json")
    report(capsys, f"upgrade A->B of two hosts: {time.monotonic() - started:.1f} s")
    assert rc == 0, out
    assert out["batches"] == [["up-1"], ["up-2"]]
    assert {h: r["result"] for h, r in out["hosts"].items()} == {"up-1": "upgraded", "up-2": "upgraded"}
    after = releases(capsys, inventory)
    for t in target_set.targets:
        assert "--max-num-seqs 8" in exec_start(target_set, t) or "--max-num-seqs ; 8" in exec_start(target_set, t)
        assert after[t.name]["previous"]["id"] == before[t.name]["live"]["id"]
        assert after[t.name]["live"]["id"] != before[t.name]["live"]["id"]
        assert after[t.name]["live"]["models"]["embed"] == bundle_b.new, after[t.name]
        assert after[t.name]["previous"]["models"]["embed"] == bundle_b.old, after[t.name]
        assert model_link(target_set, t) == f"{SNAPSHOTS}/{bundle_b.new}"
        state = json.loads(ssh(target_set, t, f"cat {STATE}"))
        assert state["live"]["models"]["embed"] == f"{SNAPSHOTS}/{bundle_b.new}", state["live"]
        assert state["previous"]["models"]["embed"] == f"{SNAPSHOTS}/{bundle_b.old}", state["previous"]
        assert ssh(target_set, t, f"test -f {SNAPSHOTS}/{bundle_b.old}/model.safetensors && echo kept") == "kept"
        embed(inventory, t)


def test_broken_upgrade_c_rolls_the_canary_back_and_leaves_host_2_untouched(
    inventory: Path, bundle_b: BundleB, target_set: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    h1, h2 = target_set.targets
    b = releases(capsys, inventory)
    h2_before = unit_props(target_set, h2, UNIT)
    set_args(inventory, C_ARGS)
    with ClientLoop(inventory, h2) as loop:
        rc, out = cli(capsys, "upgrade", "-i", str(inventory), "--bundle", str(bundle_b.path), "--json")
        time.sleep(2)
    assert rc == 1, out
    failure = out["failure"]
    assert failure["host"] == "up-1" and failure["step"].startswith("install"), failure
    assert UNIT in failure["reason"], failure
    assert failure["rolled_back_to"] == b["up-1"]["live"]["id"] and failure["answers"] is True, failure
    assert failure["not_reached"] == ["up-2"]
    assert out["hosts"]["up-2"]["result"] == "untouched"
    # The canary is on B again and answers; host 2 was never touched and answered every request.
    assert "--no-such-engine-flag" not in exec_start(target_set, h1) and "--max-num-seqs" in exec_start(target_set, h1)
    embed(inventory, h1)
    assert model_link(target_set, h1) == model_link(target_set, h2) == f"{SNAPSHOTS}/{bundle_b.new}"
    assert unit_props(target_set, h2, UNIT) == h2_before
    assert "--no-such-engine-flag" not in exec_start(target_set, h2)
    report(capsys, f"client loop on up-2 during the failed upgrade: {loop.sent} requests, {len(loop.failed)} failed")
    assert loop.sent > 0 and loop.failed == [], loop.failed
    now = releases(capsys, inventory)
    assert {h: r["live"]["id"] for h, r in now.items()} == {h: r["live"]["id"] for h, r in b.items()}


def test_rollback_to_a_and_back_to_b(inventory: Path, bundle_b: BundleB, target_set: Any,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    set_args(inventory, B_ARGS)  # the inventory as the hosts run it
    b = releases(capsys, inventory)
    rc, out = cli(capsys, "rollback", "-i", str(inventory), "--json")
    assert rc == 0, out
    for t in target_set.targets:
        r = out["hosts"][t.name]
        assert r["release"] == b[t.name]["previous"]["id"] and r["restarted"] == [UNIT], r
        assert "--max-num-seqs" not in exec_start(target_set, t)
        assert model_link(target_set, t) == f"{SNAPSHOTS}/{bundle_b.old}"  # A's model revision again
        embed(inventory, t)
    a = releases(capsys, inventory)
    for h in a:
        assert a[h]["live"]["id"] == b[h]["previous"]["id"] and a[h]["previous"]["id"] == b[h]["live"]["id"]
        assert a[h]["rolled_back"]["from"] == b[h]["live"]["id"]
    # A second rollback goes back: the two swap again.
    rc, out = cli(capsys, "rollback", "-i", str(inventory), "--limit", "up-2", "--json")
    assert rc == 0 and list(out["hosts"]) == ["up-2"], out
    h1, h2 = target_set.targets
    assert "--max-num-seqs" in exec_start(target_set, h2) and "--max-num-seqs" not in exec_start(target_set, h1)
    assert model_link(target_set, h2) == f"{SNAPSHOTS}/{bundle_b.new}"
    assert model_link(target_set, h1) == f"{SNAPSHOTS}/{bundle_b.old}"
    embed(inventory, h2)
    assert releases(capsys, inventory)["up-2"]["live"]["id"] == b["up-2"]["live"]["id"]


def test_install_over_a_rollback_says_so_and_pruning_keeps_live_and_previous(
    inventory: Path, bundle_b: BundleB, target_set: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """up-1 is on A by a rollback. Before installing B over it: a venv and a model snapshot that no release
    names, and the previous release (B) pointed at a venv and a snapshot of its own: the install keeps the
    live and previous ones and removes the others."""
    h1 = target_set.targets[0]
    hub = SNAPSHOTS
    state = json.loads(ssh(target_set, h1, f"cat {STATE}"))
    assert state["rolled_back"] is not None
    live_venv = state["live"]["venv"]
    state["previous"]["venv"] = "/opt/airgap-llm/venvs/previous-kept"
    state["previous"]["models"]["embed"] = f"{hub}/previous-kept"
    ssh(target_set, h1, "mkdir -p /opt/airgap-llm/venvs/previous-kept /opt/airgap-llm/venvs/unnamed "
        f"{hub}/previous-kept {hub}/unnamed && touch {hub}/previous-kept/f {hub}/unnamed/f "
        f"&& echo '{json.dumps(state)}' > {STATE}")
    rc, out = cli(capsys, "install", "-i", str(inventory), "--bundle", str(bundle_b.path), "--limit", "up-1",
                  "--json")
    assert rc == 0, out
    (line,) = out["replaced_rolled_back"]
    assert line.startswith("up-1 had been rolled back") and state["live"]["id"] in line, line
    venvs = set(ssh(target_set, h1, "ls /opt/airgap-llm/venvs").split())
    assert venvs == {live_venv.rsplit("/", 1)[1], "previous-kept"}, venvs
    snaps = set(ssh(target_set, h1, f"ls {hub}").split())
    assert "previous-kept" in snaps and "unnamed" not in snaps, snaps
    # A's snapshot, which the rolled-back live release named, is kept: the new previous release names it.
    assert {bundle_b.old, bundle_b.new} <= snaps, snaps
    assert model_link(target_set, h1) == f"{hub}/{bundle_b.new}"
    embed(inventory, h1)
    after = json.loads(ssh(target_set, h1, f"cat {STATE}"))
    assert after["previous"]["id"] == state["live"]["id"] and after["rolled_back"] is None
    assert after["live"]["models"]["embed"] == f"{hub}/{bundle_b.new}"
    assert after["previous"]["models"]["embed"] == f"{hub}/{bundle_b.old}"
    kept = set(ssh(target_set, h1, "ls /var/lib/airgap-llm/releases").split())
    assert kept == {after["live"]["id"], after["previous"]["id"], "state.json"}, kept
