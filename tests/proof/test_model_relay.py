"""Relay staging of model weights on three real targets (``playbooks/models.yml``, fan-out 1: the chain
rlrelay-1 -> rlrelay-2 -> rlrelay-3, so rlrelay-2 is a middle host):

- rlrelay-2 holds a corrupted copy of the model's weights in its staging area (one byte flipped, same size
  and mtime as the bundle's file, so rsync's quick check keeps it, as a bad disk would): in the pipelined
  pass its pull hashes the file and catches it, it publishes nothing and passes nothing on; rlrelay-3,
  its child in the tree, gives up on it and a wave after the pass pulls from rlrelay-1 instead, and it
  ends with a good copy, as does rlrelay-1; the run fails naming the file; afterwards
  no relay daemon, secret or configuration is left on any host and nothing listens on the relay's port;
- ``kill -9`` of the run while a host serves a wave leaves its daemon behind (the controller could not stop
  it); the next run stops it first, then completes, and leaves nothing behind;
- a rerun changes nothing and runs no wave (every host holds a verified copy); nor does ``--check``.

Target set ``rlrelay`` (3 targets, a free /24). Cost: 136-236 s on the 2-core machine (about 45 s of it
starting the targets and making the bundle).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "hosts"))
import targets  # noqa: E402

pytestmark = pytest.mark.e2e

NAME = "rlrelay"
HF = "/var/lib/airgap-llm/hf"
STAGING = f"{HF}/.airgap-llm-staging"
HUB = f"{HF}/hub"
RELAY_DIR = "/run/airgap-llm-relay"
PORT = 8730
MODEL = "models--sentence-transformers--all-MiniLM-L6-v2"
PREFIX = "models/hub/"
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
GROUP_VARS = {
    "airgap_llm_target_os": "debian-12",
    "airgap_llm_model_store_fanout": 1,
    "airgap_llm_services": {
        "embed": {"kind": "embedding", "model": "sentence-transformers/all-MiniLM-L6-v2", "revision": "main",
                  "port": 8001, "gpus": []},
    },
}


@pytest.fixture(scope="module")
def target_set() -> Iterator[Any]:
    if os.geteuid() != 0:
        pytest.skip("starts podman containers: run as root")
    os.environ.setdefault("CONTAINERS_CONF", str(REPO / "tests" / "hosts" / "containers.conf"))
    ts = targets.TargetSet(NAME, count=3, group="airgap_llm")
    ts.down()
    try:
        ts.up()
        yield ts
    finally:
        ts.down()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model_store scenario's bundle: the real all-MiniLM-L6-v2, models part only."""
    out = tmp_path_factory.mktemp("relay-bundle")
    subprocess.run([sys.executable, str(REPO / "roles/model_store/molecule/default/make_bundle.py"), str(out)],
                   check=True, capture_output=True)
    return out / "bundle"


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory, target_set: Any) -> Path:
    inv = tmp_path_factory.mktemp("relay-inv")
    (inv / "group_vars").mkdir()
    (inv / "group_vars" / "airgap_llm.yml").write_text(yaml.safe_dump(GROUP_VARS))
    hosts = {"airgap_llm": {"hosts": {
        t.name: {"ansible_host": str(t.ip), "ansible_user": "root",
                 "ansible_ssh_private_key_file": str(target_set.key_file),
                 "ansible_ssh_common_args": targets.SSH_COMMON_ARGS}
        for t in target_set.targets}}}
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    return inv


def playbook_command(inventory: Path, bundle: Path, *extra: str) -> list[str]:
    return [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(REPO / "playbooks" / "models.yml"),
            "-e", f"airgap_llm_bundle_dir={bundle}", *extra]


def env() -> dict[str, str]:
    return {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}


