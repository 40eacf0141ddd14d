"""Apps: services that run a program of another project from a venv of their own, not vLLM's.

Their pins conflict with vLLM's (pydantic, openai, cryptography, ...), so each app kind gets its own
wheel set in the bundle (``apps/<kind>/<python tag>-<platform>/``) and its own venv on the host
(``<root>/apps/<kind>/venvs/<id>``, live through the link ``<root>/apps/<kind>/venv``), built like the
engine's: offline (``pip --no-index``), an import check, then one rename of the link. Unlike the
engine's, every wheel is pinned with its sha256 in the set's ``requirements.txt`` and installed with
``pip install --require-hashes``: a wheel changed after the build (or a release swapped on the index
under the same version) is refused on the host.

Another app kind needs one more entry in ``APPS`` (and its kind in ``plan_model.APP_KINDS``): the bundle
builder, the python_runtime role (``tasks/app_venv.yml``) and the unit's program path all read it from here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

APPS_DIR = "apps"  # in the bundle, and under the host's root
REQUIREMENTS_NAME = "requirements.txt"
REQUIREMENTS_HEADER = "# airgap-llm app wheel set: every wheel pinned with its sha256 (pip install --require-hashes)"


@dataclass(frozen=True)
class AppPackage:
    """What one app kind installs and runs."""

    kind: str
    requirements: tuple[str, ...]  # exact pins (name[extras]==version), resolved with their dependencies
    import_check: tuple[str, ...]  # modules a new venv must import before it goes live
    program: str  # the console script in the venv's bin/ that the unit runs
    refused_versions: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (name, versions never built)
    # (name, value, why): what keeps it offline, in its unit's environment and around the import check
    environment: tuple[tuple[str, str, str], ...] = ()


# LiteLLM's proxy (`litellm[proxy]`), pinned: 1.108.7 is the newest release whose `proxy` extra resolves on
# PyPI (checked 2026-11-30): 1.110.x needs `litellm-proxy==1.110.x`, which PyPI does not have, and
# 1.108.8 .. 1.109.3 pin litellm-enterprise / litellm-proxy-extras releases it does not have either.
# `prisma` beside it: 1.108.7 imports it on the path that answers a request without a key (without it
# that request gets a 500 instead of a 401); importing it reaches for nothing (no client is generated,
# no database is configured). 1.82.7 and 1.82.8 carried malware (PyPI removed them): never built.
LITELLM_VERSION = "1.108.7"
GATEWAY = AppPackage(
    kind="gateway",
    requirements=(f"litellm[proxy]=={LITELLM_VERSION}", "prisma==0.15.0"),
    import_check=("litellm", "litellm.proxy.proxy_cli", "prisma"),
    program="litellm",
    refused_versions=(("litellm", ("1.82.7", "1.82.8")),),
    # Each checked in LiteLLM 1.108.7's source; `import litellm` alone fetches the cost map without the first.
    environment=(
        ("LITELLM_LOCAL_MODEL_COST_MAP", "True", "the model cost map from the package, not fetched from GitHub"),
        ("LITELLM_TELEMETRY_DISABLED", "true", "usage telemetry vetoed (it is off without a database anyway)"),
        ("LITELLM_MODE", "PRODUCTION", "no .env file loaded from the working directory"),
        ("DISABLE_ADMIN_UI", "True", "no admin UI (it needs a database; the gateway has none)"),
        ("LITELLM_DONT_SHOW_FEEDBACK_BOX", "true", "no banner with a link to GitHub in the journal"),
        ("NO_DOCS", "True", "no Swagger page (it would load its scripts from a CDN in the browser)"),
    ),
)
# Open WebUI, pinned (0.12.4, the newest release on PyPI, checked 2026-12-01; Python 3.11-3.12). Its
# sentence-transformers wants torch: the CPU build (``torch==2.13.0+cpu``, as the CPU engine's) keeps the
# venv free of CUDA's several GB; the web UI computes nothing itself (embeddings, speech and chat are the
# engine services', through the gateway). Every switch below was checked in 0.12.4's env.py and config.py.
OPEN_WEBUI_VERSION = "0.12.4"
WEBUI = AppPackage(
    kind="webui",
    requirements=(f"open-webui=={OPEN_WEBUI_VERSION}", "torch==2.13.0+cpu"),
    import_check=("open_webui", "uvicorn", "chromadb"),
    program="open-webui",
    environment=(
        ("OFFLINE_MODE", "true", "no version check, no model download, no pip install of tools' requirements"),
        ("HF_HUB_OFFLINE", "1", "no Hugging Face download (OFFLINE_MODE sets it too, after some imports)"),
        ("ENABLE_VERSION_UPDATE_CHECK", "false", "no release check against GitHub"),
        ("ANONYMIZED_TELEMETRY", "false", "no telemetry from the vector store (chromadb)"),
        ("DO_NOT_TRACK", "true", "no telemetry from the libraries that honour it"),
        ("SCARF_NO_ANALYTICS", "true", "no install analytics"),
        ("ENABLE_OLLAMA_API", "false", "no Ollama (its default is a local Ollama the host does not run)"),
        ("ENABLE_PERSISTENT_CONFIG", "false", "the inventory, not the web UI's database, is the truth"),
        ("ENABLE_SIGNUP", "false", "accounts are made by the admin, none by visitors"),
        ("ENABLE_WEB_SEARCH", "false", "no web search (no route out)"),
        ("ENABLE_COMMUNITY_SHARING", "false", "no sharing to the public community site"),
        ("RAG_TEXT_SPLITTER", "character", "no tiktoken encoding to download (the token splitter needs one)"),
    ),
)
APPS: dict[str, AppPackage] = {GATEWAY.kind: GATEWAY, WEBUI.kind: WEBUI}


def app_wheel_dir(kind: str, python_tag: str, platform: str) -> str:
    """``apps/gateway/cp311-manylinux_2_36_x86_64``: one app's wheel set inside the bundle."""
    return f"{APPS_DIR}/{kind}/{python_tag}-{platform}"


