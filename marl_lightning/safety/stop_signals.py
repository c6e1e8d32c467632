"""Stop signals (SIGTERM, SIGINT, SIGUSR1) that end a fit at the next iteration boundary, not mid-update.

A cluster stops a job with SIGTERM (SLURM sends SIGUSR1 first when asked to warn before pre-emption, and
``kill`` sends SIGTERM); a user with Ctrl-C (SIGINT). :class:`StopSignals` records the first one instead of
letting it kill the process in the middle of an update; ``callbacks.IterationCheckpoint`` then finishes the
iteration in flight, writes a checkpoint and raises :class:`~marl_lightning.core.errors.Interrupted`. The same
signal a second time stops at once (the iteration in flight is abandoned; the last checkpoint is kept).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any

from marl_lightning.core.errors import Interrupted

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
# What a fit stopped by one of them exits with (errors.Interrupted.exit_status): 143, 130, 138.
INTERRUPTED_EXIT_STATUSES = frozenset(128 + signum for signum in STOP_SIGNALS)


class StopSignals:
    """Records the first stop signal while :meth:`install`\\ ed; hands signals back after :meth:`restore`."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Take over the stop signals (from the main thread only: Python delivers signals there).

        Called once training starts, after Lightning has registered its own SIGTERM handler (which would
        end the fit FAILED with exit status 0); Lightning puts back the handlers of before the fit when it
        ends, :meth:`restore` does so as soon as training ends.
        """
        self.received = None
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def restore(self) -> None:
        """Give the signals back to the handlers they had before :meth:`install`."""
        for signum, handler in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            raise Interrupted(
                signum, f"{name} received a second time: stopped at once, the iteration in flight abandoned; "
                "the last checkpoint is kept."
            )
        self.received = signum
        sys.stderr.write(
            f"\nmarl_lightning: {name} received: finishing the iteration in flight, then a checkpoint and "
            f"stop ({name} again stops at once).\n"
        )

