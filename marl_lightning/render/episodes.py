"""Deterministic episodes of a policy, with a frame of every step (the reset included)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw
from tensordict import TensorDictBase
from torchrl.envs.utils import ExplorationType, set_exploration_type, step_mdp

from marl_lightning.core import keys
from marl_lightning.core.errors import ConfigError
from marl_lightning.data.seeding import seed_all
from marl_lightning.envs.base import EnvFactory
from marl_lightning.render.frames import Renderer, font, renderer_for

# Steps run for a task without an episode limit before its episodes are cut (as its evaluation does).
DEFAULT_MAX_STEPS = 1000
CAPTION_HEIGHT = 22


@dataclass
class Recording:
    """Episodes recorded by :func:`record_episodes`.

    ``frames[e]`` holds episode e's frames, the reset and one per step (``lengths[e] + 1`` of them), all of
    one size, each captioned with the episode, the step and the return so far.

    Shapes:
        returns: [E, A], each agent's undiscounted return of each episode; lengths: [E] (long).
    """

    frames: list[list[np.ndarray]]
    returns: torch.Tensor
    lengths: torch.Tensor

    @property
    def mean_return(self) -> float:
        """Each agent's episode return, averaged over agents and episodes (as ``eval/return_mean``)."""
        return float(self.returns.mean())

    def video_frames(self) -> list[np.ndarray]:
        """The episodes one after another."""
        return [frame for episode in self.frames for frame in episode]


def record_episodes(
    policy: Callable[[TensorDictBase], TensorDictBase],
    factory: EnvFactory,
    episodes: int = 1,
    seed: int = 0,
    device: torch.device | str = "cpu",
    size: int | None = None,
    renderer: Renderer | None = None,
) -> Recording:
    """Run ``episodes`` envs side by side, one episode each, with the policy's deterministic action (mode /
    mean), drawing every env at its reset and after every step of its first episode.

    ``size`` scales frames so that their longer side has that many pixels (None: the renderer's size). Envs
    stop being drawn when their episode ends (``done``); a task without an episode limit is cut after
    :data:`DEFAULT_MAX_STEPS` steps. The global RNGs are seeded with ``seed`` (callers that must not disturb
    them save and restore them).
    """
    if episodes < 1:
        raise ConfigError(f"render: episodes must be >= 1, got {episodes}. Use e.g. --episodes 1.")
    renderer = renderer or renderer_for(factory)
    horizon = factory.max_steps or DEFAULT_MAX_STEPS
    env = renderer.make_env(factory, episodes, device, seed)
    frames: list[list[np.ndarray]] = [[] for _ in range(episodes)]
    try:
        with set_exploration_type(ExplorationType.DETERMINISTIC), torch.no_grad():
            seed_all(seed)
            env.set_seed(seed)
            td = env.reset()
            n_agents = td.get(keys.OBSERVATION).shape[1]
            returns = torch.zeros(episodes, n_agents, device=env.device)  # [E, A]
            lengths = torch.full((episodes,), horizon, dtype=torch.long, device=env.device)  # [E]
            running = torch.ones(episodes, dtype=torch.bool, device=env.device)  # [E]
            drawn = renderer.draw(env, td, 0, list(range(episodes)))
            _add_frames(frames, drawn, range(episodes), 0, returns, size)
            for t in range(1, horizon + 1):
                td = env.step(policy(td))
                reward = td.get(keys.nxt(keys.REWARD)).reshape(episodes, n_agents, -1).sum(-1)  # [E, A]
                returns += reward * running.unsqueeze(-1)
                live = running.nonzero().flatten().tolist()
                _add_frames(frames, renderer.draw(env, td, t, live), live, t, returns, size)
                done = td.get(keys.nxt(keys.ROOT_DONE)).reshape(episodes)  # [E]
                lengths = torch.where(running & done, torch.full_like(lengths, t), lengths)
                running &= ~done
                if not running.any():
                    break
                # Finished envs are reset and go on stepping, undrawn, until every episode has ended.
                td = env.maybe_reset(step_mdp(td))
    finally:
        env.close()
    return Recording(_uniform(frames), returns.cpu(), lengths.cpu())


def _add_frames(
    frames: list[list[np.ndarray]],
    drawn: list[np.ndarray],
    indices,
    step: int,
    returns: torch.Tensor,
    size: int | None,
) -> None:
    for index, frame in zip(indices, drawn, strict=True):
        caption = f"episode {index + 1}   t = {step}   return {float(returns[index].mean()):.3f}"
        frames[index].append(_captioned(_scaled(frame, size), caption))


def _scaled(frame: np.ndarray, size: int | None) -> Image.Image:
    """The frame as an RGB image, scaled so that its longer side has ``size`` pixels (if given)."""
    image = Image.fromarray(np.ascontiguousarray(frame[..., :3]).astype(np.uint8))
    if size is None or max(image.size) == size:
        return image
    scale = size / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.LANCZOS)


def _captioned(image: Image.Image, caption: str) -> np.ndarray:
    """The frame above a strip with the caption. Every frame's caption differs (the step), which also keeps
    GIF writers from merging identical frames, so a video has one frame per step."""
    canvas = Image.new("RGB", (image.width, image.height + CAPTION_HEIGHT), "white")
    canvas.paste(image, (0, 0))
    ImageDraw.Draw(canvas).text((6, image.height + 4), caption, fill="black", font=font(13))
    return np.asarray(canvas)


def _uniform(frames: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    """Frames fitted to the first frame's size (a video's frames share one size)."""
    height, width = frames[0][0].shape[:2]

    def fit(frame: np.ndarray) -> np.ndarray:
        if frame.shape[:2] == (height, width):
            return frame
        return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.LANCZOS))

    return [[fit(frame) for frame in episode] for episode in frames]
