"""Run the project's playbooks through ansible-runner, feeding a RunProgress as events arrive."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from airgap_llm.errors import UsageError
from airgap_llm.progress import RunProgress


def project_root() -> Path:
    """The checkout holding playbooks/ and roles/: $AIRGAP_LLM_HOME, this package's checkout, or cwd."""
    candidates = []
    if os.environ.get("AIRGAP_LLM_HOME"):
        candidates.append(Path(os.environ["AIRGAP_LLM_HOME"]))
    candidates.append(Path(__file__).resolve().parents[2])
    candidates.append(Path.cwd())
    for root in candidates:
        if (root / "playbooks" / "site.yml").is_file() and (root / "roles").is_dir():
            return root
    raise UsageError(
        "cannot find the airgap-llm playbooks (playbooks/site.yml): "
        "run from the project checkout or set AIRGAP_LLM_HOME"
    )


def run_playbook(
    playbook: str,
    inventory: Path,
    extravars: Mapping[str, Any] | None = None,
    limit: str | None = None,
    check: bool = False,
    on_event: Callable[[RunProgress], None] | None = None,
    verbosity: int = 0,
) -> RunProgress:
    """Run ``playbooks/<playbook>`` against ``inventory``; return the final progress state."""
    import ansible_runner

    root = project_root()
    progress = RunProgress()
    private = Path(tempfile.mkdtemp(prefix="airgap-llm-run-"))
    bin_dir = str(Path(sys.executable).parent)
    envvars = {
        "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(root / "roles"),
        "ANSIBLE_FILTER_PLUGINS": str(root / "filter_plugins"),
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
    }
    cmdline = "--check --diff" if check else None

    def handler(event: dict[str, Any]) -> bool:
        progress.feed(event)
        if on_event is not None:
            on_event(progress)
        return True

    try:
        runner = ansible_runner.run(
            private_data_dir=str(private),
            project_dir=str(root),
            playbook=str(root / "playbooks" / playbook),
            inventory=str(inventory.resolve()),
            extravars=dict(extravars or {}),
            limit=limit,
            cmdline=cmdline,
            envvars=envvars,
            event_handler=handler,
            quiet=True,
            verbosity=verbosity or None,
            suppress_env_files=True,
        )
        if runner.status != "successful" and not progress.stats:
            out = ""
            try:
                out = runner.stdout.read()[-4000:]
            except (OSError, AttributeError):
                pass
            raise UsageError(f"ansible-playbook could not run ({runner.status}, rc={runner.rc}):\n{out}")
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return progress
