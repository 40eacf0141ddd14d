"""The memory fit added to a run's plans: the one entry point of ``plan``, ``install`` and the plan play."""

from __future__ import annotations

from pathlib import Path

from airgap_llm.errors import AirgapLlmError
from airgap_llm.gpumap import HostPlan
from airgap_llm.memory.check import MemoryAssessment, assess_memory
from airgap_llm.memory.model_files import ModelFiles, ModelKey, ModelSource, find_models, source_from_bundle


def check_memory_fit(
    plans: list[HostPlan], source: ModelSource, report_missing: bool = True
) -> tuple[MemoryAssessment, dict[ModelKey, ModelFiles]]:
    """Read the models' files and add the memory problems and warnings to each host's plan.

    ``report_missing``: also add a problem for each model the source lacks (``plan`` does; ``install``
    and the plan play leave that to the bundle check, which names the bundle's own paths).
    """
    models, missing = find_models(source, plans)
    assessment = assess_memory(plans, models)
    by_host = {p.host: p for p in plans}
    for problem in (missing if report_missing else []) + assessment.problems:
        by_host[problem.host].problems.append(problem)
    for host, warning in assessment.warnings:
        by_host[host].warnings.append(warning)
    return assessment, models


def check_memory_fit_from_bundle(plans: list[HostPlan], bundle: Path) -> MemoryAssessment | None:
    """The memory fit from a bundle's models, or None when the bundle cannot be read (the bundle check
    says why, with its own message)."""
    try:
        source = source_from_bundle(bundle)
    except AirgapLlmError:
        return None
    assessment, _ = check_memory_fit(plans, source, report_missing=False)
    return assessment
