"""Relay staging of model weights: which host pulls which model from which, in waves.

The controller sends each model once, to the first host (in inventory order) that needs it; every other
host that needs it pulls it from a host that already holds a verified copy, over the cluster network.
Each host serves a model to at most ``fanout`` other hosts (its children in that model's tree), so the
model spreads as a tree with that fan-out, one level per wave:

    wave 1: controller -> h1        wave 2: h1 -> h2, h3        wave 3: h2 -> h4, h5; h3 -> h6, h7

Hosts that already hold a verified copy of a model (an earlier run, or a host that had it before) need
nothing and serve from the first wave. A host whose copy fails verification is left out: it neither
serves nor receives anything more, and its children in the tree pull from another verified holder with
a free place, else from the controller (one host per model and wave). Only successful transfers take a
place, so the failed child's place goes back to its parent.

Pure functions; ``roles/model_store`` calls :func:`next_wave` before every wave with what the hosts
hold and which of them failed, and the plan shows :func:`relay_waves` (every wave, all transfers
assumed to succeed).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_FANOUT = 2
# The model_store role's facts that wave_from_hostvars reads on each host.
FACTS = ("airgap_llm_model_store_folders", "airgap_llm_model_store_relay_holds",
         "airgap_llm_model_store_relay_received")


@dataclass(frozen=True)
class Transfer:
    """``host`` receives ``folder`` (models--ORG--NAME) from ``source``; None is the controller."""

    host: str
    folder: str
    source: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "folder": self.folder, "source": self.source}


def _folders_in_order(needs: Mapping[str, Sequence[str]], order: Sequence[str]) -> list[str]:
    out: list[str] = []
    for host in order:
        for folder in needs.get(host, ()):
            if folder not in out:
                out.append(folder)
    return out


def next_wave(
    needs: Mapping[str, Sequence[str]],
    holds: Mapping[str, Collection[str]],
    fanout: int,
    order: Sequence[str] | None = None,
    served: Mapping[tuple[str, str], int] | None = None,
    failed: Collection[str] = (),
) -> list[Transfer]:
    """The transfers of the next wave.

    needs: per host, the model folders it must hold. holds: per host, the folders it holds verified now
    (sources). order: the hosts in inventory order (default: the order of ``needs``). served: per
    (source, folder), how many hosts already hold the folder verified from that source (their places in
    the tree). failed: hosts left out (their copy failed verification, or they are down).
    """
    if fanout < 1:
        raise ValueError(f"fanout must be 1 or more, got {fanout}")
    hosts = [h for h in (order if order is not None else list(needs)) if h not in failed]
    used: dict[tuple[str, str], int] = dict(served or {})
    wave: list[Transfer] = []
    for folder in _folders_in_order(needs, hosts):
        pending = [h for h in hosts if folder in needs.get(h, ()) and folder not in holds.get(h, ())]
        if not pending:
            continue
        # Sources in the order they came to hold the folder: a host that held it before serves first,
        # then the tree's levels in inventory order (breadth first).
        sources = [h for h in hosts if folder in holds.get(h, ())]
        controller_used = False
        for host in pending:
            source = next((s for s in sources if used.get((s, folder), 0) < fanout), None)
            if source is not None:
                used[(source, folder)] = used.get((source, folder), 0) + 1
                wave.append(Transfer(host, folder, source))
            elif not controller_used and not any(t.folder == folder for t in wave):
                # No verified copy with a free place: the controller sends it (once per model and wave).
                controller_used = True
                wave.append(Transfer(host, folder, None))
    return wave


def relay_waves(
    needs: Mapping[str, Sequence[str]],
    holds: Mapping[str, Collection[str]] | None = None,
    fanout: int = DEFAULT_FANOUT,
    order: Sequence[str] | None = None,
) -> list[list[Transfer]]:
    """Every wave until each host holds what it needs, assuming every transfer succeeds."""
    have: dict[str, set[str]] = {h: set(f) for h, f in (holds or {}).items()}
    served: dict[tuple[str, str], int] = {}
    waves: list[list[Transfer]] = []
    while True:
        wave = next_wave(needs, have, fanout, order, served)
        if not wave:
            return waves
        waves.append(wave)
        for t in wave:
            have.setdefault(t.host, set()).add(t.folder)
            if t.source is not None:
                served[(t.source, t.folder)] = served.get((t.source, t.folder), 0) + 1


def served_counts(received: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[tuple[str, str], int]:
    """Per (source, folder), how many hosts verified the folder they received from that source."""
    out: dict[tuple[str, str], int] = {}
    for transfers in received.values():
        for t in transfers:
            if t.get("source"):
                key = (str(t["source"]), str(t["folder"]))
                out[key] = out.get(key, 0) + 1
    return out


def held_folders(folders: Sequence[str], failures: Sequence[Mapping[str, Any]]) -> list[str]:
    """The folders with no failure under them (the verify script's report: paths relative to the hub)."""
    bad = {str(f.get("path", "")).split("/", 1)[0] for f in failures}
    return [f for f in folders if f not in bad]


def _needs_and_holds(
    hostvars: Mapping[str, Mapping[str, Any]], hosts: Sequence[str]
) -> tuple[list[str], dict[str, list[str]], dict[str, set[str]]]:
    """The hosts that take part (those with the role's relay facts), in order, with what each needs and holds."""
    order = [h for h in hosts if "airgap_llm_model_store_relay_holds" in hostvars.get(h, {})]
    needs = {h: list(hostvars[h].get("airgap_llm_model_store_folders", [])) for h in order}
    holds = {h: set(hostvars[h]["airgap_llm_model_store_relay_holds"]) for h in order}
    return order, needs, holds


def wave_from_hostvars(
    hostvars: Mapping[str, Mapping[str, Any]],
    hosts: Sequence[str],
    alive: Collection[str],
    fanout: int,
) -> list[dict[str, Any]]:
    """The next wave from the model_store role's facts on each host (see roles/model_store/tasks/relay.yml).

    Each host of ``hosts`` has ``airgap_llm_model_store_folders`` (needs), ``airgap_llm_model_store_relay_holds``
    (verified folders) and ``airgap_llm_model_store_relay_received`` (transfers it verified); hosts not in
    ``alive`` have failed. Hosts without these facts (no model to stage) take no part.
    """
    order, needs, holds = _needs_and_holds(hostvars, hosts)
    received = {h: list(hostvars[h].get("airgap_llm_model_store_relay_received", [])) for h in order}
    failed = [h for h in order if h not in alive]
    wave = next_wave(needs, holds, fanout, order, served_counts(received), failed)
    return [t.as_dict() for t in wave]


def tree_from_hostvars(
    hostvars: Mapping[str, Mapping[str, Any]],
    hosts: Sequence[str],
    alive: Collection[str],
    fanout: int,
) -> list[dict[str, Any]]:
    """Every transfer of the relay's pipelined pass, from the same facts as :func:`wave_from_hostvars`.

    The whole tree at once (:func:`relay_waves`, every transfer assumed to succeed), each transfer with
    its level (``wave``): the pass runs every level at the same time, a host passing each file on as soon
    as it verified it. What the pass leaves undone (a copy that failed, a parent that stopped) is done by
    the waves after it, from the hosts' facts then.
    """
    order, needs, holds = _needs_and_holds(hostvars, [h for h in hosts if h in alive])
    return [{**t.as_dict(), "wave": level}
            for level, wave in enumerate(relay_waves(needs, holds, fanout, order), start=1) for t in wave]


def plan_preview(folders_by_host: Mapping[str, Sequence[str]], fanout: int, relay: bool) -> dict[str, Any]:
    """The plan's view of model staging for a site where no host holds a model yet."""
    if not relay:
        waves = [[Transfer(h, f, None) for h, fs in folders_by_host.items() for f in fs]]
        waves = [w for w in waves if w]
    else:
        waves = relay_waves(folders_by_host, fanout=fanout, order=list(folders_by_host))
    return {
        "relay": relay,
        "fanout": fanout,
        "waves": [[t.as_dict() for t in w] for w in waves],
        "from_controller": sum(1 for w in waves for t in w if t.source is None),
    }


def settings_problems(hostvars: Mapping[str, Any]) -> list[str]:
    """Bad relay settings in a host's inventory variables, for the plan (before any host is contacted)."""
    problems = []
    fanout = hostvars.get("airgap_llm_model_store_fanout", DEFAULT_FANOUT)
    if isinstance(fanout, str) and "{" in fanout:
        pass  # a template: the role checks the value it gets
    elif isinstance(fanout, bool) or not isinstance(fanout, int) or fanout < 1:
        problems.append("airgap_llm_model_store_fanout must be a whole number >= 1 (hosts one host serves a "
                        f"model to), got {fanout!r}")
    relay = hostvars.get("airgap_llm_model_store_relay", True)
    if not isinstance(relay, bool) and not (isinstance(relay, str) and "{" in relay):
        problems.append(f"airgap_llm_model_store_relay must be true or false, got {relay!r}")
    return problems


def preview_from_plan(hosts: Mapping[str, Mapping[str, Any]], hostvars: Mapping[str, Any]) -> dict[str, Any]:
    """plan_preview for the plan's hosts (as dicts), with the first host's relay settings."""
    folders = {}
    for name, host in hosts.items():
        wanted: list[str] = []
        for svc in host.get("services", []):
            folder = svc.get("model_folder")
            if svc.get("model") and folder and folder not in wanted:
                wanted.append(str(folder))
        if wanted:
            folders[name] = wanted
    first = next(iter(hosts), None)
    settings = hostvars.get(first, {}) if first is not None else {}
    fanout = settings.get("airgap_llm_model_store_fanout", DEFAULT_FANOUT)
    relay = settings.get("airgap_llm_model_store_relay", True)
    fanout = fanout if isinstance(fanout, int) and not isinstance(fanout, bool) and fanout >= 1 else DEFAULT_FANOUT
    return plan_preview(folders, fanout, relay is not False)
