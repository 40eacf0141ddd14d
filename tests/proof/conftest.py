"""Proof under faults, bad input and load (`make proof`): the e2e fixtures, on target sets of their own."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from deploy_fixtures import bundle, deployment, hf_home, inventory, target, target_set  # noqa: E402

__all__ = ["bundle", "deployment", "hf_home", "inventory", "target", "target_set"]
