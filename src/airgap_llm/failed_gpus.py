"""GPUs marked out of service (``airgap_llm_gpu.failed``): no service may stay on one. Pure.

The procedure when a GPU fails: add its index to ``failed``, run ``airgap-llm plan --suggest`` to get a
map that leaves it out, paste that map, install (only the services that moved restart).
"""

from __future__ import annotations

from airgap_llm.plan_model import HostPlan, Problem


def failed_gpu_problems(plan: HostPlan) -> list[Problem]:
    """One ``gpu-failed`` problem per service placed on a GPU the inventory marks as failed."""
    if plan.gpu is None or not plan.gpu.failed:
        return []
    failed = set(plan.gpu.failed)
    problems = []
    for svc in plan.services:
        for g in svc.gpus:
            if g in failed:
                problems.append(
                    Problem(
                        plan.host,
                        "gpu-failed",
                        f"is placed on GPU {g}, which airgap_llm_gpu.failed marks as out of service; move it to "
                        "a working GPU ('airgap-llm plan --suggest' proposes a map without the failed GPUs)",
                        service=svc.name,
                        gpu=g,
                    )
                )
    return problems


def usable_gpus(plan: HostPlan) -> list[int]:
    """The host's GPU indexes that are not marked as failed."""
    if plan.gpu is None:
        return []
    return [g for g in range(plan.gpu.count) if g not in set(plan.gpu.failed)]
