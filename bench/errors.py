"""Errors the CLI turns into a one-line message and exit code 2."""


class UsageError(ValueError):
    """Bad user input: an unknown name, a malformed budget, missing data."""


class DataNotFoundError(UsageError):
    """A dataset's files are not where the user said they are."""
