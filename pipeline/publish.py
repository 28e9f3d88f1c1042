"""Publish stage: figures, report and hypnogram of a recording -> the results store."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from pipeline.io.atomic import write_json_atomic
from pipeline.store.local_folder import LocalFolderStore

log = logging.getLogger(__name__)


def make_store(config: dict):
    backend = config["store"]["backend"]
    if backend == "local":
        return LocalFolderStore(config["store"]["path"])
    raise ValueError(f"unknown results store {backend!r}")


def publish_recording(config: dict, animal: str, recording_id: str, files: list[str | Path], marker: str | Path) -> dict:
    store = make_store(config)
    result = store.publish(animal, recording_id, [Path(f) for f in files])
    result["published_at"] = datetime.now().astimezone().isoformat(timespec="seconds")
    write_json_atomic(marker, result)
    log.info("published %d files to %s", len(result["files"]), result["link"])
    return result
