"""PERLA's marginalised critic (paper 000, Equation 2 and Algorithm 1): estimates and the loss."""

from __future__ import annotations

import itertools

import torch
from tensordict import TensorDictBase
from tensordict.nn import ProbabilisticTensorDictSequential

from marl_lightning.core import keys
from marl_lightning.models.q_critic import JointActionQCritic
from marl_lightning.objectives.ppo import MultiAgentPPOLoss


@torch.no_grad()
def sample_joint_actions(
    actor: ProbabilisticTensorDictSequential, td: TensorDictBase, k: int, critic: JointActionQCritic
) -> torch.Tensor:
    """K joint actions from the current policies, for every agent and step, in one batched call.

    Shapes: td [*] with observation [*, A, F] -> encoded samples [K, *, A, e].
    """
    dist = actor.get_dist(td.select(keys.OBSERVATION).copy())
    return critic.encode(dist.sample((k,)))


def marginal_q(
    critic: JointActionQCritic, context: torch.Tensor, own: torch.Tensor, samples: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Q̂_i(s, a_i) = 1/K Σ_j Q_i(s, a_i, a_−i^(j)), a_−i^(j) ~ π_−i (paper 000, Equation 2).

    Own actions are the given ones, the others' are the samples. Returns Q̂ and the K single-sample
    values (for variance diagnostics).

    Shapes: context [*, A, C], own [*, A, e], samples [K, *, A, e] -> [*, A, 1], [K, *, A, 1].
    """
    q = critic(context, own.unsqueeze(0), samples)  # [K, *, A, 1]
    return q.mean(0), q


def marginal_value(critic: JointActionQCritic, context: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """V̂_i(s) = 1/K Σ_j Q_i(s, a_i^(j), a_−i^(j)), every agent's action sampled: the state baseline under
    the marginalised critic. Shapes: context [*, A, C], samples [K, *, A, e] -> [*, A, 1].
    """
    return critic(context, samples, samples).mean(0)


def exact_marginal_q(
    critic: JointActionQCritic, context: torch.Tensor, own: torch.Tensor, probs: torch.Tensor
) -> torch.Tensor:
    """E_{a_−i ~ π_−i}[Q_i(s, a_i, a_−i)] by enumerating every joint action (discrete, small cases).

    Shapes: context [B, A, C], own [B, A, n] (one-hot), probs [B, A, n] -> [B, A, 1].
    """
    n_agents, n_actions = probs.shape[-2], probs.shape[-1]
    total = torch.zeros(*own.shape[:-1], 1, dtype=own.dtype, device=own.device)
    eye = torch.eye(n_agents, dtype=torch.bool, device=probs.device)
    for joint in itertools.product(range(n_actions), repeat=n_agents):
        actions = torch.tensor(joint, device=probs.device)  # [A]
        p = probs[..., torch.arange(n_agents), actions]  # [B, A]: p_j(a_j)
        # weight for agent i: Π_{j≠i} p_j(a_j); the own slot of the enumeration is replaced by own
        weight = torch.where(eye, torch.ones_like(p).unsqueeze(-2), p.unsqueeze(-2)).prod(-1)  # [B, A]
        others = critic.encode(actions.expand(*own.shape[:-1]))  # [B, A, n]
        total = total + weight.unsqueeze(-1) * critic(context, own, others)
    return total / n_actions  # each a_−i was enumerated once per value of the own slot


class PERLALoss(MultiAgentPPOLoss):
    """PPO's clipped policy objective; the critic is the marginalised Q̂_i(s, a_i) of Equation 2 regressed on
    the TD target of Algorithm 1 (line 6), with K fresh samples of the others' actions per minibatch.
    """

    def __init__(self, *args, n_samples: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.n_samples = n_samples

    def critic_value(self, td: TensorDictBase) -> torch.Tensor:
        """Q̂_i(s, a_i) at the taken own actions. Shapes: td [B] -> [B, A, 1]."""
        critic: JointActionQCritic = self.critic_network
        samples = sample_joint_actions(self.actor_network, td, self.n_samples, critic)
        own = critic.encode(td.get(keys.ACTION))
        return marginal_q(critic, critic.context(td), own, samples)[0]
