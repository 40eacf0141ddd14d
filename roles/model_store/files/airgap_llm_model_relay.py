#!/usr/bin/env python3
"""Serve a host's verified staging area to the other hosts of one run: a read-only rsync daemon.

Runs on the host (Python 3.8+, standard library only); roles/model_store starts it on the hosts that
serve a relay wave and stops it when the wave ends (and at the end of the run, and at the start of the
next one, for a run that was interrupted).

    airgap_llm_model_relay.py start --dir /run/airgap-llm-relay --address 10.0.0.11 --port 8730 \\
        --root /var/lib/airgap-llm/hf/.airgap-llm-staging --allow 10.0.0.12 --allow 10.0.0.13
    airgap_llm_model_relay.py stop --dir /run/airgap-llm-relay

``start`` reads the run's secret from the environment (AIRGAP_LLM_RELAY_SECRET, never the command line,
which every local user can read), writes the daemon's configuration and secrets file (0600) under
``--dir``, and starts ``rsync --daemon`` bound to ``--address`` only, with one read-only, unlisted module
``models`` over ``--root`` (rsync's partial dirs excluded), open to the user ``airgap-llm-relay`` with
that secret and to the ``--allow`` addresses only, as uid/gid 65534 in a chroot. It waits until the
port answers. ``stop`` ends the daemon started with ``--dir``'s configuration, the children it forked for
connections, and any pull from another host's relay (a run killed on the controller leaves them
running), and removes ``--dir`` with the secret in it. Both print a JSON line;
``stop`` says whether it stopped or removed anything (the role's changed status).

Exit status: 0 done, 1 the daemon did not start or answer, 2 bad usage.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

USER = "airgap-llm-relay"
MODULE = "models"
SECRET_ENV = "AIRGAP_LLM_RELAY_SECRET"
PARTIAL_DIR = ".airgap-llm-partial"


def config_text(run_dir: str, address: str, port: int, root: str, allow: list[str]) -> str:
    return "\n".join([
        f"pid file = {run_dir}/rsyncd.pid",
        f"lock file = {run_dir}/rsyncd.lock",
        f"log file = {run_dir}/rsyncd.log",
        f"address = {address}",
        f"port = {port}",
        "reverse lookup = no",
        "use chroot = yes",
        "uid = 65534",
        "gid = 65534",
        f"max connections = {max(1, len(allow))}",
        "",
        f"[{MODULE}]",
        f"    path = {root}",
        "    read only = yes",
        "    write only = no",
        "    list = no",
        f"    auth users = {USER}",
        f"    secrets file = {run_dir}/rsyncd.secrets",
        "    strict modes = yes",
        f"    hosts allow = {' '.join(allow)}",
        "    hosts deny = *",
        f"    exclude = {PARTIAL_DIR}/",
        "",
    ])


def write_private(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def daemon_pid(run_dir: str) -> int | None:
    """The pid of the rsync daemon started with this run dir's configuration, if it still runs."""
    try:
        with open(os.path.join(run_dir, "rsyncd.pid")) as fh:
            pid = int(fh.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read().split(b"\0")
    except (OSError, ValueError):
        return None
    wanted = f"--config={run_dir}/rsyncd.conf".encode()
    return pid if b"--daemon" in cmdline and wanted in cmdline else None


def relay_processes(run_dir: str) -> list[int]:
    """This host's relay processes: the daemon started with this run dir's configuration and the children
    it forked for each connection, and pulls from another host's relay daemon (a run killed on the
    controller leaves both running)."""
    config = f"--config={run_dir}/rsyncd.conf".encode()
    pull = f"rsync://{USER}@".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                args = fh.read().split(b"\0")
        except OSError:
            continue
        if (b"--daemon" in args and config in args) or any(a.startswith(pull) for a in args):
            found.append(int(name))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop(run_dir: str) -> dict[str, bool]:
    """End every relay process of this host (TERM, then KILL after 5 s), remove the run dir and its secret."""
    found = relay_processes(run_dir)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in found if _alive(p)]
        if not alive:
            break
        for pid in alive:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        for _ in range(50):
            if not any(_alive(p) for p in alive):
                break
            time.sleep(0.1)
    removed = os.path.lexists(run_dir)
    if removed:
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"stopped": bool(found), "removed": removed}


def answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def start(run_dir: str, address: str, port: int, root: str, allow: list[str], secret: str) -> dict[str, object]:
    stop(run_dir)
    os.makedirs(run_dir, mode=0o700)
    conf = os.path.join(run_dir, "rsyncd.conf")
    write_private(conf, config_text(run_dir, address, port, root, allow))
    write_private(os.path.join(run_dir, "rsyncd.secrets"), f"{USER}:{secret}\n")
    subprocess.run(["rsync", "--daemon", f"--config={conf}"], check=True)  # noqa: S603,S607 (detaches)
    for _ in range(100):
        if daemon_pid(run_dir) is not None and answers(address, port):
            return {"started": True, "address": address, "port": port, "allow": allow, "pid": daemon_pid(run_dir)}
        time.sleep(0.1)
    log = ""
    try:
        with open(os.path.join(run_dir, "rsyncd.log")) as fh:
            log = fh.read()[-2000:]
    except OSError:
        pass
    stop(run_dir)
    raise RuntimeError(f"the rsync daemon did not answer on {address}:{port}: {log.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start")
    p_start.add_argument("--dir", required=True)
    p_start.add_argument("--address", required=True)
    p_start.add_argument("--port", type=int, required=True)
    p_start.add_argument("--root", required=True)
    p_start.add_argument("--allow", action="append", default=[], required=True)
    p_stop = sub.add_parser("stop")
    p_stop.add_argument("--dir", required=True)
    args = parser.parse_args(argv)
    if not os.path.isabs(args.dir) or args.dir.rstrip("/") in ("", "/run", "/tmp", "/var"):
        parser.error(f"--dir must be a directory of its own, got {args.dir!r}")
    if args.command == "stop":
        print(json.dumps(stop(args.dir)))
        return 0
    secret = os.environ.get(SECRET_ENV, "")
    if len(secret) < 16:
        parser.error(f"{SECRET_ENV} must hold the run's secret (16 characters or more)")
    try:
        for a in [args.address, *args.allow]:
            ipaddress.ip_address(a)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        print(json.dumps(start(args.dir, args.address, args.port, args.root, args.allow, secret)))
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(json.dumps({"started": False, "error": str(exc)}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
