"""The memory fit for people (a rich table per host) and for machines (dicts). Pure."""

from __future__ import annotations

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from airgap_llm.memory.check import MemoryAssessment, ServiceMemory


def _seqs(m: ServiceMemory) -> str:
    return "-" if m.max_seqs is None else str(m.max_seqs)


def memory_table(host: str, services: dict[str, ServiceMemory]) -> Table:
    """One host: per GPU service, what it needs per GPU against its share."""
    table = Table(title=f"{host}: memory per GPU (GiB)", title_justify="left")
    for name, justify in (
        ("service", "left"),
        ("GPUs", "left"),
        ("weights", "right"),
        ("KV/seq", "right"),
        ("max_model_len", "right"),
        ("overhead", "right"),
        ("needed", "right"),
        ("share", "right"),
        ("seqs", "right"),
        ("fits", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name, m in services.items():
        d = m.as_dict()
        fits = Text("yes", style="green") if m.fits else Text("NO", style="bold red")
        table.add_row(
            name,
            ",".join(map(str, m.gpus)),
            f"{d['weights_gib']:.2f}",
            f"{d['kv_per_seq_gib']:.2f}",
            f"{d['max_model_len']}" + ("" if m.max_model_len_set else "*"),
            f"{d['overhead_gib']:.2f}",
            f"{d['needed_gib']:.2f}",
            f"{d['share_gib']:.2f}",
            _seqs(m),
            fits,
        )
    table.caption = (
        "needed = weights + KV cache for one sequence of max_model_len + engine overhead; seqs: sequences of "
        "max_model_len the KV cache holds at once; * the model's own context (max_model_len unset)"
    )
    table.caption_justify = "left"
    return table


def memory_tables(assessment: MemoryAssessment) -> list[RenderableType]:
    """Each host's table, then the rules used for models the plain decoder formula does not describe."""
    out: list[RenderableType] = []
    for host, by in assessment.services.items():
        if not by:
            continue
        out.append(memory_table(host, by))
        for name, m in by.items():
            for note in m.notes:
                out.append(Text(f"  {name} ({m.model}): {note}", style="dim"))
    return out
