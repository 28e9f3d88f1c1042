"""Inspect and convert: raw vendor files -> recording.json -> LFP segments (.fif).

`inspect_recording` reads headers and a sample of the data once per recording and
writes recording.json (channels, regions, rate, start, gaps, segments, channel QC).
`convert_segment` decimates one time segment of every channel the channel map does not
ignore (in a region or not: the map only decides regions) to the LFP rate; segments are
independent jobs and join seamlessly (see pipeline.dsp.decimate).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from pipeline import __version__
from pipeline.channels import ChannelMap
from pipeline.dsp.decimate import Decimator, design_decimator
from pipeline.errors import RawDataError
from pipeline.io.atomic import write_json_atomic
from pipeline.io.lfp import make_info, write_lfp_segment
from pipeline.io.raw import open_recording
from pipeline.io.readahead import BlockReader

log = logging.getLogger(__name__)

CHANNEL_MAP_FILE = "channel_map.yaml"
QC_WINDOWS = 8
QC_WINDOW_S = 10.0


def resolve_channel_map(raw_dir: str | Path, config: dict) -> tuple[ChannelMap, str]:
    """The recording's own channel_map.yaml if it has one, else the configured default."""
    own = Path(raw_dir) / CHANNEL_MAP_FILE
    if own.is_file():
        try:
            return ChannelMap.from_file(own), str(own)
        except ValueError as e:
            raise RawDataError(str(e)) from None
    return ChannelMap.from_dict(config["channel_maps"]["default"]), "config: channel_maps.default"


def _line_noise_ratio(x: np.ndarray, rate: float) -> np.ndarray:
    """Power at 50 or 60 Hz (whichever is larger) over the median power 40-80 Hz."""
    n = x.shape[-1]
    spec = np.abs(np.fft.rfft(x * np.hanning(n), axis=-1)) ** 2
    freqs = np.fft.rfftfreq(n, 1 / rate)
    band = (freqs >= 40) & (freqs <= 80)
    ref = np.median(spec[:, band], axis=-1) + 1e-30
    peak = np.max([spec[:, np.abs(freqs - f0) <= 0.5].max(axis=-1) for f0 in (50.0, 60.0)], axis=0)
    return peak / ref


def channel_qc(recording, channels: list[str], regions: dict[str, str | None]) -> dict[str, dict]:
    """Per-channel QC on windows spread over the whole recording.

    A channel is `dead` when its RMS is under a tenth of its region's median (or it is
    flat), `noisy` when over five times the median or saturated; both are left out of
    region averages. `regions` gives every channel a group to be compared with (the
    caller puts channels in no region into one group of their own).
    """
    rate = recording.sampling_rate
    n_win = int(min(QC_WINDOW_S * rate, recording.n_samples))
    starts = np.linspace(0, recording.n_samples - n_win, QC_WINDOWS).astype(np.int64)
    starts = np.unique(starts)
    full_scale = 32767 * np.abs(recording.volts_per_bit(channels))  # int16 samples
    stats = {ch: {"rms": [], "flat": [], "sat": [], "line": []} for ch in channels}
    for s in starts:
        stored = recording.read(int(s), int(s) + n_win, channels)
        block = stored - stored.mean(axis=1, keepdims=True)
        line = _line_noise_ratio(block, rate)
        for i, ch in enumerate(channels):
            x = block[i]
            stats[ch]["rms"].append(float(np.sqrt(np.mean(x * x))))
            stats[ch]["flat"].append(float(np.mean(np.diff(x) == 0)))
            stats[ch]["sat"].append(float(np.mean(np.abs(stored[i]) >= 0.999 * full_scale[i])))
            stats[ch]["line"].append(float(line[i]))
    qc = {}
    for ch in channels:
        s = stats[ch]
        qc[ch] = {
            "rms_uv": float(np.median(s["rms"]) * 1e6),
            "flat_fraction": float(np.mean(s["flat"])),
            "saturated_fraction": float(np.mean(s["sat"])),
            "line_noise_ratio": float(np.median(s["line"])),
            "flag": "ok",
        }
    for region in set(regions.values()):
        members = [ch for ch in channels if regions[ch] == region]
        med = np.median([qc[ch]["rms_uv"] for ch in members])
        for ch in members:
            q = qc[ch]
            if q["flat_fraction"] > 0.5 or q["rms_uv"] < 0.1 * med:
                q["flag"] = "dead"
            elif q["saturated_fraction"] > 0.01 or (len(members) > 2 and q["rms_uv"] > 5 * med):
                q["flag"] = "noisy"
    return qc


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


