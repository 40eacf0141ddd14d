"""The model_store role's host-side verify script: what it re-hashes given a record, and what it catches."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .conftest import REPO

SCRIPT = REPO / "roles" / "model_store" / "files" / "airgap_llm_verify_models.py"
PREFIX = "models/hub/"
REPO_DIR = "models--org--tiny"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("airgap_llm_verify_models", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


vm = load_script()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- pure logic ---------------------------------------------------------------------------------


def entry(path: str, data: bytes, link: str | None = None) -> Any:
    return vm.Entry(path, len(data), sha(data), link)


def test_record_match_is_trusted_and_any_difference_is_hashed() -> None:
    data = b"weights"
    e = entry("m/blobs/a", data)
    seen = {"m/blobs/a": vm.Seen("file", len(data), 1000)}
    good = {"m/blobs/a": {"size": len(data), "mtime_ns": 1000, "sha256": sha(data)}}
    assert vm.plan_checks([e], seen, good) == vm.Plan([], [e], [])

    for change in ({"mtime_ns": 1001}, {"size": len(data) + 1}, {"sha256": sha(b"other")}):
        record = {"m/blobs/a": {**good["m/blobs/a"], **change}}
        assert vm.plan_checks([e], seen, record) == vm.Plan([e], [], []), change
    assert vm.plan_checks([e], seen, {}) == vm.Plan([e], [], [])


def test_missing_wrong_size_and_bad_links_fail_without_hashing() -> None:
    data = b"0123456789"
    entries = [
        entry("m/blobs/gone", data),
        entry("m/blobs/short", data),
        entry("m/blobs/dir", data),
        entry("m/snapshots/c/ok.json", data, "../../blobs/x"),
        entry("m/snapshots/c/moved.json", data, "../../blobs/x"),
        entry("m/snapshots/c/plain.json", data, "../../blobs/x"),
        entry("m/snapshots/c/absent.json", data, "../../blobs/x"),
    ]
    seen = {
        "m/blobs/gone": None,
        "m/blobs/short": vm.Seen("file", 3, 1),
        "m/blobs/dir": vm.Seen("other"),
        "m/snapshots/c/ok.json": vm.Seen("link", link="../../blobs/x"),
        "m/snapshots/c/moved.json": vm.Seen("link", link="../../blobs/y"),
        "m/snapshots/c/plain.json": vm.Seen("file", len(data), 1),
        "m/snapshots/c/absent.json": None,
    }
    plan = vm.plan_checks(entries, seen, {})
    assert plan.to_hash == [] and plan.trusted == []
    problems = {f.path: f.problem for f in plan.failures}
    assert problems == {
        "m/blobs/gone": "missing",
        "m/blobs/short": "size-mismatch",
        "m/blobs/dir": "not-a-file",
        "m/snapshots/c/moved.json": "bad-link",
        "m/snapshots/c/plain.json": "bad-link",
        "m/snapshots/c/absent.json": "missing",
    }
    detail = {f.path: f.detail for f in plan.failures}
    assert detail["m/blobs/short"] == "3 bytes, expected 10"
    assert detail["m/snapshots/c/moved.json"] == "points to ../../blobs/y, expected ../../blobs/x"


def test_new_record_keeps_only_verified_files() -> None:
    a, b, c = b"aaaa", b"bbbb", b"cccc"
    entries = [entry("a", a), entry("b", b), entry("c", c), entry("l", a, "a")]
    seen = {
        "a": vm.Seen("file", 4, 1),
        "b": vm.Seen("file", 4, 2),
        "c": vm.Seen("file", 4, 3),
        "l": vm.Seen("link", link="a"),
    }
    record = vm.new_record(entries, seen, trusted=[entries[0]], hashed={"b": sha(b), "c": sha(b"flipped")})
    assert record == {
        "a": {"size": 4, "mtime_ns": 1, "sha256": sha(a)},
        "b": {"size": 4, "mtime_ns": 2, "sha256": sha(b)},
    }
    failures = vm.hash_failures([entries[1], entries[2]], {"b": sha(b), "c": sha(b"flipped")})
    assert failures == [vm.Failure("c", "corrupted", f"sha256 {sha(b'flipped')}, expected {sha(c)}")]


def test_parse_expected_strips_the_prefix_and_refuses_unsafe_paths() -> None:
    data = {"prefix": PREFIX, "entries": [{"path": PREFIX + "m/blobs/a", "size": 1, "sha256": "0" * 64}]}
    assert vm.parse_expected(data) == [vm.Entry("m/blobs/a", 1, "0" * 64, None)]
    for bad in (PREFIX + "../etc/passwd", "elsewhere/m/a", PREFIX + "m//a", PREFIX):
        with pytest.raises(vm.InputProblem):
            vm.parse_expected({"prefix": PREFIX, "entries": [{"path": bad, "size": 1, "sha256": "0" * 64}]})


# --- on a real tree -----------------------------------------------------------------------------


@pytest.fixture
def staged(tmp_path: Path) -> dict[str, Path]:
    """A tiny HF cache repo (two blobs, two snapshot links) and the expected-entries file for it."""
    hub = tmp_path / "hub"
    files = {"config.json": b'{"hidden_size": 8}\n', "model.safetensors": os.urandom(300_000)}
    entries = []
    repo = hub / REPO_DIR
    (repo / "blobs").mkdir(parents=True)
    (repo / "snapshots" / "c0ffee").mkdir(parents=True)
    for name, data in files.items():
        blob = sha(data)
        (repo / "blobs" / blob).write_bytes(data)
        (repo / "snapshots" / "c0ffee" / name).symlink_to(f"../../blobs/{blob}")
        entries.append({"path": f"{PREFIX}{REPO_DIR}/blobs/{blob}", "size": len(data), "sha256": blob})
        link = {"path": f"{PREFIX}{REPO_DIR}/snapshots/c0ffee/{name}", "size": len(data), "sha256": blob}
        entries.append({**link, "link": f"../../blobs/{blob}"})
    expected = tmp_path / "expected.json"
    expected.write_text(json.dumps({"format": 1, "prefix": PREFIX, "entries": entries}))
    weights = repo / "blobs" / sha(files["model.safetensors"])
    return {"hub": hub, "expected": expected, "record": tmp_path / "verified.json", "weights": weights}


def run(staged: dict[str, Path]) -> tuple[int, dict[str, Any]]:
    rc, report = vm.run(str(staged["expected"]), str(staged["hub"]), str(staged["record"]), 2)
    return rc, report


def test_second_run_hashes_nothing_and_leaves_the_record_alone(staged: dict[str, Path]) -> None:
    rc, first = run(staged)
    assert rc == 0 and first["ok"], first
    assert (first["files"], first["links"], first["hashed"], first["trusted"]) == (2, 2, 2, 0)
    assert first["record_changed"] is True
    record_text = staged["record"].read_text()
    record_mtime = staged["record"].stat().st_mtime_ns

    rc, second = run(staged)
    assert rc == 0
    assert (second["hashed"], second["hashed_bytes"], second["trusted"], second["record_changed"]) == (0, 0, 2, False)
    assert staged["record"].read_text() == record_text
    assert staged["record"].stat().st_mtime_ns == record_mtime


def test_a_flipped_byte_is_named_with_both_hashes_and_not_trusted_afterwards(staged: dict[str, Path]) -> None:
    assert run(staged)[0] == 0
    weights = staged["weights"]
    original = weights.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    weights.write_bytes(bytes(flipped))
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a later write, as any writer leaves

    rc, report = run(staged)
    assert rc == 1 and not report["ok"]
    rel = f"{REPO_DIR}/blobs/{sha(original)}"
    assert report["failures"] == [
        {"path": rel, "problem": "corrupted", "detail": f"sha256 {sha(bytes(flipped))}, expected {sha(original)}"}
    ]
    assert rel not in json.loads(staged["record"].read_text())["files"]

    # Still corrupted on the next run: the failure is not remembered as verified.
    rc, again = run(staged)
    assert rc == 1 and again["hashed"] == 1

    weights.write_bytes(original)
    rc, repaired = run(staged)
    assert rc == 0 and repaired["hashed"] == 1 and repaired["trusted"] == 1


def test_main_exit_codes(staged: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--expected", str(staged["expected"]), "--root", str(staged["hub"]), "--record", str(staged["record"])]
    assert vm.main(args) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    next((staged["hub"] / REPO_DIR / "snapshots" / "c0ffee").iterdir()).unlink()
    assert vm.main(args) == 1
    assert json.loads(capsys.readouterr().out)["failures"][0]["problem"] == "missing"
    staged["expected"].write_text("{not json")
    assert vm.main(args) == 2


# --- staging: publish only what was verified, hash while the copy runs ------------------------------


def test_to_place_skips_the_same_inode_and_orders_blobs_links_refs() -> None:
    blob = vm.Entry("m/blobs/aa", 3, "aa")
    link = vm.Entry("m/snapshots/c/w", 3, "aa", "../../blobs/aa")
    ref = vm.Entry("m/refs/main", 1, "bb")
    src = {blob.path: vm.Seen("file", 3, 1, None, 7), ref.path: vm.Seen("file", 1, 1, None, 8)}
    # Nothing there yet: refs last, links after the blobs they point to.
    assert vm.to_place([ref, link, blob], src, {}) == [blob, link, ref]
    # The same inode and the same link text: nothing to do; another inode: replaced.
    dest = {blob.path: vm.Seen("file", 3, 1, None, 7), link.path: vm.Seen("link", 0, 1, "../../blobs/aa", 9),
            ref.path: vm.Seen("file", 1, 1, None, 99)}
    assert vm.to_place([ref, link, blob], src, dest) == [ref]
    assert vm.extras({"m/a", "m/b"}, ["m/b", "m/c", "m/.x.airgap-llm-tmp"]) == ["m/.x.airgap-llm-tmp", "m/c"]
    assert vm.only_under([blob, vm.Entry("n/x", 1, "cc")], ["m"]) == [blob]


def test_ready_to_hash_wants_the_full_size_and_no_record() -> None:
    e = vm.Entry("m/blobs/aa", 10, "aa")
    assert not vm.ready_to_hash(e, None, {})
    assert not vm.ready_to_hash(e, vm.Seen("file", 5, 1), {})  # still arriving (resumed in place? never: size)
    assert vm.ready_to_hash(e, vm.Seen("file", 10, 1), {})
    assert not vm.ready_to_hash(e, vm.Seen("file", 10, 1), {e.path: {"size": 10, "mtime_ns": 1, "sha256": "aa"}})
    assert vm.ready_to_hash(e, vm.Seen("file", 10, 2), {e.path: {"size": 10, "mtime_ns": 1, "sha256": "aa"}})


def publish(staged: dict[str, Path], dest: Path) -> tuple[int, dict[str, Any]]:
    rc, report = vm.publish(str(staged["hub"]), str(dest), vm.load_entries(str(staged["expected"]), []),
                            str(staged["record"]))
    return rc, report


def test_publish_refuses_unverified_files_and_links_verified_ones(staged: dict[str, Path], tmp_path: Path) -> None:
    live = tmp_path / "live"
    # Nothing verified yet: refused, nothing created.
    rc, report = publish(staged, live)
    assert rc == 1 and {f["problem"] for f in report["failures"]} == {"not-verified"}
    assert not live.exists()

    assert run(staged)[0] == 0
    stale = live / REPO_DIR / "snapshots" / "old" / "x.bin"
    stale.parent.mkdir(parents=True)
    stale.write_text("old revision")
    rc, report = publish(staged, live)
    assert rc == 0 and report["changed"] == [REPO_DIR] and report["placed"] == 4 and report["removed"] == 1
    weights = live / staged["weights"].relative_to(staged["hub"])
    assert weights.stat().st_ino == staged["weights"].stat().st_ino  # the verified inode itself
    assert not (live / REPO_DIR / "snapshots" / "old").exists()
    assert (live / REPO_DIR / "snapshots" / "c0ffee" / "model.safetensors").read_bytes() == weights.read_bytes()
    # Again: nothing to do.
    assert publish(staged, live)[1]["changed"] == []

    # A staged file changed after verification (a new copy): refused, the live file keeps its inode.
    inode = weights.stat().st_ino
    data = staged["weights"].read_bytes()
    staged["weights"].unlink()
    staged["weights"].write_bytes(data[::-1])
    rc, report = publish(staged, live)
    assert rc == 1 and report["failures"][0]["path"].endswith(staged["weights"].name)
    assert weights.stat().st_ino == inode and weights.read_bytes() == data


def test_publish_keeps_the_snapshots_in_use_and_those_of_the_releases(staged: dict[str, Path], tmp_path: Path) -> None:
    """A new revision is published: the old revisions the services' links and the host's live and previous
    releases name stay (their files and the blobs their links resolve to); another old revision goes."""
    assert run(staged)[0] == 0
    live = tmp_path / "live"
    repo = live / REPO_DIR
    (repo / "blobs").mkdir(parents=True)
    for rev in ("linked", "previous", "unnamed"):
        (repo / "blobs" / f"blob-{rev}").write_text(rev)
        (repo / "snapshots" / rev).mkdir(parents=True)
        (repo / "snapshots" / rev / "w").symlink_to(f"../../blobs/blob-{rev}")
    links = tmp_path / "models"
    links.mkdir()
    (links / "embed").symlink_to(repo / "snapshots" / "linked")
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"live": {"models": {"embed": str(repo / "snapshots" / "linked")}},
                                 "previous": {"models": {"embed": str(repo / "snapshots" / "previous")}}}))
    assert vm.snapshots_in_use(str(links), str(state)) == [str(repo / "snapshots" / "linked")] * 2 + [
        str(repo / "snapshots" / "previous")]
    assert vm.snapshots_in_use(str(tmp_path / "none"), str(tmp_path / "none.json")) == []
    rc = vm.main(["--expected", str(staged["expected"]), "--root", str(staged["hub"]), "--record",
                  str(staged["record"]), "--publish", str(live), "--keep-links", str(links), "--keep-releases",
                  str(state)])
    assert rc == 0
    for rev in ("linked", "previous"):
        assert (repo / "snapshots" / rev / "w").read_text() == rev
    assert not (repo / "snapshots" / "unnamed").exists() and not (repo / "blobs" / "blob-unnamed").exists()
    assert (repo / "snapshots" / "c0ffee" / "model.safetensors").is_file()
    # Without the keeps, the old revisions go (what publishing did before releases were kept).
    assert vm.publish(str(staged["hub"]), str(live), vm.load_entries(str(staged["expected"]), []),
                      str(staged["record"]))[1]["removed"] == 4
    assert sorted(p.name for p in (repo / "snapshots").iterdir()) == ["c0ffee"]


def test_publish_then_links_each_service_to_its_revisions_snapshot(
    staged: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--link: after the publish, each service's link points at its revision's snapshot (through the ref, or
    the commit itself); a link already right is left alone; a revision without a ref fails the run, named."""
    ref = staged["hub"] / REPO_DIR / "refs" / "main"
    ref.parent.mkdir()
    ref.write_text("c0ffee")
    expected = json.loads(staged["expected"].read_text())
    expected["entries"].append({"path": f"{PREFIX}{REPO_DIR}/refs/main", "size": 6, "sha256": sha(b"c0ffee")})
    staged["expected"].write_text(json.dumps(expected))
    assert run(staged)[0] == 0
    live, links = tmp_path / "live", tmp_path / "models"
    links.mkdir()
    (links / "chat").symlink_to(tmp_path / "elsewhere")
    snapshot = str(live / REPO_DIR / "snapshots" / "c0ffee")

    def publish_with(*link: str) -> tuple[int, dict[str, Any]]:
        rc = vm.main(["--expected", str(staged["expected"]), "--root", str(staged["hub"]), "--record",
                      str(staged["record"]), "--publish", str(live), "--links-dir", str(links),
                      *[arg for text in link for arg in ("--link", text)]])
        return rc, json.loads(capsys.readouterr().out)

    rc, report = publish_with(f"embed={REPO_DIR}@main", f"chat={REPO_DIR}@main")
    assert rc == 0 and report["links"] == ["chat", "embed"], report
    assert os.readlink(links / "embed") == snapshot and os.readlink(links / "chat") == snapshot
    assert (links / "embed" / "config.json").read_text() == '{"hidden_size": 8}\n'
    # Again: nothing changes.
    rc, report = publish_with(f"embed={REPO_DIR}@main", f"chat={REPO_DIR}@main")
    assert (rc, report["links"], report["changed"]) == (0, [], [])

    # A branch without a ref, a commit without a snapshot: both named, the links left as they were.
    commit = "0123456789abcdef0123456789abcdef01234567"
    rc, report = publish_with(f"embed={REPO_DIR}@v2", f"chat={REPO_DIR}@{commit}")
    assert rc == 1 and report["ok"] is False and report["links"] == []
    assert [(f["path"], f["problem"]) for f in report["failures"]] == [
        (f"{REPO_DIR}/refs/v2", "missing"), (f"{REPO_DIR}/snapshots/{commit}", "missing")]
    assert [f["detail"].split(":")[0] for f in report["failures"]] == ["no ref for embed", "no snapshot for chat"]
    assert os.readlink(links / "chat") == snapshot and os.readlink(links / "embed") == snapshot

    with pytest.raises(SystemExit):
        vm.main(["--expected", str(staged["expected"]), "--root", str(staged["hub"]), "--link", "x=y@main"])
    assert "--link needs --links-dir and --publish" in capsys.readouterr().err
    assert publish_with("embed-no-revision")[0] == 2


