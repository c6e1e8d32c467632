"""The pessimistic evaluation of paper 002 (Algorithm 2, line 4) over the bounded class F^m of
Definition 5.1: the exact box-constrained minimiser (``box_qp.solve_box_qp``), the class bounds
(``TabularGame.value_bounds``) and what they change for cells that no oracle sample covers."""

from __future__ import annotations

import itertools

import pytest
import torch

from marl_lightning.core.errors import ConfigError
from marl_lightning.envs import StochasticGameTask
from marl_lightning.envs.ratio_game import VALUE_MAX, VALUE_MIN, RatioGameTask
from marl_lightning.exact import box_qp, tabular

TINY = {"n_states": 2, "n_agents": 2, "n_actions": 2, "horizon": 3, "n_successors": 2}
UNBOUNDED = (-float("inf"), float("inf"))


def _enumerated_minimiser(hessian, linear, lower, upper):
    """The KKT points of the box QP found by trying all 3^n (free, at lower, at upper) patterns."""
    n = linear.numel()
    points = []
    for pattern in itertools.product(range(3), repeat=n):
        code = torch.tensor(pattern)
        at_lower, at_upper = code == 1, code == 2
        if bool(torch.isinf(lower[at_lower]).any() or torch.isinf(upper[at_upper]).any()):
            continue
        x = torch.where(at_lower, lower, torch.where(at_upper, upper, torch.zeros(n, dtype=torch.float64)))
        free = code == 0
        if bool(free.any()):
            fixed = ~free
            rhs = -linear[free] - hessian[free][:, fixed] @ x[fixed]
            x[free] = torch.linalg.solve(hessian[free][:, free], rhs)
        grad = hessian @ x + linear
        tol = 1e-9
        if bool((x[free] >= lower[free] - tol).all() and (x[free] <= upper[free] + tol).all()) and bool(
            (grad[at_lower] >= -tol).all() and (grad[at_upper] <= tol).all()
        ):
            points.append(x)
    return points


def _assert_kkt(hessian, linear, lower, upper, x, tol=1e-9):
    grad = hessian @ x + linear
    assert bool((x >= lower).all() and (x <= upper).all())
    inside = (x > lower) & (x < upper)
    assert bool((grad[inside].abs() <= tol).all())
    assert bool((grad[(x == lower) & (x < upper)] >= -tol).all())  # g >= 0 on a lower bound
    assert bool((grad[(x == upper) & (x > lower)] <= tol).all())  # g <= 0 on an upper bound


def _random_box_qp(g: torch.Generator, n: int):
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    hessian = a @ a.T + 0.05 * torch.eye(n, dtype=torch.float64)
    if n > 1 and bool(torch.rand(1, generator=g) < 0.3):  # a decoupled coordinate, as an uncovered cell
        hessian[0, 1:] = 0.0
        hessian[1:, 0] = 0.0
    linear = 3 * torch.randn(n, generator=g, dtype=torch.float64)
    lower = -torch.rand(n, generator=g, dtype=torch.float64)
    upper = torch.rand(n, generator=g, dtype=torch.float64)
    kind = torch.randint(4, (n,), generator=g)
    lower = torch.where(kind == 1, -float("inf"), lower)
    upper = torch.where(kind == 2, float("inf"), upper)
    upper = torch.where(kind == 3, lower, upper)  # a fixed coordinate, l = u
    return hessian, linear, lower, upper


@pytest.mark.parametrize("max_iter", [50, 0])  # 0: straight to the projected Newton fallback
def test_the_box_qp_solver_matches_enumeration_and_satisfies_kkt(max_iter):
    g = torch.Generator().manual_seed(0)
    active = 0
    for trial in range(150):
        n = 1 + trial % 5
        hessian, linear, lower, upper = _random_box_qp(g, n)
        x = box_qp.solve_box_qp(hessian, linear, lower, upper, max_iter=max_iter)
        points = _enumerated_minimiser(hessian, linear, lower, upper)
        assert points, trial
        for point in points:  # the strictly convex problem has one KKT point (degenerate patterns repeat it)
            torch.testing.assert_close(x, point, rtol=0, atol=1e-9)
        _assert_kkt(hessian, linear, lower, upper, x)
        active += int(((x == lower) | (x == upper)).sum())
    assert active > 150  # the bounds did bind on many coordinates


