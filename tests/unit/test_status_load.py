"""``status``'s load figures: vLLM's /metrics read twice, a GPU's memory and utilization, the table."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rich.console import Console

from airgap_llm.commands.status import gpu_table, load_cells, table
from airgap_llm.monitoring.metrics import buckets, engine_load, histogram_quantile, parse_text
from airgap_llm.status_report import report

from .test_status_report import PLAN, SHOW

# The shape vLLM 0.32's prometheus_client exposition has (names and labels from vllm/v1/metrics/loggers.py).
BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0)


def metrics(running: int, waiting: int, kv: float, tokens: float, ttft: dict[float, int]) -> str:
    labels = 'engine="0",model_name="chat"'
    lines = [
        "# HELP vllm:num_requests_running Number of requests in model execution batches.",
        "# TYPE vllm:num_requests_running gauge",
        f"vllm:num_requests_running{{{labels}}} {float(running)}",
        "# TYPE vllm:num_requests_waiting gauge",
        f"vllm:num_requests_waiting{{{labels}}} {float(waiting)}",
        "# TYPE vllm:kv_cache_usage_perc gauge",
        f"vllm:kv_cache_usage_perc{{{labels}}} {kv}",
        "# TYPE vllm:generation_tokens_total counter",
        f"vllm:generation_tokens_total{{{labels}}} {tokens}",
        f"vllm:generation_tokens_created{{{labels}}} 1.7645e+09",
        "# TYPE vllm:time_to_first_token_seconds histogram",
    ]
    count = 0
    for le in BUCKETS:
        count += ttft.get(le, 0)
        lines.append(f'vllm:time_to_first_token_seconds_bucket{{{labels},le="{le}"}} {float(count)}')
    lines.append(f'vllm:time_to_first_token_seconds_bucket{{{labels},le="+Inf"}} {float(count)}')
    lines.append(f"vllm:time_to_first_token_seconds_count{{{labels}}} {float(count)}")
    return "\n".join(lines) + "\n"


def test_parse_text_reads_names_labels_and_values() -> None:
    samples = parse_text(metrics(2, 1, 0.5, 100, {}) + 'odd{a="x\\"y"} 3\nbroken line\n')
    assert ("vllm:num_requests_running", {"engine": "0", "model_name": "chat"}, 2.0) in samples
    assert ("odd", {"a": 'x"y'}, 3.0) in samples


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    cumulative = [(0.1, 10.0), (0.5, 20.0), (float("inf"), 20.0)]
    assert histogram_quantile(0.5, cumulative) == pytest.approx(0.1)
    assert histogram_quantile(0.75, cumulative) == pytest.approx(0.3)
    assert histogram_quantile(0.5, [(0.1, 0.0), (float("inf"), 0.0)]) is None
    assert histogram_quantile(0.99, [(1.0, 1.0), (float("inf"), 5.0)]) == 1.0


def test_load_from_two_readings() -> None:
    first = metrics(0, 0, 0.10, 1000, {0.25: 4})
    second = metrics(3, 2, 0.42, 1250, {0.25: 4, 0.5: 8, 1.0: 2})
    load = engine_load(first, second, 5.0)
    assert load["requests_running"] == 3 and load["requests_waiting"] == 2
    assert load["kv_cache_usage"] == pytest.approx(0.42)
    assert load["generation_tokens_per_s"] == pytest.approx(50.0)
    # Ten requests got their first token between the readings: 8 in (0.25, 0.5], 2 in (0.75, 1.0].
    assert load["ttft_window"] == "last 5 s"
    assert load["ttft_p50_s"] == pytest.approx(0.25 + 0.25 * 5 / 8)
    assert load["ttft_p95_s"] == pytest.approx(0.75 + 0.25 * (9.5 - 8) / 2)  # rank 0.95 x 10


def test_load_with_no_new_request_falls_back_to_since_start_and_a_restart_reads_zero() -> None:
    text = metrics(0, 0, 0.0, 500, {0.1: 2})
    load = engine_load(text, metrics(0, 0, 0.0, 20, {0.1: 2}), 5.0)
    assert load["generation_tokens_per_s"] == 0.0
    assert load["ttft_window"] == "since the engine started"
    assert load["ttft_p50_s"] == pytest.approx(0.08 + 0.02 * 0.5)
    idle = engine_load(metrics(0, 0, 0.0, 0, {}), metrics(0, 0, 0.0, 0, {}), 5.0)
    assert idle["ttft_p50_s"] is None and idle["ttft_window"] is None
    assert buckets(parse_text(""), "x") == []


def test_report_carries_the_load_and_the_gpus() -> None:
    health = {"results": [{"item": {"name": "chat"}, "status": 200}, {"item": {"name": "embed"}, "status": 200}]}
    readings = {"chat": {"first": metrics(0, 0, 0.1, 0, {}), "second": metrics(1, 0, 0.2, 40, {0.1: 1}),
                         "seconds": 4.0},
                "embed": {"error": "http://10.0.0.4:8001/metrics: Connection refused"}}
    gpu = {"services": {"chat": 20480}, "gpus": [{"index": 0, "memory_used_mib": 20480.0,
                                                  "memory_total_mib": 81559.0, "utilization_pct": 37.0}]}
    rep = report(PLAN, SHOW, health, json.dumps(gpu), None, json.dumps(readings))
    chat, embed = rep["services"]
    assert chat["gpu_memory_mib"] == 20480
    assert chat["load"]["generation_tokens_per_s"] == pytest.approx(10.0)
    assert embed["load"] == {"error": "http://10.0.0.4:8001/metrics: Connection refused"}
    assert rep["gpus"][0]["utilization_pct"] == 37.0
    # The older gpu-usage output ({service: MiB}) still reads.
    assert report(PLAN, SHOW, health, '{"chat": 5}')["services"][0]["gpu_memory_mib"] == 5
    result: dict[str, Any] = {"hosts": {"box": rep}, "failures": []}
    console = Console(width=220, record=True)
    console.print(table(result))
    gpus = gpu_table(result)
    assert gpus is not None
    console.print(gpus)
    text = console.export_text()
    assert "1/0" in text and "20.0" in text and "10.0" in text and "no /metrics" in text
    assert "81559" in text and "25.1" in text and "37" in text


def test_load_cells() -> None:
    assert load_cells(None) == ["", "", "", ""]
    cells = load_cells({"requests_running": 2.0, "requests_waiting": 5.0, "kv_cache_usage": 0.915,
                        "generation_tokens_per_s": 123.45, "ttft_p50_s": 0.12, "ttft_p95_s": 0.9})
    assert cells == ["2/5", "91.5", "123.5", "120/900 ms"]


def test_engine_metrics_reads_a_running_server_twice() -> None:
    """The status role's engine-metrics against the Molecule scenario's stand-in engine, on loopback."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from .conftest import REPO

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fake = REPO / "roles" / "monitoring" / "molecule" / "default" / "fake-engine"
    server = subprocess.Popen([sys.executable, str(fake), str(port), "chat", "127.0.0.1"])
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(50):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        reader = subprocess.Popen(
            [sys.executable, str(REPO / "roles" / "status" / "files" / "engine-metrics"), "1.5",
             f"chat={url}/metrics", "gone=http://127.0.0.1:9/metrics"], stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        urllib.request.urlopen(urllib.request.Request(url + "/v1/generate", data=b"{}"), timeout=5)
        out, _ = reader.communicate(timeout=30)
    finally:
        server.terminate()
        server.wait(timeout=10)
    readings = json.loads(out)
    assert "gone" in readings and "http://127.0.0.1:9/metrics" in readings["gone"]["error"]
    assert "# TYPE" not in readings["chat"]["first"]  # only the series status shows travel back
    rep = report(PLAN, SHOW, {"results": []}, "{}", None, out)
    load = rep["services"][0]["load"]
    assert load["requests_running"] == 0 and load["kv_cache_usage"] == 0.25
    assert load["generation_tokens_per_s"] == pytest.approx(10 / readings["chat"]["seconds"])


def test_load_from_prometheus_answers_and_the_fallback() -> None:
    from airgap_llm.monitoring.metrics import PROMQL, loads_from_prometheus

    def answer(key: str, results: list[dict[str, Any]]) -> dict[str, Any]:
        return {"item": {"key": key, "value": PROMQL[key]}, "status": 200,
                "json": {"status": "success", "data": {"resultType": "vector", "result": results}}}

    def series(host: str, service: str, value: str) -> dict[str, Any]:
        return {"metric": {"host": host, "service": service}, "value": [1764500000.0, value]}

    registered = {"results": [
        answer("requests_running", [series("box", "chat", "3"), series("other", "chat", "9")]),
        answer("requests_waiting", [series("box", "chat", "1")]),
        answer("kv_cache_usage", [series("box", "chat", "0.5")]),
        answer("generation_tokens_per_s", [series("box", "chat", "41.5")]),
        answer("ttft_p50_s", [series("box", "chat", "NaN")]),
        answer("ttft_p95_s", [series("box", "chat", "0.8")]),
    ]}
    loads = loads_from_prometheus(registered, "box")
    assert loads == {"chat": {"requests_running": 3.0, "requests_waiting": 1.0, "kv_cache_usage": 0.5,
                              "generation_tokens_per_s": 41.5, "ttft_p50_s": None, "ttft_p95_s": 0.8,
                              "ttft_window": "last 1m", "source": "Prometheus, the last minute"}}
    partial = {"results": [*registered["results"][:5], {"item": {"key": "ttft_p95_s"}, "status": 401}]}
    assert loads_from_prometheus(partial, "box") == {}
    assert loads_from_prometheus(None, "box") == {}
    plan = {**PLAN, "host": "box"}
    readings = {"chat": {"first": metrics(0, 0, 0.1, 0, {}), "second": metrics(1, 0, 0.2, 40, {}), "seconds": 4.0}}
    rep = report(plan, SHOW, {"results": []}, "{}", None, json.dumps(readings), registered)
    assert rep["services"][0]["load"]["source"] == "Prometheus, the last minute"
    rep = report(plan, SHOW, {"results": []}, "{}", None, json.dumps(readings), partial)
    assert rep["services"][0]["load"]["source"] == "/metrics, two readings 4 s apart"
