"""Tabular cooperative games and the pessimistic off-policy multi-agent PPO of paper 002 (Section 5,
Algorithm 2) with one-hot features, where the linear function class is exact.

Conventions: a joint action is an index j = Σ_i a_i · n^(N−1−i) (agent 0 most significant, as
``StochasticGame``); the prefix of agents 1..m (0-based agents 0..m−1) is p = j // n^(N−m). Agent m's
policy π^m(a_m | s, a^{1:m−1}) is a softmax of a table θ^m [S, n^(m−1), n] (log-linear with one-hot
features of (s, a^{1:m−1}, a_m)), so later agents may condition on earlier agents' actions, as the paper's
conditional policies do. Transitions are sub-stochastic: the missing mass of P(·|s, j) is termination.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from marl_lightning.errors import ConfigError

# The closed-form pessimistic evaluation solves a linear system over the |S| · n^m cells of agent m's table.
MAX_TABLE_CELLS = 4096


@dataclass(frozen=True)
class TabularGame:
    """A finite cooperative Markov game with known tables (float64).

    Shapes: reward [S, J]; next_prob [S, J, S] (rows sum to ≤ 1, the rest is termination); initial [S].
    """

    reward: torch.Tensor
    next_prob: torch.Tensor
    initial: torch.Tensor
    n_agents: int
    n_actions: int
    gamma: float = 1.0

    @property
    def n_states(self) -> int:
        return self.reward.shape[0]

    def check_size(self) -> None:
        """Refuse games whose last agent's table is too large for the closed form (``check_table_size``)."""
        check_table_size(self.n_states, self.n_actions, self.n_agents)


def check_table_size(n_states: int, n_actions: int, n_agents: int) -> None:
    """Refuse games whose last agent's table (all of S × A^N) is too large for the closed form."""
    cells = n_states * n_actions**n_agents
    if cells > MAX_TABLE_CELLS:
        raise ConfigError(
            f"the pessimistic tabular algorithm solves a linear system over |S|·|A|^N = {n_states}·"
            f"{n_actions}^{n_agents} = {cells} cells, above its limit of {MAX_TABLE_CELLS}. It "
            "applies to small tabular games (the ratio game; the stochastic game with few states, agents "
            "and a short horizon); use conf/seqppo.yaml on larger ones."
        )


def policy_tables(thetas: list[torch.Tensor]) -> list[torch.Tensor]:
    """Softmax of each agent's table: π^m [S, n^(m−1), n]."""
    return [torch.softmax(theta, -1) for theta in thetas]


def prefix_probs(thetas: list[torch.Tensor], m: int) -> torch.Tensor:
    """π^{1:m}(a^{1:m} | s) = Π_{i ≤ m} π^i(a_i | s, a^{1:i−1}), the first m agents. Shapes: -> [S, n^m]."""
    probs = torch.ones(thetas[0].shape[0], 1, dtype=thetas[0].dtype)
    for pi in policy_tables(thetas[:m]):  # pi [S, n^(i−1), n]
        probs = (probs.unsqueeze(-1) * pi).flatten(1)
    return probs


def state_values(game: TabularGame, thetas: list[torch.Tensor]) -> torch.Tensor:
    """V^π(s) exactly, by solving (I − γ P_π) V = r_π. Shapes: -> [S]."""
    joint = prefix_probs(thetas, game.n_agents)  # [S, J]
    r_pi = (joint * game.reward).sum(-1)
    p_pi = torch.einsum("sj,sjt->st", joint, game.next_prob)
    identity = torch.eye(game.n_states, dtype=game.reward.dtype)
    return torch.linalg.solve(identity - game.gamma * p_pi, r_pi)


def joint_value(game: TabularGame, thetas: list[torch.Tensor]) -> float:
    """J(π) = Σ_s initial(s) V^π(s)."""
    return float(game.initial @ state_values(game, thetas))


def prefix_q(game: TabularGame, thetas: list[torch.Tensor], m: int) -> torch.Tensor:
    """The multi-agent action value Q^{1:m}_π(s, a^{1:m}) (Definition 3.1): agents after m follow π.

    Shapes: -> [S, n^m].
    """
    values = state_values(game, thetas)
    q_joint = game.reward + game.gamma * game.next_prob @ values  # [S, J]
    joint = prefix_probs(thetas, game.n_agents)
    prefix = prefix_probs(thetas, m)  # [S, n^m]
    rest = game.n_actions ** (game.n_agents - m)
    # π^{m+1:N}(rest | s, prefix) = π(j|s) / π^{1:m}(prefix|s)
    weighted = (joint * q_joint).reshape(game.n_states, -1, rest).sum(-1)  # [S, n^m]
    return weighted / prefix.clamp_min(1e-300)


@dataclass
class OracleData:
    """n one-step samples for agent m (Definition 5.3): states, prefix actions a^{1:m}, rewards, next states.

    ``next_state`` is −1 where the game terminated. Shapes: [n] each.
    """

    state: torch.Tensor
    prefix: torch.Tensor
    reward: torch.Tensor
    next_state: torch.Tensor