def test_the_box_qp_solver_matches_projected_gradient_on_a_larger_problem():
    g = torch.Generator().manual_seed(1)
    n = 40
    a = torch.randn(n, n, generator=g, dtype=torch.float64) / n**0.5
    hessian = a @ a.T + 0.5 * torch.eye(n, dtype=torch.float64)
    linear = torch.randn(n, generator=g, dtype=torch.float64)
    lower, upper = torch.full((n,), -0.3, dtype=torch.float64), torch.full((n,), 0.4, dtype=torch.float64)
    step = 1.0 / float(torch.linalg.eigvalsh(hessian).max())
    reference = torch.zeros(n, dtype=torch.float64)
    for _ in range(20_000):
        reference = torch.clamp(reference - step * (hessian @ reference + linear), lower, upper)
    x = box_qp.solve_box_qp(hessian, linear, lower, upper)
    torch.testing.assert_close(x, reference, rtol=0, atol=1e-10)
    _assert_kkt(hessian, linear, lower, upper, x)
    assert 5 < int(((x == lower) | (x == upper)).sum()) < n


def test_a_cycling_active_set_falls_back_to_projected_newton():
    # The primal-dual active-set method cycles on this SPD problem: guesses (lower, upper) = ({1}, {0, 2}),
    # ({0}, {1, 2}), (∅, ∅), then the first again. Finite convergence holds for M-matrices only.
    hessian = torch.tensor(
        [[3.236, -1.916, -2.907], [-1.916, 2.503, 2.343], [-2.907, 2.343, 2.962]], dtype=torch.float64
    )
    linear = torch.tensor([2.694, -0.273, -2.267], dtype=torch.float64)
    lower = torch.tensor([-0.562, -0.633, -0.247], dtype=torch.float64)
    upper = torch.tensor([0.865, 0.287, 0.198], dtype=torch.float64)
    unconstrained = torch.linalg.solve(hessian, -linear)
    problem = box_qp.BoxQP(hessian, linear, lower, upper)
    _, converged = box_qp._primal_dual_active_set(problem, unconstrained < lower, unconstrained > upper, 50)
    assert not converged
    x = box_qp.solve_box_qp(hessian, linear, lower, upper)
    (point,) = {tuple(p.tolist()) for p in _enumerated_minimiser(hessian, linear, lower, upper)}
    torch.testing.assert_close(x, torch.tensor(point, dtype=torch.float64), rtol=0, atol=1e-12)
    assert x[0] == lower[0] and x[2] == upper[2] and lower[1] < x[1] < upper[1]
    assert float(x[1]) == pytest.approx(-0.5064746, abs=1e-6)


def test_the_box_qp_solver_refuses_bad_input():
    eye = torch.eye(2, dtype=torch.float64)
    zeros = torch.zeros(2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"lower\[1\] \(1.0\) > upper\[1\] \(0.0\); the box is empty"):
        box_qp.solve_box_qp(eye, zeros, torch.tensor([0.0, 1.0], dtype=torch.float64), zeros)
    with pytest.raises(ValueError, match="positive definite"):
        box_qp.solve_box_qp(torch.zeros(2, 2, dtype=torch.float64), zeros, zeros - 1, zeros + 1)
    with pytest.raises(ValueError, match="expected"):
        box_qp.solve_box_qp(eye, torch.zeros(3, dtype=torch.float64), zeros, zeros)


def _extremes_over_deterministic_policies(game: tabular.TabularGame) -> tuple[float, float]:
    """min and max over states and deterministic stationary policies of V^π(s), by enumeration."""
    n_states, n_joint = game.reward.shape
    policies = torch.cartesian_prod(*[torch.arange(n_joint)] * n_states).reshape(-1, n_states)  # [P, S]
    rows = torch.arange(n_states)
    r_pi = game.reward[rows, policies]  # [P, S]
    p_pi = game.next_prob[rows, policies]  # [P, S, S]
    values = torch.linalg.solve(torch.eye(n_states, dtype=torch.float64) - game.gamma * p_pi, r_pi)
    return float(values.min()), float(values.max())


