"""Local targets: systemd containers on an internal podman network with no route out.

What ``airgap-llm demo`` installs onto, and what the host-based tests and benchmarks run against
(``tests/hosts/targets.py`` is the command line over this package). Modules:

- ``addresses``: pure helpers (addresses, subnet choice, route checks, the Ansible inventory);
- ``podman``: the internal network, its addressed bridge, the route check, the target image
  (``build-image``, with podman settings from ``containers.conf``, both shipped beside this file);
- ``targetset``: ``TargetSet``, N targets up and down;
- ``cli``: the command line.
"""

from airgap_llm.localtarget.addresses import Target, TargetError
from airgap_llm.localtarget.podman import CONTAINERS_CONF, DEFAULT_IMAGE, check_route, podman_env
from airgap_llm.localtarget.targetset import TargetSet

__all__ = ["CONTAINERS_CONF", "DEFAULT_IMAGE", "Target", "TargetError", "TargetSet", "check_route", "podman_env"]
