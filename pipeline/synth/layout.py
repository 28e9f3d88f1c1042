"""Where the synthetic implant's channels are: CSC1..CSCn assigned to brain regions.

The layout is written into the recording as channel_map.yaml, which the converter reads
in place of the configured default map.
"""

from __future__ import annotations

import yaml

REGIONS = ("cortex", "hippocampus", "thalamus", "emg")
LFP_REGIONS = ("cortex", "hippocampus", "thalamus")


def channel_names(n_channels: int) -> list[str]:
    """CSC1..CSCn, as Cheetah names the continuously sampled channels."""
    return [f"CSC{i}" for i in range(1, n_channels + 1)]


def default_layout(n_channels: int) -> dict:
    """{'regions': {'cortex': [...], 'hippocampus': [...], 'thalamus': [...], 'emg': [...]}, 'ignore': [...]}

    Channel names CSC1..CSCn. For 64: cortex CSC1-CSC20, hippocampus CSC21-CSC40, thalamus
    CSC41-CSC60, emg CSC61-CSC62, ignore CSC63-CSC64 (unconnected). For other n (minimum 5):
    emg = last 2 of the used ones (1 if n < 8), ignore = 2 last channels only if n >= 16 else
    none, the rest split as evenly as possible in the order cortex, hippocampus, thalamus
    (each at least 1).
    """
    n = int(n_channels)
    if n < 5:
        raise ValueError(
            f"n_channels={n_channels}: a synthetic recording needs at least 5 channels "
            "(one each for cortex, hippocampus, thalamus and EMG, plus one more)."
        )
    names = channel_names(n)
    n_ignore = 2 if n >= 16 else 0
    n_emg = 2 if n >= 8 else 1
    n_used = n - n_ignore
    n_lfp = n_used - n_emg
    sizes = [n_lfp // 3 + (1 if k < n_lfp % 3 else 0) for k in range(3)]
    regions: dict[str, list[str]] = {}
    start = 0
    for region, size in zip(LFP_REGIONS, sizes):
        regions[region] = names[start : start + size]
        start += size
    regions["emg"] = names[n_lfp:n_used]
    return {"regions": regions, "ignore": names[n_used:]}


def channel_map_yaml(layout: dict) -> str:
    """The layout as channel_map.yaml, each region's channels on one line."""
    return yaml.safe_dump(layout, sort_keys=False, default_flow_style=None, width=1000)
