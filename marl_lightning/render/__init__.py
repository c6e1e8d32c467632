"""Watching a policy: deterministic episodes drawn by the task's own renderer, written as a GIF or MP4.

``episodes`` runs and draws them, ``frames`` holds the per-task renderers, ``video`` writes the file,
``command`` is ``python -m marl_lightning render``; ``callbacks.EpisodeVideo`` records during ``fit``.
"""

from marl_lightning.render.episodes import Recording, record_episodes
from marl_lightning.render.frames import Renderer, renderer_for
from marl_lightning.render.video import check_output, write_video

__all__ = ["Recording", "Renderer", "check_output", "record_episodes", "renderer_for", "write_video"]
