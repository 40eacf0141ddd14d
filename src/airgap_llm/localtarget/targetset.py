"""A set of local targets: systemd containers on their own internal podman network, no route out.

Each target is a container from the image that ``build-image`` makes (minimal Debian 12, systemd as
PID 1, sshd), attached to an ``--internal`` podman network: targets reach each other and the controller
reaches them over SSH on their own addresses, but they have no default route, no resolver that
forwards outside, and nothing they send can leave the machine. A tiny anchor container keeps the
bridge alive (netavark deletes it when its last container stops, e.g. on a target restart).

``up`` writes ``<run dir>/inventory.json`` (the run dir is ``$AIRGAP_LLM_TARGETS_DIR/<name>``, default
``/tmp/airgap-llm-targets/<name>``) with, for every target, ``ansible_host``, ``ansible_user=root``,
``ansible_ssh_private_key_file`` (an ed25519 key made for this set) and ``ansible_ssh_common_args``::

    from airgap_llm.localtarget import TargetSet

    targets = TargetSet("demo", count=2)
    try:
        hosts = targets.up()              # list[Target], started and reachable by SSH
        targets.exec(hosts[0], "systemctl", "is-system-running")   # podman exec
        targets.ssh(hosts[0], "ip route")                          # over SSH, route-checked
        targets.restart(hosts[0])         # `podman restart`: a reboot of the target
    finally:
        targets.down()                    # containers, network, bridge, key
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from airgap_llm.localtarget import cgroups
from airgap_llm.localtarget.addresses import (
    ANCHOR_HOST,
    SSH_COMMON_ARGS,
    Target,
    TargetError,
    host_address,
    inventory,
    pick_subnet,
    target_addresses,
)
from airgap_llm.localtarget.podman import (
    DEFAULT_IMAGE,
    LABEL,
    bridge_of,
    check_route,
    create_network,
    ensure_bridge,
    ensure_image,
    network_info,
    podman_env,
    remove_network,
    run,
    used_subnets,
)


def run_dir(name: str) -> Path:
    return Path(os.environ.get("AIRGAP_LLM_TARGETS_DIR", "/tmp/airgap-llm-targets")) / name


class TargetSet:
    """``count`` targets named ``<name>-1`` ... on their own internal network ``airgap-llm-<name>``."""

    def __init__(
        self,
        name: str,
        count: int = 1,
        image: str = DEFAULT_IMAGE,
        subnet: ipaddress.IPv4Network | None = None,
        group: str = "targets",
        shared_dir: str | None = None,
    ) -> None:
        if not name.replace("-", "").isalnum():
            raise TargetError(f"target set name {name!r} must be letters, digits and '-'")
        podman_env()
        self.name = name
        self.count = count
        self.image = image
        self.group = group
        self.network = f"airgap-llm-{name}"
        self.dir = run_dir(name)
        self.key_file = self.dir / "id_ed25519"
        self.inventory_path = self.dir / "inventory.json"
        self._subnet = subnet
        # A directory of this machine mounted read-only at ``shared_dir`` on every target, as a file
        # server's export is on every node of a cluster (models on a shared mount).
        self.shared_dir = shared_dir
        self.shared_host_dir = self.dir / "shared"

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        if self._subnet is None:
            info = network_info(self.network)
            if info is None:
                raise TargetError(f"network {self.network} is not up; call up() first")
            self._subnet = ipaddress.IPv4Network(info["subnets"][0]["subnet"])
        return self._subnet

    @property
    def targets(self) -> list[Target]:
        return [
            Target(f"{self.name}-{i + 1}", ip)
            for i, ip in enumerate(target_addresses(self.subnet, self.count))
        ]

    def up(self) -> list[Target]:
        """Start the network and the targets, install the SSH key, wait for sshd."""
        ensure_image(self.image)
        if self._subnet is None and network_info(self.network) is None:
            self._subnet = pick_subnet(used_subnets())
        create_network(self.network, self.subnet)
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.key_file.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"airgap-llm-{self.name}",
                 "-f", str(self.key_file)])
        anchor = f"{self.name}-anchor"
        if run(["podman", "container", "exists", anchor], check=False).returncode != 0:
            run(["podman", "run", "-d", "--name", anchor, "--label", f"{LABEL}={self.name}",
                 "--network", self.network, "--ip", str(self.subnet.network_address + ANCHOR_HOST),
                 self.image, "/bin/sleep", "infinity"])
        for target in self.targets:
            if run(["podman", "container", "exists", target.name], check=False).returncode != 0:
                named_systemd = cgroups.host_has_named_systemd_hierarchy()
                if named_systemd:
                    cgroups.prepare(target.name)
                shared: list[str] = []
                if self.shared_dir:
                    self.shared_host_dir.mkdir(parents=True, exist_ok=True)
                    shared = [f"--volume={self.shared_host_dir}:{self.shared_dir}:ro"]
                run(["podman", "run", "-d", "--name", target.name, "--hostname", target.name,
                     "--label", f"{LABEL}={self.name}", "--network", self.network, "--ip", str(target.ip),
                     *shared, *cgroups.run_options(target.name, named_systemd), self.image])
                if named_systemd:
                    run(cgroups.keeper_command(target.name))
            self.install_key(target)
        for target in self.targets:
            self.wait_for_ssh(target)
        self.inventory_path.write_text(
            json.dumps(inventory(self.targets, self.key_file, self.group), indent=2) + "\n"
        )
        return self.targets

    def install_key(self, target: Target) -> None:
        pub = self.key_file.with_suffix(".pub").read_text()
        self.exec(target, "sh", "-c",
                  "umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys",
                  input_text=pub)

    def exec(self, target: Target, *cmd: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside ``target`` with ``podman exec`` (no network involved)."""
        args = ["podman", "exec", *(["-i"] if input_text is not None else []), target.name, *cmd]
        proc = subprocess.run(args, input=input_text, text=True, capture_output=True, check=False)
        if proc.returncode != 0:
            raise TargetError(f"`{' '.join(args)}` failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return proc

    def ssh_command(self, target: Target, command: str = "") -> list[str]:
        """The ``ssh`` argv reaching ``target`` as root (check the route before using it)."""
        return ["ssh", "-i", str(self.key_file), *SSH_COMMON_ARGS.split(), "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=5", f"root@{target.ip}", *([command] if command else [])]

    def ssh(self, target: Target, command: str) -> subprocess.CompletedProcess[str]:
        """Run ``command`` on ``target`` over SSH, after the route check."""
        check_route(str(target.ip), bridge_of(self.network))
        return run(self.ssh_command(target, command))

    def wait_for_ssh(self, target: Target, timeout_s: float = 60.0) -> None:
        check_route(str(target.ip), bridge_of(self.network))
        deadline = time.monotonic() + timeout_s
        while True:
            proc = run(self.ssh_command(target, "true"), check=False)
            if proc.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TargetError(f"{target.name} ({target.ip}) did not accept SSH within {timeout_s:.0f} s: "
                                  f"{proc.stderr.strip()}")
            time.sleep(0.5)

    def restart(self, target: Target) -> None:
        """Restart the container (a reboot of the host) and wait for SSH again."""
        run(["podman", "restart", target.name])
        if cgroups.host_has_named_systemd_hierarchy():
            run(cgroups.keeper_command(target.name))
        ensure_bridge(bridge_of(self.network), host_address(self.subnet))
        self.wait_for_ssh(target)

    def down(self) -> None:
        """Remove the targets, the network, its bridge and the run dir (key, inventory)."""
        names = run(["podman", "ps", "-a", "--filter", f"label={LABEL}={self.name}",
                     "--format", "{{.Names}}"]).stdout.split()
        if names:
            run(["podman", "rm", "-f", "-t", "0", *names])
        remove_network(self.network)
        for name in names:
            cgroups.release(name)
        shutil.rmtree(self.dir, ignore_errors=True)
