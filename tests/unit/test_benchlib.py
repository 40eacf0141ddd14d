"""The benchmarks' pure helpers (bench/benchlib.py): figures, tables and the profile_tasks recap."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from benchlib import Version, export_commit, markdown_table, parse_profile, per_extra_host, ratio, summary  # noqa: E402

RECAP = """\
===============================================================================
inference_service : Start or restart each service, waiting for /health ---- 12.34s
Gathering Facts ----------------------------------------------------------- 3.10s
model_store : Verify the staged files - by size and hash ------------------ 1.05s
Gathering Facts ----------------------------------------------------------- 0.90s
benchnoop-1                : ok=40   changed=0    unreachable=0    failed=0
Monday 23 November 2026  05:40:01 +0000 (0:00:00.031)       0:00:42.001 *****
"""


def test_parse_profile_reads_every_task_and_sums_repeated_names() -> None:
    assert parse_profile(RECAP) == {
        "inference_service : Start or restart each service, waiting for /health": 12.34,
        "Gathering Facts": pytest.approx(4.0),
        "model_store : Verify the staged files - by size and hash": 1.05,
    }


def test_summary_median_and_spread() -> None:
    s = summary([10.0, 12.0, 11.0, 30.0])
    assert (s.n, s.median, s.low, s.high) == (4, 11.5, 10.0, 30.0)
    assert s.spread == pytest.approx(20.0 / 11.5)
    assert ratio(summary([15.0]), summary([10.0])) == 1.5
    with pytest.raises(ValueError, match="no samples"):
        summary([])


def test_markdown_table_right_aligns_figures() -> None:
    assert markdown_table(["hosts", "median"], [["1", "9.0 s"]]).splitlines() == [
        "| hosts | median |",
        "|---|---:|",
        "| 1 | 9.0 s |",
    ]


def test_per_extra_host_takes_each_reps_difference() -> None:
    assert per_extra_host([10.0, 11.0], [25.0, 23.0], 3) == [5.0, 4.0]
    with pytest.raises(ValueError, match="2 and 1 reps"):
        per_extra_host([10.0, 11.0], [25.0], 3)
    with pytest.raises(ValueError, match="0 hosts between"):
        per_extra_host([10.0], [25.0], 0)


def test_an_exported_commit_runs_its_own_code_and_an_unknown_one_is_named() -> None:
    """--against REV: the export holds that commit's playbooks and code, and a run of it is pointed there."""
    version = export_commit("HEAD")
    assert version.tree is not None and (version.tree / "playbooks" / "site.yml").is_file()
    assert (version.tree / "src" / "airgap_llm" / "cli.py").is_file()
    assert version.env() == {"PYTHONPATH": str(version.tree / "src"), "AIRGAP_LLM_HOME": str(version.tree)}
    assert version.cli()[1:] == ["-m", "airgap_llm.cli"]
    assert Version("this checkout").env() == {} and Version("this checkout").cli()[0].endswith("airgap-llm")
    with pytest.raises(SystemExit, match="--against no-such-rev: not a commit of this repository"):
        export_commit("no-such-rev")
