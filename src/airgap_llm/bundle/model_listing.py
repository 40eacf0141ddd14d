"""A model revision's files and sizes, from the Hub (``model_info``) or a local cache, and the files
the bundle takes of them (``model_files.choose``)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from airgap_llm.bundle.layout import model_folder
from airgap_llm.bundle.model_files import choose
from airgap_llm.bundle.spec import ModelSpec

PROBE_TIMEOUT_S = 5.0


@dataclass
class ModelFiles:
    """A model revision as the Hub or the cache lists it, and the files the bundle takes."""

    spec: ModelSpec
    commit: str
    sizes: dict[str, int]  # every file of the revision -> bytes
    chosen: set[str]
    config: dict[str, object] | None = None

    @property
    def chosen_bytes(self) -> int:
        return sum(self.sizes[p] for p in self.chosen)

    @property
    def saved_bytes(self) -> int:
        return sum(s for p, s in self.sizes.items() if p not in self.chosen)


def cache_files(repo_dir: Path, commit: str) -> dict[str, int]:
    """Every file of a cached snapshot, with the size of the blob it points to."""
    snap = repo_dir / "snapshots" / commit
    sizes: dict[str, int] = {}
    for path in sorted(snap.rglob("*")):
        if path.is_file():
            sizes[path.relative_to(snap).as_posix()] = path.stat().st_size
    return sizes


def _config(read: Callable[[], str | None]) -> dict[str, object] | None:
    try:
        text = read()
        data = json.loads(text) if text is not None else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def model_from_cache(spec: ModelSpec, hub: Path) -> ModelFiles:
    from airgap_llm.bundle.models import resolve_commit

    repo = hub / model_folder(spec.repo_id)
    commit = resolve_commit(repo, spec)  # InputError naming the model when it is not cached
    sizes = cache_files(repo, commit)
    config_path = repo / "snapshots" / commit / "config.json"
    config = _config(lambda: config_path.read_text(encoding="utf-8") if config_path.is_file() else None)
    return ModelFiles(spec, commit, sizes, choose(list(sizes), spec.filters), config)


def model_from_hub(spec: ModelSpec, endpoint: str | None) -> ModelFiles:
    """The Hub's file list of one revision (sizes included); errors as ``models.download_model``'s."""
    from huggingface_hub import HfApi, hf_hub_download

    from airgap_llm.bundle.models import hub_errors

    with hub_errors(spec, endpoint):
        info = HfApi(endpoint=endpoint).model_info(
            spec.repo_id, revision=spec.revision, files_metadata=True, timeout=PROBE_TIMEOUT_S
        )
    commit = str(info.sha or spec.revision)
    sizes = {s.rfilename: int(s.size or 0) for s in (info.siblings or [])}
    chosen = choose(list(sizes), spec.filters)
    config = None
    if "config.json" in sizes and any(f.remote_code for f in spec.filters):

        def read() -> str:  # a few KB into a scratch directory: the bundle gets it with the rest
            with tempfile.TemporaryDirectory(prefix="airgap-llm-config-") as tmp, hub_errors(spec, endpoint):
                path = hf_hub_download(
                    spec.repo_id, "config.json", revision=commit, endpoint=endpoint, cache_dir=tmp,
                    etag_timeout=PROBE_TIMEOUT_S,
                )  # fmt: skip
                return Path(path).read_text(encoding="utf-8")

        config = _config(read)
    return ModelFiles(spec, commit, sizes, chosen, config)
