"""Pessimistic off-policy multi-agent PPO on tabular games (paper 002, Section 5, Algorithm 2)."""

from __future__ import annotations

import pytest
import torch

from marl_lightning.cli import MarlCLI
from marl_lightning.core.errors import ConfigError
from marl_lightning.envs import StochasticGameTask
from marl_lightning.envs.ratio_game import RatioGameTask, ratio_game_value
from marl_lightning.exact import tabular
from tests.conftest import CONF

TINY = {"n_states": 2, "n_agents": 2, "n_actions": 2, "horizon": 3, "n_successors": 2}


def _random_thetas(game: tabular.TabularGame, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = game.n_actions
    shapes = [(game.n_states, n**m, n) for m in range(game.n_agents)]
    return [torch.randn(*shape, generator=g, dtype=torch.float64) for shape in shapes]


def _estimate_and_truth(game, thetas, m, f):
    prefix = tabular.prefix_probs(thetas, m)
    weight = game.initial.unsqueeze(-1) * prefix
    return float((weight * f).sum()), float((weight * tabular.prefix_q(game, thetas, m)).sum())


def test_exact_values_match_the_ratio_game_formula():
    game = RatioGameTask().tabular_model()
    thetas = [torch.tensor([[[0.3, -0.2]]], dtype=torch.float64), torch.zeros(1, 2, 2, dtype=torch.float64)]
    thetas[1][0, :, 0] = 0.7  # agent 2 ignores agent 1's action: independent policies
    pi1, pi2 = torch.softmax(thetas[0][0, 0], -1), torch.softmax(thetas[1][0, 0], -1)
    assert tabular.joint_value(game, thetas) == pytest.approx(float(ratio_game_value(pi1, pi2)))


@pytest.mark.parametrize("which", ["ratio_game", "stochastic_game"])
@pytest.mark.parametrize("lam", [0.3, 3.0, 30.0])
def test_pessimistic_evaluation_is_below_the_true_value(which, lam):
    task = RatioGameTask() if which == "ratio_game" else StochasticGameTask(**TINY)
    game = task.tabular_model()
    for seed in range(3):
        thetas = _random_thetas(game, seed)
        for m in range(1, game.n_agents + 1):
            data = tabular.sample_oracle(game, thetas, m, 20_000, torch.Generator().manual_seed(seed))
            f = tabular.pessimistic_evaluation(game, thetas, m, data, lam)
            estimate, truth = _estimate_and_truth(game, thetas, m, f)
            assert estimate <= truth, (seed, m)
            # the minimiser's guarantee, whatever the sample: f(s0) + λE(f) <= Q(s0) + λE(Q) (+ the ridge)
            q = tabular.prefix_q(game, thetas, m)
            lhs = estimate + lam * tabular.bellman_error(game, thetas, m, data, f)
            rhs = truth + lam * tabular.bellman_error(game, thetas, m, data, q) + 1e-6 * float((q**2).sum())
            assert lhs <= rhs + 1e-9


def test_more_weight_on_the_bellman_error_is_less_pessimistic():
    game = StochasticGameTask(**TINY).tabular_model()
    thetas = _random_thetas(game, 0)
    data = tabular.sample_oracle(game, thetas, 2, 50_000, torch.Generator().manual_seed(0))
    gaps = []
    for lam in (0.3, 3.0, 30.0, 300.0):
        f = tabular.pessimistic_evaluation(game, thetas, 2, data, lam)
        estimate, truth = _estimate_and_truth(game, thetas, 2, f)
        gaps.append(truth - estimate)
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 0.05


@pytest.mark.simulator
def test_algorithm_2_reaches_the_ratio_game_optimum_from_the_cli(in_tmp):
    cli = MarlCLI(args=[
        "fit", "--config", str(CONF / "seqppo_pessimistic.yaml"), "--model.total_frames", "40000",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks.init_args.dirpath", str(in_tmp / "ckpt"),
    ])
    metrics = cli.trainer.callback_metrics
    assert int(cli.model.iterations) == 10
    assert float(metrics["eval/ratio_game_value"]) > 0.95  # from 5/11 under uniform policies
    assert float(metrics["pess/pessimism/agent_0"]) < 0 and float(metrics["pess/pessimism/agent_1"]) < 0
    state = torch.load(in_tmp / "ckpt" / "last.ckpt", weights_only=True)["state_dict"]
    torch.testing.assert_close(state["theta_1"], cli.model.theta_1)


def test_it_refuses_non_tabular_and_large_games(in_tmp):
    with pytest.raises(ConfigError, match="no tabular model|has none"):
        MarlCLI(args=["fit", "--config", str(CONF / "seqppo_pessimistic.yaml"), "--config",
                      str(CONF / "env" / "navigation.yaml"), "--trainer.logger", "false"])
    with pytest.raises(ConfigError, match="cells"):
        StochasticGameTask().tabular_model()


def _algorithm_2_by_hand(game, shapes, evaluate_under: str, seed: int) -> list[torch.Tensor]:
    """One iteration of Algorithm 2 from uniform tables, η = 1, λ = 10, 100 oracle queries per agent."""
    generator = torch.Generator().manual_seed(seed)
    start = [torch.zeros(shape, dtype=torch.float64) for shape in shapes]
    thetas = [theta.clone() for theta in start]
    for m in (1, 2):
        evaluated = start if evaluate_under == "start" else thetas
        data = tabular.sample_oracle(game, evaluated, m, 100, generator)
        f = tabular.pessimistic_evaluation(game, evaluated, m, data, 10.0)
        thetas[m - 1] = tabular.improve(start[m - 1], f, 1.0)
    return thetas


@pytest.mark.parametrize("evaluate_under", ["start", "updated"])
def test_each_agent_is_evaluated_under_the_policies_the_option_names(evaluate_under, in_tmp):
    """``start`` (the paper's line 4) evaluates agent 2 with agent 1 still at θ_k, ``updated`` at θ_{k+1}."""
    from marl_lightning.data.seeding import derived_seed

    task_args = [f"--data.env.init_args.{k}={v}" for k, v in TINY.items()]
    cli = MarlCLI(args=[
        "fit", "--config", str(CONF / "seqppo_pessimistic.yaml"), "--data.env",
        "marl_lightning.envs.StochasticGameTask", *task_args, "--model.total_frames", "200",
        "--model.init_args.n_samples", "100", "--model.init_args.evaluate_under", evaluate_under,
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks.init_args.dirpath", str(in_tmp / "ckpt"),
    ])
    assert int(cli.model.iterations) == 1
    game = StochasticGameTask(**TINY).tabular_model()
    shapes = [theta.shape for theta in cli.model.thetas]
    seed = derived_seed(0, 0, 0)  # seed_everything 0, rank 0, iteration 0
    expected = _algorithm_2_by_hand(game, shapes, evaluate_under, seed)
    other = _algorithm_2_by_hand(game, shapes, "updated" if evaluate_under == "start" else "start", seed)
    for ours, theta in zip(cli.model.thetas, expected, strict=True):
        torch.testing.assert_close(ours, theta)
    assert not torch.allclose(expected[1], other[1])  # the two options differ, in agent 2's table
