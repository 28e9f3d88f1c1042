"""Writes the .ncs files of a synthetic recording exactly as Cheetah/Pegasus would.

Each file gets a Cheetah header, then 512-sample int16 records. The low-rate signal is
brought to the full rate channel by channel by linear interpolation, and white amplifier
noise is added from a bank drawn once: far cheaper than generating every full-rate sample,
and memory depends on the chunk, never on the duration.
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline.io.ncs import NCS_RECORD_DTYPE, SAMPLES_PER_RECORD, format_ncs_header
from pipeline.synth.random_streams import random_stream
from pipeline.synth.signals import _WARMUP_S, _LowRateSignal

INPUT_RANGE_UV = 3000
AD_MAX = 32767
AD_BIT_VOLTS = INPUT_RANGE_UV * 1e-6 / AD_MAX

_CHUNK_S = 8.0  # target chunk length; memory is proportional to it
_BANK_SIZE = 1 << 22  # pre-drawn full-rate noise samples (16 MB of float32)


def _format_rate(fs: float) -> str:
    return str(int(fs)) if float(fs).is_integer() else repr(float(fs))


def _header_fields(i: int, fs: float, start: datetime, end: datetime, file_uuid: str, session_uuid: str) -> dict:
    """Header keys in the order Cheetah/Pegasus write them (see the real LAHCu1.ncs)."""
    folder = start.strftime("%Y-%m-%d_%H-%M-%S")
    return {
        "FileType": "NCS",
        "FileVersion": "3.4",
        "FileUUID": file_uuid,
        "SessionUUID": session_uuid,
        "ProbeName": "",
        "OriginalFileName": f'"C:\\CheetahData\\{folder}\\CSC{i}.ncs"',
        "TimeCreated": start.strftime("%Y/%m/%d %H:%M:%S"),
        "TimeClosed": end.strftime("%Y/%m/%d %H:%M:%S"),
        "RecordSize": NCS_RECORD_DTYPE.itemsize,
        "ApplicationName": 'Cheetah "6.4.2 "',
        "AcquisitionSystem": "AcqSystem1 DigitalLynxSX",
        "ReferenceChannel": '"Source 01 Reference 1"',
        "SamplingFrequency": _format_rate(fs),
        "ADMaxValue": AD_MAX,
        "ADBitVolts": f"{AD_BIT_VOLTS:.24f}",  # as many digits as Cheetah writes; round-trips exactly
        "AcqEntName": f"CSC{i}",
        "NumADChannels": 1,
        "ADChannel": i - 1,
        "InputRange": INPUT_RANGE_UV,
        "InputInverted": True,
        "DSPLowCutFilterEnabled": True,
        "DspLowCutFrequency": 0.1,
        "DspLowCutNumTaps": 0,
        "DspLowCutFilterType": "DCO",
        "DSPHighCutFilterEnabled": True,
        "DspHighCutFrequency": min(8000, int(round(0.45 * fs))),
        "DspHighCutNumTaps": 256,
        "DspHighCutFilterType": "FIR",
        "DspDelayCompensation": "Enabled",
        "DspFilterDelay_µs": int(round(127.5 / fs * 1e6)),  # half the 256-tap FIR
    }


class _ChannelWriter:
    """Brings channels from the low rate to int16 records and appends them to their files.

    One instance per worker thread: it owns its scratch buffers, so workers share nothing
    writable. numpy releases the GIL in the large array operations and in file writes.
    """

    def __init__(self, chunk_samples: int, R: int, records_per_chunk: int):
        self.R = R
        self.y = np.empty(chunk_samples, dtype=np.float32)
        self.tmp = np.empty(chunk_samples, dtype=np.float32)
        self.ends = np.empty((chunk_samples // R + 1, 2), dtype=np.float32)
        self.recs = np.zeros(records_per_chunk, dtype=NCS_RECORD_DTYPE)
        w = np.arange(R, dtype=np.float32) / np.float32(R)
        self.weights = np.stack([1 - w, w])  # (2, R): linear interpolation as a tiny matrix product

    def write(self, channels, arr, n_samples, timestamps, keep, files, bank, offsets, noise_scale, bound, fs_int):
        n_rec = n_samples // SAMPLES_PER_RECORD
        recs = self.recs[:n_rec]
        recs["timestamp"] = timestamps
        recs["sampling_rate"] = fs_int
        recs["n_valid"] = SAMPLES_PER_RECORD
        n_low = arr.shape[1] - 1
        y2 = self.y[: n_low * self.R].reshape(n_low, self.R)
        ends = self.ends[:n_low]
        y = self.y[:n_samples]
        tmp = self.tmp[:n_samples]
        for c in channels:
            # Sample m lies between low-rate samples m//R and m//R+1; (n_low, 2) @ (2, R) fills
            # all of them at once, several times faster than broadcasting over a short axis.
            ends[:, 0] = arr[c, :-1]
            ends[:, 1] = arr[c, 1:]
            np.matmul(ends, self.weights, out=y2)
            if noise_scale[c] > 0:
                np.multiply(bank[offsets[c] : offsets[c] + n_samples], noise_scale[c], out=tmp)
                y += tmp
            np.rint(y, out=y)
            if bound[c] > AD_MAX:  # only a channel that can exceed the input range needs clipping
                np.clip(y, -AD_MAX - 1, AD_MAX, out=y)
            recs["channel"] = c
            recs["samples"] = y.reshape(n_rec, SAMPLES_PER_RECORD)
            out = recs if keep is None else recs[keep]
            files[c].write(out.view(np.uint8))




def write_ncs_files(
    paths: list[Path],
    gen: _LowRateSignal,
    *,
    seed: int,
    fs: float,
    R: int,
    n_records: int,
    start: datetime,
    drop: tuple[int, int] | None,
    progress: Callable[[float, float], None] | None,
) -> None:
    """Write channel i of `gen` into paths[i]: its header, then its records.

    `gen` runs at fs / R. Records k0 <= k < k1 of drop=(k0, k1) are left out on every
    channel (the timestamps jump). `start` (timezone-aware) is the time of record 0.
    progress(done_s, total_s) is called after every chunk.
    """
    n_channels = len(paths)
    total_s = n_records * SAMPLES_PER_RECORD / fs
    t0_us = (start - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)
    end_time = start + timedelta(seconds=total_s)
    fs_int = int(round(fs))
    # Chunks are a whole number of records and of low-rate samples.
    rec_step = R // math.gcd(SAMPLES_PER_RECORD, R)
    recs_per_chunk = rec_step * max(1, int(round(_CHUNK_S * fs / SAMPLES_PER_RECORD / rec_step)))
    chunk_samples = recs_per_chunk * SAMPLES_PER_RECORD

    hrng = random_stream(seed, "full_rate_noise")
    bank_size = max(_BANK_SIZE, 2 * chunk_samples)
    bank = hrng.standard_normal(bank_size, dtype=np.float32)
    bank_absmax = float(np.abs(bank).max())
    noise_scale = (gen.hr_noise_uv * 1e-6 / AD_BIT_VOLTS).astype(np.float32)
    urng = random_stream(seed, "file_uuids")
    session_uuid = str(uuid.UUID(bytes=urng.bytes(16), version=4))
    file_uuids = [str(uuid.UUID(bytes=urng.bytes(16), version=4)) for _ in paths]

    n_threads = max(1, min(2, os.cpu_count() or 1))
    with contextlib.ExitStack() as open_files:
        files = []
        for i, path in enumerate(paths, start=1):
            f = open_files.enter_context(open(path, "wb"))
            files.append(f)
            f.write(format_ncs_header(_header_fields(i, fs, start, end_time, file_uuids[i - 1], session_uuid)))
        writers = [_ChannelWriter(chunk_samples, R, recs_per_chunk) for _ in range(n_threads)]
        groups = [list(range(w, n_channels, n_threads)) for w in range(n_threads)]
        scale = np.float32(-1.0 / AD_BIT_VOLTS)  # InputInverted: the file holds the negated signal

        # Warm the low-rate filters up before t=0; keep the t=0 sample as the first "previous".
        n_warm = int(round(_WARMUP_S * gen.low_fs))
        prev = (gen.block(-n_warm + 1, n_warm)[:, -1] * scale).astype(np.float32)
        j_next = 1
        chunks = [(k, min(recs_per_chunk, n_records - k)) for k in range(0, n_records, recs_per_chunk)]

        def low_block(n_rec):
            nonlocal j_next
            n_low = -(-n_rec * SAMPLES_PER_RECORD // R)  # the last chunk may end between low-rate samples
            x = gen.block(j_next, n_low)
            j_next += n_low
            return x

        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            x = low_block(chunks[0][1])
            for ci, (k_start, n_rec) in enumerate(chunks):
                n_samp = n_rec * SAMPLES_PER_RECORD
                arr = np.empty((n_channels, x.shape[1] + 1), dtype=np.float32)
                arr[:, 0] = prev
                np.multiply(x, scale, out=arr[:, 1:], casting="same_kind")
                prev = arr[:, -1].copy()
                offsets = hrng.integers(0, bank_size - n_samp, size=n_channels)
                bound = np.abs(arr).max(axis=1) + bank_absmax * noise_scale
                k = np.arange(k_start, k_start + n_rec, dtype=np.int64)
                timestamps = t0_us + np.rint(k * (SAMPLES_PER_RECORD * 1e6 / fs)).astype(np.int64)
                keep = None
                if drop is not None and k_start < drop[1] and k_start + n_rec > drop[0]:
                    keep = (k < drop[0]) | (k >= drop[1])
                futures = [
                    pool.submit(w.write, g, arr, n_samp, timestamps, keep, files, bank, offsets, noise_scale, bound, fs_int)
                    for w, g in zip(writers, groups)
                ]
                # The next block's low-rate signal is computed while the workers write this one.
                if ci + 1 < len(chunks):
                    x = low_block(chunks[ci + 1][1])
                for fut in futures:
                    fut.result()
                if progress is not None:
                    progress(min((k_start + n_rec) * SAMPLES_PER_RECORD / fs, total_s), total_s)
