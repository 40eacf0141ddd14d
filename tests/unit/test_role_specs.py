"""Every role's meta/argument_specs.yml stays in step with its defaults/main.yml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .conftest import REPO

ROLES = sorted(p for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())


def load(path: Path) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(path.read_text()) or {} if path.exists() else {}


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_argument_specs_match_defaults(role: Path) -> None:
    specs = load(role / "meta" / "argument_specs.yml")
    assert "main" in specs.get("argument_specs", {}), f"{role.name}: meta/argument_specs.yml has no 'main' entry"
    options = specs["argument_specs"]["main"].get("options", {})
    defaults = load(role / "defaults" / "main.yml")
    assert set(defaults) <= set(options), (
        f"{role.name}: defaults without a spec: {sorted(set(defaults) - set(options))}"
    )
    for name, option in options.items():
        assert option.get("description"), f"{role.name}: {name} has no description"
        if name in defaults:
            assert option.get("default") == defaults[name], (
                f"{role.name}: {name} default differs from defaults/main.yml"
            )
        else:
            assert option.get("required") or "default" not in option, (
                f"{role.name}: {name} has a default but none in defaults"
            )


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_variables_are_role_prefixed(role: Path) -> None:
    prefix = f"airgap_llm_{role.name}_"
    defaults = load(role / "defaults" / "main.yml")
    bad = [k for k in defaults if not k.startswith(prefix)]
    assert not bad, f"{role.name}: defaults not prefixed with {prefix}: {bad}"
