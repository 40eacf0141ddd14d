"""Find each service's model files in a local Hugging Face cache or a built bundle, and read what the
memory estimate needs: ``config.json`` and the weights' sizes (headers only; no tensor data is read)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airgap_llm.bundle.layout import MODELS_HUB_DIR, model_folder
from airgap_llm.bundle.manifest import load_manifest
from airgap_llm.bundle.models import locate_hub, resolve_commit
from airgap_llm.bundle.spec import ModelSpec
from airgap_llm.errors import InputError, UsageError
from airgap_llm.gpumap import HostPlan, Problem
from airgap_llm.memory.safetensors_header import WeightsSize, model_weight_files, weights_size

ModelKey = tuple[str, str]  # (model id, revision)


@dataclass(frozen=True)
class ModelFiles:
    """One model revision as found on disk: its config.json and the size of its weights."""

    model: str
    revision: str
    snapshot: Path
    config: dict[str, Any]
    weights: WeightsSize


@dataclass(frozen=True)
class ModelSource:
    """Where model files are read from: a hub directory, and how to name it in messages."""

    hub: Path
    label: str


def source_from_cache(root: Path) -> ModelSource:
    """``--models-from``: a ``HF_HOME``-like directory holding ``hub/``, or the hub itself."""
    hub = locate_hub(root)
    return ModelSource(hub, f"the local cache {hub}")


def source_from_bundle(bundle: Path) -> ModelSource:
    """``--bundle``: a built bundle's ``models/hub``."""
    load_manifest(bundle)  # a usage error when it is not a bundle
    hub = bundle / MODELS_HUB_DIR
    if not hub.is_dir():
        raise UsageError(f"bundle {bundle}: no {MODELS_HUB_DIR}/ (build its models with 'airgap-llm bundle build')")
    return ModelSource(hub, f"the bundle {bundle}")


def read_model_files(snapshot: Path, model: str, revision: str) -> ModelFiles:
    """config.json and the weights' sizes of one snapshot directory."""
    config_path = snapshot / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"model {model}@{revision}: no readable {config_path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise InputError(f"model {model}@{revision}: {config_path} is not JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise InputError(f"model {model}@{revision}: {config_path} is not a JSON object")
    weights = weights_size(model_weight_files(snapshot))
    if not weights.files:
        raise InputError(f"model {model}@{revision}: no weights (*.safetensors or *.bin) in {snapshot}")
    return ModelFiles(model, revision, snapshot, config, weights)


def engine_models(plans: Iterable[HostPlan]) -> dict[ModelKey, list[tuple[str, str]]]:
    """Every (model, revision) a GPU engine service uses -> the (host, service) pairs using it."""
    used: dict[ModelKey, list[tuple[str, str]]] = {}
    for plan in plans:
        for svc in plan.services:
            if svc.uses_engine and svc.gpus and svc.model:
                used.setdefault((svc.model, svc.revision or "main"), []).append((plan.host, svc.name))
    return used


def find_models(source: ModelSource, plans: list[HostPlan]) -> tuple[dict[ModelKey, ModelFiles], list[Problem]]:
    """The files of every model the GPU services use; a ``model-files`` problem for each one missing."""
    found: dict[ModelKey, ModelFiles] = {}
    problems: list[Problem] = []
    for (model, revision), users in engine_models(plans).items():
        repo = source.hub / model_folder(model)
        try:
            commit = resolve_commit(repo, ModelSpec(model, revision, ()))
            found[(model, revision)] = read_model_files(repo / "snapshots" / commit, model, revision)
        except InputError as exc:
            why = str(exc).replace("not in the local cache", f"not in {source.label}")
            for host, service in users:
                problems.append(
                    Problem(host, "model-files", f"{why}; the memory fit cannot be checked", service=service)
                )
    return found, problems
