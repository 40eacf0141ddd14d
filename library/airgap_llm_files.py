#!/usr/bin/python
"""Lay out a set of directories and files on a host in one module run, and report which changed."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: airgap_llm_files
short_description: Directories, whole files and removals on a host in one module run
description:
  - Makes sure each directory exists with its owner, group and mode; writes each file whose content,
    owner, group or mode differs (content through a temporary file renamed over the old one, with its
    owner, group and mode set before the rename); removes each path of O(absent) that exists.
  - One module run for what would otherwise be a file, copy or template task per item, each costing a
    module run (two for copy) on the host and a task on the controller.
  - Reports every path it changed in RV(paths), so later tasks can tell which files changed.
  - Supports check mode (reports what would change, touches nothing) and diff mode (the content of each
    changed file before and after, unless the file is marked secret).
options:
  directories:
    description: Directories, created with missing parents (0755, root) when absent, in the order given.
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: Absolute path., type: path, required: true}
      owner: {description: Owner name or id., type: str, default: root}
      group: {description: Group name or id., type: str, default: root}
      mode: {description: Mode as an octal string such as C(0755)., type: raw, required: true}
  files:
    description: Whole files; their directory must exist or be among O(directories).
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: Absolute path., type: path, required: true}
      content: {description: The whole content (text; written as UTF-8); this or O(files[].content_base64)., type: str}
      content_base64: {description: The whole content of a binary file (a keyring), base64-encoded., type: str}
      owner: {description: Owner name or id., type: str, default: root}
      group: {description: Group name or id., type: str, default: root}
      mode: {description: Mode as an octal string such as C(0644)., type: raw, required: true}
      secret: {description: Leave the content out of diffs., type: bool, default: false}
      service: {description: The service the file belongs to (a label the caller keeps; not used here)., type: str}
  absent:
    description: Paths to remove when they exist (files or links; a directory is refused).
    type: list
    elements: path
    default: []
  inspect:
    description:
      - Paths to report on in RV(state), read after the layout (links are not followed), changing nothing.
      - Spares the caller a stat or find task per path.
    type: list
    elements: path
    default: []
  read:
    description: Small text files whose content to report in RV(contents) (null for a missing file), changing nothing.
    type: list
    elements: path
    default: []
  compare:
    description:
      - Directories to hold exactly the given files, checked after the layout, changing nothing (RV(same)).
      - A directory matches when it holds those names and nothing else (no subdirectory, no link), each a
        regular file of that size and mode, and of that C(mtime) (whole seconds) and C(sha256) where given.
      - Spares a transfer (C(ansible.posix.synchronize) runs a module and an rsync on the controller) when
        the host already holds what it would send.
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: Absolute path of the directory., type: path, required: true}
      entries: {description: 'File name to C(size), and optionally C(mtime) and C(sha256).', type: dict, required: true}
      mode: {description: The mode every file must have, as an octal string., type: str, default: '0644'}
author:
  - airgap-llm
"""

EXAMPLES = r"""
- name: The helpers and their directory
  airgap_llm_files:
    directories:
      - {path: /usr/local/libexec/airgap-llm, mode: "0755"}
    files:
      - path: /usr/local/libexec/airgap-llm/wait-healthy
        content: "{{ lookup('ansible.builtin.file', 'wait-healthy', rstrip=false) }}"
        mode: "0755"
    absent:
      - /etc/systemd/system/airgap-llm.old.service
  register: laid_out
"""

RETURN = r"""
paths:
  description: Every path created, changed or removed (or that would be, in check mode), in the order handled.
  returned: always
  type: list
  elements: str
state:
  description:
    - For each path of O(inspect) - C(exists); C(islnk), with C(lnk_target) (the link's text) and C(lnk_source)
      (the absolute path it resolves to) for a link; C(isdir); C(dirs) and C(files) for a directory that is not a
      link (the absolute paths of its subdirectories and of its regular files, sorted; links are in neither).
  returned: always
  type: dict
contents:
  description: For each path of O(read), its content as text (null when the file does not exist).
  returned: always
  type: dict
same:
  description: For each directory of O(compare), whether it holds exactly the given files.
  returned: always
  type: dict
"""

MISSING_PARENT_MODE = 0o755


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _attrs_differ(module: AnsibleModule, path: str, item: dict[str, Any]) -> bool:
    """Whether owner, group or mode differ (the AnsibleModule setters report it without changing in check mode)."""
    changed = False
    for setter, value in (
        (module.set_owner_if_different, item["owner"]),
        (module.set_group_if_different, item["group"]),
        (module.set_mode_if_different, item["mode"]),
    ):
        changed = setter(path, value, changed)
    return changed


def ensure_directory(module: AnsibleModule, item: dict[str, Any]) -> bool:
    path = item["path"]
    if os.path.isdir(path):
        return _attrs_differ(module, path, item)
    if os.path.lexists(path):
        module.fail_json(msg=f"{path} exists and is not a directory", paths=[])
    if not module.check_mode:
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            os.makedirs(parent, MISSING_PARENT_MODE)
        os.mkdir(path, 0o700)
        _attrs_differ(module, path, item)
    return True


def new_content(module: AnsibleModule, item: dict[str, Any]) -> bytes:
    if (item["content"] is None) == (item["content_base64"] is None):
        module.fail_json(msg=f"{item['path']}: give exactly one of content and content_base64", paths=[])
    if item["content"] is not None:
        return item["content"].encode("utf-8")
    try:
        return base64.b64decode(item["content_base64"], validate=True)
    except ValueError as exc:
        module.fail_json(msg=f"{item['path']}: content_base64 is not base64: {exc}", paths=[])
        raise


