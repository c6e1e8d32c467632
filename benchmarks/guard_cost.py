"""What the NaN/Inf guard (marl_lightning/safety/health.py, envs/finite.py) costs an iteration (one process).

At the default MAPPO settings (VMAS navigation, 60 envs x 100 steps, 10 epochs of minibatches of 400,
256x256 networks, CPU) it times, interleaved, ``--repeats`` times each:

- collection of one iteration's 100 env steps with and without the per-step observation flag
  (``FlagNonFiniteObservation``), the same random actions;
- the data check of a collected batch (``nonfinite_data``);
- the update check of an iteration's 150 minibatches in ``stop`` mode (``UpdateGuard.first_problem``);
- the iteration itself (collection and update: two real fit iterations, the second timed).

Prints each figure and the guard's share of an iteration. Usage: python benchmarks/guard_cost.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from lightning.pytorch.callbacks import LambdaCallback
from torchrl.envs import RewardSum, TransformedEnv

from marl_lightning.cli import MarlCLI
from marl_lightning.core import keys
from marl_lightning.safety.health import UpdateGuard, nonfinite_data

ARGS = ["--config", "conf/mappo.yaml", "--trainer.logger", "false", "--trainer.callbacks", "null",
        "--trainer.enable_checkpointing", "false", "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--model.total_frames", "12000"]


def _steps(env, actions: list[torch.Tensor]) -> float:
    td = env.reset()
    start = time.perf_counter()
    for action in actions:
        td.set(keys.ACTION, action)
        td = env.step_and_maybe_reset(td)[1]
    return time.perf_counter() - start


class _IterationTimer:
    """Seconds of each training iteration (batch start to batch end), collection and update included."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def start(self, *args) -> None:
        self._t = time.perf_counter()

    def end(self, *args) -> None:
        self.seconds.append(time.perf_counter() - self._t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)

    cli = MarlCLI(args=ARGS, run=False)
    model, datamodule = cli.model, cli.datamodule
    timer = _IterationTimer()
    timing = LambdaCallback(on_train_batch_start=timer.start, on_train_batch_end=timer.end)
    cli.trainer.callbacks.append(timing)
    cli.trainer.fit(model, datamodule=datamodule)
    iteration_s = timer.seconds[-1]  # the first includes building the collector

    factory, steps = datamodule.env_factory, datamodule.steps_per_env
    flagged = factory.make_transformed(datamodule.num_envs, "cpu", 0)
    plain = TransformedEnv(factory.make(datamodule.num_envs, "cpu", 0),
                           RewardSum(in_keys=[keys.REWARD], out_keys=[keys.EPISODE_REWARD]))
    spec = flagged.full_action_spec[keys.ACTION]
    actions = [spec.rand() for _ in range(steps)]

    collector = datamodule.make_collector()
    batch = next(iter(collector))
    collector.shutdown()
    model.compute_advantages(batch)
    flat = model.training_batch(batch)
    outs = []
    with torch.no_grad():
        for _ in range(model.hparams.num_epochs):
            for index in torch.randperm(flat.shape[0]).split(model.hparams.minibatch_size):
                outs.append(model.loss_module(flat[index]))

    with_flag, without_flag, data_check, update_check = [], [], [], []
    for _ in range(args.repeats):
        with_flag.append(_steps(flagged, actions))
        without_flag.append(_steps(plain, actions))
        start = time.perf_counter()
        assert nonfinite_data(batch) is None
        data_check.append(time.perf_counter() - start)
        guard = UpdateGuard(skip=False)
        for out in outs:
            guard.permits_step(out, out["loss_objective"], 0, None, torch.tensor(1.0))
        start = time.perf_counter()
        assert guard.first_problem() is None
        update_check.append(time.perf_counter() - start)

    flag_s = statistics.median(with_flag) - statistics.median(without_flag)
    data_s, update_s = statistics.median(data_check), statistics.median(update_check)
    total = flag_s + data_s + update_s
    print(f"iteration (collect + update, 6,000 frames): {iteration_s * 1e3:.0f} ms")
    print(f"collection of {steps} steps: with the flag {statistics.median(with_flag) * 1e3:.1f} ms, "
          f"without {statistics.median(without_flag) * 1e3:.1f} ms -> flag {flag_s * 1e3:+.2f} ms")
    print(f"data check of the batch: {data_s * 1e3:.2f} ms")
    print(f"update check of {len(outs)} minibatches (stop mode): {update_s * 1e3:.2f} ms")
    print(f"guard per iteration: {total * 1e3:.2f} ms = {100 * total / iteration_s:.2f}% of an iteration")


if __name__ == "__main__":
    main()
