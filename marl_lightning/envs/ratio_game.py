"""Von Neumann's ratio game, the two-agent stochastic game of paper 002 (Zhao et al. 2023, Section 4.3 and
Appendix E; also used by Daskalakis et al. 2020), as a batched, pure-torch TorchRL env.

One state, two agents, two actions each. At every step the team receives R[a1, a2] and then the game stops
with probability S[a1, a2]. For stationary policies π1, π2 (agent 0 picks the row, agent 1 the column) the
expected undiscounted return is the ratio (paper 002, Appendix E)

    V(π1, π2) = π1ᵀ R π2 / π1ᵀ S π2,

with R = [[1, 0.5], [-0.5, 0]] and S = [[1, 1], [0.1, 0.1]]. Writing π1 = (x, 1 − x), π2 = (y, 1 − y), the
global maximum is V = 1 at x = y = 1 and the stationary point that traps independent policy gradients is
(x, y) = (0.5, 0) with V = 5/11 ≈ 0.46 (the paper's "V = 0.46"); the minimum is −5 at x = 0, y = 1.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from marl_lightning.core import keys
from marl_lightning.core.errors import ConfigError
from marl_lightning.envs.base import EnvFactory
from marl_lightning.exact.tabular import TabularGame

N_AGENTS = 2
N_ACTIONS = 2
# TorchRL's root truncation flag (done = terminated | truncated); marl_lightning.core.keys has no name
# for it yet.
TRUNCATED = "truncated"
# Paper 002, Appendix E: rows are agent 0's action a1, columns agent 1's action a2. Stored in float64 so that
# ratio_game_value is exact in float64; the env steps in float32.
REWARD_MATRIX = torch.tensor([[1.0, 0.5], [-0.5, 0.0]], dtype=torch.float64)  # R [a1, a2]
STOP_MATRIX = torch.tensor([[1.0, 1.0], [0.1, 0.1]], dtype=torch.float64)  # S [a1, a2]
# The range of V over all policy pairs: min −5 (a1 = 1, a2 = 0), max 1 (a1 = a2 = 0).
VALUE_MIN = -5.0
VALUE_MAX = 1.0


def ratio_game_value(pi1: torch.Tensor, pi2: torch.Tensor) -> torch.Tensor:
    """The exact value V(π1, π2) = π1ᵀ R π2 / π1ᵀ S π2 of a joint stationary policy (paper 002, Appendix E).

    It is the expected undiscounted episode return: each step pays r̄ = π1ᵀRπ2 in expectation and is
    reached with probability (1 − s̄)^t, s̄ = π1ᵀSπ2, so the return is r̄ Σ_t (1 − s̄)^t = r̄ / s̄.
    Leading dimensions broadcast.

    Shapes:
        pi1: [..., 2] (agent 0, the row player), pi2: [..., 2] (agent 1, the column player) -> [...].
    """
    if pi1.shape[-1] != N_ACTIONS or pi2.shape[-1] != N_ACTIONS:
        raise ValueError(
            f"ratio_game_value expects action probabilities with a last dimension of {N_ACTIONS}; got "
            f"pi1 {tuple(pi1.shape)} and pi2 {tuple(pi2.shape)}."
        )
    dtype = torch.promote_types(pi1.dtype, pi2.dtype)
    joint = pi1.to(dtype).unsqueeze(-1) * pi2.to(dtype).unsqueeze(-2)  # [..., 2, 2]: P(a1, a2)
    reward = (joint * REWARD_MATRIX.to(joint)).sum((-2, -1))  # [...]: π1ᵀ R π2
    stop = (joint * STOP_MATRIX.to(joint)).sum((-2, -1))  # [...]: π1ᵀ S π2 >= 0.1
    return reward / stop


def ratio_game_observation(device: torch.device | str = "cpu") -> torch.Tensor:
    """Each agent's (constant) observation: the one-hot index of the agent.

    The game has a single state, so the observation carries no state; it is the agent's identity so that a
    policy network shared by both agents can still give them different policies, as the paper's
    independent (x, y) parametrisation does. With one constant feature for both, a shared network would be
    confined to π1 = π2, a landscape without the stationary point the game is used to exhibit.

    Shapes:
        returns [A, F] with A = F = 2.
    """
    return torch.eye(N_AGENTS, device=device)


class RatioGame(EnvBase):
    """Von Neumann's ratio game (paper 002, Appendix E), ``num_envs`` copies stepped as one batch.

    Each step pays the team R[a1, a2] (copied to both agents), then the episode terminates with
    probability S[a1, a2] (``terminated = done = True``). An episode still running after ``max_steps``
    steps is truncated (``truncated = done = True``, ``terminated = False``), so value estimation
    bootstraps through the cut; ``truncated`` is True only when the stop draw did not already terminate it.
    Stops are drawn from the env's own ``torch.Generator``, seeded by :meth:`set_seed`. Partial resets
    through ``"_reset"`` reset the step counter of the selected envs only.

    Shapes (B = ``num_envs``):
        ("agents", "observation"): [B, 2, 2] float, the one-hot agent index (constant);
        ("agents", "action"): [B, 2] long in {0, 1}; ("agents", "reward"): [B, 2, 1] float;
        "done", "terminated", "truncated": [B, 1] bool.
    """

    def __init__(
        self, num_envs: int = 1, max_steps: int = 100, device: torch.device | str = "cpu", seed: int = 0
    ) -> None:
        super().__init__(device=device, batch_size=torch.Size([num_envs]))
        if max_steps < 1:
            raise ValueError(f"RatioGame: max_steps must be >= 1, got {max_steps}.")
        self.max_steps = max_steps
        self._reward_matrix = REWARD_MATRIX.to(self.device, torch.float32)
        self._stop_matrix = STOP_MATRIX.to(self.device, torch.float32)
        self._observation = ratio_game_observation(self.device).expand(num_envs, N_AGENTS, N_AGENTS)
        self._step_count = torch.zeros(num_envs, dtype=torch.long, device=self.device)  # [B]
        self._rng = torch.Generator(device=self.device)
        self._make_specs(num_envs)
        self.set_seed(seed)

    def _make_specs(self, num_envs: int) -> None:
        batch = (num_envs,)
        group = (num_envs, N_AGENTS)
        self.observation_spec = Composite(
            {
                keys.GROUP: Composite(
                    observation=Unbounded(shape=(*group, N_AGENTS), dtype=torch.float32, device=self.device),
                    shape=group,
                )
            },
            shape=batch,
        )
        self.action_spec = Composite(
            {
                keys.GROUP: Composite(
                    action=Categorical(N_ACTIONS, shape=group, dtype=torch.long, device=self.device),
                    shape=group,
                )
            },
            shape=batch,
        )
        self.reward_spec = Composite(
            {
                keys.GROUP: Composite(
                    reward=Unbounded(shape=(*group, 1), dtype=torch.float32, device=self.device),
                    shape=group,
                )
            },
            shape=batch,
        )
        flag = Categorical(2, shape=(*batch, 1), dtype=torch.bool, device=self.device)
        self.done_spec = Composite(
            {keys.ROOT_DONE: flag, keys.ROOT_TERMINATED: flag.clone(), TRUNCATED: flag.clone()}, shape=batch
        )

    def _set_seed(self, seed: int | None) -> None:
        if seed is None:
            self._rng.seed()
        else:
            self._rng.manual_seed(int(seed))

    def _reset(self, tensordict: TensorDictBase | None, **kwargs) -> TensorDictBase:
        reset = None if tensordict is None else tensordict.get("_reset", None)  # [B, 1] or None
        if reset is None:
            self._step_count.zero_()
        else:
            self._step_count.masked_fill_(reset.reshape(self.batch_size), 0)
        flag = torch.zeros((*self.batch_size, 1), dtype=torch.bool, device=self.device)  # [B, 1]
        return TensorDict(
            {
                keys.GROUP: self._group({"observation": self._observation.clone()}),  # [B, A, F]
                keys.ROOT_DONE: flag,
                keys.ROOT_TERMINATED: flag.clone(),
                TRUNCATED: flag.clone(),
            },
            batch_size=self.batch_size,
            device=self.device,
        )

    def _group(self, entries: dict[str, torch.Tensor]) -> TensorDict:
        # The group's batch dims are [B, A], as in VMAS, so per-agent tensors index by agent.
        return TensorDict(entries, batch_size=[*self.batch_size, N_AGENTS], device=self.device)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get(keys.ACTION)  # [B, A]
        a1, a2 = action[..., 0], action[..., 1]  # [B] each
        reward = self._reward_matrix[a1, a2]  # [B]
        stop_probability = self._stop_matrix[a1, a2]  # [B]
        # Reward first, then the stop draw: V = r̄ / s̄ (paper 002, Appendix E).
        uniform = torch.rand(stop_probability.shape, generator=self._rng, device=self.device)  # [B]
        terminated = uniform < stop_probability  # [B]
        self._step_count += 1
        truncated = (self._step_count >= self.max_steps) & ~terminated  # [B]
        return TensorDict(
            {
                keys.GROUP: self._group(
                    {
                        "observation": self._observation.clone(),  # [B, A, F]
                        "reward": reward.reshape(-1, 1, 1).expand(-1, N_AGENTS, 1).clone(),  # [B, A, 1]
                    }
                ),
                keys.ROOT_DONE: (terminated | truncated).unsqueeze(-1),  # [B, 1]
                keys.ROOT_TERMINATED: terminated.unsqueeze(-1),  # [B, 1]
                TRUNCATED: truncated.unsqueeze(-1),  # [B, 1]
            },
            batch_size=self.batch_size,
            device=self.device,
        )


class RatioGameTask(EnvFactory):
    """Von Neumann's ratio game (paper 002, Section 4.3 and Appendix E): 2 agents, 2 discrete actions.

    Evaluation also logs ``eval/ratio_game_value``, the exact value π1ᵀRπ2 / π1ᵀSπ2 of the current
    stochastic joint policy; it lies in [−5, 1] and the optimum is 1.

    Args:
        max_steps: episode cap (a truncation). Every step stops with probability >= 0.1, so an episode
            lasts at most 10 steps in expectation and is cut with probability at most 0.9^max_steps.
    """

    def __init__(self, max_steps: int = 100) -> None:
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigError(
                f"data.env.max_steps must be an integer >= 1, got {max_steps!r}. "
                "Use e.g. --data.env.init_args.max_steps 100."
            )
        self._max_steps = max_steps

    @property
    def name(self) -> str:
        return "ratio_game"

    @property
    def max_steps(self) -> int:
        return self._max_steps

    def make(self, num_envs: int, device: torch.device | str, seed: int) -> RatioGame:
        return RatioGame(num_envs=num_envs, max_steps=self._max_steps, device=device, seed=seed)

    def tabular_model(self) -> TabularGame:
        """The game for ``marl_lightning.exact.tabular``: one state, joint action j = 2·a1 + a2, reward
        R[a1, a2], continuation with probability 1 − S[a1, a2], undiscounted (the value is
        π1ᵀRπ2 / π1ᵀSπ2)."""
        return TabularGame(
            reward=REWARD_MATRIX.reshape(1, 4).clone(),
            next_prob=(1.0 - STOP_MATRIX).reshape(1, 4, 1).clone(),
            initial=torch.ones(1, dtype=torch.float64),
            n_agents=N_AGENTS,
            n_actions=N_ACTIONS,
        )

    def reference_returns(self) -> dict[str, float]:
        """The optimum 1 (paper 002, Appendix E) and the value of two uniformly random agents."""
        uniform = torch.full((N_ACTIONS,), 1.0 / N_ACTIONS, dtype=torch.float64)
        return {"optimum": 1.0, "random": float(ratio_game_value(uniform, uniform))}

    def evaluation_metrics(self, policy: torch.nn.Module, return_mean: float) -> dict[str, float]:
        """The exact value of the current stochastic joint policy (paper 002, Appendix E).

        Reads each agent's action probabilities from the policy's distribution on the constant
        observation, so the figure has no sampling noise (``return_mean``, a Monte Carlo estimate under the
        deterministic policy, is not used).
        """
        get_dist = getattr(policy, "get_dist", None)
        if get_dist is None:
            raise TypeError(
                f"RatioGameTask.evaluation_metrics needs a TorchRL ProbabilisticActor (with get_dist); got "
                f"{type(policy).__name__}."
            )
        parameter = next(iter(policy.parameters()), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        observation = ratio_game_observation(device).unsqueeze(0)  # [1, A, F]
        td = TensorDict({keys.OBSERVATION: observation}, batch_size=[1, N_AGENTS], device=device)
        with torch.no_grad():
            probs = get_dist(td).probs  # [1, A, 2]
        value = ratio_game_value(probs[0, 0], probs[0, 1])  # []
        return self.exact_value_metrics(float(value))

    def exact_value_metrics(self, value: float) -> dict[str, float]:
        """``eval/ratio_game_value``: the exact value of the joint policy (optimum 1)."""
        return {"eval/ratio_game_value": value}
