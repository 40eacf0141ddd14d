"""The end-to-end path against real systemd targets with no route out (fixtures: deploy_fixtures.py)."""

from deploy_fixtures import bundle, deployment, hf_home, inventory, target, target_set

__all__ = ["bundle", "deployment", "hf_home", "inventory", "target", "target_set"]