def sample_oracle(
    game: TabularGame, thetas: list[torch.Tensor], m: int, n: int, generator: torch.Generator
) -> OracleData:
    """Section 5's protocol for agent m: s ~ μ_s (uniform), a^{1:m} ~ μ (uniform), a^{m+1:N} ~ π^{m+1:N}
    given (s, a^{1:m}); the oracle returns r(s, a) and s' ~ P(·|s, a) (or termination)."""
    n_actions = game.n_actions
    state = torch.randint(game.n_states, (n,), generator=generator)
    prefix = torch.randint(n_actions**m, (n,), generator=generator)
    joint = prefix.clone()
    for pi in policy_tables(thetas)[m:]:  # agents m+1..N, each given the actions before it
        probs = pi[state, joint]  # [n, n_actions]
        action = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        joint = joint * n_actions + action
    reward = game.reward[state, joint]
    transition = game.next_prob[state, joint]  # [n, S]
    stop = (1.0 - transition.sum(-1)).clamp_min(0.0)
    outcome = torch.multinomial(torch.cat([transition, stop.unsqueeze(-1)], -1), 1, generator=generator)
    next_state = torch.where(outcome.squeeze(-1) == game.n_states, -1, outcome.squeeze(-1))
    return OracleData(state, prefix, reward, next_state)


def pessimistic_evaluation(
    game: TabularGame, thetas: list[torch.Tensor], m: int, data: OracleData, lam: float, ridge: float = 1e-6
) -> torch.Tensor:
    """Algorithm 2, line 4: w = argmin_f f(s0, π^{1:m}) + λ·E^{1:m}(f, π), E the Bellman error of Equation 5.

    With one-hot features f is a table over (s, a^{1:m}). The inner minimum of Equation 5 is attained by the
    empirical Bellman backup T̂f (per-cell means of r + γ f(s', π^{1:m})), so E(f) = Σ_c (n_c/n)(f_c −
    T̂f_c)² = ‖D^{1/2}(M f − r̄)‖², M = I − γ P̂_π, linear in f; with the linear term c = initial ⊗
    π^{1:m}(·|s) the minimiser solves (2λ MᵀDM + ridge·I) f = 2λ MᵀD r̄ − c. ``ridge`` stands in for the
    paper's norm bound on w, making cells without samples well-defined.

    Shapes: -> [S, n^m].
    """
    n_states, cells_per_state = game.n_states, game.n_actions**m
    cells = n_states * cells_per_state
    cell = data.state * cells_per_state + data.prefix  # [n]
    count = torch.bincount(cell, minlength=cells).to(torch.float64)
    n = float(data.state.numel())
    r_bar = torch.bincount(cell, weights=data.reward, minlength=cells) / count.clamp_min(1)
    # P̂_π[c, c'] = (1/n_c) Σ_{samples in c, s' alive} π^{1:m}(p' | s') [c' = (s', p')]
    prefix = prefix_probs(thetas, m)  # [S, n^m]
    alive = data.next_state >= 0
    transitions = torch.zeros(cells, n_states, dtype=torch.float64)
    ones = torch.ones(int(alive.sum()), dtype=torch.float64)
    transitions.index_put_((cell[alive], data.next_state[alive]), ones, accumulate=True)
    transitions /= count.clamp_min(1).unsqueeze(-1)
    p_hat = (transitions.unsqueeze(-1) * prefix.unsqueeze(0)).reshape(cells, cells)
    m_matrix = torch.eye(cells, dtype=torch.float64) - game.gamma * p_hat
    d = count / n
    c = (game.initial.unsqueeze(-1) * prefix).reshape(cells)
    lhs = 2 * lam * m_matrix.T @ (d.unsqueeze(-1) * m_matrix) + ridge * torch.eye(cells, dtype=torch.float64)
    rhs = 2 * lam * m_matrix.T @ (d * r_bar) - c
    return torch.linalg.solve(lhs, rhs).reshape(n_states, cells_per_state)


def bellman_error(
    game: TabularGame, thetas: list[torch.Tensor], m: int, data: OracleData, f: torch.Tensor
) -> float:
    """E^{1:m}(f, π) of Equation 5 on the data: L(f, f, π) − min_{f'} L(f', f, π), tabular. f: [S, n^m]."""
    cells_per_state = game.n_actions**m
    cell = data.state * cells_per_state + data.prefix
    prefix = prefix_probs(thetas, m)  # [S, n^m]
    value = (prefix * f).sum(-1)  # f(s, π^{1:m}) [S]
    next_value = torch.where(data.next_state >= 0, value[data.next_state.clamp_min(0)], 0.0)
    target = data.reward + game.gamma * next_value  # [n]
    cells = game.n_states * cells_per_state
    count = torch.bincount(cell, minlength=cells).to(torch.float64)
    backup = torch.bincount(cell, weights=target, minlength=cells) / count.clamp_min(1)  # the minimising f'
    flat = f.reshape(-1)
    return float(((flat[cell] - target) ** 2).mean() - ((backup[cell] - target) ** 2).mean())


def improve(theta: torch.Tensor, f: torch.Tensor, eta: float) -> torch.Tensor:
    """Algorithm 2, line 5 (Equation 6 in parameters): θ^m ← θ^m + η w^m, w^m the table f [S, n^m]."""
    return theta + eta * f.reshape(theta.shape)
