"""A local fake of the Google APIs the pipeline uses, for tests through the real gspread
and googleapiclient: an HTTPS server on 127.0.0.1 (a throw-away CA made with trustme).

It implements, following the recorded answers of the real API in
../shared/reference/google-api-recordings/:
- OAuth: the token endpoint of a service account (the JWT assertion is verified
  against the key the test made);
- Sheets v4: spreadsheet metadata, values get / update / append / clear,
  values:batchUpdate, spreadsheets:batchUpdate (acknowledged only);
- Drive v3: files list (with `q`), get, create (metadata, multipart, resumable), update
  (metadata: name, trashed, addParents/removeParents; media), delete; Shared Drives and
  folders shared with the account; a service account has no storage of its own (403
  storageQuotaExceeded).
It counts requests per endpoint and injects faults on demand: 429 with Google's error
body, 500, a dropped connection, a resumable upload cut after N bytes, a slow answer.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import socket
import ssl
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SPREADSHEET = "application/vnd.google-apps.spreadsheet"
FOLDER = "application/vnd.google-apps.folder"
_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}{next(_ids):04d}{secrets.token_hex(8)}"


def google_error(code: int, message: str, status: str, reason: str | None = None) -> dict:
    err = {"code": code, "message": message, "status": status}
    if reason:
        err["errors"] = [{"message": message, "domain": "global", "reason": reason}]
    return {"error": err}


ERRORS = {
    429: google_error(429, "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute per "
                           "user' of service 'sheets.googleapis.com' for consumer 'project_number:1'.",
                      "RESOURCE_EXHAUSTED", "rateLimitExceeded"),
    500: google_error(500, "Internal error encountered.", "INTERNAL", "backendError"),
    403: google_error(403, "The caller does not have permission", "PERMISSION_DENIED", "forbidden"),
    404: google_error(404, "Requested entity was not found.", "NOT_FOUND", "notFound"),
    401: google_error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED", "authError"),
}


# -- A1 notation ---------------------------------------------------------------------------
def col_index(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + (ord(ch) - 64)
    return n - 1


def col_letters(index: int) -> str:
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


_CELLS = re.compile(r"^([A-Z]*)(\d*)(?::([A-Z]*)(\d*))?$")


def split_range(a1: str) -> tuple[str | None, str]:
    """'Sheet1'!A1:B2 -> ('Sheet1', 'A1:B2'); A1:B2 -> (None, 'A1:B2'); Sheet1 -> ('Sheet1', '')."""
    if "!" in a1:
        title, _, cells = a1.rpartition("!")
    elif _CELLS.match(a1) and a1:
        title, cells = None, a1
    else:
        title, cells = a1, ""
    if title is not None and title.startswith("'") and title.endswith("'"):
        title = title[1:-1].replace("''", "'")
    return title, cells


@dataclass
class Sheet:
    title: str
    sheet_id: int
    rows: int = 1000
    cols: int = 26
    cells: dict = field(default_factory=dict)  # (row, col) -> entered value

    def bounds(self, cells: str) -> tuple[int, int, int, int]:
        """(row0, col0, row1, col1), inclusive, of an A1 range within this sheet."""
        if not cells:
            return 0, 0, self.rows - 1, self.cols - 1
        m = _CELLS.match(cells)
        if not m:
            raise ValueError(cells)
        c0, r0, c1, r1 = m.groups()
        if m.group(3) is None and m.group(4) is None:  # one cell
            c1, r1 = c0, r0
        return (int(r0) - 1 if r0 else 0, col_index(c0) if c0 else 0,
                int(r1) - 1 if r1 else self.rows - 1, col_index(c1) if c1 else self.cols - 1)

    def a1(self, r0, c0, r1, c1) -> str:
        title = self.title if re.fullmatch(r"[A-Za-z0-9_]+", self.title) else "'" + self.title.replace("'", "''") + "'"
        return f"{title}!{col_letters(c0)}{r0 + 1}:{col_letters(c1)}{r1 + 1}"

    def display(self, value) -> str:
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        if isinstance(value, Formula):
            m = re.match(r'^=HYPERLINK\("((?:[^"]|"")*)"\s*,\s*"((?:[^"]|"")*)"\)$', value.text, re.I)
            return m.group(2).replace('""', '"') if m else "#NAME?"
        return str(value)

    def write(self, r0: int, c0: int, values: list[list], user_entered: bool) -> tuple[int, int, int]:
        n_rows, n_cols = len(values), max((len(v) for v in values), default=0)
        self.rows = max(self.rows, r0 + n_rows)
        self.cols = max(self.cols, c0 + n_cols)
        for i, row in enumerate(values):
            for j, v in enumerate(row):
                self.cells[(r0 + i, c0 + j)] = entered(v, user_entered)
        return n_rows, n_cols, sum(len(v) for v in values)

    def last_row(self) -> int:
        return max((r for (r, _), v in self.cells.items() if v not in ("", None)), default=-1)


@dataclass
class Formula:
    text: str


def entered(value, user_entered: bool):
    """A cell as Sheets keeps it, from what a client sent."""
    if not user_entered or not isinstance(value, str):
        return value
    if value.startswith("'"):
        return value[1:]  # the apostrophe marks text
    if value.startswith("="):
        return Formula(value)
    if value.upper() in ("TRUE", "FALSE"):
        return value.upper() == "TRUE"
    return value


@dataclass
class Fault:
    endpoint: str
    kind: str  # "429", "500", "drop", "slow", "cut"
    times: int
    seconds: float = 0.0
    after_bytes: int = 0


class FakeGoogle:
    """Start with `FakeGoogle(tmp_path)`; `stop()` when done (the fixture does)."""

    def __init__(self, folder: Path):
        import trustme

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        self.ca_path = self.folder / "fake-google-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.server.fake = self
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.lock = threading.RLock()
        self.counts: Counter = Counter()
        self.faults: list[Fault] = []
        self.accounts: dict[str, str] = {}  # service-account e-mail -> public key PEM
        self.storage_owners: set[str] = set()  # accounts with Drive storage of their own
        self.tokens: dict[str, str] = {}  # access token -> e-mail
        self.spreadsheets: dict[str, dict] = {}
        self.files: dict[str, dict] = {}
        self.uploads: dict[str, dict] = {}
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- set-up by tests -------------------------------------------------------------------
    def service_account_key(self, path: Path, email: str = "pipeline@lab-project.iam.gserviceaccount.com", *,
                            has_storage: bool = False) -> Path:
        """A key file for an account the fake knows; `has_storage` makes it act as a person
        (whose own Drive space takes files), as the account that recorded the cassettes."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
        public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        self.accounts[email] = public_pem
        if has_storage:
            self.storage_owners.add(email)
        info = {"type": "service_account", "project_id": "lab-project", "private_key_id": secrets.token_hex(20),
                "private_key": private_pem, "client_email": email, "client_id": "1" * 21,
                "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": f"{self.url}/token",
                "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs"}
        Path(path).write_text(json.dumps(info, indent=2))
        return Path(path)

    def add_spreadsheet(self, rows: list[list], *, title: str = "Lab recordings", tab: str = "Sheet1",
                        shared_with: tuple[str, ...] | None = None) -> str:
        sid = new_id("1Sheet")
        sheet = Sheet(tab, 0)
        sheet.write(0, 0, rows, user_entered=True)
        with self.lock:
            self.spreadsheets[sid] = {"title": title, "sheets": [sheet],
                                      "shared": set(self.accounts) if shared_with is None else set(shared_with)}
            self.files[sid] = self._file(title, SPREADSHEET, [], owner="person")
            self.files[sid]["id"] = sid
        return sid

    def add_tab(self, sid: str, title: str, rows: list[list]) -> int:
        """Another tab after the spreadsheet's others, as a person adds one; its index."""
        with self.lock:
            sheets = self.spreadsheets[sid]["sheets"]
            sheet = Sheet(title, next(_ids) * 7919)
            sheet.write(0, 0, rows, user_entered=True)
            sheets.append(sheet)
            return len(sheets) - 1

    def add_folder(self, name: str = "Lab results", *, shared: bool = True, shared_drive: bool = False,
                   owner: str = "person") -> str:
        """A folder a person owns and shares with the account (or a Shared Drive, or, with
        owner=<the account's e-mail>, one in the account's own space)."""
        fid = new_id("0Drive" if shared_drive else "1Fold")
        with self.lock:
            f = self._file(name, FOLDER, [], owner=owner)
            f.update(id=fid, shared=set(self.accounts) if shared else set(), shared_drive=shared_drive)
            self.files[fid] = f
        return fid

    def fail(self, endpoint: str, kind: str, *, times: int = 1, seconds: float = 0.0, after_bytes: int = 0) -> None:
        """The next `times` requests to `endpoint` fail as `kind` (see Fault)."""
        with self.lock:
            self.faults.append(Fault(endpoint, kind, times, seconds, after_bytes))

    def values(self, sid: str, tab: int = 0) -> list[list[str]]:
        """The sheet as a person sees it (displayed values), trailing blanks trimmed."""
        sheet = self.spreadsheets[sid]["sheets"][tab]
        return _grid(sheet, 0, 0, sheet.rows - 1, sheet.cols - 1)

    def formulas(self, sid: str, tab: int = 0) -> dict[tuple[int, int], str]:
        sheet = self.spreadsheets[sid]["sheets"][tab]
        return {k: v.text for k, v in sheet.cells.items() if isinstance(v, Formula)}

    def children(self, folder_id: str) -> dict[str, dict]:
        return {f["name"]: f for f in self.files.values() if folder_id in f["parents"] and not f["trashed"]}

    def reads_and_writes(self) -> tuple[int, int]:
        reads = sum(n for k, n in self.counts.items() if k in ("sheets.values.get", "sheets.get"))
        writes = sum(n for k, n in self.counts.items() if k in ("sheets.values.batchUpdate", "sheets.values.update",
                                                                  "sheets.values.append", "sheets.batchUpdate"))
        return reads, writes

    # -- internals ---------------------------------------------------------------------------
    def _file(self, name: str, mime: str, parents: list[str], owner: str, content: bytes = b"") -> dict:
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {"kind": "drive#file", "id": "", "name": name, "mimeType": mime, "parents": list(parents),
                "owner": owner, "trashed": False, "content": content, "createdTime": now, "modifiedTime": now,
                "version": 1, "shared": set(), "shared_drive": False}

    def take_fault(self, endpoint: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.endpoint == endpoint and f.times > 0:
                    f.times -= 1
                    return f
        return None

    def can_reach(self, file_id: str, email: str) -> bool:
        """The account may use the file: it, or a folder above it, is shared with it."""
        seen = set()
        f = self.files.get(file_id)
        while f is not None and f["id"] not in seen:
            seen.add(f["id"])
            if f["owner"] == email or email in f["shared"]:
                return True
            f = self.files.get(f["parents"][0]) if f["parents"] else None
        return False

    def has_storage(self, parent_id: str) -> bool:
        """Files take the storage of the folder's owner or of a Shared Drive; an account has none."""
        f = self.files.get(parent_id)
        seen = set()
        while f is not None and f["id"] not in seen:
            seen.add(f["id"])
            if f["shared_drive"] or f["owner"] == "person":
                return True
            f = self.files.get(f["parents"][0]) if f["parents"] else None
        return False


def _grid(sheet: Sheet, r0: int, c0: int, r1: int, c1: int) -> list[list[str]]:
    out = []
    for r in range(r0, r1 + 1):
        row = [sheet.display(sheet.cells.get((r, c), "")) for c in range(c0, c1 + 1)]
        while row and row[-1] == "":
            row.pop()
        out.append(row)
    while out and not out[-1]:
        out.pop()
    return out


def _fields(resource: dict, fields: str | None, default: tuple[str, ...]) -> dict:
    """The fields a Drive `fields` parameter asks for (one level: 'id,name,webViewLink')."""
    wanted = [f.strip() for f in fields.split(",")] if fields else list(default)
    out = {}
    for name in wanted:
        if name == "parents":
            out[name] = list(resource["parents"])
        elif name == "webViewLink":
            kind = "folders" if resource["mimeType"] == FOLDER else "file/d"
            out[name] = f"https://drive.google.com/{'drive/' if kind == 'folders' else ''}{kind}/{resource['id']}"
        elif name == "size":
            out[name] = str(len(resource["content"]))
        elif name in resource:
            out[name] = resource[name]
    return out


def _split_list_fields(fields: str | None) -> tuple[list[str], str | None]:
    """'nextPageToken,files(id,name)' -> (['nextPageToken'], 'id,name')."""
    if not fields:
        return ["kind", "incompleteSearch"], None
    m = re.search(r"files\(([^)]*)\)", fields)
    top = [f.strip() for f in re.sub(r"files\([^)]*\)", "", fields).split(",") if f.strip()]
    return top, (m.group(1) if m else None)


_CLAUSE = re.compile(r"^\s*(?:(name|mimeType)\s*(=|!=)\s*'((?:[^'\\]|\\.)*)'|'((?:[^'\\]|\\.)*)'\s+in\s+parents"
                     r"|trashed\s*=\s*(true|false)|mimeType\s*(=|!=)\s*\"([^\"]*)\")\s*$")


def _matches(f: dict, q: str | None) -> bool:
    if not q:
        return True
    for clause in re.split(r"\s+and\s+", q):
        m = _CLAUSE.match(clause)
        if not m:
            raise ValueError(f"unsupported q clause {clause!r}")
        key, op, value, parent, trashed, op2, value2 = m.groups()
        unescape = (lambda s: re.sub(r"\\(.)", r"\1", s))
        if key:
            ok = (f[key] == unescape(value)) == (op == "=")
        elif parent is not None:
            ok = unescape(parent) in f["parents"]
        elif trashed is not None:
            ok = f["trashed"] == (trashed == "true")
        else:
            ok = (f["mimeType"] == value2) == (op2 == "=")
        if not ok:
            return False
    return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    # -- plumbing -----------------------------------------------------------------------------
    @property
    def fake(self) -> FakeGoogle:
        return self.server.fake

    def _body(self, limit: int | None = None) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        if limit is not None:
            n = min(n, limit)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body=None, headers: dict | None = None) -> None:
        data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body, indent=2).encode())
        self.send_response(status)
        if body is not None and not isinstance(body, bytes):
            self.send_header("Content-Type", "application/json; charset=UTF-8")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self):  # noqa: N802
        self._dispatch("GET")

    def do_POST(self):  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self):  # noqa: N802
        self._dispatch("PUT")

    def do_PATCH(self):  # noqa: N802
        self._dispatch("PATCH")

    def do_DELETE(self):  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        route = self._route(method, path, query)
        if route is None:
            self._body()
            return self._send(404, ERRORS[404])
        endpoint, handler, args = route
        with self.fake.lock:
            self.fake.counts[endpoint] += 1
        fault = self.fake.take_fault(endpoint)
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.seconds)
            fault = None
        if fault is not None and fault.kind != "cut":
            self._body()
            if fault.kind == "drop":
                return self._drop()
            code = int(fault.kind)
            return self._send(code, ERRORS[code])
        if endpoint != "token":
            email = self.fake.tokens.get((self.headers.get("Authorization") or "").removeprefix("Bearer "))
            if email is None:
                self._body()
                return self._send(401, ERRORS[401])
            args["email"] = email
        args["fault"] = fault
        try:
            handler(query=query, **args)
        except (ConnectionError, BrokenPipeError, ssl.SSLError):
            pass

    def _route(self, method: str, path: str, query: dict):
        m = re.fullmatch(r"/v4/spreadsheets/([^/:]+)(.*)", path)
        if path == "/token" and method == "POST":
            return "token", self.token, {}
        if m:
            sid, rest = m.groups()
            if rest == "" and method == "GET":
                return "sheets.get", self.sheets_get, {"sid": sid}
            if rest == ":batchUpdate" and method == "POST":
                return "sheets.batchUpdate", self.sheets_batch_update, {"sid": sid}
            if rest == "/values:batchUpdate" and method == "POST":
                return "sheets.values.batchUpdate", self.values_batch_update, {"sid": sid}
            v = re.fullmatch(r"/values/(.+?)(:append|:clear)?", rest)
            if v:
                a1, verb = v.groups()
                name = {None: {"GET": "get", "PUT": "update"}.get(method), ":append": "append", ":clear": "clear"}[verb]
                if name:
                    return f"sheets.values.{name}", getattr(self, f"values_{name}"), {"sid": sid, "a1": a1}
        if path == "/drive/v3/files":
            return {"GET": ("drive.files.list", self.files_list, {}),
                    "POST": ("drive.files.create", self.files_create, {})}.get(method)
        m = re.fullmatch(r"/drive/v3/files/([^/]+)", path)
        if m:
            fid = m.group(1)
            return {"GET": ("drive.files.get", self.files_get, {"fid": fid}),
                    "PATCH": ("drive.files.update", self.files_update, {"fid": fid}),
                    "DELETE": ("drive.files.delete", self.files_delete, {"fid": fid})}.get(method)
        m = re.fullmatch(r"/upload/drive/v3/files(?:/([^/]+))?", path)
        if m:
            if "upload_id" in query and method == "PUT":
                return "drive.upload.chunk", self.upload_chunk, {}
            if method in ("POST", "PATCH"):
                return "drive.upload", self.upload_start, {"fid": m.group(1)}
        return None

    # -- OAuth ---------------------------------------------------------------------------------
    def token(self, query, fault):
        from google.auth import jwt

        form = dict(urllib.parse.parse_qsl(self._body().decode()))
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._send(400, {"error": "unsupported_grant_type"})
        try:
            unverified = jwt.decode(form.get("assertion", ""), verify=False)
            public = self.fake.accounts[unverified["iss"]]
            # google-auth names Google's own token endpoint as the audience, wherever it posts.
            jwt.decode(form["assertion"], certs=public,
                       audience=[f"{self.fake.url}/token", "https://oauth2.googleapis.com/token"])
        except (KeyError, ValueError):
            return self._send(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        token = "ya29." + secrets.token_urlsafe(24)
        with self.fake.lock:
            self.fake.tokens[token] = unverified["iss"]
        self._send(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    # -- Sheets ---------------------------------------------------------------------------------
    def _spreadsheet(self, sid: str, email: str):
        ss = self.fake.spreadsheets.get(sid)
        if ss is None:
            self._send(404, ERRORS[404])
            return None
        if email not in ss["shared"]:
            self._send(403, ERRORS[403])
            return None
        return ss

    def _tab(self, sid: str, a1: str, email: str) -> tuple[Sheet | None, str]:
        """The tab an A1 range names and the range's cells; (None, "") once an error was sent."""
        ss = self._spreadsheet(sid, email)
        if ss is None:
            return None, ""
        title, cells = split_range(a1)
        return self._sheet(ss, title, a1), cells

    def _sheet(self, ss: dict, title: str | None, a1: str) -> Sheet | None:
        if title is None:
            return ss["sheets"][0]
        for sheet in ss["sheets"]:
            if sheet.title == title:
                return sheet
        # Google quotes the range as it was sent.
        self._send(400, google_error(400, f"Unable to parse range: {a1}", "INVALID_ARGUMENT", "badRequest"))
        return None

    def sheets_get(self, query, sid, email, fault):
        ss = self._spreadsheet(sid, email)
        if ss is None:
            return
        self._send(200, {
            "spreadsheetId": sid,
            "properties": {"title": ss["title"], "locale": "en_US", "autoRecalc": "ON_CHANGE", "timeZone": "Etc/GMT"},
            "sheets": [{"properties": {"sheetId": s.sheet_id, "title": s.title, "index": i, "sheetType": "GRID",
                                       "gridProperties": {"rowCount": s.rows, "columnCount": s.cols}}}
                       for i, s in enumerate(ss["sheets"])],
            "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{sid}/edit",
        })

    def values_get(self, query, sid, a1, email, fault):
        sheet, cells = self._tab(sid, a1, email)
        if sheet is None:
            return
        with self.fake.lock:
            r0, c0, r1, c1 = sheet.bounds(cells)
            r1, c1 = min(r1, sheet.rows - 1), min(c1, max(sheet.cols - 1, c0))
            values = _grid(sheet, r0, c0, r1, c1)
        body = {"range": sheet.a1(r0, c0, r1, c1), "majorDimension": "ROWS"}
        if values:
            body["values"] = values
        self._send(200, body)

    def _update_one(self, ss, sid, a1: str, values: list[list], user_entered: bool):
        title, cells = split_range(a1)
        sheet = self._sheet(ss, title, a1)
        if sheet is None:
            return None
        r0, c0, _, _ = sheet.bounds(cells)
        n_rows, n_cols, n_cells = sheet.write(r0, c0, values, user_entered)
        return sheet, {"spreadsheetId": sid, "updatedRange": sheet.a1(r0, c0, r0 + n_rows - 1, c0 + n_cols - 1),
                       "updatedRows": n_rows, "updatedColumns": n_cols, "updatedCells": n_cells}

    def values_update(self, query, sid, a1, email, fault):
        body = json.loads(self._body() or b"{}")
        ss = self._spreadsheet(sid, email)
        if ss is None:
            return
        with self.fake.lock:
            done = self._update_one(ss, sid, a1, body.get("values", []),
                                    query.get("valueInputOption") == "USER_ENTERED")
        if done:
            self._send(200, done[1])

    def values_append(self, query, sid, a1, email, fault):
        body = json.loads(self._body() or b"{}")
        sheet, _ = self._tab(sid, a1, email)
        if sheet is None:
            return
        with self.fake.lock:
            row = sheet.last_row() + 1
            n_rows, n_cols, n_cells = sheet.write(row, 0, body.get("values", []),
                                                  query.get("valueInputOption") == "USER_ENTERED")
        self._send(200, {"spreadsheetId": sid, "updates": {
            "spreadsheetId": sid, "updatedRange": sheet.a1(row, 0, row + n_rows - 1, n_cols - 1),
            "updatedRows": n_rows, "updatedColumns": n_cols, "updatedCells": n_cells}})

    def values_clear(self, query, sid, a1, email, fault):
        self._body()
        sheet, cells = self._tab(sid, a1, email)
        if sheet is None:
            return
        with self.fake.lock:
            r0, c0, r1, c1 = sheet.bounds(cells)
            for key in [k for k in sheet.cells if r0 <= k[0] <= r1 and c0 <= k[1] <= c1]:
                del sheet.cells[key]
        self._send(200, {"spreadsheetId": sid, "clearedRange": sheet.a1(r0, c0, min(r1, sheet.rows - 1),
                                                                        min(c1, sheet.cols - 1))})

    def values_batch_update(self, query, sid, email, fault):
        body = json.loads(self._body() or b"{}")
        ss = self._spreadsheet(sid, email)
        if ss is None:
            return
        user_entered = body.get("valueInputOption") == "USER_ENTERED"
        responses, sheets = [], set()
        with self.fake.lock:
            for item in body.get("data", []):
                done = self._update_one(ss, sid, item["range"], item.get("values", []), user_entered)
                if done is None:
                    return
                sheets.add(done[0].title)
                responses.append(done[1])
        self._send(200, {"spreadsheetId": sid,
                         "totalUpdatedRows": sum(r["updatedRows"] for r in responses),
                         "totalUpdatedColumns": max((r["updatedColumns"] for r in responses), default=0),
                         "totalUpdatedCells": sum(r["updatedCells"] for r in responses),
                         "totalUpdatedSheets": len(sheets), "responses": responses})

    def sheets_batch_update(self, query, sid, email, fault):
        """Tabs added, deleted and resized; other requests (formatting) acknowledged only."""
        body = json.loads(self._body() or b"{}")
        ss = self._spreadsheet(sid, email)
        if ss is None:
            return
        replies = []
        with self.fake.lock:
            for request in body.get("requests", []):
                if "addSheet" in request:
                    props = request["addSheet"].get("properties", {})
                    grid = props.get("gridProperties", {})
                    sheet = Sheet(props.get("title", f"Sheet{len(ss['sheets']) + 1}"), next(_ids) * 7919,
                                  grid.get("rowCount", 1000), grid.get("columnCount", 26))
                    ss["sheets"].append(sheet)
                    replies.append({"addSheet": {"properties": {
                        "sheetId": sheet.sheet_id, "title": sheet.title, "index": len(ss["sheets"]) - 1,
                        "sheetType": "GRID", "gridProperties": {"rowCount": sheet.rows, "columnCount": sheet.cols}}}})
                    continue
                if "deleteSheet" in request:
                    ss["sheets"] = [s for s in ss["sheets"] if s.sheet_id != request["deleteSheet"]["sheetId"]]
                elif "updateSheetProperties" in request:
                    props = request["updateSheetProperties"]["properties"]
                    grid = props.get("gridProperties", {})
                    for s in ss["sheets"]:
                        if s.sheet_id == props.get("sheetId"):
                            s.rows, s.cols = grid.get("rowCount", s.rows), grid.get("columnCount", s.cols)
                replies.append({})
        self._send(200, {"spreadsheetId": sid, "replies": replies})

    # -- Drive ----------------------------------------------------------------------------------
    def files_list(self, query, email, fault):
        top, per_file = _split_list_fields(query.get("fields"))
        try:
            with self.fake.lock:
                found = [f for f in self.fake.files.values()
                         if self.fake.can_reach(f["id"], email) and _matches(f, query.get("q"))]
        except ValueError as e:
            return self._send(400, google_error(400, str(e), "INVALID_ARGUMENT", "invalid"))
        body = {"kind": "drive#fileList", "incompleteSearch": False}
        body = {k: v for k, v in body.items() if k in top or not query.get("fields")}
        body["files"] = [_fields(f, per_file, ("kind", "id", "name", "mimeType")) for f in found]
        self._send(200, body)

    def files_get(self, query, fid, email, fault):
        f = self.fake.files.get(fid)
        if f is None or not self.fake.can_reach(fid, email) or f["trashed"]:
            return self._send(404, google_error(404, f"File not found: {fid}.", "NOT_FOUND", "notFound"))
        if query.get("alt") == "media":
            return self._send(200, f["content"])
        self._send(200, _fields(f, query.get("fields"), ("kind", "id", "name", "mimeType")))

    def files_delete(self, query, fid, email, fault):
        if fid not in self.fake.files or not self.fake.can_reach(fid, email):
            return self._send(404, google_error(404, f"File not found: {fid}.", "NOT_FOUND", "notFound"))
        with self.fake.lock:
            del self.fake.files[fid]
            self.fake.spreadsheets.pop(fid, None)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _create(self, meta: dict, content: bytes, email: str) -> dict | None:
        parents = meta.get("parents") or []
        mime = meta.get("mimeType") or "application/octet-stream"
        for p in parents:
            if p not in self.fake.files or not self.fake.can_reach(p, email):
                self._send(404, google_error(404, f"File not found: {p}.", "NOT_FOUND", "notFound"))
                return None
        has_storage = email in self.fake.storage_owners or (parents and self.fake.has_storage(parents[0]))
        if mime != FOLDER and not has_storage:
            self._send(403, google_error(403, "Service Accounts do not have storage quota. Leverage shared drives "
                                              "(https://developers.google.com/workspace/drive/api/guides/about-shareddrives), "
                                              "or use OAuth delegation instead.", "PERMISSION_DENIED",
                                         "storageQuotaExceeded"))
            return None
        f = self.fake._file(meta.get("name", "Untitled"), mime, parents, owner=email, content=content)
        f["id"] = new_id("1File")
        with self.fake.lock:
            self.fake.files[f["id"]] = f
            if mime == SPREADSHEET:
                self.fake.spreadsheets[f["id"]] = {"title": f["name"], "sheets": [Sheet("Sheet1", 0)],
                                                   "shared": {email}}
        return f

    def files_create(self, query, email, fault):
        meta = json.loads(self._body() or b"{}")
        f = self._create(meta, b"", email)
        if f is not None:
            self._send(200, _fields(f, query.get("fields"), ("kind", "id", "name", "mimeType")))

    def files_update(self, query, fid, email, fault):
        meta = json.loads(self._body() or b"{}")
        f = self.fake.files.get(fid)
        if f is None or not self.fake.can_reach(fid, email):
            return self._send(404, google_error(404, f"File not found: {fid}.", "NOT_FOUND", "notFound"))
        with self.fake.lock:
            f.update({k: v for k, v in meta.items() if k in ("name", "mimeType", "trashed")})
            # Moving a file: removeParents / addParents, comma-separated ids, as Drive takes them.
            gone = set(filter(None, query.get("removeParents", "").split(",")))
            f["parents"] = [p for p in f["parents"] if p not in gone]
            f["parents"] += [p for p in query.get("addParents", "").split(",") if p and p not in f["parents"]]
        self._send(200, _fields(f, query.get("fields"), ("kind", "id", "name", "mimeType")))

    def upload_start(self, query, fid, email, fault):
        kind = query.get("uploadType")
        raw = self._body()
        if kind == "multipart":
            ctype = self.headers.get("Content-Type", "")
            msg = BytesParser().parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
            parts = msg.get_payload()
            meta = json.loads(parts[0].get_payload(decode=True) or b"{}")
            return self._finish_upload(query, fid, meta, parts[1].get_payload(decode=True), email)
        if kind == "resumable":
            meta = json.loads(raw or b"{}")
            if fid and (fid not in self.fake.files or not self.fake.can_reach(fid, email)):
                return self._send(404, google_error(404, f"File not found: {fid}.", "NOT_FOUND", "notFound"))
            uid = secrets.token_urlsafe(12)
            with self.fake.lock:
                self.fake.uploads[uid] = {"meta": meta, "fid": fid, "data": b"", "email": email, "query": query,
                                          "size": int(self.headers.get("X-Upload-Content-Length") or -1)}
            location = f"{self.fake.url}/upload/drive/v3/files{'/' + fid if fid else ''}?uploadType=resumable&upload_id={uid}"
            return self._send(200, {}, {"Location": location})
        self._send(400, google_error(400, f"Invalid uploadType {kind!r}", "INVALID_ARGUMENT", "invalid"))

    def _finish_upload(self, query, fid, meta, content: bytes, email: str):
        if fid:
            f = self.fake.files.get(fid)
            if f is None or not self.fake.can_reach(fid, email):
                return self._send(404, google_error(404, f"File not found: {fid}.", "NOT_FOUND", "notFound"))
            with self.fake.lock:
                f["content"] = content
                f["version"] += 1
                f.update({k: v for k, v in meta.items() if k == "name"})
        else:
            f = self._create(meta, content, email)
            if f is None:
                return None
        return self._send(200, _fields(f, query.get("fields"), ("kind", "id", "name", "mimeType")))

    def upload_chunk(self, query, email, fault):
        session = self.fake.uploads.get(query["upload_id"])
        if session is None:
            self._body()
            return self._send(404, google_error(404, "Upload session not found.", "NOT_FOUND", "notFound"))
        span = self.headers.get("Content-Range", "")
        m = re.fullmatch(r"bytes (\*|(\d+)-(\d+))/(\*|\d+)", span)
        total = int(m.group(4)) if m and m.group(4) != "*" else session["size"]
        if m and m.group(1) != "*":
            start = int(m.group(2))
            if fault is not None and fault.kind == "cut":  # the connection breaks after N bytes
                data = self._body(limit=fault.after_bytes)
                with self.fake.lock:
                    if start == len(session["data"]):
                        session["data"] += data
                return self._drop()
            data = self._body()
            with self.fake.lock:
                if start == len(session["data"]):
                    session["data"] += data
        else:
            self._body()
        received = len(session["data"])
        if session.get("done"):  # asked again after it completed (a lost answer): the same file
            return self._send(200, _fields(self.fake.files[session["done"]], session["query"].get("fields"),
                                           ("kind", "id", "name", "mimeType")))
        if total >= 0 and received >= total:
            before = set(self.fake.files)
            self._finish_upload(session["query"], session["fid"], session["meta"], session["data"],
                                session["email"])
            with self.fake.lock:
                session["done"] = session["fid"] or next(iter(set(self.fake.files) - before), None)
            return None
        headers = {"Range": f"bytes=0-{received - 1}"} if received else {}
        self._send(308, b"", headers)
