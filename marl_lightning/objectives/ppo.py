"""Multi-agent PPO with independent clipped ratios (the IPPO/MAPPO objective)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import ProbabilisticTensorDictSequential, TensorDictModule
from torch.distributions import Distribution
from torchrl.objectives import LossModule

from marl_lightning import keys

LossCriticType = Literal["l1", "l2", "smooth_l1"]


def _distance(value: torch.Tensor, target: torch.Tensor, kind: LossCriticType) -> torch.Tensor:
    if kind == "l2":
        return (value - target).pow(2)
    if kind == "l1":
        return (value - target).abs()
    return F.smooth_l1_loss(value, target, reduction="none")


class MultiAgentPPOLoss(LossModule):
    """Clipped PPO over agents with independent per-agent ratios r_i = π_i(a_i|o_i) / π_i,old(a_i|o_i).

    The surrogate is the IPPO/MAPPO objective of the trust-region paper (004, Equations 4 and 5):
    E[min(r_i A_i, clip(r_i, 1 − ε, 1 + ε) A_i)], averaged over agents and samples.
    ``policy_objective`` is the extension point: JR-PPO, DPO and the others replace it.

    Coefficients are buffers, so a callback can change them in place and checkpoints keep them.

    Shapes (input minibatch):
        observation [B, A, F], action [B, A, ...], action_log_prob [B, A], advantage [B, A, 1],
        value_target [B, A, 1].
    Output: scalar ``loss_objective``, ``loss_critic``, ``loss_entropy``; detached per-agent diagnostics
    ``approx_kl``, ``clip_fraction``, ``ratio_min``, ``ratio_max`` of shape [A].
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

    def policy_objective(
        self, log_ratio: torch.Tensor, advantage: torch.Tensor, batch: TensorDictBase
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss to minimise for the policy: minus the clipped surrogate (004, Eq. 4/5).

        Shapes:
            log_ratio: [B, A]; advantage: [B, A] -> scalar loss, per-agent diagnostics [A].
        """
        ratio = log_ratio.exp()
        eps = self.clip_epsilon
        surrogate = torch.minimum(ratio * advantage, ratio.clamp(1.0 - eps, 1.0 + eps) * advantage)
        with torch.no_grad():
            clip_fraction = ((ratio - 1.0).abs() > eps).float().mean(0)  # [A]
        return -surrogate.mean(), {"clip_fraction": clip_fraction}

    def entropy(self, dist: Distribution) -> torch.Tensor:
        """Per-agent policy entropy [B, A]: exact when the distribution has one, else −log π(ã), ã ~ π."""
        try:
            return dist.entropy()
        except NotImplementedError:
            return -dist.log_prob(dist.rsample())

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        td = tensordict.copy()
        dist = self.actor_network.get_dist(td)
        new_log_prob = dist.log_prob(td.get(self.tensor_keys.action))  # [B, A]
        old_log_prob = td.get(self.tensor_keys.sample_log_prob)  # [B, A]
        log_ratio = new_log_prob - old_log_prob
        advantage = td.get(self.tensor_keys.advantage).squeeze(-1)  # [B, A]
        loss_objective, policy_diag = self.policy_objective(log_ratio, advantage, td)

        if self.entropy_coeff > 0:
            loss_entropy = -self.entropy_coeff * self.entropy(dist).mean()  # entropy [B, A]
        else:  # skipped: for a tanh-Gaussian the estimate costs a sample and a log-prob per step
            loss_entropy = torch.zeros((), device=log_ratio.device)

        value = self.critic_network(td).get(self.tensor_keys.value)  # [B, A, 1]
        target = td.get(self.tensor_keys.value_target)
        loss_critic = self.critic_coeff * _distance(value, target, self.loss_critic_type).mean()

        with torch.no_grad():
            ratio = log_ratio.exp()
            diagnostics = {
                "approx_kl": ((ratio - 1.0) - log_ratio).mean(0),  # k3 estimator of KL(π_old‖π), [A]
                "ratio_min": ratio.amin(0),
                "ratio_max": ratio.amax(0),
                **policy_diag,
            }
        return TensorDict(
            {
                "loss_objective": loss_objective,
                "loss_critic": loss_critic,
                "loss_entropy": loss_entropy,
                **diagnostics,
            },
            batch_size=[],
        )
