"""``python -m marl_lightning {fit,validate,test,grid,compare,render} ...``.

``fit``, ``validate`` and ``test`` are LightningCLI subcommands (``marl_lightning.cli``); ``grid``,
``compare`` and ``render`` are the workflows built on them (their own modules, each with ``main(argv)``).
"""

from __future__ import annotations

import importlib
import sys

from marl_lightning.errors import ConfigError, find_in_chain

# Subcommand -> module whose ``main(argv: list[str]) -> int`` runs it.
WORKFLOWS = {
    "grid": "marl_lightning.grid.command",
    "compare": "marl_lightning.compare.command",
    "render": "marl_lightning.render.command",
}


def cli_main(args: list[str] | None = None) -> None:
    """Run a subcommand; a user error prints one paragraph and exits with status 2, no traceback."""
    argv = sys.argv[1:] if args is None else list(args)
    try:
        if argv and argv[0] in WORKFLOWS:
            status = importlib.import_module(WORKFLOWS[argv[0]]).main(argv[1:])
            sys.exit(status)
        from marl_lightning.artifacts import resolve_mlflow_arguments
        from marl_lightning.cli import MarlCLI

        MarlCLI(args=resolve_mlflow_arguments(argv))
    except (ValueError, TypeError) as error:
        config_error = find_in_chain(error, ConfigError)
        if config_error is None:
            raise
        print(f"marl_lightning: error: {config_error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli_main()
