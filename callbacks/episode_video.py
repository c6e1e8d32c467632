"""A video of the current policy every few evaluations, logged to MLflow (``videos/``)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import MLFlowLogger
from typing_extensions import override

from marl_lightning.core.errors import ConfigError
from marl_lightning.data.seeding import restore_rng_states, rng_states
from marl_lightning.render import check_output, record_episodes, write_video

VIDEO_ARTIFACT_DIR = "videos"


class EpisodeVideo(Callback):
    """Every ``every_n_evaluations`` evaluations (``val_check_interval``), records ``episodes`` deterministic
    episodes of the current policy with the task's renderer (``marl_lightning.render``) and logs the video
    as ``videos/frames_<frames>.<format>`` to the MLflow run, or writes it to ``<log_dir>/videos/`` without
    an MLflow logger. Off by default; turn it on with ``--trainer.callbacks+=callbacks.EpisodeVideo``.

    Only global rank 0 records; the training RNGs are saved and restored around it, so a fit with the
    callback trains exactly as one without. The episodes are seeded by ``seed`` (the same initial states
    every time, so videos compare across the fit).

    Args:
        every_n_evaluations: record at every n-th evaluation of the fit (the sanity check does not count).
        episodes: episodes per video, shown one after another.
        fps: frames per second.
        size: frames scaled to this many pixels on their longer side (None: the renderer's size).
        seed: seed of the recorded episodes.
        format: ``"gif"`` (Pillow) or ``"mp4"`` (needs PyAV: ``pip install av``).
    """

    def __init__(
        self,
        every_n_evaluations: int = 1,
        episodes: int = 1,
        fps: float = 10.0,
        size: int | None = 400,
        seed: int = 0,
        format: Literal["gif", "mp4"] = "gif",
    ) -> None:
        for name, value in (("every_n_evaluations", every_n_evaluations), ("episodes", episodes),
                            ("fps", fps), ("size", size)):
            if value is not None and value <= 0:
                raise ConfigError(f"EpisodeVideo.{name} must be > 0, got {value}.")
        check_output(f"video.{format}", option="EpisodeVideo.format")
        self.every_n_evaluations = every_n_evaluations
        self.episodes = episodes
        self.fps = fps
        self.size = size
        self.seed = seed
        self.format = format
        self.evaluations = 0

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        missing = [name for name, owner in (("policy", pl_module), ("env_factory", trainer.datamodule))
                   if not hasattr(owner, name)]
        if missing:
            raise ConfigError(
                f"EpisodeVideo needs the module's policy and the data module's env_factory; "
                f"{type(pl_module).__name__} / {type(trainer.datamodule).__name__} lack "
                f"{', '.join(missing)}. "
                "Remove the callback or train with marl_lightning's RolloutDataModule and algorithms."
            )

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.evaluations += 1
        if self.evaluations % self.every_n_evaluations == 0 and trainer.is_global_zero:
            self.record(trainer, pl_module)

    def record(self, trainer: Trainer, pl_module: LightningModule) -> Path:
        """Record, write and log one video of the current policy now; returns the written file."""
        device = pl_module.device
        saved = rng_states()  # building an env reseeds the global RNGs (VMAS does); training must not notice
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            try:
                factory = trainer.datamodule.env_factory
                recording = record_episodes(
                    pl_module.policy, factory, self.episodes, self.seed, device, self.size
                )
            finally:
                restore_rng_states(saved)
        mlflow_loggers = [lg for lg in trainer.loggers if isinstance(lg, MLFlowLogger)]
        if mlflow_loggers:
            out_dir = Path(tempfile.mkdtemp(prefix="episode_video_"))
        else:
            out_dir = Path(trainer.log_dir or trainer.default_root_dir) / VIDEO_ARTIFACT_DIR
        frames = int(getattr(pl_module, "frames", trainer.global_step))
        path = write_video(recording.video_frames(), out_dir / f"frames_{frames:09d}.{self.format}", self.fps)
        for logger in mlflow_loggers:
            logger.experiment.log_artifact(logger.run_id, str(path), VIDEO_ARTIFACT_DIR)
        return path

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"evaluations": self.evaluations}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.evaluations = int(state_dict.get("evaluations", 0))
