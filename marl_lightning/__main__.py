"""``python -m marl_lightning {fit,validate,test,grid,compare,render,replay} ...``.

``fit``, ``validate`` and ``test`` are LightningCLI subcommands (``marl_lightning.cli``); ``grid``,
``compare``, ``render`` and ``replay`` are the workflows built on them (their own modules, each with
``main(argv)``).

Exit statuses: 0 done; 1 a training error (``errors.TrainingError``: non-finite values, a full disk); 2 a
bad setting (``errors.ConfigError``, before anything is created); 128 + N stopped by signal N after a
checkpoint (143 SIGTERM, 130 SIGINT, 138 SIGUSR1). Each prints one paragraph, no traceback.
"""

from __future__ import annotations

import importlib
import sys

from marl_lightning.errors import ConfigError, Interrupted, TrainingError, find_in_chain, paragraph

# Subcommand -> module whose ``main(argv: list[str]) -> int`` runs it.
WORKFLOWS = {
    "grid": "marl_lightning.grid.command",
    "compare": "marl_lightning.compare.command",
    "render": "marl_lightning.render.command",
    "replay": "marl_lightning.replay_command",
}


def cli_main(args: list[str] | None = None) -> None:
    """Run a subcommand; a user error prints one paragraph and exits with status 2, no traceback."""
    argv = sys.argv[1:] if args is None else list(args)
    try:
        if argv and argv[0] in WORKFLOWS:
            status = importlib.import_module(WORKFLOWS[argv[0]]).main(argv[1:])
            sys.exit(status)
        from marl_lightning.argument_errors import check_config_files
        from marl_lightning.artifacts import resolve_mlflow_arguments
        from marl_lightning.cli import MarlCLI

        resolved = resolve_mlflow_arguments(argv)
        check_config_files(resolved)
        if args is None:  # LightningCLI reads sys.argv itself (given args too, it warns)
            sys.argv[1:] = resolved
            MarlCLI()
        else:
            MarlCLI(args=resolved)
    except Interrupted as interrupted:
        print(f"marl_lightning: {interrupted}", file=sys.stderr)
        sys.exit(interrupted.exit_status)
    except Exception as error:
        config_error = find_in_chain(error, ConfigError)
        if config_error is not None:
            print(f"marl_lightning: error: {paragraph(config_error)}", file=sys.stderr)
            sys.exit(2)
        training_error = find_in_chain(error, TrainingError)
        if training_error is not None:
            print(f"marl_lightning: error: {paragraph(training_error)}", file=sys.stderr)
            sys.exit(1)
        raise


if __name__ == "__main__":
    cli_main()
