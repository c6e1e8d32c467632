"""Multi-agent PPO with independent clipped ratios (the IPPO/MAPPO objective)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import ProbabilisticTensorDictSequential, TensorDictModule
from torch.distributions import Distribution
from torchrl.objectives import LossModule

from marl_lightning.core import keys
from marl_lightning.objectives.divergences import policy_params
from marl_lightning.objectives.masking import agent_mask, masked_mean, masked_mean_per_agent
from marl_lightning.objectives.surrogate import clipped_surrogate, outside_clip_range
from marl_lightning.objectives.value_loss import LossCriticType, value_loss

__all__ = ["LossCriticType", "MultiAgentPPOLoss", "PolicyStep"]


@dataclass
class PolicyStep:
    """What a policy objective sees of one minibatch.

    Attributes:
        log_ratio: log π(a_i|o_i) − log π_old(a_i|o_i), with gradient; 0 for agents left out. [B, A]
        advantage: per-agent advantage, 0 for agents left out. [B, A]
        mask: the agents this step is about [B, A] bool (present ones, and only the updated one in a
            sequential phase), or None for all.
        old: the collecting policy's distribution parameters (no gradient).
        new: the current policy's distribution parameters (with gradient).
        batch: the minibatch, for objectives that read more of it (sequential PPO's earlier agents' ratio).
    """

    log_ratio: torch.Tensor
    advantage: torch.Tensor
    mask: torch.Tensor | None
    old: TensorDictBase
    new: TensorDictBase
    batch: TensorDictBase


class MultiAgentPPOLoss(LossModule):
    """Clipped PPO over agents with independent per-agent ratios r_i = π_i(a_i|o_i) / π_i,old(a_i|o_i).

    The surrogate is the IPPO/MAPPO objective of the trust-region paper (004, Equations 4 and 5):
    E[min(r_i A_i, clip(r_i, 1 − ε, 1 + ε) A_i)], averaged over agents and samples.
    ``policy_objective`` is the extension point: JR-PPO, DPO and sequential PPO replace it.
    :meth:`actor_loss` (optionally of one agent) and :meth:`critic_loss` are the two halves of
    ``forward``, for updates that step them separately.

    Agents the batch marks absent (``("agents", "mask")`` False: dead, or not acting) get a log-ratio of 0
    and are left out of every mean: they neither add to nor dilute the loss.

    Coefficients are buffers, so a callback can change them in place and checkpoints keep them.

    Shapes (input minibatch):
        observation [B, A, F], action [B, A, ...], action_log_prob [B, A], advantage [B, A, 1],
        value_target [B, A, 1].
    Output: scalar ``loss_objective``, ``loss_critic``, ``loss_entropy``; detached per-agent diagnostics
    ``approx_kl``, ``clip_fraction``, ``ratio_min``, ``ratio_max`` of shape [A] (computed once, here).
    """

    @dataclass
    class _AcceptedKeys:
        advantage: tuple = keys.ADVANTAGE
        value_target: tuple = keys.VALUE_TARGET
        value: tuple = keys.STATE_VALUE
        sample_log_prob: tuple = keys.ACTION_LOG_PROB
        action: tuple = keys.ACTION

    default_keys = _AcceptedKeys

    def __init__(
        self,
        actor_network: ProbabilisticTensorDictSequential,
        critic_network: TensorDictModule,
        *,
        clip_epsilon: float = 0.2,
        entropy_coeff: float = 0.0,
        critic_coeff: float = 1.0,
        loss_critic_type: LossCriticType = "l2",
    ) -> None:
        super().__init__()
        self._tensor_keys = self._AcceptedKeys()
        self.actor_network = actor_network
        self.critic_network = critic_network
        self.register_buffer("clip_epsilon", torch.tensor(float(clip_epsilon)))
        self.register_buffer("entropy_coeff", torch.tensor(float(entropy_coeff)))
        self.register_buffer("critic_coeff", torch.tensor(float(critic_coeff)))
        self.loss_critic_type = loss_critic_type

    def policy_objective(self, step: PolicyStep) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss to minimise for the policy: minus the clipped surrogate (004, Eq. 4/5).

        Shapes:
            step.log_ratio, step.advantage: [B, A] -> scalar loss, per-agent diagnostics [A].
        """
        ratio = step.log_ratio.exp()
        surrogate = clipped_surrogate(ratio, step.advantage, self.clip_epsilon)
        outside = outside_clip_range(ratio.detach(), self.clip_epsilon)
        clip_fraction = masked_mean_per_agent(outside, step.mask)
        return -masked_mean(surrogate, step.mask), {"clip_fraction": clip_fraction}

    def critic_value(self, td: TensorDictBase) -> torch.Tensor:
        """The critic's estimate regressed on ``value_target``. Shapes: td [B] -> [B, A, 1]."""
        return self.critic_network(td).get(self.tensor_keys.value)

    def entropy(self, dist: Distribution) -> torch.Tensor:
        """Per-agent policy entropy [B, A]: exact when the distribution has one, else −log π(ã), ã ~ π."""
        try:
            return dist.entropy()
        except NotImplementedError:
            return -dist.log_prob(dist.rsample())

    def active_mask(self, td: TensorDictBase, agent: int | None = None) -> torch.Tensor | None:
        """The entries a loss averages over: present agents, and with ``agent`` only that one.

        Shapes: td [B] -> [B, A] bool, or None (every entry).
        """
        mask = agent_mask(td)
        if agent is None:
            return mask
        only = torch.zeros(td.get(self.tensor_keys.sample_log_prob).shape, dtype=torch.bool, device=td.device)
        only[..., agent] = True
        return only if mask is None else mask & only

    def _log_ratio(self, td: TensorDictBase, mask: torch.Tensor | None) -> tuple[Distribution, torch.Tensor]:
        """The current policy and log π − log π_old [B, A] (0 where ``mask`` is False); writes the current
        distribution parameters into ``td`` (a copy of the caller's)."""
        dist = self.actor_network.get_dist(td)
        new_log_prob = dist.log_prob(td.get(self.tensor_keys.action))  # [B, A]
        old_log_prob = td.get(self.tensor_keys.sample_log_prob)  # [B, A]
        if mask is not None:  # entries left out are replaced before any arithmetic: no NaN even in gradients
            old_log_prob = torch.where(mask, old_log_prob, new_log_prob.detach())
        return dist, new_log_prob - old_log_prob

    def log_ratio(self, tensordict: TensorDictBase, agent: int | None = None) -> torch.Tensor:
        """log π(a|o) − log π_old(a|o) of the current policy. Shapes: [B] -> [B, A] (0 where left out)."""
        td = tensordict.copy()
        return self._log_ratio(td, self.active_mask(td, agent))[1]

    def actor_loss(self, tensordict: TensorDictBase, agent: int | None = None) -> TensorDict:
        """``loss_objective``, ``loss_entropy`` and the diagnostics, of every agent or of ``agent`` alone."""
        return self._actor_loss(tensordict, tensordict.copy(), agent)

    def _actor_loss(self, tensordict: TensorDictBase, td: TensorDictBase, agent: int | None) -> TensorDict:
        """``td``: the copy the current policy's parameters are written into."""
        old_params = policy_params(tensordict)  # the collecting policy's, before get_dist overwrites td's
        mask = self.active_mask(td, agent)  # [B, A] or None
        dist, log_ratio = self._log_ratio(td, mask)
        advantage = td.get(self.tensor_keys.advantage).squeeze(-1)  # [B, A]
        if mask is not None:
            advantage = torch.where(mask, advantage, 0.0)
        step = PolicyStep(log_ratio, advantage, mask, old_params, policy_params(td), tensordict)
        loss_objective, policy_diagnostics = self.policy_objective(step)

        if self.entropy_coeff > 0:
            loss_entropy = -self.entropy_coeff * masked_mean(self.entropy(dist), mask)  # entropy [B, A]
        else:  # skipped: for a tanh-Gaussian the estimate costs a sample and a log-prob per step
            loss_entropy = torch.zeros((), device=log_ratio.device)

        with torch.no_grad():
            ratio = log_ratio.exp()
            diagnostics = {
                # k3 estimator of KL(π_old‖π), [A]
                "approx_kl": masked_mean_per_agent((ratio - 1.0) - log_ratio, mask),
                "ratio_min": ratio.amin(0),
                "ratio_max": ratio.amax(0),
                **policy_diagnostics,
            }
        return TensorDict(
            {"loss_objective": loss_objective, "loss_entropy": loss_entropy, **diagnostics}, batch_size=[]
        )

    def critic_loss(self, tensordict: TensorDictBase) -> TensorDict:
        """``loss_critic``: the weighted distance of the critic's estimate to ``value_target``."""
        return self._critic_loss(tensordict.copy())

    def _critic_loss(self, td: TensorDictBase) -> TensorDict:
        mask = agent_mask(td)
        target = td.get(self.tensor_keys.value_target)  # [B, A, 1]
        if mask is not None:
            target = torch.where(mask.unsqueeze(-1), target, 0.0)
        loss = self.critic_coeff * value_loss(self.critic_value(td), target, mask, self.loss_critic_type)
        return TensorDict({"loss_critic": loss}, batch_size=[])

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        td = tensordict.copy()  # one copy for both halves: the critic reads only what the actor leaves as is
        out = self._actor_loss(tensordict, td, None)
        out.update(self._critic_loss(td))
        return out
