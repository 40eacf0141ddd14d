"""OS-part facts (packages per target, sources, baseline) and the prerequisite checks' pure parts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airgap_llm.bundle.apt_baseline import minbase_names, parse_stanzas, status_text
from airgap_llm.bundle.os_archives import parse_os_options, repo_plan
from airgap_llm.bundle.pip_index import index_urls
from airgap_llm.bundle.prereqs import Prerequisites
from airgap_llm.bundle.spec import OsSetSpec, bundle_spec
from airgap_llm.errors import InputError, UsageError
from airgap_llm.gpumap import plan_hosts
from airgap_llm.targets import TARGETS

GPU = {"model": "H100", "count": 8, "memory_gib": 80}
LLM = {"kind": "chat", "model": "o/llm", "port": 8003, "gpus": [0, 1], "gpu_memory_utilization": 0.9}
EMB = {"kind": "embedding", "model": "o/emb", "port": 8001, "gpus": [], "extra_args": ["--enforce-eager"]}


def os_set(target: str, **hv: Any) -> OsSetSpec:
    base = {"airgap_llm_target_os": target, "airgap_llm_vllm_version": "0.32.0"}
    hosts = {"h": {**base, **hv}}
    (s,) = bundle_spec(plan_hosts(hosts), hostvars=hosts).os_sets
    return s


def test_ubuntu_2204_gpu_host_carries_python311_compiler_headers_and_the_driver() -> None:
    s = os_set("ubuntu-22.04", airgap_llm_gpu=GPU, airgap_llm_services={"llm": LLM}, airgap_llm_target_python="3.11")
    assert {"python3.11", "python3.11-venv", "python3.11-dev", "gcc", "libc6-dev"} <= set(s.packages)
    assert {"nvidia-utils-570-server", "linux-modules-nvidia-570-server-open-generic", "nvidia-fabricmanager-570",
            "libnvidia-nscq-570"} <= set(s.packages)  # fmt: skip
    assert s.driver and len(s.packages) == len(set(s.packages))


def test_cpu_hosts_get_no_compiler_and_2404_no_extra_python() -> None:
    cpu = os_set("ubuntu-24.04", airgap_llm_services={"emb": EMB})
    assert "gcc" not in cpu.packages and not cpu.driver and not any("python3.1" in p for p in cpu.packages)
    # the venv's Python where it is not python3, and its headers on GPU hosts only
    jammy_cpu = os_set("ubuntu-22.04", airgap_llm_services={"emb": EMB}, airgap_llm_target_python="3.11")
    assert {"python3.11", "python3.11-venv"} <= set(jammy_cpu.packages) and "python3.11-dev" not in jammy_cpu.packages
    gpu = os_set("ubuntu-24.04", airgap_llm_gpu=GPU, airgap_llm_services={"llm": LLM})
    assert {"gcc", "python3-dev"} <= set(gpu.packages) and "python3.11" not in gpu.packages


def test_dkms_hosts_carry_the_headers_of_their_kernel() -> None:
    deb = os_set("debian-12", airgap_llm_gpu=GPU, airgap_llm_services={"llm": LLM},
                 airgap_llm_kernel_release="6.1.0-28-amd64")  # fmt: skip
    assert "linux-headers-6.1.0-28-amd64" in deb.packages and "linux-headers-amd64" not in deb.packages
    dkms = {"airgap_llm_nvidia_driver_precompiled": False, "airgap_llm_kernel_release": "6.8.0-49-generic"}
    ubuntu = os_set("ubuntu-22.04", airgap_llm_gpu=GPU, airgap_llm_services={"llm": LLM},
                    airgap_llm_target_python="3.11", **dkms)
    assert "linux-headers-6.8.0-49-generic" in ubuntu.packages and "nvidia-dkms-570-server-open" in ubuntu.packages
    precompiled = os_set("ubuntu-22.04", airgap_llm_gpu=GPU, airgap_llm_services={"llm": LLM},
                         airgap_llm_target_python="3.11", airgap_llm_kernel_release="6.8.0-49-generic")  # fmt: skip
    assert not any(p.startswith("linux-headers") for p in precompiled.packages)


def test_rhel_carries_dkms_and_the_versionlock_plugin_but_is_refused_here() -> None:
    s = os_set(
        "rhel-9",
        airgap_llm_gpu=GPU,
        airgap_llm_services={"llm": LLM},
        airgap_llm_kernel_release="5.14.0-427.el9.x86_64",
    )
    assert {"dkms", "python3-dnf-plugin-versionlock", "kernel-devel-5.14.0-427.el9.x86_64", "gcc"} <= set(s.packages)
    with pytest.raises(UsageError, match=r"RHEL-family parts are not built here; .*Rocky/Alma 9.*EPEL for dkms"):
        repo_plan(s, {})


def test_sources_default_to_the_public_archive_and_a_mirror_serves_every_suite() -> None:
    s = OsSetSpec(TARGETS["ubuntu-22.04"], ("rsync",), ("h",))
    public = repo_plan(s, {})
    assert public.sources[0].startswith("deb [signed-by=/usr/share/keyrings/ubuntu-archive-keyring.gpg] "
                                        "http://archive.ubuntu.com/ubuntu jammy main restricted universe")  # fmt: skip
    assert "http://security.ubuntu.com/ubuntu jammy-security" in public.sources[2]
    assert public.cache_key == "ubuntu-22.04" and "mmdebstrap" not in public.tools
    site = repo_plan(s, {"ubuntu-22.04": "http://m.example/ubuntu/"}, {"ubuntu-22.04": "/k.gpg"})
    assert site.probe_urls == [f"http://m.example/ubuntu/dists/{x}/InRelease" for x in site.suites]
    assert all("[signed-by=/k.gpg] http://m.example/ubuntu " in line for line in site.sources)
    assert site.cache_key.startswith("ubuntu-22.04-") and site.cache_key != public.cache_key


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("ubuntu-22.04", "expected OS=VALUE"),
        ("ubuntu-20.04=http://x", "unknown OS 'ubuntu-20.04'"),
        ("ubuntu-22.04=ftp://x", "must be an http://, https:// or file:// URL"),
    ],
)
def test_bad_os_mirror_is_an_input_error(value: str, words: str) -> None:
    with pytest.raises(InputError, match=words):
        parse_os_options([value], "--os-mirror")


PACKAGES = """\
Package: base-files
Version: 12ubuntu4
Essential: yes
Priority: required
Description: one
 two

