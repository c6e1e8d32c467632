"""Writing frames as a video: GIF with Pillow (always there), MP4 with PyAV (``pip install av``) if there."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from marl_lightning.core.errors import ConfigError

FORMATS = (".gif", ".mp4")
MP4_PACKAGE = "av"  # PyAV: its wheels bundle FFmpeg's libraries, no system FFmpeg needed


def check_output(path: str | Path, option: str = "--output") -> Path:
    """The output path, if its format can be written here; else a ConfigError naming the fix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(
            f"render: {option} {path} has the suffix {suffix or '(none)'!r}; videos are written as "
            f"{' or '.join(FORMATS)}. Use e.g. {option} {path.with_suffix('.gif')}."
        )
    if suffix == ".mp4" and importlib.util.find_spec(MP4_PACKAGE) is None:
        raise ConfigError(
            f"render: {option} {path} asks for an MP4, which needs PyAV, not installed here. Install it "
            f"(pip install {MP4_PACKAGE}) or write a GIF: {option} {path.with_suffix('.gif')}."
        )
    return path


def write_video(frames: Sequence[np.ndarray], path: str | Path, fps: float) -> Path:
    """Write ``frames`` ([H, W, 3] uint8, one size) to ``path`` (.gif or .mp4) at ``fps`` frames a second."""
    path = check_output(path)
    if not frames:
        raise ValueError("write_video needs at least one frame.")
    if fps <= 0:
        raise ConfigError(f"render: fps must be > 0, got {fps}. Use e.g. --fps 10.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        _write_gif(frames, path, fps)
    else:
        _write_mp4(frames, path, fps)
    return path


def _write_gif(frames: Sequence[np.ndarray], path: Path, fps: float) -> None:
    images = [Image.fromarray(frame) for frame in frames]
    # GIF stores durations in hundredths of a second.
    duration = max(20, round(1000 / fps / 10) * 10)
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=0)


def _write_mp4(frames: Sequence[np.ndarray], path: Path, fps: float) -> None:
    import av

    height, width = frames[0].shape[:2]
    # yuv420p (what players expect) needs even sizes: pad with white.
    even_h, even_w = height + height % 2, width + width % 2
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4",
                                      rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = even_w, even_h, "yuv420p"
        for frame in frames:
            padded = np.full((even_h, even_w, 3), 255, dtype=np.uint8)
            padded[:height, :width] = frame
            for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
