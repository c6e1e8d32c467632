"""Trust-region diagnostics of every PPO-family update (paper 004: Figure 1, Figure 2, Section 6)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only
from typing_extensions import override


class TrustRegionMonitor(Callback):
    """Logs, per iteration and agent, how far the update moved each policy, and draws the paper's figures.

    Turns on the module's ``trust_region_stats``, so each iteration also measures, after the update,
    D_TV(π_old, π_new) per agent (exact for discrete actions by Proposition 5.1 of paper 004; for continuous
    ones the unbiased estimate E_{a~π_old}[(1 − π_new/π_old)⁺] on the collected actions, see
    ``marl_lightning.objectives.divergences.total_variation``), its sum and the joint ratio's range. The
    module declares and logs them with its other statistics (``tr/tv/agent_{i}``, ``tr/tv_sum``,
    ``tr/joint_ratio_min``, ``tr/joint_ratio_max``, beside ``tr/kl/agent_{i}``, ``tr/clip_fraction/agent_{i}``
    and ``tr/ratio_min/epoch_{k}``, ``tr/ratio_max/epoch_{k}``); this callback keeps their history.

    At the end of a fit (and whenever :meth:`draw` is called) it draws, from the iterations of this fit:
    ``ratio_range.png``, the per-agent min and max ratio against the optimisation epoch (median over
    iterations, the paper's Figure 1), and ``tv_cdf.png``, the cumulative distribution over iterations of
    each agent's D_TV and of their sum (the paper's Figure 2); both are logged to MLflow under
    ``trust_region/`` (or written to ``<log_dir>/trust_region/`` without an MLflow logger).

    Args:
        draw_at_end: draw and log the figures when a fit ends.
        draw_every_n_iterations: also draw every n iterations (0: never), to watch a long run.
    """

    def __init__(self, draw_at_end: bool = True, draw_every_n_iterations: int = 0) -> None:
        self.draw_at_end = draw_at_end
        self.draw_every_n_iterations = draw_every_n_iterations
        self.history: dict[str, list[torch.Tensor]] = {"ratio_min": [], "ratio_max": [], "tv": []}
        self.clip_epsilon: float | None = None

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        pl_module.trust_region_stats = True

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if "tv" not in outputs:
            return
        tv = outputs["tv"].detach().cpu()  # [A]
        self.history["tv"].append(tv)
        self.history["ratio_min"].append(outputs["ratio_min"].detach().cpu())  # [K, A]
        self.history["ratio_max"].append(outputs["ratio_max"].detach().cpu())
        self.clip_epsilon = float(pl_module.loss_module.clip_epsilon)
        n = self.draw_every_n_iterations
        if n and len(self.history["tv"]) % n == 0:
            self.draw(trainer)

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.draw_at_end and self.history["tv"]:
            self.draw(trainer)

    @rank_zero_only
    def draw(self, trainer: Trainer) -> list[Path]:
        """Draw both figures from the iterations seen so far; log them to MLflow. Returns the PNG paths."""
        if not self.history["tv"]:
            return []
        mlflow_loggers = [lg for lg in trainer.loggers if isinstance(lg, MLFlowLogger)]
        if mlflow_loggers:
            out_dir = Path(tempfile.mkdtemp(prefix="trust_region_"))
        else:
            out_dir = Path(trainer.log_dir or trainer.default_root_dir) / "trust_region"
            out_dir.mkdir(parents=True, exist_ok=True)
        paths = [
            self._draw_ratio_range(out_dir / "ratio_range.png"),
            self._draw_tv_cdf(out_dir / "tv_cdf.png"),
        ]
        for logger in mlflow_loggers:
            for path in paths:
                logger.experiment.log_artifact(logger.run_id, str(path), "trust_region")
        return paths

    def _draw_ratio_range(self, path: Path) -> Path:
        plt = _pyplot()
        ratio_min = torch.stack(self.history["ratio_min"]).median(0).values  # [K, A]
        ratio_max = torch.stack(self.history["ratio_max"]).median(0).values
        epochs = range(1, ratio_min.shape[0] + 1)
        fig, ax = plt.subplots(figsize=(6, 4))
        for agent in range(ratio_min.shape[1]):
            line = ax.plot(epochs, ratio_max[:, agent], label=f"agent {agent}")[0]
            ax.plot(epochs, ratio_min[:, agent], color=line.get_color())
        if self.clip_epsilon is not None:
            for bound in (1 - self.clip_epsilon, 1 + self.clip_epsilon):
                ax.axhline(bound, color="black", linestyle="--", linewidth=0.8)
        ax.set_xlabel("optimisation epoch")
        ax.set_ylabel("min / max independent ratio")
        ax.set_title(f"ratio range per epoch (median over {len(self.history['tv'])} iterations)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        return path

    def _draw_tv_cdf(self, path: Path) -> Path:
        plt = _pyplot()
        tv = torch.stack(self.history["tv"])  # [iterations, A]
        fig, ax = plt.subplots(figsize=(6, 4))
        levels = torch.arange(1, tv.shape[0] + 1) / tv.shape[0]
        for agent in range(tv.shape[1]):
            ax.step(tv[:, agent].sort().values, levels, where="post", label=f"agent {agent}", alpha=0.7)
        ax.step(tv.sum(1).sort().values, levels, where="post", color="black", linewidth=2, label="sum")
        ax.set_xlabel("average D_TV(π_old, π_new) per iteration")
        ax.set_ylabel("fraction of iterations")
        ax.set_title("cumulative distribution of D_TV, per agent and summed")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        return path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