def test_watch_hashes_files_as_they_arrive_and_keeps_stdout_for_the_command(
    staged: dict[str, Path], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # The "transfer": files appear under a temporary name, then are renamed into place, as rsync does.
    target = tmp_path / "staging"
    writer = (
        "import os, shutil, sys, time\n"
        f"src, dst = {str(staged['hub'])!r}, {str(target)!r}\n"
        "for d, _, fs in os.walk(src):\n"
        "    for f in fs:\n"
        "        rel = os.path.relpath(os.path.join(d, f), src)\n"
        "        os.makedirs(os.path.dirname(os.path.join(dst, rel)), exist_ok=True)\n"
        "        tmp = os.path.join(dst, os.path.dirname(rel), '.' + f + '.XyZ123')\n"
        "        shutil.copy2(os.path.join(d, f), tmp); time.sleep(0.3); os.rename(tmp, os.path.join(dst, rel))\n"
        "print('protocol bytes')\n"
    )
    rc = vm.watch([sys.executable, "-c", writer], str(target), vm.load_entries(str(staged["expected"]), []),
                  str(staged["record"]), 2, poll_s=0.05)
    assert rc == 0
    assert capfd.readouterr().out == "protocol bytes\n"  # nothing of ours on the command's channel
    record = json.loads(staged["record"].read_text())["files"]
    assert len(record) == 2
    # The files were vouched for while arriving: a verify of the staging area hashes nothing.
    rc, report = vm.run(str(staged["expected"]), str(target), str(staged["record"]), 2)
    assert report["hashed"] == 0 and report["trusted"] == 2


def test_watch_records_nothing_corrupted_and_returns_the_commands_status(
    staged: dict[str, Path], tmp_path: Path
) -> None:
    staged["weights"].write_bytes(b"x" * staged["weights"].stat().st_size)
    rc = vm.watch([sys.executable, "-c", "raise SystemExit(23)"], str(staged["hub"]),
                  vm.load_entries(str(staged["expected"]), []), str(staged["record"]), 2, poll_s=0.05)
    assert rc == 23
    files = json.loads(staged["record"].read_text())["files"] if staged["record"].exists() else {}
    assert not any(p.endswith(staged["weights"].name) for p in files)
