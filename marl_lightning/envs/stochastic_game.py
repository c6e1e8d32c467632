"""The cooperative stochastic game of the DPO paper's didactic example (Section 4.1), in pure torch.

100 states, 6 agents with 5 actions each and one team reward; the reward table and the transition
probabilities are drawn at random, and the global optimum is found by dynamic programming. The paper gives
neither the episode length nor the shape of the transition kernel; the choices made here are:

* ``horizon = 50``: episodes are finite so the optimum is a finite-horizon backward induction and the
  evaluated (undiscounted) return has a known ceiling. 50 steps is long enough for the transitions to
  matter (an agent that ignores where the team goes loses reward), short enough that the training
  objective discounted by the usual γ = 0.99 still weights the last step by 0.99^49 ≈ 0.61 (so it stays
  close to the undiscounted return that is evaluated), and 60 envs × 50 steps = 3000 frames make one
  iteration of whole episodes.
* ``n_successors = 3``: each (state, joint action) leads to 3 distinct successor states with Dirichlet(1)
  probabilities, a sparse random kernel: the tables stay ``[100, 15625, 3]`` (a dense kernel would be
  ``[100, 15625, 100]``, 625 MB) while the next state still depends on every agent's action.
* rewards ``r(s, a) ~ U[0, 1)`` i.i.d. per (state, joint action); the initial state is uniform. With
  5^6 = 15625 joint actions per state the best one earns nearly 1 a step, so the default game's optimum is
  close to the horizon (49.998) while a uniform policy earns about half of it (25.0): the difficulty is
  coordination, six agents agreeing on the one best joint action of each state.

Agents observe the state and the time step, ``concat(one_hot(s), one_hot(t))`` with t ∈ {0, …, H} (t = H
only in the last step's next observation), identical for every agent: with the time step observed, the
optimal non-stationary joint policy of the finite horizon is a function of each agent's observation, so the
dynamic-programming optimum is reachable by decentralised policies.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite
from torchrl.envs import EnvBase

from marl_lightning.core import keys
from marl_lightning.core.errors import ConfigError
from marl_lightning.envs.base import EnvFactory
from marl_lightning.exact.tabular import TabularGame, check_table_size

DEFAULT_HORIZON = 50
DEFAULT_N_SUCCESSORS = 3
# n_states × n_actions^n_agents × n_successors entries of the transition tables (int64 successors, float32
# probabilities and their running sums: 16 bytes an entry); 2^25 entries is about 0.5 GB.
MAX_TABLE_ENTRIES = 2**25


@dataclasses.dataclass(frozen=True)
class GameSizes:
    """The sizes and the seed that make one game; checked once, here, for the env and the task alike.

    Attributes:
        n_states: number of states S (paper: 100).
        n_agents: number of agents A (paper: 6).
        n_actions: actions per agent (paper: 5); at least 2, or there is nothing to choose.
        horizon: episode length H; the paper does not give one (see the module docstring for why 50).
        n_successors: distinct successor states k of each (state, joint action).
        game_seed: seed of the random rewards and transitions.
    """

    n_states: int = 100
    n_agents: int = 6
    n_actions: int = 5
    horizon: int = DEFAULT_HORIZON
    n_successors: int = DEFAULT_N_SUCCESSORS
    game_seed: int = 0

    def __post_init__(self) -> None:
        lowest = {"n_actions": 2, "game_seed": 0}  # 1 for the others
        for field in dataclasses.fields(self):  # the defaults, the paper's game, are the examples
            value, low = getattr(self, field.name), lowest.get(field.name, 1)
            if value < low:
                raise ConfigError(
                    f"data.env.{field.name} must be >= {low}, got {value}. "
                    f"Use e.g. --data.env.init_args.{field.name} {field.default}."
                )
        if self.n_successors > self.n_states:
            raise ConfigError(
                f"data.env.n_successors ({self.n_successors}) must be <= data.env.n_states "
                f"({self.n_states}): the successors of a (state, joint action) are distinct states. "
                f"Use e.g. --data.env.init_args.n_successors {min(3, self.n_states)}."
            )
        entries = self.n_states * self.n_actions**self.n_agents * self.n_successors
        if entries > MAX_TABLE_ENTRIES:
            raise ConfigError(
                f"data.env: n_states × n_actions^n_agents × n_successors = {self.n_states} × "
                f"{self.n_actions}^{self.n_agents} × {self.n_successors} = {entries} transition-table "
                f"entries, more than {MAX_TABLE_ENTRIES} (about {MAX_TABLE_ENTRIES * 16 // 2**20} MiB). "
                "Reduce data.env.n_agents or data.env.n_actions (the joint action space grows as "
                "n_actions^n_agents)."
            )


def joint_action_index(actions: torch.Tensor, n_actions: int) -> torch.Tensor:
    """The joint action's index Σ_i a_i · n_actions^(A − 1 − i) (agent 0 most significant).

    Shapes:
        actions [*B, A] (long) -> [*B] (long).
    """
    n_agents = actions.shape[-1]
    weights = n_actions ** torch.arange(n_agents - 1, -1, -1, device=actions.device)  # [A]
    return (actions.long() * weights).sum(-1)


def _distinct_successors(n_rows: int, n_states: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``k`` distinct states per row, uniformly at random, without materialising a [n_rows, n_states] table.

    The i-th draw r ∈ [0, n_states − i) is mapped to the r-th state not drawn yet, by stepping over the
    states already drawn in increasing order.

    Shapes:
        returns [n_rows, k] (long).
    """
    chosen: list[torch.Tensor] = []
    for i in range(k):
        r = torch.randint(n_states - i, (n_rows,), generator=generator)  # [N]
        if chosen:
            for taken in torch.stack(chosen, -1).sort(-1).values.unbind(-1):  # ascending, each [N]
                r = r + (r >= taken).long()
        chosen.append(r)
    return torch.stack(chosen, -1)


