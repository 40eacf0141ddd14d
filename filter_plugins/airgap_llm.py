"""Thin Ansible adapters over the airgap_llm package: no logic of their own.

    {{ hostvars | airgap_llm_plan(groups['all'], inventory_dir, airgap_llm_bundle_dir) }}
        the plan of every host, computed together (the cross-host rules included; with a bundle, the
        memory fit of every GPU service from its model files, rule memory-fit): the same dict as
        `airgap-llm plan --json` (ok, failures, warnings, hosts: {host: plan}); playbooks/plan.yml sets
        it once per run as airgap_llm_plan, and each host's part as airgap_llm_host_plan
    {{ airgap_llm_host_plan | airgap_llm_service_files(role_vars, address, gpu_devices) }}
        the files of the host's services (units, target, environment files): path, content, owner,
        group, mode (see airgap_llm.host_files); `airgap-llm render` writes the same; gpu_devices
        (optional) is what airgap_llm_gpu_devices read on the host
    {{ airgap_llm_host_plan | airgap_llm_service_dirs(role_vars) }}
    {{ airgap_llm_host_plan | airgap_llm_helper_files(role_path ~ '/files') }}
        the services' directories (path, owner, group, mode), and the role's helpers as files of the host
        (read from the role's files/ on the controller), laid out with the service files in one module run
    {{ airgap_llm_host_plan | airgap_llm_secret_files(api_key, session_secret, admin_password) }}
        the API key file (when api_key is not empty) and each web UI's secrets file, 0600 root
    {{ path | airgap_llm_file_base64 }}
        a controller file's bytes in base64 (a binary keyring, for airgap_llm_files' content_base64)
    {{ path | airgap_llm_file_sha256 }}
        a controller file's sha256 in hex, '' when it does not exist (no module run on the controller)
    {{ smi_q | airgap_llm_gpu_devices(airgap_llm_gpu, fabric) }}
        the host's GPU minors by CUDA index (nvidia-smi -q) and whether the GPU units need the fabric
        manager (the inventory's airgap_llm_gpu.nvswitch, else the detection `fabric`; see
        airgap_llm.gpu_devices)
    {{ airgap_llm_host_plan | airgap_llm_restart_inputs }}
        per unit, the paths on the host whose change makes the running service stale
    {{ repo_dir | airgap_llm_apt_source(keyring) }}  {{ none | airgap_llm_nouveau_blacklist }}
        the apt source of the bundle's local repository and the nouveau blacklist, as render shows them
    {{ airgap_llm_host_plan | airgap_llm_unit_names }}
        the units of the host's services, in start order
    {{ 'debian-12' | airgap_llm_target }}
        the target OS facts (family, python, runtime_packages, ...) as a dict
    {{ ansible_facts | airgap_llm_target_for_facts }}
        the supported target matching the host's facts, or none
    {{ registered_by_check | airgap_llm_validation_results(config_slurps, dims, api_key) }}
        verdicts of the validate role's requests (see airgap_llm.validation)
    {{ result | airgap_llm_cluster_verdict('ray' | 'unit') }}
        a multi-node check of the validate role as a verdict (see airgap_llm.validation.cluster_verdict)
    {{ verdict | airgap_llm_validation_line }}
        one verdict as a line of text
    {{ hostvars | airgap_llm_bundle_signature_problems(groups['all'], inventory_dir, airgap_llm_bundle_dir) }}
        when hosts set airgap_llm_bundle_signers: why the bundle's manifest.json.sig is not a good
        signature by a key of that allowed_signers file (see airgap_llm.bundle_signers); [] otherwise
    {{ bundle_dir | airgap_llm_bundle_needs(plan, verified) }}
        a host's missing models and the bytes it needs from the bundle, less the model files the host
        already verified (see airgap_llm.bundle_check); the manifest is read here, from the bundle
    {{ bundle_dir | airgap_llm_bundle_paths }}
        the paths of the bundle's artifacts
    {{ bundle_dir | airgap_llm_model_entries(folders) }}
        the manifest entries of these model folders
    {{ services | airgap_llm_service_models }}
        each service with a model: service, model, revision, folder
    {{ path | airgap_llm_dir_entries }}
    {{ bundle_dir | airgap_llm_bundle_dir_entries(subdir) }}
        what a host's copy of a flat directory must hold for a push to move nothing (the files of the
        controller's directory by size and time; of the manifest's subdir by size and sha256), for
        airgap_llm_files' compare (see airgap_llm.transfer_check)
    {{ hostvars | airgap_llm_relay_wave(ansible_play_hosts_all, ansible_play_hosts, fanout) }}
    {{ hostvars | airgap_llm_relay_tree(ansible_play_hosts_all, ansible_play_hosts, fanout) }}
    {{ folders | airgap_llm_relay_held(verify_report.failures) }}
        model_store's relay: the next wave (which host pulls which model from which, from the hosts'
        facts; failed hosts left out), every level of the pipelined pass at once, and the folders a
        host holds verified (see airgap_llm.relay); the plan's model_relay is the preview of every
        wave for a site that holds nothing yet
    {{ airgap_llm_host_plan | airgap_llm_gateway_requests }}
        what validate asks each gateway of the host (airgap_llm.gateway.validation_requests)
    {{ airgap_llm_host_plan | airgap_llm_model_code_folders(airgap_llm_bundle_dir) }}
        the code repositories (models--ORG--NAME) the host's remote-code models name in auto_map
    {{ plan | airgap_llm_status_report(systemctl_show_stdout, health_results, gpu_json, journal_results,
                                        metrics_json, prometheus_results) }}
    {{ none | airgap_llm_status_promql }}  {{ answers | airgap_llm_status_prometheus_services(host) }}
        the PromQL queries status asks Prometheus (airgap_llm.monitoring.metrics.PROMQL); the services of a
        host that its answers cover
        the status role's per-service report (see airgap_llm.status_report)
    {{ airgap_llm_plan | airgap_llm_monitoring_facts(hostvars) }}
        per host of the plan, the address to scrape and the mount point of its models (airgap_llm.monitoring.hosts)
    {{ airgap_llm_plan | airgap_llm_monitoring_files(host, facts, role_vars, server, password) }}
        the monitoring files of a host: node exporter's drop-in, the GPU timer, and on a Prometheus host its
        configuration, alert rules, web configuration and drop-in (see airgap_llm.monitoring)
    {{ 'debian-12' | airgap_llm_monitoring_packages }}
        the OS packages of monitoring for a target
    {{ 'debian-12' | airgap_llm_nvidia_driver_packages(branch, flavour, fabricmanager, ...) }}
    {{ smi_csv | airgap_llm_nvidia_gpus }}  {{ gpus | airgap_llm_nvidia_compare(airgap_llm_gpu, host) }}
    {{ setting | airgap_llm_nvidia_fabricmanager_needed(lspci, topo) }}
    {{ driver | airgap_llm_nvidia_fabricmanager_mismatch(fm_version) }}
    {{ driver | airgap_llm_nvidia_cuda_check(cuda) }}  {{ names | airgap_llm_nvidia_cuda_from_wheels }}
    {{ smi_q | airgap_llm_nvidia_smi_q }}  {{ version | airgap_llm_nvidia_branch }}
    {{ lspci | airgap_llm_nvidia_pci_gpus }}
    {{ hostvars[inventory_hostname] | airgap_llm_nvidia_kernel_check(host, target_os, ansible_facts.kernel) }}
        DKMS hosts: a problem when the running kernel is not airgap_llm_kernel_release, a note when unset
        NVIDIA driver facts and checks (see airgap_llm.nvidia)
"""

