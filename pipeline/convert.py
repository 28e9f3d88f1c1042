"""Inspect and convert: raw vendor files -> recording.json -> LFP segments (.fif).

`inspect_recording` reads headers and a sample of the data once per recording and
writes recording.json (channels, regions, rate, start, gaps, segments, channel QC).
`convert_segment` decimates one time segment of every channel the channel map does not
ignore (in a region or not: the map only decides regions) to the LFP rate; segments are
independent jobs and join seamlessly (see pipeline.dsp.decimate).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from pipeline import __version__
from pipeline.channels import CHANNEL_MAP_FILE, ChannelMap, channel_list
from pipeline.dsp.channel_qc import channel_qc
from pipeline.dsp.decimate import Decimator, design_decimator
from pipeline.dsp.lfp_emg import estimate_rate, lfp_emg, usable_band
from pipeline.errors import DataError, RawDataError
from pipeline.io.atomic import atomic_path, write_json_atomic
from pipeline.io.lfp import make_info, write_lfp_segment
from pipeline.io.raw import open_recording
from pipeline.io.recording_info import ChannelInfo, ChannelQC, GapInfo, RecordingInfo, Segment
from pipeline.io.tracking import tracking_file_name
from pipeline.io.readahead import BlockReader
from pipeline.spectral import brain_region_channels

log = logging.getLogger(__name__)



def resolve_channel_map(raw_dir: str | Path, default: dict) -> tuple[ChannelMap, str]:
    """The recording's own channel_map.yaml if it has one, else `default` (channel_maps.default)."""
    own = Path(raw_dir) / CHANNEL_MAP_FILE
    if own.is_file():
        try:
            return ChannelMap.from_file(own), str(own)
        except ValueError as e:
            raise RawDataError(str(e)) from None
    return ChannelMap.from_dict(default), "config: channel_maps.default"


def channel_words(names: list[str]) -> str:
    """'Channel CSC7' or 'Channels CSC7, CSC8' (runs as ranges)."""
    return f"Channel{'s' if len(names) > 1 else ''} {channel_list(names)}"


def clock_text(seconds: float) -> str:
    """Seconds into the recording as h:mm:ss."""
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def ending_early_notes(early: dict[str, float], duration_s: float, regions: dict[str, str | None],
                       bad: set[str]) -> list[str]:
    """Sentences for channels whose samples end before the recording's (`early`: channel ->
    seconds), and for a region left with no good channel from some time on."""
    notes = []
    by_time: dict[float, list[str]] = {}
    for ch, t in early.items():
        by_time.setdefault(round(t, 1), []).append(ch)
    for t, chans in sorted(by_time.items()):
        one = len(chans) == 1
        notes.append(f"{channel_words(chans)} {'stops' if one else 'stop'} {clock_text(t)} into the recording, "
                     f"{clock_text(duration_s - t)} before its end; from there the rest was analysed without "
                     f"{'it' if one else 'them'}.")
    members: dict[str, list[str]] = {}
    for ch, r in regions.items():
        if r and ch not in bad:
            members.setdefault(r, []).append(ch)
    for r, chans in sorted(members.items()):
        if all(ch in early for ch in chans):
            t = max(early[ch] for ch in chans)
            notes.append(f"From {clock_text(t)} on, {r} has no channel left: the epochs from there are not "
                         "scored (unclassified).")
    return notes


def segment_count(n_samples: int, segment_samples: int) -> int:
    """Segments of a recording; a tail under a tenth of a segment joins the last one.

    Records end a recording at any sample, so a 24 h recording is rarely a whole number
    of hours: 24 h 30 s becomes 23 one-hour segments and one of 1 h 30 s, not a
    30-second job of its own.
    """
    full, tail = divmod(n_samples, segment_samples)
    if full == 0:
        return 1
    return full if tail < 0.1 * segment_samples else full + 1


