import pytest
import torch

from marl_lightning.core import keys
from marl_lightning.models import build_actor, build_critic
from marl_lightning.objectives import MultiAgentPPOLoss
from tests.conftest import make_spec, synthetic_batch


def _loss_and_batch(continuous: bool, critic_coeff: float = 0.5):
    torch.manual_seed(0)
    spec = make_spec(continuous=continuous)
    actor = build_actor(spec, [16], share_params=False)
    critic = build_critic(spec, [16], share_params=True, centralised=True)
    batch = synthetic_batch(spec, batch=32)
    with torch.no_grad():
        actor(batch)  # writes the action and its log-prob under the current policy
    loss = MultiAgentPPOLoss(actor, critic, clip_epsilon=0.2, critic_coeff=critic_coeff)
    return loss, batch, critic


@pytest.mark.parametrize("continuous", [True, False])
def test_loss_at_initialisation(continuous):
    loss, batch, critic = _loss_and_batch(continuous)
    out = loss(batch)
    a = batch.shape[-1]
    torch.testing.assert_close(out["ratio_min"], torch.ones(a), atol=1e-5, rtol=0)
    torch.testing.assert_close(out["ratio_max"], torch.ones(a), atol=1e-5, rtol=0)
    torch.testing.assert_close(out["approx_kl"], torch.zeros(a), atol=1e-6, rtol=0)
    torch.testing.assert_close(out["clip_fraction"], torch.zeros(a))
    # ratio 1: the clipped surrogate is the advantage itself
    torch.testing.assert_close(out["loss_objective"], -batch[keys.ADVANTAGE].mean(), atol=1e-5, rtol=0)
    with torch.no_grad():
        value = critic(batch.clone())[keys.STATE_VALUE]
    expected_critic = 0.5 * (value - batch[keys.VALUE_TARGET]).pow(2).mean()
    torch.testing.assert_close(out["loss_critic"], expected_critic)


def test_policy_gradient_at_ratio_one_is_advantage_weighted_score():
    loss, batch, _ = _loss_and_batch(continuous=False)
    actor = loss.actor_network
    out = loss(batch)
    grads = torch.autograd.grad(out["loss_objective"], list(actor.parameters()))
    dist = actor.get_dist(batch.clone())
    logp = dist.log_prob(batch[keys.ACTION])
    surrogate = -(batch[keys.ADVANTAGE].squeeze(-1) * logp).mean()
    expected = torch.autograd.grad(surrogate, list(actor.parameters()))
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e)


def test_clipping_stops_the_gradient_outside_the_trust_region():
    loss, batch, _ = _loss_and_batch(continuous=False)
    # Old log-probs much lower than current: ratio = e^2 > 1 + ε; positive advantages are clipped.
    batch[keys.ACTION_LOG_PROB] = batch[keys.ACTION_LOG_PROB] - 2.0
    batch[keys.ADVANTAGE] = batch[keys.ADVANTAGE].abs()
    out = loss(batch)
    torch.testing.assert_close(out["clip_fraction"], torch.ones(batch.shape[-1]))
    grads = torch.autograd.grad(
        out["loss_objective"], list(loss.actor_network.parameters()), allow_unused=True
    )
    assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)
    torch.testing.assert_close(out["loss_objective"], -(1.2 * batch[keys.ADVANTAGE]).mean())


def test_entropy_bonus_uses_the_exact_categorical_entropy():
    loss, batch, _ = _loss_and_batch(continuous=False)
    assert float(loss(batch)["loss_entropy"]) == 0.0  # coefficient 0: no bonus
    loss.entropy_coeff.fill_(0.1)
    dist = loss.actor_network.get_dist(batch.clone())
    torch.testing.assert_close(loss(batch)["loss_entropy"], -0.1 * dist.entropy().mean())
