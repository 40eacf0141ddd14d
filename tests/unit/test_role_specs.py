"""Every role's argument specs stay in step with its defaults; no task that reads a credential logs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

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


# A credential read on the controller (the API key, a password, a session secret) or the secret files built from
# them: a task that handles one must not log. Without no_log, Ansible also writes the module's arguments to the
# host's journal ("Invoked with ..."), where a value is masked only where it appears verbatim.
SECRET_READ = re.compile(
    r"lookup\('ansible\.builtin\.(?:file|password)', *[\w\[\]\.]*(?:api_key_file|password_file|secret_key_file)"
    r"|airgap_llm_secret_files"
)


def _tasks(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for task in items or []:
        out.append(task)
        for key in ("block", "rescue", "always"):
            out.extend(_tasks(task.get(key) or []))
    return out


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_tasks_that_read_a_credential_do_not_log(role: Path) -> None:
    loud = []
    for path in sorted((role / "tasks").glob("*.yml")):
        for task in _tasks(yaml.safe_load(path.read_text()) or []):
            if "block" in task:
                continue
            body = yaml.safe_dump({k: v for k, v in task.items() if k != "name"}, width=10_000)
            if SECRET_READ.search(body) and task.get("no_log") is not True:
                loud.append(f"{path.relative_to(REPO)}: {task.get('name')}")
    assert not loud, f"tasks that read a credential without no_log: true: {loud}"
