"""Errors the pipeline raises on purpose.

Each carries a message written for the person who will read it: a lab member for
sheet problems, a maintainer (naming the file, key or channel) for everything else.
The CLI prints the message alone, without a traceback.
"""


class PipelineError(Exception):
    """An expected failure with a message meant to be read as it is."""


class ConfigError(PipelineError):
    """config.yaml is missing, unreadable or has a wrong key or value."""


class RawDataError(PipelineError):
    """Raw recording files are missing, truncated or inconsistent."""


class RowError(PipelineError):
    """A sheet row cannot be registered; the message goes back into the row."""
