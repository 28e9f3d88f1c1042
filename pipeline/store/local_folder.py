"""The local results store: a folder laid out as <root>/<animal>/<recording>/.

Publishing again replaces the files in place (each copied to a temporary name and
renamed), so the PI never sees a duplicate or a half-copied figure.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pipeline.io.atomic import atomic_path
from pipeline.store import PublishResult


def open_store(config: dict) -> "LocalFolderStore":
    return LocalFolderStore(config["store"]["path"])


class LocalFolderStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def folder(self, animal: str, recording_id: str) -> Path:
        return self.root / animal / recording_id

    def publish(self, animal: str, recording_id: str, files: list[Path]) -> PublishResult:
        return self._copy(self.folder(animal, recording_id), files)

    def publish_animal(self, animal: str, files: list[Path]) -> PublishResult:
        return self._copy(self.root / animal, files)

    def _copy(self, dest: Path, files: list[Path]) -> PublishResult:
        dest.mkdir(parents=True, exist_ok=True)
        published = []
        for src in files:
            with atomic_path(dest / src.name, suffix=src.suffix) as tmp:
                shutil.copyfile(src, tmp)
            published.append(src.name)
        return PublishResult(backend="local", link=dest.resolve().as_uri(), folder=str(dest), files=published)
