"""Throughput of a fit: end-to-end and steady-state frames/s, where an iteration's time goes, memory, and
what this machine's matrix units allow; optionally against BenchMARL's anchor run, interleaved.

Usage:
    python benchmarks/throughput.py [--config conf/mappo.yaml] [--frames 60000] [--runs 1]
        [--compare-benchmarl] [--scale anchor|fine_tuned] [-- <further fit arguments>]

Each run is a fresh ``python -m marl_lightning fit`` process at the anchor settings of
``benchmarks/speed_mappo.py`` (then the further arguments), timed from launch to exit like
``../shared/bench/benchmarl_anchor.sh`` times BenchMARL. The fit carries ``callbacks.IterationTimes``, whose
per-iteration lines give the steady state (the median iteration after the first), its split into collect /
advantages / update (the minibatch steps) / statistics / logging (the rest of the loop: reductions, logging,
Lightning), peak RSS and RSS growth (RSS at the end against RSS at iteration 5). In this process, before the
runs: the matmul rate of the machine (at 1024³ and at the update's own layer shape, with the fit's thread
count), the FLOPs of one minibatch step (counted by layer) and the time VMAS alone takes to step
one iteration's frames with the same policy network. With ``--compare-benchmarl`` the anchor and our run
alternate ``--runs`` times; the last line is ``ratio_vs_benchmarl=<x>`` (BenchMARL's median wall over ours).
``--scale fine_tuned`` runs both at BenchMARL's tuned VMAS scale instead (``FINE_TUNED`` says what matches).
Run it on an idle machine: nothing else may compute meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from callbacks.iteration_times import PARTS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_mappo import ARGS  # noqa: E402 - the anchor settings

ROOT = Path(__file__).resolve().parents[1]
ANCHOR = ROOT.parent / "shared" / "bench" / "benchmarl_anchor.sh"


def fit_args(config: str, extra: list[str]) -> list[str]:
    """The anchor settings with ``config`` as the first config file, then ``extra``."""
    args = list(ARGS)
    args[args.index("--config") + 1] = config
    return [*args, *extra]


def matmul_gflops(
    m: int, k: int, n: int, trials: int = 3, seconds: float = 0.5, device: str = "cpu"
) -> float:
    """This machine's float32 GFLOP/s on [m, k] @ [k, n] (on ``device``, with its default matmul precision):
    the best of ``trials`` of about ``seconds`` each (the best, as the capacity the update is compared with;
    a busy moment only lowers one trial)."""
    a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
    for _ in range(3):
        a @ b
    rates = []
    for _ in range(trials):
        synchronize(device)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            count += 1
        synchronize(device)  # (a GPU runs behind the queue)
        rates.append(2 * m * k * n * count / (time.perf_counter() - start) / 1e9)
    return max(rates)


def synchronize(device: str | torch.device) -> None:
    """Wait for a GPU's queued work (nothing on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def in_process_figures(args: list[str]) -> dict[str, float]:
    """Build the config's module here: FLOPs of one minibatch step, the matmul rates, and VMAS alone
    stepping one iteration's frames with the same policy network (continuous VMAS tasks only)."""
    from marl_lightning.cli import MarlCLI
    from marl_lightning.envs.vmas import Vmas
    from marl_lightning.models import JointActionQCritic

    argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when given args besides a command line
    try:
        cli = MarlCLI(args=args, run=False)
    finally:
        sys.argv = argv
    data, model = cli.datamodule, cli.model
    spec, hp = data.env_spec, model.hparams
    out: dict[str, float] = {}
    if isinstance(model.critic, JointActionQCritic):  # K samples a row: not a count by rows
        print("step_gflop not counted for a joint-action (PERLA) critic")
    else:
        out["step_gflop"] = step_gflop(model, hp.minibatch_size)
    out["steps_per_iteration"] = hp.num_epochs * (data.frames_per_batch // hp.minibatch_size)
    device = str(cli.trainer.strategy.root_device)  # the fit's: cuda:0 with --trainer.accelerator gpu
    width = hp.actor_cells[0]
    out["matmul_gflops_layer"] = matmul_gflops(hp.minibatch_size * spec.n_agents, width, width, device=device)
    out["matmul_gflops_1024"] = matmul_gflops(1024, 1024, 1024, device=device)
    factory = data.env_factory
    if isinstance(factory, Vmas) and spec.continuous:
        out["vmas_alone_s"] = vmas_alone_s(factory, model, data.num_envs, data.steps_per_env, device)
    return out


def step_gflop(model, minibatch: int) -> float:
    """GFLOP of the actor's and the critic's forward and backward on one minibatch, counted by layer.

    Every ``MultiAgentMLP`` runs its linear layers on ``minibatch × n_agents`` rows, or on ``minibatch``
    rows when it is centralised with shared parameters (one output for all agents, expanded). A layer's
    forward is 2·rows·in·out; its backward twice that (input and weight gradients), but once for a first
    layer (its input needs no gradient). ``torch.utils.flop_counter`` cannot count through TorchRL's
    ``MultiAgentMLP`` (its module tracker tests a TensorDict for truth), hence the count by layer.
    """
    from torchrl.modules import MultiAgentMLP

    total = 0
    for net in (model.actor, model.critic):
        for mlp in (m for m in net.modules() if isinstance(m, MultiAgentMLP)):
            rows = minibatch * (1 if mlp.centralized and mlp.share_params else mlp.n_agents)
            layers = [m for m in mlp.modules() if isinstance(m, torch.nn.Linear)]
            for index, layer in enumerate(layers):
                forward = 2 * rows * layer.in_features * layer.out_features
                total += forward * (2 if index == 0 else 3)
    return total / 1e9


def vmas_alone_s(factory, model, num_envs: int, steps: int, device: str = "cpu") -> float:
    """Seconds VMAS itself needs for ``steps`` steps of ``num_envs`` envs on ``device``, actions from the
    policy network (its MLP and a tanh-Gaussian sample, no TorchRL env or collector around it); median of 3
    after one untimed pass (a GPU's first kernels compile and allocate)."""
    import vmas

    from marl_lightning.envs.scenarios import SCENARIOS

    scenario = SCENARIOS[factory.scenario]() if factory.scenario in SCENARIOS else factory.scenario
    env = vmas.make_env(scenario, num_envs=num_envs, device=device, continuous_actions=True, seed=0,
                        max_steps=factory.max_steps, n_agents=factory.n_agents, **factory.scenario_kwargs)
    network = model.actor[0].module.to(device)  # the MLP and its (loc, scale) head
    times = []
    with torch.no_grad():
        for _ in range(4):
            observations = env.reset()
            synchronize(device)
            start = time.perf_counter()
            for _ in range(steps):
                loc, scale = network(torch.stack(observations, 1))  # [B, A, action_dim] each
                action = torch.tanh(loc + scale * torch.randn_like(loc))
                observations, _, _, _ = env.step(list(action.unbind(1)))
            synchronize(device)
            times.append(time.perf_counter() - start)
    network.to("cpu")
    return statistics.median(times[1:])


def our_run(args: list[str], frames: int, seed: int, callbacks: list[dict] | None = None) -> dict:
    """One fit process; its wall seconds and its per-iteration lines. ``callbacks``: further callbacks
    (LightningCLI class_path dicts) the fit needs besides ``IterationTimes``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "times.jsonl"
        timer = {"class_path": "callbacks.IterationTimes", "init_args": {"path": str(path)}}
        callbacks = json.dumps([*(callbacks or []), timer])
        cmd = [sys.executable, "-m", "marl_lightning", "fit", *args, "--trainer.callbacks", callbacks,
               "--model.total_frames", str(frames), "--seed_everything", str(seed)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - start
        if proc.returncode:
            sys.exit(f"fit failed:\n{proc.stderr[-3000:]}")
        lines = [json.loads(line) for line in path.read_text().splitlines()]
    return {"wall_s": wall, "iterations": lines}


# BenchMARL's tuned VMAS scale (its fine_tuned/vmas/conf/config.yaml): 600 envs, 60,000 frames an iteration,
# 45 passes of 14 minibatches of 4,096 (BenchMARL draws floor(60000 / 4096) minibatches a pass), γ = 0.9.
# Our minibatches must tile the batch, so ours are 43 passes of 15 minibatches of 4,000: 2,580,000 frames
# through the update an iteration against BenchMARL's 2,580,480 (0.02 % fewer), in 645 steps against 630.
FINE_TUNED = {
    "ours": ["--data.num_envs", "600", "--data.frames_per_batch", "60000", "--model.num_epochs", "43",
             "--model.minibatch_size", "4000", "--model.gamma", "0.9"],
    "benchmarl": ["experiment.on_policy_n_envs_per_worker=600",
                  "experiment.on_policy_collected_frames_per_batch=60000",
                  "experiment.on_policy_n_minibatch_iters=45", "experiment.on_policy_minibatch_size=4096",
                  "experiment.gamma=0.9"],
}


def benchmarl_run(frames: int, seed: int, scale: str) -> float:
    """One BenchMARL run; its wall seconds. ``anchor``: the anchor script itself. ``fine_tuned``: the
    anchor's BenchMARL (its venv, its fixed settings: MAPPO on navigation, 3 agents, CPU, no evaluation,
    logging or checkpoints) at ``FINE_TUNED``'s scale, timed from launch to exit the same way."""
    if scale == "anchor":
        cmd = ["bash", str(ANCHOR), str(frames), "1"]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        found = re.search(r"median wall_s=([0-9.]+)", out.stdout)
        if out.returncode or not found:
            sys.exit(f"BenchMARL's anchor run failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
        return float(found.group(1))
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    venv = Path(os.environ.get("BENCHMARL_VENV", cache / "marl-lightning-bench" / "benchmarl-venv"))
    if not (venv / "bin" / "python").exists():
        sys.exit(f"no BenchMARL venv at {venv}: run `bash {ANCHOR} 6000 1` once to install it")
    with tempfile.TemporaryDirectory() as folder:
        cmd = [str(venv / "bin" / "python"), "-m", "benchmarl.run", "algorithm=mappo", "task=vmas/navigation",
               "task.n_agents=3", f"seed={seed}", "experiment.sampling_device=cpu",
               "experiment.train_device=cpu", *FINE_TUNED["benchmarl"], f"experiment.max_n_frames={frames}",
               "experiment.evaluation=false", "experiment.render=false", "experiment.loggers=[]",
               "experiment.create_json=false", "experiment.checkpoint_interval=0",
               "experiment.checkpoint_at_end=false", f"hydra.run.dir={folder}/run"]
        start = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=folder)
        wall = time.perf_counter() - start
    if out.returncode:
        sys.exit(f"BenchMARL's run failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return wall


def steady_state(runs: list[dict]) -> tuple[list[dict], float, dict[str, float]]:
    """The iterations after each run's first (all of them if there is one), their median wall seconds and
    the median of each of the module's parts (``callbacks.iteration_times.PARTS``)."""
    steady = [line for run in runs for line in run["iterations"][1:]] or runs[0]["iterations"]
    iteration_s = statistics.median(line["wall_s"] for line in steady)
    split = {name: statistics.median(line.get(name, 0.0) for line in steady) for name in PARTS}
    return steady, iteration_s, split


def report(runs: list[dict], frames: int, figures: dict[str, float]) -> float:
    """Print our figures; return the median end-to-end wall seconds."""
    walls = [run["wall_s"] for run in runs]
    wall = statistics.median(walls)
    steady, iteration_s, split = steady_state(runs)
    per_iteration = frames / len(runs[0]["iterations"])
    print(f"end_to_end wall_s={wall:.2f} frames={frames} frames_per_s={frames / wall:.0f} "
          f"(runs: {', '.join(f'{w:.2f}' for w in walls)})")
    print(f"steady_state iteration_s={iteration_s:.3f} frames_per_s={per_iteration / iteration_s:.0f} "
          f"({per_iteration:.0f} frames an iteration, median of {len(steady)} iterations after the first)")
    split["logging_s"] = statistics.median(
        line["wall_s"] - sum(line.get(name, 0.0) for name in PARTS) for line in steady
    )
    labels = {"collect_s": "collect", "advantages_s": "advantages", "optimise_s": "update",
              "statistics_s": "statistics", "logging_s": "logging"}
    print("split_s " + " ".join(f"{labels[k]}={v:.3f}" for k, v in split.items()))
    peak = max(line["peak_rss_mib"] for run in runs for line in run["iterations"])
    first = runs[0]["iterations"]
    at5 = first[min(4, len(first) - 1)]["rss_mib"]
    end = first[-1]["rss_mib"]
    print(f"memory peak_rss_mib={peak:.0f} rss_at_iteration_5={at5:.0f} rss_at_end={end:.0f} "
          f"growth={end / at5 - 1:+.1%} over {len(first)} iterations")
    if "gpu_peak_mib" in first[-1]:
        gpu_peak = max(line["gpu_peak_mib"] for run in runs for line in run["iterations"])
        print(f"gpu_memory peak_allocated_mib={gpu_peak:.0f}")
    print(f"matmul_gflops 1024^3={figures['matmul_gflops_1024']:.0f} update_layer_shape="
          f"{figures['matmul_gflops_layer']:.0f} (torch threads {torch.get_num_threads()})")
    if "step_gflop" in figures:
        update_flop = figures["step_gflop"] * figures["steps_per_iteration"]
        update_gflops = update_flop / max(split["optimise_s"], 1e-9)
        share = update_gflops / figures["matmul_gflops_layer"]
        print(f"update step_gflop={figures['step_gflop']:.3f} x {figures['steps_per_iteration']:.0f} steps: "
              f"achieved {update_gflops:.0f} GFLOP/s = {share:.0%} of the matmul rate at the layer shape")
    if "vmas_alone_s" in figures:
        print(f"collection collect_s={split['collect_s']:.3f} vmas_alone_s={figures['vmas_alone_s']:.3f} "
              f"ratio={split['collect_s'] / figures['vmas_alone_s']:.2f}x")
    return wall


def main() -> None:
    own, extra = sys.argv[1:], []
    if "--" in own:
        index = own.index("--")
        own, extra = own[:index], own[index + 1:]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="conf/mappo.yaml")
    parser.add_argument("--frames", type=int, default=60_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--compare-benchmarl", action="store_true")
    parser.add_argument("--scale", choices=("anchor", "fine_tuned"), default="anchor",
                        help="fine_tuned: BenchMARL's tuned VMAS scale (FINE_TUNED), for both")
    options = parser.parse_args(own)
    scale_args = FINE_TUNED["ours"] if options.scale == "fine_tuned" else []
    args = fit_args(options.config, [*scale_args, *extra])
    print(f"settings: {' '.join(args)} --model.total_frames {options.frames}", flush=True)
    figures = in_process_figures(args)
    if options.compare_benchmarl and extra:
        print(f"note: BenchMARL runs at the {options.scale} settings; further arguments apply to ours only")
    runs, theirs = [], []
    for seed in range(1, options.runs + 1):
        if options.compare_benchmarl:
            theirs.append(benchmarl_run(options.frames, seed, options.scale))
            print(f"round {seed}: benchmarl wall_s={theirs[-1]:.2f}", flush=True)
        runs.append(our_run(args, options.frames, seed))
        print(f"round {seed}: marl_lightning wall_s={runs[-1]['wall_s']:.2f}", flush=True)
    wall = report(runs, options.frames, figures)
    if options.compare_benchmarl:
        theirs_wall = statistics.median(theirs)
        print(f"benchmarl wall_s={theirs_wall:.2f} frames_per_s={options.frames / theirs_wall:.0f}")
        print(f"ratio_vs_benchmarl={theirs_wall / wall:.2f}")


if __name__ == "__main__":
    main()
