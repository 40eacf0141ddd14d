"""library/airgap_llm_files.py run as Ansible runs a module: a process reading its arguments from a file."""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path
from typing import Any

MODULE = Path(__file__).resolve().parents[2] / "library" / "airgap_llm_files.py"
OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def run(tmp_path: Path, check: bool = False, diff: bool = False, **params: Any) -> dict[str, Any]:
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**params, "_ansible_check_mode": check,
                                                        "_ansible_diff": diff}}))
    proc = subprocess.run([sys.executable, str(MODULE), str(args)], capture_output=True, text=True, check=False)
    return json.loads(proc.stdout)


def entry(path: Path, mode: str, content: str | None = None, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"path": str(path), "owner": OWNER, "group": GROUP, "mode": mode, **extra}
    if content is not None:
        item["content"] = content
    return item


def test_lays_out_directories_and_files_then_a_rerun_changes_nothing(tmp_path: Path) -> None:
    etc = tmp_path / "etc" / "airgap-llm"  # its parent is missing too
    spec = {"directories": [entry(etc, "0750")],
            "files": [entry(etc / "common.env", "0640", "A=1\n"), entry(etc / "x.service", "0644", "[Unit]\n")]}
    first = run(tmp_path, **spec)
    assert first["changed"] is True
    assert first["paths"] == [str(etc), str(etc / "common.env"), str(etc / "x.service")]
    assert (etc / "common.env").read_text() == "A=1\n"
    assert oct((etc / "common.env").stat().st_mode & 0o777) == "0o640"
    assert oct(etc.stat().st_mode & 0o777) == "0o750"
    second = run(tmp_path, **spec)
    assert second["changed"] is False and second["paths"] == []


