"""Lightning callbacks for marl_lightning (they import marl_lightning, never the reverse)."""

from callbacks.adaptive_beta import AdaptiveBeta
from callbacks.episode_video import EpisodeVideo
from callbacks.iteration_checkpoint import IterationCheckpoint
from callbacks.iteration_times import IterationTimes
from callbacks.trust_region import TrustRegionMonitor

__all__ = ["AdaptiveBeta", "EpisodeVideo", "IterationCheckpoint", "IterationTimes", "TrustRegionMonitor"]
