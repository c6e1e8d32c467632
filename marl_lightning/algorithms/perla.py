"""PERLA-MAPPO and PERLA-IPPO: marginalised joint-action critics (paper 000, Algorithm 1)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from tensordict import TensorDictBase
from typing_extensions import override

from marl_lightning.algorithms import metrics
from marl_lightning.algorithms.base import MultiAgentPPOModule
from marl_lightning.core import keys
from marl_lightning.core.errors import ConfigError
from marl_lightning.models import JointActionQCritic
from marl_lightning.models.activations import ACTIVATIONS
from marl_lightning.objectives import episode_ends, gae, write_advantages
from marl_lightning.objectives.perla import PERLALoss, marginal_q, marginal_value, sample_joint_actions

AdvantageKind = Literal["td", "gae", "q"]


class PERLAModule(MultiAgentPPOModule):
    """PPO actors (decentralised, as MAPPO/IPPO) with a marginalised action-value critic for each agent.

    The critic Q_i(c_i, a_i, a_−i) sees the joint action; Q̂_i(s, a_i) averages it over K joint actions of the
    other agents drawn from their current policies (Equation 2), in one batched call for every agent and
    step. Per iteration, under ``no_grad`` (Algorithm 1, lines 5-9):

    - the TD target y_i,t = r_t + γ (1 − terminated) Q̂_i(s_{t+1}, a_i,t+1), both Q terms marginalised
      (line 6; a_i,t+1 is the action agent i took next, or, where the trajectory stops inside the batch,
      is itself sampled, i.e. V̂_i(s_{t+1})); the critic regresses Q̂_i(s_t, a_i,t) on it (line 8);
    - the advantage (line 9), ``advantage``:
        ``"td"`` (default): −δ_i,t = y_i,t − V̂_i(s_t), the TD error of line 6 with the first term's own
            action marginalised as well (line 6 writes it without a time index), V̂_i(s) = 1/K Σ_j
            Q_i(s, a^(j)) with every agent's action sampled. Read literally with the taken a_i,t in both
            terms, the TD error has expectation 0 given (s, a_i) for an exact critic and carries no signal
            for agent i's action; with V̂ it estimates A_i(s, a_i).
        ``"gae"``: GAE(λ) over the state-value TD errors r_t + γ V̂_i(s_{t+1}) − V̂_i(s_t).
        ``"q"``: Q̂_i(s_t, a_i,t) − V̂_i(s_t), the PERLA policy-gradient estimator g^P with a baseline.

    K = 1 is the plain centralised-critic estimator (one joint action of the others, distributed as the
    actual one). Logged each iteration: ``perla/advantage_var`` (variance of the advantage over the
    batch, before standardisation) and ``perla/q_sample_var`` (the sampling variance of Q̂_i(s_t, a_i,t),
    mean over states: the per-state variance of Q over the K samples divided by K; Theorem 1's 1/K term).

    Args (beyond :class:`MultiAgentPPOModule`'s):
        n_samples: K, joint actions of the other agents per state.
        advantage: ``"td"``, ``"gae"`` or ``"q"`` (above).
    """

    centralised_critic: ClassVar[bool] = True
    statistics = {
        **MultiAgentPPOModule.statistics,
        "advantage_var": metrics.Statistic("perla/advantage_var"),
        "q_sample_var": metrics.Statistic("perla/q_sample_var"),
    }

    def __init__(
        self, *args: Any, n_samples: int = 8, advantage: AdvantageKind = "td", **kwargs: Any
    ) -> None:
        if n_samples < 1:
            raise ConfigError(f"model.n_samples (K) must be >= 1, got {n_samples}.")
        super().__init__(*args, **kwargs)

    @override
    def make_critic(self) -> JointActionQCritic:
        hp = self.hparams
        return JointActionQCritic(
            self.env_spec, hp.critic_cells, hp.share_critic_params, self.centralised_critic,
            ACTIVATIONS[hp.activation],
        )

    @override
    def make_loss(self) -> PERLALoss:
        return PERLALoss(self.actor, self.critic, n_samples=self.hparams.n_samples, **self.loss_kwargs())

    @torch.no_grad()
    def marginal_estimates(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        """Q̂_i(s_t, a_i,t), V̂_i(s_t), V̂_i(s_{t+1}), Q̂_i(s_{t+1}, a_i,t+1) and the K single-sample Q values.

        Shapes: batch [B, T] -> each [B, T, A, 1]; ``q_samples`` [K, B, T, A, 1].
        """
        critic: JointActionQCritic = self.critic
        k = self.hparams.n_samples
        own = critic.encode(batch.get(keys.ACTION))  # [B, T, A, e]
        context = critic.context(batch)
        samples = sample_joint_actions(self.actor, batch, k, critic)  # [K, B, T, A, e]
        q_hat, q_samples = marginal_q(critic, context, own, samples)
        v_hat = marginal_value(critic, context, samples)

        nxt = batch.get(keys.NEXT)
        next_context = critic.context(nxt)
        next_samples = sample_joint_actions(self.actor, nxt, k, critic)
        next_v = marginal_value(critic, next_context, next_samples)
        # a_i,t+1 is the next row of the same env unless the episode ended or the batch does
        next_own = torch.cat([own[:, 1:], own[:, -1:]], 1)
        continues = ~batch.get(keys.nxt(keys.ROOT_DONE)).squeeze(-1)  # [B, T]
        continues[:, -1] = False
        next_q = marginal_q(critic, next_context, next_own, next_samples)[0]
        next_q = torch.where(continues[..., None, None], next_q, next_v)
        return {"q": q_hat, "v": v_hat, "next_v": next_v, "next_q": next_q, "q_samples": q_samples}

    @override
    @torch.no_grad()
    def compute_advantages(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        """Algorithm 1 of paper 000, lines 5-9 (see the class docstring). Shapes: batch [B, T]; writes
        ``("agents", "advantage")`` and ``("agents", "value_target")`` [B, T, A, 1]; returns the variance
        statistics ``advantage_var`` and, for K > 1, ``q_sample_var``."""
        hp = self.hparams
        est = self.marginal_estimates(batch)
        reward = batch.get(keys.nxt(keys.REWARD))  # [B, T, A, 1]
        done, terminated = episode_ends(batch)
        not_terminal = (~terminated).to(reward.dtype)
        target = reward + hp.gamma * not_terminal * est["next_q"]  # line 6's bootstrapped term
        if hp.advantage == "td":
            advantage = target - est["v"]
        elif hp.advantage == "q":
            advantage = est["q"] - est["v"]
        else:
            advantage, _ = gae(reward, done, terminated, est["v"], est["next_v"], hp.gamma, hp.lmbda)
        write_advantages(batch, advantage, target)
        q_samples = est["q_samples"]  # [K, B, T, A, 1]
        k = q_samples.shape[0]
        stats = {"advantage_var": batch.get(keys.ADVANTAGE).var()}
        if k > 1:  # per-state variance of Q over the samples / K: the sampling variance of Q̂
            stats["q_sample_var"] = q_samples.var(0).mean() / k
        return stats


class PERLAMAPPO(PERLAModule):
    """PERLA-MAPPO: the joint-action critic conditions on the global state (or all observations)."""

    centralised_critic = True


class PERLAIPPO(PERLAModule):
    """PERLA-IPPO: the joint-action critic conditions on the agent's own observation."""

    centralised_critic = False
