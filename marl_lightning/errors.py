"""User-facing configuration errors: caught by the CLI and printed without a traceback."""

from __future__ import annotations

from typing import TypeVar

E = TypeVar("E", bound=BaseException)


class ConfigError(ValueError):
    """A setting is invalid; the message names the field, the value and the fix."""


def find_in_chain(error: BaseException | None, kind: type[E]) -> E | None:
    """The first exception of ``kind`` in ``error``'s chain of causes and contexts (code that catches an
    exception often raises another from it: jsonargparse around a ConfigError, a driver around Ctrl-C)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
