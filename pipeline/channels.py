"""Channel maps: which channel belongs to which brain region, and which to ignore.

Channels are identified by name (as in the raw files), never by position. A map is a
config entry or a `channel_map.yaml` shipped inside a recording folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

# A recording folder's own channel map, which wins over the configured default.
CHANNEL_MAP_FILE = "channel_map.yaml"

_RANGE = re.compile(r"^([A-Za-z_]*?)(\d+)\s*-\s*([A-Za-z_]*?)(\d+)$")
_NUMBERED = re.compile(r"^(.*?)(\d+)$")


def natural_key(name: str) -> tuple:
    """Sort key that puts CSC2 before CSC10."""
    return tuple(int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name))


def expand_channels(spec: str | list[str]) -> list[str]:
    """`"CSC1-CSC3"` -> [CSC1, CSC2, CSC3]; a list expands each item."""
    items = [spec] if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for item in items:
        item = item.strip()
        m = _RANGE.match(item)
        if m:
            p1, a, p2, b = m.group(1), int(m.group(2)), m.group(3) or m.group(1), int(m.group(4))
            if p1 != p2 or b < a:
                raise ValueError(f"{item!r} is not a range like CSC1-CSC20")
            names.extend(f"{p1}{i}" for i in range(a, b + 1))
        elif item:
            names.append(item)
    return names


@dataclass(frozen=True)
class ChannelMap:
    regions: dict[str, tuple[str, ...]]
    ignore: frozenset[str]

    @classmethod
    def from_dict(cls, spec: dict) -> "ChannelMap":
        if not isinstance(spec, dict) or not isinstance(spec.get("regions"), dict) or not spec["regions"]:
            raise ValueError("a channel map needs a 'regions' mapping of region name to channels")
        regions = {str(r): tuple(expand_channels(ch)) for r, ch in spec["regions"].items()}
        seen: dict[str, str] = {}
        for region, chans in regions.items():
            for ch in chans:
                if ch in seen:
                    raise ValueError(f"channel {ch} is in both {seen[ch]} and {region}")
                seen[ch] = region
        return cls(regions, frozenset(expand_channels(spec.get("ignore", []) or [])))

    @classmethod
    def from_file(cls, path: str | Path) -> "ChannelMap":
        with open(path, encoding="utf-8") as f:
            try:
                return cls.from_dict(yaml.safe_load(f))
            except (ValueError, yaml.YAMLError) as e:
                raise ValueError(f"{path}: {e}") from None
            except (TypeError, AttributeError):  # e.g. `cortex: 5`: numbers, not channel names
                raise ValueError(f"{path}: channels must be names or ranges like CSC1-CSC20, "
                                 "as text or a list of text") from None

    def region_of(self, channel: str) -> str | None:
        for region, chans in self.regions.items():
            if channel in chans:
                return region
        return None

    def to_dict(self) -> dict:
        return {"regions": {r: list(c) for r, c in self.regions.items()}, "ignore": sorted(self.ignore, key=natural_key)}
