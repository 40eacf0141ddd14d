"""Security proof on a real target (the local-cpu inventory, the demo bundle, target set "security" on
10.213.15.0/24): the services run as the airgap-llm user under hardened units (systemd-analyze exposure
at most 3.0), the API key is 0600 and appears in no log, no command output and no --diff, every path
but /health, /ping, /metrics and /version refuses a request without the key, the services listen on
the configured address only, and the target makes no outbound connection attempt during install,
validation and serving (counted with nftables, see egress_counter.py).

Run: `.venv/bin/pytest -rP tests/proof/test_security.py` (as root; -rP shows the figures printed).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import egress_counter
import pytest
import targets
import tiny_models
import yaml
from deployments import REPO, Deployment, ssh

pytestmark = pytest.mark.e2e

DEPLOYMENT = Deployment(
    name="security",
    subnet=ipaddress.IPv4Network("10.213.15.0/24"),
    inventory=REPO / "inventories" / "local-cpu",
    cache="demo",
    models=tiny_models.all_models_cache,
)
SERVICES: dict[str, dict[str, Any]] = yaml.safe_load(
    (DEPLOYMENT.inventory / "group_vars" / "airgap_llm.yml").read_text()
)["airgap_llm_services"]
UNITS = sorted(f"airgap-llm-{name}.service" for name in SERVICES)
# The vLLM engines: the key checks below walk vLLM's own OpenAPI spec (the gateway, LiteLLM, has its own
# guard; validate and tests/e2e check it: 401 without the key, the key in no log).
ENGINES = {name: svc for name, svc in SERVICES.items() if svc["kind"] not in ("gateway", "webui")}
WEBUIS = [name for name, svc in SERVICES.items() if svc["kind"] == "webui"]
SERVICE_USER = "airgap-llm"
MAX_EXPOSURE = 3.0
# What answers without the key (the role's airgap_llm_inference_service_open_paths).
OPEN_PATHS = {"/health", "/ping", "/metrics", "/version"}
# The prefixes vLLM's own --api-key check covers (vllm/entrypoints/serve/middleware/authenticate.py).
GUARDED_BY_VLLM = ("/v1", "/v2", "/inference", "/cohere")
AIRGAP_LLM = str(Path(sys.executable).parent / "airgap-llm")
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")

# Figures printed by the tests (and collected for the report).
FIGURES: dict[str, Any] = {}


# ---------------------------------------------------------------- helpers


def run_cli(*args: str) -> tuple[int, str, str]:
    """The installed `airgap-llm` command as a user runs it: exit code, stdout, and all it printed."""
    proc = subprocess.run([AIRGAP_LLM, *args], text=True, capture_output=True, check=False, cwd=REPO)
    return proc.returncode, proc.stdout, proc.stdout + proc.stderr


def http(url: str, method: str = "GET", body: Any = None, key: str | None = None) -> tuple[int, bytes]:
    """One request from the controller, straight to the target (never through a proxy)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if key is not None:
        req.add_header("Authorization", f"Bearer {key}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=120) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as err:
        return int(err.code), bytes(err.read())


def assert_key_absent(key: str, text: str, where: str) -> None:
    assert len(key) == 48
    assert key not in text, f"the API key appears in {where}"


def listeners(target_set: Any, target: Any) -> list[tuple[str, int]]:
    """(address, port) of every listening TCP and UDP socket on the target but its sshd's (port 22)."""
    found = []
    for line in ssh(target_set, target, "ss -Hltun").splitlines():
        addr, _, port = line.split()[4].rpartition(":")
        if port != "22":
            found.append((addr.strip("[]"), int(port)))
    return found


def service_listeners(target_set: Any, target: Any) -> dict[str, set[str]]:
    """Service name -> the addresses its port is bound to."""
    by_port = {int(svc["port"]): name for name, svc in SERVICES.items()}
    bound: dict[str, set[str]] = {name: set() for name in SERVICES}
    for addr, port in listeners(target_set, target):
        if port in by_port:
            bound[by_port[port]].add(addr)
    return bound


def request_for(path: str, method: str, service: str) -> tuple[str, Any]:
    """A path with its parameters filled in and a body that would be valid with the key."""
    path = re.sub(r"\{[^}]+\}", service, path)
    if method == "GET":
        return path, None
    kind = SERVICES[service]["kind"]
    if kind == "chat":
        body = {"model": service, "messages": [{"role": "user", "content": "Hi"}], "prompt": "Hi", "max_tokens": 4}
    else:
        body = {"model": service, "input": "hello", "text_1": "hello", "text_2": "world"}
    return path, body


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def egress(target_set: Any, target: Any) -> Iterator[egress_counter.EgressCounter]:
    """The nftables counters for the set's subnet, and a default route out of the target, for the module."""
    host = targets.host_address(target_set.subnet).ip
    bridge = targets.bridge_of(target_set.network)
    pid = int(subprocess.run(
        ["podman", "inspect", "-f", "{{.State.Pid}}", target.name], text=True, capture_output=True, check=True
    ).stdout)
    with egress_counter.counting(target_set.subnet, bridge, host) as counter, egress_counter.route_out(pid, host):
        assert ssh(target_set, target, "ip -4 route show default").startswith(f"default via {host}")
        yield counter


@pytest.fixture(scope="module")
def egress_proven(egress: egress_counter.EgressCounter, target_set: Any, target: Any) -> egress_counter.EgressCounter:
    """Deliberate attempts from the target are counted (TCP out, a name lookup, a connection to the
    controller); then the counters are reset for the install."""
    before = egress.counts()
    target_set.ssh(target, (
        "python3 -c \"import socket\n"
        "for addr in [('192.0.2.1', 443), ('" + str(targets.host_address(target_set.subnet).ip) + "', 9)]:\n"
        "    s = socket.socket(); s.settimeout(2); s.connect_ex(addr)\"; "
        "timeout 4 getent hosts airgap-llm-proof.example || true"
    ))
    after = egress.counts()
    FIGURES["deliberate attempts counted"] = {k: after[k] - before[k] for k in after}
    print(f"deliberate attempts from {target.name}: {FIGURES['deliberate attempts counted']}")
    assert after["outbound"] > before["outbound"], after
    assert after["dns"] > before["dns"], after
    assert after["to_host"] > before["to_host"], after
    egress.reset()
    assert set(egress.counts().values()) == {0}
    return egress


@pytest.fixture(scope="module")
def installed(egress_proven: Any, bundle: Path, inventory: Path) -> str:
    """`airgap-llm install -v --json` on the fresh target, counted; everything it printed."""
    rc, _, out = run_cli("install", "-i", str(inventory), "--bundle", str(bundle), "-v", "--json")
    assert rc == 0, out[-4000:]
    return out


@pytest.fixture(scope="module")
def api_key(installed: str, inventory: Path) -> str:
    return (inventory / "credentials" / "airgap_llm_api_key").read_text().strip()


@pytest.fixture(scope="module")
def openapi(installed: str, api_key: str, target: Any) -> dict[str, dict[str, Any]]:
    """Each service's /openapi.json (itself behind the key)."""
    specs = {}
    for name, svc in ENGINES.items():
        status, body = http(f"http://{target.ip}:{svc['port']}/openapi.json", key=api_key)
        assert status == 200, (name, status, body[:200])
        specs[name] = json.loads(body)
    return specs


# ---------------------------------------------------------------- the proof


def test_outbound_attempts_are_counted(egress_proven: egress_counter.EgressCounter) -> None:
    assert FIGURES["deliberate attempts counted"]["outbound"] > 0


def test_units_run_as_the_service_user(installed: str, target_set: Any, target: Any) -> None:
    units = ssh(target_set, target, "systemctl list-units 'airgap-llm-*.service' --all --plain --no-legend")
    assert sorted(line.split()[0] for line in units.splitlines()) == UNITS
    for unit in UNITS:
        show = ssh(target_set, target, f"systemctl show -p User,Group,MainPID {unit}")
        props = dict(line.split("=", 1) for line in show.splitlines())
        assert (props["User"], props["Group"]) == (SERVICE_USER, SERVICE_USER), props
        # Every process of the unit (its cgroup), with its real owner.
        procs = ssh(target_set, target, "ps -e -o pid=,ppid=,user:20=,unit:60=,comm=").splitlines()
        rows = [[r[0], r[1], r[2], r[4]] for r in (line.split(None, 4) for line in procs) if r[3] == unit]
        print(f"{unit}: {len(rows)} processes: " + "; ".join(f"{r[0]} {r[2]} {r[3]}" for r in rows))
        assert props["MainPID"] in {r[0] for r in rows}
        if unit in {f"airgap-llm-{name}.service" for name in ENGINES}:  # the gateway is one process
            assert any(r[1] == props["MainPID"] for r in rows), f"{unit}: the engine has no child process: {rows}"
        assert {r[2] for r in rows} == {SERVICE_USER}, rows


def test_systemd_exposure_is_at_most_3(installed: str, target_set: Any, target: Any) -> None:
    scores = {}
    for unit in UNITS:
        out = ssh(target_set, target, f"systemd-analyze security --no-pager {unit}")
        last = out.splitlines()[-1]
        match = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+) (\S+)", last)
        assert match, last
        scores[unit] = float(match.group(1))
        print(f"systemd-analyze security {unit}: exposure {match.group(1)} {match.group(2)}")
    FIGURES["exposure"] = scores
    assert all(score <= MAX_EXPOSURE for score in scores.values()), scores


