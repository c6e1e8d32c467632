"""DPO's adaptive penalty coefficients (paper 003, Equation 21)."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from typing_extensions import override

from marl_lightning.core.errors import ConfigError


def adapt_beta(
    beta: torch.Tensor, kl: torch.Tensor, d_target: float, delta: float, omega: float, low: float, high: float
) -> torch.Tensor:
    """Equation 21 of paper 003, per agent: β·ω if KL > d_target·δ, β/ω if KL < d_target/δ, else β; then
    clamped to [low, high]. A coefficient that is switched off (β = 0, the ablations) stays 0.

    Shapes:
        beta, kl: [A] -> [A].
    """
    factor = torch.where(
        kl > d_target * delta,
        torch.full_like(beta, omega),
        torch.where(kl < d_target / delta, torch.full_like(beta, 1.0 / omega), torch.ones_like(beta)),
    )
    return torch.where(beta > 0, (beta * factor).clamp(low, high), beta)


class AdaptiveBeta(Callback):
    """Updates the DPO loss's per-agent β1^i, β2^i once per iteration by Equation 21 of paper 003.

    The KL is D_KL^avg(π_old^i ‖ π_new^i), the exact KL averaged over the iteration's states, measured after
    the update (``kl`` of the iteration's outputs). It is already averaged over ranks, so every rank makes
    the same change and the β buffers stay identical; they live in the module's state dict, so checkpoints
    carry them. ``d_target`` is the module's (``--model.init_args.d_target``): the task-dependent knob.

    Args:
        delta: the tolerance band [d_target/δ, d_target·δ] (paper: 1.5).
        omega: the multiplicative step (paper: 2).
        beta_min, beta_max: the documented range β is clamped to, [1e-5, 1e3] by default: wide enough
            never to bind in the paper's settings (β starts at 0.01), narrow enough that a long stretch of
            tiny KLs cannot drive β to 0 (from where ω-steps could never recover it in reasonable time),
            nor a burst of large KLs to a value that freezes the policy.
    """

    def __init__(
        self, delta: float = 1.5, omega: float = 2.0, beta_min: float = 1e-5, beta_max: float = 1e3
    ) -> None:
        if not (delta > 1 and omega > 1 and 0 < beta_min < beta_max):
            raise ConfigError(
                f"AdaptiveBeta needs delta > 1, omega > 1 and 0 < beta_min < beta_max; got delta={delta}, "
                f"omega={omega}, beta_min={beta_min}, beta_max={beta_max}."
            )
        self.delta, self.omega = delta, omega
        self.beta_min, self.beta_max = beta_min, beta_max

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        loss = getattr(pl_module, "loss_module", None)
        if not (hasattr(loss, "beta1") and hasattr(loss, "beta2")):
            raise ConfigError(
                f"AdaptiveBeta adapts DPO's β coefficients; {type(pl_module).__name__} has none. Remove the "
                "callback or train marl_lightning.DPO."
            )

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = pl_module.loss_module
        kl = outputs["kl"].to(loss.beta1.device)  # [A], averaged over ranks
        d_target = float(pl_module.hparams.d_target)
        bounds = (self.beta_min, self.beta_max)
        with torch.no_grad():
            for beta in (loss.beta1, loss.beta2):
                beta.copy_(adapt_beta(beta, kl, d_target, self.delta, self.omega, *bounds))
        metrics = {}
        for name, beta in (("beta1", loss.beta1), ("beta2", loss.beta2)):
            for i, value in enumerate(beta.tolist()):
                metrics[f"{name}/agent_{i}"] = value
        pl_module.log_dict(metrics, batch_size=1)
