#!/usr/bin/env python3
"""Serve a host's verified staging area to the other hosts of one run: a read-only rsync daemon.

Runs on the host (Python 3.8+, standard library only); roles/model_store starts it on the hosts that
serve a relay wave and stops it when the wave ends (and at the end of the run, and at the start of the
next one, for a run that was interrupted).

    airgap_llm_model_relay.py start --dir /run/airgap-llm-relay --address 10.0.0.11 --port 8730 \\
        --root /var/lib/airgap-llm/hf/.airgap-llm-staging --allow 10.0.0.12 --allow 10.0.0.13
    airgap_llm_model_relay.py follow --dir /run/airgap-llm-relay --source 10.0.0.11 --port 8730 \
        --folder models--org--name --expected EXPECTED.json --root STAGING --record RECORD --hub HUB
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

The pipelined pass. A second read-only module, ``state``, serves ``--dir``/state/state.json: per model
folder ``receiving``, ``done`` or ``failed``, and every file this host holds verified (path -> sha256).
``start`` writes it from the record (``--expected``, ``--record``, ``--staging``; the folders given with
``--receiving`` are ``receiving``, the others ``done``), and whatever receives on this host adds to it as it
verifies (the verify script's ``--watch --state`` for a copy from the controller, ``follow`` for a copy
from another host). ``follow`` pulls one model folder from its parent in the tree *file by file*: it
reads the parent's state, pulls (rsync, resumable, into the staging area) the files the parent has
verified and this host has not, hashes each on this host, records the good ones and names them in its
own state, so that its own children can take them at once; the levels of the tree run at the same time.
When the parent is ``done`` and every file is here, a last rsync of the folder brings its links and
drops what the parent does not hold, and the folder is verified in full. ``follow`` prints a JSON line
and exits 0 (the folder is here, verified), 1 (a file received does not match the manifest: this host
neither serves nor publishes it) or 3 (not received: the parent failed, stopped or lacks a file, or did
not change for ``--stall`` seconds; the role's waves then take it from another verified copy).

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
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import airgap_llm_verify_models as vm  # noqa: E402 (installed beside this script)

USER = "airgap-llm-relay"
MODULE = "models"
STATE_MODULE = "state"
SECRET_ENV = "AIRGAP_LLM_RELAY_SECRET"
PARTIAL_DIR = ".airgap-llm-partial"
NOT_RECEIVED = 3


def state_file(run_dir: str) -> str:
    return os.path.join(run_dir, STATE_MODULE, "state.json")


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
        # Each receiver: a pull and, in the pipelined pass, a read of the state file.
        f"max connections = {2 * max(1, len(allow))}",
        "",
        *module_text(MODULE, root, run_dir, allow),
        f"    exclude = {PARTIAL_DIR}/",
        "",
        *module_text(STATE_MODULE, f"{run_dir}/{STATE_MODULE}", run_dir, allow),
        "",
    ])


def module_text(name: str, path: str, run_dir: str, allow: list[str]) -> list[str]:
    """A read-only, unlisted module open to the relay's user with the run's secret, from ``allow`` only."""
    return [
        f"[{name}]",
        f"    path = {path}",
        "    read only = yes",
        "    write only = no",
        "    list = no",
        f"    auth users = {USER}",
        f"    secrets file = {run_dir}/rsyncd.secrets",
        "    strict modes = yes",
        f"    hosts allow = {' '.join(allow)}",
        "    hosts deny = *",
    ]


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
    me = os.path.basename(__file__).encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                args = fh.read().split(b"\0")
        except OSError:
            continue
        following = b"follow" in args and any(os.path.basename(a) == me for a in args)
        if (b"--daemon" in args and config in args) or any(a.startswith(pull) for a in args) or following:
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


def initial_state(expected: str | None, root: str, record: str | None, receiving: list[str]) -> dict[str, Any]:
    """What this host holds verified now (the record's word on the files as they are), per folder."""
    if not expected:
        return {"folders": {f: "receiving" for f in receiving}, "verified": {}}
    entries = vm.load_entries(expected, [])
    held = vm.vouched_files(root, entries, vm.load_record(record) if record else {})
    folders = {e.path.split("/", 1)[0] for e in entries}
    return {"folders": {f: "receiving" if f in receiving else "done" for f in sorted(folders | set(receiving))},
            "verified": held}


def start(run_dir: str, address: str, port: int, root: str, allow: list[str], secret: str,
          state: dict[str, Any] | None = None) -> dict[str, object]:
    stop(run_dir)
    os.makedirs(run_dir, mode=0o700)
    # Readable by the daemon's unprivileged user inside its chroot; the secret stays in run_dir (0700).
    os.makedirs(os.path.join(run_dir, STATE_MODULE), mode=0o755)
    os.chmod(os.path.join(run_dir, STATE_MODULE), 0o755)
    state = state or {}
    vm.update_state(state_file(run_dir), state.get("folders", {}), state.get("verified", {}))
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


# --- the pipelined pass: pull one folder file by file from the parent -------------------------------


def rsync_url(address: str, port: int, module: str, path: str = "") -> str:
    host = f"[{address}]" if ":" in address else address
    return f"rsync://{USER}@{host}:{port}/{module}/{path}"


def parent_state(address: str, port: int) -> dict[str, Any] | None:
    """The parent's state file, or None when it cannot be read now."""
    with tempfile.TemporaryDirectory(prefix="airgap-llm-relay-") as tmp:
        got = subprocess.run(  # noqa: S603,S607
            ["rsync", "--contimeout=10", "--timeout=30", rsync_url(address, port, STATE_MODULE, "state.json"),
             os.path.join(tmp, "state.json")], capture_output=True, text=True, check=False)
        if got.returncode != 0:
            return None
        return vm.load_state(os.path.join(tmp, "state.json"))


def wanted_now(want: list[vm.Entry], parent: dict[str, Any]) -> list[vm.Entry]:
    """The files this host still needs that the parent holds verified with the manifest's sha256. Pure."""
    held = parent.get("verified", {})
    return [e for e in want if held.get(e.path) == e.sha256]


def follow_step(want: list[vm.Entry], ready: list[vm.Entry], parent: dict[str, Any] | None, folder: str) -> str:
    """What follow does next: "pull" (ready files), "finish" (all here, parent done), "wait", or "give-up"
    (the parent failed, or is done and lacks what this host needs). Pure."""
    status = (parent or {}).get("folders", {}).get(folder)
    if ready:
        return "pull"
    if not want and status == "done":
        return "finish"
    if status in ("failed", "done") or (parent is not None and status is None):
        return "give-up"
    return "wait"


def run_beating(cmd: list[str], own_state: str) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (an rsync pull), noting in this host's state every few seconds that its receiver lives."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)  # noqa: S603
        while True:
            try:
                child.wait(timeout=vm.HEARTBEAT_S)
                break
            except subprocess.TimeoutExpired:
                vm.update_state(own_state)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, child.returncode, out.read(), err.read())