Package: apt
Version: 2.4.5
Priority: important
Depends: libc6

Package: libc6
Version: 2.35-0ubuntu3
Priority: required

Package: libc6
Version: 2.35-0ubuntu1
Priority: required
"""


def test_minbase_and_the_status_written_from_apts_choice() -> None:
    stanzas = parse_stanzas(PACKAGES)
    assert stanzas[0]["Description"] == "one\n two"
    assert minbase_names(stanzas) == ["apt", "base-files", "libc6"]
    status = status_text(stanzas, {"libc6": "2.35-0ubuntu3", "apt": "2.4.5"})
    parsed = parse_stanzas(status)
    assert [(s["Package"], s["Version"], s["Status"]) for s in parsed] == [
        ("apt", "2.4.5", "install ok installed"), ("libc6", "2.35-0ubuntu3", "install ok installed")
    ]  # fmt: skip
    assert parsed[0]["Depends"] == "libc6" and "Description" not in parsed[0]


def test_index_urls_follow_pip_args_and_environment() -> None:
    assert index_urls([], {}) == ["https://pypi.org/simple/"]
    assert index_urls([], {"PIP_INDEX_URL": "http://i/simple"}) == ["http://i/simple/"]
    args = ["--index-url=http://a/simple", "--extra-index-url", "http://b/whl/cpu"]
    assert index_urls(args, {}) == ["http://a/simple/", "http://b/whl/cpu/"]
    assert index_urls(["--no-index", "--find-links=/w"], {}) == []
    config = {"index-url": "http://site/simple", "extra-index-url": "http://x/a http://x/b"}
    assert index_urls([], {}, config) == ["http://site/simple/", "http://x/a/", "http://x/b/"]
    assert index_urls([], {"PIP_INDEX_URL": "http://env/simple"}, config)[0] == "http://env/simple/"
    assert index_urls(["--isolated"], {"PIP_INDEX_URL": "http://env/simple"}, config) == ["https://pypi.org/simple/"]
    assert index_urls([], {"PIP_NO_INDEX": "1"}) == []


def test_pip_config_files_are_read_in_pips_order(tmp_path: Path) -> None:
    from airgap_llm.bundle.pip_index import pip_config

    (tmp_path / ".config" / "pip").mkdir(parents=True)
    user = tmp_path / ".config" / "pip" / "pip.conf"
    user.write_text("[global]\nindex-url = http://user/simple\nfind-links = /w\n")
    extra = tmp_path / "extra.conf"
    extra.write_text("[download]\nextra-index-url = http://dl/simple\n")
    got = pip_config({"HOME": str(tmp_path), "PIP_CONFIG_FILE": str(extra)})
    assert got["index-url"] == "http://user/simple" and got["extra-index-url"] == "http://dl/simple"
    assert "find-links" not in got


def test_every_problem_at_once_exit_2_for_the_environment_else_1() -> None:
    pre = Prerequisites()
    pre.add("models", "no such model", environment=False)
    with pytest.raises(InputError, match="1 prerequisite"):
        pre.raise_if_any()
    pre.add("os", "mirror down")
    with pytest.raises(UsageError) as exc:
        pre.raise_if_any()
    assert "2 prerequisite(s) missing; nothing was downloaded:\n  - models: no such model\n  - os: mirror down" in str(
        exc.value
    )
    Prerequisites().raise_if_any()  # nothing missing: no error


def test_cache_files_lists_a_snapshot(tmp_path: Path) -> None:
    from airgap_llm.bundle.model_listing import cache_files

    snap = tmp_path / "snapshots" / "c0"
    (snap / "sub").mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (snap / "sub" / "w.safetensors").write_bytes(b"1234")
    assert cache_files(tmp_path, "c0") == {"config.json": 2, "sub/w.safetensors": 4}


def test_a_package_the_release_lacks_is_named_with_where_it_came_from() -> None:
    from airgap_llm.bundle.os_packages import unknown_packages, unknown_packages_message

    output = "Reading package lists...\nE: Unable to locate package linux-headers-6.1.0-99-amd64\nE: Couldn't find"
    assert unknown_packages(output) == ["linux-headers-6.1.0-99-amd64"]
    s = OsSetSpec(TARGETS["debian-12"], ("rsync",), ("h",))
    text = unknown_packages_message(s, "http://deb.debian.org/debian", ["linux-headers-6.1.0-99-amd64", "x"])
    assert text.startswith("debian-12: the archive at http://deb.debian.org/debian has no package "
                           "linux-headers-6.1.0-99-amd64, x (bookworm, -updates, -security)")  # fmt: skip
    assert "comes from airgap_llm_kernel_release: is that a kernel of bookworm?" in text


def test_a_cpu_engine_that_compiles_gets_a_cxx_compiler() -> None:
    eager = os_set("debian-12", airgap_llm_services={"emb": EMB})
    assert "g++" not in eager.packages and "gcc" not in eager.packages
    compiles = os_set("debian-12", airgap_llm_services={"emb": {**EMB, "extra_args": []}})  # torch inductor
    assert {"gcc", "g++", "libc6-dev", "python3-dev"} <= set(compiles.packages)
