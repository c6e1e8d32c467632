"""The PPO iteration that every on-policy algorithm here shares, top to bottom.

One Lightning batch is one collected iteration (``docs/design.md`` draws its path). :meth:`run_iteration`
estimates advantages (:meth:`compute_advantages`), flattens and standardises them, runs the update's
phases (:meth:`update_phases`; each phase is ``num_epochs`` passes of minibatches, one
:meth:`gradient_step` each) and measures how far the policy moved (:meth:`iteration_statistics`).
NaN and Inf in the env's data, the losses and the gradients are found and stopped on, or skipped, by the
module's ``health`` guard (``marl_lightning/safety/health.py``). Counters, the budget, seeding and logging
belong to ``IterationModule`` (``iteration.py``).

An algorithm overrides as little as it can: :meth:`make_loss` (its objective), and where it needs them
:meth:`make_critic`, :meth:`compute_advantages` (returns its own statistics), :meth:`update_phases` with
:meth:`configure_optimizers` (another update shape), plus its ``statistics`` declarations.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, ClassVar

import torch
from tensordict import TensorDictBase
from typing_extensions import override

from marl_lightning.algorithms import metrics
from marl_lightning.algorithms.evaluation import log_evaluation
from marl_lightning.algorithms.iteration import Iteration, IterationModule, env_spec_of
from marl_lightning.algorithms.update import UpdatePhase, UpdateRecord, flatten_for_update, total_loss
from marl_lightning.algorithms.validation import check_minibatching, check_ppo_settings, check_strategy
from marl_lightning.core import keys
from marl_lightning.data.rollout import Rollout, finished_episode_returns
from marl_lightning.envs.base import EnvSpec
from marl_lightning.launch.distributed import all_reduce_gradients, parameter_checksum, world_size
from marl_lightning.models import build_actor, build_critic
from marl_lightning.models.activations import ACTIVATIONS, Activation
from marl_lightning.models.compile import CompileMode, check_compile_mode, compile_networks
from marl_lightning.objectives import (
    LossCriticType,
    MultiAgentPPOLoss,
    policy_movement,
    write_gae,
)
from marl_lightning.safety.health import NonFiniteGuard, OnNonFinite, nonfinite_data, skip_counts


class MultiAgentPPOModule(IterationModule):
    """On-policy multi-agent PPO: one Lightning batch is one collected iteration.

    Args:
        env_spec: sizes from the env (required; the CLI links it from the data module).
        total_frames: the budget, in environment frames over all ranks; training stops there.
        lr: Adam learning rate (actor and critic).
        adam_eps: Adam's epsilon.
        clip_epsilon: PPO clip range ε.
        clip_budget: agent-scaled clipping (paper 004, Section 6.2): a centralised trust-region budget α
            shared by the agents, each agent's ratio then clipped to [1 − α/N, 1 + α/N]; overrides
            ``clip_epsilon`` when given.
        entropy_coeff: weight of the entropy bonus.
        critic_coeff: weight of the value loss.
        loss_critic_type: distance of the value loss.
        gamma: discount.
        lmbda: GAE λ.
        num_epochs: optimisation passes over each iteration's data.
        minibatch_size: frames per minibatch (each frame holds every agent).
        max_grad_norm: gradient-norm clip.
        normalise_advantage: standardise advantages per agent.
        actor_cells: hidden sizes of the policy MLP.
        critic_cells: hidden sizes of the critic MLP.
        activation: the hidden layers' nonlinearity, of actor and critic.
        share_actor_params: one policy network for all agents.
        share_critic_params: one critic network for all agents.
        on_nonfinite: NaN or Inf in the env's data, a loss term or the gradients: ``stop`` the run naming
            them (the last good checkpoint is kept), or ``skip`` the poisoned iteration or minibatch
            (``marl_lightning.safety.health``).
        max_skips_in_a_row: with ``skip``, stop once this many iterations or minibatches in a row were
            skipped.
        compile_networks: ``torch.compile`` mode of the networks (``marl_lightning.models.compile``), or
            ``off``; applied once, at the first ``setup``.
    """

    centralised_critic: ClassVar[bool] = True
    # The action kinds an algorithm can train; an env of another kind is refused at construction.
    action_kinds: ClassVar[tuple[str, ...]] = ("discrete", "continuous")
    statistics = metrics.PPO

    def __init__(
        self,
        env_spec: EnvSpec | None = None,
        total_frames: int = 600_000,
        lr: float = 5e-5,
        adam_eps: float = 1e-6,
        clip_epsilon: float = 0.2,
        clip_budget: float | None = None,
        entropy_coeff: float = 0.0,
        critic_coeff: float = 1.0,
        loss_critic_type: LossCriticType = "l2",
        gamma: float = 0.99,
        lmbda: float = 0.9,
        num_epochs: int = 10,
        minibatch_size: int = 400,
        max_grad_norm: float = 5.0,
        normalise_advantage: bool = True,
        actor_cells: Sequence[int] = (256, 256),
        critic_cells: Sequence[int] = (256, 256),
        activation: Activation = "tanh",
        share_actor_params: bool = True,
        share_critic_params: bool = True,
        on_nonfinite: OnNonFinite = "stop",
        max_skips_in_a_row: int = 5,
        compile_networks: CompileMode = "off",
    ) -> None:
        env_spec = env_spec_of(env_spec, type(self).__name__)
        check_compile_mode(compile_networks)
        check_ppo_settings(
            type(self).__name__, env_spec, self.action_kinds, total_frames=total_frames, lr=lr,
            adam_eps=adam_eps, clip_epsilon=clip_epsilon, clip_budget=clip_budget,
            entropy_coeff=entropy_coeff, critic_coeff=critic_coeff, gamma=gamma, lmbda=lmbda,
            num_epochs=num_epochs, minibatch_size=minibatch_size, max_grad_norm=max_grad_norm,
            max_skips_in_a_row=max_skips_in_a_row,
        )
        super().__init__(total_frames)
        self.save_hyperparameters_with(env_spec)
        self.env_spec = env_spec
        self.actor = build_actor(env_spec, actor_cells, share_actor_params, ACTIVATIONS[activation])
        self.critic = self.make_critic()
        self.loss_module = self.make_loss()
        self.health = NonFiniteGuard(on_nonfinite, max_skips_in_a_row)
        # Turned on by callbacks.TrustRegionMonitor: D_TV and the joint ratio's range each iteration.
        self.trust_region_stats = False
        self.compiled_networks: int | None = None  # how many compile_networks compiled (None: not yet)

    @property
    def clip_epsilon(self) -> float:
        """The clip range in use: α/N with agent-scaled clipping (``clip_budget`` α, N agents), else ε."""
        budget = self.hparams.clip_budget
        return budget / self.env_spec.n_agents if budget is not None else self.hparams.clip_epsilon

    @property
    def policy(self) -> torch.nn.Module:
        """The stochastic policy the collector acts with (weights shared, never copied)."""
        return self.actor

    # ----------------------------------------------------------------- extension points
    def make_critic(self) -> torch.nn.Module:
        """The critic network: V_i, centralised or not per ``centralised_critic``. Override for others."""
        hp = self.hparams
        return build_critic(
            self.env_spec, hp.critic_cells, hp.share_critic_params, self.centralised_critic,
            ACTIVATIONS[hp.activation],
        )

    def make_loss(self) -> MultiAgentPPOLoss:
        """The algorithm's objective. Override in a subclass to change the policy update."""
        return MultiAgentPPOLoss(self.actor, self.critic, **self.loss_kwargs())

    def loss_kwargs(self) -> dict[str, object]:
        """The coefficients every PPO-family loss takes (clip range, entropy and value weights)."""
        hp = self.hparams
        return {"clip_epsilon": self.clip_epsilon, "entropy_coeff": hp.entropy_coeff,
                "critic_coeff": hp.critic_coeff, "loss_critic_type": hp.loss_critic_type}

    @torch.no_grad()
    def compute_advantages(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        """Write ``("agents", "advantage")`` and ``("agents", "value_target")`` by GAE from the critic's
        values (``objectives.write_gae``); return the estimator's own statistics (none here).
        Shapes: batch [B, T]; writes [B, T, A, 1]."""
        value = self.critic(batch).get(keys.STATE_VALUE)  # [B, T, A, 1]
        next_value = self.critic(batch.get(keys.NEXT)).get(keys.STATE_VALUE)
        write_gae(batch, value, next_value, gamma=self.hparams.gamma, lmbda=self.hparams.lmbda)
        return {}

    def update_phases(self, flat: TensorDictBase) -> Iterator[UpdatePhase]:
        """The update's shape: here one phase, every policy and the critic on the joint loss at once.

        A generator: code after a ``yield`` runs once that phase's epochs are done (sequential updates).
        """
        parameters = [*self.actor.parameters(), *self.critic.parameters()]
        yield UpdatePhase(self.loss_module, parameters, self.optimizers().optimizer)

    @override
    def configure_optimizers(self) -> torch.optim.Optimizer:
        # The fused kernel (one call for all parameters) is the fastest Adam on CPU and CUDA alike.
        parameters = [*self.actor.parameters(), *self.critic.parameters()]
        return torch.optim.Adam(parameters, lr=self.hparams.lr, eps=self.hparams.adam_eps, fused=True)

    # ----------------------------------------------------------------- the iteration
    @override
    def setup(self, stage: str) -> None:
        check_strategy(self.trainer, self)
        if self.compiled_networks is None:  # after the subclass's constructor: every network exists
            self.compiled_networks = compile_networks(self, self.hparams.compile_networks)

    @override
    def run_iteration(self, dataloader_iter: Iterator) -> Iteration:
        rollout: Rollout = next(dataloader_iter)[0]
        batch = rollout.batch.to(self.device)  # [B, T]
        frames = batch.numel() * world_size()  # every rank collected as many
        start = time.perf_counter()
        if not self.health.on_data(nonfinite_data(batch), iteration=int(self.iterations) + 1):
            # A skipped iteration: its frames are spent, nothing is learnt from them.
            statistics = {"collect_s": torch.tensor(rollout.collect_s), **skip_counts(1, 0)}
            return Iteration(frames=frames, statistics=statistics)
        statistics = self.compute_advantages(batch)
        flat = self.training_batch(batch)  # [N]
        advantages_done = time.perf_counter()
        statistics |= self.optimise(flat)
        optimise_done = time.perf_counter()
        statistics |= self.iteration_statistics(flat)
        end = time.perf_counter()
        statistics |= metrics.iteration_times(
            rollout.collect_s, (start, advantages_done, optimise_done, end), frames
        )
        returns = finished_episode_returns(batch)  # [episodes, A]
        statistics["return_mean"] = metrics.ratio(returns.sum(), returns.numel())
        if world_size() > 1:  # 0 while every rank holds the same parameters and buffers (β, counters)
            statistics["param_checksum"] = parameter_checksum(self)
        return Iteration(frames=frames, statistics=statistics)

    def training_batch(self, batch: TensorDictBase) -> TensorDictBase:
        """The keys the update reads, flattened over envs and time (``update.flatten_for_update``).
        Shapes: batch [B, T] -> [B·T]."""
        check_minibatching(self.hparams.minibatch_size, batch.numel())
        return flatten_for_update(batch, bool(self.env_spec.state_dim), self.hparams.normalise_advantage)

    def optimise(self, flat: TensorDictBase) -> dict[str, torch.Tensor]:
        """Each phase's ``num_epochs`` passes of shuffled minibatches; returns the record's statistics.

        Shapes:
            flat [N] -> ratio_min/ratio_max [num_epochs, A]; approx_kl, clip_fraction [A]; losses scalar.
        """
        hp = self.hparams
        iteration = int(self.iterations) + 1
        record = UpdateRecord(hp.num_epochs, self.env_spec.n_agents, flat.device)
        guard = self.health.update_guard(iteration)
        for phase in self.update_phases(flat):
            for epoch in range(hp.num_epochs):
                for index in torch.randperm(flat.shape[0], device=flat.device).split(hp.minibatch_size):
                    out = phase.objective(flat[index])
                    loss = total_loss(out)
                    permits = partial(guard.permits_step, out, loss, epoch, phase.agent)
                    self.gradient_step(loss, phase, permits)
                    record.add(out, epoch, phase.agent)
        self.health.after_update(guard, iteration)  # raises for NaN/Inf unless skipping
        statistics = record.statistics()
        if guard.skip:
            statistics |= skip_counts(0, guard.skipped)
        return statistics

    def gradient_step(
        self, loss: torch.Tensor, phase: UpdatePhase, permits: Callable[[torch.Tensor], bool]
    ) -> None:
        """Backward, gradient all-reduce and norm clip over the phase's parameters, then one optimiser step
        if ``permits(gradient norm)`` (``health.UpdateGuard``: all but NaN/Inf minibatches when skipping).

        Lightning's optimiser and backward wrappers are bypassed on purpose: at 150 steps an iteration
        their per-call overhead is a measurable share of the update (see benchmarks/speed_mappo.py).
        """
        phase.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        all_reduce_gradients(phase.parameters)  # no-op in a single process
        norm = torch.nn.utils.clip_grad_norm_(phase.parameters, self.hparams.max_grad_norm, foreach=True)
        if permits(norm):
            (phase.step or phase.optimizer.step)()

    @torch.no_grad()
    def iteration_statistics(self, flat: TensorDictBase) -> dict[str, torch.Tensor]:
        """How far the updated policy moved from the collecting one on the whole iteration, per agent
        (``objectives.policy_movement``: exact KL and entropy; D_TV, its sum and the joint ratio's range
        with ``trust_region_stats``, which ``callbacks.TrustRegionMonitor`` turns on).
        Shapes: flat [N] -> kl, entropy, tv [A]; tv_sum and the joint ratio range scalars."""
        td = flat.select(keys.OBSERVATION).copy()
        dist = self.actor.get_dist(td)  # writes the updated policy's parameters into td
        entropy = self.loss_module.entropy(dist)  # [N, A]
        return policy_movement(flat, td, dist, entropy, with_trust_region=self.trust_region_stats)

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["health"] = self.health.state_dict()

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.health.load_state_dict(checkpoint.get("health", {}))

    # ----------------------------------------------------------------- evaluation
    @override
    def validation_step(self, batch: TensorDictBase, batch_idx: int) -> None:
        log_evaluation(self, batch)

    @override
    def test_step(self, batch: TensorDictBase, batch_idx: int) -> None:
        log_evaluation(self, batch)
