"""LFP segments as MNE .fif files: written in bounded memory, read back as MNE Raw.

The writer hands MNE a lazy Raw whose samples are computed on demand (decimated from
the raw files), so MNE's own FIF writer pulls them buffer by buffer: a one-hour,
64-channel segment never sits in memory whole.
"""

from __future__ import annotations

import warnings
from datetime import datetime
from pathlib import Path
from typing import Callable

import mne
import numpy as np
from mne.io import BaseRaw

from pipeline.io.atomic import atomic_path

GAP_ANNOTATION = "BAD_ACQ_SKIP"  # no channel has samples there
# Some channels have no samples there (one ended early, or skipped records): an
# annotation naming those channels. Not BAD_ACQ_SKIP, which MNE writes as a skip of
# every channel.
CHANNEL_GAP_ANNOTATION = "BAD_NO_SAMPLES"


class _ComputedRaw(BaseRaw):
    """A Raw whose samples come from `compute(start, stop)` (segment-relative, stop exclusive)."""

    def __init__(self, info, first_samp: int, n_samples: int, compute: Callable[[int, int], np.ndarray]):
        super().__init__(
            info, preload=False, first_samps=(first_samp,), last_samps=(first_samp + n_samples - 1,),
            filenames=(None,), raw_extras=[{"compute": compute, "first_samp": first_samp}], orig_format="single", verbose=False,
        )

    def _read_segment_file(self, data, idx, fi, start, stop, cals, mult):
        from mne._fiff.utils import _mult_cal_one

        # MNE passes sample numbers that include first_samp; stop is exclusive.
        extras = self._raw_extras[fi]
        a = start - extras["first_samp"]
        block = extras["compute"](a, a + data.shape[1])
        _mult_cal_one(data, block, idx, cals, mult)


def make_info(channel_names: list[str], channel_types: list[str], rate: float, meas_date: datetime,
              bads: list[str]) -> mne.Info:
    info = mne.create_info(channel_names, rate, channel_types, verbose=False)
    info.set_meas_date(meas_date)
    info["bads"] = [b for b in bads if b in channel_names]
    return info


def write_lfp_segment(path: str | Path, info: mne.Info, first_samp: int, n_samples: int,
                      compute: Callable[[int, int], np.ndarray], *, gaps_s: list[tuple[float, float]] = (),
                      channel_gaps_s: list[tuple[float, float, list[str]]] = (), buffer_s: float = 10.0) -> None:
    """Write LFP samples [first_samp, first_samp + n_samples) to `path`, atomically, float32.

    `compute(a, b)` returns segment-relative samples a..b, shape (n_channels, b - a), volts.
    `gaps_s` are (onset, duration) in seconds from the recording start, annotated BAD_ACQ_SKIP;
    `channel_gaps_s` (onset, duration, channels) where only those channels have no
    samples, annotated BAD_NO_SAMPLES for those channels.
    """
    raw = _ComputedRaw(info, first_samp, n_samples, compute)
    spans = [(o, d, GAP_ANNOTATION, []) for o, d in gaps_s] + \
            [(o, d, CHANNEL_GAP_ANNOTATION, list(ch)) for o, d, ch in channel_gaps_s]
    if spans:
        onsets, durations, descriptions, channels = zip(*spans)
        raw.set_annotations(mne.Annotations(onsets, durations, descriptions, orig_time=info["meas_date"],
                                            ch_names=channels))
    with atomic_path(path, suffix="_raw.fif") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MNE's advice on file naming is not for us
        raw.save(tmp, fmt="single", buffer_size_sec=buffer_s, overwrite=True, verbose=False)


def read_lfp(paths: list[str | Path] | str | Path, *, preload: bool = True) -> mne.io.Raw:
    """Read one LFP segment, or several concatenated in the order given."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    # MNE advises names ending in raw.fif; the layout here is lfp/seg{k}.fif on purpose.
    with warnings.catch_warnings(), mne.utils.use_log_level("error"):
        warnings.simplefilter("ignore")
        raws = [mne.io.read_raw_fif(p, preload=preload, verbose=False) for p in paths]
    if len(raws) == 1:
        return raws[0]
    return mne.concatenate_raws(raws, verbose=False)
