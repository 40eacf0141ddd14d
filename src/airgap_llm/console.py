"""Shared rich consoles: results on stdout, diagnostics on stderr."""

from __future__ import annotations

import sys

from rich.console import Console

# Logs and pipes get a wide fixed width instead of rich's 80 columns, so tables do not fold.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
