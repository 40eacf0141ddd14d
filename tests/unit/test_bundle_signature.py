"""Signed bundles with the real ssh-keygen on real files: ``bundle sign`` and ``bundle verify --signers``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from airgap_llm.bundle.index import index_paths, list_under
from airgap_llm.bundle.manifest import Manifest, Problem, save_manifest
from airgap_llm.bundle.signature import NAMESPACE, signature_failure
from airgap_llm.cli import main


def make_key(path: Path, comment: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path


def allowed_signers(path: Path, principal: str, key: Path) -> Path:
    path.write_text(f'{principal} namespaces="{NAMESPACE}" {key.with_suffix(".pub").read_text()}')
    return path


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    builder = make_key(tmp_path / "builder", "builder@staging")
    stranger = make_key(tmp_path / "stranger", "stranger@elsewhere")
    return {
        "builder": builder,
        "stranger": stranger,
        "signers": allowed_signers(tmp_path / "allowed_signers", "builder@staging", builder),
    }


def make_bundle(root: Path) -> Path:
    wheels = root / "wheels/cp311-manylinux_2_36_x86_64"
    wheels.mkdir(parents=True)
    (wheels / "a-1.0-py3-none-any.whl").write_bytes(b"A" * 5000)
    m = Manifest(inventory="test")
    for a in index_paths(root, list_under(root, "wheels"), "wheel", lambda p: "test"):
        m.add(a)
    save_manifest(root, m)
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


def test_signed_bundle_verifies(tmp_path: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    code, out, err = run(capsys, "bundle", "sign", str(bundle), "--key", str(keys["builder"]))
    assert code == 0, out + err
    assert (bundle / "manifest.json.sig").read_text().startswith("-----BEGIN SSH SIGNATURE-----")
    code, out, err = run(capsys, "bundle", "verify", str(bundle), "--signers", str(keys["signers"]))
    assert code == 0, out + err
    assert f"manifest signed by a key of {keys['signers']}" in " ".join(out.split())
    # the signature file is not an extra file for a plain verify either
    assert run(capsys, "bundle", "verify", str(bundle))[0] == 0


def test_unsigned_bundle_refused(tmp_path: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    code, out, _ = run(capsys, "bundle", "verify", str(bundle), "--signers", str(keys["signers"]), "--json")
    assert code == 1
    failures = json.loads(out)["failures"]
    assert [(f["path"], f["problem"]) for f in failures] == [("manifest.json.sig", "unsigned")]
    assert f"the bundle is not signed: no {bundle / 'manifest.json.sig'}" in failures[0]["detail"]


def test_wrong_key_refused(tmp_path: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    assert run(capsys, "bundle", "sign", str(bundle), "--key", str(keys["stranger"]))[0] == 0
    code, out, _ = run(capsys, "bundle", "verify", str(bundle), "--signers", str(keys["signers"]))
    assert code == 1
    flat = " ".join(out.split())
    assert f"FAIL bad-signature: manifest.json.sig (signed by a key that {keys['signers']} does not list" in flat


def test_tampered_manifest_refused(tmp_path: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    assert run(capsys, "bundle", "sign", str(bundle), "--key", str(keys["builder"]))[0] == 0
    data = json.loads((bundle / "manifest.json").read_text())
    data["inventory"] = "someone else's"  # SHA256SUMS still matches: only the signature tells
    (bundle / "manifest.json").write_text(json.dumps(data, indent=1) + "\n")
    failure = signature_failure(bundle, keys["signers"])
    assert failure is not None and failure.path == "manifest.json" and failure.problem is Problem.SIGNATURE
    assert "changed since it was signed" in failure.detail
    code, out, _ = run(capsys, "bundle", "verify", str(bundle), "--signers", str(keys["signers"]))
    assert code == 1 and "FAIL bad-signature: manifest.json (does not match its signature" in " ".join(out.split())


def test_garbage_signature_refused(tmp_path: Path, keys: dict[str, Path]) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    (bundle / "manifest.json.sig").write_text("not a signature\n")
    failure = signature_failure(bundle, keys["signers"])
    assert failure is not None and failure.path == "manifest.json.sig" and failure.problem is Problem.SIGNATURE


def test_missing_signers_file_or_key_is_a_usage_error(
    tmp_path: Path, keys: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    code, _, err = run(capsys, "bundle", "verify", str(bundle), "--signers", str(tmp_path / "nope"))
    assert code == 2 and f"--signers {tmp_path / 'nope'}: no such file" in err
    code, _, err = run(capsys, "bundle", "sign", str(bundle), "--key", str(tmp_path / "nokey"))
    assert code == 2 and f"--key {tmp_path / 'nokey'}: no such file" in err
    code, _, err = run(capsys, "bundle", "sign", str(tmp_path), "--key", str(keys["builder"]))
    assert code == 2 and "not a bundle" in err
    assert not (bundle / "manifest.json.sig").exists()


def test_a_key_ssh_keygen_cannot_use_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    bad = tmp_path / "not-a-key"
    bad.write_text("hello\n")
    bad.chmod(0o600)
    code, _, err = run(capsys, "bundle", "sign", str(bundle), "--key", str(bad))
    assert code == 1 and f"--key {bad}: ssh-keygen could not sign" in err
    assert not (bundle / "manifest.json.sig").exists()
