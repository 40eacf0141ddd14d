"""Run the project's playbooks through ansible-runner, feeding a RunProgress as events arrive.

A run is made in a temporary private directory; the artifacts of a failed run (events, stdout) are
kept under ``<cache>/runs/<timestamp>/`` (``run_evidence``) and named in ``RunProgress.artifacts``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from airgap_llm import run_evidence
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
    skip_tags: str | None = None,
) -> RunProgress:
    """Run ``playbooks/<playbook>`` against ``inventory``; return the final progress state.

    ``skip_tags``: Ansible's --skip-tags (``upgrade`` runs site.yml without its validate step, then
    validates on its own)."""
    import ansible_runner
    from ansible_runner.exceptions import AnsibleRunnerException

    root = project_root()
    progress = RunProgress()
    private = Path(tempfile.mkdtemp(prefix="airgap-llm-run-"))
    bin_dir = str(Path(sys.executable).parent)
    envvars = {
        "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(root / "roles"),
        "ANSIBLE_FILTER_PLUGINS": str(root / "filter_plugins"),
        "ANSIBLE_LIBRARY": str(root / "library"),
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
        try:
            runner = ansible_runner.run(
                private_data_dir=str(private),
                project_dir=str(root),
                playbook=str(root / "playbooks" / playbook),
                inventory=str(inventory.resolve()),
                extravars=dict(extravars or {}),
                limit=limit,
                skip_tags=skip_tags,
                cmdline=cmdline,
                envvars=envvars,
                event_handler=handler,
                quiet=True,
                verbosity=verbosity or None,
                suppress_env_files=True,
            )
        except AnsibleRunnerException as exc:
            raise UsageError(f"ansible-runner refused to run {playbook}: {one_line(exc)}") from exc
        if runner.status != "successful" or not progress.ok:
            progress.artifacts = _keep_evidence(private)
        if runner.status != "successful" and not progress.stats:
            out = ""
            try:
                out = runner.stdout.read()[-4000:]
            except (OSError, AttributeError):
                pass
            where = f"\n(ansible-runner's artifacts: {progress.artifacts})" if progress.artifacts else ""
            raise UsageError(f"ansible-playbook could not run ({runner.status}, rc={runner.rc}):\n{out}{where}")
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return progress


def one_line(exc: BaseException) -> str:
    """An exception's message on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _keep_evidence(private: Path) -> str | None:
    """Keep the artifacts of a failed run under <cache>/runs/ (see run_evidence); None when impossible."""
    idents = sorted((private / "artifacts").glob("*/"))
    if not idents:
        return None
    try:
        return str(run_evidence.keep(idents[-1]))
    except OSError as exc:
        print(f"warning: could not keep this run's artifacts under {run_evidence.runs_root()}: {one_line(exc)}",
              file=sys.stderr)
        return None
