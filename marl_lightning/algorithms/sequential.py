"""Sequential multi-agent PPO (paper 002, Algorithm 1): agents updated one after another per iteration."""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import partial
from typing import Any, Literal

import torch
from tensordict import TensorDictBase
from typing_extensions import override

from marl_lightning.algorithms import metrics
from marl_lightning.algorithms.base import MultiAgentPPOModule
from marl_lightning.algorithms.update import UpdatePhase
from marl_lightning.core import keys
from marl_lightning.core.errors import ConfigError
from marl_lightning.launch.distributed import broadcast_from_rank_zero, world_size
from marl_lightning.objectives.agentwise_adam import AgentwiseAdam
from marl_lightning.objectives.sequential import Regulariser, SequentialPPOLoss


class SequentialPPO(MultiAgentPPOModule):
    """Each iteration updates the agents one after another, each seeing the already-updated ones.

    The update's phases (:meth:`update_phases`): the centralised critic V_i first (``num_epochs`` passes of
    the shared critic loss), then, in :meth:`agent_order`, agent m for ``num_epochs`` passes of
    :class:`~marl_lightning.objectives.sequential.SequentialPPOLoss` — the mirror-descent step of
    Equation 3 (``regulariser: kl``) or its clipped form (``clip``) — with M_m, the product of the new/old
    ratios of the agents updated before it, measured on the whole iteration when their phases end. A is
    the joint advantage, the mean over agents of the centralised critic's (standardised) GAE advantages.

    β_k (Algorithm 1, line 3): ``beta_schedule`` ``sqrt_k`` (default) β_k = β·√(k+1), growing like √k;
    ``sqrt_K``: β·√K with K the run's number of iterations, constant, the paper's literal line 3;
    ``constant``: β. It is logged as ``seq/beta``.

    This algorithm loops over agents by definition; everything inside one agent's update is vectorised (the
    actor evaluates every agent in one call; only agent m's slice of the unshared parameters is stepped, by
    :class:`~marl_lightning.objectives.agentwise_adam.AgentwiseAdam`). Actor parameters cannot be shared.

    Args (beyond :class:`MultiAgentPPOModule`'s):
        order: ``fixed`` (0, 1, …, N−1, the paper's) or ``random`` (a fresh permutation each iteration, from
            the seeded torch RNG).
        regulariser: ``kl`` or ``clip``.
        beta: β of the schedule.
        beta_schedule: ``sqrt_k``, ``sqrt_K`` or ``constant``.
    """

    centralised_critic = True
    statistics = {**MultiAgentPPOModule.statistics, "beta": metrics.Statistic("seq/beta")}

    def __init__(
        self,
        *args: Any,
        order: Literal["fixed", "random"] = "random",
        regulariser: Regulariser = "kl",
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

    @override
    def make_loss(self) -> SequentialPPOLoss:
        return SequentialPPOLoss(self.actor, self.critic, regulariser=self.hparams.regulariser,
                                 **self.loss_kwargs())

    def current_beta(self, frames_per_iteration: int | None = None) -> float:
        """β_k of Algorithm 1 at the current iteration k (see ``beta_schedule``); ``sqrt_K`` needs the
        frames of one iteration over all ranks, to know K."""
        hp = self.hparams
        if hp.beta_schedule == "constant":
            return hp.beta
        if hp.beta_schedule == "sqrt_k":
            return hp.beta * math.sqrt(int(self.iterations) + 1)
        if frames_per_iteration is None:
            raise ValueError("beta_schedule sqrt_K needs the frames of one iteration to count K.")
        return hp.beta * math.sqrt(math.ceil(self.total_frames / frames_per_iteration))

    def agent_order(self) -> list[int]:
        """The order of this iteration's agent phases: rank 0's draw on every rank (each rank's RNG is
        seeded per rank; the phases' gradients are averaged over ranks, so every rank updates the same
        agent in the same phase)."""
        n_agents = self.env_spec.n_agents
        if self.hparams.order == "fixed":
            return list(range(n_agents))
        order = torch.randperm(n_agents).to(self.device)  # [A] (NCCL broadcasts device tensors)
        broadcast_from_rank_zero([order])
        return order.tolist()

    @override
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        critic = torch.optim.Adam(self.critic.parameters(), lr=hp.lr, eps=hp.adam_eps)
        actor = AgentwiseAdam(self.actor.parameters(), self.env_spec.n_agents, lr=hp.lr, eps=hp.adam_eps)
        return [critic, actor]

    @override
    def update_phases(self, flat: TensorDictBase) -> Iterator[UpdatePhase]:
        """The critic, then each agent in order; each agent's phase sees the earlier ones' new policies.

        Shapes: flat [N]; writes ``joint_advantage`` and ``earlier_ratio`` [N].
        """
        critic_optimizer, actor_optimizer = (optimizer.optimizer for optimizer in self.optimizers())
        yield UpdatePhase(self.loss_module.critic_loss, list(self.critic.parameters()), critic_optimizer)

        flat.set(keys.JOINT_ADVANTAGE, flat.get(keys.ADVANTAGE).squeeze(-1).mean(-1))
        flat.set(keys.EARLIER_RATIO, torch.ones(flat.shape[0], device=flat.device))  # Π of updated agents'
        self.loss_module.beta.fill_(self.current_beta(flat.shape[0] * world_size()))
        self.last_order = self.agent_order()
        actor_parameters = list(self.actor.parameters())
        for agent in self.last_order:
            yield UpdatePhase(
                partial(self.loss_module.actor_loss, agent=agent), actor_parameters, actor_optimizer,
                step=partial(actor_optimizer.step, agent), agent=agent,
            )
            with torch.no_grad():  # the next agents see this one at its new policy
                ratio = self.loss_module.log_ratio(flat, agent)[:, agent].exp()  # [N]
                flat.set(keys.EARLIER_RATIO, flat.get(keys.EARLIER_RATIO) * ratio)
