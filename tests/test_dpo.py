"""DPO (paper 003): Equation 20's loss, Equation 21's β schedule, β in checkpoints; IPPO-KL and ablations."""

from __future__ import annotations

import pytest
import torch

from callbacks import AdaptiveBeta
from callbacks.adaptive_beta import adapt_beta
from marl_lightning import DPO
from marl_lightning.cli import MarlCLI
from marl_lightning.core import keys
from marl_lightning.core.errors import ConfigError
from marl_lightning.models import build_actor, build_critic
from marl_lightning.objectives.divergences import kl_divergence, policy_params
from marl_lightning.objectives.dpo import DPOLoss, safe_sqrt
from tests.conftest import cli_args, make_spec, synthetic_batch


def _dpo_loss(continuous: bool, **options):
    torch.manual_seed(0)
    spec = make_spec(n_agents=4, continuous=continuous)
    actor = build_actor(spec, [16], share_params=False)
    critic = build_critic(spec, [16], share_params=False, centralised=False)
    batch = synthetic_batch(spec, batch=64)  # [64, 4]
    with torch.no_grad():
        actor(batch)  # the collecting policy: actions, log-probs and its parameters
    return DPOLoss(actor, critic, n_agents=4, beta_init=0.01, **options), batch


@pytest.mark.parametrize("continuous", [False, True])
def test_loss_at_initialisation_is_minus_mean_advantage_over_n_with_finite_gradient(continuous):
    loss, batch = _dpo_loss(continuous)
    out = loss(batch)
    # ratio 1 and KL 0: (1/N) L^i is mean(A)/N, both penalties vanish
    torch.testing.assert_close(out["loss_objective"], -batch[keys.ADVANTAGE].mean() / 4, atol=1e-6, rtol=0)
    grads = torch.autograd.grad(out["loss_objective"], list(loss.actor_network.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("continuous", [False, True])
def test_loss_is_equation_20_away_from_the_old_policy(continuous):
    loss, batch = _dpo_loss(continuous)
    with torch.no_grad():  # move the current policy away from the collecting one
        for p in loss.actor_network.parameters():
            p.add_(0.05 * torch.randn_like(p))
    loss.beta1.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    loss.beta2.copy_(torch.tensor([1.0, 0.5, 0.25, 0.0]))
    out = loss(batch)
    td = batch.clone()
    dist = loss.actor_network.get_dist(td)
    ratio = (dist.log_prob(batch[keys.ACTION]) - batch[keys.ACTION_LOG_PROB]).exp()  # [64, 4]
    kl = kl_divergence(policy_params(batch), policy_params(td))  # [64, 4]
    advantage = batch[keys.ADVANTAGE].squeeze(-1)
    per_agent = -(ratio * advantage).mean(0) / 4 + loss.beta1 * kl.sqrt().mean(0) + loss.beta2 * kl.mean(0)
    torch.testing.assert_close(out["loss_objective"], per_agent.mean())


def test_sqrt_of_mean_kl_switch_and_ablations_zero_their_beta():
    loss, batch = _dpo_loss(False, sqrt_kl_per_state=False, use_kl=False)
    assert torch.equal(loss.beta2, torch.zeros(4)) and torch.equal(loss.beta1, torch.full((4,), 0.01))
    with torch.no_grad():
        for p in loss.actor_network.parameters():
            p.add_(0.05 * torch.randn_like(p))
    td = batch.clone()
    loss.actor_network.get_dist(td)
    kl = kl_divergence(policy_params(batch), policy_params(td))
    ratio_term = loss(batch)["loss_objective"] - 0.01 * kl.mean(0).sqrt().mean()
    no_penalty = DPOLoss(loss.actor_network, loss.critic_network, n_agents=4, use_sqrt_kl=False, use_kl=False)
    torch.testing.assert_close(ratio_term, no_penalty(batch)["loss_objective"])


def test_kl_is_exact():
    logits_old, logits = torch.randn(5, 3, 4), torch.randn(5, 3, 4)
    from tensordict import TensorDict

    old = TensorDict({keys.LOGITS: logits_old}, [5, 3])
    new = TensorDict({keys.LOGITS: logits}, [5, 3])
    expected = torch.distributions.kl_divergence(
        torch.distributions.Categorical(logits=logits_old), torch.distributions.Categorical(logits=logits)
    )
    torch.testing.assert_close(kl_divergence(old, new), expected)
    loc0, loc1 = torch.randn(5, 3, 2), torch.randn(5, 3, 2)
    scale0, scale1 = torch.rand(5, 3, 2) + 0.1, torch.rand(5, 3, 2) + 0.1
    old = TensorDict({keys.LOC: loc0, keys.SCALE: scale0}, [5, 3])
    new = TensorDict({keys.LOC: loc1, keys.SCALE: scale1}, [5, 3])
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(loc0, scale0), torch.distributions.Normal(loc1, scale1)
    ).sum(-1)
    torch.testing.assert_close(kl_divergence(old, new), expected)


def test_safe_sqrt_has_a_finite_gradient_at_zero():
    x = torch.tensor([0.0, 4.0], requires_grad=True)
    y = safe_sqrt(x)
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(y.detach(), torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(grad, torch.tensor([0.0, 0.25]))


def test_beta_moves_by_omega_in_the_right_direction_and_holds_inside_the_band():
    beta = torch.full((4,), 0.01)
    d, delta, omega = 0.01, 1.5, 2.0
    kl = torch.tensor([0.1, 0.001, 0.012, 0.0])  # above, below, inside the band, below
    out = adapt_beta(beta, kl, d, delta, omega, 1e-5, 1e3)
    torch.testing.assert_close(out, torch.tensor([0.02, 0.005, 0.01, 0.005]))
    # a KL that stays in [d/δ, d·δ] never moves β
    for kl_inside in (d / delta + 1e-6, d, d * delta - 1e-6):
        assert torch.equal(adapt_beta(beta, torch.full((4,), kl_inside), d, delta, omega, 1e-5, 1e3), beta)
    # clamped to the documented range; a switched-off β stays 0
    def adapted(beta: float, kl: float) -> float:
        return adapt_beta(torch.tensor([beta]), torch.tensor([kl]), d, delta, omega, 1e-5, 1e3).item()

    assert adapted(1e3, 1.0) == 1e3
    assert adapted(1e-5, 0.0) == pytest.approx(1e-5)
    assert adapted(0.0, 1.0) == 0.0


def test_callback_updates_the_module_buffers_from_the_iteration_kl():
    module = DPO(env_spec=make_spec(n_agents=3, continuous=False), d_target=0.1)
    callback = AdaptiveBeta()

    class _Sink:  # log_dict needs a trainer; capture instead
        logged: dict = {}

    module.log_dict = lambda metrics, **_: _Sink.logged.update(metrics)
    callback.on_train_batch_end(None, module, {"kl": torch.tensor([1.0, 0.1, 0.0])}, None, 0)
    torch.testing.assert_close(module.loss_module.beta1, torch.tensor([0.02, 0.01, 0.005]))
    torch.testing.assert_close(module.loss_module.beta2, torch.tensor([0.02, 0.01, 0.005]))
    assert _Sink.logged["beta1/agent_0"] == pytest.approx(0.02)


def test_dpo_without_the_callback_is_refused(in_tmp):
    args = cli_args("fit", "--trainer.callbacks", "[]", "--trainer.logger", "false", config="dpo.yaml")
    with pytest.raises(ConfigError, match="AdaptiveBeta"):
        MarlCLI(args=args)


@pytest.mark.simulator
def test_beta_survives_a_checkpoint_round_trip_and_resume(in_tmp):
    ckpt_dir = in_tmp / "ckpt"
    common = ["--trainer.logger", "false", "--trainer.callbacks.init_args.dirpath", str(ckpt_dir),
              "--model.init_args.d_target", "1e-9"]  # every KL is above target: β doubles each iteration
    cli = MarlCLI(args=cli_args("fit", "--model.total_frames", "400", *common, config="dpo.yaml"))
    beta = cli.model.loss_module.beta1.clone()
    torch.testing.assert_close(beta, torch.full((3,), 0.04))  # 0.01 · 2 · 2
    state = torch.load(ckpt_dir / "last.ckpt", weights_only=True)["state_dict"]
    torch.testing.assert_close(state["loss_module.beta1"], beta)
    torch.testing.assert_close(state["loss_module.beta2"], beta)
    resumed = MarlCLI(
        args=cli_args(
            "fit", "--model.total_frames", "600", "--ckpt_path", str(ckpt_dir / "last.ckpt"), *common,
            config="dpo.yaml",
        )
    )
    torch.testing.assert_close(resumed.model.loss_module.beta1, torch.full((3,), 0.08))


@pytest.mark.parametrize(
    ("config", "label", "beta1", "beta2"),
    [("dpo.yaml", "dpo", 0.01, 0.01), ("dpo_no_sqrt.yaml", "dpo_no_sqrt", 0.0, 0.01),
     ("dpo_no_kl.yaml", "dpo_no_kl", 0.01, 0.0), ("ippo_kl.yaml", "ippo_kl", 0.0, 0.01)],
)
def test_dpo_configs(config, label, beta1, beta2, in_tmp):
    cli = MarlCLI(args=cli_args("fit", config=config)[1:], run=False)
    model = cli.model
    assert isinstance(model, DPO) and model.algorithm_label == label
    assert not model.hparams.share_actor_params and not model.hparams.share_critic_params
    assert torch.equal(model.loss_module.beta1, torch.full((3,), beta1))
    assert torch.equal(model.loss_module.beta2, torch.full((3,), beta2))
    assert model.loss_module.scale_by_n_agents == (label != "ippo_kl")