def run_models(inventory: Path, bundle: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(playbook_command(inventory, bundle, *extra), capture_output=True, text=True,
                          env=env(), cwd=REPO, timeout=900, check=False)


def sh(ts: Any, t: Any, command: str) -> str:
    """The command's output on the target (its exit status aside: `ls` of what must be absent fails)."""
    return str(ts.ssh(t, f"{{ {command}; }}; true").stdout)


def weights(bundle: Path) -> dict[str, Any]:
    """The manifest entry of the model's largest file (its weights)."""
    files = [a for a in json.loads((bundle / "manifest.json").read_text())["artifacts"]
             if a["path"].startswith(PREFIX + MODEL + "/blobs/")]
    return max(files, key=lambda a: a["size"])


def hub_matches(ts: Any, t: Any, bundle: Path) -> bool:
    """Every file of the model in the host's hub has the manifest's sha256."""
    entries = [a for a in json.loads((bundle / "manifest.json").read_text())["artifacts"]
               if a["path"].startswith(PREFIX + MODEL + "/blobs/")]
    out = sh(ts, t, f"cd {HUB} && sha256sum " + " ".join(a["path"][len(PREFIX):] for a in entries) + " 2>/dev/null")
    got = {line.split()[1]: line.split()[0] for line in out.splitlines() if line.strip()}
    return bool(entries) and all(got.get(a["path"][len(PREFIX):]) == a["sha256"] for a in entries)


def leftovers(ts: Any) -> dict[str, str]:
    """Per host, anything of the relay still there: its directory (secret, configuration), a daemon, a listener."""
    found = {}
    for t in ts.targets:
        out = sh(ts, t, f"ls -A {RELAY_DIR} 2>/dev/null; pgrep -a rsync; ss -Hltn 'sport = :{PORT}'").strip()
        if out:
            found[t.name] = out
    return found


def wave_lines(output: str) -> list[str]:
    """The relay's plan as the run showed it: the pipelined pass's tree, then each wave after it."""
    return [line.split('"msg": "', 1)[1].rstrip('"') for line in output.splitlines()
            if '"msg": "relay wave' in line or '"msg": "relay pass' in line]


def test_a_corrupted_copy_on_a_middle_host_is_caught_there_and_not_passed_on(
        target_set: Any, inventory: Path, bundle: Path) -> None:
    first, middle, last = target_set.targets
    w = weights(bundle)
    rel = w["path"][len(PREFIX):]
    # The middle host already holds the weights, one byte flipped, with the bundle file's size and mtime.
    good = (bundle / w["path"]).read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    mtime = (bundle / w["path"]).stat().st_mtime_ns
    target_set.exec(middle, "mkdir", "-p", os.path.dirname(f"{STAGING}/{rel}"))
    stamp = f"@{mtime // 10**9}.{mtime % 10**9:09d}"
    subprocess.run(target_set.ssh_command(middle, f"cat > {STAGING}/{rel} && touch -d {stamp} {STAGING}/{rel}"),
                   input=bytes(bad), check=True)
    assert hashlib.sha256(bytes(bad)).hexdigest() != w["sha256"]

    result = run_models(inventory, bundle)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-3000:]
    waves = wave_lines(out)
    # The pass runs the chain 1 -> 2 -> 3 at once; the middle host's copy fails there, so its child gets
    # nothing more from it and a wave after the pass takes the model from the first host.
    assert waves == [f"relay pass (level by level, all at once): {first.name} <- controller ({MODEL}); "
                     f"{middle.name} <- {first.name} ({MODEL}); {last.name} <- {middle.name} ({MODEL})",
                     f"relay wave 1: {last.name} <- {first.name} ({MODEL})"], "\n".join(waves) + out[-3000:]
    assert f"corrupted: {w['path']}" in out and w["sha256"] in out
    assert f"fatal: [{middle.name}]" in out
    # Caught there: nothing published on the middle host, good copies on the others.
    assert sh(target_set, middle, f"ls {HUB}/{MODEL} 2>/dev/null").strip() == ""
    assert hub_matches(target_set, first, bundle)
    assert hub_matches(target_set, last, bundle)
    recap = {line.split()[0]: line for line in out.splitlines() if "failed=" in line}
    assert "failed=1" in recap[middle.name] and "failed=0" in recap[last.name] and "failed=0" in recap[first.name]
    # The run failed; no relay credential, configuration, daemon or listener is left on any host.
    assert leftovers(target_set) == {}


def test_an_interrupted_run_leaves_a_daemon_the_next_run_stops(target_set: Any, inventory: Path, bundle: Path) -> None:
    first, middle, last = target_set.targets
    # Repair the middle host (drop its bad staged file) and empty the last one, so the run relays again.
    w = weights(bundle)
    sh(target_set, middle, f"rm -f {STAGING}/{w['path'][len(PREFIX):]}")
    sh(target_set, last, f"rm -rf {STAGING}/{MODEL} {HUB}/{MODEL} {HF}/.airgap-llm-verified.json")
    # Slow the relay's copies down (2 MB/s) so the run can be killed while a host serves.
    proc = subprocess.Popen(playbook_command(inventory, bundle, "-e", '{"airgap_llm_model_store_rsync_opts": '
                                                                      '["--bwlimit=2m"]}'),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(), cwd=REPO,
                            start_new_session=True)
    serving = None
    try:
        deadline = time.monotonic() + 300
        while serving is None and time.monotonic() < deadline and proc.poll() is None:
            for t in (first, middle):
                if sh(target_set, t, f"test -e {RELAY_DIR}/rsyncd.pid && echo up").strip() == "up":
                    serving = t
                    break
            time.sleep(0.5)
        assert serving is not None, "no host started serving a wave"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    time.sleep(1)
    left = leftovers(target_set)
    assert serving.name in left and "rsync --daemon" in left[serving.name], left  # what kill -9 leaves
    # It listened on the serving host's cluster address only, on the relay's port.
    assert f"{serving.ip}:{PORT}" in left[serving.name] and f"0.0.0.0:{PORT}" not in left[serving.name], left

    result = run_models(inventory, bundle)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    assert "Stop a relay daemon an interrupted run left behind" in out
    assert f"changed: [{serving.name}]" in out.split("Stop a relay daemon an interrupted run left behind", 1)[1] \
        .split("TASK [", 1)[0]
    for t in target_set.targets:
        assert hub_matches(target_set, t, bundle), t.name
    assert leftovers(target_set) == {}


def test_a_rerun_relays_nothing_and_changes_nothing(target_set: Any, inventory: Path, bundle: Path) -> None:
    result = run_models(inventory, bundle)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert wave_lines(out) == []
    recap = [line for line in out.splitlines() if "changed=" in line and NAME in line]
    assert len(recap) == 3 and all("changed=0" in line and "failed=0" in line for line in recap), recap
    assert leftovers(target_set) == {}
    # Check mode shows the direct copy's dry run (nothing to copy) and changes nothing either.
    check = run_models(inventory, bundle, "--check")
    assert check.returncode == 0, (check.stdout + check.stderr)[-3000:]
    recap = [line for line in check.stdout.splitlines() if "changed=" in line and NAME in line]
    assert len(recap) == 3 and all("changed=0" in line and "failed=0" in line for line in recap), recap
    shutil.rmtree(bundle.parent / "hf-cache", ignore_errors=True)
