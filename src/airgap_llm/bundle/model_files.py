"""Which files of a model repository the bundle carries (pure logic, no I/O).

By default only what vLLM loads: the weights as safetensors (``.bin`` only when the repository has no
safetensors), configs, tokenizer and processor files, chat templates, and the ``*.py`` of models run
with ``--trust-remote-code``. Never by default: ``original/`` (a second, consolidated checkpoint),
``*.pth``, ``*.msgpack``, ``*.h5``, ``*.onnx``, ``*.gguf`` and other formats vLLM does not read.

A service's ``allow_patterns`` replace the default choice; its ``ignore_patterns`` remove files from
whichever choice applies. Patterns are ``fnmatch`` globs over the path in the repository, as
``huggingface_hub.snapshot_download`` takes them (``*`` also matches ``/``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

NEVER = ("original/*", "*/original/*", "*.pth", "*.msgpack", "*.h5", "*.onnx", "*.onnx_data", "*.gguf", "*.ot")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
_KEEP = (
    "*.json",  # config, generation config, tokenizer, processor, safetensors index, sentence-transformers
    "*.txt",  # merges.txt, vocab.txt
    "*.model",  # sentencepiece tokenizer.model
    "*.tiktoken",
    "*tiktoken*",
    "*.jinja",
    "*.vocab",
    "vocab.*",
)


@dataclass(frozen=True)
class FileFilter:
    """One service's wish for a model's files."""

    allow: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    remote_code: bool = False


def _matches(path: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def _is_weight(path: str) -> bool:
    return path.endswith(_WEIGHT_SUFFIXES) and not path.endswith(".json")


def default_choice(files: Sequence[str], remote_code: bool) -> set[str]:
    """The files vLLM loads, out of every path of a repository."""
    candidates = [f for f in files if not _matches(f, NEVER)]
    has_safetensors = any(f.endswith(".safetensors") for f in candidates)
    chosen = set()
    for path in candidates:
        name = path.rsplit("/", 1)[-1]
        if _is_weight(path):
            keep = path.endswith(".safetensors") if has_safetensors else path.endswith(".bin")
        elif path.endswith(".py"):
            keep = remote_code
        else:
            keep = _matches(name, _KEEP) and not name.startswith(".")
        if keep:
            chosen.add(path)
    if not has_safetensors:  # a .bin index only matters without safetensors; with them, drop it
        return chosen
    return {f for f in chosen if not f.endswith(".bin.index.json")}


def choose(files: Sequence[str], filters: Iterable[FileFilter]) -> set[str]:
    """The union of what each service wants (a model two services use carries what both need)."""
    chosen: set[str] = set()
    for flt in filters:
        base = {f for f in files if _matches(f, flt.allow)} if flt.allow else default_choice(files, flt.remote_code)
        chosen |= {f for f in base if not _matches(f, flt.ignore)}
    return chosen


def saved_bytes(sizes: Mapping[str, int], chosen: set[str]) -> int:
    """Bytes of the repository's files the choice leaves out."""
    return sum(size for path, size in sizes.items() if path not in chosen)


def as_allow_patterns(chosen: Iterable[str]) -> list[str]:
    """The chosen paths as ``fnmatch`` patterns that match exactly them (``[`` ``*`` ``?`` escaped)."""
    return sorted(re.sub(r"([\[\]*?])", r"[\1]", p) for p in chosen)


# ``auto_map`` values of --trust-remote-code models: "module.Class", or "org/repo--module.Class" when the
# code lives in another repository (which must then travel too).
_REMOTE = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)--[\w.]+$")


def code_repos(config: Mapping[str, object]) -> list[str]:
    """The other repositories a config's ``auto_map`` takes code from."""
    auto_map = config.get("auto_map")
    if not isinstance(auto_map, Mapping):
        return []
    values: list[str] = []
    for value in auto_map.values():
        values += [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
    repos = {m.group("repo") for v in values if (m := _REMOTE.match(v))}
    return sorted(repos)


def pattern_problems(value: object, key: str) -> list[str]:
    """What is wrong with a service's ``allow_patterns`` / ``ignore_patterns`` value."""
    if not isinstance(value, list):
        return [f"{key} must be a list of glob patterns such as '*.safetensors', got {value!r}"]
    return [
        f"{key}[{i}] must be a non-empty glob pattern string, got {item!r}"
        for i, item in enumerate(value)
        if not isinstance(item, str) or not item.strip()
    ]
