"""LightningCLI wiring: default config files, argument links, cross-field checks, run naming, resume."""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn, Protocol, runtime_checkable

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from typing_extensions import override

from marl_lightning.algorithms.validation import check_budget, check_minibatching, check_strategy
from marl_lightning.core.errors import ConfigError, find_in_chain
from marl_lightning.core.paths import CONF
from marl_lightning.data import RolloutDataModule
from marl_lightning.envs.base import EnvSpec
from marl_lightning.launch.distributed import RolloutDDPStrategy
from marl_lightning.safety.argument_errors import one_paragraph
from marl_lightning.safety.checkpoint_checks import check_fits_config, load_checkpoint
from marl_lightning.tracking.loggers import MLFLOW_RUN_KEY
from marl_lightning.tracking.loggers import MLFlowLogger as ContinuableMLFlowLogger
from marl_lightning.tracking.run_tags import fit_tags
from marl_lightning.tracking.store import check_store_for_logging

# Read before any --config, for every subcommand: the trainer's settings (one place) and the default task.
DEFAULT_CONFIG_FILES = [str(CONF / "trainer.yaml"), str(CONF / "env" / "navigation.yaml")]


@runtime_checkable
class IterationCheckpointer(Protocol):
    """What the CLI needs of ``callbacks.IterationCheckpoint`` (callbacks import marl_lightning, not back)."""

    dirpath: str | None

    def last_path(self) -> str | None: ...


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
        sys.stderr.write(f"marl_lightning: error: {one_paragraph(message.strip())}\n{help_hint(self.prog)}\n")
        sys.exit(2)


def help_hint(prog: str) -> str:
    """The line after an argument error, naming what the user typed: ``python -m marl_lightning fit --help``
    (argparse's ``prog`` starts with the script's file name, ``__main__.py fit``)."""
    words = prog.replace("[options]", "").split()
    return f"Run `{' '.join(['python -m marl_lightning', *words[1:]])} --help` to list every setting."