def write_file(module: AnsibleModule, item: dict[str, Any], diffs: list[dict[str, str]]) -> bool:
    path = item["path"]
    new = new_content(module, item)
    if os.path.isdir(path):
        module.fail_json(msg=f"{path} is a directory, not a file", paths=[])
    old = _read(path)
    if old == new:
        return _attrs_differ(module, path, item)
    if module._diff:
        hidden = "(secret: not shown)\n"
        diffs.append(
            {
                "before_header": path,
                "after_header": path,
                "before": hidden if item["secret"] and old is not None else (old or b"").decode("utf-8", "replace"),
                "after": hidden if item["secret"] else new.decode("utf-8", "replace"),
            }
        )
    if module.check_mode:
        return True
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        module.fail_json(msg=f"cannot write {path}: its directory {directory} does not exist", paths=[])
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(new)
            f.flush()
            os.fsync(f.fileno())
        # Owner, group, mode and SELinux context before the file is visible under its name (a secret is never
        # readable by others, not even for a moment), then one rename in the same directory.
        _attrs_differ(module, tmp, item)
        if module.selinux_enabled():
            module.set_context_if_different(tmp, module.selinux_default_context(path), False)
        os.rename(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return True


def remove(module: AnsibleModule, path: str) -> bool:
    if not os.path.lexists(path):
        return False
    if os.path.isdir(path) and not os.path.islink(path):
        module.fail_json(msg=f"refusing to remove {path}: it is a directory", paths=[])
    if not module.check_mode:
        os.unlink(path)
    return True


READ_LIMIT = 1 << 20


def inspect(path: str) -> dict[str, Any]:
    """What a stat (links not followed) says of ``path``, and a directory's subdirectories."""
    if not os.path.lexists(path):
        return {"exists": False, "islnk": False, "isdir": False}
    out: dict[str, Any] = {"exists": True, "islnk": os.path.islink(path), "isdir": os.path.isdir(path)}
    if out["islnk"]:
        out["lnk_target"] = os.readlink(path)
        out["lnk_source"] = os.path.realpath(path)
    elif out["isdir"]:
        with os.scandir(path) as scan:
            entries = list(scan)
        out["dirs"] = sorted(e.path for e in entries if e.is_dir(follow_symlinks=False))
        out["files"] = sorted(e.path for e in entries if e.is_file(follow_symlinks=False))
    return out


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def holds_exactly(path: str, entries: dict[str, Any], mode: str = "0644") -> bool:
    """Whether the directory ``path`` holds exactly ``entries`` (name to size, and ``mtime`` and ``sha256`` where
    given), each a regular file of ``mode``, and nothing else; content is hashed only once the rest matches."""
    if os.path.islink(path) or not os.path.isdir(path):
        return False
    want_mode = int(str(mode), 8)
    to_hash: list[tuple[str, str]] = []
    with os.scandir(path) as scan:
        found = list(scan)
    if len(found) != len(entries):
        return False
    for entry in found:
        want = entries.get(entry.name)
        if want is None or not entry.is_file(follow_symlinks=False):
            return False
        st = entry.stat(follow_symlinks=False)
        if st.st_size != int(want["size"]) or stat.S_IMODE(st.st_mode) != want_mode:
            return False
        if "mtime" in want and int(st.st_mtime) != int(want["mtime"]):
            return False
        if "sha256" in want:
            to_hash.append((entry.path, str(want["sha256"])))
    return all(_sha256(file) == digest for file, digest in to_hash)


def read_text(module: AnsibleModule, path: str) -> str | None:
    if os.path.isdir(path):
        module.fail_json(msg=f"cannot read {path}: it is a directory", paths=[])
    data = _read(path)
    if data is not None and len(data) > READ_LIMIT:
        module.fail_json(msg=f"cannot read {path}: larger than {READ_LIMIT} bytes", paths=[])
    return None if data is None else data.decode("utf-8", "replace")


def main() -> None:
    entry = {"path": {"type": "path", "required": True}, "owner": {"type": "str", "default": "root"},
             "group": {"type": "str", "default": "root"}, "mode": {"type": "raw", "required": True}}
    module = AnsibleModule(
        argument_spec={
            "directories": {"type": "list", "elements": "dict", "default": [], "options": entry},
            "files": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {**entry, "content": {"type": "str"}, "content_base64": {"type": "str"},
                            "secret": {"type": "bool", "default": False}, "service": {"type": "str"}},
            },
            "absent": {"type": "list", "elements": "path", "default": []},
            "inspect": {"type": "list", "elements": "path", "default": []},
            "read": {"type": "list", "elements": "path", "default": []},
            "compare": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {"path": {"type": "path", "required": True}, "entries": {"type": "dict", "required": True},
                            "mode": {"type": "str", "default": "0644"}},
            },
        },
        supports_check_mode=True,
    )
    given = [item["path"] for item in module.params["directories"] + module.params["files"]]
    compared = [item["path"] for item in module.params["compare"]]
    for path in given + module.params["inspect"] + module.params["read"] + compared:
        if not os.path.isabs(path):
            module.fail_json(msg=f"path must be absolute: {path!r}", paths=[])
    paths: list[str] = []
    diffs: list[dict[str, str]] = []
    for item in module.params["directories"]:
        if ensure_directory(module, item):
            paths.append(item["path"])
    for item in module.params["files"]:
        if write_file(module, item, diffs):
            paths.append(item["path"])
    for path in module.params["absent"]:
        if remove(module, path):
            paths.append(path)
    result: dict[str, Any] = {
        "changed": bool(paths),
        "paths": paths,
        "state": {path: inspect(path) for path in module.params["inspect"]},
        "contents": {path: read_text(module, path) for path in module.params["read"]},
        "same": {item["path"]: holds_exactly(item["path"], item["entries"], item["mode"])
                 for item in module.params["compare"]},
    }
    if module._diff and diffs:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
