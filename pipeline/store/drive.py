"""The results store on Google Drive, through google-api-python-client.

Results go to <folder_id>/<animal>/<recording>/, where folder_id is a folder a person
shared with the service account or a Shared Drive (a service account has no storage of
its own: uploading into its own space fails with 403 storageQuotaExceeded, which is
reported, not retried). A recording is published all or nothing: its files go into a
new folder ("<recording> (publishing)"), which is renamed to <recording> once every
upload succeeded, and the previous folder is then moved to Drive's trash (where a person
can still restore it), with any file a person had put into it moved over first. A publish
that fails half-way leaves the previous folder as it was. The animal's own files are
replaced in place (a new revision of the same file), never copied twice. Files are
uploaded in resumable chunks, so a connection cut mid-way resumes from the last byte
Drive confirmed.
"""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path

from pipeline import layout
from pipeline.errors import ConfigError
from pipeline.google_api import DRIVE_SCOPE, GoogleSettings, drive_service, load_credentials, with_retries
from pipeline.store import PublishResult

log = logging.getLogger(__name__)

FOLDER = "application/vnd.google-apps.folder"
ALL_DRIVES = {"supportsAllDrives": True}
MIN_CHUNK = 256 * 1024  # Drive's unit for resumable chunks


def open_store(config: dict) -> "DriveStore":
    return DriveStore(config["store"], GoogleSettings.from_config(config))


