"""Load figures of an engine from two readings of its /metrics (Prometheus text format), for ``status``. Pure.

vLLM 0.32's names (vllm/v1/metrics/loggers.py): ``vllm:num_requests_running``, ``vllm:num_requests_waiting``,
``vllm:kv_cache_usage_perc`` (gauges), ``vllm:generation_tokens_total`` (counter),
``vllm:time_to_first_token_seconds`` (histogram: ``_bucket{le=...}``, ``_count``, ``_sum``). An engine
with several engine cores reports one series per ``engine`` label: gauges and counters are summed
(the KV cache usage averaged), histogram buckets added up.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_CACHE = "vllm:kv_cache_usage_perc"
GENERATION_TOKENS = "vllm:generation_tokens_total"
TTFT = "vllm:time_to_first_token_seconds"

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Sample = tuple[str, dict[str, str], float]


def parse_text(text: str) -> list[Sample]:
    """The samples of a Prometheus text exposition; comment lines and lines it cannot read are skipped."""
    samples: list[Sample] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(4))
        except ValueError:
            continue
        labels = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABEL.findall(m.group(3) or "")}
        samples.append((m.group(1), labels, value))
    return samples


def _values(samples: Sequence[Sample], name: str) -> list[float]:
    return [v for n, _, v in samples if n == name and not math.isnan(v)]


def _sum(samples: Sequence[Sample], name: str) -> float | None:
    values = _values(samples, name)
    return sum(values) if values else None


def buckets(samples: Sequence[Sample], name: str) -> list[tuple[float, float]]:
    """A histogram's cumulative buckets (upper bound, count), summed over its series, sorted."""
    by_le: dict[float, float] = {}
    for n, labels, v in samples:
        if n == f"{name}_bucket" and "le" in labels:
            le = math.inf if labels["le"] in ("+Inf", "Inf") else float(labels["le"])
            by_le[le] = by_le.get(le, 0.0) + v
    return sorted(by_le.items())


def histogram_quantile(q: float, cumulative: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus's histogram_quantile: linear within the bucket; None without observations."""
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    total = cumulative[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le, count in cumulative:
        if count >= rank:
            if math.isinf(le):
                return lower_bound  # the highest finite bound, as Prometheus answers
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return lower_bound


def engine_load(first: str, second: str, seconds: float) -> dict[str, Any]:
    """Figures from two readings ``seconds`` apart: requests running and waiting, KV cache usage (0-1),
    generation tokens per second between the readings, time to first token p50/p95 of the requests that
    got their first token between the readings (else of every request since the engine started;
    ``ttft_window`` says which)."""
    a, b = parse_text(first), parse_text(second)
    kv = _values(b, KV_CACHE)
    out: dict[str, Any] = {
        "requests_running": _sum(b, RUNNING),
        "requests_waiting": _sum(b, WAITING),
        "kv_cache_usage": sum(kv) / len(kv) if kv else None,
        "generation_tokens_per_s": None,
        "ttft_p50_s": None,
        "ttft_p95_s": None,
        "ttft_window": None,
        "source": f"/metrics, two readings {seconds:g} s apart",
    }
    t1, t2 = _sum(a, GENERATION_TOKENS), _sum(b, GENERATION_TOKENS)
    if t1 is not None and t2 is not None and seconds > 0:
        out["generation_tokens_per_s"] = max(t2 - t1, 0.0) / seconds  # a restart in between reads as 0
    h1, h2 = dict(buckets(a, TTFT)), buckets(b, TTFT)
    window = [(le, c - h1.get(le, 0.0)) for le, c in h2]
    if window and window[-1][1] > 0 and all(c >= 0 for _, c in window):
        chosen, out["ttft_window"] = window, f"last {seconds:g} s"
    elif h2 and h2[-1][1] > 0:
        chosen, out["ttft_window"] = h2, "since the engine started"
    else:
        chosen = []
    out["ttft_p50_s"] = histogram_quantile(0.5, chosen)
    out["ttft_p95_s"] = histogram_quantile(0.95, chosen)
    return out


def loads_from_readings(readings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``engine-metrics`` output (service -> {first, second, seconds} or {error}) -> service -> load."""
    loads: dict[str, dict[str, Any]] = {}
    for name, r in readings.items():
        if not isinstance(r, Mapping):
            continue
        if r.get("error"):
            loads[str(name)] = {"error": str(r["error"])}
        else:
            loads[str(name)] = engine_load(str(r.get("first", "")), str(r.get("second", "")),
                                           float(r.get("seconds", 0)))
    return loads


# What ``status`` asks Prometheus, per (host, service): the same figures over the last minute.
PROMQL: dict[str, str] = {
    "requests_running": f"sum by (host, service) ({RUNNING})",
    "requests_waiting": f"sum by (host, service) ({WAITING})",
    "kv_cache_usage": f"avg by (host, service) ({KV_CACHE})",
    "generation_tokens_per_s": f"sum by (host, service) (rate({GENERATION_TOKENS}[1m]))",
    "ttft_p50_s": f"histogram_quantile(0.5, sum by (host, service, le) (rate({TTFT}_bucket[1m])))",
    "ttft_p95_s": f"histogram_quantile(0.95, sum by (host, service, le) (rate({TTFT}_bucket[1m])))",
}


def loads_from_prometheus(registered: Mapping[str, Any] | None, host: str) -> dict[str, dict[str, Any]]:
    """The status role's PromQL answers (a registered ``uri`` loop over ``PROMQL``) -> service -> load on ``host``.

    Empty unless every query answered; a service is there when Prometheus has its series (it has none of a
    target it has not scraped yet). The figures are over the last minute (a quantile with no request in that
    minute is None)."""
    results = [r for r in (registered or {}).get("results", []) if isinstance(r, Mapping)]
    if not results or any(r.get("status") != 200 or not isinstance(r.get("json"), Mapping) for r in results):
        return {}
    loads: dict[str, dict[str, Any]] = {}
    for r in results:
        item = r.get("item")
        key = str(item.get("key")) if isinstance(item, Mapping) else str(item)
        data = r["json"].get("data") or {}
        for series in data.get("result") or []:
            labels = series.get("metric") or {}
            if labels.get("host") != host or "service" not in labels:
                continue
            try:
                value: float | None = float(series["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                value = None
            if value is not None and math.isnan(value):
                value = None
            load = loads.setdefault(str(labels["service"]), {
                "requests_running": None, "requests_waiting": None, "kv_cache_usage": None,
                "generation_tokens_per_s": None, "ttft_p50_s": None, "ttft_p95_s": None,
                "ttft_window": "last 1m", "source": "Prometheus, the last minute",
            })
            load[key] = value
    return loads
