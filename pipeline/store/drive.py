"""The results store on Google Drive, through google-api-python-client.

Results go to <folder_id>/<animal>/<recording>/, where folder_id is a folder a person
shared with the service account or a Shared Drive (a service account has no storage of
its own: uploading into its own space fails with 403 storageQuotaExceeded, which is
reported, not retried). Publishing again replaces files of the same name (a new
revision of the same file), never adds copies. Files are uploaded in resumable chunks,
so a connection cut mid-way resumes from the last byte Drive confirmed.
"""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path

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

    def _child(self, name: str, parent: str, *, folder: bool) -> dict | None:
        q = f"name = {_q_literal(name)} and {_q_literal(parent)} in parents and trashed = false"
        q += f" and mimeType {'=' if folder else '!='} '{FOLDER}'"
        reply = self._run(self.service.files().list(q=q, fields="files(id,name,webViewLink)", pageSize=10,
                                                    includeItemsFromAllDrives=True, corpora="allDrives",
                                                    **ALL_DRIVES), f"looking for {name}")
        found = reply.get("files", [])
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

    def publish(self, animal: str, recording_id: str, files: list[Path]) -> PublishResult:
        animal_folder = self.folder(animal, self.root)
        return self._upload_all(self.folder(recording_id, animal_folder["id"]), files, f"{animal}/{recording_id}")

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
