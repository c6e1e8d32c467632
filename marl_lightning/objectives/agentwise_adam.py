"""Adam over agent-stacked parameters that updates one agent's slice at a time (sequential updates)."""

from __future__ import annotations

from collections.abc import Iterable

import torch


class AgentwiseAdam(torch.optim.Optimizer):
    """Adam whose ``step(agent)`` touches only ``p[agent]`` of every parameter (leading dim = agents).

    Unshared ``MultiAgentMLP`` parameters are stacked over agents ([A, ...]). A plain Adam step after a
    gradient that is zero for every agent but m would still move the others (their moments are not
    zero); here each agent has its own moments and step count, so updating agent m leaves every other agent's
    parameters and optimiser state exactly as they were.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        n_agents: int,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})
        self.n_agents = n_agents
        for group in self.param_groups:
            for p in group["params"]:
                if p.shape[0] != n_agents:
                    raise ValueError(
                        "AgentwiseAdam: "
                        f"needs parameters stacked over {n_agents} agents, got {tuple(p.shape)}."
                    )

    @torch.no_grad()
    def step(self, agent: int) -> None:  # type: ignore[override]
        """One Adam step on slice ``agent`` of every parameter that has a gradient."""
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros(self.n_agents, dtype=torch.long)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"][agent] += 1
                t = int(state["step"][agent])
                grad = p.grad[agent]
                exp_avg, exp_avg_sq = state["exp_avg"][agent], state["exp_avg_sq"][agent]
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denominator = (exp_avg_sq / (1 - beta2**t)).sqrt_().add_(group["eps"])
                p[agent].addcdiv_(exp_avg, denominator, value=-group["lr"] / (1 - beta1**t))
