"""IterationTimes: each iteration's wall time, its parts and the process's memory, one JSON line each."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from typing_extensions import override

# The module's own parts of an iteration (``perf/<name>``), where the algorithm reports them.
PARTS = ("collect_s", "advantages_s", "optimise_s", "statistics_s")


def _status_mib(field: str) -> float | None:
    """A memory line of ``/proc/self/status`` (Linux; kB there) in MiB, or None where it is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mib() -> float:
    """The process's peak resident memory so far, in MiB (``VmHWM``; else ``ru_maxrss``, KiB on Linux)."""
    peak = _status_mib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    """The process's resident memory now, in MiB (``VmRSS``; else the peak)."""
    now = _status_mib("VmRSS")
    return now if now is not None else peak_rss_mib()


class IterationTimes(pl.Callback):
    """Appends one JSON line per training iteration to ``path`` (what ``benchmarks/throughput.py`` reads).

    Each line holds ``iteration``, ``frames`` (the module's global counter), ``wall_s`` (from the end of
    the previous iteration, or from the start of training, to the end of this one: everything the loop
    did, logging included), ``unix_s`` (the end's wall-clock time, for ``benchmarks/startup.py``), the
    module's own parts ``collect_s``, ``advantages_s``, ``optimise_s``,
    ``statistics_s`` where the algorithm reports them, ``rss_mib`` and ``peak_rss_mib``, and on a GPU
    ``gpu_peak_mib`` (PyTorch's peak allocated memory on the module's device). Only rank 0 writes.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._last = 0.0

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._last = time.perf_counter()

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        wall, self._last = now - self._last, now
        if not trainer.is_global_zero:
            return
        parts = outputs if isinstance(outputs, dict) else {}
        line = {
            "iteration": int(pl_module.iterations),
            "frames": int(pl_module.frames),
            "wall_s": wall,
            "unix_s": time.time(),  # when it ended: a launcher's clock gives the time from launch
            **{name: float(parts[name]) for name in PARTS if isinstance(parts.get(name), torch.Tensor)},
            "rss_mib": rss_mib(),
            "peak_rss_mib": peak_rss_mib(),
        }
        if pl_module.device.type == "cuda":
            line["gpu_peak_mib"] = torch.cuda.max_memory_allocated(pl_module.device) / 2**20
        with self.path.open("a") as file:
            file.write(json.dumps(line) + "\n")
