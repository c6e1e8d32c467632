"""Von Neumann's ratio game: sequential updates (SequentialPPO) against independent ones (IPPO), started
near the stationary point that traps independent policy gradients (paper 002, Appendix E, Figure 1 a-c).

Usage: python benchmarks/ratio_game_sequential.py [--seeds 0 1 2] [--iterations 40] [--lr 0.01]
       [--init stationary|uniform]
Both algorithms train with sampled episodes on ``conf/env/ratio_game.yaml`` (60 envs x 50 steps per
iteration, unshared actors, 5 epochs) from the same initial joint policy: ``stationary`` sets agent 0 to
(x, 1 − x) = (0.5, 0.5) and agent 1 to (y, 1 − y) = (0.02, 0.98), near the stationary point (0.5, 0) where
V = 5/11 ≈ 0.46; ``uniform`` starts both at (0.5, 0.5). The exact value of the joint policy,
``eval/ratio_game_value``, is read back every iteration. Prints the median over seeds at a few iterations
and the iteration at which each run first reaches 0.95, and plots the curves (optimum 1).
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from lightning.pytorch.loggers import CSVLogger

from marl_lightning.cli import MarlCLI

FRAMES = 3000


def set_initial_policy(model, probabilities: list[list[float]]) -> None:
    """Zero the actor's last layer, set its bias to log π: every observation gets π_i = probabilities[i]."""
    last_weight, last_bias = list(model.actor.parameters())[-2:]
    with torch.no_grad():
        last_weight.zero_()
        last_bias.copy_(torch.tensor(probabilities).log())


def run(algorithm: str, seed: int, args: argparse.Namespace, workdir: Path) -> list[float]:
    cli = MarlCLI(args=[
        "--config", f"conf/{algorithm}.yaml", "--config", "conf/env/ratio_game.yaml",
        "--model.total_frames", str(FRAMES * args.iterations), "--model.init_args.lr", str(args.lr),
        "--model.init_args.num_epochs", "5", "--model.init_args.share_actor_params", "false",
        "--model.init_args.actor_cells", "[16]", "--model.init_args.critic_cells", "[64, 64]",
        "--seed_everything", str(seed), "--trainer.val_check_interval", "1",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks.init_args.dirpath", str(workdir / f"{algorithm}-{seed}"),
    ], run=False)
    start = [[0.5, 0.5], [0.02, 0.98]] if args.init == "stationary" else [[0.5, 0.5], [0.5, 0.5]]
    set_initial_policy(cli.model, start)
    logger = CSVLogger(str(workdir), name=f"{algorithm}-{seed}")
    cli.trainer.loggers = [logger]
    initial = cli.datamodule.env_factory.evaluation_metrics(cli.model.policy, 0.0)["eval/ratio_game_value"]
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    values = [float(initial)]


    with open(Path(logger.log_dir) / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get("eval/ratio_game_value"):
                values.append(float(row["eval/ratio_game_value"]))
    return values


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--init", choices=["stationary", "uniform"], default="stationary")
    parser.add_argument("--workdir", default="benchmarks/out")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]
    workdir = Path(tempfile.mkdtemp(prefix="ratio_game_"))
    curves = {alg: [run(alg, seed, args, workdir) for seed in args.seeds] for alg in ("seqppo", "ippo")}

    print(f"ratio game, init {args.init}, lr {args.lr}: exact value of the joint policy (optimum 1, "
          f"stationary point 5/11 = {5 / 11:.3f}); median [min, max] over {len(args.seeds)} seeds")
    for algorithm, runs in curves.items():
        length = min(len(c) for c in runs)
        marks = sorted({0, 5, 10, 20, length - 1} & set(range(length)))
        cells = []
        for i in marks:
            values = [c[i] for c in runs]
            cells.append(f"it {i}: {statistics.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]")
        reach = [next((i for i, v in enumerate(c) if v >= 0.95), math.inf) for c in runs]
        print(f"  {algorithm:>6}: " + "; ".join(cells) + f"; first iteration >= 0.95: {reach}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4))
    for algorithm, runs in curves.items():
        length = min(len(c) for c in runs)
        values = np.array([c[:length] for c in runs])
        line = ax.plot(np.median(values, 0), label=f"{algorithm} ({len(runs)} seeds)")[0]
        ax.fill_between(range(length), values.min(0), values.max(0), color=line.get_color(), alpha=0.2)
    ax.axhline(1.0, color="black", linestyle="--", label="optimum")
    ax.axhline(5 / 11, color="grey", linestyle=":", label="stationary point")
    ax.set_xlabel("iteration (3000 frames each)")
    ax.set_ylabel("eval/ratio_game_value")
    ax.set_title(f"ratio game from the {args.init} start, lr {args.lr}")
    ax.grid(alpha=0.3)
    ax.legend()
    out = Path(args.workdir) / f"ratio_game_{args.init}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    print(f"plot: {out}")


if __name__ == "__main__":
    main()