def inspect_recording(raw_dir: str | Path, out_json: str | Path, *, lfp_rate: float, segment_s: float,
                      default_channel_map: dict, recording_id: str | None = None,
                      animal: str | None = None, data_roots: list[str] | None = None) -> RecordingInfo:
    """Describe a raw recording and write recording.json; raise RawDataError if unusable.

    `default_channel_map` (channel_maps.default) applies unless the folder has its own
    channel_map.yaml. `data_roots`: every file read must lie inside them, links followed
    (pipeline.io.raw.open_recording).
    """
    t_start = time.monotonic()
    rec = open_recording(raw_dir, data_roots=data_roots)
    cmap, cmap_source = resolve_channel_map(raw_dir, default_channel_map)
    lfp_rate = float(lfp_rate)
    try:
        decimator = design_decimator(rec.sampling_rate, lfp_rate)
    except ValueError as e:
        raise RawDataError(f"{raw_dir}: {e}") from None
    converted = [ch for ch in rec.channel_names if ch not in cmap.ignore]
    regions = {ch: cmap.region_of(ch) for ch in converted}
    unmapped = [ch for ch in converted if regions[ch] is None]
    notes = []
    if not any(r not in (None, "emg") for r in regions.values()):
        # Converted all the same (the LFP holds every channel); only the region averages need a map.
        notes.append(f"None of the channels ({rec.channel_names[0]} ...) is in a brain region of the channel map "
                     f"({cmap_source}): the LFP holds them, but spectrograms and sleep states need regions.")
        log.warning("%s", notes[-1])
    qc = channel_qc(rec, converted, {ch: regions[ch] or "unmapped" for ch in converted})
    recorded = set(rec.channel_names)
    missing = [ch for chans in cmap.regions.values() for ch in chans if ch not in recorded]
    if missing:
        which = "the configuration's default channel map" if cmap_source.startswith("config:") else \
            f"the folder's {CHANNEL_MAP_FILE}"
        one = len(missing) == 1
        notes.append(f"{channel_words(missing)}, named in {which}, {'is' if one else 'are'} missing from the raw "
                     f"folder; the rest was analysed without {'it' if one else 'them'}.")
        log.warning("%s", notes[-1])

    n_lfp = decimator.n_output(rec.n_samples)
    seg_len = int(round(float(segment_s) * lfp_rate))
    n_segments = segment_count(n_lfp, seg_len)
    rate = rec.sampling_rate
    gaps = [GapInfo(g.start / rate, g.length / rate,
                    "all" if len(g.channels) == len(rec.channel_names) else list(g.channels))
            for g in rec.gaps()]
    early = {ch: e / rate for ch, e in rec.channel_ends().items() if e < rec.n_samples}
    notes += ending_early_notes({ch: t for ch, t in early.items() if ch in converted}, rec.duration_s,
                                {ch: regions[ch] for ch in converted},
                                {ch for ch in converted if qc.get(ch, {}).get("flag", "ok") != "ok"})
    info = RecordingInfo(
        recording_id=recording_id,
        animal=animal,
        format=rec.format,
        raw_path=str(Path(raw_dir).resolve()),
        pipeline_version=__version__,
        inspected_at=datetime.now().astimezone().isoformat(timespec="seconds"),
        start_time=rec.start_time.isoformat(),
        first_timestamp_us=rec.t0_us,
        sampling_rate=rate,
        n_samples=rec.n_samples,
        duration_s=rec.duration_s,
        lfp_rate=lfp_rate,
        n_lfp_samples=n_lfp,
        # The filters themselves, so that every segment job uses exactly these taps.
        decimator=decimator.to_json(),
        segment_samples=seg_len,
        segments=[Segment(k, k * seg_len / lfp_rate,
                          ((n_lfp if k == n_segments - 1 else (k + 1) * seg_len) - k * seg_len) / lfp_rate)
                  for k in range(n_segments)],
        channel_map_source=cmap_source,
        channel_map=cmap.to_dict(),
        channels=[ChannelInfo(ch, regions.get(ch), ch in cmap.ignore, ChannelQC(**qc[ch]) if ch in qc else None)
                  for ch in rec.channel_names],
        unmapped_channels=unmapped,
        gaps=gaps,
        channels_ending_early=early,
        files=rec.describe_files(),
        notes=notes,
        missing_channels=missing,
        tracking_file=tracking_file_name(raw_dir),
    )
    if early:
        log.warning("channels ending before the others: %s",
                    ", ".join(f"{ch} at {t:.1f} s" for ch, t in early.items()))
    if gaps:
        log.warning("%d gap(s) in the recording, %.1f s in all", len(gaps), sum(g.duration_s for g in gaps))
    info.save(out_json)
    log.info("inspected %s: %d channels at %g Hz, %.1f s, %d segment(s), %d gap(s) in %.1f s",
             raw_dir, len(rec.channel_names), rate, rec.duration_s, n_segments, len(gaps),
             time.monotonic() - t_start)
    return info