class MarlCLI(LightningCLI):
    """``python -m marl_lightning {fit,validate,test} --config conf/<algo>.yaml``.

    ``conf/trainer.yaml`` and ``conf/env/navigation.yaml`` are default config files: an algorithm's YAML
    holds only what makes it that algorithm, and ``--print_config`` shows the whole resolved config.
    """

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        # Lightning gives top-level parser_kwargs to the main parser only; with subcommands (run=True) the
        # trainer, model and data arguments live on each subcommand's parser (a fresh dict each: Lightning
        # adds to it).
        defaults = {"default_config_files": DEFAULT_CONFIG_FILES}
        super().__init__(
            model_class=LightningModule,  # every algorithm module; all take env_spec
            subclass_mode_model=True,
            datamodule_class=RolloutDataModule,
            parser_class=MarlArgumentParser,
            parser_kwargs={name: dict(defaults) for name in self.subcommands()} if run else defaults,
            save_config_callback=MlflowConfigArtifact,
            save_config_kwargs={"save_to_log_dir": False},
            auto_configure_optimizers=False,
            args=args,
            run=run,
        )

    @override
    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        # A checkpoint file is checked against the config as the user gave it: LightningCLI puts the
        # checkpoint's hyperparameters over it next. (`last` is resolved and checked in before_fit.)
        config = self.config.get(self.config.get("subcommand") or "", None)
        path = config.get("ckpt_path") if config is not None else None
        if path is not None and path != "last":
            check_fits_config(path, load_checkpoint(path), config)

    @override
    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        try:
            return super().instantiate_trainer(**kwargs)
        except (MisconfigurationException, ValueError) as error:
            if find_in_chain(error, ConfigError) is not None:
                raise
            devices = f"{torch.cuda.device_count()} CUDA device(s)" if torch.cuda.is_available() else "no GPU"
            raise ConfigError(
                f"trainer: {str(error).strip()} (this machine has {devices}). Choose --trainer.accelerator, "
                "--trainer.devices and --trainer.strategy that it can run: e.g. --trainer.accelerator cpu "
                "--trainer.devices 1, or --trainer.strategy ddp for several processes."
            ) from error

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments(
            "data", "model.init_args.env_spec", compute_fn=_env_spec_of, apply_on="instantiate"
        )

    @override
    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        # Cross-field checks run before anything (the MLflow store included) is created.
        model_args = config.model.init_args
        frames_per_batch, num_envs = config.data.get("frames_per_batch"), config.data.get("num_envs")
        # (a frames_per_batch that is no multiple of num_envs is named by the data module)
        if frames_per_batch and frames_per_batch > 0 and num_envs and frames_per_batch % num_envs == 0:
            minibatch_size = model_args.get("minibatch_size")
            if minibatch_size and minibatch_size > 0:
                check_minibatching(minibatch_size, frames_per_batch)
            total_frames = model_args.get("total_frames")
            if total_frames and total_frames > 0:
                check_budget(total_frames, frames_per_batch)
        loggers = config.trainer.get("logger")
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            if str(getattr(logger, "class_path", "")).endswith("MLFlowLogger"):
                uri = (logger.get("init_args") or {}).get("tracking_uri")
                if uri:
                    check_store_for_logging(uri)  # before anything, the store included, is created
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
        experiment, run = label, f"{label}-seed{seed}"
        for logger in self.trainer.loggers:
            if isinstance(logger, ContinuableMLFlowLogger):
                logger.name_unnamed(experiment, run)
                experiment, run = logger.names()
                logger.add_tags(self._run_tags(seed))
        run_folder = default_checkpoint_dir(experiment, run)
        for callback in self.trainer.callbacks:
            if isinstance(callback, IterationCheckpointer):
                callback.dirpath = callback.dirpath or run_folder
                run_folder = callback.dirpath
        for logger in self.trainer.loggers:  # a server's spool lies beside the run's checkpoints
            if isinstance(logger, ContinuableMLFlowLogger) and logger.spool_dir is None:
                logger.spool_dir = run_folder

    def _run_tags(self, seed: int | None) -> dict[str, str]:
        strategy = self.trainer.strategy
        return fit_tags(
            stage=self.subcommand or "fit",
            algorithm=self.model.algorithm_label,
            task=self.datamodule.env_factory.name,
            n_agents=self.datamodule.env_spec.n_agents,
            seed=seed,
            reference_returns=self.datamodule.env_factory.reference_returns(),
            device=str(strategy.root_device),
            strategy=getattr(strategy, "strategy_name", type(strategy).__name__),
            world_size=self.trainer.world_size,
        )

    def before_fit(self) -> None:
        """``--ckpt_path last`` names this run's last checkpoint; a resumed fit goes on logging into the
        MLflow run recorded in it."""
        self._check_task()
        check_strategy(self.trainer, self.model)  # before the MLflow run exists, before launching
        kwargs = self.config_init[self.subcommand]
        resolved_last = kwargs.get("ckpt_path") == "last"  # (an explicit path was checked at parsing)
        if resolved_last:
            kwargs["ckpt_path"] = _last_checkpoint(self.trainer)
            if kwargs["ckpt_path"] is None:
                folders = ", ".join(str(cb.dirpath) for cb in self.trainer.callbacks
                                    if isinstance(cb, IterationCheckpointer))
                raise ConfigError(
                    f"--ckpt_path last: this run has no checkpoint yet (looked in {folders}; the folder is "
                    "named after the run's experiment and run name). Start without "
                    "--ckpt_path, or pass a checkpoint's path."
                )
        path = kwargs.get("ckpt_path")
        if path is None:
            return
        checkpoint = load_checkpoint(path)
        if resolved_last:
            check_fits_config("last", checkpoint, self.config[self.subcommand])
        run_id = checkpoint.get(MLFLOW_RUN_KEY)
        if run_id is None:
            return
        for logger in self.trainer.loggers:
            if isinstance(logger, ContinuableMLFlowLogger):
                logger.continue_run(run_id)

    def before_validate(self) -> None:
        self._check_task()

    def before_test(self) -> None:
        self._check_task()

    def _check_task(self) -> None:
        """An algorithm refuses a task it cannot train on before Lightning creates the MLflow run."""
        check_task = getattr(self.model, "check_task", None)
        if check_task is not None:
            check_task(self.datamodule.env_factory)


def default_checkpoint_dir(experiment: str, run: str | None) -> str:
    """Where a run's checkpoints go unless ``IterationCheckpoint.dirpath`` is set:
    ``checkpoints/<experiment>/<run>`` (``checkpoints/mappo-navigation/mappo-navigation-seed0``)."""
    return os.path.join("checkpoints", experiment, run or experiment)


def _last_checkpoint(trainer: Trainer) -> str | None:
    """The newest last checkpoint of the trainer's ``IterationCheckpoint`` callbacks; None (a fresh start,
    as Lightning does for ``last`` without one) if there is none."""
    paths = [cb.last_path() for cb in trainer.callbacks if isinstance(cb, IterationCheckpointer)]
    return max((p for p in paths if p is not None), key=os.path.getmtime, default=None)


def _env_spec_of(datamodule: RolloutDataModule) -> EnvSpec:
    return datamodule.env_spec
