"""The exact minimiser of a strictly convex quadratic over a box: min ½ xᵀHx + qᵀx s.t. l ≤ x ≤ u, H
symmetric positive definite (float64), bounds possibly infinite.

Methods:
- decoupled coordinates (a row of H with no off-diagonal entry) in closed form, clamp(−q_i/H_ii);
- the rest by the primal–dual active-set method (M. Hintermüller, K. Ito, K. Kunisch, "The primal-dual
  active set strategy as a semismooth Newton method", SIAM J. Optim. 13(3), 2002), which is finite for
  M-matrices but can cycle for general SPD H;
- on a cycle, Bertsekas' projected Newton method (D. P. Bertsekas, "Projected Newton methods for
  optimization problems with simple constraints", SIAM J. Control Optim. 20(2), 1982), which converges for
  any SPD H, followed by active-set steps from its estimate;
- every result is checked against the KKT conditions.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)  # eq=False: tensors have no single-bool equality
class BoxQP:
    """The problem min ½ xᵀHx + qᵀx over lower ≤ x ≤ upper.

    Shapes: hessian [n, n], linear, lower, upper [n].
    """

    hessian: torch.Tensor
    linear: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor

    @functools.cached_property
    def diag(self) -> torch.Tensor:
        """diag H. Shapes: -> [n]."""
        # cached_property writes the instance __dict__ directly, which a frozen dataclass allows
        return self.hessian.diagonal()

    @functools.cached_property
    def h_norm(self) -> float:
        """‖H‖∞, the largest absolute row sum."""
        return float(self.hessian.abs().sum(-1).max()) if self.hessian.numel() else 0.0

    def block(self, index: torch.Tensor) -> BoxQP:
        """The problem restricted to the coordinates ``index`` (the others held at 0).

        Shapes: index [k] -> a problem of size k.
        """
        hessian = self.hessian.index_select(0, index).index_select(1, index)
        return BoxQP(hessian, self.linear[index], self.lower[index], self.upper[index])

    def clamp(self, x: torch.Tensor) -> torch.Tensor:
        """x projected onto the box. Shapes: [n] -> [n]."""
        return torch.clamp(x, self.lower, self.upper)

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """g = Hx + q. Shapes: [n] -> [n]."""
        return self.hessian @ x + self.linear

    def objective(self, x: torch.Tensor) -> float:
        """½ xᵀHx + qᵀx. Shapes: [n] -> scalar."""
        return float(0.5 * x @ (self.hessian @ x) + self.linear @ x)

    def kkt_residual(self, x: torch.Tensor) -> tuple[float, float]:
        """The KKT residual of x, in gradient units: max_i of diag_i·|x_i − clamp(x_i − g_i/diag_i)| (zero
        iff g_i = 0 inside the box, g_i ≥ 0 on a lower and ≤ 0 on an upper bound) and of any bound
        violation; and the gradient's scale ‖q‖∞ + ‖H‖∞‖x‖∞.

        Shapes: x [n] -> (residual, scale).
        """
        if not x.numel():
            return 0.0, 1.0
        diag = self.diag
        natural = diag * (x - self.clamp(x - self.gradient(x) / diag))
        violation = diag * ((self.lower - x).clamp_min(0) + (x - self.upper).clamp_min(0))
        residual = float(torch.maximum(natural.abs(), violation).max())
        return residual, float(self.linear.abs().max()) + self.h_norm * float(x.abs().max()) + 1e-300


def solve_box_qp(
    hessian: torch.Tensor, linear: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, max_iter: int = 50
) -> torch.Tensor:
    """The exact minimiser of ½ xᵀHx + qᵀx over lower ≤ x ≤ upper, H symmetric positive definite (float64).

    Coordinates whose row of H has no off-diagonal entry decouple and are solved in closed form
    (clamp(−q_i/H_ii)). The rest by the primal–dual active-set method (Hintermüller, Ito & Kunisch 2002,
    semismooth Newton on x = clamp(x − g/diag H), g = Hx + q): fix the coordinates guessed active at their
    bounds, solve the reduced system for the free ones, re-guess from the signs of x and g. When the guess
    repeats the KKT conditions hold, and for a strictly convex problem the KKT point is the unique
    minimiser. It takes a few iterations here; the method is finite for M-matrices but can cycle for
    general SPD H, so a repeated guess or ``max_iter`` switches to Bertsekas' (1982) projected Newton
    method, which converges for any SPD H, and the active-set step then finishes from its estimate. The
    result is checked against the KKT conditions: x in the box, g_i = 0 where l_i < x_i < u_i, g_i ≥ 0 at
    l_i, g_i ≤ 0 at u_i (to 1e-8 of the gradient's scale). Infinite bounds are allowed.

    Shapes: hessian [n, n], linear, lower, upper [n] -> [n].
    """
    n = linear.numel()
    if hessian.shape != (n, n) or lower.shape != (n,) or upper.shape != (n,):
        raise ValueError(
            f"solve_box_qp: hessian {tuple(hessian.shape)}, linear {tuple(linear.shape)}, lower "
            f"{tuple(lower.shape)}, upper {tuple(upper.shape)}; expected [n, n] and [n] each."
        )
    if bool((lower > upper).any()):
        bad = int((lower > upper).nonzero()[0])
        raise ValueError(
            f"solve_box_qp: lower[{bad}] ({float(lower[bad])}) > upper[{bad}] ({float(upper[bad])}); "
            "the box is empty."
        )
    problem = BoxQP(hessian, linear, lower, upper)
    if not bool((problem.diag > 0).all()):
        raise ValueError(
            f"solve_box_qp: the Hessian must be positive definite; its smallest diagonal entry is "
            f"{float(problem.diag.min())}. Add a ridge."
        )
    coupled = (hessian != 0).sum(-1) > 1  # rows with an off-diagonal entry
    x = problem.clamp(-linear / problem.diag)
    if bool(coupled.all()):
        x = _active_set_qp(problem, max_iter)
    elif bool(coupled.any()):
        index = coupled.nonzero().squeeze(-1)
        x[index] = _active_set_qp(problem.block(index), max_iter)
    residual, scale = problem.kkt_residual(x)
    if residual > 1e-8 * scale:
        raise RuntimeError(
            f"solve_box_qp: KKT residual {residual:.3g} above 1e-8 × {scale:.3g} after the active-set and "
            "projected Newton steps; the Hessian may be too ill-conditioned (increase the ridge)."
        )
    return x


def _fix_and_solve(problem: BoxQP, at_lower: torch.Tensor, at_upper: torch.Tensor) -> torch.Tensor:
    """x with x = lower on ``at_lower``, upper on ``at_upper``, and ∂/∂x_free (½xᵀHx + qᵀx) = 0.

    Shapes: at_lower, at_upper [n] -> [n].
    """
    hessian, linear = problem.hessian, problem.linear
    x = torch.where(at_lower, problem.lower, torch.where(at_upper, problem.upper, torch.zeros_like(linear)))
    free = (~(at_lower | at_upper)).nonzero().squeeze(-1)
    fixed = (at_lower | at_upper).nonzero().squeeze(-1)
    if free.numel() == linear.numel():  # nothing fixed: no copy of H
        rhs, block = -linear, hessian
    elif free.numel():
        rows = hessian.index_select(0, free)
        rhs = -linear[free] - rows.index_select(1, fixed) @ x[fixed]
        block = rows.index_select(1, free)
    if free.numel():
        factor, info = torch.linalg.cholesky_ex(block)
        if int(info) != 0:
            raise ValueError(
                "solve_box_qp: the Hessian is not positive definite (Cholesky failed on a principal block); "
                "add a ridge."
            )
        x[free] = torch.cholesky_solve(rhs.unsqueeze(-1), factor).squeeze(-1)
    return x


def _active_set_qp(problem: BoxQP, max_iter: int) -> torch.Tensor:
    """The primal–dual active-set method with a projected Newton fallback (see ``solve_box_qp``).

    Shapes: -> [n].
    """
    none = torch.zeros_like(problem.linear, dtype=torch.bool)
    # from nothing fixed: the first step is the unconstrained minimiser
    x, converged = _primal_dual_active_set(problem, none, none, max_iter)
    if not converged:
        x = _projected_newton(problem, x)
        grad = problem.gradient(x)
        # finish with the active-set step from the projected Newton estimate's active set
        at_lower, at_upper = (x <= problem.lower) & (grad > 0), (x >= problem.upper) & (grad < 0)
        polished, converged = _primal_dual_active_set(problem, at_lower, at_upper, max_iter)
        if converged:
            x = polished
    return problem.clamp(x)


def _primal_dual_active_set(
    problem: BoxQP, at_lower: torch.Tensor, at_upper: torch.Tensor, max_iter: int
) -> tuple[torch.Tensor, bool]:
    """Hintermüller–Ito–Kunisch iterations from the guess (at_lower, at_upper); (x, whether a guess
    repeated with x in the box, i.e. the KKT conditions hold up to the tolerances).

    Shapes: at_lower, at_upper [n] -> ([n], bool).
    """
    lower, upper, diag = problem.lower, problem.upper, problem.diag
    finite = torch.cat([lower[torch.isfinite(lower)], upper[torch.isfinite(upper)]])
    x_tol = 1e-10 * (1.0 + (float(finite.abs().max()) if finite.numel() else 0.0))
    seen: set[tuple[bytes, bytes]] = set()
    x = problem.clamp(-problem.linear / diag)
    for _ in range(max_iter):
        key = (at_lower.numpy().tobytes(), at_upper.numpy().tobytes())
        if key in seen:
            return x, False  # a cycle
        seen.add(key)
        x = _fix_and_solve(problem, at_lower, at_upper)
        grad = problem.gradient(x)
        g_tol = 1e-10 * (float(problem.linear.abs().max()) + problem.h_norm * float(x.abs().max()))
        free = ~(at_lower | at_upper)
        # x − g/diag on the fixed coordinates (g = 0 on the free ones): the next guess, with tolerances
        # so that degenerate coordinates (on a bound with g = 0) do not flip on rounding.
        step = torch.where(free, x, x - grad / diag)
        stay_lower = (at_lower & (grad >= -g_tol)) | (step < lower - x_tol)
        stay_upper = (at_upper & (grad <= g_tol)) | (step > upper + x_tol)
        new_lower = torch.where(free, x < lower - x_tol, stay_lower)
        new_upper = torch.where(free, x > upper + x_tol, stay_upper)
        new_upper &= ~new_lower
        if torch.equal(new_lower, at_lower) and torch.equal(new_upper, at_upper):
            return x, True
        at_lower, at_upper = new_lower, new_upper
    return x, False


def _projected_newton(problem: BoxQP, x: torch.Tensor, max_iter: int = 500) -> torch.Tensor:
    """Bertsekas' projected Newton method (SIAM J. Control Optim. 20, 1982) for the box QP, from x.

    Each step: the ε-active set A (on a bound with g pointing out), a Newton step on the rest, a scaled
    gradient step on A, Armijo backtracking along the projection arc clamp(x + α d). Converges to the
    minimiser for any SPD H; once A is the optimal active set a full step lands on it.

    Shapes: x [n] -> [n].
    """
    lower, upper, diag = problem.lower, problem.upper, problem.diag
    x = problem.clamp(x)
    for _ in range(max_iter):
        residual, scale = problem.kkt_residual(x)
        if residual <= 1e-12 * scale:
            break
        grad = problem.gradient(x)
        natural = x - problem.clamp(x - grad / diag)
        eps = min(1e-3, float(natural.abs().max()))
        active = ((x <= lower + eps) & (grad > 0)) | ((x >= upper - eps) & (grad < 0))
        direction = -grad / diag
        free = (~active).nonzero().squeeze(-1)
        if free.numel():
            block = problem.hessian.index_select(0, free).index_select(1, free)
            direction[free] = -torch.linalg.solve(block, grad[free])
        start, alpha = problem.objective(x), 1.0
        while True:
            candidate = problem.clamp(x + alpha * direction)
            predicted = -alpha * float(grad[free] @ direction[free]) + float(
                (grad * (x - candidate))[active].sum()
            )
            if start - problem.objective(candidate) >= 1e-4 * predicted:
                break
            alpha *= 0.5
            if alpha < 1e-20:  # no descent left at this precision
                return x
        x = candidate
    return x