@functools.lru_cache(maxsize=4)
def _game_tables(
    n_states: int, n_agents: int, n_actions: int, n_successors: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The random game of ``seed`` (CPU, never modified): rewards, successors and their probabilities.

    Drawn from a CPU ``torch.Generator`` seeded with ``seed``, so every process and device gets the same game.

    Shapes:
        returns rewards [S, J], next_states [S, J, k], next_probs [S, J, k] with J = n_actions^n_agents.
    """
    g = torch.Generator().manual_seed(seed)
    n_joint = n_actions**n_agents
    rewards = torch.rand(n_states, n_joint, generator=g)  # [S, J]
    next_states = _distinct_successors(n_states * n_joint, n_states, n_successors, g)
    next_states = next_states.view(n_states, n_joint, n_successors)  # [S, J, k]
    # Dirichlet(1, ..., 1) by normalised exponentials (torch's Dirichlet takes no generator).
    exponentials = -torch.log1p(-torch.rand(n_states, n_joint, n_successors, generator=g))  # [S, J, k]
    next_probs = exponentials / exponentials.sum(-1, keepdim=True)
    return rewards, next_states, next_probs


class StochasticGame(EnvBase):
    """A batched cooperative stochastic game with random rewards and transitions (DPO paper, Section 4.1).

    Every step, agent ``i`` picks ``a_i ∈ {0, …, n_actions − 1}``; the team receives
    ``rewards[s, j]`` for the joint action index ``j`` (:func:`joint_action_index`) and the state moves to
    ``next_states[s, j, m]`` with probability ``next_probs[s, j, m]``. Episodes end (``done = terminated =
    True``, like VMAS) after ``horizon`` steps. The game (tables) is a function of ``sizes`` only
    (``game_seed`` among them); sampling of initial and successor states uses the env's own generator,
    seeded by :meth:`set_seed`.

    Args:
        sizes: S states, A agents, their actions, the horizon H, k successors and the tables' seed.
        batch_size: env batch dims ``[*B]``.
        device: where the tables live and the env steps.

    Shapes:
        ("agents", "observation") [*B, A, F] float with F = S + H + 1 (one-hot state, one-hot t ∈ 0..H);
        ("agents", "action") [*B, A] long; ("agents", "reward") [*B, A, 1], the team reward for every
        agent; "done", "terminated" [*B, 1] bool.
    """

    def __init__(
        self,
        sizes: GameSizes = GameSizes(),  # noqa: B008 (frozen: one shared default is safe)
        batch_size: torch.Size | list[int] | tuple[int, ...] = (),
        device: torch.device | str | None = None,
    ) -> None:
        device = torch.device(device) if device is not None else torch.device("cpu")
        super().__init__(device=device, batch_size=torch.Size(batch_size))
        self.sizes = sizes
        self.n_states, self.n_agents, self.n_actions, self.horizon, self.n_successors, self.game_seed = (
            dataclasses.astuple(sizes)
        )
        n_states = sizes.n_states
        rewards, next_states, next_probs = _game_tables(
            n_states, sizes.n_agents, sizes.n_actions, sizes.n_successors, sizes.game_seed
        )
        self.rewards = rewards.to(device)  # [S, J]
        self.next_states = next_states.to(device)  # [S, J, k]
        self.next_probs = next_probs.to(device)  # [S, J, k]
        self._next_cdf = self.next_probs.cumsum(-1)  # [S, J, k]
        self.initial_probs = torch.full((n_states,), 1.0 / n_states, device=device)  # [S]
        self._initial_cdf = self.initial_probs.cumsum(-1)  # [S]

        self._rng = torch.Generator(device=device)
        self._rng.manual_seed(0)
        self._state = torch.zeros(self.batch_size, dtype=torch.long, device=device)  # [*B]
        self._t = torch.full(self.batch_size, sizes.horizon, dtype=torch.long, device=device)  # [*B]
        self._make_specs()

    # ----------------------------------------------------------------- specs
    @property
    def observation_dim(self) -> int:
        """F = S + H + 1: one-hot state, one-hot time step t ∈ {0, …, H}."""
        return self.n_states + self.horizon + 1

    def _make_specs(self) -> None:
        batch, agents = self.batch_size, (*self.batch_size, self.n_agents)
        self.observation_spec = Composite(
            {
                keys.GROUP: Composite(
                    observation=Bounded(0.0, 1.0, shape=(*agents, self.observation_dim),
                                        dtype=torch.float32, device=self.device),
                    shape=agents,
                )
            },
            shape=batch,
        )
        self.action_spec = Composite(
            {
                keys.GROUP: Composite(
                    action=Categorical(self.n_actions, shape=agents, dtype=torch.long, device=self.device),
                    shape=agents,
                )
            },
            shape=batch,
        )
        self.reward_spec = Composite(
            {
                keys.GROUP: Composite(
                    reward=Bounded(0.0, 1.0, shape=(*agents, 1), dtype=torch.float32, device=self.device),
                    shape=agents,
                )
            },
            shape=batch,
        )
        self.done_spec = Composite(
            {
                name: Categorical(2, shape=(*batch, 1), dtype=torch.bool, device=self.device)
                for name in (keys.ROOT_DONE, keys.ROOT_TERMINATED)
            },
            shape=batch,
        )

    # ----------------------------------------------------------------- the game
    def _bellman_backup(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """V ↦ r(s, j) + Σ_m P(s'_m | s, j) V(s'_m), in float64 (tables converted once).

        Successor-major copies of the tables make each of the k terms one contiguous gather and one fused
        multiply-add (about 5x faster on CPU than gathering [S, J, k] and summing).

        Shapes:
            values [S] -> [S, J].
        """
        rewards = self.rewards.double()  # [S, J]
        successors = self.next_states.permute(2, 0, 1).contiguous()  # [k, S, J]
        probs = self.next_probs.permute(2, 0, 1).double().contiguous()  # [k, S, J]

        def backup(values: torch.Tensor) -> torch.Tensor:
            out = rewards.clone()  # [S, J]
            for m in range(self.n_successors):
                out.addcmul_(probs[m], values.take(successors[m]))
            return out

        return backup

    @torch.no_grad()
    def optimal_return(self) -> float:
        """The global optimum the DPO paper finds "by dynamic programming" (Section 4.1, Fig. 1a).

        Backward induction over the finite horizon, V_H = 0 and
        V_t(s) = max_j [r(s, j) + Σ_{s'} P(s' | s, j) V_{t+1}(s')], returning Σ_s μ(s) V_0(s): the best
        expected undiscounted team return of an episode. The maximising joint action depends on (s, t)
        only, which every agent observes, so decentralised (deterministic) policies attain it.
        """
        backup = self._bellman_backup()
        values = torch.zeros(self.n_states, dtype=torch.float64, device=self.device)  # [S]
        for _ in range(self.horizon):
            values = backup(values).amax(-1)
        return float(self.initial_probs.double() @ values)

    @torch.no_grad()
    def policy_return(self, joint_policy: torch.Tensor) -> float:
        """Expected undiscounted team return of a joint policy, by backward induction.

        ``joint_policy[t, s, j]`` is the probability of joint action ``j`` in state ``s`` at step ``t``
        (a ``[S, J]`` policy is used at every step): V_t(s) = Σ_j π_t(j | s) [r(s, j) + E V_{t+1}(s')].

        Shapes:
            joint_policy [H, S, J] or [S, J] -> float.
        """
        policy = joint_policy.to(self.device, torch.float64)  # [H, S, J] or [S, J]
        backup = self._bellman_backup()
        values = torch.zeros(self.n_states, dtype=torch.float64, device=self.device)  # [S]
        for t in reversed(range(self.horizon)):
            policy_t = policy[t] if policy.dim() == 3 else policy  # [S, J]
            values = (policy_t * backup(values)).sum(-1)
        return float(self.initial_probs.double() @ values)

    # ----------------------------------------------------------------- EnvBase
    def _observation(self) -> torch.Tensor:
        """concat(one_hot(s), one_hot(t)) for every agent. Shapes: returns [*B, A, F]."""
        state = torch.nn.functional.one_hot(self._state, self.n_states)  # [*B, S]
        time = torch.nn.functional.one_hot(self._t.clamp_max(self.horizon), self.horizon + 1)  # [*B, H+1]
        obs = torch.cat([state, time], -1).to(torch.float32)  # [*B, F]
        return obs.unsqueeze(-2).expand(*self.batch_size, self.n_agents, obs.shape[-1]).clone()

    def _output(self, reward: torch.Tensor | None = None) -> TensorDictBase:
        """Observation (and reward) in the group ``"agents"`` of batch [*B, A]; done flags at the root."""
        group = {"observation": self._observation()}
        if reward is not None:
            group["reward"] = reward
        done = (self._t >= self.horizon).unsqueeze(-1)  # [*B, 1]
        agents = (*self.batch_size, self.n_agents)
        return TensorDict(
            {
                keys.GROUP: TensorDict(group, batch_size=agents, device=self.device),
                keys.ROOT_DONE: done,
                keys.ROOT_TERMINATED: done.clone(),
            },
            batch_size=self.batch_size,
            device=self.device,
        )

    def _sample(self, cdf: torch.Tensor) -> torch.Tensor:
        """An index m with probability cdf[..., m] − cdf[..., m − 1] (inverse CDF, the env's generator).

        Shapes:
            cdf [*B, n] -> [*B].
        """
        u = torch.rand(cdf.shape[:-1], generator=self._rng, device=self.device).unsqueeze(-1)  # [*B, 1]
        return (cdf <= u).sum(-1).clamp_max(cdf.shape[-1] - 1)

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        reset = tensordict.get("_reset", None) if tensordict is not None else None
        # A draw for every env, used only where reset: the stream consumed is independent of the mask.
        initial = self._sample(self._initial_cdf.expand(*self.batch_size, self.n_states))  # [*B]
        if reset is None:
            self._state = initial
            self._t = torch.zeros_like(self._t)
        else:
            mask = reset.reshape(*self.batch_size, -1).any(-1)  # [*B]
            self._state = torch.where(mask, initial, self._state)
            self._t = torch.where(mask, torch.zeros_like(self._t), self._t)
        return self._output()

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        joint = joint_action_index(tensordict.get(keys.ACTION), self.n_actions)  # [*B]
        reward = self.rewards[self._state, joint]  # [*B]
        successor = self._sample(self._next_cdf[self._state, joint])  # [*B]
        self._state = self.next_states[self._state, joint].gather(-1, successor.unsqueeze(-1)).squeeze(-1)
        self._t = self._t + 1
        team_reward = reward.view(*self.batch_size, 1, 1).expand(*self.batch_size, self.n_agents, 1)
        return self._output(team_reward.clone())  # reward [*B, A, 1]

    def _set_seed(self, seed: int | None) -> None:
        if seed is None:
            self._rng.seed()
        else:
            self._rng.manual_seed(int(seed))


@functools.lru_cache(maxsize=8)
def _optimal_return(
    n_states: int, n_agents: int, n_actions: int, horizon: int, n_successors: int, game_seed: int
) -> float:
    game = StochasticGame(GameSizes(n_states, n_agents, n_actions, horizon, n_successors, game_seed))
    return game.optimal_return()


@functools.cache
def _uniform_return(
    n_states: int, n_agents: int, n_actions: int, horizon: int, n_successors: int, game_seed: int
) -> float:
    game = StochasticGame(GameSizes(n_states, n_agents, n_actions, horizon, n_successors, game_seed))
    n_joint = n_actions**n_agents
    return game.policy_return(torch.full((n_states, n_joint), 1.0 / n_joint, dtype=torch.float64))


class StochasticGameTask(EnvFactory):
    """The DPO paper's cooperative stochastic game (Section 4.1) as a LightningCLI choice of ``data.env``.

    Args:
        n_states: number of states (paper: 100).
        n_agents: number of agents (paper: 6).
        n_actions: actions per agent (paper: 5).
        horizon: episode length; the paper does not give one (see the module docstring for why 50).
        n_successors: distinct successor states of each (state, joint action).
        game_seed: seed of the random rewards and transitions (the same game on every rank and run);
            the seed given to :meth:`make` only drives the sampling of states.
    """

    def __init__(
        self,
        n_states: int = 100,
        n_agents: int = 6,
        n_actions: int = 5,
        horizon: int = DEFAULT_HORIZON,
        n_successors: int = DEFAULT_N_SUCCESSORS,
        game_seed: int = 0,
    ) -> None:
        self.sizes = GameSizes(n_states, n_agents, n_actions, horizon, n_successors, game_seed)  # checked
        self.n_states, self.n_agents, self.n_actions, self.horizon, self.n_successors, self.game_seed = (
            dataclasses.astuple(self.sizes)
        )

    def hparams(self) -> dict:
        return dataclasses.asdict(self.sizes)

    @property
    def name(self) -> str:
        return "stochastic_game"

    @property
    def max_steps(self) -> int:
        return self.horizon

    def _game_args(self) -> tuple[int, int, int, int, int, int]:
        return dataclasses.astuple(self.sizes)

    def make(self, num_envs: int, device: torch.device | str, seed: int) -> StochasticGame:
        env = StochasticGame(self.sizes, batch_size=[num_envs], device=device)
        env.set_seed(seed)
        return env

    def optimal_return(self) -> float:
        """The game's dynamic-programming optimum (computed once per game, on CPU)."""
        return _optimal_return(*self._game_args())

    def reference_returns(self) -> dict[str, float]:
        """The DP optimum and the uniformly random joint policy's expected return (both exact)."""
        return {"optimum": self.optimal_return(), "random": _uniform_return(*self._game_args())}

    def tabular_model(self) -> TabularGame:
        """The game as a time-augmented tabular model for ``marl_lightning.exact.tabular`` (state (t, s) at
        index t·S + s, t < H; after step H − 1 the game terminates), undiscounted.
        """
        s, h = self.n_states, self.horizon
        check_table_size(s * h, self.n_actions, self.n_agents)
        rewards, next_states, next_probs = _game_tables(
            self.n_states, self.n_agents, self.n_actions, self.n_successors, self.game_seed
        )
        n_joint = rewards.shape[1]
        step = torch.zeros(s, n_joint, s, dtype=torch.float64)  # P(s' | s, j)
        step.scatter_add_(-1, next_states, next_probs.double())
        next_prob = torch.zeros(s * h, n_joint, s * h, dtype=torch.float64)
        for t in range(h - 1):
            next_prob[t * s : (t + 1) * s, :, (t + 1) * s : (t + 2) * s] = step
        initial = torch.zeros(s * h, dtype=torch.float64)
        initial[:s] = 1.0 / s
        return TabularGame(rewards.double().repeat(h, 1), next_prob, initial, self.n_agents, self.n_actions)

    def evaluation_metrics(self, policy: torch.nn.Module, return_mean: float) -> dict[str, float]:
        """``eval/optimality_gap``: the DP optimum minus the evaluated mean episode return (paper Fig. 1a).

        The team reward is copied to every agent, so the per-agent mean return is the team return. The
        optimum bounds the *expected* return of any policy; the mean of a few evaluated episodes can exceed
        it by chance (lucky initial states or transitions), so a near-optimal policy may show a gap
        slightly below 0.
        """
        return self.exact_value_metrics(float(return_mean))

    def exact_value_metrics(self, value: float) -> dict[str, float]:
        """``eval/optimality_gap``: the DP optimum minus the (expected or evaluated) return ``value``."""
        return {"eval/optimality_gap": self.optimal_return() - value}
