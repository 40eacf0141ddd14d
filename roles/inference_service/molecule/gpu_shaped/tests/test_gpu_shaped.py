"""The GPU-shaped target: device minors, NVIDIA daemon ordering and the device policy, enforced.

No NVIDIA driver is loaded here, so open() of a GPU node that the device policy allows reaches the
kernel and fails with ENXIO (no driver behind major 195), while a node the policy denies fails with
EPERM before that: the difference shows what each unit may open.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

UNIT_DIR = "/etc/systemd/system"
LIBEXEC = "/opt/airgap-llm/libexec"
# CUDA index (PCI bus order) -> minor, as in tests/unit/fixtures/nvidia/smi-q-580-8x-h100-composed.txt.
MINORS = (3, 1, 0, 2, 7, 5, 4, 6)
SERVICES = {"llm": ((0, 1, 2, 3), 8003), "ocr": ((4, 5), 8002), "embedding": ((6,), 8001), "whisper": ((7,), 8004)}
SHARED_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")
PROBE = "/usr/local/lib/airgap-llm-test/gpu-probe.py"

# Opens every node given, prints the errno names as one JSON line, then serves 200 on every path (the
# units' readiness wait polls /health), so a unit started with it is "active" as with an engine.
PROBE_SOURCE = r'''
import errno, http.server, json, os, sys
bind, port, nodes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
result = {"uid": os.getuid()}
for node in nodes:
    try:
        os.close(os.open(node, os.O_RDWR))
        result[node] = "opened"
    except OSError as exc:
        result[node] = errno.errorcode.get(exc.errno, str(exc.errno))
print("GPU-PROBE " + json.dumps(result), flush=True)
if port:
    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
        def log_message(self, *args):
            pass
    http.server.HTTPServer((bind, port), Ok).serve_forever()
'''


def node(index: int) -> str:
    return f"/dev/nvidia{MINORS[index]}"


def probe_line(text: str) -> dict[str, Any]:
    lines = [ln for ln in text.splitlines() if "GPU-PROBE " in ln]
    assert lines, text
    result: dict[str, Any] = json.loads(lines[-1].split("GPU-PROBE ", 1)[1])
    return result


@pytest.fixture(scope="module")
def probe(host: Any) -> str:
    host.check_output(f"mkdir -p {PROBE.rsplit('/', 1)[0]}")
    host.check_output(f"cat > {PROBE} <<'EOF'\n{PROBE_SOURCE}\nEOF\nchmod 0644 {PROBE}")
    return PROBE


def transient(host: Any, probe: str, props: list[str], nodes: list[str]) -> dict[str, Any]:
    args = " ".join(f"-p '{p}'" for p in props)
    out = host.check_output(f"systemd-run --wait --pipe --quiet {args} python3 {probe} 127.0.0.1 0 {' '.join(nodes)}")
    return probe_line(out)


def test_systemd_here_enforces_device_policy(host: Any, probe: str) -> None:
    """Precondition: without it every EPERM/ENXIO check below would prove nothing."""
    assert transient(host, probe, [], ["/dev/nvidia0", "/dev/nvidia3"]) == {
        "uid": 0, "/dev/nvidia0": "ENXIO", "/dev/nvidia3": "ENXIO"}
    assert transient(host, probe, ["DevicePolicy=closed", "DeviceAllow=/dev/nvidia3 rw"],
                     ["/dev/nvidia0", "/dev/nvidia3"]) == {"uid": 0, "/dev/nvidia0": "EPERM", "/dev/nvidia3": "ENXIO"}


def test_protect_clock_alone_hides_no_gpu_on_this_systemd(host: Any, probe: str) -> None:
    """Debian 12's systemd adds ProtectClock='s char-rtc entry only under a device policy."""
    assert host.check_output("systemctl --version").startswith("systemd 252")
    assert transient(host, probe, ["ProtectClock=yes"], ["/dev/nvidia0"])["/dev/nvidia0"] == "ENXIO"


def test_a_node_made_by_a_units_own_privileged_exec_start_pre_is_refused(host: Any) -> None:
    """Why the nodes come from a oneshot ordered before the units, not from ExecStartPre=+."""
    host.check_output(
        f"printf '%s\\n' '[Service]' 'Type=oneshot' 'DevicePolicy=closed' 'DeviceAllow=/dev/nvidia-test rw' "
        f"'ExecStartPre=+/bin/mknod -m 666 /dev/nvidia-test c 195 200' 'ExecStart=/bin/true' "
        f"> {UNIT_DIR}/gpu-shaped-pre.service && systemctl daemon-reload"
    )
    assert host.run("systemctl start gpu-shaped-pre.service").rc != 0
    assert "Operation not permitted" in host.check_output("journalctl -u gpu-shaped-pre.service -o cat --no-pager")
    assert not host.file("/dev/nvidia-test").exists


@pytest.mark.parametrize("name", SERVICES)
def test_unit_allows_its_own_gpus_by_minor(host: Any, name: str) -> None:
    gpus, _ = SERVICES[name]
    unit = host.file(f"{UNIT_DIR}/airgap-llm-{name}.service").content_string
    allowed = sorted(ln for ln in unit.splitlines() if ln.startswith("DeviceAllow=/dev/nvidia") and
                     ln.removeprefix("DeviceAllow=/dev/nvidia").split()[0].isdigit())
    assert allowed == sorted(f"DeviceAllow={node(g)} rw" for g in gpus)
    for shared in (*SHARED_NODES, "/dev/nvidia-modeset"):
        assert f"DeviceAllow={shared} rw\n" in unit
    assert "DevicePolicy=closed\n" in unit and "DeviceAllow=char-nvidia-caps r\n" in unit
    assert "# Minors from the host (nvidia-smi -q: Minor Number of each Bus Id, in PCI bus order).\n" in unit
    env = host.file(f"/etc/airgap-llm/{name}.env").content_string
    assert f"CUDA_VISIBLE_DEVICES={','.join(str(g) for g in gpus)}\n" in env


@pytest.mark.parametrize("name", SERVICES)
def test_unit_starts_after_the_nvidia_daemons(host: Any, name: str) -> None:
    shown = host.check_output(f"systemctl show -p After,Wants,Requires airgap-llm-{name}")
    props = dict(ln.split("=", 1) for ln in shown.splitlines())
    after, requires = props["After"].split(), props["Requires"].split()
    for unit in ("nvidia-persistenced.service", "nvidia-fabricmanager.service", "airgap-llm.nvidia-devices.service"):
        assert unit in after, props
    # the fabric manager is required: the stand-in topology is an NVSwitch board (all 8 GPUs NV18)
    assert "nvidia-fabricmanager.service" in requires and "airgap-llm.nvidia-devices.service" in requires
    assert "nvidia-persistenced.service" in props["Wants"].split()


def test_devices_oneshot_makes_the_nodes_of_every_gpu(host: Any) -> None:
    unit = host.file(f"{UNIT_DIR}/airgap-llm.nvidia-devices.service").content_string
    assert f"ExecStart={LIBEXEC}/nvidia-devices 0 1 2 3 4 5 6 7\n" in unit
    assert "Type=oneshot\n" in unit


@pytest.fixture(scope="module")
def started(host: Any, probe: str) -> dict[str, dict[str, Any]]:
    """Each GPU unit started as written, its ExecStart replaced by the probe (a drop-in): every other
    setting (user, hardening, device policy, requirements, readiness wait) is the unit's own."""
    address = host.check_output("hostname -I").split()[0]
    every_gpu = [f"/dev/nvidia{m}" for m in sorted(MINORS)]
    results = {}
    for name, (_, port) in SERVICES.items():
        dropin = f"{UNIT_DIR}/airgap-llm-{name}.service.d"
        host.check_output(
            f"mkdir -p {dropin} && printf '%s\\n' '[Service]' 'ExecStart=' "
            f"'ExecStart=/usr/bin/python3 {probe} {address} {port} {' '.join(every_gpu + list(SHARED_NODES))}' "
            f"> {dropin}/gpu-shaped-probe.conf"
        )
    host.check_output("systemctl daemon-reload")
    for name in SERVICES:
        start = host.run(f"systemctl start airgap-llm-{name}.service")
        journal = host.check_output(f"journalctl -u airgap-llm-{name}.service -o cat --no-pager")
        assert start.rc == 0, journal
        results[name] = probe_line(journal)
    return results


