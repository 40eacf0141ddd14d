"""The OS packages of monitoring, per target: they travel in the bundle's OS part for every host."""

from __future__ import annotations

from airgap_llm.targets import TargetOS

# Debian 12 carries prometheus 2.42 and prometheus-node-exporter 1.5; Ubuntu 22.04 and 24.04 carry them
# under the same names. RHEL 9 has neither in its own repositories (EPEL is not carried): none there yet.
DEBIAN_PACKAGES = ("prometheus", "prometheus-node-exporter")


def monitoring_packages(target: TargetOS) -> tuple[str, ...]:
    return DEBIAN_PACKAGES if target.family == "debian" else ()