def inspect_recording(raw_dir: str | Path, out_json: str | Path, config: dict, *,
                      recording_id: str | None = None, animal: str | None = None) -> dict:
    """Describe a raw recording and write recording.json; raise RawDataError if unusable."""
    t_start = time.monotonic()
    rec = open_recording(raw_dir)
    cmap, cmap_source = resolve_channel_map(raw_dir, config)
    lfp_rate = float(config["lfp"]["rate"])
    try:
        decimator = design_decimator(rec.sampling_rate, lfp_rate)
    except ValueError as e:
        raise RawDataError(f"{raw_dir}: {e}") from None
    analysed = [ch for ch in rec.channel_names if ch not in cmap.ignore]
    regions = {ch: cmap.region_of(ch) for ch in analysed}
    unmapped = [ch for ch in analysed if regions[ch] is None]
    if not any(r not in (None, "emg") for r in regions.values()):
        # Converted all the same (the LFP holds every channel); only the region averages need a map.
        log.warning("none of the channels (%s ...) is in a brain region of the channel map (%s): "
                    "the LFP will hold them, but spectrograms and sleep states need regions",
                    rec.channel_names[0], cmap_source)
    qc = channel_qc(rec, analysed, {ch: regions[ch] or "unmapped" for ch in analysed})

    n_lfp = decimator.n_output(rec.n_samples)
    seg_len = int(round(config["lfp"]["segment_s"] * lfp_rate))
    n_segments = segment_count(n_lfp, seg_len)
    rate = rec.sampling_rate
    ends = rec.channel_ends()
    gaps = [
        {"start_s": g.start / rate, "duration_s": g.length / rate,
         "channels": "all" if len(g.channels) == len(rec.channel_names) else list(g.channels)}
        for g in rec.gaps()
    ]
    early = {ch: e / rate for ch, e in ends.items() if e < rec.n_samples}
    info = {
        "recording_id": recording_id,
        "animal": animal,
        "format": rec.format,
        "raw_path": str(Path(raw_dir).resolve()),
        "pipeline_version": __version__,
        "inspected_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "start_time": rec.start_time.isoformat(),
        "first_timestamp_us": rec.t0_us,
        "sampling_rate": rate,
        "n_samples": rec.n_samples,
        "duration_s": rec.duration_s,
        "lfp_rate": lfp_rate,
        "n_lfp_samples": n_lfp,
        # The filters themselves, so that every segment job uses exactly these taps.
        "decimator": decimator.to_json(),
        "segment_samples": seg_len,
        "segments": [
            {"index": k, "start_s": k * seg_len / lfp_rate,
             "duration_s": ((n_lfp if k == n_segments - 1 else (k + 1) * seg_len) - k * seg_len) / lfp_rate}
            for k in range(n_segments)
        ],
        "channel_map_source": cmap_source,
        "channel_map": cmap.to_dict(),
        "channels": [
            {"name": ch, "region": regions.get(ch), "ignored": ch in cmap.ignore,
             **({"qc": qc[ch]} if ch in qc else {})}
            for ch in rec.channel_names
        ],
        "unmapped_channels": unmapped,
        "gaps": gaps,
        "channels_ending_early": early,
        "files": rec.describe_files(),
    }
    if early:
        log.warning("channels ending before the others: %s",
                    ", ".join(f"{ch} at {t:.1f} s" for ch, t in early.items()))
    if gaps:
        log.warning("%d gap(s) in the recording, %.1f s in all", len(gaps), sum(g["duration_s"] for g in gaps))
    write_json_atomic(out_json, info)
    log.info("inspected %s: %d channels at %g Hz, %.1f s, %d segment(s), %d gap(s) in %.1f s",
             raw_dir, len(rec.channel_names), rate, rec.duration_s, n_segments, len(gaps),
             time.monotonic() - t_start)
    return info


def analysed_channels(info: dict) -> list[dict]:
    return [c for c in info["channels"] if not c["ignored"]]


