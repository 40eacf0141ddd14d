"""``plan --suggest``: GPUs and shares that fit each service, for a host's hardware. Pure.

For every GPU engine service: the fewest GPUs that hold its weights, the KV cache for
``airgap_llm_min_concurrent_seqs`` sequences of its max_model_len (at least one) and the engine's
overhead, per GPU, under the ceiling; tensor parallel (1, 2, 4, 8, dividing the attention heads) only
where one GPU is not enough. Services on several GPUs get GPUs of their own; single-GPU services are
packed first-fit, largest first. GPUs marked failed are left out. The spare memory of each used GPU, up
to ``TARGET_FRACTION`` of it (vLLM's default utilization) or the ceiling, whichever is lower, is shared
out in proportion to what each service needs, so the KV caches grow and headroom stays. Services
spanning hosts (``nodes`` > 1) keep their placement.

With GPUs marked failed (``airgap_llm_gpu.failed``) the fewest services move: those on working GPUs that
fit there stay, the others go to spare GPUs first, then to GPUs with room; only when that is not enough
is every service placed afresh.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from airgap_llm.failed_gpus import usable_gpus
from airgap_llm.gpumap import HostPlan, Problem, ServicePlan
from airgap_llm.memory.check import RULE, service_estimate
from airgap_llm.memory.estimate import GIB, is_large_gpu
from airgap_llm.memory.model_files import ModelFiles, ModelKey
from airgap_llm.memory.model_shape import ModelShape, ShapeError, model_shape

TP_SIZES = (1, 2, 4, 8)
TARGET_FRACTION = 0.90


@dataclass
class Placement:
    service: str
    gpus: tuple[int, ...]
    tensor_parallel: int
    need: int  # bytes per GPU
    fraction: float = 0.0
    kept: bool = False  # left where the inventory has it


@dataclass
class Suggestion:
    host: str
    placements: dict[str, Placement] = field(default_factory=dict)
    unplaced: list[Problem] = field(default_factory=list)  # why a service got no GPUs

    @property
    def ok(self) -> bool:
        return not self.unplaced


def _tp_ok(shape: ModelShape, tp: int) -> bool:
    return shape.heads % tp == 0 and (shape.kv_heads % tp == 0 or tp % shape.kv_heads == 0)


def size_service(
    host: str, svc: ServicePlan, files: ModelFiles, cap: int, gpus_free: int, min_seqs: int, large_gpu: bool
) -> Placement | Problem:
    """The fewest GPUs (and the memory per GPU) that fit ``svc``; a ``memory-fit`` problem when none do."""
    try:
        shape = model_shape(files.config)
    except ShapeError as exc:
        return Problem(host, RULE, f"cannot estimate {svc.model}: {exc}", service=svc.name)
    sizes = [tp for tp in TP_SIZES if tp <= gpus_free and _tp_ok(shape, tp)]
    for seqs in (min_seqs, 1):
        for tp in sizes:
            need = service_estimate(svc, shape, files, large_gpu, tp).share_for(seqs)
            if need <= cap:
                return Placement(svc.name, (), tp, need)
    if not sizes:
        return Problem(host, RULE, "no working GPU left for it", service=svc.name)
    tp = sizes[-1]
    est = service_estimate(svc, shape, files, large_gpu, tp)
    largest = est.largest_max_model_len(cap)
    hint = (
        f"set max_model_len to at most {largest}"
        if largest
        else "use a quantized model, or a host with more or larger GPUs"
    )
    return Problem(
        host,
        RULE,
        f"{svc.model} needs {est.needed / GIB:.2f} GiB per GPU even on {tp} GPU(s) (max_model_len "
        f"{est.max_model_len}), more than {cap / GIB:.2f} GiB under the ceiling; {hint}",
        service=svc.name,
    )


def _fractions(on_gpu: list[Placement], memory: int, ceiling: float) -> None:
    """Share out a GPU's spare memory among its new placements in proportion to need, rounded down to
    hundredths (never below need); kept placements keep their fractions."""
    fixed = sum(p.need for p in on_gpu if p.kept)
    new = [p for p in on_gpu if not p.kept]
    total_need = sum(p.need for p in new)
    if not new:
        return
    available = max(min(TARGET_FRACTION, ceiling) * memory - fixed, total_need)
    for p in new:
        share = p.need + (available - total_need) * p.need / total_need
        fraction = math.floor(share / memory * 100) / 100
        if fraction * memory < p.need:
            fraction = math.ceil(p.need / memory * 100) / 100
        p.fraction = fraction


def _fits_where_it_is(plan: HostPlan, svc: ServicePlan, files: ModelFiles | None, memory: int) -> bool:
    if files is None or svc.memory_fraction is None or plan.gpu is None:
        return False
    if set(svc.gpus) & set(plan.gpu.failed):
        return False
    try:
        shape = model_shape(files.config)
    except ShapeError:
        return False
    large = is_large_gpu(plan.gpu.model, plan.gpu.memory_gib)
    return service_estimate(svc, shape, files, large).needed <= svc.memory_fraction * memory


def suggest_host(plan: HostPlan, models: Mapping[ModelKey, ModelFiles]) -> Suggestion:
    """A placement for every GPU engine service of the host.

    With GPUs marked failed, the services that sit on working GPUs and fit there stay where they are
    and only the others move (so an install restarts only those); when that leaves no room, every
    service is placed afresh.
    """
    if plan.gpu is None or not plan.gpu.count:
        return Suggestion(plan.host)
    if plan.gpu.failed:
        memory = int(plan.gpu.memory_gib * GIB)
        keep = {
            s.name
            for s in plan.services
            if s.uses_engine
            and s.gpus
            and s.nodes == 1
            and _fits_where_it_is(plan, s, models.get((s.model or "", s.revision or "main")), memory)
        }
        fewest_moves = _suggest(plan, models, keep)
        if fewest_moves.ok:
            return fewest_moves
    return _suggest(plan, models, set())


def _suggest(plan: HostPlan, models: Mapping[ModelKey, ModelFiles], keep: set[str]) -> Suggestion:
    assert plan.gpu is not None
    out = Suggestion(plan.host)
    memory = int(plan.gpu.memory_gib * GIB)
    cap = int(plan.ceiling * memory)
    free = usable_gpus(plan)
    for svc in (s for s in plan.services if s.gpus and s.nodes > 1):
        # a service spanning hosts keeps its GPUs: the other hosts must agree
        if set(svc.gpus) - set(free):
            out.unplaced.append(
                Problem(
                    plan.host,
                    "gpu-failed",
                    f"spans {svc.nodes} hosts and sits on a failed GPU; move it by hand on every host",
                    service=svc.name,
                )
            )
        free = [g for g in free if g not in svc.gpus]
    by_gpu: dict[int, list[Placement]] = {}
    sized: list[Placement] = []
    large = is_large_gpu(plan.gpu.model, plan.gpu.memory_gib)
    for svc in plan.services:
        if not (svc.uses_engine and svc.gpus) or svc.nodes > 1:
            continue
        if svc.name in keep and svc.memory_fraction is not None:
            kept = Placement(
                svc.name, svc.gpus, len(svc.gpus), int(svc.memory_fraction * memory), svc.memory_fraction, True
            )
            for g in svc.gpus:
                by_gpu.setdefault(g, []).append(kept)
            continue
        files = models.get((svc.model or "", svc.revision or "main"))
        if files is None:
            out.unplaced.append(Problem(plan.host, "model-files", f"no model files for {svc.model}", service=svc.name))
            continue
        result = size_service(plan.host, svc, files, cap, len(free), plan.min_concurrent_seqs, large)
        if isinstance(result, Problem):
            out.unplaced.append(result)
        else:
            sized.append(result)
    for p in sorted((p for p in sized if p.tensor_parallel > 1), key=lambda p: -p.need):
        empty = [g for g in free if g not in by_gpu]
        if len(empty) < p.tensor_parallel:
            out.unplaced.append(
                Problem(
                    plan.host,
                    RULE,
                    f"needs {p.tensor_parallel} GPUs of its own, {len(empty)} left",
                    service=p.service,
                )
            )
            continue
        p.gpus = tuple(empty[: p.tensor_parallel])
        for g in p.gpus:
            by_gpu[g] = [p]
    for p in sorted((p for p in sized if p.tensor_parallel == 1), key=lambda p: -p.need):
        shared = [
            g
            for g in free
            if g in by_gpu
            and all(q.tensor_parallel == 1 for q in by_gpu[g])
            and sum(q.need for q in by_gpu[g]) + p.need <= cap
        ]
        empty = [g for g in free if g not in by_gpu]
        if not shared and not empty:
            out.unplaced.append(
                Problem(
                    plan.host,
                    RULE,
                    f"needs {p.need / GIB:.2f} GiB of one GPU and no working GPU has that much left; shrink a "
                    "service (max_model_len, a quantized model) or free a GPU",
                    service=p.service,
                )
            )
            continue
        g = (empty or shared)[0] if keep else (shared or empty)[0]  # moving: spares first; afresh: packed
        p.gpus = (g,)
        by_gpu.setdefault(g, []).append(p)
    for on_gpu in by_gpu.values():
        _fractions(on_gpu, memory, plan.ceiling)
    out.placements = {p.service: p for p in sized if p.gpus}
    return out


def suggested_services(raw: Mapping[str, object], suggestion: Suggestion) -> dict[str, object]:
    """The host's ``airgap_llm_services`` with each placed service's GPUs and share replaced."""
    services: dict[str, object] = {}
    for name, spec in raw.items():
        if not isinstance(spec, Mapping) or name not in suggestion.placements:
            services[name] = spec
            continue
        p = suggestion.placements[name]
        new = {
            k: v
            for k, v in spec.items()
            if k not in ("gpus", "gpu_memory_utilization", "gpu_memory_gib", "tensor_parallel_size")
        }
        new["gpus"] = list(p.gpus)
        new["gpu_memory_utilization"] = p.fraction
        if p.tensor_parallel > 1:
            new["tensor_parallel_size"] = p.tensor_parallel
        services[name] = new
    return services
