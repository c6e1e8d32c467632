"""Tabular cooperative games and the pessimistic off-policy multi-agent PPO of paper 002 (Section 5,
Algorithm 2) with one-hot features, where the linear function class is exact.

Conventions: a joint action is an index j = Σ_i a_i · n^(N−1−i) (agent 0 most significant, as
``StochasticGame``); the prefix of agents 1..m (0-based agents 0..m−1) is p = j // n^(N−m). Agent m's
policy π^m(a_m | s, a^{1:m−1}) is a softmax of a table θ^m [S, n^(m−1), n] (log-linear with one-hot
features of (s, a^{1:m−1}, a_m)), so later agents may condition on earlier agents' actions, as the paper's
conditional policies do. Transitions are sub-stochastic: the missing mass of P(·|s, j) is termination.

The value class F^m of Definition 5.1 bounds every f: the paper's [0, 1/(1−γ)] (rewards in [0, 1], γ < 1)
becomes [V_min, V_max], the exact range of values over all policies (``TabularGame.value_bounds``), since the
games here are undiscounted with termination and the ratio game's rewards are negative. The pessimistic
evaluation is the minimiser of a convex quadratic over that box (``box_qp.solve_box_qp``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from marl_lightning.core.errors import ConfigError
from marl_lightning.exact.box_qp import solve_box_qp

# The pessimistic evaluation solves linear systems over the |S| · n^m cells of agent m's table.
MAX_TABLE_CELLS = 4096
# Value iteration steps ``TabularGame.value_bounds`` allows before it declares the values unbounded.
MAX_VALUE_ITERATIONS = 10_000


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
        """Refuse games whose last agent's table is too large for the dense solves (``check_table_size``)."""
        check_table_size(self.n_states, self.n_actions, self.n_agents)

    def value_bounds(self) -> tuple[float, float]:
        """(V_min, V_max): the smallest and largest value any policy reaches from any state.

        Every action value lies in this range: Q^π(s, j) = r(s, j) + γ Σ_s' P(s'|s, j) V^π(s') is bounded
        by the optimal Q*(s, j) ≤ V*(s) ≤ V_max (likewise from below), and Q^{1:m}_π(s, a^{1:m}) averages
        Q^π(s, j) over the later agents' actions. So [V_min, V_max] is the box of the class F^m (paper 002,
        Definition 5.1: φᵀw ∈ [0, 1/(1−γ)] for rewards in [0, 1]) for these tables, and Q^{1:m}_π ∈ F^m
        (realizability, Appendix C.2) for every π. It is the tightest box that does: the ratio game gives
        [−5, 1]; a time-augmented stochastic game gives [min r (one last step), ≤ H·max r (from t = 0)].

        Computed by value iteration for max_π and min_π, made exact by evaluating the greedy policy with a
        linear solve once its value is a fixed point of the Bellman optimality operator. Assumes every
        policy terminates (when γ = 1: the time-augmented stochastic game ends after H steps, the ratio
        game stops with probability ≥ 0.1 each step). Computed once per game (the tables are never modified).
        """
        return self._value_bounds

    @functools.cached_property
    def _value_bounds(self) -> tuple[float, float]:
        # cached_property writes the instance __dict__ directly, which a frozen dataclass allows
        high = _extreme_state_values(self.reward, self.next_prob, self.gamma)  # [S]
        low = -_extreme_state_values(-self.reward, self.next_prob, self.gamma)  # [S]
        return float(low.min()), float(high.max())


