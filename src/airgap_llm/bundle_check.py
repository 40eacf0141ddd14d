"""Checks of a bundle directory before it is used for an install (no hashing: `bundle verify` does that)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from airgap_llm.errors import InputError, UsageError
from airgap_llm.gpumap import HostPlan


def load_manifest(bundle: Path) -> dict[str, Any]:
    if not bundle.is_dir():
        raise UsageError(f"bundle {bundle}: no such directory")
    path = bundle / "manifest.json"
    if not path.is_file():
        raise UsageError(f"bundle {bundle}: no manifest.json (not a bundle? build one with 'airgap-llm bundle build')")
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise InputError(f"bundle {bundle}: manifest.json is unreadable: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != 1:
        raise InputError(f"bundle {bundle}: manifest.json is not format 1")
    return data


def missing_models(plans: list[HostPlan], bundle: Path) -> list[str]:
    """Problems for every service whose model (at its revision) is not in the bundle."""
    problems = []
    for plan in plans:
        for svc in plan.services:
            if not svc.model:
                continue
            repo_dir = bundle / "models" / "hub" / ("models--" + svc.model.replace("/", "--"))
            ref = repo_dir / "refs" / (svc.revision or "main")
            snapshot = repo_dir / "snapshots" / (svc.revision or "main")
            if not (ref.is_file() or snapshot.is_dir()):
                problems.append(
                    f"host {plan.host}, service {svc.name}: model {svc.model}@{svc.revision} is not in the bundle "
                    f"(looked for {ref.relative_to(bundle)})"
                )
    return problems
