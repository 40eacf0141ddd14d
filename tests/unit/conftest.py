"""Shared helpers for unit tests: build inventories on disk from dicts."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def load_script(path: Path, name: str) -> ModuleType:
    """A helper script the roles install on hosts (a file without .py), loaded as a module to test."""
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def airgap_llm_filters() -> dict[str, Callable[..., Any]]:
    """The roles' filters (filter_plugins/airgap_llm.py), by name, as Ansible loads them."""
    module = load_script(REPO / "filter_plugins" / "airgap_llm.py", "airgap_llm_filters")
    return dict(module.FilterModule().filters())


@pytest.fixture
def make_inventory(tmp_path: Path) -> Callable[..., Path]:
    """Write an inventory directory: hosts -> host vars, plus group vars for group ``airgap_llm``."""

    def make(group_vars: dict[str, Any], hosts: dict[str, dict[str, Any]] | None = None) -> Path:
        inv = tmp_path / "inv"
        (inv / "group_vars").mkdir(parents=True, exist_ok=True)
        hosts = hosts if hosts is not None else {"h1": {}}
        (inv / "hosts.yml").write_text(
            yaml.safe_dump({"airgap_llm": {"hosts": {h: (v or None) for h, v in hosts.items()}}})
        )
        (inv / "group_vars" / "airgap_llm.yml").write_text(yaml.safe_dump(group_vars, sort_keys=False))
        return inv

    return make