# Channels of a region whose raw samples the kernel averages for the muscle tone made in
# conversion, spread over the region. Muscle activity reaches every channel alike, so a
# few carry it as well as all; summing all 20 of a region at 32 kHz made conversion
# 1.23x slower on 30 minutes (bench/convert.py), over the fifth it may cost.
EMG_CHANNELS_PER_REGION = 4


def spread(names: list[str], k: int) -> list[str]:
    """At most k of `names`, evenly spread from the first to the last."""
    if len(names) <= k:
        return list(names)
    return [names[round(i * (len(names) - 1) / (k - 1))] for i in range(k)]


class MuscleToneEstimate:
    """Muscle tone from the LFP (pipeline.dsp.lfp_emg) of one segment, made during its
    conversion when the LFP rate is too low for it: the brain regions' mean raw signal,
    summed by the decimation kernel while each channel's raw samples are in the cache,
    decimated to `rate` (a whole multiple `m` of the LFP rate, so that the spectrogram's
    epochs start on its samples).

    The region means take up to EMG_CHANNELS_PER_REGION good channels of the region
    (spread over it), also where a channel has no
    samples (a gap, or it ended early): there the reader's fill is a line, with nothing
    between 300 and 600 Hz, so it only scales the region's band power down, which the
    correlation of each epoch does not see.
    """

    def __init__(self, info: RecordingInfo, names: list[str], scale: np.ndarray, decimator: Decimator,
                 j0: int, n: int, epoch_s: float):
        self.rate = estimate_rate(info.sampling_rate, info.lfp_rate)
        self.regions = {r: spread(chans, EMG_CHANNELS_PER_REGION) for r, chans in brain_region_channels(info).items()}
        self.epoch_s, self.j0, self.n = epoch_s, j0, n
        self.why_not = None
        if self.rate is None:
            self.why_not = ("the LFP rate suffices (the spectrogram stage makes it)" if usable_band(info.lfp_rate)
                            else f"the raw rate ({info.sampling_rate:g} Hz) keeps too little of 300-600 Hz")
        elif len(self.regions) < 2:
            self.why_not = "it needs two brain regions with good channels"
        if self.why_not:
            return
        self.m = int(round(self.rate / info.lfp_rate))
        self.decimator = decimator
        self.to_rate = design_decimator(info.sampling_rate, self.rate)
        index = {name: i for i, name in enumerate(names)}
        group = np.full(len(names), -1, dtype=np.int64)
        weight = np.zeros(len(names), dtype=np.float32)
        for g, chans in enumerate(self.regions.values()):
            for ch in chans:
                group[index[ch]] = g
                weight[index[ch]] = scale[index[ch]] / len(chans)  # volts, averaged
        self.group, self.weight = group, weight
        self._scratch = np.empty(0, dtype=np.float32)
        # float32 as the kernel makes them: the estimate is filtered in float32 too
        self.signals = np.zeros((len(self.regions), n * self.m), dtype=np.float32)
        self._check_cover()

    def _check_cover(self) -> None:
        # The raw samples a block of LFP holds must hold those of the same stretch at
        # the estimate's rate: true when its filters are shorter (they are: a higher rate).
        for j in range(self.j0, self.j0 + min(self.n, 4096)):
            a, b = self.decimator.input_range(j, j + 1)
            ea, eb = self.to_rate.input_range(j * self.m, (j + 1) * self.m)
            if ea < a or eb > b:
                raise RuntimeError(f"internal error: the muscle tone's decimator ({self.to_rate.stages}) reaches "
                                   f"beyond the LFP's ({self.decimator.stages}); tell a maintainer")

    @property
    def wanted(self) -> bool:
        return self.why_not is None

    def means(self, n_x: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The kernel's `means` for a block of n_x raw samples: one buffer kept from block
        to block (the kernel zeroes the sums itself, without holding the GIL)."""
        from pipeline.dsp.fir_kernel import SLACK

        size = len(self.regions) * (n_x + SLACK)
        if self._scratch.size < size:
            self._scratch = np.empty(size, dtype=np.float32)
        sums = self._scratch[:size].reshape(len(self.regions), n_x + SLACK)
        return self.group, self.weight, sums

    def add(self, region_sums: np.ndarray, j_a: int, j_b: int) -> None:
        """The regions' raw sums of the block that made LFP samples [j_a, j_b) (recording
        indices) -> the estimate's samples of that stretch."""
        a = self.decimator.input_range(j_a, j_b)[0]
        m = self.m
        self.signals[:, (j_a - self.j0) * m:(j_b - self.j0) * m] = self.to_rate.decimate_held_rows(
            region_sums, a, j_a * m, j_b * m)

    def save(self, path: str | Path, lfp_rate: float) -> None:
        """Write the estimate per epoch (`lfp_emg`, `onsets_s` as the spectrogram's), or,
        when none was made, `why_not`."""
        if self.wanted:
            est = lfp_emg(list(self.signals), self.rate, self.epoch_s)
            extra = {"lfp_emg": est, "onsets_s": self.j0 / lfp_rate + self.epoch_s * np.arange(len(est)),
                     "rate": self.rate, "regions": np.array(list(self.regions))}
        else:
            extra = {"why_not": np.array(self.why_not)}
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, epoch_s=self.epoch_s, **extra)


