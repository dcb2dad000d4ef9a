"""Exceptions raised for problems a user can fix.

Every message names the problem and the fix. The CLI prints ``L2ULError`` messages on one line and exits
with a non-zero code; other exceptions are bugs and keep their traceback.
"""


class L2ULError(Exception):
    """A problem with the user's input (request, data, model file, configuration)."""


class RequestError(L2ULError, ValueError):
    """A deletion request that cannot be honoured as given (bad ids, bad relabel targets)."""


class ModelFileError(L2ULError):
    """A model file that is missing, corrupt, truncated or unsafe to load."""


class DataError(L2ULError):
    """A dataset that is missing, malformed or does not fit the model."""


class ConfigError(L2ULError, ValueError):
    """An invalid configuration value. ``field``: the :class:`l2ul.UnlearnConfig` field (or API parameter)
    it concerns, when there is one; the CLI names the matching flag."""

    def __init__(self, message: str, *, field: "str | None" = None):
        super().__init__(message)
        self.field = field