def _extreme_state_values(reward: torch.Tensor, next_prob: torch.Tensor, gamma: float) -> torch.Tensor:
    """max_π V^π(s) for every state, exactly: value iteration V ← max_j [r(·, j) + γ P(·|·, j) V] until it
    stops changing (after H steps in a game of horizon H), or until the value of the greedy policy (a
    linear solve, once the greedy policy holds for two steps) satisfies that optimality equation.

    A proper policy whose value solves the optimality equation is optimal (for any proper π,
    T_π V ≤ T V = V, so V ≥ T_π^k V → V^π), so the result is exact, not a value-iteration estimate.

    Shapes: reward [S, J], next_prob [S, J, S] -> [S].
    """
    n_states = reward.shape[0]
    rows = torch.arange(n_states)
    identity = torch.eye(n_states, dtype=reward.dtype)
    values = torch.zeros(n_states, dtype=reward.dtype)
    previous: torch.Tensor | None = None
    checked: torch.Tensor | None = None  # each greedy policy is solved for once
    for _ in range(MAX_VALUE_ITERATIONS):
        q = reward + gamma * next_prob @ values  # [S, J]
        new_values, greedy = q.max(-1)
        tol = 1e-12 * (1.0 + float(new_values.abs().max()))
        if float((new_values - values).abs().max()) <= 1e-3 * tol:  # a fixed point, to rounding
            return new_values
        stable = previous is not None and torch.equal(greedy, previous)
        if stable and (checked is None or not torch.equal(greedy, checked)):
            checked = greedy
            system = identity - gamma * next_prob[rows, greedy]  # I − γ P_greedy [S, S]
            solved, info = torch.linalg.solve_ex(system, reward[rows, greedy])
            if int(info) == 0 and bool(torch.isfinite(solved).all()):
                residual = (reward + gamma * next_prob @ solved).amax(-1) - solved
                if float(residual.abs().max()) <= tol:
                    return solved
        previous, values = greedy, new_values
    raise ConfigError(
        f"TabularGame.value_bounds: value iteration did not converge in {MAX_VALUE_ITERATIONS} steps "
        f"(γ = {gamma}, last max |V| = {float(values.abs().max()):.3g}): some policy never terminates, so "
        "values are unbounded and the class F of paper 002 (Definition 5.1) has no box. Give the game a "
        "horizon or a termination probability, or γ < 1."
    )


def check_table_size(n_states: int, n_actions: int, n_agents: int) -> None:
    """Refuse games whose last agent's table (all of S × A^N) is too large for the dense solves."""
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


