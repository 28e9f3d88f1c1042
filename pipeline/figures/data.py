"""What the figures are drawn from: a recording's stage outputs, read in bounded memory.

Only the outputs of earlier stages are read (recording.json, the spectrogram segments,
the hypnogram and summary, the LFP QC sidecars). The spectrograms are the big part (a
day of four regions is 21,600 epochs x 801 frequencies each): they are read one segment
at a time and reduced on the way to what is drawn: power up to the displayed frequency,
each region's mean spectrum, and per-epoch theta/delta and muscle traces.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import DataError
from pipeline.io.recording_info import RecordingInfo
from pipeline.io.tracking import read_head_speed
from pipeline.sleep.features import BANDS, EMG_BAND
from pipeline.channels import ROLES as DEFAULT_ROLES
from pipeline.spectral import LFP_EMG_BAND
from pipeline.sleep.hmm import STATES as SCORED_STATES
from pipeline.sleep.staging import UNCLASSIFIED, read_hypnogram

log = logging.getLogger(__name__)

# Every state a hypnogram can hold, in the order figures list them; unclassified epochs
# were not scored (a gap, or no usable signal).
STATES = (*SCORED_STATES, UNCLASSIFIED)
DISPLAY_FMAX_HZ = 30.0  # spectrograms show 0-30 Hz: delta, theta, spindles, beta
REGION_ORDER = ("cortex", "hippocampus", "thalamus")  # then any other region, by name
TINY = 1e-30


@dataclass
class Hypnogram:
    onsets_s: np.ndarray
    states: np.ndarray  # index into STATES per epoch (unclassified included)
    epoch_s: float

    def __len__(self) -> int:
        return len(self.states)

    @property
    def end_s(self) -> float:
        return float(self.onsets_s[-1] + self.epoch_s) if len(self) else 0.0

    def bouts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Runs of one state over consecutive epochs: (onset_s, duration_s, state index)."""
        if not len(self):
            return np.zeros(0), np.zeros(0), np.zeros(0, dtype=int)
        jump = np.abs(np.diff(self.onsets_s) - self.epoch_s) > 1e-6
        change = np.flatnonzero((np.diff(self.states) != 0) | jump) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [len(self)]])
        onsets = self.onsets_s[starts]
        durations = self.onsets_s[ends - 1] - onsets + self.epoch_s
        return onsets, durations, self.states[starts]

    def fraction(self, state: str) -> float:
        return float(np.mean(self.states == STATES.index(state))) if len(self) else 0.0


def load_hypnogram(path: str | Path, epoch_s: float) -> Hypnogram:
    onsets, names = read_hypnogram(path)
    unknown = sorted(set(names) - set(STATES))
    if unknown:
        raise DataError(f"{path} holds states this pipeline does not know ({', '.join(unknown)}); "
                        "score the recording again (tick rerun).")
    if not names:
        raise DataError(f"{path} holds no epochs; score the recording again (tick rerun).")
    code = {s: i for i, s in enumerate(STATES)}
    states = np.fromiter((code[n] for n in names), dtype=np.int8, count=len(names))
    order = np.argsort(onsets, kind="stable")
    return Hypnogram(onsets[order], states[order], float(epoch_s))


@dataclass
class Spectra:
    """The spectrograms of a recording, reduced to what the figures draw."""

    regions: list[str]  # brain regions (not emg), in display order
    onsets_s: np.ndarray
    valid: np.ndarray  # epochs not touching a recording gap
    display_freqs: np.ndarray
    display_power: dict[str, np.ndarray]  # region -> (epochs, display freqs), V^2/Hz, float32
    display_median: dict[str, np.ndarray]  # region -> median over valid epochs per display freq
    freqs: np.ndarray
    mean_spectrum: dict[str, np.ndarray]  # region (emg too) -> mean over valid epochs, V^2/Hz
    theta_delta: dict[str, np.ndarray]  # region -> log10(theta / delta) per epoch
    muscle: np.ndarray | None  # per epoch, in muscle_unit
    muscle_source: str = ""  # where the muscle estimate comes from, in words
    has_emg: bool = False
    muscle_unit: str = "dB re 1 V²"
    # The channel map's roles as the spectrogram stage resolved them: which region is the
    # EMG, which the theta source (pipeline.channels.resolve_roles).
    roles: dict = field(default_factory=lambda: dict(DEFAULT_ROLES))

    @property
    def epoch_s(self) -> float:
        return float(self.onsets_s[1] - self.onsets_s[0]) if len(self.onsets_s) > 1 else 0.0