@pytest.mark.parametrize("name", SERVICES)
def test_service_opens_its_own_gpus_and_is_refused_the_others(host: Any, name: str,
                                                              started: dict[str, dict[str, Any]]) -> None:
    gpus, _ = SERVICES[name]
    result = started[name]
    uid = int(host.check_output("id -u airgap-llm"))
    assert result["uid"] == uid
    own = {node(g) for g in gpus}
    for minor in MINORS:
        path = f"/dev/nvidia{minor}"
        assert result[path] == ("ENXIO" if path in own else "EPERM"), (name, path, result)
    for shared in SHARED_NODES:
        assert result[shared] == "ENXIO", (name, shared, result)
    assert host.service(f"airgap-llm-{name}").is_running


def test_services_started_after_the_daemons_and_the_nodes(host: Any, started: dict[str, dict[str, Any]]) -> None:
    def monotonic(unit: str, prop: str) -> int:
        return int(host.check_output(f"systemctl show -p {prop} --value {unit}"))

    fabric_up = monotonic("nvidia-fabricmanager.service", "ActiveEnterTimestampMonotonic")
    persist_up = monotonic("nvidia-persistenced.service", "ActiveEnterTimestampMonotonic")
    assert fabric_up > 0 and persist_up > 0
    for name in started:
        main_start = monotonic(f"airgap-llm-{name}.service", "ExecMainStartTimestampMonotonic")
        assert main_start >= fabric_up and main_start >= persist_up, name
    log = host.file("/run/nvidia-modprobe.log").content_string
    for minor in MINORS:
        assert f"nvidia-modprobe -c={minor}\n" in log
    # the oneshot ends inactive, so it runs again before each GPU unit's start (module reloads are seen)
    assert log.count("nvidia-modprobe -u -c=0\n") == len(started)
    assert "nvidia-devices: ready" in host.check_output(
        "journalctl -u airgap-llm.nvidia-devices.service -o cat --no-pager")
