"""The centralised trust region Σ_i D_TV against the number of agents, at a fixed clip range and with
agent-scaled clipping (paper 004, Figure 2 and Section 6.2).

Usage: python benchmarks/tv_vs_agents.py [--agents 2 4 8] [--seeds 0 1 2] [--iterations 4]
For each N, seed and clipping (fixed ε = --clip, or agent-scaled with budget α = --budget, so ε = α/N),
trains MAPPO on VMAS navigation with N agents for a few iterations (``python -m marl_lightning fit``,
one process at a time) and reads ``tr/tv_sum`` and ``tr/tv/agent_i`` of every iteration back from MLflow.
Prints the median Σ_i D_TV per setting and its ratio to the smallest N, and plots them.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--clip", type=float, default=0.2)
    parser.add_argument("--budget", type=float, default=0.4, help="α of agent-scaled clipping (ε = α/N)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--workdir", default="benchmarks/out/tv_vs_agents")
    args = parser.parse_args()
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    store = f"sqlite:///{workdir / 'tv.db'}"
    client = MlflowClient(store)
    frames_per_batch = 3000
    settings = {"fixed": ["--model.init_args.clip_epsilon", str(args.clip)],
                "scaled": ["--model.init_args.clip_budget", str(args.budget)]}

    def finished() -> dict[str, str]:
        ids = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(ids, "attributes.status = 'FINISHED'", max_results=1000) if ids else []
        return {r.info.run_name: r.info.run_id for r in runs}

    for n in args.agents:
        for setting, extra in settings.items():
            for seed in args.seeds:
                name = f"n{n}-{setting}-seed{seed}"
                if name in finished():
                    continue
                cmd = [
                    sys.executable, "-m", "marl_lightning", "fit", "--config", "conf/mappo.yaml",
                    "--data.env.init_args.n_agents", str(n), "--data.num_envs", "30",
                    "--data.frames_per_batch", str(frames_per_batch),
                    "--model.total_frames", str(frames_per_batch * args.iterations),
                    "--model.init_args.minibatch_size", "300", "--model.init_args.lr", str(args.lr), *extra,
                    "--seed_everything", str(seed), "--trainer.limit_val_batches", "0",
                    "--trainer.enable_progress_bar", "false",
                    "--trainer.logger.init_args.tracking_uri", store,
                    "--trainer.logger.init_args.run_name", name,
                    "--trainer.callbacks.init_args.dirpath", str(workdir / "ckpt" / name),
                ]
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                print(f"{name} done", flush=True)

    done = finished()
    medians: dict[str, dict[int, float]] = {s: {} for s in settings}
    per_agent: dict[str, dict[int, float]] = {s: {} for s in settings}
    for setting in settings:
        for n in args.agents:
            sums, singles = [], []
            for seed in args.seeds:
                run_id = done[f"n{n}-{setting}-seed{seed}"]
                sums += [m.value for m in client.get_metric_history(run_id, "tr/tv_sum")]
                for i in range(n):
                    singles += [m.value for m in client.get_metric_history(run_id, f"tr/tv/agent_{i}")]
            medians[setting][n] = statistics.median(sums)
            per_agent[setting][n] = statistics.median(singles)
    base = min(args.agents)
    for setting in settings:
        label = f"clip ε = {args.clip}" if setting == "fixed" else f"agent-scaled ε = {args.budget}/N"
        print(f"{label}: median over {len(args.seeds)} seeds x {args.iterations} iterations")
        for n in args.agents:
            ratio = medians[setting][n] / medians[setting][base]
            print(f"  N={n}: sum D_TV {medians[setting][n]:.4f} (x{ratio:.2f} of N={base}), "
                  f"per-agent D_TV {per_agent[setting][n]:.4f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for setting in settings:
        label = f"clip ε = {args.clip}" if setting == "fixed" else f"agent-scaled, α = {args.budget}"
        ax.plot(args.agents, [medians[setting][n] for n in args.agents], marker="o", label=label)
    ax.set_xlabel("number of agents N")
    ax.set_ylabel("median Σ_i D_TV(π_i,old, π_i,new) per iteration")
    ax.set_title("centralised trust region, MAPPO on VMAS navigation")
    ax.grid(alpha=0.3)
    ax.legend()
    out = workdir / "tv_vs_agents.png"
    fig.savefig(out, dpi=100, bbox_inches="tight")
    print(f"plot: {out}")


if __name__ == "__main__":
    main()
