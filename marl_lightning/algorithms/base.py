"""Shared machinery of every on-policy multi-agent algorithm: networks, GAE, minibatching, logging.

The extension point is :meth:`MultiAgentPPOModule.make_loss`: an algorithm returns its
:class:`~marl_lightning.objectives.MultiAgentPPOLoss` subclass and inherits everything else. Algorithms
that estimate advantages differently override :meth:`compute_advantages`.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import time
from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any, ClassVar

import lightning.pytorch as pl
import numpy as np
import torch
from tensordict import TensorDictBase
from typing_extensions import override

from marl_lightning import keys
from marl_lightning.algorithms.validation import check_minibatching
from marl_lightning.data.rollout import finished_episode_returns
from marl_lightning.distributed import RolloutDDPStrategy, all_reduce_gradients, reduce, world_size
from marl_lightning.envs.base import EnvSpec
from marl_lightning.errors import ConfigError
from marl_lightning.models import build_actor, build_critic
from marl_lightning.objectives import (
    PARAM_KEYS,
    MultiAgentPPOLoss,
    agent_mask,
    gae,
    kl_divergence,
    masked_mean_per_agent,
    policy_params,
    standardise_per_agent,
    total_variation,
)
from marl_lightning.objectives.ppo import LossCriticType

_TRAIN_KEYS = (
    keys.OBSERVATION,
    keys.ACTION,
    keys.ACTION_LOG_PROB,
    keys.ADVANTAGE,
    keys.VALUE_TARGET,
)


def _sum_and_count(returns: torch.Tensor) -> tuple[float, int]:
    """Sum and number of entries over all ranks (every rank takes part, with or without episodes)."""
    stats = torch.stack([returns.sum(), torch.tensor(float(returns.numel()), device=returns.device)])
    total, count = reduce(stats.double(), "sum").tolist()
    return total, int(count)


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"model.{name} must be > 0, got {value}. Pass e.g. --model.{name} <positive>.")


def _unit_interval(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"model.{name} must lie in [0, 1], got {value}.")


class MultiAgentPPOModule(pl.LightningModule):
    """On-policy multi-agent PPO: one Lightning batch is one collected iteration.

    ``training_step`` estimates advantages under ``no_grad`` (GAE), standardises them per agent, then runs
    ``num_epochs`` passes of minibatches of ``minibatch_size`` frames with manual optimisation, and
    returns the iteration's diagnostics (per-agent KL and ratio ranges) for callbacks.

    Args:
        env_spec: sizes from the env (required; the CLI links it from the data module).
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
        share_actor_params: one policy network for all agents.
        share_critic_params: one critic network for all agents.
    """

    centralised_critic: ClassVar[bool] = True
    # The action kinds an algorithm can train; an env of another kind is refused at construction.
    action_kinds: ClassVar[tuple[str, ...]] = ("discrete", "continuous")

    def __init__(
        self,
        env_spec: EnvSpec | None = None,
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
        share_actor_params: bool = True,
        share_critic_params: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(env_spec, dict):  # hparams of a checkpoint
            env_spec = EnvSpec(**env_spec)
        if env_spec is None:
            raise ConfigError(
                f"{type(self).__name__} needs env_spec, the sizes of the env: pass "
                "RolloutDataModule(...).env_spec (the CLI links it from the data module)."
            )
        kind = "continuous" if env_spec.continuous else "discrete"
        if kind not in self.action_kinds:
            raise ConfigError(
                f"{type(self).__name__} cannot handle the {kind} actions of task {env_spec.name!r}: it "
                f"supports {' and '.join(self.action_kinds)} actions. Choose a task with such actions or "
                "another algorithm."
            )
        if clip_budget is not None:
            _positive("clip_budget", clip_budget)
        for name, value in (("lr", lr), ("clip_epsilon", clip_epsilon), ("max_grad_norm", max_grad_norm),
                            ("adam_eps", adam_eps)):
            _positive(name, value)
        for name, value in (("num_epochs", num_epochs), ("minibatch_size", minibatch_size)):
            if value < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {value}.")
        _unit_interval("gamma", gamma)
        _unit_interval("lmbda", lmbda)
        if entropy_coeff < 0 or critic_coeff < 0:
            raise ConfigError(
                f"model.entropy_coeff ({entropy_coeff}) and model.critic_coeff ({critic_coeff}) must be >= 0."
            )
        self.save_hyperparameters(ignore=["env_spec"])
        # Logged with the run (Lightning logs the initial hparams) and kept in checkpoints.
        derived = {"env_spec": dataclasses.asdict(env_spec)}
        self.hparams.update(derived)
        self._hparams_initial.update(copy.deepcopy(derived))
        self.automatic_optimization = False

        self.env_spec = env_spec
        self.actor = build_actor(env_spec, actor_cells, share_actor_params)
        self.critic = self.make_critic()
        self.loss_module = self.make_loss()
        # Turned on by callbacks.TrustRegionMonitor: D_TV, clip fraction and joint ratio each iteration.
        self.trust_region_stats = False
        self.register_buffer("frames", torch.zeros((), dtype=torch.long))
        self.register_buffer("iterations", torch.zeros((), dtype=torch.long))

    @property
    def algorithm_label(self) -> str:
        """Name in MLflow experiment/run names and checkpoint folders (``mappo`` in ``mappo-navigation``)."""
        return type(self).__name__.lower()

    @property
    def clip_epsilon(self) -> float:
        """The clip range in use: α/N with agent-scaled clipping (``clip_budget`` α, N agents), else ε."""
        budget = self.hparams.clip_budget
        return budget / self.env_spec.n_agents if budget is not None else self.hparams.clip_epsilon

    # ----------------------------------------------------------------- extension points
    def make_critic(self) -> torch.nn.Module:
        """The critic network: V_i, centralised or not per ``centralised_critic``. Override for others."""
        hp = self.hparams
        return build_critic(self.env_spec, hp.critic_cells, hp.share_critic_params, self.centralised_critic)

    def make_loss(self) -> MultiAgentPPOLoss:
        """The algorithm's objective. Override in a subclass to change the policy update."""
        return MultiAgentPPOLoss(self.actor, self.critic, **self.loss_kwargs())

    def loss_kwargs(self) -> dict[str, Any]:
        """The coefficients every PPO-family loss takes (clip range, entropy and value weights)."""
        hp = self.hparams
        return {
            "clip_epsilon": self.clip_epsilon,
            "entropy_coeff": hp.entropy_coeff,
            "critic_coeff": hp.critic_coeff,
            "loss_critic_type": hp.loss_critic_type,
        }

    @torch.no_grad()
    def compute_advantages(self, batch: TensorDictBase) -> TensorDictBase:
        """Write ``("agents", "advantage")`` and ``("agents", "value_target")`` by GAE.

        Shapes:
            batch [B, T]; writes [B, T, A, 1].
        """
        value = self.critic(batch).get(keys.STATE_VALUE)
        next_value = self.critic(batch.get(keys.NEXT)).get(keys.STATE_VALUE)
        done = batch.get(keys.nxt(keys.DONE))
        terminated = batch.get(keys.nxt(keys.TERMINATED))
        next_present = agent_mask(batch.get(keys.NEXT))  # [B, T, A] or None
        if next_present is not None:  # an agent gone at t+1 ended its episode at t: no bootstrap from it
            gone = ~next_present.unsqueeze(-1)
            done, terminated = done | gone, terminated | gone
        advantage, value_target = gae(
            reward=batch.get(keys.nxt(keys.REWARD)),
            done=done,
            terminated=terminated,
            value=value,
            next_value=next_value,
            gamma=self.hparams.gamma,
            lmbda=self.hparams.lmbda,
        )
        present = agent_mask(batch)
        if present is not None:  # absent agents' entries are left out of every loss; keep them finite
            advantage = torch.where(present.unsqueeze(-1), advantage, 0.0)
            value_target = torch.where(present.unsqueeze(-1), value_target, 0.0)
        batch.set(keys.ADVANTAGE, advantage)
        batch.set(keys.VALUE_TARGET, value_target)
        return batch

    # ----------------------------------------------------------------- Lightning API
    @property
    def policy(self) -> torch.nn.Module:
        """The stochastic policy the collector acts with (weights shared, never copied)."""
        return self.actor

    @override
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        frames_per_batch = getattr(datamodule, "frames_per_batch", None)
        if stage == "fit" and frames_per_batch is not None:
            check_minibatching(self.hparams.minibatch_size, frames_per_batch)
        if self.trainer.world_size > 1 and not isinstance(self.trainer.strategy, RolloutDDPStrategy):
            raise ConfigError(
                f"trainer.strategy: {type(self.trainer.strategy).__name__} with {self.trainer.world_size} "
                "processes would synchronise one gradient of the many in an on-policy update. Use "
                "--trainer.strategy rollout_ddp (the CLI maps 'ddp' to it)."
            )

    @override
    def on_fit_start(self) -> None:
        for logger in self.loggers:
            logger.log_hyperparams({"algorithm": type(self).__name__})

    @override
    def configure_optimizers(self) -> torch.optim.Optimizer:
        self._trainable = [*chain(self.actor.parameters(), self.critic.parameters())]
        # The fused kernel (one call for all parameters) is the fastest Adam on CPU and CUDA alike.
        return torch.optim.Adam(self._trainable, lr=self.hparams.lr, eps=self.hparams.adam_eps, fused=True)

    def _train_keys(self, batch: TensorDictBase) -> list:
        extra = [keys.STATE] if self.env_spec.state_dim else []
        if agent_mask(batch) is not None:
            extra.append(keys.MASK)
        present = batch.keys(True)
        extra += [key for key in PARAM_KEYS if key in present]  # the collecting policy's parameters
        return [*_TRAIN_KEYS, *extra]

    @override
    def training_step(self, dataloader_iter: Iterator) -> dict[str, torch.Tensor]:
        # Taking the iterator (not a batch) stops Lightning from prefetching: the next iteration must be
        # collected by the policy this step produces, or the data would be off-policy.
        batch, _, _ = next(dataloader_iter)
        batch = batch.to(self.device)  # [B, T]
        start = time.perf_counter()
        frames_this_iteration = batch.numel()
        self.compute_advantages(batch)
        flat = batch.select(*self._train_keys(batch)).reshape(-1)  # [N, A]
        if self.hparams.normalise_advantage:
            flat.set(keys.ADVANTAGE, standardise_per_agent(flat.get(keys.ADVANTAGE), mask=agent_mask(flat)))
        epoch_stats = self.optimise(flat)
        after = self.iteration_statistics(flat)
        update_s = time.perf_counter() - start

        self.frames += frames_this_iteration * world_size()  # every rank collected as many
        self.iterations += 1
        collect_s = getattr(self.trainer.datamodule, "last_collect_s", 0.0)
        after, epoch_stats = self._reduce_over_ranks(after, epoch_stats)
        self._log_iteration(batch, epoch_stats, after, collect_s, update_s, frames_this_iteration)
        if int(self.frames) >= self.trainer.datamodule.total_frames:
            self.trainer.should_stop = True
        return {**after, **epoch_stats}

    @staticmethod
    def _reduce_over_ranks(
        after: dict[str, torch.Tensor], epoch_stats: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Statistics that callbacks decide on are the same on every rank (means; min/max of ratios)."""
        if world_size() == 1:
            return after, epoch_stats
        after = {
            name: reduce(value, {"joint_ratio_min": "min", "joint_ratio_max": "max"}.get(name, "mean"))
            for name, value in after.items()
        }
        epoch_stats = {
            name: reduce(value, {"ratio_min": "min", "ratio_max": "max"}.get(name, "mean"))
            for name, value in epoch_stats.items()
        }
        return after, epoch_stats

    def optimise(self, flat: TensorDictBase) -> dict[str, torch.Tensor]:
        """``num_epochs`` passes of shuffled minibatches; returns per-epoch ratio ranges and mean losses.

        Shapes:
            flat [N, A] -> ratio_min/ratio_max [num_epochs, A]; losses scalar.
        """
        hp = self.hparams
        n = flat.shape[0]
        ratio_min, ratio_max, losses = [], [], []
        for _ in range(hp.num_epochs):
            mins, maxs = [], []
            for index in torch.randperm(n, device=flat.device).split(hp.minibatch_size):
                out = self.loss_module(flat[index])
                self.gradient_step(out["loss_objective"] + out["loss_critic"] + out["loss_entropy"])
                mins.append(out["ratio_min"])
                maxs.append(out["ratio_max"])
                losses.append(
                    torch.stack([out["loss_objective"], out["loss_critic"], out["loss_entropy"]]).detach()
                )
            ratio_min.append(torch.stack(mins).amin(0))
            ratio_max.append(torch.stack(maxs).amax(0))
        mean_losses = torch.stack(losses).mean(0)
        return {
            "ratio_min": torch.stack(ratio_min),  # [num_epochs, A]
            "ratio_max": torch.stack(ratio_max),  # [num_epochs, A]
            "loss_policy": mean_losses[0],
            "loss_value": mean_losses[1],
            "loss_entropy": mean_losses[2],
        }

    def gradient_step(self, loss: torch.Tensor) -> None:
        """Backward, gradient-norm clip and one Adam step on the raw torch optimiser.

        Lightning's optimiser and backward wrappers are bypassed on purpose: at 150 steps an iteration
        their per-call overhead is a measurable share of the update (see benchmarks/speed_mappo.py).
        """
        optimizer = self.optimizers().optimizer
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        all_reduce_gradients(self._trainable)  # no-op in a single process
        torch.nn.utils.clip_grad_norm_(self._trainable, self.hparams.max_grad_norm, foreach=True)
        optimizer.step()

    @torch.no_grad()
    def iteration_statistics(self, flat: TensorDictBase) -> dict[str, torch.Tensor]:
        """Per-agent divergence of the updated policy from the collecting one, on the whole iteration.

        Always: ``kl``, the exact average KL(π_old ‖ π_new) per agent (``divergences.kl_divergence``), and
        ``entropy`` (exact, or −log π of a fresh sample for a tanh-Gaussian). With
        ``trust_region_stats`` on (``callbacks.TrustRegionMonitor`` turns it on) also, per agent: ``tv``,
        the average D_TV(π_old, π_new) (exact for discrete actions, Proposition 5.1 of paper 004;
        estimated for continuous ones, see ``divergences.total_variation``), ``clip_fraction`` (ratios
        outside [1 − ε, 1 + ε] after the update) and, over the joint policy, ``joint_ratio_min`` /
        ``joint_ratio_max`` of Π_i r_i.

        Shapes:
            flat [N, A] -> kl, entropy, tv, clip_fraction [A]; joint ratio range scalars.
        """
        old = policy_params(flat)
        td = flat.select(keys.OBSERVATION).copy()
        dist = self.actor.get_dist(td)
        mask = agent_mask(flat)
        stats = {
            "kl": masked_mean_per_agent(kl_divergence(old, policy_params(td)), mask),
            "entropy": masked_mean_per_agent(self.loss_module.entropy(dist), mask),
        }
        if self.trust_region_stats:
            log_ratio = dist.log_prob(flat.get(keys.ACTION)) - flat.get(keys.ACTION_LOG_PROB)  # [N, A]
            if mask is not None:
                log_ratio = torch.where(mask, log_ratio, 0.0)
            joint_ratio = log_ratio.sum(-1).exp()  # [N]
            eps = self.loss_module.clip_epsilon
            stats |= {
                "tv": masked_mean_per_agent(total_variation(old, policy_params(td), log_ratio), mask),
                "clip_fraction": masked_mean_per_agent(((log_ratio.exp() - 1).abs() > eps).float(), mask),
                "joint_ratio_min": joint_ratio.min(),
                "joint_ratio_max": joint_ratio.max(),
            }
        return stats

    def _log_iteration(
        self,
        batch: TensorDictBase,
        epoch_stats: dict[str, torch.Tensor],
        after: dict[str, torch.Tensor],
        collect_s: float,
        update_s: float,
        frames_this_iteration: int,
    ) -> None:
        frames = float(self.frames)
        self.log("step", frames, batch_size=1)
        self.log("train/frames", frames, prog_bar=True, batch_size=1)
        frames_per_s = frames_this_iteration * world_size() / max(collect_s + update_s, 1e-9)
        self.log("perf/frames_per_s", frames_per_s, prog_bar=True, batch_size=1)
        total, count = _sum_and_count(finished_episode_returns(batch))
        if count > 0:
            self.log("train/return_mean", total / count, prog_bar=True, batch_size=1)
        metrics = {
            "perf/collect_s": collect_s,
            "perf/update_s": update_s,
            "train/iterations": float(self.iterations),
            "loss/policy": epoch_stats["loss_policy"],
            "loss/value": epoch_stats["loss_value"],
            "loss/entropy": epoch_stats["loss_entropy"],
            "train/entropy": after["entropy"].mean(),
        }
        for i, kl in enumerate(after["kl"].tolist()):
            metrics[f"tr/kl/agent_{i}"] = kl
        for k, (lo, hi) in enumerate(
            zip(epoch_stats["ratio_min"].amin(-1).tolist(), epoch_stats["ratio_max"].amax(-1).tolist(),
                strict=True)
        ):
            metrics[f"tr/ratio_min/epoch_{k}"] = lo
            metrics[f"tr/ratio_max/epoch_{k}"] = hi
        if world_size() > 1:
            checksum = torch.stack([p.detach().double().sum() for p in self._trainable]).sum()
            metrics["dist/param_divergence"] = float(reduce(checksum, "max") - reduce(checksum, "min"))
        self.log_dict(metrics, batch_size=1)

    @override
    def validation_step(self, batch: TensorDictBase, batch_idx: int) -> None:
        self._log_evaluation(batch)

    @override
    def test_step(self, batch: TensorDictBase, batch_idx: int) -> None:
        self._log_evaluation(batch)

    def _log_evaluation(self, batch: TensorDictBase) -> None:
        returns = finished_episode_returns(batch, first_only=True)  # [episodes, A]
        total, count = _sum_and_count(returns)
        if count == 0:
            raise RuntimeError(
                "evaluation finished no episode: the env has no max_steps and never ended an episode."
            )
        episodes = float(reduce(torch.tensor(float(returns.shape[0]), device=self.device), "sum"))
        # Already reduced over ranks; sync_dist (a mean of equal values) only keeps Lightning quiet.
        sync = world_size() > 1
        self.log("step", float(self.frames), batch_size=1, sync_dist=sync)
        self.log("eval/return_mean", total / count, prog_bar=True, batch_size=1, sync_dist=sync)
        self.log("eval/episodes", episodes, batch_size=1, sync_dist=sync)
        env_factory = getattr(getattr(self.trainer, "datamodule", None), "env_factory", None)
        if env_factory is not None:
            for name, value in env_factory.evaluation_metrics(self.policy, total / count).items():
                self.log(name, value, batch_size=1, sync_dist=sync)

    # ----------------------------------------------------------------- checkpoints
    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Tensors and plain python values only, so checkpoints load with torch.load(weights_only=True).
        name, mt_keys, pos, has_gauss, cached = np.random.get_state()
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "numpy": {"name": name, "keys": torch.from_numpy(mt_keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": random.getstate(),
        }

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if states:
            torch.set_rng_state(states["torch"])
            numpy_state = states["numpy"]
            np.random.set_state((
                numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                numpy_state["has_gauss"], numpy_state["cached_gaussian"],
            ))
            random.setstate(states["python"])
