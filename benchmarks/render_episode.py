"""Render a deterministic episode of a trained policy on a VMAS task to a PNG (a few frames side by side).

Usage:
    python benchmarks/render_episode.py --config conf/mappo.yaml --config conf/env/line_control.yaml \\
        --checkpoint /tmp/lc_ckpt/last.ckpt --output docs/figures/line_control.png

The configs build the env and the model as for training (``MarlCLI(..., run=False)``); the checkpoint's
weights replace the fresh ones. ``--episodes`` envs run one episode each with the policy's deterministic
action (mean / mode); env 0 is drawn at ``--frames`` evenly spaced steps, from the reset to the last step,
in the square ``[-view, view]^2``.
Prints the mean episode return (per agent: the team reward summed over the episode) and, where the env
reports it (``line_control``, ``circle_control``), the mean distance of the agents to their matched targets
at the last step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchrl.envs.utils import ExplorationType, set_exploration_type, step_mdp

from marl_lightning import keys
from marl_lightning.cli import MarlCLI

FRAME_PIXELS = 280


def _render(env) -> np.ndarray:
    """Frame of env 0 as an RGB array ``[H, W, 3]`` (VMAS draws it; headless through EGL)."""
    return env.base_env._env.render(mode="rgb_array", env_index=0)


def _fix_camera(env, half_width: float) -> None:
    """Show ``[-half_width, half_width]^2`` in every frame, so frames share one scale.

    VMAS zooms out until every agent is in view, which shrinks the formation to a few pixels once one
    agent has wandered off; agents outside the square are cut off instead (their matching lines show
    where they went).
    """
    vmas_env = env.base_env._env
    vmas_env.render(mode="rgb_array", env_index=0)  # creates the viewer
    set_bounds = vmas_env.viewer.set_bounds
    bounds = torch.tensor([-half_width, half_width], device=vmas_env.device)  # VMAS wants tensors
    vmas_env.viewer.set_bounds = lambda *_: set_bounds(bounds[0], bounds[1], bounds[0], bounds[1])


def _tile(frames: list[np.ndarray], labels: list[str]) -> Image.Image:
    images = [Image.fromarray(frame).resize((FRAME_PIXELS, FRAME_PIXELS), Image.LANCZOS) for frame in frames]
    canvas = Image.new("RGB", (FRAME_PIXELS * len(images), FRAME_PIXELS), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        canvas.paste(image, (i * FRAME_PIXELS, 0))
        draw.text((i * FRAME_PIXELS + 8, 6), label, fill="black")
        if i:
            draw.line([(i * FRAME_PIXELS, 0), (i * FRAME_PIXELS, FRAME_PIXELS)], fill=(200, 200, 200))
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", action="append", required=True, help="repeatable, composed in order")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=3, help="frames drawn, reset and last step included")
    parser.add_argument("--episodes", type=int, default=100, help="episodes averaged for the printed return")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--view", type=float, default=1.5, help="half-width of the square shown")
    args = parser.parse_args()
    if args.frames < 1 or args.episodes < 1:
        parser.error("--frames and --episodes must be >= 1")

    cli_args = [arg for config in args.config for arg in ("--config", config)]
    sys.argv = sys.argv[:1]  # LightningCLI reads only the args given here
    cli = MarlCLI(args=[*cli_args, "--trainer.logger", "false"], run=False)
    module = cli.model
    checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    module.load_state_dict(checkpoint["state_dict"])
    module.eval()
    factory = cli.datamodule.env_factory
    steps = factory.max_steps
    env = factory.make_transformed(args.episodes, "cpu", args.seed)
    env.set_seed(args.seed)

    shown = {round(k * steps / max(args.frames - 1, 1)) for k in range(args.frames)}
    frames, labels, rewards, distances = [], [], [], []
    info_key = keys.nxt((keys.GROUP, "info", "target_distance"))
    with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
        td = env.reset()
        _fix_camera(env, args.view)
        for t in range(steps + 1):
            if t in shown:
                frames.append(_render(env))
                labels.append(f"t = {t}")
            if t == steps:
                break
            td = env.step(module.policy(td))
            rewards.append(td.get(keys.nxt(keys.REWARD)))  # [E, A, 1]
            if info_key in td.keys(include_nested=True):
                distances.append(td.get(info_key))  # [E, A]
            td = step_mdp(td)

    # summed over the steps: each agent's return, averaged over agents and episodes
    episode_return = torch.stack(rewards).sum(0).mean()
    print(
        f"{factory.name}: {int(module.frames)} training frames, deterministic return over {args.episodes} "
        f"episodes of {steps} steps: {episode_return:.3f} (mean per agent)"
    )
    if distances:
        final = distances[-1]  # [E, A]
        print(
            f"{factory.name}: mean distance to matched target at the last step: {final.mean():.3f} "
            f"(env 0, drawn: {final[0].mean():.3f})"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    _tile(frames, labels).save(args.output, optimize=True)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
