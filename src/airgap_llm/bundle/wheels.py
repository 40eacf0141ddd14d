"""The wheelhouse: ``pip download`` for the target's Python and platform tags, plus constraints.txt.

pip runs as ``python -m pip`` of this interpreter, into a staging directory next to the final one
(``wheels/<tag>-<platform>.partial``): wheels already in the bundle with the manifest's hash are
hard-linked in first, so pip reuses them ("File was already downloaded") and fetches only what is
missing; pip's own copy is not atomic, so nothing reaches the final directory until pip has finished,
and then each wheel arrives by rename.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from airgap_llm.bundle.layout import CONSTRAINTS_NAME, PARTIAL_SUFFIX, free_bytes, no_space_hint
from airgap_llm.bundle.manifest import atomic_write_text
from airgap_llm.bundle.progress import human_bytes
from airgap_llm.bundle.spec import WheelSetSpec
from airgap_llm.errors import InputError, UsageError

HEADER = "# airgap-llm wheelhouse"
# FlashInfer (vLLM pins flashinfer-python) downloads prebuilt kernels from the internet at first use
# unless these companions are installed at exactly flashinfer-python's version.
FLASHINFER_COMPANIONS = ("flashinfer-cubin", "flashinfer-jit-cache")


@dataclass
class WheelResult:
    spec: WheelSetSpec
    wheels: list[str] = field(default_factory=list)  # file names in the final directory
    fetched: list[str] = field(default_factory=list)  # names pip had to download
    excluded: list[str] = field(default_factory=list)  # names left out (CPU_EXCLUDED)
    missing_companions: list[str] = field(default_factory=list)  # "flashinfer-cubin==V" the index lacks
    skipped_pip: bool = False


def pip_command(spec: WheelSetSpec, dest: Path, pip_args: Sequence[str]) -> list[str]:
    """The ``pip download`` command line for a wheel set (pure)."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--dest",
        str(dest),
        "--only-binary=:all:",
        "--python-version",
        str(getattr(spec, "python_full", "") or spec.python),
        "--implementation",
        "cp",
        "--abi",
        spec.python_tag,  # pip adds abi3 and the pure-Python tags itself
        "--progress-bar",
        "off",
    ]
    for platform in spec.platforms:
        cmd += ["--platform", platform]
    cmd += list(pip_args)
    cmd += list(spec.requirements)
    return cmd


def companion_requirements(wheel_names: Sequence[str]) -> list[str]:
    """``flashinfer-cubin==V`` (and the JIT cache) for the set's ``flashinfer-python`` V, unless present (pure)."""
    pins = dict(wheel_pin(n) for n in wheel_names)
    version = pins.get("flashinfer-python")
    if version is None:
        return []
    return [f"{name}=={version}" for name in FLASHINFER_COMPANIONS if name not in pins]


def fetch_companions(spec: WheelSetSpec, dest: Path, pip_args: Sequence[str], wheel_names: Sequence[str]) -> list[str]:
    """Download the FlashInfer companions of a wheel set into ``dest``; returns those the index lacks."""
    missing = []
    for req in companion_requirements(wheel_names):
        companion = WheelSetSpec(spec.python, spec.glibc, (req,), (), spec.hosts)
        cmd = pip_command(companion, dest, [*pip_args, "--no-deps"])
        proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=die_with_this_process())
        if proc.returncode == 0:
            continue
        output = proc.stdout + proc.stderr
        if "No matching distribution" not in output:
            tail = "\n".join(output.strip().splitlines()[-10:])
            raise InputError(f"pip download {req} for {spec.dir} failed (exit {proc.returncode}):\n{tail}")
        missing.append(req)
    return missing


def header_lines(spec: WheelSetSpec, pip_args: Sequence[str]) -> list[str]:
    """What the constraints file records about how it was made; a change means pip must run again."""
    lines = [
        HEADER,
        f"# requirements: {' '.join(spec.requirements)}",
        f"# python: {getattr(spec, 'python_full', '') or spec.python} platforms: {' '.join(spec.platforms)}",
        f"# pip args: {' '.join(pip_args)}",
    ]
    if spec.excluded:
        lines.append(f"# left out (break imports beside the CPU torch): {' '.join(spec.excluded)}")
    return lines


def render_constraints(spec: WheelSetSpec, pip_args: Sequence[str], wheel_names: Sequence[str]) -> str:
    """``name==version`` per wheel (normalized names, sorted), after the header (pure)."""
    pins = sorted({f"{name}=={version}" for name, version in (wheel_pin(w) for w in wheel_names)})
    return "\n".join([*header_lines(spec, pip_args), *pins]) + "\n"


def wheel_pin(filename: str) -> tuple[str, str]:
    try:
        name, version, _, _ = parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:
        raise InputError(f"{filename}: not a wheel file name ({exc})") from None
    return str(canonicalize_name(name)), str(version)


