"""The package indexes ``pip download`` will read (pure, but for reading pip's configuration files)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def index_urls(pip_args: Sequence[str], env: Mapping[str, str], config: Mapping[str, str] | None = None) -> list[str]:
    """The package indexes ``pip download`` will read: ``--pip-arg`` first, then pip's environment
    (``PIP_INDEX_URL``, ...) and its configuration files (``config``: key -> value), then PyPI (pure)."""
    args = list(pip_args)
    isolated = "--isolated" in args
    settings = {} if isolated else {**(config or {}), **_pip_env(env)}
    if "--no-index" in args or settings.get("no-index", "").lower() in ("1", "true", "yes", "on"):
        return []
    urls: list[str] = []
    extra: list[str] = []
    for i, arg in enumerate(args):
        for flag, into in (("--index-url", urls), ("-i", urls), ("--extra-index-url", extra)):
            if arg == flag and i + 1 < len(args):
                into.append(args[i + 1])
            elif arg.startswith(flag + "="):
                into.append(arg.split("=", 1)[1])
    if not urls:
        urls = [settings.get("index-url") or "https://pypi.org/simple"]
    extra += settings.get("extra-index-url", "").split()
    return [u.rstrip("/") + "/" for u in urls + extra]


def _pip_env(env: Mapping[str, str]) -> dict[str, str]:
    names = {"PIP_INDEX_URL": "index-url", "PIP_EXTRA_INDEX_URL": "extra-index-url", "PIP_NO_INDEX": "no-index"}
    return {key: env[name] for name, key in names.items() if env.get(name)}


def pip_config(env: Mapping[str, str]) -> dict[str, str]:
    """``index-url``, ``extra-index-url`` and ``no-index`` from pip's configuration files, in pip's order
    (site-wide, user, the environment's, ``PIP_CONFIG_FILE``; later wins; [download] over [global])."""
    import configparser

    home = Path(env.get("HOME", str(Path.home())))
    xdg = Path(env.get("XDG_CONFIG_HOME", str(home / ".config")))
    files = [Path("/etc/xdg/pip/pip.conf"), Path("/etc/pip.conf"), home / ".pip/pip.conf", xdg / "pip/pip.conf",
             Path(sys.prefix) / "pip.conf"]  # fmt: skip
    if env.get("PIP_CONFIG_FILE"):
        files.append(Path(env["PIP_CONFIG_FILE"]))
    out: dict[str, str] = {}
    for path in files:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        for section in ("global", "download"):
            if parser.has_section(section):
                out.update(
                    {k: v for k, v in parser.items(section) if k in ("index-url", "extra-index-url", "no-index")}
                )
    return out
