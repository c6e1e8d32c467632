"""The GPU path (skipped without CUDA; ``benchmarks/gpu_check.sh`` runs these on a GPU machine).

A fit with ``--trainer.accelerator gpu`` keeps the networks, the collector and the env on the GPU, and
crosses to the host once per iteration, not per env step or per minibatch: PyTorch's sync debug mode
counts every host synchronisation, and the counts must not grow with the steps or the minibatches.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from lightning.pytorch import Callback

from marl_lightning.cli import MarlCLI
from tests.conftest import CONF

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
TASKS = ["navigation.yaml", "stochastic_game.yaml", "ratio_game.yaml"]


class _Devices(Callback):
    """Where the module, the collector's env and policy, and the collected batch are, each iteration."""

    def __init__(self) -> None:
        self.seen: list[set[str]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        collector = trainer.datamodule.collector
        params = {p.device.type for p in pl_module.parameters()}
        self.seen.append({*params, collector.env.device.type, str(pl_module.device.type)})


def _fit(task: str, *extra: str, callbacks: list | None = None) -> MarlCLI:
    args = [
        "--config", str(CONF / "mappo.yaml"), "--config", str(CONF / "env" / task),
        "--trainer.accelerator", "gpu", "--trainer.devices", "1",
        "--data.num_envs", "8", "--data.eval_episodes", "2",
        "--model.init_args.actor_cells", "[32]", "--model.init_args.critic_cells", "[32]",
        "--trainer.logger", "false", "--trainer.callbacks", "null", "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.enable_checkpointing", "false", *extra,
    ]
    cli = MarlCLI(args=args, run=False)
    cli.trainer.callbacks.extend(callbacks or [])
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return cli


def _steps(task: str) -> int:
    """The task's episode length: one iteration is a whole number of episodes."""
    import yaml

    text = yaml.safe_load((CONF / "env" / task).read_text())
    init = text["data"]["env"].get("init_args", {})
    return int(init.get("max_steps") or init.get("horizon") or 1)


@pytest.mark.parametrize("task", TASKS)
def test_a_gpu_fit_keeps_the_networks_the_collector_and_the_env_on_the_gpu(task):
    steps = _steps(task)
    devices = _Devices()
    cli = _fit(task, "--data.frames_per_batch", str(8 * steps), "--model.init_args.minibatch_size",
               str(4 * steps), "--model.total_frames", str(16 * steps), callbacks=[devices])
    assert devices.seen == [{"cuda"}, {"cuda"}]
    assert int(cli.model.frames) == 16 * steps


_WARM: set[str] = set()


def _syncs(task: str, *extra: str) -> int:
    """Host synchronisations of a 2-iteration GPU fit (after one warm-up fit per task: CUDA's first calls)."""
    if task not in _WARM:
        _fit(task, *extra)
        _WARM.add(task)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            _fit(task, *extra)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.parametrize("task", ["navigation.yaml", "stochastic_game.yaml"])
def test_host_syncs_do_not_grow_with_the_minibatches(task):
    steps = _steps(task)
    common = ("--data.frames_per_batch", str(8 * steps), "--model.total_frames", str(16 * steps),
              "--model.init_args.num_epochs", "2")
    few = _syncs(task, *common, "--model.init_args.minibatch_size", str(4 * steps))  # 2 minibatches
    many = _syncs(task, *common, "--model.init_args.minibatch_size", str(steps))  # 8 minibatches
    print(f"{task}: host syncs {few} with 4 optimiser steps an iteration, {many} with 16")
    assert many == few


@pytest.mark.parametrize("task", ["navigation.yaml", "stochastic_game.yaml"])
def test_host_syncs_per_env_step(task):
    # One iteration of T steps against one of 2T (the same minibatches an iteration): what grows is per step.
    steps = _steps(task)
    short = _syncs(task, "--data.frames_per_batch", str(8 * steps), "--model.total_frames", str(16 * steps),
                   "--model.init_args.minibatch_size", str(4 * steps))
    long = _syncs(task, "--data.frames_per_batch", str(16 * steps), "--model.total_frames", str(32 * steps),
                  "--model.init_args.minibatch_size", str(8 * steps))
    per_step = (long - short) / (2 * steps)  # 2 iterations, T more steps each
    print(f"{task}: {per_step:.2f} host syncs per env step ({short} at T={steps}, {long} at T={2 * steps})")
    assert per_step == 0, (
        f"{per_step:.2f} host synchronisations per env step (the collector's done check is one)"
    )