def _band(freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (freqs >= lo) & (freqs < hi)


def _display_regions(regions, emg: str | None = "emg") -> list[str]:
    brain = [r for r in regions if r != emg]
    return [r for r in REGION_ORDER if r in brain] + sorted(r for r in brain if r not in REGION_ORDER)


def _muscle_band(freqs: np.ndarray, regions: list[str],
                 emg: str | None = "emg") -> tuple[str, tuple[float, float], str] | None:
    """Which region and band estimate muscle tone: the EMG (the region with the emg role),
    else a brain region's high band."""
    if emg in regions and _band(freqs, *EMG_BAND).any():
        return emg, EMG_BAND, f"EMG {EMG_BAND[0]:g}-{EMG_BAND[1]:g} Hz"
    hi = BANDS["high"]
    for r in _display_regions(regions, emg):
        if _band(freqs, *hi).any():
            return r, hi, f"{r} {hi[0]:g}-{hi[1]:g} Hz"
    return None


def _segment_order(paths: list[str | Path]) -> list[Path]:
    first = []
    for p in paths:
        try:
            with np.load(p) as z:
                onsets = z["onsets_s"]
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"{p} is not a readable spectrogram ({e}); compute it again (tick rerun).") from None
        first.append((float(onsets[0]) if len(onsets) else np.inf, Path(p)))
    return [p for _, p in sorted(first)]


def load_spectra(paths: list[str | Path], *, display_fmax: float = DISPLAY_FMAX_HZ) -> Spectra:
    """Read the spectrogram segments one at a time, keeping only what is drawn."""
    if not paths:
        raise DataError("no spectrogram segments were given; compute the spectrograms first.")
    ordered = _segment_order(paths)
    freqs = None
    regions: list[str] = []
    parts: list[dict] = []
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    roles = None
    for p in ordered:
        with np.load(p) as z:
            if roles is None and "roles" in z:
                roles = json.loads(str(z["roles"]))
            f, seg_regions = z["freqs"], [str(r) for r in z["regions"]]
            power, onsets, valid = z["power"], z["onsets_s"], z["valid"].astype(bool)
            lfp_emg = z["lfp_emg"].astype(np.float64) if "lfp_emg" in z else None
        if freqs is None:
            freqs = f
        elif len(f) != len(freqs) or not np.allclose(f, freqs):
            raise DataError(f"{p} has other frequencies than the other segments; compute the spectrograms "
                            "again (tick rerun).")
        regions += [r for r in seg_regions if r not in regions]
        parts.append(_reduce_segment(freqs, power, seg_regions, onsets, valid, display_fmax, sums, counts))
        parts[-1]["lfp_emg"] = lfp_emg
        del power
    return _join(freqs, regions, parts, sums, counts, display_fmax, roles or dict(DEFAULT_ROLES))


def _reduce_segment(freqs, power, regions, onsets, valid, display_fmax, sums, counts) -> dict:
    """One segment's share of the figures: display power, traces, spectrum sums."""
    disp = freqs <= display_fmax
    theta, delta = _band(freqs, *BANDS["theta"]), _band(freqs, *BANDS["delta"])
    part = {"onsets": onsets, "valid": valid, "display": {}, "theta_delta": {}, "band_power": {}}
    for i, r in enumerate(regions):
        p = power[i]
        part["display"][r] = np.ascontiguousarray(p[:, disp], dtype=np.float32)
        part["theta_delta"][r] = np.log10((p[:, theta].sum(axis=1) + TINY) / (p[:, delta].sum(axis=1) + TINY))
        good = p[valid].astype(np.float64)
        sums[r] = sums.get(r, 0.0) + good.sum(axis=0)
        counts[r] = counts.get(r, 0) + len(good)
        for name, (lo, hi) in (("emg", EMG_BAND), ("high", BANDS["high"])):
            sel = _band(freqs, lo, hi)
            if sel.any():
                df = freqs[1] - freqs[0]
                part["band_power"][(r, name)] = p[:, sel].sum(axis=1).astype(np.float64) * df
    return part


