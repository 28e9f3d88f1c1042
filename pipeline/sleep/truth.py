"""Human sleep scores ("truth") for a recording: read, checked, and laid on its epochs.

`ephys train` learns from these scores and `ephys score --truth` compares against them,
so both need the state of every epoch of a recording. A scoring file comes as:

- intervals: a tab-separated table with a header naming the onset and duration (in
  seconds from the recording's start) and the state of each interval (a BIDS events
  file qualifies); an interval may be one epoch or a whole bout;
- one state per epoch: one label per line, with or without a header (`state`, `stage`,
  `label`), or such a column in a table with no onset;
- MNE annotations: an `-annot.fif`, or a recording (FIF, EDF, BDF, ...) that carries
  its scores as annotations. Annotations of zero duration are events (lights off, a
  note), and `BAD_`/`EDGE` ones mark the recording's gaps: neither is a score.

State names (compared ignoring case, spaces, `-` and `_`, and a `sleep stage ` or
`sleep_` prefix) mean:

- wake: wake, w, awake, aw, qw, active wake, quiet wake, wakefulness
- nrem: nrem, n, nr, non-rem, nrem sleep, sws, s, slow wave sleep, n1, n2, n3, n4,
  and R&K's `sleep stage 1` to `4`
- rem: rem, r, rem sleep, paradoxical, paradoxical sleep, ps
- unclassified: unclassified, unscored, unknown, artifact, artefact, ?, x, u, m,
  movement, movement time, gap, bad, not scored

Numeric labels are refused unless the caller says what each code means (`codes=`):
scoring programs disagree (1 is wake in some, NREM stage 1 in others; 2 is REM or N2).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from pipeline.errors import DataError
from pipeline.io.atomic import atomic_path

STATES = ("wake", "nrem", "rem")
UNCLASSIFIED = "unclassified"

STATE_ALIASES: dict[str, tuple[str, ...]] = {
    "wake": ("wake", "w", "awake", "aw", "qw", "active wake", "quiet wake", "wakefulness"),
    "nrem": ("nrem", "n", "nr", "non rem", "nonrem", "nrem sleep", "sws", "s", "slow wave sleep",
             "n1", "n2", "n3", "n4", "stage 1", "stage 2", "stage 3", "stage 4"),
    "rem": ("rem", "r", "rem sleep", "paradoxical", "paradoxical sleep", "ps"),
    UNCLASSIFIED: ("unclassified", "unscored", "unknown", "artifact", "artefact", "?", "x", "u", "m",
                   "movement", "movement time", "gap", "bad", "not scored"),
}
_ALIAS_TO_STATE = {alias: state for state, aliases in STATE_ALIASES.items() for alias in aliases}

ONSET_COLUMNS = ("onset", "onset_s")
DURATION_COLUMNS = ("duration", "duration_s")
STATE_COLUMNS = ("state", "stage", "label", "description", "trial_type")

# Extensions read as MNE annotations rather than as text.
_MNE_EXTENSIONS = (".fif", ".fif.gz", ".edf", ".bdf", ".gdf", ".vhdr", ".set")
# Onsets are written to the millisecond; anything closer than this is the same time.
_TOL_S = 1e-3
# An interval table whose rows all last the same time up to this is one score per epoch;
# longer equal rows are bouts that happen to be equal.
_MAX_SCORING_EPOCH_S = 60.0


def _key(label: str) -> str:
    key = re.sub(r"[\s_\-]+", " ", label.strip().lower()).strip()
    # "sleep_wake" (this pipeline's annotations), "Sleep stage W" (Sleep-EDF, R&K).
    if key.startswith("sleep "):
        key = key[len("sleep "):]
    if key.startswith("stage ") and not re.fullmatch(r"stage \d", key):
        key = key[len("stage "):]
    return key


def _accepted_names() -> str:
    return "; ".join(f"{state}: {', '.join(aliases)}" for state, aliases in STATE_ALIASES.items())


def _check_codes(codes: Mapping | None) -> dict[str, str]:
    if not codes:
        return {}
    out = {}
    for code, state in codes.items():
        canonical = _ALIAS_TO_STATE.get(_key(str(state)))
        if canonical is None:
            raise DataError(f"the code {code!r} is given the state {state!r}, which is not a sleep state; "
                            f"accepted: {', '.join((*STATES, UNCLASSIFIED))}")
        out[_key(str(code))] = canonical
    return out


def normalise_state(label: str, *, codes: Mapping | None = None) -> str:
    """The canonical state (wake, nrem, rem, unclassified) a scorer's label means.

    Raises ValueError (without a file to name) for an unknown or a numeric label that
    `codes` does not map; readers turn it into a DataError naming file and line."""
    return _normalise(label, _check_codes(codes))


def _normalise(label: str, codes: dict[str, str]) -> str:
    key = _key(label)
    if key in codes:
        return codes[key]
    if re.fullmatch(r"[+-]?\d+(\.\d*)?", key):
        raise ValueError(f"state {_shorten(label.strip(), 30)!r} is a numeric code, and scoring programs number states "
                         "differently (1 is wake in some, NREM in others): say what each code means, "
                         "e.g. codes 1=wake, 2=nrem, 3=rem")
    if key not in _ALIAS_TO_STATE:
        raise ValueError(f"state {_shorten(label.strip(), 30)!r} is not a sleep state; accepted: {_accepted_names()}")
    return _ALIAS_TO_STATE[key]


@dataclass(frozen=True)
class Intervals:
    """Scored intervals in seconds from the recording's start, sorted by onset.

    `where` says where each came from ("line 12 '...'", "annotation 3 '...'"), for errors."""
    onsets: np.ndarray
    durations: np.ndarray
    states: list[str]
    where: list[str]
    path: Path


def _shorten(text: str, width: int = 60) -> str:
    text = text.rstrip("\r\n").replace("\t", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def _line_where(number: int, text: str) -> str:
    return f"line {number} '{_shorten(text)}'"


def _is_mne_file(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(ext) for ext in _MNE_EXTENSIONS)


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines that hold something; comments (#) are left out."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: the scoring file does not exist") from None
    except OSError as e:
        raise DataError(f"{path}: the scoring file cannot be read ({e.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = [(i, line) for i, line in enumerate(text.splitlines(), start=1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise DataError(f"{path}: the scoring file is empty")
    return lines


def _split(line: str, sep: str | None) -> list[str]:
    return [field.strip().strip('"') for field in (line.split(sep) if sep else [line])]


def _find_column(header: list[str], names: Sequence[str]) -> int | None:
    lowered = [h.lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return None


def _layout(path: Path, lines: list[tuple[int, str]]):
    """(separator, has header, onset, duration and state column index) of a text file."""
    first_no, first = lines[0]
    sep = "\t" if "\t" in first else ("," if "," in first else None)
    header = _split(first, sep)
    onset_col = _find_column(header, ONSET_COLUMNS)
    duration_col = _find_column(header, DURATION_COLUMNS)
    state_col = _find_column(header, STATE_COLUMNS)
    if onset_col is None and duration_col is None:
        if state_col is not None:
            return sep, True, None, None, state_col
        if len(header) == 1:
            return None, False, None, None, 0
    missing = [names for names, col in ((ONSET_COLUMNS, onset_col), (DURATION_COLUMNS, duration_col),
                                         (STATE_COLUMNS, state_col)) if col is None]
    if missing:
        wanted = "; ".join(" or ".join(names) for names in missing)
        raise DataError(f"{path}: {_line_where(first_no, first)} is not a header of intervals nor one state "
                        f"per line: a table of intervals needs the columns onset, duration and state "
                        f"(missing: {wanted}); one state per epoch is one label per line")
    return sep, True, onset_col, duration_col, state_col


def _seconds(value: str, what: str, path: Path, where: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise DataError(f"{path}: {where}: the {what} {value!r} is not a number of seconds") from None
    if not math.isfinite(x):
        raise DataError(f"{path}: {where}: the {what} {value!r} is not a number of seconds")
    if x < 0:
        raise DataError(f"{path}: {where}: the {what} {value} is negative")
    return x


def _state_of(label: str, codes: dict[str, str], path: Path, where: str) -> str:
    try:
        return _normalise(label, codes)
    except ValueError as e:
        raise DataError(f"{path}: {where}: {e}") from None


def _sorted_checked(path: Path, onsets, durations, states, where) -> Intervals:
    onsets = np.asarray(onsets, dtype=float)
    durations = np.asarray(durations, dtype=float)
    order = np.argsort(onsets, kind="stable")
    onsets, durations = onsets[order], durations[order]
    states = [states[i] for i in order]
    where = [where[i] for i in order]
    ends = onsets + durations
    # The first overlap in time; with a sorted table that is also the first in the file.
    for i in range(1, len(onsets)):
        if onsets[i] < ends[i - 1] - _TOL_S:
            raise DataError(f"{path}: {where[i]} overlaps {where[i - 1]}: it starts at {onsets[i]:g} s, "
                            f"before that interval ends at {ends[i - 1]:g} s; each moment has one state")
    return Intervals(onsets, durations, states, where, path)


def read_intervals(path: str | os.PathLike, *, codes: Mapping | None = None) -> Intervals:
    """The scored intervals of a table of intervals or of MNE annotations, sorted and
    checked (numbers, states, no overlap); DataError for a file of one state per epoch."""
    path = Path(path)
    codes_ = _check_codes(codes)
    if _is_mne_file(path):
        return _read_annotations(path, codes_)
    lines = _read_lines(path)
    sep, _, onset_col, duration_col, state_col = _layout(path, lines)
    if onset_col is None:
        raise DataError(f"{path}: the file holds one state per epoch, not intervals with onsets")
    return _intervals_from_table(path, lines, sep, onset_col, duration_col, state_col, codes_)


def _intervals_from_table(path, lines, sep, onset_col, duration_col, state_col, codes) -> Intervals:
    onsets, durations, states, where = [], [], [], []
    n_cols = max(onset_col, duration_col, state_col) + 1
    for number, text in lines[1:]:
        here = _line_where(number, text)
        fields = _split(text, sep)
        if len(fields) < n_cols:
            raise DataError(f"{path}: {here} has {len(fields)} column(s), the header {n_cols} or more")
        onset = _seconds(fields[onset_col], "onset", path, here)
        duration = _seconds(fields[duration_col], "duration", path, here)
        if duration == 0:
            raise DataError(f"{path}: {here}: the duration is 0; a scored interval lasts some time")
        onsets.append(onset)
        durations.append(duration)
        states.append(_state_of(fields[state_col], codes, path, here))
        where.append(here)
    if not onsets:
        raise DataError(f"{path}: the scoring file has a header but no intervals")
    return _sorted_checked(path, onsets, durations, states, where)


def _read_annotations(path: Path, codes: dict[str, str]) -> Intervals:
    import mne

    if path.name.lower().endswith(("-annot.fif", "_annot.fif", "-annot.fif.gz")):
        try:
            annotations = mne.read_annotations(path)
        except FileNotFoundError:
            raise DataError(f"{path}: the scoring file does not exist") from None
        except Exception as e:  # MNE raises ValueError, OSError, KeyError... for a damaged file
            raise DataError(f"{path}: cannot read MNE annotations from it ({e})") from None
        onsets = np.asarray(annotations.onset, dtype=float)
    else:
        from pipeline.sleep.mne_input import annotations_since_start, open_recording

        raw = open_recording(path)
        annotations = raw.annotations
        onsets = annotations_since_start(raw)
    keep_on, keep_du, keep_st, keep_where = [], [], [], []
    for i, (onset, duration, description) in enumerate(zip(onsets, annotations.duration,
                                                           annotations.description), start=1):
        here = f"annotation {i} '{_shorten(str(description))}' at {onset:g} s"
        lowered = str(description).lower()
        if duration <= 0 or lowered.startswith(("bad", "edge")) or lowered == "boundary":
            continue  # an event or a gap of the recording, not a score
        keep_on.append(max(0.0, float(onset)))
        keep_du.append(float(duration))
        keep_st.append(_state_of(str(description), codes, path, here))
        keep_where.append(here)
    if not keep_on:
        raise DataError(f"{path}: the file has no annotation that scores a sleep state "
                        "(only events of no duration, gaps or none at all)")
    return _sorted_checked(path, keep_on, keep_du, keep_st, keep_where)


def _labels_per_line(path, lines, has_header, state_col, sep, n_epochs, epoch_s, codes) -> np.ndarray:
    body = lines[1:] if has_header else lines
    if len(body) != n_epochs:
        hint = ""
        if body:
            implied = n_epochs * epoch_s / len(body)
            hint = (f"; {len(body)} scores over the recording's {n_epochs * epoch_s:g} s would be epochs of "
                    f"{implied:.3g} s")
        raise DataError(f"{path} has {len(body)} scores (one per line) but the recording has {n_epochs} epochs "
                        f"of {epoch_s:g} s{hint}: score it in {epoch_s:g} s epochs, one line per epoch")
    out = []
    for number, text in body:
        fields = _split(text, sep)
        if len(fields) <= state_col:
            raise DataError(f"{path}: {_line_where(number, text)} has no state column")
        out.append(_state_of(fields[state_col], codes, path, _line_where(number, text)))
    return np.array(out, dtype=object).astype(str)


def _check_against_epochs(iv: Intervals, *, epoch_s: float, n_epochs: int, start_s: float) -> None:
    """Refuse scores made for another recording or on another epoch grid."""
    end_s = start_s + n_epochs * epoch_s
    ends = iv.onsets + iv.durations
    last = int(np.argmax(ends))
    for i in range(len(ends)):
        if ends[i] > end_s + epoch_s + _TOL_S:
            raise DataError(f"{iv.path}: {iv.where[i]} ends at {ends[i]:g} s, more than one epoch after the "
                            f"recording's end ({end_s:g} s): are these the scores of another recording?")
    durations = iv.durations
    others = np.delete(durations, last)
    # One score per epoch: every row but the last (cut by the end of the recording) equally
    # long, and a state going on from one row to the next (bouts would have been one row).
    contiguous_same = any(abs(iv.onsets[i + 1] - ends[i]) <= _TOL_S and iv.states[i + 1] == iv.states[i]
                          for i in range(len(ends) - 1))
    if len(durations) >= 3 and np.ptp(others) <= _TOL_S and durations[last] <= others[0] + _TOL_S \
            and others[0] <= _MAX_SCORING_EPOCH_S and contiguous_same:
        scoring_epoch = float(others[0])
        if abs(scoring_epoch - epoch_s) > _TOL_S:
            raise DataError(f"{iv.path} scores epochs of {scoring_epoch:g} s but the recording is scored in "
                            f"{epoch_s:g} s epochs: score it in {epoch_s:g} s epochs, or score the recording "
                            f"with {scoring_epoch:g} s epochs")
        offsets = (iv.onsets - start_s) / epoch_s
        off_grid = np.flatnonzero(np.abs(offsets - np.round(offsets)) * epoch_s > _TOL_S)
        if off_grid.size:
            i = int(off_grid[0])
            raise DataError(f"{iv.path}: {iv.where[i]} starts at {iv.onsets[i]:g} s, between two of the "
                            f"recording's {epoch_s:g} s epochs (which start at {start_s:g} s and every "
                            f"{epoch_s:g} s after): the scores are not on the recording's epochs")
        return
    # Bouts: longer than an epoch they may come from any grid; shorter, from a finer one.
    for i in range(len(durations)):
        if i != last and durations[i] < epoch_s - _TOL_S:
            raise DataError(f"{iv.path}: {iv.where[i]} lasts {durations[i]:g} s, less than one "
                            f"{epoch_s:g} s epoch: the file was scored in shorter epochs than the recording; "
                            f"score it in {epoch_s:g} s epochs")


def labels_from_intervals(iv: Intervals, *, epoch_s: float, n_epochs: int, start_s: float = 0.0) -> np.ndarray:
    """Each epoch's state: the one whose intervals cover more than half of it, else unclassified."""
    starts = start_s + np.arange(n_epochs) * epoch_s
    stops = starts + epoch_s
    coverage = np.zeros((n_epochs, len(STATES) + 1))
    names = (*STATES, UNCLASSIFIED)
    for k, state in enumerate(names):
        pick = [i for i, s in enumerate(iv.states) if s == state]
        if not pick:
            continue
        on, du = iv.onsets[pick], iv.durations[pick]
        # The time in `state` before t is piecewise linear in t: rising over each interval,
        # flat between them (the intervals are sorted and do not overlap).
        xp = np.column_stack([on, on + du]).ravel()
        fp = np.column_stack([np.cumsum(du) - du, np.cumsum(du)]).ravel()
        coverage[:, k] = np.interp(stops, xp, fp) - np.interp(starts, xp, fp)
    best = np.argmax(coverage, axis=1)
    labels = np.array(names, dtype=str)[best]
    labels[coverage[np.arange(n_epochs), best] <= epoch_s / 2] = UNCLASSIFIED
    return labels


