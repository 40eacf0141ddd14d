"""The ``memory-fit`` rule: each GPU service's weights + KV cache + overhead per GPU against its share.

Pure: takes the host plans and the model files already read (``model_files.find_models``), returns
problems and warnings, each naming the host, the service and the GPU(s). ``check_memory`` is the one
call for any caller holding plans and model files (``plan``, and the controller-side checks of
``install`` and the preflight role).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airgap_llm.gpumap import HostPlan, Problem, ServicePlan
from airgap_llm.memory.estimate import GIB, Estimate, estimate, is_large_gpu, settings_from_args
from airgap_llm.memory.model_files import ModelFiles, ModelKey
from airgap_llm.memory.model_shape import ModelShape, ShapeError, model_shape

RULE = "memory-fit"


def gib(n: float) -> float:
    return round(n / GIB, 2)


@dataclass
class ServiceMemory:
    """One service's estimate against its share, per GPU."""

    host: str
    service: str
    model: str
    gpus: tuple[int, ...]
    estimate: Estimate
    share: int  # bytes per GPU
    min_seqs: int
    max_model_len_set: bool
    notes: tuple[str, ...] = ()

    @property
    def fits(self) -> bool:
        return self.estimate.needed <= self.share

    @property
    def max_seqs(self) -> int | None:
        return self.estimate.max_seqs(self.share)

    def as_dict(self) -> dict[str, Any]:
        e = self.estimate
        return {
            "model": self.model,
            "gpus": list(self.gpus),
            "weights_gib": gib(e.weights),
            "kv_bytes_per_token": e.kv_per_token,
            "max_model_len": e.max_model_len,
            "max_model_len_from": "inventory" if self.max_model_len_set else "model",
            "kv_per_seq_gib": gib(e.kv_per_seq),
            "overhead_gib": gib(e.overhead_total),
            "overhead": {k: gib(v) for k, v in e.overhead.items()},
            "needed_gib": gib(e.needed),
            "share_gib": gib(self.share),
            "fits": self.fits,
            "max_concurrent_seqs": self.max_seqs,
            "largest_max_model_len": e.largest_max_model_len(self.share),
            "notes": list(self.notes),
        }