def test_secret_files_are_private(
    installed: str, api_key: str, inventory: Path, target_set: Any, target: Any
) -> None:
    cred = inventory / "credentials" / "airgap_llm_api_key"
    assert oct(cred.stat().st_mode & 0o777) == "0o600"
    assert oct(cred.parent.stat().st_mode & 0o777) == "0o700"
    listing = ssh(target_set, target, "stat -c '%n %a %U:%G' /etc/airgap-llm /etc/airgap-llm/*")
    modes = {line.split()[0]: tuple(line.split()[1:]) for line in listing.splitlines()}
    print("\n".join(f"{path} {mode} {owner}" for path, (mode, owner) in sorted(modes.items())))
    assert modes["/etc/airgap-llm"] == ("750", f"root:{SERVICE_USER}")
    assert modes["/etc/airgap-llm/api-key.env"] == ("600", "root:root")
    for name in WEBUIS:  # a web UI's secrets: the key it calls the gateway with, its session secret, its admin's
        assert modes[f"/etc/airgap-llm/{name}.secret.env"] == ("600", "root:root")
    for name in ["common", *SERVICES]:
        assert modes[f"/etc/airgap-llm/{name}.env"] == ("640", f"root:{SERVICE_USER}")
    # The key is in the one root-only file (systemd reads it before dropping privileges), nowhere else
    # under /etc/airgap-llm, and the service user cannot read it.
    assert ssh(target_set, target, "cat /etc/airgap-llm/api-key.env") == f"VLLM_API_KEY={api_key}"
    holders = ssh(target_set, target, (
        f"grep -rlF -- {api_key} /etc /var/lib/airgap-llm /var/cache/airgap-llm /opt/airgap-llm/libexec "
        "/root /tmp /var/tmp || true"
    ))
    assert sorted(holders.split()) == sorted(["/etc/airgap-llm/api-key.env",
                                              *(f"/etc/airgap-llm/{name}.secret.env" for name in WEBUIS)])
    denied = target_set.ssh(target, f"runuser -u {SERVICE_USER} -- cat /etc/airgap-llm/api-key.env 2>&1 || echo denied")
    assert denied.stdout.strip().endswith("denied") and api_key not in denied.stdout
    # Nor on a command line (it reaches the engine as VLLM_API_KEY in its environment).
    assert_key_absent(api_key, ssh(target_set, target, "ps -eo args"), "a process command line")


