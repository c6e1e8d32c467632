"""Learning curve of the default MAPPO config: train/return_mean against frames, several seeds.

Usage: python benchmarks/learning_curve.py [--config conf/mappo.yaml] [--seeds 0 1 2] [--frames 600000]
Runs ``python -m marl_lightning fit`` once per seed (sequentially: two runs sharing 2 cores slow each
other), reads the curves back from the MLflow store, prints the returns at 120k / 300k / 600k frames
(the value at that frame and the mean of the 3 iterations ending there), the median over seeds, and
writes a plot next to the store.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

CHECKPOINTS = (120_000, 300_000, 600_000)


def run_seed(config: str, seed: int, frames: int, workdir: Path) -> str:
    run_name = f"curve-seed{seed}"
    cmd = [
        sys.executable, "-m", "marl_lightning", "fit", "--config", config,
        "--seed_everything", str(seed), "--model.total_frames", str(frames),
        "--trainer.logger.init_args.tracking_uri", f"sqlite:///{workdir / 'curves.db'}",
        "--trainer.logger.init_args.run_name", run_name,
        "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks.init_args.dirpath", str(workdir / f"ckpt-seed{seed}"),
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return run_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="conf/mappo.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--frames", type=int, default=600_000)
    parser.add_argument("--workdir", default="benchmarks/out")
    args = parser.parse_args()
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        run_seed(args.config, seed, args.frames, workdir)

    client = MlflowClient(f"sqlite:///{workdir / 'curves.db'}")
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    curves: dict[int, list[tuple[int, float]]] = {}
    for seed in args.seeds:
        runs = client.search_runs(
            experiment_ids, f"attributes.run_name = 'curve-seed{seed}'", order_by=["start_time DESC"]
        )
        history = client.get_metric_history(runs[0].info.run_id, "train/return_mean")
        curves[seed] = sorted((m.step, m.value) for m in history)

    at: dict[int, list[float]] = {f: [] for f in CHECKPOINTS}
    last3: dict[int, list[float]] = {f: [] for f in CHECKPOINTS}
    for seed, curve in curves.items():
        for frames in CHECKPOINTS:
            upto = [v for s, v in curve if s <= frames]
            if not upto or curve[-1][0] < frames:
                continue
            at[frames].append(upto[-1])
            last3[frames].append(statistics.fmean(upto[-3:]))
            print(f"seed {seed} frames {frames}: return {upto[-1]:.3f} (mean of last 3 iterations "
                  f"{statistics.fmean(upto[-3:]):.3f})")
    for frames in CHECKPOINTS:
        if at[frames]:
            median = statistics.median(at[frames])
            print(f"median over {len(at[frames])} seeds at {frames} frames: {median:.3f} "
                  f"(last-3 mean: {statistics.median(last3[frames]):.3f})")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for seed, curve in curves.items():
        ax.plot([s for s, _ in curve], [v for _, v in curve], label=f"seed {seed}")
    ax.set_xlabel("frames")
    ax.set_ylabel("train/return_mean")
    ax.set_title(f"{Path(args.config).stem}: mean episode return per agent")
    ax.grid(alpha=0.3)
    ax.legend()
    out = workdir / "learning_curve.png"
    fig.savefig(out, dpi=100, bbox_inches="tight")
    print(f"plot: {out}")


if __name__ == "__main__":
    main()