def is_excluded(filename: str, excluded: Sequence[str]) -> bool:
    return wheel_pin(filename)[0] in {canonicalize_name(e) for e in excluded}


def constraints_current(text: str, spec: WheelSetSpec, pip_args: Sequence[str]) -> list[str] | None:
    """The pinned ``name==version`` lines if the header matches this spec, else ``None`` (pure)."""
    lines = text.splitlines()
    head = header_lines(spec, pip_args)
    if lines[: len(head)] != head:
        return None
    return [line for line in lines[len(head) :] if line and not line.startswith("#")]


def no_match_error(output: str, spec: WheelSetSpec) -> InputError | None:
    """pip's "No matching distribution" turned into a message naming requirement and target tags."""
    m = re.search(r"No matching distribution found for (\S+)", output)
    if not m:
        return None
    versions = re.search(
        r"Could not find a version that satisfies the requirement (\S+) \(from versions: ([^)]*)\)", output
    )
    seen = f"; versions pip saw for other targets or none: {versions.group(2).strip() or 'none'}" if versions else ""
    return InputError(
        f"wheels for {spec.dir}: no binary wheel of {m.group(1)} for CPython {spec.python} "
        f"(abi {spec.python_tag} or abi3) on {spec.platforms[0]} .. {spec.platforms[-1]}, nor a pure-Python one{seen}. "
        f"Pin another version in the inventory, or pass an index that has it with --pip-arg"
    )


def die_with_this_process() -> Callable[[], None] | None:
    """A ``preexec_fn`` making a child die with the build (even on ``kill -9``); Linux only.

    Otherwise an orphaned pip goes on writing into the staging directory that the next build
    removes and recreates under the same name.
    """
    if sys.platform != "linux":
        return None
    parent = os.getpid()

    def preexec() -> None:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
        if os.getppid() != parent:  # the build died before prctl took effect
            os._exit(1)

    return preexec


def build_wheel_set(
    bundle: Path,
    spec: WheelSetSpec,
    valid: set[str],
    pip_args: Sequence[str] = (),
    log: Callable[[str], None] = lambda _: None,
) -> WheelResult:
    """Make ``bundle/<spec.dir>`` hold exactly the wheels ``spec`` needs, and its constraints.txt.

    ``valid``: bundle-relative paths already checked against the manifest's hash.
    """
    result = WheelResult(spec)
    final = bundle / spec.dir
    constraints = final / CONSTRAINTS_NAME
    rel_constraints = f"{spec.dir}/{CONSTRAINTS_NAME}"
    if constraints.is_file() and rel_constraints in valid:
        pins = constraints_current(constraints.read_text(encoding="utf-8"), spec, pip_args)
        present = {f.name: f for f in final.glob("*.whl") if f"{spec.dir}/{f.name}" in valid}
        if pins is not None and sorted(pins) == sorted({"==".join(wheel_pin(n)) for n in present}):
            result.wheels = sorted(present)
            result.skipped_pip = True
            return result

    stage = final.with_name(final.name + PARTIAL_SUFFIX)
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    reused = set()
    if final.is_dir():
        for wheel in final.glob("*.whl"):
            if f"{spec.dir}/{wheel.name}" in valid:
                os.link(wheel, stage / wheel.name)
                reused.add(wheel.name)
    cmd = pip_command(spec, stage, pip_args)
    log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=die_with_this_process())
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        shutil.rmtree(stage, ignore_errors=True)
        if "No space left on device" in output:
            raise UsageError(
                f"no space left on device while pip downloaded the wheels for {spec.dir} into {stage}: "
                f"{human_bytes(free_bytes(bundle))} free there; {no_space_hint(bundle)}"
            )
        err = no_match_error(output, spec)
        if err is not None:
            raise err
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise InputError(f"pip download for {spec.dir} failed (exit {proc.returncode}):\n{tail}")
    result.missing_companions = fetch_companions(
        spec, stage, pip_args, [p.name for p in stage.iterdir() if p.name.endswith(".whl")]
    )
    downloaded = sorted(p.name for p in stage.iterdir() if p.is_file())
    not_wheels = [n for n in downloaded if not n.endswith(".whl")]
    if not_wheels:
        raise InputError(f"pip download for {spec.dir} produced non-wheel files: {', '.join(not_wheels)}")
    final.mkdir(parents=True, exist_ok=True)
    keep = []
    for name in downloaded:
        if is_excluded(name, spec.excluded):
            result.excluded.append(name)
            continue
        keep.append(name)
        if name not in reused:
            result.fetched.append(name)
        os.replace(stage / name, final / name)
    for old in final.iterdir():
        if old.name != CONSTRAINTS_NAME and old.name not in keep:
            old.unlink()
    shutil.rmtree(stage, ignore_errors=True)
    atomic_write_text(constraints, render_constraints(spec, pip_args, keep))
    result.wheels = keep
    return result
