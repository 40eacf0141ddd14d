"""Error types that map onto the command line's exit codes."""

from __future__ import annotations


class AirgapLlmError(Exception):
    """Base class of the errors the command line reports without a traceback."""

    exit_code = 1


class InputError(AirgapLlmError):
    """The user's input (inventory, bundle, arguments' content) is invalid: exit code 1."""

    exit_code = 1


class CheckFailed(AirgapLlmError):
    """A check ran and failed (validation, verification): exit code 1."""

    exit_code = 1


class UsageError(AirgapLlmError):
    """Wrong usage or a broken environment (missing path, missing tool): exit code 2."""

    exit_code = 2
