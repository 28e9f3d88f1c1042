"""The local results store: a folder laid out as <root>/<animal>/<recording>/.

A recording's folder is published all or nothing: its files are copied into a new
folder beside it, which then takes its place by renaming, so the PI sees either the
previous complete results or the new ones, never a mixture; a copy that fails half-way
leaves the previous folder as it was. Files a person put into the folder are carried
over. The animal's own files are replaced one by one (each copied to a temporary name
and renamed), so the PI never sees a duplicate or a half-copied figure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from pipeline import layout
from pipeline.errors import PipelineError
from pipeline.io.atomic import atomic_path
from pipeline.store import PublishResult

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def open_store(config: dict) -> "LocalFolderStore":
    return LocalFolderStore(config["store"]["path"])


class LocalFolderStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def folder(self, animal: str, recording_id: str) -> Path:
        return self.root / animal / recording_id

    def publish(self, animal: str, recording_id: str, files: list[Path]) -> PublishResult:
        dest = self.folder(animal, recording_id)
        self._replace_folder(dest, files)
        return PublishResult(backend="local", link=dest.resolve().as_uri(), folder=str(dest),
                             files=[Path(f).name for f in files])

    def publish_animal(self, animal: str, files: list[Path]) -> PublishResult:
        return self._copy(self.root / animal, files)

    def unpublish_elsewhere(self, animal: str, recording_id: str) -> list[str]:
        """Remove the pipeline's files of `recording_id` from the folders of animals other
        than `animal` (the recording was given another animal); the animals it was under."""
        if not self.root.is_dir():
            return []
        found = []
        for stale in sorted(self.root.glob(f"*/{recording_id}")):
            if stale.parent.name == animal or stale.parent.name.startswith(".") or not stale.is_dir():
                continue
            for name in layout.published_names():
                with contextlib.suppress(FileNotFoundError):
                    (stale / name).unlink()
            with contextlib.suppress(OSError):  # kept while it holds a person's files
                stale.rmdir()
            found.append(stale.parent.name)
        return found

    def _replace_folder(self, dest: Path, files: list[Path]) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        self._recover(dest)
        new = Path(tempfile.mkdtemp(prefix=f".{dest.name}.publishing-", dir=dest.parent))
        old = dest.parent / f".{dest.name}.replaced-{os.getpid()}"
        try:
            for src in files:
                try:
                    shutil.copyfile(src, new / Path(src).name)
                except OSError as e:
                    raise PipelineError(f"{Path(src).name} could not be copied into the results folder {dest} "
                                        f"({e.strerror or e}); the results published before are unchanged.") from None
            if dest.is_dir():  # a person's files stay with the recording
                ours = layout.published_names() | {Path(f).name for f in files}
                for p in dest.iterdir():
                    if p.name not in ours:
                        (shutil.copytree if p.is_dir() else shutil.copy2)(p, new / p.name)
            os.chmod(new, 0o777 & ~_UMASK)  # mkdtemp makes 0700; results are shared
            if dest.exists():
                os.rename(dest, old)
            try:
                os.rename(new, dest)
            except OSError:
                if old.exists():
                    os.rename(old, dest)
                raise
        finally:
            shutil.rmtree(new, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)

    @staticmethod
    def _recover(dest: Path) -> None:
        """After a publish killed between its two renames: the previous folder back in
        place; leftovers of publishes that never finished removed."""
        replaced = sorted(dest.parent.glob(f".{dest.name}.replaced-*"))
        if replaced and not dest.exists():
            os.rename(replaced.pop(), dest)
        for stale in replaced + list(dest.parent.glob(f".{dest.name}.publishing-*")):
            shutil.rmtree(stale, ignore_errors=True)

    def _copy(self, dest: Path, files: list[Path]) -> PublishResult:
        dest.mkdir(parents=True, exist_ok=True)
        published = []
        for src in files:
            with atomic_path(dest / src.name, suffix=src.suffix) as tmp:
                shutil.copyfile(src, tmp)
            published.append(src.name)
        return PublishResult(backend="local", link=dest.resolve().as_uri(), folder=str(dest), files=published)