def test_value_bounds_are_the_extreme_values_of_the_game():
    low, high = RatioGameTask().tabular_model().value_bounds()
    assert low == pytest.approx(VALUE_MIN, abs=1e-12) and high == pytest.approx(VALUE_MAX, abs=1e-12)
    game = StochasticGameTask(**TINY).tabular_model()  # 6 time-augmented states, 4 joint actions
    low, high = game.value_bounds()
    expected_low, expected_high = _extremes_over_deterministic_policies(game)  # 4^6 policies
    assert low == pytest.approx(expected_low, abs=1e-12) and high == pytest.approx(expected_high, abs=1e-12)
    # the horizon-3 game: the worst is one last step of the smallest reward, the best ≤ 3 × the largest
    assert low == pytest.approx(float(game.reward.min()), abs=1e-12)
    assert low == pytest.approx(0.0884774, abs=1e-6)
    assert high == pytest.approx(2.5941946, abs=1e-6) and high <= 3 * float(game.reward.max())
    # every policy's action values lie in the box
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        thetas = [3 * torch.randn(game.n_states, 2**m, 2, generator=g, dtype=torch.float64) for m in range(2)]
        for m in (1, 2):
            q = tabular.prefix_q(game, thetas, m)
            assert float(q.min()) >= low - 1e-12 and float(q.max()) <= high + 1e-12


def test_value_bounds_refuse_a_game_that_never_ends():
    game = tabular.TabularGame(
        reward=torch.ones(1, 2, dtype=torch.float64),
        next_prob=torch.ones(1, 2, 1, dtype=torch.float64),  # never terminates, γ = 1: V = ∞
        initial=torch.ones(1, dtype=torch.float64),
        n_agents=1,
        n_actions=2,
    )
    with pytest.raises(ConfigError, match="never terminates"):
        game.value_bounds()


def _uniform_thetas(game: tabular.TabularGame) -> list[torch.Tensor]:
    n = game.n_actions
    return [torch.zeros(game.n_states, n**m, n, dtype=torch.float64) for m in range(game.n_agents)]


def test_the_objective_is_the_pessimistic_term_plus_the_bellman_error():
    game = StochasticGameTask(**TINY).tabular_model()
    g = torch.Generator().manual_seed(3)
    thetas = [torch.randn(game.n_states, 2**m, 2, generator=g, dtype=torch.float64) for m in range(2)]
    lam, ridge = 3.0, 1e-3
    for m in (1, 2):
        data = tabular.sample_oracle(game, thetas, m, 40, torch.Generator().manual_seed(m))
        hessian, linear = tabular.pessimistic_objective(game, thetas, m, data, lam, ridge)
        weight = game.initial.unsqueeze(-1) * tabular.prefix_probs(thetas, m)

        def objective(f, m=m, data=data, weight=weight):
            pessimism = float((weight * f).sum())
            return (
                pessimism
                + lam * tabular.bellman_error(game, thetas, m, data, f)
                + 0.5 * ridge * float((f**2).sum())
            )

        zero = torch.zeros_like(weight)
        for _ in range(5):
            f = torch.randn(weight.shape, generator=g, dtype=torch.float64)
            flat = f.reshape(-1)
            quadratic = float(0.5 * flat @ hessian @ flat + linear @ flat)
            assert quadratic == pytest.approx(objective(f) - objective(zero), rel=1e-10, abs=1e-12)


