"""How a MAPPO iteration's cost grows with the number of envs and with the number of agents (navigation).

Usage: python benchmarks/scaling.py [--envs 60 240 600 2400] [--agents 3 6 12 24] [--iterations 2]
    [--plot docs/figures/scaling.png]
Each point is one fresh fit at the anchor settings (``benchmarks/speed_mappo.py``) with 100 steps per env
and an iteration, changed in one dimension:

- envs: ``num_envs`` E, ``frames_per_batch`` 100·E, minibatches of 100·E/15, so every iteration keeps the
  anchor's 150 minibatch steps and the update's work grows with the frames;
- agents: ``n_agents`` N at 60 envs (6,000 frames an iteration, the actor's rows and the critic's input
  grow with N), with agents of radius ``--agent-radius`` (0.05; navigation's 0.1 at every N would be
  another task at each point, and cannot be reset at N = 24: VMAS places agents and goals by rejection
  sampling at least 2r + 0.05 apart in [-1, 1]², and 48 discs of radius 0.125 cover 59 % of it, past
  where random placement jams: the reset did not finish in 6 minutes).

It prints the steady state (the median iteration after the first) and its split per point, and draws
frames/s and the split against each dimension. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import ROOT, fit_args, our_run, steady_state  # noqa: E402

from callbacks.iteration_times import PARTS  # noqa: E402

STEPS = 100  # per env and iteration: navigation's episode
NAVIGATION = Path(ROOT / "conf" / "env" / "navigation.yaml")


def scenario_kwargs() -> dict:
    """Navigation's scenario arguments in its task config."""
    return dict(yaml.safe_load(NAVIGATION.read_text())["data"]["env"]["init_args"]["scenario_kwargs"])


def point(extra: list[str], frames_per_iteration: int, iterations: int) -> dict[str, float]:
    """One fit; its steady iteration seconds, frames/s and split."""
    run = our_run(fit_args("conf/mappo.yaml", extra), frames_per_iteration * iterations, seed=1)
    _, iteration_s, out = steady_state([run])
    out["iteration_s"] = iteration_s
    out["frames_per_s"] = frames_per_iteration / out["iteration_s"]
    out["peak_rss_mib"] = max(line["peak_rss_mib"] for line in run["iterations"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", type=int, nargs="*", default=[60, 240, 600, 2400])
    parser.add_argument("--agents", type=int, nargs="*", default=[3, 6, 12, 24])
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--agent-radius", type=float, default=0.05)
    parser.add_argument("--plot", type=Path, default=None,
                        help="draw the figure here; the points are also written next to it as .json")
    parser.add_argument("--replot", action="store_true", help="draw --plot again from its .json, no runs")
    options = parser.parse_args()
    if options.replot:
        saved = json.loads(options.plot.with_suffix(".json").read_text())
        plot({dimension: [tuple(p) for p in points] for dimension, points in saved.items()}, options.plot)
        return
    results: dict[str, list[tuple[int, dict[str, float]]]] = {"envs": [], "agents": []}
    print("| dimension | value | frames/iteration | iteration s | frames/s | collect s | advantages s | "
          "update s | statistics s | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for dimension, values in (("envs", options.envs), ("agents", options.agents)):
        for value in values:
            if dimension == "envs":
                frames = STEPS * value
                extra = ["--data.num_envs", str(value), "--data.frames_per_batch", str(frames),
                         "--model.minibatch_size", str(frames // 15)]
            else:
                frames = STEPS * 60
                kwargs = {**scenario_kwargs(), "agent_radius": options.agent_radius}
                extra = ["--data.env.init_args.n_agents", str(value),
                         "--data.env.init_args.scenario_kwargs", json.dumps(kwargs)]
            figures = point(extra, frames, options.iterations)
            results[dimension].append((value, figures))
            parts = " | ".join(f"{figures[name]:.3f}" for name in PARTS)
            print(f"| {dimension} | {value} | {frames} | {figures['iteration_s']:.3f} | "
                  f"{figures['frames_per_s']:,.0f} | {parts} | {figures['peak_rss_mib']:.0f} |", flush=True)
    if options.plot:
        options.plot.with_suffix(".json").write_text(json.dumps(results, indent=1))
        plot(results, options.plot)


def plot(results: dict[str, list[tuple[int, dict[str, float]]]], path: Path) -> None:
    """Frames/s (left axis) and the share of collect and update in the iteration, against each dimension."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, (dimension, points) in zip(axes, results.items(), strict=True):
        if not points:
            continue
        xs = [value for value, _ in points]
        axis.plot(xs, [f["frames_per_s"] for _, f in points], "o-", color="black", label="frames/s")
        axis.set_xscale("log")
        axis.set_xticks(xs, [str(x) for x in xs])
        axis.set_xlabel("envs (100 steps each)" if dimension == "envs" else "agents (60 envs, radius 0.05)")
        axis.set_ylabel("frames/s")
        share = axis.twinx()
        axis.minorticks_off()
        for name, label, style in (("collect_s", "collect", "--"), ("optimise_s", "update", ":")):
            share.plot(xs, [f[name] / f["iteration_s"] for _, f in points], style,
                       label=f"{label} share of the iteration")
        share.set_ylim(0, 1)
        share.set_ylabel("share of the iteration")
        lines = axis.get_legend_handles_labels()
        more = share.get_legend_handles_labels()
        axis.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="upper center")
    figure.suptitle("MAPPO on VMAS navigation, 2-core CPU (benchmarks/scaling.py)")
    figure.tight_layout()
    path = path if path.is_absolute() else ROOT / path
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
