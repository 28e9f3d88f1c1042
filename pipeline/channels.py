"""Channel maps: which channel belongs to which brain region, and which to ignore.

Channels are identified by name (as in the raw files), never by position. A map is a
config entry or a `channel_map.yaml` shipped inside a recording folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
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


def channel_list(names: list[str]) -> str:
    """Channel names as a person reads them: `CSC7, CSC8`, runs of three or more as a
    range (`CSC33-CSC62`), in natural order."""
    parts: list[str] = []
    run: list[tuple[str, int, str]] = []

    def flush():
        if len(run) >= 3:
            parts.append(f"{run[0][2]}-{run[-1][2]}")
        else:
            parts.extend(name for _, _, name in run)
        run.clear()

    for name in sorted(names, key=natural_key):
        m = _NUMBERED.match(name)
        key = (m.group(1), int(m.group(2)), name) if m else None
        if key and run and key[0] == run[-1][0] and key[1] == run[-1][1] + 1:
            run.append(key)
            continue
        flush()
        if key:
            run.append(key)
        else:
            parts.append(name)
    flush()
    return ", ".join(parts)


# What a region is used for in sleep scoring, and the region names used when a map
# does not say. A role names a region of the map (matched ignoring case).
ROLES = {
    "slow_wave": "cortex",  # cortical delta (1-4 Hz) marks NREM
    "theta": "hippocampus",  # hippocampal theta (6-9 Hz) against delta marks REM
    "emg": "emg",  # neck muscle electrodes: muscle tone marks wake
}


def resolve_roles(roles: dict[str, str | None], regions: list[str]) -> dict[str, str | None]:
    """Each role's region among `regions` (ignoring case), or None where the map lacks it."""
    by_lower = {r.lower(): r for r in regions}
    return {role: (by_lower.get(str(name).lower()) if name else None) for role, name in roles.items()}


@dataclass(frozen=True)
class ChannelMap:
    regions: dict[str, tuple[str, ...]]
    ignore: frozenset[str]
    roles: dict[str, str | None] = field(default_factory=lambda: dict(ROLES))

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
        roles = dict(ROLES)
        given = spec.get("roles") or {}
        if not isinstance(given, dict):
            raise ValueError("'roles' must map a role (slow_wave, theta, emg) to a region name")
        for role, region in given.items():
            if role not in ROLES:
                raise ValueError(f"unknown role {role!r} under 'roles'; the roles are {', '.join(ROLES)}")
            if region is not None and str(region).lower() not in {r.lower() for r in regions}:
                raise ValueError(f"roles.{role} names the region {region!r}, which is not among the regions "
                                 f"({', '.join(regions)})")
            roles[role] = None if region is None else str(region)
        return cls(regions, frozenset(expand_channels(spec.get("ignore", []) or [])), roles)

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
        return {"regions": {r: list(c) for r, c in self.regions.items()}, "ignore": sorted(self.ignore, key=natural_key),
                "roles": resolve_roles(self.roles, list(self.regions))}
