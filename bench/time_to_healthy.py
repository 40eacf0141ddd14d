#!/usr/bin/env python3
"""vllm-cpu time to healthy under our systemd unit vs the same engine started by hand, side by side.

On the first target of the benchmark set ``benchnoop`` (10.213.16.0/24), installed with the light
inventory ``bench/inventories/noop`` (the ``embed`` service: all-MiniLM-L6-v2 on vllm-cpu), it
alternates, with the service stopped and its port free before each start:

- unit: ``systemctl start airgap-llm-embed``, timed until ``/health`` answers 200, and until
  ``systemctl start`` returns (it returns once the unit's ExecStartPost readiness probe has seen /health
  answer: what ``airgap-llm install`` and a sysadmin wait for);
- by hand: the unit's exact ExecStart command line (read from ``systemctl cat``), started as the unit's
  user and group (``setpriv --reuid/--regid --init-groups``), in its WorkingDirectory, with only the
  environment systemd gives it (its Environment= settings and EnvironmentFile= files, parsed as systemd
  does, plus PATH, HOME, USER, LOGNAME and SHELL), timed until ``/health`` answers 200;

The same poller (a Python loop on the target asking the unit's own readiness URL, the one its
ExecStartPost= probes, every 0.1 s) times both, and the order
alternates (unit first in odd repetitions, by hand first in even ones). Prints the medians, the spread
and the ratios unit / by hand (target: within 1.1x). The other targets' services are stopped first so
that only this engine loads.

    flock /tmp/airgap-llm-heavy.lock .venv/bin/python bench/time_to_healthy.py [--reps 5] [--keep]

``--keep`` leaves the targets up (with the service started again); by default they are torn down.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402
from benchlib import fmt, markdown_table, summary  # noqa: E402

# Runs on the target as root (python3 of the OS): one start, timed by one poller for both modes.
PROBE = r'''
import json, os, pwd, shlex, signal, socket, subprocess, sys, time, urllib.parse, urllib.request

mode, unit = sys.argv[1], sys.argv[2]
url = host = port = None


def healthy():
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def port_free():
    with socket.socket() as s:
        return s.connect_ex((host, port)) != 0


def show(*props):
    out = subprocess.run(["systemctl", "show", "-p", ",".join(props), unit], capture_output=True, text=True,
                         check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def env_file(path):
    """KEY=VALUE lines of an EnvironmentFile= (comments and blank lines skipped, quotes removed)."""
    env = {}
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if not line or line[0] in "#;" or "=" not in line:
                continue
            key, value = line.split("=", 1)
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            env[key.strip()] = value
    return env


def spec():
    """ExecStart argv, user, group, working directory and environment of the unit, as systemd runs it."""
    text = subprocess.run(["systemctl", "cat", unit], capture_output=True, text=True, check=True).stdout
    argv, files, assigned, health = None, [], {}, None
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            argv = shlex.split(line.split("=", 1)[1])
        elif line.startswith("EnvironmentFile="):
            files.append(line.split("=", 1)[1])
        elif line.startswith("ExecStartPost=") and "wait-healthy" in line:
            health = shlex.split(line.split("=", 1)[1])[1]  # wait-healthy URL TIMEOUT
        elif line.startswith("Environment="):
            for word in shlex.split(line.split("=", 1)[1]):
                key, _, value = word.partition("=")
                assigned[key] = value
    props = show("User", "Group", "WorkingDirectory")
    pw = pwd.getpwnam(props["User"])
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": pw.pw_dir,
           "USER": pw.pw_name, "LOGNAME": pw.pw_name, "SHELL": pw.pw_shell}
    env.update(assigned)  # Environment= first: EnvironmentFile= settings take precedence
    for f in files:
        optional = f.startswith("-")
        f = f.lstrip("-")
        if os.path.exists(f):
            env.update(env_file(f))
        elif not optional:
            raise SystemExit(f"EnvironmentFile {f} is missing")
    if argv is None or health is None:
        raise SystemExit(f"{unit}: no ExecStart= or no wait-healthy ExecStartPost= in `systemctl cat {unit}`")
    return {"argv": argv, "user": props["User"], "group": props["Group"], "cwd": props["WorkingDirectory"],
            "env": env, "health": health}


def wait_free():
    deadline = time.monotonic() + 120
    while not port_free():
        if time.monotonic() > deadline:
            raise SystemExit(f"port {port} still answers 120 s after the stop")
        time.sleep(0.2)


if mode == "spec":
    print(json.dumps(spec()))
    sys.exit(0)

s = spec()
url = s["health"]
parsed = urllib.parse.urlsplit(url)
host, port = parsed.hostname, parsed.port
subprocess.run(["systemctl", "stop", unit], check=True)
wait_free()
time.sleep(2)  # let the stopped engine's memory and CPU settle
result = {"mode": mode}
if mode == "unit":
    # Repeated starts would hit the unit's StartLimitBurst ("start request repeated too quickly").
    subprocess.run(["systemctl", "reset-failed", unit], check=False)
    t0 = time.monotonic()
    proc = subprocess.Popen(["systemctl", "start", unit])
else:
    log = open("/var/tmp/airgap-llm-bench-by-hand.log", "wb")
    cmd = ["setpriv", f"--reuid={s['user']}", f"--regid={s['group']}", "--init-groups", "--", *s["argv"]]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=s["env"], cwd=s["cwd"], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
while not healthy():
    if mode == "unit" and proc.poll() not in (None, 0):
        raise SystemExit(f"systemctl start {unit} failed ({proc.returncode}); see journalctl -u {unit}")
    if mode == "hand" and proc.poll() is not None:
        raise SystemExit(f"the engine started by hand exited ({proc.returncode}); see "
                         "/var/tmp/airgap-llm-bench-by-hand.log")
    if time.monotonic() - t0 > 600:
        raise SystemExit(f"{url} did not answer 200 within 600 s ({mode})")
    time.sleep(0.1)
result["healthy_s"] = time.monotonic() - t0
if mode == "unit":
    rc = proc.wait()
    result["returned_s"] = time.monotonic() - t0
    if rc != 0:
        raise SystemExit(f"systemctl start {unit} failed ({rc})")
else:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    wait_free()
print(json.dumps(result))
'''


def on_target(ts: Any, target: Any, *args: str) -> dict[str, Any]:
    """Run PROBE on ``target`` (as root, over SSH) with ``args``; its one line of JSON."""
    cmd = "python3 - " + " ".join(shlex.quote(a) for a in args)
    proc = benchlib.ssh_input(ts, target, cmd, PROBE)
    return dict(json.loads(proc.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="starts per mode (default 5)")
    parser.add_argument("--service", default="embed", help="service of the inventory to start (default embed)")
    benchlib.add_bundle_argument(parser, "when the target is not installed")
    parser.add_argument("--keep", action="store_true", help="leave the targets up, the service started")
    args = parser.parse_args()
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    benchlib.ensure_bundle(parser, args.bundle)

    benchlib.header([Path(sys.executable).name, *sys.argv])
    unit = f"airgap-llm-{args.service}"
    ts = benchlib.target_set(4)
    try:
        benchlib.start(ts)
        target = ts.targets[0]
        # Only this target's engine loads: stop the others' services (kept up by install_noop.py --keep).
        for other in ts.targets[1:]:
            ts.ssh(other, "systemctl stop 'airgap-llm-*.service' 2>/dev/null || true")
        benchlib.wait_for_memory(4)
        inv = benchlib.inventory_for(ts)
        first = benchlib.install(inv, args.bundle, limit=target.name)
        if first.rc != 0:
            print(f"install on {target.name} failed (exit {first.rc}): {first.result}", file=sys.stderr)
            return 1
        print(f"install on {target.name}: {fmt(first.seconds)}, changed {first.changed}")
        spec = on_target(ts, target, "spec", unit)
        shown = {k: "***" if any(w in k for w in ("KEY", "TOKEN", "SECRET")) else v for k, v in spec["env"].items()}
        print(
            f"by hand: cd {spec['cwd']} && env -i {' '.join(f'{k}={shlex.quote(v)}' for k, v in shown.items())} "
            f"setpriv --reuid={spec['user']} --regid={spec['group']} --init-groups -- {shlex.join(spec['argv'])}"
        )
        print(f"timed until {spec['health']} answers 200")

        healthy: dict[str, list[float]] = {"unit": [], "hand": []}
        returned: list[float] = []
        for rep in range(args.reps):
            order = ("unit", "hand") if rep % 2 == 0 else ("hand", "unit")
            for mode in order:
                res = on_target(ts, target, mode, unit)
                healthy[mode].append(res["healthy_s"])
                extra = ""
                if mode == "unit":
                    returned.append(res["returned_s"])
                    extra = f", systemctl start returned after {fmt(res['returned_s'])}"
                print(
                    f"  rep {rep + 1}, {mode:>4}: /health 200 after {fmt(res['healthy_s'])}{extra}, "
                    f"load {benchlib.loadavg()}",
                    flush=True,
                )
        ts.ssh(target, f"systemctl start {unit}")

        by_hand = summary(healthy["hand"])
        rows_in = [
            ("by hand (same argv, env files, user, cwd)", by_hand),
            (f"unit: `systemctl start {unit}` until /health 200", summary(healthy["unit"])),
            (f"unit: `systemctl start {unit}` returns", summary(returned)),
        ]
        print()
        print(f"time to healthy, {args.reps} starts per mode, alternating:")
        print()
        print(
            markdown_table(
                ["start", "median", "min - max", "spread", "/ by hand"],
                [
                    [
                        name,
                        fmt(s.median),
                        f"{fmt(s.low)} - {fmt(s.high)}",
                        f"{s.spread:.0%}",
                        f"{s.median / by_hand.median:.2f}x",
                    ]
                    for name, s in rows_in
                ],
            )
        )
        print()
        print(
            f"ratio unit / by hand, until /health 200: {rows_in[1][1].median / by_hand.median:.2f}x; "
            f"until systemctl start returns: {rows_in[2][1].median / by_hand.median:.2f}x (target: within 1.1x)"
        )
        print(f"load average at end: {benchlib.loadavg()}")
    finally:
        benchlib.finish(ts, args.keep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
