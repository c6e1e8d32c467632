"""``python -m marl_lightning fit --config conf/mappo.yaml``."""

from __future__ import annotations

import sys

from marl_lightning.errors import ConfigError


def _config_error_in(error: BaseException | None) -> ConfigError | None:
    """The ConfigError behind an exception (jsonargparse wraps errors raised while instantiating)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, ConfigError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def cli_main(args: list[str] | None = None) -> None:
    """Run the LightningCLI; a user error prints one paragraph and exits with status 2, no traceback."""
    from marl_lightning.cli import MarlCLI

    try:
        MarlCLI(args=args)
    except (ValueError, TypeError) as error:
        config_error = _config_error_in(error)
        if config_error is None:
            raise
        print(f"marl_lightning: error: {config_error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli_main()