def test_key_absent_from_install_output(installed: str, api_key: str) -> None:
    assert '"changed"' in installed  # the JSON result is there
    assert_key_absent(api_key, installed, "`airgap-llm install -v --json` output")


def test_key_absent_from_journals(installed: str, api_key: str, target_set: Any, target: Any) -> None:
    for unit in UNITS:
        journal = ssh(target_set, target, f"journalctl --no-pager -o verbose -u {unit}")
        # Uvicorn's start line; Open WebUI routes uvicorn's log through its own logger, which leaves it out.
        marker = "open_webui.main" if unit.removeprefix("airgap-llm-").removesuffix(".service") in WEBUIS \
            else "Application startup complete"
        assert marker in journal, f"{unit}: the service's log is not in the journal"
        assert_key_absent(api_key, journal, f"the journal of {unit}")
    everything = ssh(target_set, target, "journalctl --no-pager -o verbose; cat /var/log/*.log 2>/dev/null || true")
    assert_key_absent(api_key, everything, "the target's journal or /var/log")


def test_key_absent_from_check_and_diff(
    installed: str, api_key: str, bundle: Path, inventory: Path, tmp_path: Path
) -> None:
    """A change that touches an environment file, dry-run through the CLI and through ansible-playbook."""
    inv = tmp_path / "inv"
    shutil.copytree(inventory, inv)  # with credentials/: the same key
    group_file = inv / "group_vars" / "airgap_llm.yml"
    group = yaml.safe_load(group_file.read_text())
    group["airgap_llm_services"]["chat"]["env"]["AIRGAP_LLM_PROOF"] = "1"
    group_file.write_text(yaml.safe_dump(group))

    rc, stdout, out = run_cli("install", "-i", str(inv), "--bundle", str(bundle), "--check", "-v", "--json")
    assert rc == 0, out[-4000:]
    assert json.loads(stdout)["changed"] > 0, stdout
    assert_key_absent(api_key, out, "`airgap-llm install --check` output")

    proc = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(inv), "playbooks/site.yml", "--check", "--diff", "-v",
         "-e", f"airgap_llm_bundle_dir={bundle}"],
        cwd=REPO, text=True, capture_output=True, check=False,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1"},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "+AIRGAP_LLM_PROOF=1" in out, "the diff of chat.env is not shown"
    assert_key_absent(api_key, out, "`ansible-playbook --check --diff -v` output")


