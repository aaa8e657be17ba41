"""Errors a user can cause. Entrypoints print their message in one line, never a traceback."""


class FerError(Exception):
    """Base class for user-facing errors (bad config value, bad data root, bad file)."""


class ConfigError(FerError):
    """A config key holds a value that cannot work; the message names the key."""


class DataError(FerError):
    """A dataset, manifest or cache file is missing or malformed; the message names the path."""


class RunStateError(FerError):
    """A run directory is in a state that forbids the requested action (e.g. changed config)."""
