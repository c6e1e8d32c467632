"""User-facing configuration errors: caught by the CLI and printed without a traceback."""


class ConfigError(ValueError):
    """A setting is invalid; the message names the field, the value and the fix."""