def test_key_absent_from_status_and_validate(installed: str, api_key: str, inventory: Path) -> None:
    for command in ("status", "validate"):
        for extra in ([], ["--json"]):
            rc, _, out = run_cli(command, "-i", str(inventory), *extra)
            assert rc == 0, out[-4000:]
            assert_key_absent(api_key, out, f"`airgap-llm {command} {' '.join(extra)}` output")


def test_every_guarded_endpoint_refuses_without_the_key(
    openapi: dict[str, dict[str, Any]], api_key: str, target: Any
) -> None:
    """Every /v1 path of each running server's own spec answers 401 without the key (and /v2, /inference,
    /cohere, the other prefixes vLLM guards); with the key, real requests answer 200."""
    refused: list[str] = []
    wrong: list[str] = []
    for name, spec in openapi.items():
        base = f"http://{target.ip}:{SERVICES[name]['port']}"
        for path, methods in spec["paths"].items():
            if not path.startswith(GUARDED_BY_VLLM):
                continue
            for method in methods:
                url_path, body = request_for(path, method.upper(), name)
                status, answer = http(base + url_path, method.upper(), body)
                (refused if status == 401 else wrong).append(f"{name} {method.upper()} {path} -> {status}")
    print(f"{len(refused)} guarded endpoints refused without the key:\n  " + "\n  ".join(refused))
    FIGURES["guarded endpoints refused"] = len(refused)
    assert not wrong, wrong
    assert len(refused) >= 2 * len(ENGINES)

    for name, svc in ENGINES.items():
        base = f"http://{target.ip}:{svc['port']}"
        status, body = http(base + "/v1/models", key=api_key)
        assert status == 200 and json.loads(body)["data"][0]["id"] == name
        if svc["kind"] == "chat":
            status, body = http(base + "/v1/chat/completions", "POST", {
                "model": name, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8,
            }, key=api_key)
            assert status == 200 and json.loads(body)["choices"][0]["message"]["content"], body
        else:
            status, body = http(base + "/v1/embeddings", "POST", {"model": name, "input": "hello"}, key=api_key)
            assert status == 200 and len(json.loads(body)["data"][0]["embedding"]) > 0, body


def test_only_the_open_paths_answer_without_the_key(
    openapi: dict[str, dict[str, Any]], api_key: str, target: Any
) -> None:
    """vLLM guards only its prefixed paths; the units' middleware refuses the rest (/invocations,
    /pooling, /score, /tokenize, the docs ...) without the key, except the open paths."""
    answered: list[str] = []
    refused: list[str] = []
    wrong: list[str] = []
    for name, spec in openapi.items():
        base = f"http://{target.ip}:{SERVICES[name]['port']}"
        paths = {p: list(m) for p, m in spec["paths"].items() if not p.startswith(GUARDED_BY_VLLM)}
        # Not in the spec: the Prometheus app mounted on /metrics, the documentation pages.
        paths.update({"/metrics": ["get"], "/openapi.json": ["get"], "/docs": ["get"], "/redoc": ["get"]})
        for path, methods in sorted(paths.items()):
            for method in methods:
                url_path, body = request_for(path, method.upper(), name)
                status, _ = http(base + url_path, method.upper(), body)
                line = f"{name} {method.upper()} {path} -> {status}"
                if path in OPEN_PATHS:
                    (answered if status == 200 else wrong).append(line)
                else:
                    (refused if status == 401 else wrong).append(line)
    print("open without the key:\n  " + "\n  ".join(answered))
    print("refused without the key (outside vLLM's own guard):\n  " + "\n  ".join(refused))
    FIGURES["open paths"] = answered
    assert not wrong, wrong
    assert {line.split()[2] for line in answered} == {"/health", "/metrics", "/ping", "/version"}
    assert any(" /invocations " in line for line in refused)


