"""Where airgap-llm keeps things on a host (DESIGN.md, "On each host"): the one home of these paths.

Every role's path defaults point at the plan's ``paths`` (``airgap_llm_host_plan.paths.*``), and
``render`` lays its files out with the same values, so a path is written down once. An inventory
moves the tree with ``airgap_llm_paths`` (any of the keys below; per group or per host).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

# Fixed places of the operating system's own configuration that install writes to.
APT_KEYRING_DIR = "/etc/apt/keyrings"
APT_SOURCE_LIST = "/etc/apt/sources.list.d/airgap-llm.list"
NOUVEAU_BLACKLIST = "/etc/modprobe.d/airgap-llm-blacklist-nouveau.conf"
# Monitoring: the Debian/Ubuntu packages' own places (prometheus, prometheus-node-exporter), with file
# names of our own beside the packages' conffiles, which stay untouched.
PROMETHEUS_CONFIG_DIR = "/etc/prometheus"
PROMETHEUS_DATA_DIR = "/var/lib/prometheus/metrics2"
NODE_EXPORTER_TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"


@dataclass(frozen=True)
class HostPaths:
    """The host's directories; derived paths are properties so that moving a root moves them all."""

    root: str = "/opt/airgap-llm"  # venvs/<id>, the live venv link, libexec/
    state_dir: str = "/var/lib/airgap-llm"  # hf/, models/, os-repo/, wheelhouse/, staging
    cache_dir: str = "/var/cache/airgap-llm"  # writable engine caches (VLLM_CACHE_ROOT, Triton, ...)
    config_dir: str = "/etc/airgap-llm"  # environment files (0640) and the API key (0600)
    unit_dir: str = "/etc/systemd/system"

    @property
    def venv(self) -> str:
        return f"{self.root}/venv"

    @property
    def venvs_dir(self) -> str:
        return f"{self.root}/venvs"

    @property
    def apps_dir(self) -> str:
        """``<root>/apps/<kind>/``: each app kind's venvs and live link (airgap_llm.apps)."""
        return f"{self.root}/apps"

    def app_venv(self, kind: str) -> str:
        return f"{self.apps_dir}/{kind}/venv"

    def app_data(self, service: str) -> str:
        """``<state>/apps/<service>``: what an app service keeps (the web UI's accounts, chats, documents)."""
        return f"{self.state_dir}/apps/{service}"

    @property
    def libexec_dir(self) -> str:
        return f"{self.root}/libexec"

    @property
    def hf_home(self) -> str:
        return f"{self.state_dir}/hf"

    @property
    def hub_dir(self) -> str:
        return f"{self.state_dir}/hf/hub"

    @property
    def models_dir(self) -> str:
        return f"{self.state_dir}/models"

    @property
    def model_record(self) -> str:
        """What the model store verified on the host: path under the hub -> size, mtime_ns, sha256."""
        return f"{self.state_dir}/hf/.airgap-llm-verified.json"

    @property
    def releases_dir(self) -> str:
        """The host's releases: <id>/files/ (copies of the rendered units and env files) and state.json."""
        return f"{self.state_dir}/releases"

    @property
    def release_state(self) -> str:
        """``{"live": release, "previous": release | null, "rolled_back_from": id | null}``."""
        return f"{self.state_dir}/releases/state.json"

    @property
    def os_repo_dir(self) -> str:
        return f"{self.state_dir}/os-repo"

    @property
    def wheelhouse_dir(self) -> str:
        return f"{self.state_dir}/wheelhouse"

    def as_dict(self) -> dict[str, str]:
        data = asdict(self)
        data.update(apt_keyring_dir=APT_KEYRING_DIR, apt_source_list=APT_SOURCE_LIST,
                    nouveau_blacklist=NOUVEAU_BLACKLIST, prometheus_config_dir=PROMETHEUS_CONFIG_DIR,
                    prometheus_data_dir=PROMETHEUS_DATA_DIR, node_exporter_textfile_dir=NODE_EXPORTER_TEXTFILE_DIR)
        for name in ("venv", "venvs_dir", "apps_dir", "libexec_dir", "hf_home", "hub_dir", "models_dir",
                     "model_record", "releases_dir", "release_state", "os_repo_dir", "wheelhouse_dir"):
            data[name] = getattr(self, name)
        return data


PATH_KEYS = tuple(f.name for f in fields(HostPaths))



def parse_paths(raw: Any) -> tuple[HostPaths, list[str]]:
    """``airgap_llm_paths`` from the inventory: (the paths, problems). Absent means the defaults."""
    if raw is None:
        return HostPaths(), []
    if not isinstance(raw, Mapping):
        return HostPaths(), [f"airgap_llm_paths must be a mapping of {', '.join(PATH_KEYS)}, got {type(raw).__name__}"]
    problems: list[str] = []
    values: dict[str, str] = {}
    for key, value in raw.items():
        if key not in PATH_KEYS:
            problems.append(f"airgap_llm_paths has unknown key '{key}' (known: {', '.join(PATH_KEYS)})")
        elif not isinstance(value, str) or not value.startswith("/") or value != value.rstrip("/") or " " in value:
            problems.append(f"airgap_llm_paths.{key} must be an absolute path without spaces or a trailing '/', "
                            f"got {value!r}")
        else:
            values[str(key)] = value
    return HostPaths(**values), problems
