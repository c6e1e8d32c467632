"""Von Neumann's ratio game with exact values, the setting of paper 002's Figure 1: the sequential
mirror-descent update of Algorithm 1 against independent policy gradients, both from the exact model.

Usage: python benchmarks/ratio_game_exact.py [--stepsizes 0.001 0.01 0.05] [--iterations 20000 20000 8000]
       [--init stationary|uniform]

- Sequential (Algorithm 1 with exact evaluation, Proposition 4.2 in parameters): per iteration, for agent
  m = 1, 2 in order, θ^m ← θ^m + η Q^{1:m}_{π_k}(s, a^{1:m}); agent 2's softmax table conditions on agent 1's
  action (the paper's conditional policies), Q^{1:m} is computed exactly by ``marl_lightning.exact.tabular``.
- Independent mirror descent (an ablation): the same step, agent 2 unconditional, on its marginal Q^2(a2).
- Independent PG: softmax policies (x, 1 − x), (y, 1 − y), θ^i ← θ^i + η ∂V/∂θ^i, the exact gradient of
  V = π1ᵀRπ2 / π1ᵀSπ2, both agents from the same π_k.

Both start at (x, y) = (0.5, 0.02), near the stationary point (0.5, 0) with V = 5/11 (``stationary``), or at
(0.5, 0.5) (``uniform``). Deterministic (no sampling), so there are no seeds. Prints the value at a few
iterations and the first iteration with V ≥ 0.95, writes the curves to
``benchmarks/out/ratio_game_exact.png``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from marl_lightning.envs.ratio_game import RatioGameTask, ratio_game_value
from marl_lightning.exact.tabular import joint_value, prefix_q

REPORT_AT = (10, 100, 1000, 5000, 10000, 20000)


def start_probabilities(init: str) -> tuple[float, float]:
    return (0.5, 0.02) if init == "stationary" else (0.5, 0.5)


def mirror_descent(eta: float, iterations: int, init: str, conditional: bool = True) -> list[float]:
    """Algorithm 1 of paper 002 with exact Q (Proposition 4.2 in parameters): θ^m += η Q^{1:m}_{π_k} for
    m = 1, 2, tables [1, n^(m−1), n]. With ``conditional=False`` agent 2 keeps one row for both of agent 1's
    actions and steps on its own marginal Q^2(a2) = Σ_a1 π1(a1) Q(a1, a2): independent mirror descent."""
    game = RatioGameTask().tabular_model()
    x, y = start_probabilities(init)
    thetas = [
        torch.tensor([[[math.log(x), math.log(1 - x)]]], dtype=torch.float64),  # [S=1, 1, n]
        torch.tensor([[[math.log(y), math.log(1 - y)]] * 2], dtype=torch.float64),  # [S=1, n (a1), n]
    ]
    values = [joint_value(game, thetas)]
    for _ in range(iterations):
        q1 = prefix_q(game, thetas, 1).reshape(1, 1, 2)  # Q^1(a1), from π_k
        q12 = prefix_q(game, thetas, 2).reshape(1, 2, 2)  # Q^{1:2}(a1, a2), from π_k
        if not conditional:
            pi1 = torch.softmax(thetas[0], -1).reshape(1, 2, 1)
            q12 = (pi1 * q12).sum(1, keepdim=True).expand(1, 2, 2)  # Q^2(a2), the same for both rows
        thetas = [thetas[0] + eta * q1, thetas[1] + eta * q12]
        values.append(joint_value(game, thetas))
    return values


def sequential(eta: float, iterations: int, init: str) -> list[float]:
    return mirror_descent(eta, iterations, init, conditional=True)


def independent_mirror_descent(eta: float, iterations: int, init: str) -> list[float]:
    return mirror_descent(eta, iterations, init, conditional=False)


def independent(eta: float, iterations: int, init: str) -> list[float]:
    """Independent softmax policy gradient ascent on the exact V(π1, π2), simultaneous steps."""
    x, y = start_probabilities(init)
    logits = [[math.log(x), math.log(1 - x)], [math.log(y), math.log(1 - y)]]
    theta = torch.tensor(logits, dtype=torch.float64)  # [agent, n]
    values = []
    for _ in range(iterations + 1):
        theta.requires_grad_(True)
        pi = torch.softmax(theta, -1)  # [agent, n]
        value = ratio_game_value(pi[0], pi[1])
        (grad,) = torch.autograd.grad(value, theta)
        values.append(float(value.detach()))
        theta = (theta + eta * grad).detach()
    return values


RUNS = {
    "sequential": sequential,
    "independent MD": independent_mirror_descent,
    "independent PG": independent,
}


def first_reaching(values: list[float], level: float = 0.95) -> int | None:
    return next((i for i, v in enumerate(values) if v >= level), None)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stepsizes", type=float, nargs="+", default=[0.001, 0.01, 0.05])
    parser.add_argument("--iterations", type=int, nargs="+", default=[20000, 20000, 8000])
    parser.add_argument("--init", choices=["stationary", "uniform"], default="stationary")
    parser.add_argument("--out", default="benchmarks/out/ratio_game_exact.png")
    args = parser.parse_args()
    if len(args.iterations) != len(args.stepsizes):
        parser.error("give one --iterations per --stepsizes")
    curves = {}
    for eta, iterations in zip(args.stepsizes, args.iterations, strict=True):
        for name, run in RUNS.items():
            values = run(eta, iterations, args.init)
            curves[(eta, name)] = values
            shown = ", ".join(f"it {i}: {values[i]:.3f}" for i in REPORT_AT if i < len(values))
            print(f"step {eta:g} {name:>14}: V0 {values[0]:.3f}; {shown}; "
                  f"first V >= 0.95 at iteration {first_reaching(values)}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.stepsizes), figsize=(4.5 * len(args.stepsizes), 3.5), squeeze=False)
    for ax, eta in zip(axes[0], args.stepsizes, strict=True):
        for name in RUNS:
            ax.plot(curves[(eta, name)], label=name)
        ax.axhline(1.0, color="grey", linestyle=":", label="optimum")
        ax.set_title(f"step size {eta:g} ({args.init} start)")
        ax.set_xlabel("iteration")
        ax.set_ylabel("V(π1, π2), exact")
        ax.legend()
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
