"""User-facing errors: caught by the CLI and printed as one paragraph, without a traceback.

- :class:`ConfigError`: a setting is invalid (exit status 2, before anything is created).
- :class:`TrainingError`: the run cannot go on (non-finite values, a full disk; exit status 1). The last
  good checkpoint is kept and named in the message's notes.
- :class:`Interrupted`: a stop signal (SIGTERM, SIGINT, SIGUSR1) ended the fit after a checkpoint
  (exit status 128 + the signal's number, as a shell reports a process killed by it).
"""

from __future__ import annotations

import signal
from typing import TypeVar

E = TypeVar("E", bound=BaseException)


class ConfigError(ValueError):
    """A setting is invalid; the message names the field, the value and the fix."""


class TrainingError(RuntimeError):
    """The run cannot go on; the message names what went wrong, where, and what to do."""


class NonFiniteError(TrainingError):
    """NaN or Inf in the env's data, a loss or the gradients (``marl_lightning.safety.health``)."""


class Interrupted(BaseException):
    """A stop signal ended the fit; like ``KeyboardInterrupt`` it is not an ``Exception``, so no
    ``except Exception`` on the way out swallows it."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


def find_in_chain(error: BaseException | None, kind: type[E] | tuple[type[E], ...]) -> E | None:
    """The first exception of ``kind`` in ``error``'s chain of causes and contexts (code that catches an
    exception often raises another from it: jsonargparse around a ConfigError, a driver around Ctrl-C)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def paragraph(error: BaseException) -> str:
    """The message and its notes (``add_note``: the last good checkpoint, the resume command) as one text."""
    return " ".join([str(error), *getattr(error, "__notes__", [])])
