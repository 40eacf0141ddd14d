"""Read an inventory through Ansible's own inventory machinery.

group_vars, host_vars, groups and extra vars take precedence exactly as they do for
``ansible-playbook``, because the same classes resolve them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from airgap_llm.errors import InputError, UsageError

VAR_PREFIX = "airgap_llm_"
# Connection facts the wrapper needs beside the project's own variables.
CONNECTION_VARS = ("ansible_host", "ansible_port", "ansible_user", "ansible_connection")


@dataclass
class Inventory:
    """The hosts of an inventory with their resolved variables (only what airgap-llm reads)."""

    source: Path
    hosts: dict[str, dict[str, Any]]
    groups: dict[str, list[str]]


def to_plain(value: Any) -> Any:
    """Turn Ansible's tagged/lazy containers and strings into plain Python values (JSON-safe)."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


class _TolerantLoader(yaml.SafeLoader):
    """A safe loader that accepts Ansible's custom tags (!vault, !unsafe) without interpreting them."""


_TolerantLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def use_project_ansible_cfg() -> None:
    """Read inventories with the project's ansible.cfg, as ``install`` runs playbooks with it.

    It matters beyond style: it keeps an inventory's credentials/ directory (the generated API key) from
    being parsed as an inventory source. Takes effect before Ansible is first imported; an
    ANSIBLE_CONFIG the user set wins.
    """
    cfg = Path(__file__).resolve().parents[2] / "ansible.cfg"
    if cfg.is_file():
        os.environ.setdefault("ANSIBLE_CONFIG", str(cfg))


# Plain words for the parser errors people meet most, added after the parser's own.
_YAML_HINTS = (
    ("expected <block end>", "check this line's indentation against the lines above it"),
    ("mapping values are not allowed here", "a value holding ': ' needs quotes, or the indentation is off"),
    ("found character '\\t'", "YAML indents with spaces, never tabs"),
    ("but got '<stream end>'", "a bracket or brace opened above is never closed"),
    ("found undefined alias", "a '*' starts an alias; quote a value that begins with '*'"),
)


def _yaml_hint(problem: str) -> str:
    for needle, hint in _YAML_HINTS:
        if needle in problem:
            return f" ({hint})"
    return ""


def check_yaml_files(path: Path) -> None:
    """Parse every YAML file of the inventory first, so a syntax error names its file and line."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in (".yml", ".yaml"))
    for file in files:
        if file.is_file() and file.suffix in (".yml", ".yaml"):
            try:
                yaml.load(file.read_text(encoding="utf-8"), Loader=_TolerantLoader)  # noqa: S506
            except yaml.MarkedYAMLError as exc:
                mark = exc.problem_mark or exc.context_mark
                where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
                problem = str(exc.problem or exc.context)
                raise InputError(f"{file}:{where}: invalid YAML: {problem}{_yaml_hint(problem)}") from exc
            except (yaml.YAMLError, UnicodeDecodeError) as exc:
                raise InputError(f"{file}: invalid YAML: {exc}") from exc


def load_inventory(source: str | Path, extra_vars: Mapping[str, Any] | None = None) -> Inventory:
    """Load ``source`` (a directory, hosts file or inventory script) as ansible-playbook would."""
    path = Path(source)
    if not path.exists():
        raise UsageError(f"inventory {source}: no such file or directory")
    check_yaml_files(path)
    use_project_ansible_cfg()

    # Imported here: Ansible is slow to import and not needed for --help.
    from ansible import context
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.module_utils.common.collections import ImmutableDict
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    # Extra vars reach the VariableManager the way ansible-playbook's -e does: through CLIARGS.
    context.CLIARGS = ImmutableDict(extra_vars=(json.dumps(dict(extra_vars)),) if extra_vars else ())
    loader = DataLoader()
    try:
        manager = InventoryManager(loader=loader, sources=[str(path)])
        variables = VariableManager(loader=loader, inventory=manager)
        hosts: dict[str, dict[str, Any]] = {}
        for host in manager.get_hosts():
            hv = variables.get_vars(host=host, include_hostvars=False)
            templar = Templar(loader=loader, variables=hv)
            wanted = {k: hv[k] for k in hv if k.startswith(VAR_PREFIX) or k in CONNECTION_VARS}
            hosts[host.name] = {k: to_plain(templar.template(v)) for k, v in wanted.items()}
        groups = {
            name: sorted(h.name for h in group.get_hosts())
            for name, group in manager.groups.items()
            if name not in ("all", "ungrouped") or group.get_hosts()
        }
    except AnsibleError as exc:
        raise InputError(f"inventory {source}: {exc.message if hasattr(exc, 'message') else exc}") from exc
    if not hosts:
        raise InputError(f"inventory {source}: no hosts found (is it an Ansible inventory?)")
    return Inventory(source=path, hosts=hosts, groups=groups)