def _join(freqs, regions, parts, sums, counts, display_fmax, roles: dict) -> Spectra:
    disp = freqs <= display_fmax
    n = [len(p["onsets"]) for p in parts]

    def cat(get, width=None):
        out = []
        for p, k in zip(parts, n):
            v = get(p)
            out.append(v if v is not None else np.full((k, width) if width else k, np.nan, np.float32))
        return np.concatenate(out)

    emg = roles.get("emg")
    shown = _display_regions(regions, emg)
    valid = np.concatenate([p["valid"] for p in parts])
    display = {r: cat(lambda p: p["display"].get(r), int(disp.sum())) for r in shown}
    muscle = _muscle_band(freqs, regions, emg)
    muscle_db = None
    unit = "dB re 1 V²"
    if (muscle is None or muscle[0] != emg) and any(p.get("lfp_emg") is not None for p in parts):
        # No EMG channel: the scorer's own estimate of muscle tone from the LFP, not a
        # brain region's high-frequency power (which is mostly the brain's).
        muscle = ("lfp_emg", LFP_EMG_BAND, "EMG from the LFP")
        muscle_db = cat(lambda p: p.get("lfp_emg"))
        unit = f"{LFP_EMG_BAND[0]:g}-{LFP_EMG_BAND[1]:g} Hz correlation"
    elif muscle is not None:
        r, _, _ = muscle
        key = (r, "emg" if r == emg else "high")
        muscle_db = 10 * np.log10(cat(lambda p: p["band_power"].get(key)) + TINY)
    return Spectra(
        regions=shown,
        onsets_s=np.concatenate([p["onsets"] for p in parts]),
        valid=valid,
        display_freqs=freqs[disp],
        display_power=display,
        display_median={r: _median_rows(display[r], valid) for r in shown},
        freqs=freqs,
        mean_spectrum={r: sums[r] / counts[r] for r in regions if counts.get(r)},
        theta_delta={r: cat(lambda p: p["theta_delta"].get(r)) for r in shown},
        muscle=muscle_db,
        muscle_source=muscle[2] if muscle else "",
        has_emg=emg in regions,
        muscle_unit=unit,
        roles=roles,
    )


