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

import errno
import os
import signal

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


# -- what a failure that is nobody's mistake says -------------------------------------------
# The words for causes that are neither the data's nor a bug (a full disk, a folder the
# pipeline may not write, a job the system killed), so that a row says what happened
# and what to do instead of "internal error". The CLI prints them for a stage, the
# poller for a row, progress for a job the system killed.
KILLED = "the job was killed (out of memory, or stopped by someone)"
RAW_FIXED_ADVICE = "Once the raw files are fixed, tick rerun to process the recording again."
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
_NOT_ALLOWED = {errno.EACCES, errno.EPERM, errno.EROFS}


def os_error_words(e: OSError) -> str | None:
    """A full disk or a refused write as a sentence naming the file, or None for any
    other OSError (which stays a bug to report)."""
    name = _shown_path(e.filename)
    if e.errno in _DISK_FULL:
        return (f"the results disk is full (no space left{' writing ' + name if name else ''}); once a maintainer "
                "has made room, tick rerun to go on from where it stopped.")
    if e.errno in _NOT_ALLOWED:
        why = "a read-only file system" if e.errno == errno.EROFS else "permission denied"
        return (f"{name or 'a file'} could not be written or replaced ({why}); once a maintainer has made the "
                "folder writable, tick rerun.")
    return None


def _shown_path(name) -> str | None:
    """A file name as a message shows it: relative to the project folder (the working
    folder of the stages) when inside it, and never longer than a line."""
    if not isinstance(name, (str, bytes)):
        return None
    path = os.path.abspath(os.fsdecode(name))
    rel = os.path.relpath(path)
    path = rel if not rel.startswith("..") else path
    return path if len(path) <= 160 else "..." + path[-157:]


def killed_words(exit_status: int | None) -> str | None:
    """KILLED for the exit status of a process ended by SIGKILL (the OOM killer, kill -9):
    -9 from Python's subprocess, 137 from a shell."""
    return KILLED if exit_status in (-signal.SIGKILL, 128 + signal.SIGKILL) else None


def error_words(e: BaseException) -> str | None:
    """What the one line for `e` says (without "ERROR: "), for an expected failure or a
    known cause; None for a bug."""
    if isinstance(e, BackendUnavailable):
        return f"{TEMPORARY}{e}"
    if isinstance(e, RawDataError):
        text = str(e)
        return text if "tick rerun" in text else f"{text} {RAW_FIXED_ADVICE}"
    if isinstance(e, PipelineError):
        return str(e)
    if isinstance(e, OSError):
        return os_error_words(e)
    return None