def follow(args: argparse.Namespace) -> int:
    entries = vm.load_entries(args.expected, [args.folder])
    files = [e for e in entries if e.link is None]
    own_state = state_file(args.dir)
    base = ["rsync", "--links", "--perms", "--times", "--no-owner", "--no-group", "--chmod=D0755,F0644",
            "--contimeout=30", "--timeout=600", f"--partial-dir={args.partial_dir}", "--itemize-changes",
            *args.rsync_opts]
    report: dict[str, Any] = {"folder": args.folder, "source": args.source, "received": False, "ok": False,
                              "pulled": 0, "hashed_bytes": 0, "failures": [], "reason": ""}

    def done(rc: int, reason: str) -> int:
        report["reason"] = reason
        if rc != 0:
            vm.update_state(own_state, {args.folder: "failed"})
        print(json.dumps(report, sort_keys=True))
        return rc

    record = vm.load_record(args.record)
    vm.update_state(own_state, {args.folder: "receiving"}, vm.vouched_files(args.root, files, record))
    last_seen: Any = None
    started = last_change = time.monotonic()
    reached = False
    rsync_errors = 0
    while True:
        record = vm.load_record(args.record)
        seen = vm.look(args.root, files)
        want = [e for e in files if not vm.vouched(e, seen[e.path], record)]
        parent = parent_state(args.source, args.port)
        reached = reached or parent is not None
        if not reached and time.monotonic() - started > args.connect_timeout:
            # Its daemon started before this pull did: a parent never reached is a network or firewall matter.
            return done(NOT_RECEIVED, f"cannot reach the relay on {args.source}:{args.port} "
                                      f"for {args.connect_timeout:g} s")
        # Progress: a file arrived here, or the parent's state moved (a file verified there, or its receiver's
        # heartbeat while a long file arrives).
        now = (len(want), parent and parent["folders"].get(args.folder), parent and len(parent["verified"]),
               parent and parent.get("alive"))
        if now != last_seen:
            last_seen, last_change = now, time.monotonic()
        ready = wanted_now(want, parent) if parent else []
        step = follow_step(want, ready, parent, args.folder)
        if step == "pull":
            with tempfile.NamedTemporaryFile("w", prefix="airgap-llm-relay-", suffix=".list") as listing:
                listing.write("".join(e.path + "\n" for e in ready))
                listing.flush()
                got = run_beating(
                    [*base, f"--files-from={listing.name}", f"--link-dest={args.hub}",
                     rsync_url(args.source, args.port, MODULE), args.root.rstrip("/") + "/"], own_state)
            if got.returncode != 0:
                rsync_errors += 1
                if rsync_errors >= 3:
                    return done(NOT_RECEIVED, f"rsync from {args.source} failed {rsync_errors} times "
                                              f"(exit {got.returncode}): {got.stderr.strip()[-500:]}")
                time.sleep(args.poll)
                continue
            rsync_errors = 0
            report["pulled"] += sum(1 for line in got.stdout.splitlines() if line.startswith(">f"))
            seen = vm.look(args.root, ready)
            present = [e for e in ready if seen[e.path] is not None and seen[e.path].kind == "file"]
            hashed = vm.hash_all(args.root, present, args.workers)
            report["hashed_bytes"] += sum(e.size for e in present)
            good = {e.path: {"size": seen[e.path].size, "mtime_ns": seen[e.path].mtime_ns, "sha256": e.sha256}
                    for e in present if hashed.get(e.path) == e.sha256}
            vm.merge_record(args.record, good)
            vm.update_state(own_state, verified={p: v["sha256"] for p, v in good.items()})
            bad = vm.hash_failures(present, hashed)
            if bad:
                report["failures"] = [f.to_json() for f in sorted(bad)]
                return done(1, f"{len(bad)} file(s) received from {args.source} do not match the manifest")
            continue
        if step == "finish":
            got = subprocess.run(  # noqa: S603
                [*base, "--recursive", "--delete", f"--link-dest={args.hub}/{args.folder}",
                 rsync_url(args.source, args.port, MODULE, args.folder + "/"),
                 os.path.join(args.root, args.folder) + "/"],
                capture_output=True, text=True, check=False)
            if got.returncode != 0:
                return done(NOT_RECEIVED, f"the last rsync of {args.folder} from {args.source} failed "
                                          f"(exit {got.returncode}): {got.stderr.strip()[-500:]}")
            rc, verified = vm.run(args.expected, args.root, args.record, args.workers, [args.folder])
            report["failures"] = verified["failures"]
            if rc != 0:
                return done(1, f"{args.folder} from {args.source} does not match the manifest")
            vm.update_state(own_state, {args.folder: "done"}, vm.vouched_files(args.root, files,
                                                                                vm.load_record(args.record)))
            report.update(received=True, ok=True)
            return done(0, "received and verified")
        if step == "give-up":
            status = parent["folders"].get(args.folder) if parent else None
            return done(NOT_RECEIVED, f"{args.source} {'failed' if status == 'failed' else 'lacks files'} "
                                      f"of {args.folder} ({len(want)} not received here)")
        vm.update_state(own_state)  # this receiver is alive (its children wait on it)
        if time.monotonic() - last_change > args.stall:
            return done(NOT_RECEIVED, f"no progress from {args.source} for {args.stall:g} s "
                                      f"({'its state cannot be read' if parent is None else 'still receiving'})")
        time.sleep(args.poll)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start")
    p_start.add_argument("--dir", required=True)
    p_start.add_argument("--address", required=True)
    p_start.add_argument("--port", type=int, required=True)
    p_start.add_argument("--root", required=True)
    p_start.add_argument("--allow", action="append", default=[], required=True)
    p_start.add_argument("--expected", help="the host's manifest entries (for the state file)")
    p_start.add_argument("--record", help="the record of verified files (for the state file)")
    p_start.add_argument("--receiving", action="append", default=[], metavar="FOLDER",
                         help="a folder this host receives in the pipelined pass")
    p_follow = sub.add_parser("follow")
    p_follow.add_argument("--dir", required=True)
    p_follow.add_argument("--source", required=True, help="the parent's cluster address")
    p_follow.add_argument("--port", type=int, required=True)
    p_follow.add_argument("--folder", required=True, help="the model folder (models--ORG--NAME)")
    p_follow.add_argument("--expected", required=True)
    p_follow.add_argument("--root", required=True, help="the staging area")
    p_follow.add_argument("--record", required=True)
    p_follow.add_argument("--hub", required=True, help="the live hub (files it holds unchanged are hard-linked)")
    p_follow.add_argument("--partial-dir", default=PARTIAL_DIR)
    p_follow.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p_follow.add_argument("--stall", type=float, default=600.0, help="give up after this long with no progress")
    p_follow.add_argument("--connect-timeout", type=float, default=60.0,
                          help="give up when the parent's relay never answered for this long")
    p_follow.add_argument("--poll", type=float, default=0.25)
    p_follow.add_argument("rsync_opts", nargs="*", help="more rsync options (after --)")
    p_stop = sub.add_parser("stop")
    p_stop.add_argument("--dir", required=True)
    args = parser.parse_args(argv)
    if not os.path.isabs(args.dir) or args.dir.rstrip("/") in ("", "/run", "/tmp", "/var"):
        parser.error(f"--dir must be a directory of its own, got {args.dir!r}")
    if args.command == "stop":
        print(json.dumps(stop(args.dir)))
        return 0
    if args.command == "follow":
        if "/" in args.folder or args.folder in ("", ".", ".."):
            parser.error(f"--folder must be one model folder, got {args.folder!r}")
        try:
            ipaddress.ip_address(args.source)
            return follow(args)
        except ValueError as exc:
            parser.error(str(exc))
        except (OSError, vm.InputProblem) as exc:
            print(json.dumps({"folder": args.folder, "received": False, "ok": False, "reason": str(exc)}))
            vm.update_state(state_file(args.dir), {args.folder: "failed"})
            return NOT_RECEIVED
    secret = os.environ.get(SECRET_ENV, "")
    if len(secret) < 16:
        parser.error(f"{SECRET_ENV} must hold the run's secret (16 characters or more)")
    try:
        for a in [args.address, *args.allow]:
            ipaddress.ip_address(a)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        state = initial_state(args.expected, args.root, args.record, args.receiving)
        print(json.dumps(start(args.dir, args.address, args.port, args.root, args.allow, secret, state)))
    except (OSError, RuntimeError, subprocess.CalledProcessError, vm.InputProblem) as exc:
        print(json.dumps({"started": False, "error": str(exc)}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