def epoch_labels(path: str | os.PathLike, *, epoch_s: float, n_epochs: int, start_s: float = 0.0,
                 codes: Mapping | None = None) -> np.ndarray:
    """The scored state of each of the recording's `n_epochs` epochs of `epoch_s` seconds
    (the first starting `start_s` seconds into the scoring file's time): the state whose
    intervals cover the majority of the epoch, `unclassified` where none does."""
    if not (epoch_s > 0 and n_epochs >= 0):
        raise ValueError(f"epoch_s must be positive and n_epochs not negative, not {epoch_s}, {n_epochs}")
    path = Path(path)
    codes_ = _check_codes(codes)
    if _is_mne_file(path):
        iv = _read_annotations(path, codes_)
    else:
        lines = _read_lines(path)
        sep, has_header, onset_col, duration_col, state_col = _layout(path, lines)
        if onset_col is None:
            return _labels_per_line(path, lines, has_header, state_col, sep, n_epochs, epoch_s, codes_)
        iv = _intervals_from_table(path, lines, sep, onset_col, duration_col, state_col, codes_)
    _check_against_epochs(iv, epoch_s=epoch_s, n_epochs=n_epochs, start_s=start_s)
    return labels_from_intervals(iv, epoch_s=epoch_s, n_epochs=n_epochs, start_s=start_s)


def _number(x: float) -> str:
    return f"{x:.6f}".rstrip("0").rstrip(".") or "0"


def write_intervals(path: str | os.PathLike, onsets: Iterable[float], durations: Iterable[float],
                    states: Iterable[str]) -> None:
    """Write scores as a BIDS-like `onset duration state` TSV (seconds, canonical states),
    atomically."""
    onsets, durations, states = list(onsets), list(durations), list(states)
    if not len(onsets) == len(durations) == len(states):
        raise ValueError(f"{len(onsets)} onsets, {len(durations)} durations and {len(states)} states")
    canonical = [_normalise(str(s), {}) for s in states]
    for x in (*onsets, *durations):
        if not (math.isfinite(x) and x >= 0):
            raise ValueError(f"onsets and durations must be finite and not negative, not {x}")
    lines = ["onset\tduration\tstate\n"]
    lines += [f"{_number(on)}\t{_number(du)}\t{st}\n" for on, du, st in zip(onsets, durations, canonical)]
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())
