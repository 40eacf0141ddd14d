"""Subcommands of the ``airgap-llm`` command line; each module exposes ``register(subparsers)``."""
