"""LightningCLI wiring: argument links, run naming and the resolved config as an MLflow artifact."""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger
from typing_extensions import override

from marl_lightning.algorithms.validation import check_minibatching
from marl_lightning.data import RolloutDataModule
from marl_lightning.distributed import RolloutDDPStrategy
from marl_lightning.loggers import MLFLOW_RUN_KEY
from marl_lightning.loggers import MLFlowLogger as ContinuableMLFlowLogger

_MLFLOW_DEFAULT_EXPERIMENT = "lightning_logs"  # MLFlowLogger's experiment_name when none is given

# Loop settings the design relies on (one epoch is the whole frame budget; logs at every iteration).
TRAINER_DEFAULTS: dict[str, Any] = {
    "max_epochs": -1,
    "num_sanity_val_steps": 0,
    "check_val_every_n_epoch": None,
    "val_check_interval": 10,
    "log_every_n_steps": 1,
}


class MlflowConfigArtifact(SaveConfigCallback):
    """Stores the resolved config as ``config.yaml`` in each MLflow run (and nowhere else)."""

    @override
    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        text = self.parser.dump(self.config, skip_none=False)
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger):
                logger.experiment.log_text(logger.run_id, text, self.config_filename)


class MarlArgumentParser(LightningArgumentParser):
    """Reports a bad argument in one paragraph instead of the whole usage text."""

    @override
    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        sys.stderr.write(
            f"marl_lightning: error: {message.strip()}\n"
            f"Run `{self.prog.replace(' [options]', '')} --help` to list every setting.\n"
        )
        sys.exit(2)


class MarlCLI(LightningCLI):
    """``python -m marl_lightning {fit,validate,test} --config conf/<algo>.yaml``."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        super().__init__(
            model_class=LightningModule,  # every algorithm module; all take env_spec
            subclass_mode_model=True,
            datamodule_class=RolloutDataModule,
            parser_class=MarlArgumentParser,
            save_config_callback=MlflowConfigArtifact,
            save_config_kwargs={"save_to_log_dir": False},
            trainer_defaults=TRAINER_DEFAULTS,
            auto_configure_optimizers=False,
            args=args,
            run=run,
        )

    @override
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments(
            "data", "model.init_args.env_spec", compute_fn=_env_spec_of, apply_on="instantiate"
        )

    @override
    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        # Cross-field checks run before anything (the MLflow store included) is created.
        minibatch_size = config.model.init_args.get("minibatch_size")
        frames_per_batch = config.data.get("frames_per_batch")
        if minibatch_size and frames_per_batch and minibatch_size > 0 and frames_per_batch > 0:
            check_minibatching(minibatch_size, frames_per_batch)
        if config.trainer.get("strategy") == "ddp":
            # DistributedDataParallel would synchronise one gradient of the many in an on-policy update.
            config.trainer.strategy = RolloutDDPStrategy.strategy_name

    @override
    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        # Names that depend on the instantiated task are filled in before any MLflow run or checkpoint
        # folder exists (MLflow creates its run lazily, at the first log).
        label = f"{self.model.algorithm_label}-{self.datamodule.env_factory.name}"
        seed = self.config[self.subcommand].get("seed_everything") if self.subcommand else None
        for logger in self.trainer.loggers:
            if isinstance(logger, MLFlowLogger) and logger._run_id is None:
                if logger._experiment_name == _MLFLOW_DEFAULT_EXPERIMENT:
                    logger._experiment_name = label
                if logger._run_name is None:
                    logger._run_name = f"{label}-seed{seed}"
        for callback in self.trainer.callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                callback.dirpath = os.path.join("checkpoints", label)

    def before_fit(self) -> None:
        """A fit resumed from a checkpoint goes on logging into the MLflow run recorded in it."""
        ckpt_path = self.config[self.subcommand].get("ckpt_path") if self.subcommand else None
        path = _resolve_checkpoint(ckpt_path, self.trainer)
        if path is None:
            return
        try:
            run_id = torch.load(path, map_location="cpu", weights_only=True).get(MLFLOW_RUN_KEY)
        except Exception:  # an unreadable checkpoint is reported by Lightning when the fit loads it
            return
        if run_id is None:
            return
        for logger in self.trainer.loggers:
            if isinstance(logger, ContinuableMLFlowLogger) and logger._run_id is None:
                logger.continue_run(run_id)


def _resolve_checkpoint(ckpt_path: str | None, trainer: Trainer) -> str | None:
    """The file ``fit --ckpt_path`` will load: a path, or for ``last`` the newest last checkpoint that
    Lightning finds in the checkpoint callbacks' folders; None if there is none."""
    if not ckpt_path or ckpt_path in ("best", "hpc", "registry"):
        return None
    if ckpt_path != "last":
        return ckpt_path if os.path.isfile(ckpt_path) else None
    candidates: set[str] = set()
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath is not None:
            candidates |= callback._find_last_checkpoints(trainer)
    return max(candidates, key=os.path.getmtime, default=None)


def _env_spec_of(datamodule: RolloutDataModule):
    return datamodule.env_spec