def _q_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class DriveStore:
    def __init__(self, section: dict, settings: GoogleSettings):
        self.root = section["folder_id"]
        self.chunk = max(MIN_CHUNK, int(float(section["chunk_mb"]) * 1024 * 1024) // MIN_CHUNK * MIN_CHUNK)
        self.settings = settings
        self.service = drive_service(settings, load_credentials(settings, [DRIVE_SCOPE]))

    def _run(self, request, what: str):
        from googleapiclient.errors import HttpError

        try:
            return with_retries(lambda: request.execute(num_retries=0), self.settings, what)
        except HttpError as e:
            raise self._refusal(e, what) from None

    def _refusal(self, e, what: str) -> ConfigError:
        from pipeline.google_api import _status_and_reason

        status, reason = _status_and_reason(e)
        if reason == "storageQuotaExceeded":
            return ConfigError("store.folder_id: Drive refused the upload because the service account has no "
                               "storage of its own; use a folder owned by a person (shared with the account as "
                               "Editor) or a Shared Drive the account is a member of.")
        if status in (403, 404):
            return ConfigError(f"store.folder_id: the folder {self.root} does not exist or is not shared with the "
                               f"service account (Drive answered {status} to {what}); share it with the account's "
                               "e-mail address (client_email in the key file) as Editor.")
        return ConfigError(f"Google Drive answered {status} {reason} to {what}.")

    def _list(self, q: str, what: str, fields: str = "id,name,webViewLink") -> list[dict]:
        found, token = [], None
        while True:
            reply = self._run(self.service.files().list(q=q, fields=f"nextPageToken,files({fields})", pageSize=100,
                                                        pageToken=token, includeItemsFromAllDrives=True,
                                                        corpora="allDrives", **ALL_DRIVES), what)
            found += reply.get("files", [])
            token = reply.get("nextPageToken")
            if not token:
                return found

    def _children(self, parent: str, *, name: str | None = None, folder: bool | None = None) -> list[dict]:
        q = f"{_q_literal(parent)} in parents and trashed = false"
        if name is not None:
            q = f"name = {_q_literal(name)} and " + q
        if folder is not None:
            q += f" and mimeType {'=' if folder else '!='} '{FOLDER}'"
        return self._list(q, f"looking for {name or 'the files'} in {parent}")

    def _child(self, name: str, parent: str, *, folder: bool) -> dict | None:
        found = self._children(parent, name=name, folder=folder)
        if len(found) > 1:
            log.warning("Drive holds %d items named %s in %s; using the first", len(found), name, parent)
        return found[0] if found else None

    def folder(self, name: str, parent: str) -> dict:
        """The folder `name` in `parent`, made if missing."""
        existing = self._child(name, parent, folder=True)
        if existing:
            return existing
        body = {"name": name, "mimeType": FOLDER, "parents": [parent]}
        return self._run(self.service.files().create(body=body, fields="id,name,webViewLink", **ALL_DRIVES),
                         f"making the folder {name}")

    def upload(self, path: Path, parent: str) -> dict:
        """`path` into `parent`: a new revision of a file of the same name, else a new file."""
        from googleapiclient.errors import HttpError
        from googleapiclient.http import MediaFileUpload

        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        media = MediaFileUpload(str(path), mimetype=mime, resumable=True, chunksize=self.chunk)
        existing = self._child(path.name, parent, folder=False)
        if existing:
            request = self.service.files().update(fileId=existing["id"], media_body=media, fields="id,name",
                                                  **ALL_DRIVES)
        else:
            request = self.service.files().create(body={"name": path.name, "parents": [parent]}, media_body=media,
                                                  fields="id,name", **ALL_DRIVES)
        what = f"uploading {path.name}"
        response = None
        try:
            while response is None:  # chunk by chunk; after a cut the library asks Drive where to go on
                _, response = with_retries(lambda: request.next_chunk(num_retries=0), self.settings, what)
        except HttpError as e:
            raise self._refusal(e, what) from None
        return response

    def _update(self, file_id: str, what: str, body: dict | None = None, **params) -> dict:
        return self._run(self.service.files().update(fileId=file_id, body=body or {}, fields="id,name,parents",
                                                     **params, **ALL_DRIVES), what)

    def _trash(self, item: dict) -> None:
        self._update(item["id"], f"moving {item['name']} to the trash", {"trashed": True})

    def publish(self, animal: str, recording_id: str, files: list[Path]) -> PublishResult:
        parent = self.folder(animal, self.root)["id"]
        staging_name = f"{recording_id} (publishing)"
        for stale in self._children(parent, name=staging_name, folder=True):  # a publish that never finished
            self._trash(stale)
        body = {"name": staging_name, "mimeType": FOLDER, "parents": [parent]}
        new = self._run(self.service.files().create(body=body, fields="id,name,webViewLink", **ALL_DRIVES),
                        f"making the folder {staging_name}")
        try:
            result = self._upload_all(new, files, f"{animal}/{staging_name}")
        except BaseException:
            try:  # tidy up if Drive lets us; the next publish does otherwise
                self._trash(new)
            except Exception:  # noqa: BLE001 - the upload's own error is the one to report
                log.warning("could not move the unfinished folder %s to the trash", staging_name)
            raise
        # Every file is up: the new folder takes the old one's place (a person's files move with it).
        old = self._children(parent, name=recording_id, folder=True)
        ours = layout.published_names() | set(result.files)
        for folder in old:
            for item in self._children(folder["id"]):
                if item["name"] not in ours:
                    self._update(item["id"], f"moving {item['name']} into the new folder", addParents=new["id"],
                                 removeParents=folder["id"])
        self._update(new["id"], f"renaming the folder {staging_name}", {"name": recording_id})
        for folder in old:
            self._trash(folder)
        return result

    def unpublish_elsewhere(self, animal: str, recording_id: str) -> list[str]:
        animals = {f["id"]: f["name"] for f in self._children(self.root, folder=True) if f["name"] != animal}
        if not animals:
            return []
        q = f"name = {_q_literal(recording_id)} and mimeType = '{FOLDER}' and trashed = false"
        found = []
        for stale in self._list(q, f"looking for {recording_id} elsewhere", fields="id,name,parents"):
            parent = next((p for p in stale.get("parents", []) if p in animals), None)
            if parent is None:
                continue
            inside = self._children(stale["id"])
            mine = [item for item in inside if item["name"] in layout.published_names()]
            for item in mine:
                self._trash(item)
            if len(mine) == len(inside):
                self._trash(stale)
            found.append(animals[parent])
        return found

    def publish_animal(self, animal: str, files: list[Path]) -> PublishResult:
        """Files of the animal's own folder (its summary across recordings)."""
        return self._upload_all(self.folder(animal, self.root), files, animal)

    def _upload_all(self, folder: dict, files: list[Path], where: str) -> PublishResult:
        names = []
        for path in files:
            self.upload(Path(path), folder["id"])
            names.append(Path(path).name)
        link = folder.get("webViewLink") or f"https://drive.google.com/drive/folders/{folder['id']}"
        log.info("published %d files to Drive folder %s (%s)", len(names), where, folder["id"])
        return PublishResult(backend="drive", link=link, folder=folder["id"], files=names)
