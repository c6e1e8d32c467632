"""NaN and Inf from the env, in a loss or in the gradients: named and stopped on, or skipped and counted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from marl_lightning.cli import MarlCLI
from marl_lightning.core.errors import NonFiniteError
from tests.conftest import CONF

pytestmark = pytest.mark.simulator
STEPS = 20  # steps per iteration: 10 envs x 20 steps, episodes of 20 steps

# The poisoned stochastic game (tests/nonfinite_env.py) at small sizes; 5 iterations of 200 frames.
ARGS = [
    "--config", str(CONF / "mappo.yaml"),
    "--data.env", "tests.nonfinite_env.PoisonedStochasticGame",
    "--data.num_envs", "10", "--data.frames_per_batch", str(10 * STEPS), "--data.eval_episodes", "2",
    "--model.init_args.minibatch_size", "100", "--model.init_args.num_epochs", "2",
    "--model.init_args.actor_cells", "[16]", "--model.init_args.critic_cells", "[16]",
    "--model.init_args.share_actor_params", "false", "--model.total_frames", str(5 * 10 * STEPS),
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
]


def _checkpoint(folder: Path) -> dict:
    (path,) = folder.rglob("last.ckpt")
    return torch.load(path, map_location="cpu", weights_only=True)


def _all_finite(state_dict: dict) -> bool:
    return all(bool(v.isfinite().all()) for v in state_dict.values() if v.is_floating_point())


def _fit(tmp: Path, *extra: str, hook=None) -> MarlCLI:
    """A fit in this process, without MLflow; ``hook(model)`` is called before it starts."""
    args = [*ARGS, "--trainer.logger", "false",
            "--trainer.callbacks.init_args.dirpath", str(tmp / "ckpt"), *extra]
    cli = MarlCLI(args=args, run=False)
    if hook is not None:
        hook(cli.model)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return cli


def test_a_nan_reward_stops_the_run_naming_iteration_key_agent_and_keeps_the_last_good_checkpoint(in_tmp):
    from mlflow.tracking import MlflowClient

    # Step 49 is iteration 3 (49 // 20 + 1), its step 9.
    proc = subprocess.run(
        [sys.executable, "-m", "marl_lightning", "fit", *ARGS, "--data.env.init_args.at_step", "49"],
        capture_output=True, text=True, cwd=in_tmp, timeout=600,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("marl_lightning: error:")]
    for words in ("iteration 3", "reward ('next', 'agents', 'reward')", "agent 1", "env 2, step 9",
                  "last good checkpoint", "--model.init_args.on_nonfinite skip"):
        assert words in line, f"{words!r} missing from: {line}"
    checkpoint = _checkpoint(in_tmp / "checkpoints")
    assert int(checkpoint["state_dict"]["iterations"]) == 2  # never overwritten by the poisoned iteration
    assert _all_finite(checkpoint["state_dict"])
    client = MlflowClient(f"sqlite:///{in_tmp / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("mappo-stochastic_game").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["error"].startswith("Non-finite values from the env at iteration 3: the reward")
    assert run.data.metrics["train/iterations"] == 2


def test_a_nan_observation_is_named_before_the_policy_acts_on_it(in_tmp):
    # Without the flag, a NaN observation makes the discrete policy fail inside torch.multinomial.
    with pytest.raises(NonFiniteError) as error:
        _fit(in_tmp, "--data.env.init_args.poison", "observation", "--data.env.init_args.agent", "2",
             "--data.env.init_args.at_step", "25")
    message = str(error.value)
    assert "iteration 2" in message and "agent 2" in message
    assert "next observation ('next', 'agents', 'observation')" in message and "env 2, step 5" in message
    assert int(_checkpoint(in_tmp / "ckpt")["state_dict"]["iterations"]) == 1


def test_skip_drops_a_poisoned_iteration_counts_it_and_stops_after_max_in_a_row(in_tmp):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{in_tmp / 'mlflow.db'}"
    # Iteration 3 alone is poisoned (steps 40..59): skipped, counted, and the run finishes.
    args = [*ARGS, "--data.env.init_args.at_step", "40", "--data.env.init_args.until_step", "60",
            "--model.init_args.on_nonfinite", "skip", "--trainer.logger.init_args.tracking_uri", uri]
    cli = MarlCLI(args=args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert int(cli.model.frames) == 5 * 10 * STEPS
    assert _all_finite(cli.model.state_dict())
    client = MlflowClient(uri)
    history = client.get_metric_history(cli.trainer.logger.run_id, "health/skipped_iterations")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [0, 0, 1, 0, 0]
    assert client.get_run(cli.trainer.logger.run_id).info.status == "FINISHED"

    # Poisoned from iteration 3 on: the third skip in a row stops the run (iterations 3, 4, 5).
    with pytest.raises(NonFiniteError, match="3 iterations in a row skipped") as error:
        _fit(in_tmp, "--data.env.init_args.at_step", "40", "--model.init_args.on_nonfinite", "skip",
             "--model.init_args.max_skips_in_a_row", "3", "--model.total_frames", str(8 * 10 * STEPS))
    assert "the last, iteration 5" in str(error.value)


def _nan_actor_outputs(model, when) -> None:
    """A forward hook on the actor's first layer: NaN outputs in the update (grad enabled) when ``when()``."""
    layer = next(m for m in model.actor.modules() if isinstance(m, nn.Linear))

    def hook(module, inputs, output):
        return output * torch.nan if torch.is_grad_enabled() and when(model) else output

    layer.register_forward_hook(hook)


def test_a_loss_made_nonfinite_by_a_hook_stops_the_run_naming_the_term(in_tmp):
    with pytest.raises(NonFiniteError) as error:
        _fit(in_tmp, hook=lambda model: _nan_actor_outputs(model, lambda m: int(m.iterations) >= 1))
    message = str(error.value)
    assert "iteration 2" in message and "loss_objective" in message and "epoch 0, minibatch 0" in message
    assert "agents 0, 1, 2" in message
    checkpoint = _checkpoint(in_tmp / "ckpt")
    assert int(checkpoint["state_dict"]["iterations"]) == 1 and _all_finite(checkpoint["state_dict"])


def test_skip_drops_nonfinite_minibatches_and_stops_after_max_in_a_row(in_tmp):
    calls = {"n": 0}

    def second_minibatch_only(model) -> bool:  # the 2nd of the 4 forward passes with grad of iteration 2
        if int(model.iterations) != 1:
            return False
        calls["n"] += 1
        return calls["n"] == 2

    cli = _fit(in_tmp / "one", "--model.init_args.on_nonfinite", "skip",
               hook=lambda model: _nan_actor_outputs(model, second_minibatch_only))
    assert int(cli.model.frames) == 5 * 10 * STEPS and _all_finite(cli.model.state_dict())
    assert cli.model.health.in_a_row == {"iterations": 0, "minibatches": 0}
    adam = cli.trainer.optimizers[0]
    steps = {int(adam.state[p]["step"]) for p in cli.model.actor.parameters()}
    assert steps == {5 * 4 - 1}  # 5 iterations x 2 epochs x 2 minibatches, one skipped

    with pytest.raises(NonFiniteError, match="4 minibatches in a row skipped") as error:
        _fit(in_tmp / "always", "--model.init_args.on_nonfinite", "skip",
             "--model.init_args.max_skips_in_a_row", "4",
             hook=lambda model: _nan_actor_outputs(model, lambda m: int(m.iterations) >= 1))
    assert "iteration 2" in str(error.value)  # 4 minibatches an iteration (2 epochs x 2)
