"""The project's cache directory on the controller: ``$AIRGAP_LLM_CACHE`` or ``~/.cache/airgap-llm``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    env = os.environ.get("AIRGAP_LLM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "airgap-llm"