@dataclass
class MemoryAssessment:
    problems: list[Problem] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (host, text)
    services: dict[str, dict[str, ServiceMemory]] = field(default_factory=dict)  # host -> service -> memory

    def as_dicts(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {h: {s: m.as_dict() for s, m in by.items()} for h, by in self.services.items()}


def service_estimate(
    svc: ServicePlan, shape: ModelShape, files: ModelFiles, large_gpu: bool, tensor_parallel: int | None = None
) -> Estimate:
    """The estimate for a service as planned (or at another tensor-parallel size)."""
    settings = settings_from_args(
        svc.extra_args,
        tensor_parallel or svc.tensor_parallel_size,
        svc.nodes,
        svc.max_model_len,
        svc.kind in ("embedding", "rerank"),
        large_gpu,
    )
    return estimate(files.weights, shape, settings)


def _where(svc: ServicePlan) -> tuple[int | None, str]:
    """The Problem's GPU field and the words for a service's GPUs."""
    if len(svc.gpus) == 1:
        return svc.gpus[0], ""
    return None, f" on GPUs {', '.join(map(str, svc.gpus))}"


def _share_words(plan: HostPlan, svc: ServicePlan, share: int) -> str:
    total = plan.gpu.memory_gib if plan.gpu else 0
    return f"its share {gib(share):.2f} GiB (gpu_memory_utilization {svc.memory_fraction:g} of {total:g} GiB)"


def _fraction_for(needed: int, plan: HostPlan) -> float:
    total = plan.gpu.memory_gib * GIB if plan.gpu else 1
    return math.ceil(needed / total * 100) / 100


def _problem(plan: HostPlan, svc: ServicePlan, mem: ServiceMemory) -> Problem | None:
    e, share = mem.estimate, mem.share
    gpu, on = _where(svc)
    model = f"{svc.model}@{svc.revision}"
    parallel = f" (tensor parallel {svc.tensor_parallel_size})" if svc.tensor_parallel_size > 1 else ""
    if svc.nodes > 1:
        parallel += f" (pipeline parallel {svc.nodes})"
    fraction = _fraction_for(e.needed, plan)
    # A fraction above the ceiling cannot be given: then only more GPUs or a smaller model help.
    raise_share = f"gpu_memory_utilization {fraction:g} or more" if fraction <= plan.ceiling else ""
    if e.weights + e.overhead_total >= share:
        remedies = ", ".join(r for r in (raise_share, "more GPUs (tensor parallel)") if r)
        message = (
            f"{model}{parallel} needs {gib(e.weights):.2f} GiB of weights + {gib(e.overhead_total):.2f} GiB of engine "
            f"overhead per GPU{on} before any KV cache, more than {_share_words(plan, svc, share)}; give it "
            f"{remedies} or a quantized model"
        )
        return Problem(plan.host, RULE, message, service=svc.name, gpu=gpu)
    if not mem.fits:
        from_model = "" if mem.max_model_len_set else " (unset: the model's own max_position_embeddings)"
        largest = e.largest_max_model_len(share)
        message = (
            f"{model}{parallel} needs {gib(e.needed):.2f} GiB per GPU{on} (weights {gib(e.weights):.2f} + KV cache "
            f"{gib(e.kv_per_seq):.2f} for one sequence of max_model_len {e.max_model_len}{from_model} + overhead "
            f"{gib(e.overhead_total):.2f}), more than {_share_words(plan, svc, share)}; set max_model_len to at most "
            f"{largest}" + (f", or give it {raise_share}" if raise_share else "")
        )
        return Problem(plan.host, RULE, message, service=svc.name, gpu=gpu)
    return None


def heads_problem(plan: HostPlan, svc: ServicePlan, shape: ModelShape) -> Problem | None:
    """Tensor parallelism splits the attention heads: the size must divide them (the words of the bundle
    check, ``bundle_check.model_config_problems``, which makes the same check from a bundle)."""
    tp = svc.tensor_parallel_size
    if tp > 1 and shape.heads % tp:
        divisors = ", ".join(str(d) for d in range(1, shape.heads + 1) if shape.heads % d == 0)
        return Problem(
            plan.host,
            "tensor-parallel",
            f"tensor_parallel_size {tp} (its number of GPUs) does not divide the {shape.heads} attention heads of "
            f"{svc.model}@{svc.revision} (config.json num_attention_heads); use {divisors} GPU(s)",
            service=svc.name,
        )
    return None


def assess_memory(plans: list[HostPlan], models: Mapping[ModelKey, ModelFiles]) -> MemoryAssessment:
    """The memory fit of every GPU engine service whose model files are in ``models``."""
    out = MemoryAssessment()
    for plan in plans:
        if plan.gpu is None:
            continue
        for svc in plan.services:
            files = models.get((svc.model or "", svc.revision or "main"))
            if not (svc.uses_engine and svc.gpus and files) or svc.memory_fraction is None:
                continue
            try:
                shape = model_shape(files.config)
            except ShapeError as exc:
                out.problems.append(Problem(plan.host, RULE, f"cannot estimate {svc.model}: {exc}", service=svc.name))
                continue
            heads = heads_problem(plan, svc, shape)
            if heads is not None:
                out.problems.append(heads)
            share = int(svc.memory_fraction * plan.gpu.memory_gib * GIB)
            mem = ServiceMemory(
                plan.host,
                svc.name,
                svc.model or "",
                svc.gpus,
                service_estimate(svc, shape, files, is_large_gpu(plan.gpu.model, plan.gpu.memory_gib)),
                share,
                plan.min_concurrent_seqs,
                svc.max_model_len is not None,
                shape.notes,
            )
            out.services.setdefault(plan.host, {})[svc.name] = mem
            problem = _problem(plan, svc, mem)
            if problem is not None:
                out.problems.append(problem)
            elif mem.max_seqs is not None and mem.max_seqs < plan.min_concurrent_seqs:
                enough = mem.estimate.share_for(plan.min_concurrent_seqs)
                out.warnings.append(
                    (
                        plan.host,
                        f"host {plan.host}, service {svc.name}: only {mem.max_seqs} sequence(s) of max_model_len "
                        f"{mem.estimate.max_model_len} fit its KV cache at once, fewer than "
                        f"airgap_llm_min_concurrent_seqs {plan.min_concurrent_seqs}; lower max_model_len or give it "
                        f"gpu_memory_utilization {_fraction_for(enough, plan):g}",
                    )
                )
    return out


def check_memory(plans: list[HostPlan], models: Mapping[ModelKey, ModelFiles]) -> list[Problem]:
    """The ``memory-fit`` (and head-divisibility) problems of every host's plan: the call for the roles."""
    return assess_memory(plans, models).problems