def refused(app: AppPackage, wheel_names: Sequence[str]) -> list[str]:
    """The wheels of a resolved set that are releases never to be built (``refused_versions``)."""
    out = []
    for name in wheel_names:
        dist, version, _, _ = parse_wheel_filename(name)
        if str(version) in dict(app.refused_versions).get(str(canonicalize_name(dist)), ()):
            out.append(name)
    return out


def render_requirements(app: AppPackage, hashes: Mapping[str, str]) -> str:
    """The hash-pinned requirements file of an app's wheel set (pure).

    ``hashes``: wheel file name -> sha256. One line per wheel, ``name==version --hash=sha256:H``, sorted
    by name; the app's own requirements keep their extras (``litellm[proxy]==V``), so that ``pip install
    --require-hashes --no-index`` (which resolves, without ``--no-deps``) checks the set is complete.
    """
    extras = {}
    for text in app.requirements:
        req = Requirement(text)
        if req.extras:
            extras[str(canonicalize_name(req.name))] = "[" + ",".join(sorted(req.extras)) + "]"
    lines = []
    by_name: dict[str, list[str]] = {}
    for wheel, digest in hashes.items():
        dist, version, _, _ = parse_wheel_filename(wheel)
        name = str(canonicalize_name(dist))
        by_name.setdefault(f"{name}{extras.get(name, '')}=={version}", []).append(digest)
    for pin in sorted(by_name):
        lines.append(pin + "".join(f" --hash=sha256:{d}" for d in sorted(by_name[pin])))
    return "\n".join([REQUIREMENTS_HEADER, *lines]) + "\n"


def wheel_hashes(directory: Path, names: Sequence[str]) -> dict[str, str]:
    """sha256 of each named wheel in ``directory``."""
    out = {}
    for name in names:
        digest = hashlib.sha256()
        with (directory / name).open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        out[name] = digest.hexdigest()
    return out


def target_environment(python_full: str) -> dict[str, str]:
    """The marker environment of the hosts' Python (Linux x86_64 CPython), for ``missing_for_target``."""
    major_minor = ".".join(python_full.split(".")[:2])
    return {
        "implementation_name": "cpython", "implementation_version": python_full, "os_name": "posix",
        "platform_machine": "x86_64", "platform_python_implementation": "CPython", "platform_release": "",
        "platform_system": "Linux", "platform_version": "", "python_full_version": python_full,
        "python_version": major_minor, "sys_platform": "linux",
    }


def _metadata(wheel: Path) -> list[str]:
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        text = zf.read(name).decode("utf-8", "replace")
    head = text.split("\n\n", 1)[0]
    return [line.split(":", 1)[1].strip() for line in head.splitlines() if line.startswith("Requires-Dist:")]


def missing_for_target(directory: Path, requirements: Sequence[str], python_full: str) -> list[str]:
    """The requirements the hosts' Python needs that no wheel of ``directory`` provides.

    ``pip download --python-version`` picks wheels for the target's tags but evaluates dependency markers
    against the Python that runs it (pip issue 11664): a dependency only the hosts' patch release needs
    (redis's ``async-timeout; python_full_version < "3.11.3"`` on Debian 12's 3.11.2, when pip runs on
    3.11.7) is left out, and the host's resolver then fails offline. This walks the set's metadata from
    ``requirements`` with the hosts' environment and names what is missing (pure but for reading the wheels).
    """
    env = target_environment(python_full)
    wheels: dict[str, tuple[str, Path]] = {}
    for wheel in directory.glob("*.whl"):
        dist, version, _, _ = parse_wheel_filename(wheel.name)
        wheels[str(canonicalize_name(dist))] = (str(version), wheel)
    missing: list[str] = []
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(r) for r in requirements]  # the app's own: no marker
    while todo:
        req = todo.pop()
        name = str(canonicalize_name(req.name))
        found = wheels.get(name)
        if found is None or not req.specifier.contains(found[0], prereleases=True):
            text = str(Requirement(f"{req.name}{req.specifier}"))
            if text not in missing:
                missing.append(text)
            continue
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        for line in _metadata(found[1]):
            dep = Requirement(line)
            # A dependency counts when its marker holds on the hosts, without an extra or with one asked for.
            if dep.marker is None or any(dep.marker.evaluate({**env, "extra": e}) for e in ("", *req.extras)):
                todo.append(dep)
    return sorted(missing)
