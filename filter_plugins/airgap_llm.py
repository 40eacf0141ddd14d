"""Thin Ansible adapters over the airgap_llm package: no logic of their own.

    {{ hostvars[inventory_hostname] | airgap_llm_host_plan(inventory_hostname) }}
        the host's GPU-map plan as a dict: ok, problems (each with a 'text'), services (each with
        unit, cuda_visible_devices, memory_fraction, engine_args, after, ...), engine, target_os, ...
    {{ 'debian-12' | airgap_llm_target }}
        the target OS facts (family, python, runtime_packages, ...) as a dict
    {{ ansible_facts | airgap_llm_target_for_facts }}
        the supported target matching the host's facts, or none
    {{ registered_by_check | airgap_llm_validation_results(config_slurps, dims, api_key) }}
        verdicts of the validate role's requests (see airgap_llm.validation)
    {{ verdict | airgap_llm_validation_line }}
        one verdict as a line of text
    {{ manifest | airgap_llm_bundle_needs(plan) }}
        a host's missing models and the bytes it needs from the bundle (see airgap_llm.bundle_check)
    {{ 'ORG/NAME' | airgap_llm_model_folder }}
        the model's Hugging Face cache folder, models--ORG--NAME (see airgap_llm.bundle.layout)
    {{ plan | airgap_llm_status_report(systemctl_show_stdout, health_results, gpu_json, journal_results) }}
        the status role's per-service report (see airgap_llm.status_report)
    {{ 'debian-12' | airgap_llm_nvidia_driver_packages(branch, flavour, fabricmanager, ...) }}
    {{ smi_csv | airgap_llm_nvidia_gpus }}  {{ gpus | airgap_llm_nvidia_compare(airgap_llm_gpu, host) }}
    {{ setting | airgap_llm_nvidia_fabricmanager_needed(lspci, topo) }}
    {{ driver | airgap_llm_nvidia_fabricmanager_mismatch(fm_version) }}
    {{ driver | airgap_llm_nvidia_cuda_check(cuda) }}  {{ names | airgap_llm_nvidia_cuda_from_wheels }}
    {{ smi_q | airgap_llm_nvidia_smi_q }}  {{ version | airgap_llm_nvidia_branch }}
    {{ lspci | airgap_llm_nvidia_pci_gpus }}
        NVIDIA driver facts and checks (see airgap_llm.nvidia)
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

try:
    from airgap_llm.gpumap import plan_host
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from airgap_llm.gpumap import plan_host

from airgap_llm import nvidia
from airgap_llm.bundle.layout import model_folder
from airgap_llm.bundle_check import host_needs
from airgap_llm.inventory import VAR_PREFIX, to_plain
from airgap_llm.status_report import report as status_report
from airgap_llm.targets import TARGETS, target_for_facts
from airgap_llm.validation import line as validation_line
from airgap_llm.validation import results as validation_results


def airgap_llm_host_plan(hostvars: Mapping[str, Any], host: str) -> dict[str, Any]:
    wanted = {k: to_plain(hostvars[k]) for k in list(hostvars) if str(k).startswith(VAR_PREFIX)}
    return plan_host(host, wanted).as_dict()


def _target_dict(target: Any) -> dict[str, Any] | None:
    if target is None:
        return None
    data = dataclasses.asdict(target)
    data["python_tag"] = target.python_tag
    data["glibc"] = ".".join(str(p) for p in target.glibc)
    data["runtime_packages"] = list(target.runtime_packages)
    return data


def airgap_llm_target(target_id: str) -> dict[str, Any] | None:
    return _target_dict(TARGETS.get(str(target_id)))


def airgap_llm_target_for_facts(facts: Mapping[str, Any]) -> dict[str, Any] | None:
    return _target_dict(
        target_for_facts(
            str(facts.get("distribution", "")),
            str(facts.get("distribution_version", "")),
            str(facts.get("distribution_major_version", "")),
        )
    )


def airgap_llm_validation_results(
    registered: Mapping[str, Any],
    config_slurps: Mapping[str, Any] | None = None,
    dims: Mapping[str, int] | None = None,
    api_key: bool = True,
) -> list[dict[str, Any]]:
    return validation_results(to_plain(registered), to_plain(config_slurps), to_plain(dims), bool(api_key))


def airgap_llm_status_report(
    plan: Mapping[str, Any],
    systemctl_show: str,
    health: Mapping[str, Any],
    gpu_json: str,
    journal: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return status_report(to_plain(plan), str(systemctl_show), to_plain(health), str(gpu_json), to_plain(journal))


def airgap_llm_bundle_needs(manifest: Mapping[str, Any], plan: Mapping[str, Any]) -> dict[str, Any]:
    return host_needs(to_plain(manifest), to_plain(plan))


def airgap_llm_nvidia_driver_packages(
    target_id: str,
    branch: Any = None,
    flavour: Any = None,
    fabricmanager: bool = False,
    precompiled: bool = True,
    kernel_flavour: str = "generic",
    headers: Any = None,
) -> dict[str, Any]:
    hdrs = tuple(to_plain(headers)) if headers is not None else None
    return nvidia.driver_packages(
        str(target_id),
        branch=branch,
        flavour=flavour,
        fabricmanager=bool(fabricmanager),
        precompiled=bool(precompiled),
        kernel_flavour=str(kernel_flavour),
        headers=hdrs,
    ).as_dict()


def airgap_llm_nvidia_gpus(smi_csv: str) -> list[dict[str, Any]]:
    return [g.as_dict() for g in nvidia.parse_query_gpu(str(smi_csv))]


def airgap_llm_nvidia_compare(gpus: Any, expected: Mapping[str, Any] | None, host: str = "") -> list[str]:
    return nvidia.compare_gpus([nvidia.Gpu(**g) for g in to_plain(gpus)], to_plain(expected), str(host))


def airgap_llm_nvidia_fabricmanager_needed(setting: Any, lspci: str = "", topo: str = "") -> dict[str, Any]:
    return nvidia.fabricmanager_needed(to_plain(setting), str(lspci), str(topo)).as_dict()


def airgap_llm_nvidia_cuda_check(driver: str, cuda: str) -> dict[str, Any]:
    return nvidia.check_driver_for_cuda(str(driver), str(cuda)).as_dict()


def airgap_llm_nvidia_cuda_from_wheels(names: Any) -> str | None:
    return nvidia.cuda_from_wheels(str(n) for n in to_plain(names))


class FilterModule:
    """airgap-llm filters."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "airgap_llm_host_plan": airgap_llm_host_plan,
            "airgap_llm_target": airgap_llm_target,
            "airgap_llm_target_for_facts": airgap_llm_target_for_facts,
            "airgap_llm_validation_results": airgap_llm_validation_results,
            "airgap_llm_validation_line": validation_line,
            "airgap_llm_status_report": airgap_llm_status_report,
            "airgap_llm_bundle_needs": airgap_llm_bundle_needs,
            "airgap_llm_model_folder": model_folder,
            "airgap_llm_nvidia_driver_packages": airgap_llm_nvidia_driver_packages,
            "airgap_llm_nvidia_gpus": airgap_llm_nvidia_gpus,
            "airgap_llm_nvidia_compare": airgap_llm_nvidia_compare,
            "airgap_llm_nvidia_fabricmanager_needed": airgap_llm_nvidia_fabricmanager_needed,
            "airgap_llm_nvidia_fabricmanager_mismatch": nvidia.fabricmanager_mismatch,
            "airgap_llm_nvidia_cuda_check": airgap_llm_nvidia_cuda_check,
            "airgap_llm_nvidia_cuda_from_wheels": airgap_llm_nvidia_cuda_from_wheels,
            "airgap_llm_nvidia_smi_q": nvidia.parse_smi_q,
            "airgap_llm_nvidia_branch": nvidia.driver_branch,
            "airgap_llm_nvidia_pci_gpus": nvidia.gpus_from_lspci,
        }
