"""Per-task frame drawing: each renderer builds the task's env for rendering and draws frames of chosen envs.

* VMAS: the simulator's own renderer, ``render(mode="rgb_array", env_index=i)``, reached through TorchRL's
  ``VmasEnv``, which forwards attributes it does not have to the wrapped VMAS env (TorchRL's multi-agent
  tutorial renders this way). Headless through pyglet on EGL, see ``docs/rendering.md``.
* PettingZoo: the env's ``render()`` in ``render_mode="rgb_array"`` (the factory is rebuilt with it);
  TorchRL's ``SerialEnv`` calls it on every copy and returns one frame per copy.
* The built-in games (:mod:`marl_lightning.envs.stochastic_game`, :mod:`marl_lightning.envs.ratio_game`)
  and any other task: a Pillow drawing of the step, the state where the task has one, and each agent's action.

A renderer draws from the tensordict of the step: the reset tensordict, or a stepped one whose root holds
the action taken and whose ``"next"`` the state reached.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tensordict import TensorDictBase
from torchrl.envs import EnvBase

from marl_lightning.core import keys
from marl_lightning.core.errors import ConfigError
from marl_lightning.envs import PettingZoo, RatioGameTask, StochasticGameTask, Vmas
from marl_lightning.envs.base import EnvFactory
from marl_lightning.envs.ratio_game import REWARD_MATRIX, STOP_MATRIX

PANEL_WIDTH = 480
LINE_HEIGHT = 20
AGENT_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                 (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
HIGHLIGHT = (214, 39, 40)
GRID = (200, 200, 200)


def font(size: int = 14) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's default font at ``size`` pixels (a fixed bitmap font where Pillow lacks FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):
        return ImageFont.load_default()


class Renderer:
    """Draws frames of a task: the generic panel (step, each agent's action and reward)."""

    def make_env(self, factory: EnvFactory, num_envs: int, device: torch.device | str, seed: int) -> EnvBase:
        """The task's env as rendering needs it (by default the env training uses)."""
        return factory.make(num_envs, device, seed)

    def draw(self, env: EnvBase, td: TensorDictBase, step: int, indices: Sequence[int]) -> list[np.ndarray]:
        """Frames ``[H, W, 3]`` (uint8) of the envs ``indices`` after ``step`` steps (0: the reset)."""
        return [self.panel(td, step, i) for i in indices]

    def panel(self, td: TensorDictBase, step: int, index: int) -> np.ndarray:
        action, reward = _step_action_and_reward(td, index)
        n_agents = _current(td, keys.OBSERVATION).shape[1]
        lines = [f"t = {step}" + ("   (reset)" if action is None else "")]
        for agent in range(n_agents):
            if action is None:
                lines.append(f"agent {agent}")
            else:
                lines.append(f"agent {agent}: action {_format_action(action[agent])}   "
                             f"reward {float(reward[agent].sum()):.3f}")
        image = Image.new("RGB", (PANEL_WIDTH, LINE_HEIGHT * (len(lines) + 1)), "white")
        draw = ImageDraw.Draw(image)
        for row, line in enumerate(lines):
            draw.text((10, 8 + row * LINE_HEIGHT), line, fill="black", font=font())
        return np.asarray(image)


class VmasRenderer(Renderer):
    """VMAS's own renderer (pyglet; headless on EGL)."""

    def draw(self, env: EnvBase, td: TensorDictBase, step: int, indices: Sequence[int]) -> list[np.ndarray]:
        if step == 0:
            try:
                first = env.render(mode="rgb_array", env_index=indices[0])
            except Exception as error:  # pyglet's errors have no common base; all mean "no GL context"
                raise ConfigError(
                    f"render: VMAS could not open an OpenGL context ({type(error).__name__}: {error}). On a "
                    "headless machine VMAS renders through EGL: install the EGL library (Debian/Ubuntu: "
                    "apt-get install libegl1 libegl-mesa0), or run under a virtual display (xvfb-run -a "
                    "python -m marl_lightning render ...). See docs/rendering.md."
                ) from None
            rest = [env.render(mode="rgb_array", env_index=i) for i in indices[1:]]
            return [first, *rest]
        return [env.render(mode="rgb_array", env_index=i) for i in indices]


class PettingZooRenderer(Renderer):
    """The PettingZoo env's own ``rgb_array`` renderer."""

    def make_env(self, factory: EnvFactory, num_envs: int, device: torch.device | str, seed: int) -> EnvBase:
        settings = factory.hparams()
        env_kwargs = {**settings["env_kwargs"], "render_mode": "rgb_array"}
        try:
            rendering = PettingZoo(**{**settings, "env_kwargs": env_kwargs, "parallel": False})
        except ConfigError:
            raise ConfigError(
                f"render: {factory.env} does not accept render_mode='rgb_array', so it cannot be drawn. "
                "Render a PettingZoo env whose parallel_env takes render_mode (e.g. mpe2.simple_spread_v3)."
            ) from None
        return rendering.make(num_envs, device, seed)

    def draw(self, env: EnvBase, td: TensorDictBase, step: int, indices: Sequence[int]) -> list[np.ndarray]:
        frames = env.render()  # SerialEnv: one frame per copy
        return [np.asarray(frames[i]) for i in indices]


class StochasticGameRenderer(Renderer):
    """The stochastic game: the time step, the S states (the current one filled), each agent's action."""

    def __init__(self, n_states: int, n_actions: int, horizon: int) -> None:
        self.n_states, self.n_actions, self.horizon = n_states, n_actions, horizon

    def panel(self, td: TensorDictBase, step: int, index: int) -> np.ndarray:
        observations = _current(td, keys.OBSERVATION)  # [E, A, F], F = one-hot state, one-hot t
        n_agents = observations.shape[1]
        state = int(observations[index, 0, : self.n_states].argmax())
        t = int(observations[index, 0, self.n_states :].argmax())
        action, reward = _step_action_and_reward(td, index)
        columns = math.ceil(math.sqrt(self.n_states))
        cell = max(6, min(24, 220 // columns))
        grid_top = 34
        agents_top = grid_top + cell * math.ceil(self.n_states / columns) + 16
        # Every frame has room for all agents' rows (the reset frame too): a video's frames share one size.
        image = Image.new("RGB", (PANEL_WIDTH, agents_top + (n_agents + 1) * LINE_HEIGHT + 8), "white")
        draw = ImageDraw.Draw(image)
        title = f"t = {t} / {self.horizon}   state {state}"
        if reward is not None:
            title += f"   reward {float(reward[0].sum()):.3f}"
        draw.text((10, 8), title, fill="black", font=font())
        for s in range(self.n_states):
            x, y = 10 + (s % columns) * cell, grid_top + (s // columns) * cell
            fill = HIGHLIGHT if s == state else "white"
            draw.rectangle([x, y, x + cell - 2, y + cell - 2], fill=fill, outline=GRID)
        draw.text((10, agents_top), "actions taken:" if action is not None else "reset", fill="black",
                  font=font())
        if action is not None:
            _action_rows(draw, action, self.n_actions, agents_top + LINE_HEIGHT)
        return np.asarray(image)


class RatioGameRenderer(Renderer):
    """The ratio game: the 2x2 payoff matrix (reward R, stop probability S) with the joint action marked."""

    def panel(self, td: TensorDictBase, step: int, index: int) -> np.ndarray:
        action, _ = _step_action_and_reward(td, index)
        image = Image.new("RGB", (PANEL_WIDTH, 260), "white")
        draw = ImageDraw.Draw(image)
        chosen = "(reset)" if action is None else f"a1 = {int(action[0])}, a2 = {int(action[1])}"
        title = f"t = {step}   {chosen}"
        draw.text((10, 8), title, fill="black", font=font())
        draw.text((150, 36), "agent 1 (column)", fill="black", font=font())
        draw.text((10, 130), "agent 0\n(row)", fill="black", font=font())
        for a1 in range(2):
            for a2 in range(2):
                x, y = 100 + 170 * a2, 60 + 95 * a1
                chosen = action is not None and (int(action[0]), int(action[1])) == (a1, a2)
                draw.rectangle([x, y, x + 160, y + 85], fill=(255, 225, 225) if chosen else "white",
                               outline=HIGHLIGHT if chosen else GRID, width=3 if chosen else 1)
                text = f"R = {float(REWARD_MATRIX[a1, a2]):g}\nstop {float(STOP_MATRIX[a1, a2]):g}"
                draw.text((x + 12, y + 16), text, fill="black", font=font(16))
        return np.asarray(image)


def renderer_for(factory: EnvFactory) -> Renderer:
    """The renderer of a task; tasks without their own drawing get the generic panel."""
    if isinstance(factory, Vmas):
        return VmasRenderer()
    if isinstance(factory, PettingZoo):
        return PettingZooRenderer()
    if isinstance(factory, StochasticGameTask):
        return StochasticGameRenderer(factory.n_states, factory.n_actions, factory.horizon)
    if isinstance(factory, RatioGameTask):
        return RatioGameRenderer()
    return Renderer()


def _current(td: TensorDictBase, key: tuple[str, ...]) -> torch.Tensor:
    """The entry of the state the frame shows: ``"next"`` of a stepped tensordict, else the root."""
    return td.get(keys.nxt(key)) if keys.NEXT in td.keys() else td.get(key)


def _step_action_and_reward(
    td: TensorDictBase, index: int
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The action taken ([A] or [A, d]) and reward received ([A, 1]) in the step that led to the frame."""
    if keys.NEXT not in td.keys():
        return None, None
    return td.get(keys.ACTION)[index], td.get(keys.nxt(keys.REWARD))[index]


def _format_action(action: torch.Tensor) -> str:
    if action.dim() == 0:
        return str(int(action))
    return "[" + ", ".join(f"{float(v):+.2f}" for v in action) + "]"


def _action_rows(draw: ImageDraw.ImageDraw, action: torch.Tensor, n_actions: int, top: int) -> None:
    """One row per agent: its name, then ``n_actions`` boxes with the chosen one filled in its colour."""
    for agent, a in enumerate(action.tolist()):
        y = top + agent * LINE_HEIGHT
        colour = AGENT_COLOURS[agent % len(AGENT_COLOURS)]
        draw.text((10, y), f"agent {agent}", fill=colour, font=font())
        for choice in range(n_actions):
            x = 90 + choice * 22
            fill = colour if choice == a else "white"
            draw.rectangle([x, y + 2, x + 16, y + 16], fill=fill, outline=colour)
