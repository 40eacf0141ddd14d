"""The ``airgap-llm`` command line: one subcommand per module in ``airgap_llm.commands``.

Exit codes: 0 ok, 1 a check failed or the input was invalid (the message says what and where),
2 usage or environment error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from rich.markup import escape

from airgap_llm import __version__
from airgap_llm.console import err_console
from airgap_llm.errors import AirgapLlmError

# Each module exposes register(subparsers); the order is the order of --help.
COMMAND_MODULES = ("plan", "render", "bundle", "install", "upgrade", "rollback", "status", "validate", "demo")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="airgap-llm",
        description="Provision airgapped GPU hosts into a running vLLM serving stack from a carried-in bundle.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"airgap_llm.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"airgap_llm.commands.{name}":
                continue  # a command not present in this build
            raise
        module.register(sub)
    return parser


def os_error_line(exc: OSError) -> str:
    """``permission denied: /root/.cache/airgap-llm/runs`` rather than a traceback."""
    what = (exc.strerror or str(exc) or type(exc).__name__).lower()
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return " ".join(f"{what}: {' -> '.join(paths)}".split()) if paths else " ".join(what.split())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except AirgapLlmError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except OSError as exc:  # PermissionError, a full disk, a vanished path: the environment, not the input
        err_console.print(f"[bold red]error:[/] {escape(os_error_line(exc))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