def convert_segment(info: RecordingInfo, segment: int, out_fif: str | Path, *, qc_json: str | Path | None = None,
                    lfp_emg_npz: str | Path | None = None, epoch_s: float | None = None,
                    progress_every_s: float = 30.0, data_roots: list[str] | None = None) -> dict:
    """Decimate segment `segment` of the recording described by `info` into `out_fif`.

    Writes `out_fif` and the segment's QC sidecar `qc_json` (default: `out_fif` with
    .json; channel regions, per-channel LFP RMS), both atomically. Returns the sidecar's
    content. `data_roots`: as for `inspect_recording` (checked again: links may have
    changed since). With `lfp_emg_npz`, also writes there the muscle tone from the LFP
    per epoch of `epoch_s` (sleep.epoch_s), when the LFP rate is too low for the
    spectrogram stage to make it and the raw rate is not (MuscleToneEstimate).
    """
    t_start = time.monotonic()
    index = {f["file"]: f["index"] for f in info.files if "index" in f} or None  # Neuralynx's reading index
    rec = open_recording(info.raw_path, index=index, data_roots=data_roots)
    if rec.n_samples != info.n_samples or rec.channel_names != [c.name for c in info.channels]:
        raise RawDataError(
            f"{info.raw_path} changed since it was inspected (length or channels differ); "
            "inspect it again (delete recording.json or tick rerun)."
        )
    if not 0 <= segment < len(info.segments):
        raise DataError(f"segment {segment} does not exist: the recording has {len(info.segments)} segment(s).")
    chans = info.converted_channels
    names = [c.name for c in chans]
    types = ["emg" if c.region == "emg" else "seeg" for c in chans]
    bads = [c.name for c in chans if c.bad]
    decimator = Decimator.from_json(info.decimator)
    seg = info.segments[segment]
    lfp_rate = info.lfp_rate
    j0 = int(round(seg.start_s * lfp_rate))
    n = int(round(seg.duration_s * lfp_rate))
    meas_date = info.start_datetime
    sumsq = np.zeros(len(names))
    done = {"n": 0, "last": time.monotonic()}

    # Decimation is linear, so samples are filtered in ADC units and scaled to volts
    # afterwards, on 1/factor as many values.
    scale = rec.volts_per_bit(names).astype(np.float32)

    reader = BlockReader(rec, names)
    emg = None
    if lfp_emg_npz is not None:
        if epoch_s is None:
            raise ValueError("the muscle tone estimate needs epoch_s (sleep.epoch_s)")
        emg = MuscleToneEstimate(info, names, scale, decimator, j0, n, float(epoch_s))
        if not emg.wanted:
            log.info("segment %d: no muscle tone estimated during conversion: %s", segment, emg.why_not)

    def compute(a: int, b: int) -> np.ndarray:
        # MNE asks for consecutive blocks of one size: guess the next one and read it ahead.
        nxt0, nxt1 = j0 + b, min(j0 + n, j0 + b + (b - a))
        raw = reader.get(*decimator.input_range(j0 + a, j0 + b),
                         then=decimator.input_range(nxt0, nxt1) if nxt1 > nxt0 else None)
        if emg is not None and emg.wanted:
            in_a, in_b = decimator.input_range(j0 + a, j0 + b)
            lfp, sums = decimator.decimate_records(raw, j0 + a, j0 + b, scale, means=emg.means(in_b - in_a))
            emg.add(sums, j0 + a, j0 + b)
        else:
            lfp = decimator.decimate_records(raw, j0 + a, j0 + b, scale)
        sumsq[:] += np.einsum("ij,ij->i", lfp, lfp, dtype=np.float64)
        done["n"] += b - a
        now = time.monotonic()
        if now - done["last"] >= progress_every_s:
            done["last"] = now
            log.info("segment %d: %.0f%% converted", segment, 100 * done["n"] / n)
        return lfp

    seg_end_s = (j0 + n) / lfp_rate
    gaps_s, channel_gaps_s = [], []
    for g in info.gaps:
        g0, g1 = g.start_s, g.start_s + g.duration_s
        lo, hi = max(g0, seg.start_s), min(g1, seg_end_s)
        if hi <= lo:
            continue
        # A gap of some channels only (one that ended early, say) is flagged for those
        # channels: the others go on being analysed there. Ignored channels do not count.
        missing = names if g.channels == "all" else [ch for ch in names if ch in g.channels]
        if len(missing) == len(names):
            gaps_s.append((lo, hi - lo))
        elif missing:
            channel_gaps_s.append((lo, hi - lo, missing))
    info_mne = make_info(names, types, lfp_rate, meas_date, bads)
    try:
        write_lfp_segment(out_fif, info_mne, j0, n, compute, gaps_s=gaps_s, channel_gaps_s=channel_gaps_s)
    finally:
        reader.close()
    if emg is not None:
        emg.save(lfp_emg_npz, lfp_rate)
    elapsed = time.monotonic() - t_start
    sidecar = {
        "segment": segment,
        "start_s": seg.start_s,
        "duration_s": n / lfp_rate,
        "channels": [{"name": c.name, "region": c.region, "bad": c.bad,
                      "lfp_rms_uv": float(np.sqrt(sumsq[i] / max(n, 1)) * 1e6)} for i, c in enumerate(chans)],
        "gaps": [{"start_s": s, "duration_s": d} for s, d in gaps_s],
        "channel_gaps": [{"start_s": s, "duration_s": d, "channels": ch} for s, d, ch in channel_gaps_s],
        "seconds": elapsed,
        "x_realtime": (n / lfp_rate) / elapsed if elapsed > 0 else None,
    }
    write_json_atomic(qc_json if qc_json is not None else Path(out_fif).with_suffix(".json"), sidecar)
    log.info("segment %d: %.0f s of %d channels converted in %.1f s (%.0fx realtime)",
             segment, n / lfp_rate, len(names), elapsed, sidecar["x_realtime"] or 0)
    return sidecar
