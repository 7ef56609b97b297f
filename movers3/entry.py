"""The `movers3` console script. The container health check runs `movers3 healthcheck` every few
seconds in every worker container, so that one command is served before the CLI (boto3, the
database driver, structlog) is imported; everything else, `healthcheck --help` included, is the CLI."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from movers3.worker import health

    args = list(sys.argv[1:] if argv is None else argv)
    code = health.fast_path(args)
    if code is not None:
        return code
    from movers3 import cli

    return cli.main(args)