def _median_rows(power: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Median power per frequency over the valid epochs (all epochs if none is valid)."""
    rows = power[valid] if valid.any() else power
    med = np.nanmedian(rows, axis=0) if len(rows) else np.full(power.shape[1], np.nan)
    return np.where(np.isfinite(med), med, 1.0).astype(np.float64)


def load_lfp_qc(paths: list[str | Path]) -> list[dict]:
    """The convert stage's per-segment QC sidecars (lfp/seg*.json), in time order."""
    out = []
    for p in paths:
        try:
            with open(p, encoding="utf-8") as f:
                d = json.load(f)
            d["start_s"], d["duration_s"], d["channels"] = float(d["start_s"]), float(d["duration_s"]), d["channels"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{p} is not a readable QC sidecar ({e}); convert the recording again (tick rerun).") from None
        out.append(d)
    return sorted(out, key=lambda d: d["start_s"])


@dataclass
class RecordingData:
    """Everything the figures of one recording show."""

    info: RecordingInfo
    hypnogram: Hypnogram
    spectra: Spectra
    summary: dict
    lfp_qc: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what is missing or absent, in words
    head_speed: np.ndarray | None = None  # per epoch of `spectra` (NaN: unknown); None: no video tracking
    head_speed_unit: str = ""

    @property
    def duration_s(self) -> float:
        return max(self.info.duration_s, self.hypnogram.end_s)


def recording_notes(info: RecordingInfo, spectra: Spectra, hyp: Hypnogram) -> list[str]:
    """Sentences on what the figures cannot show and why (missing regions, no REM, gaps)."""
    notes = []
    mapped = [r for r in (info.channel_map or {}).get("regions", {}) if r != spectra.roles.get("emg")]
    for region in [r for r in mapped if r not in spectra.regions]:
        chans = [c for c in info.converted_channels if c.region == region]
        why = (f"all {len(chans)} of its channels were flagged ({', '.join(sorted({c.qc.flag for c in chans if c.qc}))})"
               if chans and all(c.bad for c in chans) else "none of its channels was recorded")
        notes.append(f"No {region} spectrogram: {why}.")
    theta = spectra.roles.get("theta")
    if theta not in spectra.regions and spectra.regions:
        notes.append(f"No {theta or 'theta region'}: theta/delta is drawn from {spectra.regions[0]}.")
    if not spectra.has_emg:
        notes.append(("No EMG channel: muscle tone is estimated from the LFP (correlation of "
                      f"{spectra.muscle_unit.removesuffix(' correlation')} activity between regions)."
                      if spectra.muscle_unit.endswith("correlation")
                      else f"No EMG channel: muscle tone is estimated from {spectra.muscle_source} power.")
                     if spectra.muscle is not None else "No EMG channel and no high-frequency power: no muscle trace.")
    sleep = hyp.fraction("nrem") + hyp.fraction("rem")
    if sleep == 0:
        notes.append("No sleep was scored in this recording (wake only).")
    elif hyp.fraction("rem") == 0:
        notes.append("No REM sleep was scored in this recording.")
    if info.gaps:
        total = sum(g.duration_s for g in info.gaps)
        notes.append(f"{len(info.gaps)} gap{'s' if len(info.gaps) > 1 else ''} in the recording "
                     f"({duration_words(total)} in all), hatched; its epochs are unclassified.")
    unclassified = hyp.fraction("unclassified")
    if unclassified > 0 and not info.gaps:
        notes.append(f"{100 * unclassified:.1f} % of epochs are unclassified (grey).")
    return notes


def duration_words(seconds: float) -> str:
    """A duration as people say it: 24 h 00 min, 3 min 20 s, 45 s."""
    seconds = round(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h} h {m:02d} min"
    if m:
        return f"{m} min {s:02d} s"
    return f"{s} s"


def head_speed_per_epoch(path: str | Path, onsets_s: np.ndarray) -> tuple[np.ndarray, str, list[str]]:
    """The tracking stage's head speed matched to the spectrogram epochs (NaN where it has
    none), its unit, and its notes as sentences."""
    hs = read_head_speed(path)
    by_onset = dict(zip(np.round(hs.onsets, 3), hs.speed))
    speed = np.array([by_onset.get(t, np.nan) for t in np.round(onsets_s, 3)], dtype=np.float64)
    notes = [f"Head speed: {n}." for n in hs.notes]
    if not np.isfinite(speed).any():
        notes.append("Head speed: the video tracking covers none of the recording.")
    return speed, hs.unit, notes


def load_recording(info: RecordingInfo, spectrograms: list[str | Path], hypnogram: str | Path,
                   summary: str | Path, lfp_qc: list[str | Path] = (),
                   head_speed: str | Path | None = None) -> RecordingData:
    try:
        with open(summary, encoding="utf-8") as f:
            summ = json.load(f)
        epoch_s = float(summ["epoch_s"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{summary} is not a readable sleep summary ({e}); score the recording again "
                        "(tick rerun).") from None
    hyp = load_hypnogram(hypnogram, epoch_s)
    spectra = load_spectra(spectrograms)
    data = RecordingData(info, hyp, spectra, summ, load_lfp_qc(lfp_qc))
    data.notes = recording_notes(info, spectra, hyp)
    if head_speed is not None:
        data.head_speed, data.head_speed_unit, notes = head_speed_per_epoch(head_speed, spectra.onsets_s)
        data.notes += notes
    return data