from __future__ import annotations

import base64
import dataclasses
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

try:
    from airgap_llm.gpumap import HostPlan
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from airgap_llm.gpumap import HostPlan

from ansible.errors import AnsibleFilterError

from airgap_llm import gateway, gpu_devices, nvidia, relay, webui
from airgap_llm.bundle.hashing import sha256_file
from airgap_llm.bundle_check import (
    code_repo_folders,
    host_needs,
    manifest_json,
    read_model_entries,
    service_models,
)
from airgap_llm.bundle_signers import bundle_signature_problems
from airgap_llm.cluster_runtime import NODE_RUNTIME_PROBE, host_runtime_problems
from airgap_llm.errors import AirgapLlmError
from airgap_llm.gpumap import plan_hosts
from airgap_llm.host_files import (
    apt_source,
    helper_files,
    helper_names,
    nouveau_blacklist,
    restart_inputs,
    secret_files,
    service_dirs,
    service_files,
    unit_names,
)
from airgap_llm.inventory import CONNECTION_VARS, VAR_PREFIX, to_plain
from airgap_llm.memory.apply import check_memory_fit_from_bundle
from airgap_llm.monitoring.hosts import files_for_host, host_facts
from airgap_llm.monitoring.metrics import PROMQL, loads_from_prometheus
from airgap_llm.monitoring.packages import monitoring_packages
from airgap_llm.monitoring.settings import MonitoringInputError
from airgap_llm.plan_report import plan_result
from airgap_llm.status_report import report as status_report
from airgap_llm.targets import TARGETS, target_for_facts
from airgap_llm.transfer_check import local_dir_entries, manifest_dir_entries
from airgap_llm.units import UnitSettings
from airgap_llm.validation import cluster_verdict
from airgap_llm.validation import line as validation_line
from airgap_llm.validation import results as validation_results


