"""Errors raised by the data layer."""


class DataError(ValueError):
    """A data file exists but is not what it should be (wrong magic number, shape, dtype,
    truncated or corrupt). The message names the file and says what was expected."""
