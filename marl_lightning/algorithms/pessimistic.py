"""Pessimistic off-policy multi-agent PPO for tabular games (paper 002, Section 5, Algorithm 2)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import torch
from typing_extensions import override

from marl_lightning.algorithms import metrics
from marl_lightning.algorithms.iteration import Iteration, IterationModule, env_spec_of
from marl_lightning.core.errors import ConfigError
from marl_lightning.data.seeding import derived_seed, run_seed
from marl_lightning.envs.base import EnvSpec
from marl_lightning.exact import tabular


class PessimisticSequentialPPO(IterationModule):
    """Algorithm 2 of paper 002 on a tabular game with one-hot features (the linear class is then exact).

    Each iteration k, for agents m = 1..N in order: query the sampling oracle ``n_samples`` times
    (Definition 5.3: s uniform, a^{1:m} uniform, the later agents follow π), evaluate pessimistically
    (line 4, ``tabular.pessimistic_evaluation``: the table f in the class's bounds minimising f(s0, π^{1:m})
    + λ·E^{1:m}(f, π)) and take the mirror-descent step θ^m ← θ^m + η·f (line 5). Policies are softmax
    tables, agent m's conditioned on the earlier agents' actions. Frames count oracle queries.

    ``evaluate_under``: ``start`` (default, the paper's) evaluates every agent's Q^{1:m} under π_{θ_k}, the
    policies the iteration started from; ``updated`` evaluates agent m with agents 1..m−1 already at
    θ_{k+1} (a Gauss–Seidel variant).

    Applies to envs with a known tabular model (``tabular_model()``): the ratio game, and the stochastic game
    at small sizes (|S|·H·|A|^N ≤ 4096 cells, e.g. 2 states, 2 agents, 2 actions, horizon 3). It refuses
    anything else (VMAS, PettingZoo, a large stochastic game) with an error saying why.

    Logged per iteration: ``eval/value`` (the exact J(π) of the current joint policy), the env's own figures
    of that value (``EnvFactory.exact_value_metrics``: ``eval/ratio_game_value``, ``eval/optimality_gap``),
    and per agent ``pess/pessimism/agent_{m}``, the estimate f(s0, π^{1:m}) minus the true
    Q^{1:m}(s0, π^{1:m}) (≤ 0 when the evaluation is pessimistic).

    Args:
        env_spec: sizes from the env (linked by the CLI).
        total_frames: the budget, in oracle queries.
        eta: the mirror-descent step size η.
        lam: λ, the weight of the Bellman error against the pessimistic term.
        n_samples: oracle queries per agent and iteration.
        evaluate_under: ``start`` or ``updated`` (above).
    """

    statistics = {
        **IterationModule.statistics,
        "value": metrics.Statistic("eval/value"),
        "pessimism": metrics.Statistic("pess/pessimism/agent_{}"),
    }
    single_process_reason = (
        "it is an exact tabular method; its oracle samples and tables are per process, so each rank "
        "would take its own steps."
    )

    def __init__(
        self,
        env_spec: EnvSpec | None = None,
        total_frames: int = 200_000,
        eta: float = 1.0,
        lam: float = 10.0,
        n_samples: int = 2000,
        evaluate_under: Literal["start", "updated"] = "start",
    ) -> None:
        env_spec = env_spec_of(env_spec, type(self).__name__)
        if not (eta > 0 and lam > 0 and n_samples >= 1 and total_frames >= 1):
            raise ConfigError(
                f"model: eta ({eta}) and lam ({lam}) must be > 0, n_samples ({n_samples}) and total_frames "
                f"({total_frames}) ≥ 1."
            )
        super().__init__(total_frames)
        self.save_hyperparameters_with(env_spec)
        self.env_spec = env_spec
        self.game: tabular.TabularGame | None = None
        self.thetas: list[torch.Tensor] = []

    @property
    @override
    def algorithm_label(self) -> str:
        return "seqppo_pessimistic"

    @override
    def check_task(self, task: Any) -> None:
        self._game_of(task)

    def _game_of(self, task: Any) -> Any:
        """The task's tabular game, checked: a ConfigError for a task without known tables or too large."""
        model = getattr(task, "tabular_model", None)
        if model is None:
            raise ConfigError(
                "PessimisticSequentialPPO runs on tabular games whose tables are known (the ratio game, a "
                f"small stochastic game); {type(task).__name__} has none. Use conf/seqppo.yaml there."
            )
        game = model()
        game.check_size()
        return game

    @override
    def setup(self, stage: str) -> None:
        self.game = self._game_of(self.trainer.datamodule.env_factory)
        n, n_states = self.game.n_actions, self.game.n_states
        for m in range(self.game.n_agents):
            name = f"theta_{m}"
            if not hasattr(self, name):  # zero logits: uniform policies (Algorithm 2, line 1)
                self.register_buffer(name, torch.zeros(n_states, n**m, n, dtype=torch.float64))
        self.thetas = [getattr(self, f"theta_{m}") for m in range(self.game.n_agents)]

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        for name, value in checkpoint["state_dict"].items():
            if name.startswith("theta_") and not hasattr(self, name):
                self.register_buffer(name, torch.zeros_like(value))

    @override
    def configure_optimizers(self) -> None:
        return None

    @override
    def run_iteration(self, dataloader_iter: Iterator) -> Iteration:
        # The collector is never consumed: the oracle (Definition 5.3) replaces trajectories here.
        hp, game = self.hparams, self.game
        seed = derived_seed(run_seed(), self.global_rank, int(self.iterations))
        generator = torch.Generator().manual_seed(seed)
        start = [theta.clone() for theta in self.thetas]  # π_{θ_k}
        evaluated = start if hp.evaluate_under == "start" else self.thetas
        pessimism = []
        for m in range(1, game.n_agents + 1):
            data = tabular.sample_oracle(game, evaluated, m, hp.n_samples, generator)
            f = tabular.pessimistic_evaluation(game, evaluated, m, data, hp.lam)
            weight = game.initial.unsqueeze(-1) * tabular.prefix_probs(evaluated, m)  # [S, n^m]
            truth = (weight * tabular.prefix_q(game, evaluated, m)).sum()
            pessimism.append((weight * f).sum() - truth)
            self.thetas[m - 1].copy_(tabular.improve(start[m - 1], f, hp.eta))
        value = tabular.joint_value(game, self.thetas)
        return Iteration(
            frames=game.n_agents * hp.n_samples,
            statistics={"value": torch.tensor(value), "pessimism": torch.stack(pessimism)},
            metrics=self.trainer.datamodule.env_factory.exact_value_metrics(value),
        )

    @override
    def validation_step(self, *args: Any, **kwargs: Any) -> None:
        raise ConfigError(
            "PessimisticSequentialPPO logs the exact value of its policy (eval/value) every iteration of "
            "fit; it has no sampled evaluation (validate/test). Keep --trainer.limit_val_batches 0."
        )