def test_services_listen_on_the_configured_address_only(installed: str, target_set: Any, target: Any) -> None:
    configured = ssh(target_set, target, "sed -n 's/^VLLM_HOST_IP=//p' /etc/airgap-llm/common.env")
    assert configured == str(target.ip)
    bound = service_listeners(target_set, target)
    print(f"service sockets: {bound}")
    assert bound == {name: {str(target.ip)} for name in SERVICES}
    # The engines' other listening sockets (gloo, one per process group of each worker) are on loopback
    # (the units set GLOO_SOCKET_IFNAME=lo): nothing on a wildcard or any other address.
    ports = {int(svc["port"]) for svc in SERVICES.values()}
    # Prometheus and node exporter (the monitoring role) listen on the configured address too, nowhere else.
    monitoring = {(addr, port) for addr, port in listeners(target_set, target) if port in (9090, 9100)}
    assert monitoring == {(str(target.ip), 9090), (str(target.ip), 9100)}, monitoring
    internal = [(addr, port) for addr, port in listeners(target_set, target) if port not in ports | {9090, 9100}]
    print(f"{len(internal)} other listening sockets (sshd's aside), on {sorted({a for a, _ in internal})}")
    assert all(ipaddress.ip_address(addr).is_loopback for addr, _ in internal), internal


def test_the_web_ui_serves_a_browser_with_nothing_from_outside(
    installed: str, inventory: Path, target: Any, tmp_path: Path
) -> None:
    """Headless Chromium logs in to the web UI and chats, while the counters run: the web UI, the gateway and
    the engine answer with no attempt out (checked by the last test), and the page loads nothing from
    outside the web UI's address."""
    import webui_browser

    for name in WEBUIS:
        base = f"http://{target.ip}:{SERVICES[name]['port']}"
        password = (inventory / "credentials" / "airgap_llm_webui_admin_password").read_text().strip()
        answer, outside, _ = webui_browser.chat_on_the_page(base, "admin@airgap-llm.local", password, "Say hello.",
                                                             tmp_path)
        FIGURES[f"web UI {name}: answer on the page"] = answer[:80]
        assert answer and outside == [], (answer, outside)


def test_another_bind_address_is_honoured(
    installed: str, bundle: Path, inventory: Path, tmp_path: Path, api_key: str, target_set: Any, target: Any
) -> None:
    inv = tmp_path / "inv"
    shutil.copytree(inventory, inv)
    group_file = inv / "group_vars" / "airgap_llm.yml"
    group = yaml.safe_load(group_file.read_text())
    group["airgap_llm_inference_service_bind_address"] = "127.0.0.1"
    group_file.write_text(yaml.safe_dump(group))
    rc, _, out = run_cli("install", "-i", str(inv), "--bundle", str(bundle), "--json")
    assert rc == 0, out[-4000:]
    assert_key_absent(api_key, out, "`airgap-llm install` output")
    assert service_listeners(target_set, target) == {name: {"127.0.0.1"} for name in SERVICES}
    sockets = listeners(target_set, target)
    assert all(ipaddress.ip_address(addr).is_loopback for addr, _ in sockets), sockets
    for svc in SERVICES.values():  # not reachable from the controller any more
        with pytest.raises(urllib.error.URLError):
            http(f"http://{target.ip}:{svc['port']}/health")
    rc, _, out = run_cli("validate", "-i", str(inv), "--json")  # validate follows the configured address
    assert rc == 0, out[-4000:]


def test_no_outbound_attempts_during_install_and_serving(
    egress_proven: egress_counter.EgressCounter, installed: str, target: Any
) -> None:
    """Last: the counters have run since the first install began, through every test above."""
    counts = egress_proven.counts()
    FIGURES["outbound attempts during install and serving"] = counts
    print(f"packets from {target.name} counted during install, validate and serving: {counts}")
    print(f"figures: {json.dumps(FIGURES)}")
    assert counts == dict.fromkeys(egress_counter.COUNTERS, 0)
