"""Every host tool that the product, the tests, the benchmarks and the demo run on this machine is
installed by ``tests/hosts/install-host-deps`` (or is part of any Debian system, or of the .venv).

The tools are found in the code itself: the first word of each command line passed to
``subprocess``/``run``/``_run`` (or assigned to a ``cmd``/``args``/``argv`` variable, or returned by a
``*command*``/``*cmd*`` function), ``shutil.which`` arguments, and the tool checks of the shell entry
points. Commands inside string literals are scripts that run in the targets, not on this machine.
Adding a call to a new tool without its package here and in install-host-deps fails this test.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INSTALL_HOST_DEPS = REPO / "tests" / "hosts" / "install-host-deps"
SHELL_ENTRY_POINTS = (
    "tests/hosts/molecule-run",
    "tests/hosts/install-host-deps",
    "src/airgap_llm/localtarget/build-image",
)

# tool -> the Debian package providing it (must be in install-host-deps' PACKAGES).
TOOL_PACKAGES = {
    "podman": "podman",
    "ip": "iproute2",
    "tc": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "rsync": "rsync",  # ansible.posix.synchronize runs it on the controller
    "mmdebstrap": "mmdebstrap",
    "zstd": "zstd",
    "gpg": "gnupg",
    "apt-ftparchive": "apt-utils",
    "dpkg-scanpackages": "dpkg-dev",
    "nft": "nftables",
    "gpgv": "gpgv",
    "promtool": "prometheus",
    "git": "git",  # bench/install_noop.py --against exports earlier commits (git archive)
}
# Part of every Debian system (Essential or Priority: required packages: coreutils, bash, util-linux,
# mount, dpkg, apt); sudo is only used by install-host-deps when not root, and says so when absent.
BASE_TOOLS = {"bash", "cp", "rm", "sync", "sha256sum", "mount", "umount", "nsenter", "flock", "dpkg-query", "dpkg-deb",
              "apt-get", "sudo", "tar"}
# Console scripts of the project's .venv (pyproject.toml).
VENV_TOOLS = {"molecule", "ansible-playbook", "ansible-galaxy", "airgap-llm", "pip"}

_RUNNERS = {"run", "_run", "Popen", "call", "check_call", "check_output", "execvp", "execv", "execvpe"}
_CMD_NAMES = re.compile(r"^(cmd|args|argv|command|\w+_cmd|\w+_command|\w+_argv)$")
_CMD_FUNCS = re.compile(r"command|cmd|argv")
_TOOL = re.compile(r"[a-z][a-z0-9_.+-]*")


def _first_word(node: ast.AST) -> str | None:
    if isinstance(node, ast.List | ast.Tuple) and node.elts:
        first = node.elts[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str) and _TOOL.fullmatch(first.value):
            return first.value
    return None


def python_tools(source: str) -> Iterator[str]:
    """The external commands a Python module runs (see the module docstring)."""
    for node in ast.walk(ast.parse(source)):
        found: str | None = None
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name in _RUNNERS and node.args:
                found = _first_word(node.args[0])
            elif name == "which" and node.args and isinstance(node.args[0], ast.Constant):
                found = str(node.args[0].value)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if node.value is not None and any(isinstance(t, ast.Name) and _CMD_NAMES.match(t.id) for t in targets):
                found = _first_word(node.value)
        elif isinstance(node, ast.FunctionDef) and _CMD_FUNCS.search(node.name):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Return) and sub.value is not None and _first_word(sub.value):
                    yield str(_first_word(sub.value))
        if found:
            yield found


def shell_tools(source: str) -> Iterator[str]:
    """The tools a shell entry point checks for (``for tool in ...`` and ``command -v``)."""
    for line in re.findall(r"for tool in ([^;]+); do", source):
        yield from line.split()
    yield from (t for t in re.findall(r"command -v ([A-Za-z0-9_.+-]+)", source))


def used_tools() -> dict[str, set[str]]:
    tools: dict[str, set[str]] = {}
    for folder in ("src", "tests", "bench"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for tool in python_tools(path.read_text()):
                tools.setdefault(tool, set()).add(str(path.relative_to(REPO)))
    for rel in SHELL_ENTRY_POINTS:
        for tool in shell_tools((REPO / rel).read_text()):
            tools.setdefault(tool, set()).add(rel)
    if any("ansible.posix.synchronize" in p.read_text() for p in (REPO / "roles").rglob("*.yml")):
        tools.setdefault("rsync", set()).add("roles (ansible.posix.synchronize)")
    return tools


def installed_packages() -> set[str]:
    match = re.search(r"^PACKAGES=\(\n?(.*?)\)", INSTALL_HOST_DEPS.read_text(), re.S | re.M)
    assert match, f"no PACKAGES=( ... ) list in {INSTALL_HOST_DEPS}"
    return set(match.group(1).split())


def test_the_scan_finds_the_tools_known_to_be_used() -> None:
    tools = used_tools()
    for tool in ("podman", "ip", "ssh", "ssh-keygen", "nft", "nsenter", "mmdebstrap", "gpg", "zstd", "rsync"):
        assert tool in tools, f"the scan no longer sees {tool}: it would miss new tools too"


def test_every_host_tool_is_installed_by_install_host_deps() -> None:
    packages = installed_packages()
    problems = []
    for tool, where in sorted(used_tools().items()):
        if tool in BASE_TOOLS or tool in VENV_TOOLS:
            continue
        package = TOOL_PACKAGES.get(tool)
        if package is None:
            problems.append(f"{tool} (used in {', '.join(sorted(where))}): no package known; add it to "
                            "TOOL_PACKAGES here and to PACKAGES in tests/hosts/install-host-deps")
        elif package not in packages:
            problems.append(f"{tool} (used in {', '.join(sorted(where))}): its package {package} is not in "
                            "PACKAGES of tests/hosts/install-host-deps")
    assert problems == []


def test_the_scanner_sees_calls_and_ignores_scripts_for_the_targets() -> None:
    source = '''
import shutil, subprocess
subprocess.run(["newtool", "-x"])
cmd = ["othertool", "a"]
shutil.which("thirdtool")
def ssh_command():
    return ["fourthtool", "host"]
SCRIPT = """subprocess.run(["systemctl", "is-active", "x"])"""
'''
    assert sorted(python_tools(source)) == ["fourthtool", "newtool", "othertool", "thirdtool"]
    assert list(shell_tools('for tool in podman ip; do\n  command -v "$tool"\ndone\ncommand -v flock')) == [
        "podman", "ip", "flock"]
