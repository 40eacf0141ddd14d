"""status's releases table: the live and previous release per host, and a rollback's note."""

from __future__ import annotations

from rich.console import Console

from airgap_llm.commands.status import release_cell, release_table


def render(result: dict) -> str:  # type: ignore[type-arg]
    console = Console(width=300, record=True)
    table = release_table(result)
    assert table is not None
    console.print(table)
    return console.export_text()


def test_release_cell_and_table() -> None:
    live = {"id": "aaaa11112222", "venv": "py3.11-47c7", "models": {"embed": "0123456789abcdef"},
            "created": "2026-11-30T16:00:00Z"}
    assert release_cell(live) == "aaaa11112222 (venv py3.11-47c7; embed@0123456789; 2026-11-30T16:00:00Z)"
    assert release_cell(None) == "none"
    text = render({"hosts": {
        "h1": {"releases": {"live": live, "previous": {**live, "id": "bbbb"}, "rolled_back": {"from": "bbbb"}}},
        "h2": {"releases": None},
        "h3": None,
    }})
    assert "h1" in text and "rolled back from bbbb" in text and "bbbb (venv" in text
    assert "h2" in text and "none recorded" in text and "h3" not in text
    assert release_table({"hosts": {"h3": None}}) is None
