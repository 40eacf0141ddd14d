"""The model_store scenario's target after converge and idempotence: files, links, modes, hashes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

HF = "/var/lib/airgap-llm/hf"
REPO_DIR = "models--sentence-transformers--all-MiniLM-L6-v2"
MODEL_DIR = f"{HF}/hub/{REPO_DIR}"
LINKS = "/var/lib/airgap-llm/models"
RECORD = f"{HF}/.airgap-llm-verified.json"
SCRIPT = "/usr/local/libexec/airgap-llm/airgap_llm_verify_models.py"
VERIFY = f"python3 {SCRIPT} --expected {HF}/.airgap-llm-expected.json --root {HF}/hub --record {RECORD}"


def manifest() -> dict[str, Any]:
    bundle = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "model-bundle" / "bundle"
    return {a["path"]: a for a in json.loads((bundle / "manifest.json").read_text())["artifacts"]}


def model_entries() -> dict[str, Any]:
    prefix = f"models/hub/{REPO_DIR}/"
    return {p[len("models/hub/"):]: a for p, a in manifest().items() if p.startswith(prefix)}


def test_services_link_to_the_snapshot_of_their_revision(host: Any) -> None:
    commit = host.file(f"{MODEL_DIR}/refs/main").content_string.strip()
    for service in ("embed", "search"):
        link = host.file(f"{LINKS}/{service}")
        assert link.is_symlink
        assert link.linked_to == f"{MODEL_DIR}/snapshots/{commit}"
        assert "." not in service  # dots.ocr needs a model directory name without dots
    assert host.file(f"{LINKS}/embed/config.json").is_file
    assert host.file(f"{LINKS}/embed/model.safetensors").size > 80_000_000
    assert not host.file(f"{LINKS}/web").exists  # an app service has no model


def test_only_the_hosts_models_are_staged(host: Any) -> None:
    assert host.file(f"{HF}/hub").listdir() == [REPO_DIR]


def test_every_file_matches_the_manifest(host: Any) -> None:
    entries = model_entries()
    assert len(entries) > 20
    for rel, art in entries.items():
        f = host.file(f"{HF}/hub/{rel}")
        if "link" in art:
            assert f.is_symlink and host.check_output(f"readlink {HF}/hub/{rel}") == art["link"], rel
        else:
            assert f.is_file and f.size == art["size"], rel
            assert f.sha256sum == art["sha256"], rel


def test_models_are_read_only_to_services(host: Any) -> None:
    # Root-owned, world-readable, writable by root only (weights are not secrets, and the service
    # group may not exist yet when models are staged).
    bad = host.check_output(
        f"find {HF} -not -user root -o -not -group root -o -not -type l -perm /022"  # links are always 0777
    )
    assert bad == ""
    unreadable = host.check_output(f"find {HF}/hub -type f -not -perm -0444 -o -type d -not -perm -0555")
    assert unreadable == ""
    assert host.run(f"runuser -u nobody -- cat {LINKS}/embed/config.json").rc == 0
    assert host.run(f"runuser -u nobody -- touch {MODEL_DIR}/blobs/x").rc != 0


def test_record_vouches_for_every_file_and_a_rerun_hashes_nothing(host: Any) -> None:
    files = {rel for rel, art in model_entries().items() if "link" not in art}
    record_before = host.file(RECORD)
    assert set(json.loads(record_before.content_string)["files"]) == files
    mtime = record_before.mtime
    report = json.loads(host.check_output(VERIFY))
    assert report["ok"] and report["hashed"] == 0 and report["trusted"] == len(files), report
    assert report["record_changed"] is False
    assert host.file(RECORD).mtime == mtime


def test_the_hub_holds_the_verified_staging_files_and_no_partial_data(host: Any) -> None:
    # (Before the flipped-byte test below, which gives one hub file a new inode.)
    # Each file the services read is the very inode verified in the staging area (a hard link).
    for rel, art in model_entries().items():
        if "link" in art:
            continue
        hub, staged = f"{HF}/hub/{rel}", f"{HF}/.airgap-llm-staging/{rel}"
        assert host.check_output(f"stat -c %i {hub}") == host.check_output(f"stat -c %i {staged}"), rel
    # Nothing half-written anywhere: no rsync temporary or partial file, no publishing leftover.
    leftovers = f"find {HF} -name '.*.airgap-llm-tmp' -o -name .airgap-llm-partial -o -name '.*.??????'"
    assert host.check_output(leftovers) == ""


def test_a_flipped_byte_fails_naming_the_file_and_both_hashes(host: Any) -> None:
    # The blob behind the snapshot's top-level config.json (a small JSON file starting with '{').
    link = next(a for r, a in model_entries().items() if "link" in a and r.split("/")[-2:][0] != "1_Pooling"
                and r.endswith("/config.json"))
    rel = f"{REPO_DIR}/blobs/{link['link'].rsplit('/', 1)[1]}"
    art = model_entries()[rel]
    path = f"{HF}/hub/{rel}"
    original = host.check_output(f"base64 -w0 {path}")
    try:
        # Flip the first byte ('{' -> 'z'), keeping the size; the write gives a new mtime.
        host.check_output(f"printf z | dd of={path} bs=1 count=1 conv=notrunc status=none && touch {path}")
        result = host.run(VERIFY)
        assert result.rc == 1
        report = json.loads(result.stdout)
        assert len(report["failures"]) == 1
        failure = report["failures"][0]
        assert failure["path"] == rel and failure["problem"] == "corrupted"
        assert f"expected {art['sha256']}" in failure["detail"]
        assert host.file(path).sha256sum in failure["detail"]
        assert rel not in json.loads(host.file(RECORD).content_string)["files"]
    finally:
        host.check_output(f"echo {original} | base64 -d > {path}.tmp && mv {path}.tmp {path} && chmod 0644 {path}")
    report = json.loads(host.check_output(VERIFY))
    assert report["ok"] and report["hashed"] == 1, report