def convert_segment(info: dict, segment: int, out_fif: str | Path, *, qc_json: str | Path | None = None,
                    progress_every_s: float = 30.0) -> dict:
    """Decimate segment `segment` of the recording described by `info` into `out_fif`.

    Writes `out_fif` and the segment's QC sidecar `qc_json` (default: `out_fif` with
    .json; channel regions, per-channel LFP RMS), both atomically. Returns the sidecar's
    content.
    """
    t_start = time.monotonic()
    # recording.json written before the reading index existed: scan the files instead.
    has_index = all("index" in f for f in info["files"])
    rec = open_recording(info["raw_path"], index={f["file"]: f["index"] for f in info["files"]} if has_index else None)
    if rec.n_samples != info["n_samples"] or rec.channel_names != [c["name"] for c in info["channels"]]:
        raise RawDataError(
            f"{info['raw_path']} changed since it was inspected (length or channels differ); "
            "inspect it again (delete recording.json or tick rerun)."
        )
    chans = analysed_channels(info)
    names = [c["name"] for c in chans]
    types = ["emg" if c["region"] == "emg" else "seeg" for c in chans]
    bads = [c["name"] for c in chans if c.get("qc", {}).get("flag", "ok") != "ok"]
    if "decimator" in info:
        decimator = Decimator.from_json(info["decimator"])
    else:  # recording.json from before the taps were kept there
        decimator = design_decimator(float(info["sampling_rate"]), float(info["lfp_rate"]))
    seg = info["segments"][segment]
    lfp_rate = info["lfp_rate"]
    j0 = int(round(seg["start_s"] * lfp_rate))
    n = int(round(seg["duration_s"] * lfp_rate))
    meas_date = datetime.fromisoformat(info["start_time"])
    sumsq = np.zeros(len(names))
    done = {"n": 0, "last": time.monotonic()}

    # Decimation is linear, so samples are filtered in ADC units and scaled to volts
    # afterwards, on 1/factor as many values.
    scale = rec.volts_per_bit(names).astype(np.float32)

    reader = BlockReader(rec, names)

    def compute(a: int, b: int) -> np.ndarray:
        # MNE asks for consecutive blocks of one size: guess the next one and read it ahead.
        nxt0, nxt1 = j0 + b, min(j0 + n, j0 + b + (b - a))
        raw = reader.get(*decimator.input_range(j0 + a, j0 + b),
                         then=decimator.input_range(nxt0, nxt1) if nxt1 > nxt0 else None)
        lfp = decimator.decimate_records(raw, j0 + a, j0 + b, scale)
        sumsq[:] += np.einsum("ij,ij->i", lfp, lfp, dtype=np.float64)
        done["n"] += b - a
        now = time.monotonic()
        if now - done["last"] >= progress_every_s:
            done["last"] = now
            log.info("segment %d: %.0f%% converted", segment, 100 * done["n"] / n)
        return lfp

    seg_end_s = (j0 + n) / lfp_rate
    gaps_s = []
    for g in info["gaps"]:
        g0, g1 = g["start_s"], g["start_s"] + g["duration_s"]
        lo, hi = max(g0, seg["start_s"]), min(g1, seg_end_s)
        if hi > lo:
            gaps_s.append((lo, hi - lo))
    info_mne = make_info(names, types, lfp_rate, meas_date, bads)
    try:
        write_lfp_segment(out_fif, info_mne, j0, n, compute, gaps_s=gaps_s)
    finally:
        reader.close()
    elapsed = time.monotonic() - t_start
    sidecar = {
        "segment": segment,
        "start_s": seg["start_s"],
        "duration_s": n / lfp_rate,
        "channels": [{"name": c["name"], "region": c["region"], "bad": c["name"] in bads,
                      "lfp_rms_uv": float(np.sqrt(sumsq[i] / max(n, 1)) * 1e6)} for i, c in enumerate(chans)],
        "gaps": [{"start_s": s, "duration_s": d} for s, d in gaps_s],
        "seconds": elapsed,
        "x_realtime": (n / lfp_rate) / elapsed if elapsed > 0 else None,
    }
    write_json_atomic(qc_json if qc_json is not None else Path(out_fif).with_suffix(".json"), sidecar)
    log.info("segment %d: %.0f s of %d channels converted in %.1f s (%.0fx realtime)",
             segment, n / lfp_rate, len(names), elapsed, sidecar["x_realtime"] or 0)
    return sidecar


def load_info(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
