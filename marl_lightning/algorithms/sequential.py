"""Sequential multi-agent PPO (paper 002, Algorithm 1): agents updated one after another per iteration."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from tensordict import TensorDictBase
from typing_extensions import override

from marl_lightning import keys
from marl_lightning.algorithms.base import MultiAgentPPOModule
from marl_lightning.distributed import all_reduce_gradients
from marl_lightning.errors import ConfigError
from marl_lightning.objectives import agent_mask, kl_divergence, masked_mean, policy_params
from marl_lightning.objectives.agentwise_adam import AgentwiseAdam


class SequentialPPO(MultiAgentPPOModule):
    """Each iteration updates the agents one after another, each seeing the already-updated ones.

    Per iteration: the centralised critic V_i is fitted first (``num_epochs`` passes of its value loss); then,
    in a fixed (0, 1, …, N−1) or random order, agent m runs ``num_epochs`` passes of minibatches on

        kl (default, the mirror-descent step of Equation 3):
            − mean[ M_m · r_m · A ] + β_k · mean_s KL(π^m(·|s) ‖ π^m_k(·|s))
        clip (option):
            − mean[ min(M_m · r_m · A, M_m · clip(r_m, 1 ± ε) · A) ]

    with r_m = π^m/π^m_k on the collected actions, A the joint advantage (the mean over agents of the
    centralised critic's GAE advantages) and M_m = Π_{j updated before m} r_j^new the ratio of the agents
    already updated, held fixed during m's update: E_{π_k}[M_m r_m A] estimates ⟨A^{1:m}, π^m⟩ with the
    earlier agents at their new policies, the term of Lemma 4.1's agent-by-agent decomposition that Equation 3
    improves. The KL is exact and in the paper's direction, KL(π_new ‖ π_old) (the reverse of PPO's).

    β_k (Algorithm 1, line 3): ``beta_schedule`` ``sqrt_k`` (default) β_k = β·√(k+1), growing like √k;
    ``sqrt_K``: β·√K with K the run's number of iterations, constant, the paper's literal line 3;
    ``constant``: β.

    This algorithm loops over agents by definition; everything inside one agent's update is vectorised (the
    actor evaluates every agent in one call; only agent m's slice of the unshared parameters is stepped, by
    :class:`~marl_lightning.objectives.agentwise_adam.AgentwiseAdam`). Actor parameters cannot be shared.

    Args (beyond :class:`MultiAgentPPOModule`'s):
        order: ``fixed`` or ``random`` (a fresh permutation each iteration, from the seeded torch RNG).
        regulariser: ``kl`` or ``clip``.
        beta: β of the schedule.
        beta_schedule: ``sqrt_k``, ``sqrt_K`` or ``constant``.
    """

    centralised_critic = True

    def __init__(
        self,
        *args: Any,
        order: Literal["fixed", "random"] = "random",
        regulariser: Literal["kl", "clip"] = "kl",
        beta: float = 1.0,
        beta_schedule: Literal["sqrt_k", "sqrt_K", "constant"] = "sqrt_k",
        share_actor_params: bool = False,
        **kwargs: Any,
    ) -> None:
        if share_actor_params:
            raise ConfigError(
                "SequentialPPO updates agents one at a time, which a shared actor cannot do: set "
                "--model.init_args.share_actor_params false."
            )
        if not beta > 0:
            raise ConfigError(f"model.beta must be > 0, got {beta}.")
        super().__init__(*args, share_actor_params=False, **kwargs)
        self.last_order: list[int] = []

    def current_beta(self) -> float:
        """β_k of Algorithm 1 at the current iteration k (see ``beta_schedule``)."""
        hp = self.hparams
        if hp.beta_schedule == "constant":
            return hp.beta
        if hp.beta_schedule == "sqrt_k":
            return hp.beta * math.sqrt(int(self.iterations) + 1)
        datamodule = getattr(getattr(self, "_trainer", None), "datamodule", None)
        if datamodule is None:
            raise ConfigError("beta_schedule sqrt_K needs the run's number of iterations (a data module).")
        total = math.ceil(datamodule.total_frames / datamodule.frames_per_batch)
        return hp.beta * math.sqrt(total)

    @override
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        self._trainable = [*self.actor.parameters(), *self.critic.parameters()]
        self._critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=hp.lr, eps=hp.adam_eps)
        self._actor_optimizer = AgentwiseAdam(
            self.actor.parameters(), self.env_spec.n_agents, lr=hp.lr, eps=hp.adam_eps
        )
        return [self._critic_optimizer, self._actor_optimizer]

    def _step(
        self, optimizer: torch.optim.Optimizer, params: list, loss: torch.Tensor, agent: int | None
    ) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        all_reduce_gradients(params)
        torch.nn.utils.clip_grad_norm_(params, self.hparams.max_grad_norm, foreach=True)
        if agent is None:
            optimizer.step()
        else:
            optimizer.step(agent)

    def agent_objective(
        self,
        td: TensorDictBase,
        agent: int,
        earlier_ratio: torch.Tensor,
        advantage: torch.Tensor,
        beta: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Agent ``agent``'s loss on a minibatch (class docstring) and its ratios r_m [b].

        Shapes: td [b, A]; earlier_ratio, advantage [b] -> scalar, [b].
        """
        current = td.select(keys.OBSERVATION).copy()
        dist = self.actor.get_dist(current)
        log_ratio = dist.log_prob(td.get(keys.ACTION))[:, agent] - td.get(keys.ACTION_LOG_PROB)[:, agent]
        mask = agent_mask(td)
        present = None if mask is None else mask[:, agent : agent + 1]
        if present is not None:
            log_ratio = torch.where(present[:, 0], log_ratio, 0.0)
        ratio = log_ratio.exp()  # [b]
        weighted = earlier_ratio * advantage
        if self.hparams.regulariser == "clip":
            eps = self.clip_epsilon
            surrogate = torch.minimum(ratio * weighted, ratio.clamp(1 - eps, 1 + eps) * weighted)
            loss = -masked_mean(surrogate.unsqueeze(-1), present)
        else:
            kl = kl_divergence(policy_params(current), policy_params(td))[:, agent]  # KL(π_new ‖ π_old) [b]
            loss = -masked_mean((ratio * weighted).unsqueeze(-1), present) + beta * masked_mean(
                kl.unsqueeze(-1), present
            )
        if self.hparams.entropy_coeff > 0:
            entropy = self.loss_module.entropy(dist)[:, agent]
            loss = loss - self.hparams.entropy_coeff * masked_mean(entropy.unsqueeze(-1), present)
        return loss, ratio.detach()

    @override
    def optimise(self, flat: TensorDictBase) -> dict[str, torch.Tensor]:
        """Critic first, then the agents in order, each for ``num_epochs`` passes (class docstring).

        Shapes: flat [n, A] -> ratio_min/ratio_max [num_epochs, A] (column m from agent m's phase).
        """
        hp = self.hparams
        n, n_agents = flat.shape[0], self.env_spec.n_agents
        critic_params = list(self.critic.parameters())
        actor_params = list(self.actor.parameters())
        value_losses = []
        for _ in range(hp.num_epochs):
            for index in torch.randperm(n, device=flat.device).split(hp.minibatch_size):
                td = flat[index]
                value = self.loss_module.critic_value(td.copy())  # [b, A, 1]
                distance = (value - td.get(keys.VALUE_TARGET)).pow(2).squeeze(-1)
                loss = hp.critic_coeff * masked_mean(distance, agent_mask(td))
                self._step(self._critic_optimizer, critic_params, loss, None)
                value_losses.append(loss.detach())

        advantage = flat.get(keys.ADVANTAGE).squeeze(-1).mean(-1)  # the joint advantage [n]
        earlier_ratio = torch.ones(n, device=flat.device)  # Π of the updated agents' new ratios
        order = list(range(n_agents)) if hp.order == "fixed" else torch.randperm(n_agents).tolist()
        self.last_order = order
        beta = self.current_beta()
        ratio_min = torch.ones(hp.num_epochs, n_agents, device=flat.device)
        ratio_max = torch.ones(hp.num_epochs, n_agents, device=flat.device)
        policy_losses = []
        for agent in order:
            for epoch in range(hp.num_epochs):
                for index in torch.randperm(n, device=flat.device).split(hp.minibatch_size):
                    loss, ratio = self.agent_objective(
                        flat[index], agent, earlier_ratio[index], advantage[index], beta
                    )
                    self._step(self._actor_optimizer, actor_params, loss, agent)
                    policy_losses.append(loss.detach())
                    ratio_min[epoch, agent] = torch.minimum(ratio_min[epoch, agent], ratio.min())
                    ratio_max[epoch, agent] = torch.maximum(ratio_max[epoch, agent], ratio.max())
            with torch.no_grad():  # the next agents see this one at its new policy
                _, ratio = self.agent_objective(flat, agent, earlier_ratio, advantage, beta)
                earlier_ratio = earlier_ratio * ratio
        self.log("seq/beta", beta, batch_size=1)
        return {
            "ratio_min": ratio_min,
            "ratio_max": ratio_max,
            "loss_policy": torch.stack(policy_losses).mean(),
            "loss_value": torch.stack(value_losses).mean(),
            "loss_entropy": torch.zeros((), device=flat.device),
        }
