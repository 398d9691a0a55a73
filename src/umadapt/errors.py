"""Errors with messages that name the problem and the fix."""


class ConfigError(ValueError):
    """A configuration problem whose message says what is wrong and how to fix it."""
