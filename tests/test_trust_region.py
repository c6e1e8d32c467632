"""Trust-region quantities of paper 004: D_TV, the joint ratio, JR-PPO's loss, agent-scaled clipping,
and the TrustRegionMonitor's metrics and figures."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict

from marl_lightning import JRPPO, MAPPO
from marl_lightning.cli import MarlCLI
from marl_lightning.core import keys
from marl_lightning.models import build_actor, build_critic
from marl_lightning.objectives.divergences import total_variation
from marl_lightning.objectives.jrppo import JointRatioPPOLoss, joint_log_ratio
from tests.conftest import cli_args, make_spec, synthetic_batch


def test_total_variation_matches_a_hand_computation_on_three_actions():
    p_old = torch.tensor([0.5, 0.3, 0.2])
    p_new = torch.tensor([0.4, 0.4, 0.2])
    # Proposition 5.1: the mass moved up, Σ_{p_new ≥ p_old} (p_new − p_old) = 0.1 (+ 0 for the third)
    old = TensorDict({keys.LOGITS: p_old.log().expand(2, 1, 3)}, [2, 1])
    new = TensorDict({keys.LOGITS: p_new.log().expand(2, 1, 3)}, [2, 1])
    tv = total_variation(old, new, log_ratio=torch.zeros(2, 1))
    torch.testing.assert_close(tv, torch.full((2, 1), 0.1))


def test_continuous_total_variation_estimate_is_unbiased():
    torch.manual_seed(0)
    old, new = torch.distributions.Normal(0.0, 1.0), torch.distributions.Normal(0.5, 1.0)
    a = old.sample((400_000,))
    log_ratio = (new.log_prob(a) - old.log_prob(a)).reshape(-1, 1)
    empty = TensorDict({}, [a.shape[0], 1])
    estimate = total_variation(empty, empty, log_ratio).mean()
    exact = math.erf(0.25 / math.sqrt(2))  # 2Φ(0.25) − 1 for two unit Gaussians 0.5 apart
    assert abs(float(estimate) - exact) < 3e-3


def test_joint_log_ratio_is_the_sum_of_the_agents():
    log_ratio = torch.randn(7, 4)
    torch.testing.assert_close(joint_log_ratio(log_ratio), log_ratio.sum(-1))
    torch.testing.assert_close(joint_log_ratio(log_ratio).exp(), log_ratio.exp().prod(-1))


def test_jrppo_loss_is_equation_7():
    torch.manual_seed(0)
    spec = make_spec(n_agents=3, continuous=False)
    actor = build_actor(spec, [16], share_params=False)
    critic = build_critic(spec, [16], share_params=True, centralised=True)
    batch = synthetic_batch(spec, batch=64)
    with torch.no_grad():
        actor(batch)
    batch[keys.ACTION_LOG_PROB] = batch[keys.ACTION_LOG_PROB] + 0.2 * torch.randn(64, 3)
    out = JointRatioPPOLoss(actor, critic, clip_epsilon=0.2)(batch)
    dist = actor.get_dist(batch.clone())
    joint = (dist.log_prob(batch[keys.ACTION]) - batch[keys.ACTION_LOG_PROB]).sum(-1).exp()  # [64]
    advantage = batch[keys.ADVANTAGE].squeeze(-1).mean(-1)  # centralised advantage [64]
    expected = -torch.minimum(joint * advantage, joint.clamp(0.8, 1.2) * advantage).mean()
    torch.testing.assert_close(out["loss_objective"], expected)
    assert 0 < float(out["clip_fraction"][0]) < 1


@pytest.mark.parametrize(("n_agents", "budget"), [(2, 0.4), (4, 0.4), (8, 0.8)])
def test_agent_scaled_clip_is_budget_over_n(n_agents, budget):
    for algorithm in (MAPPO, JRPPO):
        module = algorithm(env_spec=make_spec(n_agents=n_agents), clip_budget=budget, clip_epsilon=0.3)
        assert module.clip_epsilon == pytest.approx(budget / n_agents)
        assert float(module.loss_module.clip_epsilon) == pytest.approx(budget / n_agents)
    assert MAPPO(env_spec=make_spec(n_agents=n_agents), clip_epsilon=0.3).clip_epsilon == pytest.approx(0.3)


@pytest.mark.simulator
def test_monitor_logs_trust_region_metrics_and_figures_to_mlflow(in_tmp):
    from mlflow.tracking import MlflowClient

    cli = MarlCLI(args=cli_args("fit", "--model.total_frames", "600", "--trainer.callbacks.init_args.dirpath",
                                str(in_tmp / "ckpt")))
    assert cli.model.trust_region_stats
    client = MlflowClient("sqlite:///mlflow.db")
    run = client.search_runs([e.experiment_id for e in client.search_experiments()])[0]
    metrics = run.data.metrics
    tv = [metrics[f"tr/tv/agent_{i}"] for i in range(3)]
    assert all(0 < value < 1 for value in tv)
    assert metrics["tr/tv_sum"] == pytest.approx(sum(tv), rel=1e-5)
    assert metrics["tr/joint_ratio_min"] <= 1 <= metrics["tr/joint_ratio_max"]
    for k in range(2):  # two optimisation epochs in the small runs
        assert metrics[f"tr/ratio_min/epoch_{k}"] <= 1 <= metrics[f"tr/ratio_max/epoch_{k}"]
    assert len(client.get_metric_history(run.info.run_id, "tr/tv_sum")) == 3  # one per iteration
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "trust_region")}
    assert artifacts == {"trust_region/ratio_range.png", "trust_region/tv_cdf.png"}
    local = client.download_artifacts(run.info.run_id, "trust_region/tv_cdf.png", str(in_tmp))
    with open(local, "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"