def pessimistic_objective(
    game: TabularGame, thetas: list[torch.Tensor], m: int, data: OracleData, lam: float, ridge: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """The quadratic of Algorithm 2, line 4: f(s0, π^{1:m}) + λ·E^{1:m}(f, π) + (ridge/2)·‖f‖² = ½ fᵀHf + qᵀf
    + const over the flat table f (cell c = s·n^m + a^{1:m}).

    With one-hot features f is a table over (s, a^{1:m}). The inner minimum of Equation 5, taken over all
    tables, is attained by the empirical Bellman backup T̂f (per-cell means of r + γ f(s', π^{1:m})), so
    E(f) = Σ_c (n_c/n)(f_c − T̂f_c)² = ‖D^{1/2}(M f − r̄)‖², M = I − γ P̂_π, and with the linear term
    c = initial ⊗ π^{1:m}(·|s): H = 2λ MᵀDM + ridge·I, q = c − 2λ MᵀD r̄.

    P̂_π = T B has rank ≤ |S| (T [cells, S] the empirical successor frequencies, B [S, cells] spreading a
    state over its cells with weights π^{1:m}), so MᵀDM = D − γ(DTB + (DTB)ᵀ) + γ² Bᵀ(TᵀDT)B is built in
    O(cells² + cells·|S|²) instead of a cells³ product.

    Shapes: -> H [C, C], q [C] with C = S · n^m.
    """
    n_states, cells_per_state = game.n_states, game.n_actions**m
    cells = n_states * cells_per_state
    cell = data.state * cells_per_state + data.prefix  # [n]
    count = torch.bincount(cell, minlength=cells).to(torch.float64)
    n = float(data.state.numel())
    r_bar = torch.bincount(cell, weights=data.reward.to(torch.float64), minlength=cells) / count.clamp_min(1)
    prefix = prefix_probs(thetas, m)  # [S, n^m]
    # T[c, s'] = (1/n_c) #{samples in c that continue to s'}; P̂_π[c, (s', p')] = T[c, s'] π^{1:m}(p' | s')
    alive = data.next_state >= 0
    transitions = torch.zeros(cells, n_states, dtype=torch.float64)
    ones = torch.ones(int(alive.sum()), dtype=torch.float64)
    transitions.index_put_((cell[alive], data.next_state[alive]), ones, accumulate=True)
    transitions /= count.clamp_min(1).unsqueeze(-1)
    d = count / n
    gamma = game.gamma
    dtb = ((d.unsqueeze(-1) * transitions).unsqueeze(-1) * prefix.unsqueeze(0)).reshape(cells, cells)
    # TᵀDT [S, S]; T has at most n nonzeros, so a sparse product (a dense one is cells·S², 17 GFLOP at 4096
    # cells with |S| = 2048)
    gram = torch.sparse.mm(transitions.T.to_sparse(), d.unsqueeze(-1) * transitions)
    weighted = prefix.unsqueeze(-1).unsqueeze(-1) * gram.unsqueeze(1).unsqueeze(-1)  # [S, n^m, S, 1]
    hessian = (weighted * prefix.unsqueeze(0).unsqueeze(0)).reshape(cells, cells)  # Bᵀ(TᵀDT)B
    hessian.mul_(gamma**2).sub_(dtb, alpha=gamma).sub_(dtb.T, alpha=gamma)
    hessian.diagonal().add_(d)  # MᵀDM
    hessian.mul_(2 * lam).diagonal().add_(ridge)
    dr = d * r_bar
    mt_dr = dr - gamma * (prefix * (transitions.T @ dr).unsqueeze(-1)).reshape(cells)  # MᵀD r̄
    c = (game.initial.unsqueeze(-1) * prefix).reshape(cells)
    return hessian, c - 2 * lam * mt_dr


def pessimistic_evaluation(
    game: TabularGame,
    thetas: list[torch.Tensor],
    m: int,
    data: OracleData,
    lam: float,
    ridge: float = 1e-6,
    bounds: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Algorithm 2, line 4: f = argmin_{f ∈ F^m} f(s0, π^{1:m}) + λ·E^{1:m}(f, π), E the Bellman error of
    Equation 5, over the box F^m = {f : V_min ≤ f ≤ V_max} (Definition 5.1 with one-hot features).

    The objective is the convex quadratic of ``pessimistic_objective``, minimised exactly over the box by
    ``solve_box_qp``. The box is what keeps line 5 (θ^m += η·f) sane: a cell that no sample covers and
    that is no sample's successor has no Bellman error, so the pessimistic term alone drives it down, to
    −c/ridge ≈ −10⁶ unconstrained, which would kill its action for good; in the box it stops at V_min, a
    value some policy really has. Q^{1:m}_π lies in the box (``TabularGame.value_bounds``), so the
    minimiser's guarantee f(s0) + λE(f) ≤ Q(s0) + λE(Q) (+ the ridge) still holds.

    Where this differs from the paper: ``ridge``·‖f‖²/2 stands in for the norm bound ‖w‖₂ ≤ L of
    Definition 5.1 (a penalty instead of a constraint, making the problem strictly convex); the box is
    [V_min, V_max] from the game's tables rather than [0, 1/(1−γ)] (γ = 1 here, with termination, and the
    ratio game's rewards are negative); the inner minimum of Equation 5 is taken over all tables, not over
    F^m (keeping E quadratic; that E is ≥ the paper's, and equal whenever T̂f lies in the box); and the
    pessimistic term weights states by ``game.initial`` instead of a fixed s0.

    Args:
        bounds: (low, high) of the box; default ``game.value_bounds()``. (−inf, inf) gives the
            unconstrained minimiser, the closed form (H f = −q).

    Shapes: -> [S, n^m].
    """
    if not ridge > 0:
        raise ValueError(
            f"pessimistic_evaluation: ridge ({ridge}) must be > 0; it makes the quadratic strictly convex "
            "(cells without samples are otherwise undetermined). Use e.g. ridge=1e-6."
        )
    low, high = game.value_bounds() if bounds is None else bounds
    if not low <= high:
        raise ValueError(f"pessimistic_evaluation: bounds ({low}, {high}) must have low <= high.")
    hessian, linear = pessimistic_objective(game, thetas, m, data, lam, ridge)
    cells = linear.numel()
    f = solve_box_qp(
        hessian,
        linear,
        torch.full((cells,), low, dtype=torch.float64),
        torch.full((cells,), high, dtype=torch.float64),
    )
    return f.reshape(game.n_states, game.n_actions**m)


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
