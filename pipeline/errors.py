"""Errors the pipeline raises on purpose, by whose they are to fix.

- `DataError`: the recording or the sheet row is wrong; a lab member can fix it, so its
  message is a sentence for them, and it goes into the sheet as it is.
- `ConfigError`: config.yaml (or a back-end's settings) is wrong; a maintainer fixes it,
  so the message names the file and the key.
- `BackendUnavailable`: a sheet, results store or executor cannot be reached just now
  (busy, offline, refused); nothing is wrong with the data, and the poller tries again
  at its next poll.

Anything else that escapes is a bug: the CLI prints "internal error, tell a
maintainer" with the log, never dressed as one of the above.
"""

# How the CLI begins the one line it prints for a bug; the sheet adds the log's path.
INTERNAL_ERROR = "internal error"
# How it begins the line for a back-end that could not be reached: the poller starts
# such a run again by itself.
TEMPORARY = "(temporary) "


class PipelineError(Exception):
    """An expected failure with a message meant to be read as it is."""


class DataError(PipelineError):
    """Something in the data or a sheet row that a lab member can fix."""


class RawDataError(DataError):
    """Raw recording files are missing, truncated or inconsistent."""


class RowError(DataError):
    """A sheet row cannot be registered; the message goes back into the row."""


class ConfigError(PipelineError):
    """config.yaml is missing, unreadable or has a wrong key or value."""


class BackendUnavailable(PipelineError):
    """A back-end (sheet, results store, executor) cannot be reached or is busy now."""
