"""Follow ansible-runner events and keep a hosts x steps picture of a run. Pure: no I/O.

Plays are named ``"<step>: <what it does>"`` (see playbooks/), so the step of every event is the
part of its play's name before the colon.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STEPS = ("plan", "preflight", "nvidia", "runtime", "models", "services", "monitoring", "release", "validate")

# States of one host in one step, in the order they may move.
PENDING, RUNNING, OK, CHANGED, FAILED, UNREACHABLE, SKIPPED = (
    "pending",
    "running",
    "ok",
    "changed",
    "failed",
    "unreachable",
    "skipped",
)


@dataclass
class Failure:
    host: str
    step: str
    task: str
    message: str
    unreachable: bool = False


@dataclass
class HostStats:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


@dataclass
class RunProgress:
    """The state of a run, fed one event at a time."""

    steps: tuple[str, ...] = STEPS
    cells: dict[tuple[str, str], str] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)
    step: str | None = None
    task: str = ""
    failures: list[Failure] = field(default_factory=list)
    stats: dict[str, HostStats] = field(default_factory=dict)
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)  # host -> values of watched vars
    changes: dict[str, list[str]] = field(default_factory=dict)  # host -> "step: task" of each changed task
    artifacts: str | None = None  # where a failed run's ansible-runner artifacts were kept

    def _host(self, host: str) -> None:
        if host and host not in self.hosts:
            self.hosts.append(host)

    def _mark(self, host: str, state: str) -> None:
        if self.step is None:
            return
        self._host(host)
        key = (host, self.step)
        current = self.cells.get(key, PENDING)
        order = [PENDING, RUNNING, SKIPPED, OK, CHANGED, FAILED, UNREACHABLE]
        if order.index(state) >= order.index(current) or current == RUNNING:
            self.cells[key] = state

    def state(self, host: str, step: str) -> str:
        return self.cells.get((host, step), PENDING)

    def feed(self, event: Mapping[str, Any]) -> None:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host = str(data.get("host") or "")
        if kind == "playbook_on_play_start":
            name = str(data.get("play") or data.get("name") or "")
            step = name.split(":", 1)[0].strip().lower()
            self.step = step if step in self.steps else (name or None)
            if self.step and self.step not in self.steps:
                self.steps = (*self.steps, self.step)
        elif kind == "playbook_on_task_start":
            self.task = str(data.get("task") or "")
        elif kind == "runner_on_start":
            if host:
                self._host(host)
                if self.state(host, self.step or "") == PENDING:
                    self._mark(host, RUNNING)
        elif kind == "runner_on_ok":
            res = data.get("res") or {}
            self._mark(host, CHANGED if res.get("changed") else OK)
            if res.get("changed"):
                self.changes.setdefault(host, []).append(f"{self.step}: {data.get('task') or self.task}")
            facts = res.get("ansible_facts") or {}
            if facts:
                self.facts.setdefault(host, {}).update(facts)
        elif kind == "runner_on_skipped":
            self._mark(host, SKIPPED)
        elif kind == "runner_on_failed":
            if data.get("ignore_errors"):
                return
            self._mark(host, FAILED)
            self.failures.append(
                Failure(host, self.step or "", str(data.get("task") or ""), failure_message(data.get("res") or {}))
            )
        elif kind == "runner_on_unreachable":
            self._mark(host, UNREACHABLE)
            self.failures.append(
                Failure(
                    host, self.step or "", str(data.get("task") or ""), failure_message(data.get("res") or {}), True
                )
            )
        elif kind == "playbook_on_stats":
            for name in ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored"):
                for h, count in (data.get(name) or {}).items():
                    self._host(h)
                    stats = self.stats.setdefault(h, HostStats())
                    attr = {"failures": "failed", "dark": "unreachable"}.get(name, name)
                    setattr(stats, attr, int(count))

    def host_result(self, host: str) -> str:
        """How the run ended for ``host``: unreachable, failed, ok, or pending (it never reported)."""
        stats = self.stats.get(host)
        mine = [f for f in self.failures if f.host == host]
        if any(f.unreachable for f in mine) or (stats is not None and stats.unreachable):
            return UNREACHABLE
        if mine or (stats is not None and stats.failed):
            return FAILED
        return OK if stats is not None else PENDING

    def stopped_at(self, host: str) -> str | None:
        """The step of ``host``'s first failure (None when it had none)."""
        return next((f.step for f in self.failures if f.host == host), None)

    def hosts_with(self, result: str) -> list[str]:
        return [h for h in self.hosts if self.host_result(h) == result]

    @property
    def ok(self) -> bool:
        return not self.failures and all(s.failed == 0 and s.unreachable == 0 for s in self.stats.values())

    @property
    def changed_total(self) -> int:
        return sum(s.changed for s in self.stats.values())


def failure_message(res: Mapping[str, Any]) -> str:
    """The useful part of a failed task's result: its msg, or stderr, or the failed loop items' msgs."""
    msg = res.get("msg")
    parts: list[str] = []
    if isinstance(msg, list):
        parts.extend(str(m) if not isinstance(m, list) else "\n".join(str(x) for x in m) for m in msg)
    elif msg:
        parts.append(str(msg))
    if not parts and res.get("stderr"):
        parts.append(str(res["stderr"]))
    for item in res.get("results") or []:
        if isinstance(item, Mapping) and item.get("failed"):
            label = item.get("_ansible_item_label") or item.get("item")
            parts.append(f"{label}: {failure_message(item)}")
    return "\n".join(p for p in parts if p) or "failed (no message)"