def test_an_uncovered_cell_stays_in_the_class_and_keeps_its_action():
    # Algorithm 2 at k = 0 (uniform policies, line 1), agent 1, 16 oracle samples: the initial cell
    # (s = 0, t = 0, a_1 = 0) gets no sample and, at t = 0, is nobody's successor.
    game = StochasticGameTask(**TINY).tabular_model()
    thetas = _uniform_thetas(game)
    low, high = game.value_bounds()
    data = tabular.sample_oracle(game, thetas, 1, 16, torch.Generator().manual_seed(0))
    count = torch.bincount(data.state * 2 + data.prefix, minlength=game.n_states * 2).reshape(-1, 2)
    assert count[:2].tolist() == [[0, 2], [3, 1]]
    weight = game.initial.unsqueeze(-1) * tabular.prefix_probs(thetas, 1)
    truth = float((weight * tabular.prefix_q(game, thetas, 1)).sum())
    assert truth == pytest.approx(1.5100073, abs=1e-6)

    f = tabular.pessimistic_evaluation(game, thetas, 1, data, 10.0)
    assert float(f.min()) >= low and float(f.max()) <= high
    assert float(f[0, 0]) == low  # no data: the least value some policy has, V_min ≈ 0.088
    estimate = float((weight * f).sum())
    assert estimate == pytest.approx(0.8073624, abs=1e-6) and estimate <= truth
    probs = torch.softmax(tabular.improve(thetas[0], f, eta=1.0), -1)
    assert float(probs[0, 0, 0]) == pytest.approx(0.3589482, abs=1e-6)  # from 0.5: penalised, not killed
    assert float(probs.min()) == pytest.approx(0.2789562, abs=1e-6)  # (t = 1, s = 0, a_1 = 1), one sample

    # The unconstrained minimiser (the closed form before the class bounds) on the same data: the cell's
    # value is −c/ridge = −μ0(s)·π(a|s)/1e-6, and line 5 wipes the action out.
    hessian, linear = tabular.pessimistic_objective(game, thetas, 1, data, 10.0)
    closed_form = torch.linalg.solve(hessian, -linear).reshape(f.shape)
    unbounded = tabular.pessimistic_evaluation(game, thetas, 1, data, 10.0, bounds=UNBOUNDED)
    torch.testing.assert_close(unbounded, closed_form, rtol=1e-6, atol=1e-6)
    assert float(unbounded[0, 0]) == pytest.approx(-0.5 * 0.5 / 1e-6, rel=1e-6)
    assert float(torch.softmax(tabular.improve(thetas[0], unbounded, eta=1.0), -1).min()) < 1e-100


@pytest.mark.parametrize("lam", [0.3, 3.0, 30.0])
def test_few_samples_stay_in_the_class_and_pessimistic(lam):
    game = StochasticGameTask(**TINY).tabular_model()
    low, high = game.value_bounds()
    uncovered = 0
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        thetas = [torch.randn(game.n_states, 2**m, 2, generator=g, dtype=torch.float64) for m in range(2)]
        for m in (1, 2):
            for n in (4, 8, 16):
                data = tabular.sample_oracle(game, thetas, m, n, torch.Generator().manual_seed(seed))
                f = tabular.pessimistic_evaluation(game, thetas, m, data, lam)
                assert float(f.min()) >= low and float(f.max()) <= high
                q = tabular.prefix_q(game, thetas, m)
                weight = game.initial.unsqueeze(-1) * tabular.prefix_probs(thetas, m)
                estimate, truth = float((weight * f).sum()), float((weight * q).sum())
                assert estimate <= truth, (seed, m, n)
                # the minimiser's guarantee over F^m, which holds Q: f(s0) + λE(f) <= Q(s0) + λE(Q) + ridge
                lhs = estimate + lam * tabular.bellman_error(game, thetas, m, data, f)
                ridge_term = 1e-6 * float((q**2).sum())
                rhs = truth + lam * tabular.bellman_error(game, thetas, m, data, q) + ridge_term
                assert lhs <= rhs + 1e-9
                # no action loses more than η·(V_max − V_min) of logit in one step
                improved = tabular.improve(thetas[m - 1], f, eta=1.0) - thetas[m - 1]
                assert float(improved.max() - improved.min()) <= high - low
                cells = torch.bincount(data.state * 2**m + data.prefix, minlength=f.numel())
                uncovered += int((cells.reshape(f.shape)[:2] == 0).sum())  # initial cells without data
    assert uncovered > 20


def test_pessimistic_evaluation_refuses_a_bad_ridge_or_box():
    game = RatioGameTask().tabular_model()
    thetas = _uniform_thetas(game)
    data = tabular.sample_oracle(game, thetas, 1, 10, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"ridge \(0.0\) must be > 0"):
        tabular.pessimistic_evaluation(game, thetas, 1, data, 1.0, ridge=0.0)
    with pytest.raises(ValueError, match=r"bounds \(1.0, 0.0\)"):
        tabular.pessimistic_evaluation(game, thetas, 1, data, 1.0, bounds=(1.0, 0.0))
