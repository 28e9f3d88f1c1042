"""Where the PI finds a recording's results: the interface every results store
implements, the typed result of a publish, the factory that picks a back-end from the
config, and the publish stage itself.

A store keeps one folder per animal and recording (`<animal>/<recording>/`); publishing
again replaces files of the same name, never adds copies.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from pipeline.config import backend_module
from pipeline.io.atomic import write_json_atomic

log = logging.getLogger(__name__)


@dataclass
class PublishResult:
    backend: str
    link: str  # what the sheet's results_link shows: where the PI clicks
    folder: str  # the recording's folder in the store's own terms (a path, a folder id)
    files: list[str] = field(default_factory=list)  # names of the published files
    published_at: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "PublishResult":
        return cls(**{k: d[k] for k in ("backend", "link", "folder", "files", "published_at") if k in d})


class ResultsStore(Protocol):
    def publish(self, animal: str, recording_id: str, files: list[Path]) -> PublishResult:
        """Copy `files` into the recording's folder, replacing files of the same name."""


# backend name -> module with `open_store(config: dict) -> ResultsStore`
BACKENDS = {"local": "pipeline.store.local_folder", "drive": "pipeline.store.drive"}


def make_store(config: dict) -> ResultsStore:
    return backend_module("store", config, BACKENDS).open_store(config)


def publish_recording(config: dict, animal: str, recording_id: str, files: list[str | Path],
                      marker: str | Path) -> PublishResult:
    """The publish stage: files -> the configured store; then `marker` (published.json)."""
    result = make_store(config).publish(animal, recording_id, [Path(f) for f in files])
    result.published_at = datetime.now().astimezone().isoformat(timespec="seconds")
    write_json_atomic(marker, result.to_json())
    log.info("published %d files to %s", len(result.files), result.link)
    return result


def read_published(marker: str | Path) -> PublishResult:
    with open(marker, encoding="utf-8") as f:
        return PublishResult.from_json(json.load(f))