def _planned_vars(hostvars: Mapping[str, Any]) -> dict[str, Any]:
    return {
        str(k): to_plain(hostvars[k])
        for k in list(hostvars)
        if str(k).startswith(VAR_PREFIX) or k in CONNECTION_VARS
    }


def airgap_llm_plan(hostvars: Mapping[str, Any], hosts: Any, source: str = "", bundle: Any = "") -> dict[str, Any]:
    by_host = {str(h): _planned_vars(hostvars[h]) for h in to_plain(hosts)}
    plans = plan_hosts(by_host)
    if bundle and all(p.ok for p in plans):
        check_memory_fit_from_bundle(plans, Path(str(bundle)))
    result = plan_result(plans, str(source))
    result["model_relay"] = relay.preview_from_plan(result["hosts"], by_host)
    return result


def _managed() -> str:
    from ansible import constants as C

    return str(C.config.get_config_value("DEFAULT_MANAGED_STR"))


def airgap_llm_service_files(host_plan: Mapping[str, Any], role_vars: Mapping[str, Any],
                             address: Any = None, devices: Mapping[str, Any] | None = None,
                             addresses: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    plan = HostPlan.from_dict(to_plain(host_plan))
    settings = UnitSettings.from_vars(to_plain(role_vars))
    chosen = settings.bind_address or plan.address or (str(address) if address else "")
    if not chosen:
        raise AnsibleFilterError(
            f"host {plan.host}: no address for the services: set ansible_host to an IP address or "
            "airgap_llm_inference_service_bind_address (the host has no default IPv4 address either)"
        )
    gpus = gpu_devices.GpuDevices.from_dict(to_plain(devices)) if devices else None
    known = {str(k): str(v) for k, v in (to_plain(addresses) or {}).items()}
    missing = sorted({r.host for s in plan.services if s.kind == "gateway" for r in s.routes
                      if r.host != plan.host and r.host not in known})
    if missing:
        raise AnsibleFilterError(
            f"host {plan.host}: its gateway routes services of {', '.join(missing)}, whose address is not known: set "
            "ansible_host to their IP addresses, or do not --limit the run to part of the hosts"
        )
    far = sorted({s.upstream.host for s in plan.services if s.upstream is not None
                  and s.upstream.host != plan.host and s.upstream.host not in known})
    if far:
        raise AnsibleFilterError(
            f"host {plan.host}: its web UI talks to the gateway on {', '.join(far)}, whose address is not known: set "
            "ansible_host to its IP address, or do not --limit the run to part of the hosts"
        )
    return [f.as_dict() for f in service_files(plan, settings, _managed(), chosen, gpus, known)]


def airgap_llm_service_dirs(host_plan: Mapping[str, Any], role_vars: Mapping[str, Any]) -> list[dict[str, Any]]:
    plan = HostPlan.from_dict(to_plain(host_plan))
    return [d.as_dict() for d in service_dirs(plan, UnitSettings.from_vars(to_plain(role_vars)))]


def airgap_llm_helper_files(host_plan: Mapping[str, Any], files_dir: str) -> list[dict[str, Any]]:
    """The role's helpers (read from its files/ directory on the controller) as files of the host."""
    try:
        sources = {n: (Path(str(files_dir)) / n).read_text(encoding="utf-8") for n in helper_names()}
    except OSError as exc:
        raise AnsibleFilterError(f"cannot read a helper of the inference_service role: {exc}") from exc
    return [f.as_dict() for f in helper_files(HostPlan.from_dict(to_plain(host_plan)), sources)]


def airgap_llm_secret_files(host_plan: Mapping[str, Any], api_key: str, session_secret: str = "",
                            admin_password: str = "") -> list[dict[str, Any]]:
    plan = HostPlan.from_dict(to_plain(host_plan))
    return [f.as_dict() for f in secret_files(plan, str(api_key), str(session_secret), str(admin_password))]


def airgap_llm_file_base64(path: str) -> str:
    """A controller file's bytes, base64-encoded (a binary keyring for airgap_llm_files' content_base64)."""
    try:
        return base64.b64encode(Path(str(path)).read_bytes()).decode("ascii")
    except OSError as exc:
        raise AnsibleFilterError(f"cannot read {path} on the controller: {exc}") from exc


def airgap_llm_file_sha256(path: str) -> str:
    """A controller file's sha256 (hex), or '' when there is no such file: the bundle's constraints, read
    where they are, without a module run on the controller."""
    try:
        return sha256_file(str(path))
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise AnsibleFilterError(f"cannot read {path} on the controller: {exc}") from exc


def airgap_llm_gateway_requests(host_plan: Mapping[str, Any]) -> list[dict[str, Any]]:
    return gateway.validation_requests(list(to_plain(host_plan).get("services", [])))


def airgap_llm_webui_requests(host_plan: Mapping[str, Any]) -> list[dict[str, Any]]:
    return webui.validation_requests(list(to_plain(host_plan).get("services", [])))


def airgap_llm_gpu_devices(smi_q: Any, gpu: Mapping[str, Any] | None = None,
                           fabric: Mapping[str, Any] | None = None) -> dict[str, Any]:
    try:
        return gpu_devices.from_host(str(smi_q or ""), to_plain(gpu), to_plain(fabric)).as_dict()
    except ValueError as exc:
        raise AnsibleFilterError(f"cannot read the GPUs' device minors: {exc}") from exc


def airgap_llm_restart_inputs(host_plan: Mapping[str, Any]) -> dict[str, list[str]]:
    return restart_inputs(HostPlan.from_dict(to_plain(host_plan)))


def airgap_llm_apt_source(repo_dir: str, keyring: str) -> str:
    return apt_source(_managed(), str(repo_dir), str(keyring))


def airgap_llm_nouveau_blacklist(_: Any = None) -> str:
    return nouveau_blacklist(_managed())


def airgap_llm_cluster_runtime_problems(host_plan: Mapping[str, Any], hostvars: Mapping[str, Any],
                                        play_hosts: list[str], fact: str, check_mode: bool = False) -> list[str]:
    """What keeps this host's multi-node services from starting: nodes on different venvs, or absent."""
    reports = {str(h): to_plain(hostvars[h].get(fact)) for h in play_hosts if hostvars[h].get(fact) is not None}
    return host_runtime_problems(to_plain(host_plan), reports, bool(check_mode))


def airgap_llm_node_runtime_probe(_: Any = None) -> str:
    return NODE_RUNTIME_PROBE


def airgap_llm_unit_names(host_plan: Mapping[str, Any]) -> list[str]:
    return unit_names(HostPlan.from_dict(to_plain(host_plan)))


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


def airgap_llm_cluster_verdict(result: Mapping[str, Any], how: str) -> dict[str, Any]:
    return cluster_verdict(to_plain(result), str(how))


def airgap_llm_status_report(
    plan: Mapping[str, Any],
    systemctl_show: str,
    health: Mapping[str, Any],
    gpu_json: str,
    journal: Mapping[str, Any] | None = None,
    metrics_json: Any = "",
    prometheus: Mapping[str, Any] | None = None,
    ray: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return status_report(to_plain(plan), str(systemctl_show), to_plain(health), str(gpu_json), to_plain(journal),
                         str(metrics_json or ""), to_plain(prometheus), to_plain(ray))


def airgap_llm_status_promql(_: Any = None) -> dict[str, str]:
    return dict(PROMQL)


def _relay_from_hostvars(compute: Any, hostvars: Mapping[str, Any], hosts: Any, alive: Any,
                         fanout: Any) -> list[dict[str, Any]]:
    """``compute`` (relay.wave_from_hostvars or relay.tree_from_hostvars) over the hosts' relay facts."""
    names = [str(h) for h in to_plain(hosts)]
    facts = {h: {k: to_plain(hostvars[h][k]) for k in relay.FACTS if k in hostvars[h]} for h in names}
    try:
        return list(compute(facts, names, {str(h) for h in to_plain(alive)}, int(fanout)))
    except ValueError as exc:
        raise AnsibleFilterError(f"airgap_llm_model_store_fanout: {exc}") from exc


def airgap_llm_relay_wave(hostvars: Mapping[str, Any], hosts: Any, alive: Any, fanout: Any) -> list[dict[str, Any]]:
    return _relay_from_hostvars(relay.wave_from_hostvars, hostvars, hosts, alive, fanout)


def airgap_llm_relay_tree(hostvars: Mapping[str, Any], hosts: Any, alive: Any, fanout: Any) -> list[dict[str, Any]]:
    return _relay_from_hostvars(relay.tree_from_hostvars, hostvars, hosts, alive, fanout)


def airgap_llm_relay_held(folders: Any, failures: Any) -> list[str]:
    return relay.held_folders([str(f) for f in to_plain(folders)], to_plain(failures))


def airgap_llm_status_prometheus_services(answers: Mapping[str, Any] | None, host: str) -> list[str]:
    return sorted(loads_from_prometheus(to_plain(answers), str(host)))


def airgap_llm_model_code_folders(plan: Mapping[str, Any], bundle: Any) -> list[str]:
    return code_repo_folders(Path(str(bundle)), to_plain(plan)) if bundle else []


def airgap_llm_bundle_signature_problems(
    hostvars: Mapping[str, Any], hosts: Any, inventory_dir: Any = "", bundle: Any = ""
) -> list[str]:
    if not bundle:
        return []
    by_host = {str(h): _planned_vars(hostvars[h]) for h in to_plain(hosts)}
    try:
        where = Path(str(inventory_dir)) if inventory_dir else None
        return bundle_signature_problems(Path(str(bundle)), by_host, where)
    except AirgapLlmError as exc:  # no ssh-keygen on the controller
        raise AnsibleFilterError(str(exc)) from exc


def _manifest_of(bundle: Any) -> dict[str, Any]:
    try:
        return manifest_json(Path(str(bundle)))
    except AirgapLlmError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def airgap_llm_bundle_needs(
    bundle: Any, plan: Mapping[str, Any], verified: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What the host of ``plan`` needs from the bundle directory ``bundle`` (its manifest read here, in Python:
    cheaper for every host than the manifest as a fact of every host)."""
    return host_needs(_manifest_of(bundle), to_plain(plan), to_plain(verified))


def airgap_llm_bundle_paths(bundle: Any) -> list[str]:
    """The paths of the bundle's artifacts (none without a bundle directory)."""
    if not bundle:
        return []
    return [str(a.get("path", "")) for a in _manifest_of(bundle).get("artifacts", [])]


def airgap_llm_dir_entries(path: Any) -> dict[str, dict[str, int]] | None:
    """The regular files directly in the controller's directory ``path``, by size and time (None when it holds
    anything else): what the host's copy must hold for a push to have nothing to move."""
    return local_dir_entries(Path(str(path)))


def airgap_llm_bundle_dir_entries(bundle: Any, subdir: Any) -> dict[str, dict[str, Any]] | None:
    """The files the bundle's manifest lists directly under ``subdir``, by size and sha256 (None when none, or
    anything deeper, or when the directory has no manifest.json at all: an OS part made for local_repo alone):
    what the host's copy must hold for a push to have nothing to move."""
    if not (Path(str(bundle)) / "manifest.json").is_file():
        return None
    return manifest_dir_entries(_manifest_of(bundle), str(subdir))


def airgap_llm_service_models(services: Any) -> list[dict[str, Any]]:
    return service_models(to_plain(services))


def airgap_llm_model_entries(bundle: Any, folders: Any) -> list[dict[str, Any]]:
    """The bundle manifest's entries of these model folders, read in Python (not a Jinja select over every
    artifact of the manifest, for every host)."""
    try:
        return read_model_entries(Path(str(bundle)), [str(f) for f in to_plain(folders)])
    except AirgapLlmError as exc:
        raise AnsibleFilterError(str(exc)) from exc


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


def airgap_llm_nvidia_kernel_check(
    hostvars: Mapping[str, Any], host: str, target_id: str, running: str
) -> dict[str, str]:
    wanted = ("airgap_llm_gpu", "airgap_llm_services", "airgap_llm_kernel_release", "airgap_llm_nvidia_driver_install",
              *nvidia.HOST_SETTINGS.values())
    values = {k: to_plain(hostvars[k]) for k in wanted if k in hostvars}
    problem, note = nvidia.kernel_problem(str(target_id), values, str(host), str(running))
    return {"problem": problem, "note": note}


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


def _plans(plan: Mapping[str, Any]) -> list[HostPlan]:
    return [HostPlan.from_dict(h) for h in to_plain(plan).get("hosts", {}).values()]


def airgap_llm_monitoring_facts(plan: Mapping[str, Any], hostvars: Mapping[str, Any]) -> dict[str, Any]:
    plans = _plans(plan)
    facts = {}
    for p in plans:
        try:
            facts[p.host] = to_plain(hostvars[p.host].get("ansible_facts") or {})
        except KeyError:
            facts[p.host] = {}
    return host_facts(plans, facts)


def airgap_llm_monitoring_files(plan: Mapping[str, Any], host: str, facts: Mapping[str, Any],
                                role_vars: Mapping[str, Any], server: bool = False,
                                password: Any = None) -> list[dict[str, Any]]:
    try:
        files = files_for_host(_plans(plan), str(host), to_plain(facts), to_plain(role_vars), _managed(), bool(server),
                               str(password) if password else None)
    except MonitoringInputError as exc:
        raise AnsibleFilterError(str(exc)) from None
    return [f.as_dict() for f in files]


def airgap_llm_monitoring_packages(target_id: str) -> list[str]:
    target = TARGETS.get(str(target_id))
    if target is None:
        raise AnsibleFilterError(f"airgap_llm_target_os {target_id!r} is not supported; use one of "
                                 f"{', '.join(sorted(TARGETS))}")
    return list(monitoring_packages(target))


class FilterModule:
    """airgap-llm filters."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "airgap_llm_plan": airgap_llm_plan,
            "airgap_llm_service_files": airgap_llm_service_files,
            "airgap_llm_service_dirs": airgap_llm_service_dirs,
            "airgap_llm_helper_files": airgap_llm_helper_files,
            "airgap_llm_secret_files": airgap_llm_secret_files,
            "airgap_llm_file_base64": airgap_llm_file_base64,
            "airgap_llm_file_sha256": airgap_llm_file_sha256,
            "airgap_llm_gpu_devices": airgap_llm_gpu_devices,
            "airgap_llm_gateway_requests": airgap_llm_gateway_requests,
            "airgap_llm_webui_requests": airgap_llm_webui_requests,
            "airgap_llm_unit_names": airgap_llm_unit_names,
            "airgap_llm_cluster_runtime_problems": airgap_llm_cluster_runtime_problems,
            "airgap_llm_node_runtime_probe": airgap_llm_node_runtime_probe,
            "airgap_llm_restart_inputs": airgap_llm_restart_inputs,
            "airgap_llm_apt_source": airgap_llm_apt_source,
            "airgap_llm_nouveau_blacklist": airgap_llm_nouveau_blacklist,
            "airgap_llm_target": airgap_llm_target,
            "airgap_llm_target_for_facts": airgap_llm_target_for_facts,
            "airgap_llm_validation_results": airgap_llm_validation_results,
            "airgap_llm_validation_line": validation_line,
            "airgap_llm_cluster_verdict": airgap_llm_cluster_verdict,
            "airgap_llm_status_report": airgap_llm_status_report,
            "airgap_llm_status_promql": airgap_llm_status_promql,
            "airgap_llm_status_prometheus_services": airgap_llm_status_prometheus_services,
            "airgap_llm_bundle_needs": airgap_llm_bundle_needs,
            "airgap_llm_model_entries": airgap_llm_model_entries,
            "airgap_llm_service_models": airgap_llm_service_models,
            "airgap_llm_bundle_paths": airgap_llm_bundle_paths,
            "airgap_llm_dir_entries": airgap_llm_dir_entries,
            "airgap_llm_bundle_dir_entries": airgap_llm_bundle_dir_entries,
            "airgap_llm_bundle_signature_problems": airgap_llm_bundle_signature_problems,
            "airgap_llm_model_code_folders": airgap_llm_model_code_folders,
            "airgap_llm_relay_wave": airgap_llm_relay_wave,
            "airgap_llm_relay_tree": airgap_llm_relay_tree,
            "airgap_llm_relay_held": airgap_llm_relay_held,
            "airgap_llm_monitoring_facts": airgap_llm_monitoring_facts,
            "airgap_llm_monitoring_files": airgap_llm_monitoring_files,
            "airgap_llm_monitoring_packages": airgap_llm_monitoring_packages,
            "airgap_llm_nvidia_driver_packages": airgap_llm_nvidia_driver_packages,
            "airgap_llm_nvidia_gpus": airgap_llm_nvidia_gpus,
            "airgap_llm_nvidia_kernel_check": airgap_llm_nvidia_kernel_check,
            "airgap_llm_nvidia_compare": airgap_llm_nvidia_compare,
            "airgap_llm_nvidia_fabricmanager_needed": airgap_llm_nvidia_fabricmanager_needed,
            "airgap_llm_nvidia_fabricmanager_mismatch": nvidia.fabricmanager_mismatch,
            "airgap_llm_nvidia_cuda_check": airgap_llm_nvidia_cuda_check,
            "airgap_llm_nvidia_cuda_from_wheels": airgap_llm_nvidia_cuda_from_wheels,
            "airgap_llm_nvidia_smi_q": nvidia.parse_smi_q,
            "airgap_llm_nvidia_branch": nvidia.driver_branch,
            "airgap_llm_nvidia_pci_gpus": nvidia.gpus_from_lspci,
        }
