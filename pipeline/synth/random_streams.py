"""The independent random streams of a seed, one per part of the recording.

Separate streams keep e.g. the hypnogram independent of the channel count and rate: each
part draws from its own stream, so changing how much another part draws changes nothing else.
"""

from __future__ import annotations

import numpy as np

# A stream is the SeedSequence child at its position here: appending a purpose keeps
# every existing recording, reordering changes them all.
_PURPOSES = (
    "states",  # the hypnogram
    "events",  # spindles, ripples, movements, twitches
    "animal",  # region gains, noise levels, dead and noisy channel, mixing
    "source_noise",  # the low-rate noise driving the band sources
    "full_rate_noise",  # the amplifier noise bank and where each chunk reads it
    "file_uuids",  # the .ncs headers' session and file UUIDs
    "epoch_variation",  # epoch-to-epoch variation of band amplitudes
    "heartbeat",  # heart rate and beat times seen in the EMG
)


def random_stream(seed: int, purpose: str) -> np.random.Generator:
    """A generator for one purpose of a seed, the same on every call."""
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(len(_PURPOSES))[_PURPOSES.index(purpose)])
