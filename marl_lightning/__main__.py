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

from marl_lightning.core.errors import ConfigError, Interrupted, TrainingError, find_in_chain, paragraph

# Subcommand -> module whose ``main(argv: list[str]) -> int`` runs it.
WORKFLOWS = {
    "grid": "marl_lightning.grid.command",
    "compare": "marl_lightning.compare.command",
    "render": "marl_lightning.render.command",
    "replay": "marl_lightning.tracking.replay",
}
# Every subcommand, for the top-level help (printed without importing torch or Lightning).
SUBCOMMANDS = {
    "fit": "train an algorithm: --config conf/<algorithm>.yaml [--config conf/env/<task>.yaml]",
    "validate": "evaluate a checkpoint (--ckpt_path PATH, or runs:/<run id>/<path> from MLflow)",
    "test": "evaluate a checkpoint on the test episodes, like validate",
    "grid": "run a grid of fits (algorithms x tasks x axes x seeds) as MLflow child runs",
    "compare": "compare groups of MLflow runs: IQM, probability of improvement, curves (rliable)",
    "render": "render episodes of a trained policy to a GIF or MP4, logged to MLflow",
    "replay": "send the metrics a fit spooled during a tracking-server outage into its run",
}
USAGE = "usage: python -m marl_lightning {" + ",".join(SUBCOMMANDS) + "} [options]"


def top_level_help() -> str:
    """The help of ``python -m marl_lightning`` itself: the subcommands, one line each."""
    rows = "\n".join(f"  {name:<10}{text}" for name, text in SUBCOMMANDS.items())
    return (
        f"{USAGE}\n\nCooperative multi-agent trust-region policy gradients on PyTorch Lightning.\n\n"
        f"subcommands:\n{rows}\n\n`python -m marl_lightning <subcommand> --help` lists every setting of one."
    )


def cli_main(args: list[str] | None = None) -> None:
    """Run a subcommand; a user error prints one paragraph and exits with status 2, no traceback."""
    argv = sys.argv[1:] if args is None else list(args)
    if not argv or argv[0] in ("-h", "--help"):
        print(top_level_help(), file=sys.stdout if argv else sys.stderr)
        sys.exit(0 if argv else 2)
    try:
        if argv and argv[0] in WORKFLOWS:
            status = importlib.import_module(WORKFLOWS[argv[0]]).main(argv[1:])
            sys.exit(status)
        from marl_lightning.cli import MarlCLI
        from marl_lightning.safety.argument_errors import check_config_files
        from marl_lightning.tracking.artifacts import resolve_mlflow_arguments

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
