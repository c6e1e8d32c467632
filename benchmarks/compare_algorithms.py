"""Learning curves of several algorithms on one task, several seeds each, in one MLflow store.

Usage:
    python benchmarks/compare_algorithms.py --env conf/env/stochastic_game.yaml \
        --algos mappo ippo dpo --seeds 0 1 2 --frames 300000 [--tag sg] [--set model.init_args.lr=5e-4] \
        [--with conf/paper/dpo_settings.yaml]

Each algorithm is a config of ``conf/`` (``mappo`` -> ``conf/mappo.yaml``), composed with the task's
``--env`` config. Runs go one after another (two runs sharing 2 cores slow each other) into
``<workdir>/compare.db`` named ``<tag>-<algo>-seed<seed>``; runs already finished there are skipped, so the
script resumes after an interruption and later algorithms join earlier ones. Then it prints, per
algorithm, the median over seeds (and the range) of the training return at the end (mean of the last 3
iterations), and plots median and min-max band against frames, with the optimum as a line when the task
logs ``eval/optimality_gap``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient


def run_name(tag: str, algo: str, seed: int) -> str:
    return f"{tag}-{algo}-seed{seed}"


def finished_runs(client: MlflowClient) -> dict[str, str]:
    """run name -> run id of every FINISHED run in the store."""
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return {}
    runs = client.search_runs(experiment_ids, "attributes.status = 'FINISHED'", max_results=5000)
    return {r.info.run_name: r.info.run_id for r in runs}


def train(args: argparse.Namespace, algo: str, seed: int, workdir: Path) -> None:
    name = run_name(args.tag, algo, seed)
    cmd = [
        sys.executable, "-m", "marl_lightning", "fit",
        "--config", f"conf/{algo}.yaml", "--config", args.env,
        *(arg for config in args.with_configs for arg in ("--config", config)),
        "--seed_everything", str(seed), "--model.total_frames", str(args.frames),
        "--trainer.logger.init_args.tracking_uri", f"sqlite:///{workdir / 'compare.db'}",
        "--trainer.logger.init_args.run_name", name,
        "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks.init_args.dirpath", str(workdir / "ckpt" / name),
    ]
    for assignment in args.set:
        key, _, value = assignment.partition("=")
        cmd += [f"--{key}", value]
    start = time.perf_counter()
    log = workdir / f"{name}.log"
    with log.open("w") as out:
        subprocess.run(cmd, check=True, stdout=out, stderr=subprocess.STDOUT)
    print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)


def curve(client: MlflowClient, run_id: str, metric: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, metric))


def optimum(client: MlflowClient, run_id: str) -> float | None:
    """optimum = evaluated return + optimality gap, at any evaluation of the run."""
    gap = curve(client, run_id, "eval/optimality_gap")
    ret = curve(client, run_id, "eval/return_mean")
    return gap[0][1] + ret[0][1] if gap and ret else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", required=True, help="task config, e.g. conf/env/stochastic_game.yaml")
    parser.add_argument("--algos", nargs="+", default=["mappo", "ippo"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--frames", type=int, default=300_000)
    parser.add_argument("--tag", default=None, help="run-name prefix (default: the env config's stem)")
    parser.add_argument("--set", nargs="*", default=[], help="extra CLI overrides key=value for every run")
    parser.add_argument("--with", dest="with_configs", nargs="*", default=[], metavar="CONFIG",
                        help="configs composed after the task's, e.g. conf/paper/dpo_settings.yaml")
    parser.add_argument("--metric", default="train/return_mean")
    parser.add_argument("--workdir", default="benchmarks/out")
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--also", nargs="*", default=[], metavar="TAG:ALGO",
                        help="also show finished runs of another tag, e.g. stochastic_game:mappo")
    parser.add_argument("--max-frames", type=int, default=None, help="cut every curve at this many frames")
    args = parser.parse_args()
    args.tag = args.tag or Path(args.env).stem
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(f"sqlite:///{workdir / 'compare.db'}")

    if not args.plot_only:
        for algo in args.algos:
            for seed in args.seeds:
                if run_name(args.tag, algo, seed) not in finished_runs(client):
                    train(args, algo, seed, workdir)

    done = finished_runs(client)
    curves: dict[str, list[list[tuple[int, float]]]] = {}
    best = None
    shown = [(args.tag, algo, algo) for algo in args.algos]
    shown += [(*spec.split(":"), spec) for spec in args.also]
    for tag, algo, label in shown:
        for seed in args.seeds:
            run_id = done.get(run_name(tag, algo, seed))
            if run_id is None:
                continue
            points = curve(client, run_id, args.metric)
            if args.max_frames:
                points = [(f, v) for f, v in points if f <= args.max_frames]
            curves.setdefault(label, []).append(points)
            best = best if best is not None else optimum(client, run_id)

    print(f"task {args.tag}: {args.metric}, mean of the last 3 iterations, median [min, max] over seeds")
    for algo, runs in curves.items():
        finals = [statistics.fmean(v for _, v in c[-3:]) for c in runs if c]
        print(f"  {algo:>14}: {statistics.median(finals):8.3f} [{min(finals):.3f}, {max(finals):.3f}] "
              f"at {runs[0][-1][0]} frames ({len(finals)} seeds)")
    if best is not None:
        print(f"  {'optimum':>14}: {best:8.3f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4))
    for algo, runs in curves.items():
        length = min(len(c) for c in runs)
        steps = np.array([s for s, _ in runs[0][:length]])
        values = np.array([[v for _, v in c[:length]] for c in runs])  # [seeds, iterations]
        line = ax.plot(steps, np.median(values, 0), label=f"{algo} ({len(runs)} seeds)")[0]
        ax.fill_between(steps, values.min(0), values.max(0), color=line.get_color(), alpha=0.2)
    if best is not None:
        ax.axhline(best, color="black", linestyle="--", label="optimum (DP)")
    ax.set_xlabel("frames")
    ax.set_ylabel(args.metric)
    ax.set_title(f"{args.tag}: median and range over seeds")
    ax.grid(alpha=0.3)
    ax.legend()
    out = workdir / f"compare_{args.tag}.png"
    fig.savefig(out, dpi=100, bbox_inches="tight")
    print(f"plot: {out}")


if __name__ == "__main__":
    main()
