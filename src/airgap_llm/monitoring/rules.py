"""The alert rules, thresholds from the inventory (``airgap_llm_monitoring_alerts``, the seeds' defaults). Pure.

vLLM 0.32's metric names (vllm/v1/metrics/loggers.py): ``vllm:num_requests_running`` and
``vllm:num_requests_waiting`` (gauges), ``vllm:kv_cache_usage_perc`` (a gauge, 1 = 100 %),
``vllm:generation_tokens_total`` (counter), ``vllm:time_to_first_token_seconds`` (histogram); each
with the labels ``model_name`` and ``engine``. The GPU series are the GPU textfile collector's
(roles/monitoring/files/airgap-llm-gpu-metrics), the unit states node exporter's systemd collector's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airgap_llm.gpumap import HostPlan
from airgap_llm.monitoring.scrape import APP_JOB, ENGINE_JOB, NODE_JOB
from airgap_llm.monitoring.settings import MonitoringSettings

UNIT_RE = "airgap-llm-.+[.]service"
GROUP = "airgap-llm"
GPU_USED = "airgap_llm_gpu_memory_used_bytes / airgap_llm_gpu_memory_total_bytes"


def _pct(value: float | str) -> str:
    return f"{float(value) * 100:g} %"


def mount_of(path: str, mounts: Sequence[str]) -> str:
    """The mount point holding ``path`` among ``mounts`` (the longest prefix; '/' when none is known)."""
    best = "/"
    for m in mounts:
        m = m.rstrip("/") or "/"
        if (path == m or path.startswith(m + "/") or m == "/") and len(m) > len(best):
            best = m
    return best


def _disk_expr(plans: Sequence[HostPlan], model_mounts: Mapping[str, str], free: float) -> str:
    parts = []
    for plan in plans:
        sel = f'host="{plan.host}",mountpoint="{model_mounts.get(plan.host, "/")}"'
        parts.append(f"node_filesystem_avail_bytes{{{sel}}} / node_filesystem_size_bytes{{{sel}}} < {free:g}")
    return "\n or ".join(f"({p})" for p in parts) if parts else "vector(0) > 1"


def alert_rules(plans: Sequence[HostPlan], settings: MonitoringSettings,
                model_mounts: Mapping[str, str]) -> dict[str, Any]:
    """The rule file as a dict (``yaml.safe_dump`` it). ``model_mounts``: host -> mount point of its models."""
    a = settings.alerts
    rules: list[dict[str, Any]] = [
        {
            "alert": "AirgapLlmServiceDown",
            "expr": f'up{{job=~"{ENGINE_JOB}|{APP_JOB}"}} == 0',
            "for": a["service_down_for"],
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "{{ $labels.service }} on {{ $labels.host }} does not answer /metrics",
                "description": "The service's /metrics has not answered for " + str(a["service_down_for"])
                + "; see `systemctl status airgap-llm-{{ $labels.service }}` and its journal on {{ $labels.host }}.",
            },
        },
        {
            "alert": "AirgapLlmUnitNotActive",
            "expr": f'node_systemd_unit_state{{name=~"{UNIT_RE}",state="active"}} == 0',
            "for": a["service_down_for"],
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "{{ $labels.name }} on {{ $labels.host }} is not active",
                "description": "systemd has not had the unit active (started and answering its health URL) for "
                + str(a["service_down_for"]) + "; `airgap-llm status` shows its journal.",
            },
        },
        {
            "alert": "AirgapLlmHostDown",
            "expr": f'up{{job="{NODE_JOB}"}} == 0',
            "for": a["host_down_for"],
            "labels": {"severity": "critical"},
            "annotations": {"summary": "{{ $labels.host }}'s node exporter does not answer"},
        },
        {
            "alert": "AirgapLlmRayWorkerGone",
            "expr": f'up{{job="{NODE_JOB}",ray_worker_of!=""}} == 0',
            "for": a["host_down_for"],
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "{{ $labels.host }}, a worker host of {{ $labels.ray_worker_of }}, is gone",
                "description": "A host that a service spanning hosts runs on (a Ray worker) does not answer; the "
                "service cannot serve until it is back.",
            },
        },
        {
            "alert": "AirgapLlmKvCacheFull",
            "expr": f"vllm:kv_cache_usage_perc > {float(a['kv_cache_usage']):g}",
            "for": a["kv_cache_for"],
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "{{ $labels.service }} on {{ $labels.host }}: KV cache above " + _pct(a["kv_cache_usage"]),
                "description": "Requests will queue or be preempted; more GPU memory, a shorter max_model_len or "
                "another replica helps.",
            },
        },
        {
            "alert": "AirgapLlmRequestsWaitingGrowing",
            "expr": "vllm:num_requests_waiting > 0 and deriv(vllm:num_requests_waiting[5m]) > 0",
            "for": a["waiting_for"],
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "{{ $labels.service }} on {{ $labels.host }}: requests waiting and growing "
                "({{ $value }} per second)",
            },
        },
        {
            "alert": "AirgapLlmGpuMemoryHigh",
            "expr": (
                f"{GPU_USED} > {float(a['gpu_memory_used']):g}"
                f" and {GPU_USED} > airgap_llm_gpu_planned_memory_ratio + 0.02"
            ),
            "for": a["gpu_memory_for"],
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "GPU {{ $labels.gpu }} on {{ $labels.host }} ({{ $labels.service }}): memory above "
                + _pct(a["gpu_memory_used"]) + " and above the services' planned share",
                "description": "vLLM takes its gpu_memory_utilization share at start; more than that on the GPU "
                "means another process or a leak.",
            },
        },
        {
            "alert": "AirgapLlmGpuHot",
            "expr": f"airgap_llm_gpu_temperature_celsius > {float(a['gpu_temperature_c']):g}",
            "for": a["gpu_temperature_for"],
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "GPU {{ $labels.gpu }} on {{ $labels.host }} at {{ $value }} °C (limit "
                f"{float(a['gpu_temperature_c']):g} °C)",
            },
        },
        {
            "alert": "AirgapLlmGpuMetricsFailing",
            "expr": "airgap_llm_gpu_exporter_ok == 0",
            "for": a["gpu_memory_for"],
            "labels": {"severity": "warning"},
            "annotations": {"summary": "nvidia-smi fails on {{ $labels.host }}: no GPU metrics"},
        },
        {
            "alert": "AirgapLlmModelDiskLow",
            "expr": _disk_expr(plans, model_mounts, float(a["disk_free"])),
            "for": a["disk_for"],
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "{{ $labels.host }}: under " + _pct(a["disk_free"]) + " free on {{ $labels.mountpoint }}, "
                "where the models live",
            },
        },
    ]
    groups: list[dict[str, Any]] = [{"name": GROUP, "rules": rules}]
    if settings.extra_rules:
        groups.append({"name": f"{GROUP}-inventory", "rules": [dict(r) for r in settings.extra_rules]})
    return {"groups": groups}
