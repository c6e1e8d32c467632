"""Pessimistic off-policy multi-agent PPO for tabular games (paper 002, Section 5, Algorithm 2)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from typing_extensions import override

from marl_lightning import tabular
from marl_lightning.data.seeding import derived_seed
from marl_lightning.envs.base import EnvSpec
from marl_lightning.errors import ConfigError


class PessimisticSequentialPPO(pl.LightningModule):
    """Algorithm 2 of paper 002 on a tabular game with one-hot features (the linear class is then exact).

    Each iteration k, for agents m = 1..N in order: query the sampling oracle ``n_samples`` times
    (Definition 5.3: s uniform, a^{1:m} uniform, the later agents follow π), evaluate pessimistically
    (line 4, ``tabular.pessimistic_evaluation``: the table f minimising f(s0, π^{1:m}) + λ·E^{1:m}(f, π))
    and take the mirror-descent step θ^m ← θ^m + η·f (line 5). Policies are softmax tables, agent m's
    conditioned on the earlier agents' actions. Frames count oracle queries.

    Applies to envs with a known tabular model (``tabular_model()``): the ratio game, and the stochastic game
    at small sizes (|S|·H·|A|^N ≤ 4096 cells, e.g. 2 states, 2 agents, 2 actions, horizon 3). It refuses
    anything else (VMAS, PettingZoo, a large stochastic game) with an error saying why.

    Logged per iteration: ``eval/value`` (the exact J(π) of the current joint policy), for the ratio game
    also ``eval/ratio_game_value``, for the stochastic game ``eval/optimality_gap``; per agent
    ``pess/pessimism/agent_{m}``, the estimate f(s0, π^{1:m}) minus the true Q^{1:m}(s0, π^{1:m}) (≤ 0 when
    the evaluation is pessimistic).

    Args:
        env_spec: sizes from the env (linked by the CLI).
        eta: the mirror-descent step size η.
        lam: λ, the weight of the Bellman error against the pessimistic term.
        n_samples: oracle queries per agent and iteration.
    """

    def __init__(
        self, env_spec: EnvSpec | None = None, eta: float = 1.0, lam: float = 10.0, n_samples: int = 2000
    ) -> None:
        super().__init__()
        if isinstance(env_spec, dict):
            env_spec = EnvSpec(**env_spec)
        if env_spec is None:
            raise ConfigError("PessimisticSequentialPPO needs env_spec (the CLI links it from the data).")
        if not (eta > 0 and lam > 0 and n_samples >= 1):
            raise ConfigError(f"model: eta ({eta}) and lam ({lam}) must be > 0, n_samples ({n_samples}) ≥ 1.")
        self.save_hyperparameters(ignore=["env_spec"])
        self.hparams["env_spec"] = dataclasses.asdict(env_spec)
        self.env_spec = env_spec
        self.automatic_optimization = False
        self.register_buffer("frames", torch.zeros((), dtype=torch.long))
        self.register_buffer("iterations", torch.zeros((), dtype=torch.long))
        self.game: tabular.TabularGame | None = None
        self.thetas: list[torch.Tensor] = []

    @property
    def algorithm_label(self) -> str:
        return "seqppo_pessimistic"

    @override
    def setup(self, stage: str) -> None:
        factory = getattr(getattr(self.trainer, "datamodule", None), "env_factory", None)
        model = getattr(factory, "tabular_model", None)
        if model is None:
            raise ConfigError(
                "PessimisticSequentialPPO runs on tabular games whose tables are known (the ratio game, a "
                f"small stochastic game); {type(factory).__name__} has none. Use conf/seqppo.yaml there."
            )
        self.game = model()
        self.game.check_size()
        n, n_states = self.game.n_actions, self.game.n_states
        for m in range(self.game.n_agents):
            name = f"theta_{m}"
            if not hasattr(self, name):  # zero logits: uniform policies (Algorithm 2, line 1)
                self.register_buffer(name, torch.zeros(n_states, n**m, n, dtype=torch.float64))
        self.thetas = [getattr(self, f"theta_{m}") for m in range(self.game.n_agents)]

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        for name, value in checkpoint["state_dict"].items():
            if name.startswith("theta_") and not hasattr(self, name):
                self.register_buffer(name, torch.zeros_like(value))

    @override
    def configure_optimizers(self) -> None:
        return None

    @override
    def training_step(self, dataloader_iter: Iterator) -> None:
        # The collector is never consumed: the oracle (Definition 5.3) replaces trajectories here.
        hp, game = self.hparams, self.game
        rank = self.trainer.global_rank
        generator = torch.Generator().manual_seed(
            derived_seed(self.trainer.datamodule.seed, rank, int(self.iterations))
        )
        metrics = {}
        for m in range(1, game.n_agents + 1):
            data = tabular.sample_oracle(game, self.thetas, m, hp.n_samples, generator)
            f = tabular.pessimistic_evaluation(game, self.thetas, m, data, hp.lam)
            prefix = tabular.prefix_probs(self.thetas, m)
            estimate = float((game.initial.unsqueeze(-1) * prefix * f).sum())
            true_q = tabular.prefix_q(game, self.thetas, m)  # [S, n^m]
            truth = float((game.initial.unsqueeze(-1) * prefix * true_q).sum())
            metrics[f"pess/pessimism/agent_{m - 1}"] = estimate - truth
            self.thetas[m - 1].copy_(tabular.improve(self.thetas[m - 1], f, hp.eta))
        self.frames += game.n_agents * hp.n_samples
        self.iterations += 1
        value = tabular.joint_value(game, self.thetas)
        metrics |= {"eval/value": value, "train/iterations": float(self.iterations)}
        factory = self.trainer.datamodule.env_factory
        if factory.name == "ratio_game":
            metrics["eval/ratio_game_value"] = value
        if hasattr(factory, "optimal_return"):
            metrics["eval/optimality_gap"] = factory.optimal_return() - value
        self.log("step", float(self.frames), batch_size=1)
        self.log("train/frames", float(self.frames), prog_bar=True, batch_size=1)
        self.log_dict(metrics, batch_size=1, prog_bar=False)
        if int(self.frames) >= self.trainer.datamodule.total_frames:
            self.trainer.should_stop = True

    @override
    def validation_step(self, *args: Any, **kwargs: Any) -> None:
        raise ConfigError(
            "PessimisticSequentialPPO logs the exact value of its policy (eval/value) every iteration of "
            "fit; it has no sampled evaluation (validate/test). Keep --trainer.limit_val_batches 0."
        )
