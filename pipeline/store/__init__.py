"""Where the PI finds a recording's results: the interface every results store
implements, the typed result of a publish, the factory that picks a back-end from the
config, and the publish stage itself.

A store keeps one folder per animal (`<animal>/`, holding the animal's summary) and one
per recording inside it (`<animal>/<recording>/`). A recording is published all or
nothing: the new files take the place of the previous ones together, and a publish that
fails half-way leaves the previous publication as it was. A recording given another
animal leaves the old animal's folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterator, Protocol

from pipeline import layout
from pipeline.config import backend_module
from pipeline.io.atomic import write_json_atomic
from pipeline.io.registry import Registry

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
        """Make `files` the recording's folder, all or nothing: the pipeline's files of an
        earlier publish are replaced together (a person's own files stay), and a failure
        leaves the earlier publication intact."""

    def unpublish_elsewhere(self, animal: str, recording_id: str) -> list[str]:
        """Take the pipeline's files of `recording_id` out of the folders of animals other
        than `animal`; returns those animals."""

    def publish_animal(self, animal: str, files: list[Path]) -> PublishResult:
        """Copy `files` into the animal's own folder (beside its recordings' folders),
        replacing files of the same name."""


# backend name -> module with `open_store(config: dict) -> ResultsStore`
BACKENDS = {"local": "pipeline.store.local_folder", "drive": "pipeline.store.drive"}


def make_store(config: dict) -> ResultsStore:
    return backend_module("store", config, BACKENDS).open_store(config)


def publish_recording(config: dict, animal: str, recording_id: str, files: list[str | Path],
                      marker: str | Path) -> PublishResult:
    """The publish stage: files -> the configured store; the animal's summary, remade with
    this recording, -> the animal's folder; then `marker` (published.json)."""
    store = make_store(config)
    result = store.publish(animal, recording_id, [Path(f) for f in files])
    for other in store.unpublish_elsewhere(animal, recording_id):
        log.info("%s was published under animal %s before; taken out of its folder", recording_id, other)
        publish_animal_summary(config, store, other)  # now without this recording
    publish_animal_summary(config, store, animal, including=recording_id)
    result.published_at = datetime.now().astimezone().isoformat(timespec="seconds")
    write_json_atomic(marker, result.to_json())
    log.info("published %d files to %s", len(result.files), result.link)
    return result


def published_recordings(base: Path, animal: str, *, including: str | None = None) -> list[str]:
    """The registered recordings of `animal` that are published (and `including`, being published)."""
    recs = [r.recording_id for r in Registry(base / layout.STATE_DIR).read().values() if r.animal == animal]
    if including is not None and including not in recs:
        recs.append(including)
    return [r for r in recs if r == including or layout.RecordingPaths(r, base).published.exists()]


@contextlib.contextmanager
def _animal_lock(base: Path, animal: str) -> Iterator[None]:
    """One summary of an animal at a time: two of its recordings published side by side
    take turns, and the later one sees the earlier one's results."""
    path = base / layout.ANIMAL_LOCK.format(animal=animal)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def publish_animal_summary(config: dict, store: ResultsStore, animal: str, *,
                           including: str | None = None) -> PublishResult | None:
    """Remake the animal's summary from its published recordings and publish it into the
    animal's folder; None when none of them has readable results."""
    from pipeline.figures.animal import write_animal_summary
    from pipeline.figures.clock import light_schedule

    base = Path(config["base_dir"])
    figures = config["figures"]
    with _animal_lock(base, animal):
        recs = published_recordings(base, animal, including=including)
        outputs = {name: layout.animal_output(name, animal, base) for name in layout.ANIMAL_OUTPUTS}
        files = write_animal_summary(animal, [layout.RecordingPaths(r, base) for r in recs], outputs,
                                     schedule=light_schedule(figures["lights_on"], figures["lights_off"]))
        if not files:
            return None
        result = store.publish_animal(animal, files)
    log.info("animal summary of %s (%d recordings) published to %s", animal, len(recs), result.link)
    return result


def read_published(marker: str | Path) -> PublishResult:
    with open(marker, encoding="utf-8") as f:
        return PublishResult.from_json(json.load(f))
