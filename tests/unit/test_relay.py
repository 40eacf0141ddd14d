"""Relay staging: the waves (which host pulls which model from which), and the host-side daemon control."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from airgap_llm import relay
from airgap_llm.gpumap import plan_hosts
from airgap_llm.relay import Transfer, next_wave, relay_waves

from .conftest import REPO, load_script

M = "models--org--chat"
E = "models--org--embed"


def edges(waves: list[list[Transfer]]) -> list[list[tuple[str, str | None]]]:
    return [[(t.host, t.source) for t in w] for w in waves]


def test_one_model_spreads_as_a_tree_with_the_fanout() -> None:
    needs = {f"h{i}": [M] for i in range(1, 8)}
    assert edges(relay_waves(needs, fanout=2)) == [
        [("h1", None)],
        [("h2", "h1"), ("h3", "h1")],
        [("h4", "h2"), ("h5", "h2"), ("h6", "h3"), ("h7", "h3")],
    ]
    # The controller sends the model once; no host serves more than fanout hosts.
    waves = relay_waves(needs, fanout=2)
    sources = [t.source for w in waves for t in w]
    assert sources.count(None) == 1
    assert all(sources.count(h) <= 2 for h in needs)


def test_fanout_one_is_a_chain_and_three_is_wider() -> None:
    needs = {f"h{i}": [M] for i in range(1, 5)}
    assert edges(relay_waves(needs, fanout=1)) == [[("h1", None)], [("h2", "h1")], [("h3", "h2")], [("h4", "h3")]]
    assert edges(relay_waves(needs, fanout=3)) == [[("h1", None)], [("h2", "h1"), ("h3", "h1"), ("h4", "h1")]]


def test_models_with_different_host_sets_have_trees_of_their_own() -> None:
    needs = {"a": [M], "b": [M, E], "c": [E], "d": [M, E], "e": [E]}
    waves = relay_waves(needs, fanout=2, order=list(needs))
    by_folder = {f: [[(t.host, t.source) for t in w if t.folder == f] for w in waves] for f in (M, E)}
    assert by_folder[M] == [[("a", None)], [("b", "a"), ("d", "a")], []]
    assert by_folder[E] == [[("b", None)], [("c", "b"), ("d", "b")], [("e", "c")]]
    # Every host ends with exactly what it needs, each model sent once by the controller.
    got: dict[str, set[str]] = {}
    for w in waves:
        for t in w:
            got.setdefault(t.host, set()).add(t.folder)
    assert got == {h: set(f) for h, f in needs.items()}
    assert sum(1 for w in waves for t in w if t.source is None) == 2


def test_hosts_that_hold_a_verified_copy_serve_and_need_nothing() -> None:
    needs = {"a": [M], "b": [M], "c": [M], "d": [M]}
    waves = relay_waves(needs, holds={"c": {M}}, fanout=2, order=list(needs))
    assert edges(waves) == [[("a", "c"), ("b", "c")], [("d", "a")]]
    assert not any(t.source is None for w in waves for t in w)  # nothing from the controller
    assert relay_waves(needs, holds={h: {M} for h in needs}, fanout=2) == []  # a rerun: no wave at all


def test_a_failed_middle_host_neither_serves_nor_receives_and_its_children_fall_back() -> None:
    needs = {"a": [M], "b": [M], "c": [M]}
    # Planned chain a -> b -> c; b's copy failed verification: c pulls from a (b's place goes back to a).
    assert edges(relay_waves(needs, fanout=1)) == [[("a", None)], [("b", "a")], [("c", "b")]]
    wave = next_wave(needs, {"a": {M}}, fanout=1, served={}, failed=["b"])
    assert wave == [Transfer("c", M, "a")]


def test_children_fall_back_to_another_verified_copy_before_the_controller() -> None:
    needs = {h: [M] for h in "abcde"}
    # a served b and c (c verified, b failed); c has a free place: d and e come from a (one place back) and c.
    wave = next_wave(needs, {"a": {M}, "c": {M}}, fanout=2, served={("a", M): 1}, failed=["b"])
    assert wave == [Transfer("d", M, "a"), Transfer("e", M, "c")]


def test_the_controller_sends_again_only_when_no_verified_copy_has_a_free_place() -> None:
    needs = {h: [M] for h in "abc"}
    # The first copy (a) failed: nobody holds the model, the controller sends it to the next host.
    assert next_wave(needs, {}, fanout=2, failed=["a"]) == [Transfer("b", M, None)]
    # a holds it but has served its places and its children failed out: the controller sends one host per wave.
    assert next_wave(needs, {"a": {M}}, fanout=1, served={("a", M): 1}) == [Transfer("b", M, None)]


def test_fanout_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="fanout"):
        next_wave({"a": [M]}, {}, fanout=0)


def test_wave_from_the_roles_facts() -> None:
    facts = {
        "a": {"airgap_llm_model_store_folders": [M], "airgap_llm_model_store_relay_holds": [M],
              "airgap_llm_model_store_relay_received": [{"host": "a", "folder": M, "source": None}]},
        "b": {"airgap_llm_model_store_folders": [M], "airgap_llm_model_store_relay_holds": [],
              "airgap_llm_model_store_relay_received": []},
        "c": {"airgap_llm_model_store_folders": [M], "airgap_llm_model_store_relay_holds": [],
              "airgap_llm_model_store_relay_received": []},
        "x": {},  # no model to stage: no part in the relay
    }
    assert relay.wave_from_hostvars(facts, ["a", "b", "c", "x"], {"a", "b", "c", "x"}, 1) == [
        {"host": "b", "folder": M, "source": "a"}]
    # b failed (not alive): c takes b's place under a.
    assert relay.wave_from_hostvars(facts, ["a", "b", "c", "x"], {"a", "c", "x"}, 1) == [
        {"host": "c", "folder": M, "source": "a"}]


def test_tree_of_the_pipelined_pass_from_the_roles_facts() -> None:
    empty = {"airgap_llm_model_store_folders": [M], "airgap_llm_model_store_relay_holds": [],
             "airgap_llm_model_store_relay_received": []}
    facts = {h: dict(empty) for h in "abcd"}
    facts["x"] = {}
    # Every level at once: the controller sends a, a serves b and c (fan-out 2), b serves d.
    assert relay.tree_from_hostvars(facts, list("abcdx"), set("abcdx"), 2) == [
        {"host": "a", "folder": M, "source": None, "wave": 1},
        {"host": "b", "folder": M, "source": "a", "wave": 2},
        {"host": "c", "folder": M, "source": "a", "wave": 2},
        {"host": "d", "folder": M, "source": "b", "wave": 3}]
    # A chain with fan-out 1; a host that already holds the model serves from the first level.
    facts["c"] = {**empty, "airgap_llm_model_store_relay_holds": [M]}
    assert relay.tree_from_hostvars(facts, list("abcd"), set("abcd"), 1) == [
        {"host": "a", "folder": M, "source": "c", "wave": 1},
        {"host": "b", "folder": M, "source": "a", "wave": 2},
        {"host": "d", "folder": M, "source": "b", "wave": 3}]
    # A failed host takes no part; nothing to do when every host holds the model.
    assert [t["host"] for t in relay.tree_from_hostvars(facts, list("abcd"), set("acd"), 1)] == ["a", "d"]
    held = {h: {**empty, "airgap_llm_model_store_relay_holds": [M]} for h in "ab"}
    assert relay.tree_from_hostvars(held, ["a", "b"], {"a", "b"}, 2) == []


def test_held_folders_from_the_verify_report() -> None:
    failures = [{"path": f"{E}/blobs/abc", "problem": "missing", "detail": ""}]
    assert relay.held_folders([M, E], failures) == [M]
    assert relay.held_folders([M, E], []) == [M, E]


def test_plan_preview_and_direct_push() -> None:
    folders = {"a": [M], "b": [M], "c": [M]}
    preview = relay.plan_preview(folders, 2, True)
    assert preview["from_controller"] == 1 and len(preview["waves"]) == 2
    direct = relay.plan_preview(folders, 2, False)
    assert direct["from_controller"] == 3 and len(direct["waves"]) == 1


def test_the_plans_preview_of_the_relay() -> None:
    from airgap_llm.plan_report import plan_result

    svc = {"kind": "embedding", "model": "org/embed", "port": 8001, "gpus": []}
    by_host = {h: {"airgap_llm_services": {"embed": svc}, "airgap_llm_model_store_fanout": 1} for h in ("a", "b", "c")}
    by_host["d"] = {"airgap_llm_services": {}}
    hosts = plan_result(plan_hosts(by_host), "")["hosts"]
    preview = relay.preview_from_plan(hosts, by_host)
    assert preview["fanout"] == 1 and preview["from_controller"] == 1
    assert [[(t["host"], t["source"]) for t in w] for w in preview["waves"]] == [
        [("a", None)], [("b", "a")], [("c", "b")]]


def test_the_plan_refuses_bad_relay_settings() -> None:
    host = {"airgap_llm_services": {}, "airgap_llm_model_store_fanout": 0}
    (plan,) = plan_hosts({"box-1": host})
    assert [(p.rule, p.message) for p in plan.problems] == [
        ("model-relay", "airgap_llm_model_store_fanout must be a whole number >= 1 (hosts one host serves a model to), "
                        "got 0")]
    (plan,) = plan_hosts({"box-1": {"airgap_llm_model_store_relay": "no"}})
    assert [p.rule for p in plan.problems] == ["model-relay"]
    (plan,) = plan_hosts({"box-1": {"airgap_llm_model_store_fanout": 3, "airgap_llm_model_store_relay": False}})
    assert plan.problems == []


# --- the host-side daemon control, with a real rsync daemon on the loopback address ------------------

RELAY_SCRIPT = REPO / "roles" / "model_store" / "files" / "airgap_llm_model_relay.py"
relay_script = load_script(RELAY_SCRIPT, "airgap_llm_model_relay")


def test_daemon_config_is_read_only_unlisted_and_limited_to_the_receivers() -> None:
    text = relay_script.config_text("/run/x", "10.0.0.1", 8730, "/srv/staging", ["10.0.0.2", "10.0.0.3"])
    assert "address = 10.0.0.1" in text and "port = 8730" in text
    assert "read only = yes" in text and "list = no" in text
    assert "hosts allow = 10.0.0.2 10.0.0.3" in text and "hosts deny = *" in text
    assert "auth users = airgap-llm-relay" in text and "exclude = .airgap-llm-partial/" in text


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("rsync") is None,
                    reason="needs root (chroot, uid 65534) and rsync")
def test_daemon_serves_with_the_secret_only_and_stop_leaves_nothing(tmp_path: Path) -> None:
    script = RELAY_SCRIPT
    root = tmp_path / "staging"
    (root / M / ".airgap-llm-partial").mkdir(parents=True)
    (root / M / "weights").write_bytes(b"w" * 1000)
    (root / M / ".airgap-llm-partial" / "half").write_bytes(b"h")
    os.chmod(tmp_path, 0o755)
    run_dir = tmp_path / "run"
    secret = "s3cret-for-this-run-0123456789"
    port = 18730 + os.getpid() % 1000
    env = {**os.environ, "AIRGAP_LLM_RELAY_SECRET": secret}
    start = subprocess.run([sys.executable, str(script), "start", "--dir", str(run_dir), "--address", "127.0.0.1",
                            "--port", str(port), "--root", str(root), "--allow", "127.0.0.1"],
                           env=env, capture_output=True, text=True, check=False)
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        assert oct((run_dir / "rsyncd.secrets").stat().st_mode & 0o777) == "0o600"
        url = f"rsync://airgap-llm-relay@127.0.0.1:{port}/models/{M}/"
        good = subprocess.run(["rsync", "-r", url, str(tmp_path / "got") + "/"], capture_output=True, text=True,
                              env={**os.environ, "RSYNC_PASSWORD": secret}, check=False)
        assert good.returncode == 0, good.stderr
        assert (tmp_path / "got" / "weights").read_bytes() == b"w" * 1000
        assert not (tmp_path / "got" / ".airgap-llm-partial").exists()  # partial data is never served
        bad = subprocess.run(["rsync", "-r", url, str(tmp_path / "bad") + "/"], capture_output=True, text=True,
                             env={**os.environ, "RSYNC_PASSWORD": "wrong-secret-wrong-secret"}, check=False)
        assert bad.returncode != 0 and "auth failed" in bad.stderr
        write = subprocess.run(["rsync", "-r", str(tmp_path / "got") + "/", url], capture_output=True, text=True,
                               env={**os.environ, "RSYNC_PASSWORD": secret}, check=False)
        assert write.returncode != 0  # read-only module
    finally:
        stop = subprocess.run([sys.executable, str(script), "stop", "--dir", str(run_dir)], capture_output=True,
                              text=True, check=True)
    assert '"stopped": true' in stop.stdout
    assert not run_dir.exists()
    again = subprocess.run([sys.executable, str(script), "stop", "--dir", str(run_dir)], capture_output=True, text=True,
                           check=True)
    assert again.stdout.strip() == '{"stopped": false, "removed": false}'


def test_the_fanout_benchmarks_model_of_time_against_n() -> None:
    """bench/fanout.py's model: a wave lasts as long as its busiest sender's share of its link."""
    sys.path.insert(0, str(REPO / "bench"))
    from fanout import direct_model, pipelined_model, relay_model

    # Pipelined: the busiest sender's share, plus one shard per level to fill the pipe.
    assert pipelined_model(1, 2, 8) == 1
    assert pipelined_model(4, 1, 8) == 1 + 3 / 8  # a chain: every link used once
    assert pipelined_model(4, 2, 8) == 2 * (1 + 2 / 8)  # the first host feeds two at half its link each

    assert [relay_model(n, 2) for n in (1, 2, 4, 8, 64)] == [1, 2, 4, 6, 12]
    assert [relay_model(n, 1) for n in (1, 4)] == [1, 4]  # a chain: one transfer per host
    assert [direct_model(n) for n in (1, 4, 64)] == [1, 4, 64]


# --- the pipelined pass: `follow` pulls file by file what the parent verified, from a real rsync daemon ----

verify_script = load_script(REPO / "roles" / "model_store" / "files" / "airgap_llm_verify_models.py",
                            "airgap_llm_verify_models")


def _entry(path: str, sha: str = "s", link: str | None = None) -> Any:
    return verify_script.Entry(path, 1, sha, link)


def test_follow_pulls_what_the_parent_verified_and_gives_up_only_when_it_cannot_get_the_rest() -> None:
    step = relay_script.follow_step
    one, two = _entry(f"{M}/blobs/1", "a"), _entry(f"{M}/blobs/2", "b")
    parent = {"folders": {M: "receiving"}, "verified": {one.path: "a"}}
    assert relay_script.wanted_now([one, two], parent) == [one]
    # Same path, another sha256 than the manifest's: not taken.
    assert relay_script.wanted_now([one], {"folders": {}, "verified": {one.path: "x"}}) == []
    assert step([one, two], [one], parent, M) == "pull"
    assert step([two], [], parent, M) == "wait"  # the parent is still receiving the rest
    assert step([two], [], None, M) == "wait"  # its state cannot be read now (not up yet, a blip)
    assert step([], [], {"folders": {M: "done"}, "verified": {}}, M) == "finish"
    assert step([], [], parent, M) == "wait"  # all files here; the links come once the parent is done
    assert step([two], [], {"folders": {M: "done"}, "verified": {}}, M) == "give-up"  # done, and lacks one
    assert step([two], [], {"folders": {M: "failed"}, "verified": {}}, M) == "give-up"
    assert step([two], [], {"folders": {}, "verified": {}}, M) == "give-up"  # it does not have the model at all


def _manifest(root: Path, files: dict[str, bytes], links: dict[str, str]) -> dict[str, Any]:
    entries = [{"path": f"models/hub/{M}/{p}", "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
               for p, d in files.items()]
    entries += [{"path": f"models/hub/{M}/{p}", "link": t, "size": len(files[t.split("../../")[-1]]),
                 "sha256": hashlib.sha256(files[t.split("../../")[-1]]).hexdigest()} for p, t in links.items()]
    return {"format": 1, "prefix": "models/hub/", "entries": entries}


def _put(root: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> None:
    for p, d in files.items():
        (root / M / p).parent.mkdir(parents=True, exist_ok=True)
        (root / M / p).write_bytes(d)
    for p, t in (links or {}).items():
        (root / M / p).parent.mkdir(parents=True, exist_ok=True)
        (root / M / p).symlink_to(t)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("rsync") is None,
                    reason="needs root (chroot, uid 65534) and rsync")
def test_follow_from_a_real_daemon_file_by_file_then_a_bad_copy_then_a_failed_parent(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    files = {"blobs/1": b"1" * 5000, "blobs/2": b"2" * 7000, "blobs/3": b"3" * 3000}
    links = {"snapshots/c1/weights": "../../blobs/3"}
    expected = tmp_path / "expected.json"
    expected.write_text(json.dumps(_manifest(tmp_path, files, links)))
    parent, child = tmp_path / "parent", tmp_path / "child"
    parent_record, child_record = tmp_path / "parent.json", tmp_path / "child.json"
    (child / M).mkdir(parents=True)
    (tmp_path / "hub").mkdir()
    # The parent holds two files verified so far (still receiving the third).
    _put(parent, {p: d for p, d in files.items() if p != "blobs/3"})
    subprocess.run([sys.executable, str(verify_script.__file__), "--expected", str(expected), "--root", str(parent),
                    "--record", str(parent_record)], capture_output=True, check=False)
    run_dir = tmp_path / "run"
    secret = "s3cret-for-this-run-0123456789"
    port = 19730 + os.getpid() % 1000
    start = subprocess.run([sys.executable, str(RELAY_SCRIPT), "start", "--dir", str(run_dir), "--address", "127.0.0.1",
                            "--port", str(port), "--root", str(parent), "--allow", "127.0.0.1", "--expected",
                            str(expected), "--record", str(parent_record), "--receiving", M],
                           env={**os.environ, "AIRGAP_LLM_RELAY_SECRET": secret}, capture_output=True, text=True,
                           check=False)
    state = run_dir / "state" / "state.json"

    def follow(*extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(RELAY_SCRIPT), "follow", "--dir", str(tmp_path / "child-run"), "--source",
             "127.0.0.1", "--port", str(port), "--folder", M, "--expected", str(expected), "--root", str(child),
             "--record", str(child_record), "--hub", str(tmp_path / "hub"), "--poll", "0.1", *extra],
            env={**os.environ, "RSYNC_PASSWORD": secret}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    try:
        assert start.returncode == 0, start.stdout + start.stderr
        assert json.loads(state.read_text())["folders"] == {M: "receiving"}
        assert set(json.loads(state.read_text())["verified"]) == {f"{M}/blobs/1", f"{M}/blobs/2"}
        proc = follow()
        deadline = time.monotonic() + 30
        while not ((child / M / "blobs/1").exists() and (child / M / "blobs/2").exists()):
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        # Taken before the parent had the third file; nothing unverified is taken.
        assert not (child / M / "blobs/3").exists() and proc.poll() is None
        _put(parent, {"blobs/3": files["blobs/3"]}, links)
        sha3 = hashlib.sha256(files["blobs/3"]).hexdigest()
        verify_script.update_state(str(state), {M: "done"}, {f"{M}/blobs/3": sha3})
        out, err = proc.communicate(timeout=60)
        report = json.loads(out)
        assert proc.returncode == 0 and report["ok"] and report["pulled"] == 3, out + err
        assert (child / M / "blobs/3").read_bytes() == files["blobs/3"]
        assert os.readlink(child / M / "snapshots/c1/weights") == "../../blobs/3"
        assert set(json.loads(child_record.read_text())["files"]) == {f"{M}/{p}" for p in files}

        # A copy with one byte flipped, the parent's size and mtime (rsync's quick check keeps it): caught here.
        shutil.rmtree(child / M)
        child_record.unlink()
        bad = bytearray(files["blobs/2"])
        bad[10] ^= 0xFF
        _put(child, {"blobs/2": bytes(bad)})
        st = (parent / M / "blobs/2").stat()
        os.utime(child / M / "blobs/2", ns=(st.st_atime_ns, st.st_mtime_ns))
        proc = follow()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, out + err
        assert [(f["path"], f["problem"]) for f in json.loads(out)["failures"]] == [(f"{M}/blobs/2", "corrupted")]
        assert f"{M}/blobs/2" not in json.loads(child_record.read_text())["files"]

        # A parent whose copy failed: not received (3), at once, nothing pulled.
        shutil.rmtree(child / M)
        verify_script.update_state(str(state), {M: "failed"})
        json_state = json.loads(state.read_text())
        json_state["verified"] = {}
        state.write_text(json.dumps(json_state))
        proc = follow()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 3 and "failed" in json.loads(out)["reason"], out + err
    finally:
        subprocess.run([sys.executable, str(RELAY_SCRIPT), "stop", "--dir", str(run_dir)], capture_output=True,
                       check=True)
    assert not run_dir.exists()


@pytest.mark.skipif(shutil.which("rsync") is None, reason="needs rsync")
def test_follow_gives_up_on_a_parent_it_cannot_reach(tmp_path: Path) -> None:
    """Nothing listens on the parent's port (a firewall between the nodes): not received (3), naming it."""
    expected = tmp_path / "expected.json"
    expected.write_text(json.dumps(_manifest(tmp_path, {"blobs/1": b"1"}, {})))
    got = subprocess.run(
        [sys.executable, str(RELAY_SCRIPT), "follow", "--dir", str(tmp_path / "run"), "--source", "127.0.0.1",
         "--port", "9", "--folder", M, "--expected", str(expected), "--root", str(tmp_path / "staging"),
         "--record", str(tmp_path / "record.json"), "--hub", str(tmp_path / "hub"), "--connect-timeout", "1",
         "--poll", "0.2"],
        env={**os.environ, "RSYNC_PASSWORD": "x" * 20}, capture_output=True, text=True, timeout=60, check=False)
    assert got.returncode == 3, got.stdout + got.stderr
    assert json.loads(got.stdout)["reason"] == "cannot reach the relay on 127.0.0.1:9 for 1 s"
