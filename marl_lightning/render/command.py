"""``python -m marl_lightning render``: watch a trained policy, as a GIF (or MP4), logged to its MLflow run.

    python -m marl_lightning render --config conf/mappo.yaml --ckpt_path checkpoints/<run>/last.ckpt
    python -m marl_lightning render --config runs:/<run_id>/config.yaml --ckpt_path runs:/<run_id>/<path>

The configs build the env and the model as ``fit`` does (``MarlCLI(run=False)``: the default config files,
then each ``--config``, then any other ``--section.field value`` given); the checkpoint's weights replace
the fresh ones. ``--episodes`` episodes run side by side with the deterministic policy (mode / mean
action); the video shows them one after another; the mean episode return is printed. The video is logged
to the checkpoint's MLflow run under ``videos/`` (``--no-log`` to skip). See ``docs/rendering.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from marl_lightning.core.errors import ConfigError
from marl_lightning.render.episodes import record_episodes
from marl_lightning.render.video import check_output, write_video
from marl_lightning.tracking.artifacts import (
    RUNS_SCHEME,
    TRACKING_URI_OPTION,
    default_tracking_uri,
    resolve_mlflow_arguments,
)
from marl_lightning.tracking.loggers import MLFLOW_RUN_KEY

VIDEO_ARTIFACT_DIR = "videos"
# Arguments of the fit/validate/test subcommands themselves, which a run's resolved config.yaml holds at its
# top level; the config-only parser (MarlCLI(run=False)) has no such options.
SUBCOMMAND_KEYS = ("ckpt_path", "weights_only")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m marl_lightning render",
        description="Render deterministic episodes of a trained policy to a GIF (or MP4), logged to MLflow.",
        epilog="Any other --section.field value argument is applied to the configs, as in `fit`.",
    )
    p.add_argument("--config", action="append", required=True,
                   help="a config file or runs:/<run_id>/config.yaml; repeatable, composed in order")
    p.add_argument("--ckpt_path", "--ckpt-path", dest="ckpt_path", required=True,
                   help="a checkpoint file or runs:/<run_id>/<path>")
    p.add_argument("--output", default="episode.gif", help="the video: .gif, or .mp4 with PyAV installed")
    p.add_argument("--episodes", type=int, default=1, help="episodes to run and show, one after another")
    p.add_argument("--fps", type=float, default=10.0, help="frames per second of the video")
    p.add_argument("--seed", type=int, default=0, help="seed of the episodes (initial states, env draws)")
    p.add_argument("--size", type=int, default=None, help="scale frames to this many pixels, longer side")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow store for runs:/ paths and the video (default: MLFLOW_TRACKING_URI, else "
                        "conf/trainer.yaml's)")
    p.add_argument("--no-log", action="store_true", help="do not log the video to MLflow")
    return p


def main(argv: list[str]) -> int:
    args, overrides = parser().parse_known_args(argv)
    _check_arguments(args, overrides)
    output = check_output(args.output)
    tracking_uri = args.tracking_uri or default_tracking_uri()

    cli_args = [*(a for config in args.config for a in ("--config", config)), "--ckpt_path", args.ckpt_path]
    # resolve_mlflow_arguments reads the store from the logger's option; it is given, then dropped again.
    resolved = resolve_mlflow_arguments([*cli_args, TRACKING_URI_OPTION, tracking_uri])[: len(cli_args)]
    ckpt_path = resolved[-1]
    checkpoint = _load_checkpoint(ckpt_path, args.ckpt_path)

    from marl_lightning.cli import MarlCLI

    configs = [_without_subcommand_keys(path) for path in resolved[1:-2:2]]  # ["--config", path, ...]
    config_args = [a for config in configs for a in ("--config", config)]
    argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when sys.argv holds arguments besides args
    try:
        cli = MarlCLI(args=[*config_args, *overrides, "--trainer.logger", "false"], run=False)
    finally:
        sys.argv = argv
    module, factory = cli.model, cli.datamodule.env_factory
    _load_weights(module, checkpoint, args)
    module.eval()

    recording = record_episodes(module.policy, factory, args.episodes, args.seed, "cpu", args.size)
    write_video(recording.video_frames(), output, args.fps)
    lengths = ", ".join(str(n) for n in recording.lengths.tolist())
    print(
        f"{factory.name}: {args.episodes} deterministic episode(s) of {lengths} steps "
        f"({int(module.frames)} training frames): mean episode return {recording.mean_return:.3f} (per agent)"
    )
    print(f"wrote {output} ({len(recording.video_frames())} frames at {args.fps:g} fps)")
    if not args.no_log:
        _log_video(output, _run_of(args.ckpt_path, checkpoint), tracking_uri)
    return 0


def _check_arguments(args: argparse.Namespace, overrides: list[str]) -> None:
    for name, value in (("--episodes", args.episodes), ("--fps", args.fps), ("--size", args.size)):
        if value is not None and value <= 0:
            raise ConfigError(f"render: {name} must be > 0, got {value:g}. Use e.g. {name} 1.")
    stray = [arg for arg in overrides if arg.startswith("-") and not arg.startswith("--")]
    if stray:
        raise ConfigError(
            f"render: unknown option {stray[0]}. Run `python -m marl_lightning render --help` for the "
            "options; settings of the configs are given as --section.field value."
        )


def _without_subcommand_keys(path: str) -> str:
    """The config file, or a copy without :data:`SUBCOMMAND_KEYS` if it has them (a run's config.yaml)."""
    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return path  # the CLI reports a missing or malformed config file
    if not isinstance(config, dict) or not any(key in config for key in SUBCOMMAND_KEYS):
        return path
    copy = Path(tempfile.mkdtemp(prefix="marl_lightning-render-")) / Path(path).name
    copy.write_text(yaml.safe_dump({k: v for k, v in config.items() if k not in SUBCOMMAND_KEYS}))
    return str(copy)


def _load_checkpoint(path: str, given: str) -> dict:
    shown = given if given == path else f"{given} (downloaded to {path})"
    if not os.path.isfile(path):
        raise ConfigError(
            f"render: --ckpt_path {shown} is not a file. Give a checkpoint written by a fit (e.g. "
            "checkpoints/<algorithm>-<task>/last.ckpt) or runs:/<run_id>/<path> of one logged to MLflow."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a file that is not a checkpoint
        raise ConfigError(
            f"render: --ckpt_path {shown} is not a readable checkpoint ({type(error).__name__}). Give a "
            ".ckpt file written by a fit."
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(
            f"render: --ckpt_path {shown} holds no 'state_dict'; it is not a Lightning checkpoint. Give a "
            ".ckpt file written by a fit."
        )
    return checkpoint


def _load_weights(module: torch.nn.Module, checkpoint: dict, args: argparse.Namespace) -> None:
    given = checkpoint["state_dict"]
    expected = module.state_dict()
    differences = _state_differences(expected, given)
    if differences:
        raise ConfigError(
            f"render: the checkpoint {args.ckpt_path} does not fit the model the configs "
            f"{' + '.join(args.config)} build ({type(module).__name__}: {'; '.join(differences)}). Give the "
            "configs and settings the checkpoint was trained with, e.g. --config runs:/<run_id>/config.yaml "
            "(the run's resolved config)."
        )
    module.load_state_dict(given)


def _state_differences(expected: dict, given: dict) -> list[str]:
    """What differs between the model's state dict and the checkpoint's, one example of each kind."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    reshaped = sorted(k for k in set(expected) & set(given)
                      if getattr(expected[k], "shape", None) != getattr(given[k], "shape", None))
    differences = []
    if missing:
        differences.append(f"{len(missing)} entries missing from the checkpoint, e.g. {missing[0]}")
    if unexpected:
        differences.append(f"{len(unexpected)} entries the model lacks, e.g. {unexpected[0]}")
    if reshaped:
        k = reshaped[0]
        differences.append(f"{len(reshaped)} of other shapes, e.g. {k}: {list(given[k].shape)} in the "
                           f"checkpoint, {list(expected[k].shape)} in the model")
    return differences


def _run_of(given_ckpt_path: str, checkpoint: dict) -> str | None:
    """The MLflow run the checkpoint belongs to: the run of a runs:/ path, else the one recorded in it."""
    if given_ckpt_path.startswith(RUNS_SCHEME):
        return given_ckpt_path[len(RUNS_SCHEME):].split("/", 1)[0]
    return checkpoint.get(MLFLOW_RUN_KEY)


def _log_video(path: Path, run_id: str | None, tracking_uri: str) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if run_id is None:
        print("not logged to MLflow: the checkpoint records no MLflow run (--no-log silences this)")
        return
    client = MlflowClient(tracking_uri)
    try:
        client.get_run(run_id)
    except MlflowException:
        print(f"not logged to MLflow: run {run_id} is not in the store {tracking_uri} (give --tracking-uri)")
        return
    client.log_artifact(run_id, str(path), VIDEO_ARTIFACT_DIR)
    print(f"logged {VIDEO_ARTIFACT_DIR}/{path.name} to MLflow run {run_id} ({tracking_uri})")
