"""Each target's own ``name=systemd`` cgroup tree, on hosts with cgroup v1 (or hybrid) hierarchies.

Why: on such a host, podman's systemd mode (``--systemd=always``, or a command that is systemd) bind
mounts the host's whole ``/sys/fs/cgroup/systemd`` hierarchy, from its root, into the container, even
with ``--cgroupns=private``. systemd inside then takes the host's root for its own: it moves itself to
``/init.scope`` and its services to ``/system.slice/...`` at the root of the *host's* hierarchy, shared
by every target, leaving each container's ``libpod_parent/libpod-<id>`` cgroup empty. When any target
stops, its systemd trims the empty cgroups of "its" tree, which removes every other container's
``libpod-<id>``; after that ``podman exec`` into those containers fails with
``error adding pid to cgroups ... libpod-<id>/cgroup.procs: no such file or directory``.

So targets run without podman's systemd mode and with a cgroup of their own bind-mounted as
``/sys/fs/cgroup/systemd`` (``<host>/sys/fs/cgroup/systemd/airgap-llm-targets/<container>``), plus the
tmpfs mounts the systemd mode would have added; systemd inside manages that subtree only. On a cgroup
v2 host podman mounts a namespaced cgroup2 for ``--cgroupns=private``, and the systemd mode is kept.

A container that another program started in podman's systemd mode can still trim the host's tree when
it goes down, and the target's own ``libpod-<id>`` cgroup is empty (its systemd lives in the subtree
above). So each target also gets a keeper: one ``sleep`` started with ``podman exec``, which runc puts
in ``libpod-<id>``; a cgroup holding a process cannot be removed, and ``podman exec`` keeps working.
"""

from __future__ import annotations

import os
from pathlib import Path

NAMED_SYSTEMD = Path("/sys/fs/cgroup/systemd")
TARGETS_CGROUP = NAMED_SYSTEMD / "airgap-llm-targets"
COMMON_OPTIONS = ("--cgroupns=private", "--shm-size=1g")
# What podman's systemd mode adds besides the cgroup bind (the image sets STOPSIGNAL and container=).
SYSTEMD_TMPFS = ("--tmpfs=/run", "--tmpfs=/run/lock", "--tmpfs=/tmp", "--tmpfs=/sys/fs/cgroup")


def has_named_systemd_hierarchy(mountinfo: str) -> bool:
    """True when ``mountinfo`` (``/proc/self/mountinfo``) has a v1 ``name=systemd`` hierarchy mounted."""
    for line in mountinfo.splitlines():
        fields = line.split(" - ", 1)
        if len(fields) != 2:
            continue
        fstype, _source, *options = fields[1].split()
        if fstype == "cgroup" and "name=systemd" in ",".join(options).split(","):
            return True
    return False


def host_has_named_systemd_hierarchy() -> bool:
    try:
        return has_named_systemd_hierarchy(Path("/proc/self/mountinfo").read_text())
    except OSError:
        return False


def target_cgroup(container: str, root: Path = TARGETS_CGROUP) -> Path:
    return root / container


def run_options(container: str, named_systemd: bool, root: Path = TARGETS_CGROUP) -> list[str]:
    """The ``podman run`` options that give ``container`` a systemd of its own (see the module doc)."""
    if not named_systemd:
        return ["--systemd=always", *COMMON_OPTIONS, "--tmpfs=/sys/fs/cgroup"]
    return [
        "--systemd=false",
        *SYSTEMD_TMPFS,
        f"--volume={target_cgroup(container, root)}:{NAMED_SYSTEMD}",
        *COMMON_OPTIONS,
    ]


KEEPER = ("/bin/sleep", "infinity")


def keeper_command(container: str) -> list[str]:
    """``podman exec -d CONTAINER sleep infinity``: a process that holds the container's own cgroup."""
    return ["podman", "exec", "-d", container, *KEEPER]


def prepare(container: str, root: Path = TARGETS_CGROUP) -> None:
    """Create the target's cgroup (before ``podman run``); a no-op on a host without the hierarchy."""
    if root.parent.is_dir():
        target_cgroup(container, root).mkdir(parents=True, exist_ok=True)


def release(container: str, root: Path = TARGETS_CGROUP) -> list[Path]:
    """Remove the target's cgroup tree once its container is gone; returns what could not be removed.

    Only empty cgroups can be removed (rmdir), deepest first; a cgroup still holding a process is
    left and returned, never forced.
    """
    top = target_cgroup(container, root)
    if not top.is_dir():
        return []
    left: list[Path] = []
    for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda entry: -len(Path(entry[0]).parts)):
        try:
            Path(dirpath).rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            left.append(Path(dirpath))
    return left
