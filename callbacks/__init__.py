"""Lightning callbacks for marl_lightning (they import marl_lightning, never the reverse)."""

from callbacks.iteration_checkpoint import IterationCheckpoint

__all__ = ["IterationCheckpoint"]
