"""Relay staging: the waves (which host pulls which model from which), and the host-side daemon control."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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
    from fanout import direct_model, relay_model

    assert [relay_model(n, 2) for n in (1, 2, 4, 8, 64)] == [1, 2, 4, 6, 12]
    assert [relay_model(n, 1) for n in (1, 4)] == [1, 4]  # a chain: one transfer per host
    assert [direct_model(n) for n in (1, 4, 64)] == [1, 4, 64]
