"""``airgap_llm_bundle_signers``: when the inventory sets it, only a bundle signed by a key that the
allowed-signers file lists is installed.

Checked on the controller before any host is contacted, by ``airgap-llm install`` (its pre-check) and
by plain ``ansible-playbook`` (the plan play, through the ``airgap_llm_bundle_signature_problems``
filter), with the same code and words. The value is a path on the controller, absolute or relative to
the inventory's directory; hosts that set different files must each be satisfied.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airgap_llm.bundle.signature import NAMESPACE, signature_failure

SIGNERS_VAR = "airgap_llm_bundle_signers"


def signers_files(hosts: Mapping[str, Mapping[str, Any]], inventory_dir: Path | None) -> tuple[list[Path], list[str]]:
    """The distinct allowed-signers files the hosts name (resolved), and the problems of bad values."""
    files: list[Path] = []
    problems: list[str] = []
    for host, hv in hosts.items():
        value = hv.get(SIGNERS_VAR)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            problems.append(f"host {host}: {SIGNERS_VAR} must be the path of an allowed_signers file, got {value!r}")
            continue
        path = Path(value).expanduser()
        if not path.is_absolute() and inventory_dir is not None:
            path = Path(os.path.normpath(inventory_dir / path))
        if path not in files:
            files.append(path)
    return files, problems


def signature_problems(bundle: Path, files: list[Path]) -> list[str]:
    """One line per allowed-signers file the bundle does not satisfy (none when none is set)."""
    problems = []
    for signers in files:
        if not signers.is_file():
            problems.append(
                f"{SIGNERS_VAR} {signers}: no such file on the controller (an allowed_signers file: "
                f"'PRINCIPAL namespaces=\"{NAMESPACE}\" KEYTYPE KEY' per trusted key)"
            )
            continue
        failure = signature_failure(bundle, signers)
        if failure is not None:
            problems.append(
                f"bundle {bundle}: {failure.path}: {failure.detail} (the inventory's {SIGNERS_VAR} is {signers}: "
                "only a bundle signed by a key it lists is installed)"
            )
    return problems


def bundle_signature_problems(
    bundle: Path, hosts: Mapping[str, Mapping[str, Any]], inventory_dir: Path | None
) -> list[str]:
    files, problems = signers_files(hosts, inventory_dir)
    return problems + signature_problems(bundle, files)