def test_reports_only_the_file_whose_content_or_mode_changed(tmp_path: Path) -> None:
    a, b = tmp_path / "a.env", tmp_path / "b.env"
    run(tmp_path, files=[entry(a, "0640", "A=1\n"), entry(b, "0640", "B=1\n")])
    before = a.stat().st_ino
    out = run(tmp_path, files=[entry(a, "0640", "A=2\n"), entry(b, "0600", "B=1\n")])
    assert out["paths"] == [str(a), str(b)]
    assert a.read_text() == "A=2\n" and a.stat().st_ino != before  # renamed over, not rewritten in place
    assert oct(b.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_check_mode_reports_and_writes_nothing(tmp_path: Path) -> None:
    a = tmp_path / "a.env"
    a.write_text("A=1\n")
    out = run(tmp_path, check=True, diff=True, directories=[entry(tmp_path / "d", "0755")],
              files=[entry(a, "0644", "A=2\n"), entry(tmp_path / "d" / "new", "0644", "N\n")], absent=[str(a)])
    assert out["changed"] is True
    assert out["paths"] == [str(tmp_path / "d"), str(a), str(tmp_path / "d" / "new"), str(a)]
    assert a.read_text() == "A=1\n" and not (tmp_path / "d").exists()
    assert out["diff"][0] == {"before_header": str(a), "after_header": str(a), "before": "A=1\n", "after": "A=2\n"}


def test_diff_leaves_a_secret_out(tmp_path: Path) -> None:
    key = tmp_path / "api-key.env"
    key.write_text("VLLM_API_KEY=old\n")
    out = run(tmp_path, diff=True, files=[entry(key, "0600", "VLLM_API_KEY=new\n", secret=True)])
    assert "old" not in json.dumps(out["diff"]) and "new" not in json.dumps(out["diff"])
    assert key.read_text() == "VLLM_API_KEY=new\n"


def test_absent_removes_files_and_links_and_ignores_missing_ones(tmp_path: Path) -> None:
    f, link = tmp_path / "old.service", tmp_path / "link"
    f.write_text("x")
    link.symlink_to(tmp_path / "nowhere")
    out = run(tmp_path, absent=[str(f), str(link), str(tmp_path / "never")])
    assert out["paths"] == [str(f), str(link)]
    assert not f.exists() and not link.is_symlink()


def test_refuses_to_remove_a_directory(tmp_path: Path) -> None:
    out = run(tmp_path, absent=[str(tmp_path)])
    assert out["failed"] is True and "is a directory" in out["msg"]
    assert tmp_path.is_dir()


def test_refuses_a_relative_path(tmp_path: Path) -> None:
    out = run(tmp_path, files=[{"path": "etc/x", "content": "", "mode": "0644"}])
    assert out["failed"] is True and "must be absolute" in out["msg"]


def test_refuses_a_file_in_a_missing_directory(tmp_path: Path) -> None:
    out = run(tmp_path, files=[entry(tmp_path / "missing" / "x", "0644", "x")])
    assert out["failed"] is True and "does not exist" in out["msg"]


def test_writes_a_binary_file_from_base64_and_refuses_both_or_neither_content(tmp_path: Path) -> None:
    key = tmp_path / "keyring.gpg"
    out = run(tmp_path, files=[entry(key, "0644", content_base64="mQINBF4AAAE=")])
    assert out["paths"] == [str(key)] and key.read_bytes() == b"\x99\x02\r\x04^\x00\x00\x01"
    both = run(tmp_path, files=[entry(key, "0644", "x", content_base64="eA==")])
    assert both["failed"] is True and "exactly one of content and content_base64" in both["msg"]
    bad = run(tmp_path, files=[entry(key, "0644", content_base64="not base64!")])
    assert bad["failed"] is True and "is not base64" in bad["msg"]


def test_inspect_and_read_report_after_the_layout_and_change_nothing(tmp_path: Path) -> None:
    venvs, live = tmp_path / "venvs", tmp_path / "venv"
    (tmp_path / "releases.json").write_text('{"live": null}\n')
    (tmp_path / "elsewhere").mkdir()
    spec = {"directories": [entry(venvs, "0755")],
            "inspect": [str(venvs), str(live), str(tmp_path / "missing")],
            "read": [str(tmp_path / "releases.json"), str(tmp_path / "none.json")]}
    first = run(tmp_path, **spec)
    assert first["paths"] == [str(venvs)]
    assert first["state"][str(venvs)] == {"exists": True, "islnk": False, "isdir": True, "dirs": [], "files": []}
    assert first["state"][str(live)] == {"exists": False, "islnk": False, "isdir": False}
    assert first["contents"] == {str(tmp_path / "releases.json"): '{"live": null}\n', str(tmp_path / "none.json"): None}
    (venvs / "py3.11-a").mkdir()
    (venvs / "py3.11-b").mkdir()
    (venvs / "not-a-dir").write_text("")
    (venvs / "link-to-dir").symlink_to(tmp_path / "elsewhere")
    live.symlink_to(venvs / "py3.11-a")
    second = run(tmp_path, **spec)
    assert second["changed"] is False and second["paths"] == []
    assert second["state"][str(venvs)]["dirs"] == [str(venvs / "py3.11-a"), str(venvs / "py3.11-b")]
    assert second["state"][str(venvs)]["files"] == [str(venvs / "not-a-dir")]  # the link to a directory in neither
    assert second["state"][str(live)] == {"exists": True, "islnk": True, "isdir": True,
                                          "lnk_target": str(venvs / "py3.11-a"), "lnk_source": str(venvs / "py3.11-a")}
    assert run(tmp_path, read=[str(venvs)])["msg"].endswith("it is a directory")
    assert "must be absolute" in run(tmp_path, inspect=["venv"])["msg"]



def test_compare_says_whether_a_directory_holds_exactly_the_given_files(tmp_path: Path) -> None:
    import hashlib

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.deb").write_bytes(b"aaaa")
    (repo / "Release").write_text("r\n")
    for f in repo.iterdir():
        f.chmod(0o644)
        os.utime(f, (1700000000, 1700000000))
    by_time = {"a.deb": {"size": 4, "mtime": 1700000000}, "Release": {"size": 2, "mtime": 1700000000}}
    by_hash = {"a.deb": {"size": 4, "sha256": hashlib.sha256(b"aaaa").hexdigest()},
               "Release": {"size": 2, "sha256": hashlib.sha256(b"r\n").hexdigest()}}

    def same(entries: dict[str, Any], mode: str = "0644", path: Path = repo) -> bool:
        result = run(tmp_path, compare=[{"path": str(path), "entries": entries, "mode": mode}])
        assert result["changed"] is False
        return bool(result["same"][str(path)])

    assert same(by_time) and same(by_hash)
    assert not same(by_time, mode="0600")
    assert not same({**by_time, "b.deb": {"size": 1}})  # a file missing on the host
    assert not same({"a.deb": by_time["a.deb"]})  # a file the host has and the list has not
    assert not same(by_time, path=tmp_path / "missing")
    (repo / "a.deb").write_bytes(b"bbbb")  # same size, other content, other time
    os.utime(repo / "a.deb", (1700000000, 1700000000))
    assert same(by_time) and not same(by_hash)  # the time and size agree: only the hash sees it
    os.utime(repo / "a.deb", (1700000001, 1700000001))
    assert not same(by_time)
    (repo / "a.deb").write_bytes(b"aaaa")
    (repo / "sub").mkdir()
    assert not same({**by_hash, "sub": {"size": 4096}})  # a subdirectory never matches
    assert "must be absolute" in run(tmp_path, compare=[{"path": "repo", "entries": {}}])["msg"]
