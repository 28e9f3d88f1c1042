"""The Google Sheet back-end, on gspread: one read of the used range per poll, all of a
poll's writes in one values:batchUpdate.

The header row names the columns (`sheet.columns` maps the pipeline's names to a lab's
own labels; labels match forgivingly: case, spaces, underscores and hyphens aside). Rows are
identified as in the local sheet, by who they are (row_key), and a write goes to the
rows where this poll's read found them, never to a row number remembered from an
earlier poll. Text a person could read as a formula is written so that it stays text;
the results link is a clickable HYPERLINK; a rerun checkbox is unticked as a checkbox.
"""

from __future__ import annotations

import logging

from pipeline.errors import ConfigError, PipelineError
from pipeline.google_api import SHEETS_SCOPE, GoogleSettings, load_credentials, requests_session, with_retries
from pipeline.sheets import (COLUMNS, PIPELINE_COLUMNS, REQUIRED_COLUMNS, Row, Update, check_writable, match_header,
                             row_key)

log = logging.getLogger(__name__)

READ_RANGE = "A1:ZZ"  # the used range: Google trims trailing empty rows and cells
FORMULA_START = ("=", "+", "-", "@")
CHECKBOX_VALUES = {"TRUE", "FALSE"}


def open_sheet(config: dict) -> "GoogleSheet":
    return GoogleSheet(config["sheet"], GoogleSettings.from_config(config))


def column_letter(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def _quote_title(title: str) -> str:
    return "'" + title.replace("'", "''") + "'"


def cell_value(column: str, value: str):
    """What to write for a pipeline cell (valueInputOption USER_ENTERED)."""
    if column == "results_link" and value.startswith(("https://", "http://", "file://")):
        url = value.replace('"', '""')
        return f'=HYPERLINK("{url}","open the results")'
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value  # a leading apostrophe keeps it text
    return value


class GoogleSheet:
    def __init__(self, section: dict, settings: GoogleSettings):
        import gspread

        self.spreadsheet_id = section["spreadsheet_id"]
        self.worksheet = section.get("worksheet")
        self.labels = {c: (section.get("columns") or {}).get(c, c) for c in COLUMNS}
        self.settings = settings
        credentials = load_credentials(settings, [SHEETS_SCOPE])

        class _Client(gspread.http_client.HTTPClient):
            def request(inner, method, endpoint, **kw):  # noqa: N805 - gspread's signature
                url = settings.url(endpoint)
                return with_retries(lambda: gspread.http_client.HTTPClient.request(inner, method, url, **kw),
                                    settings, f"the sheet ({method.upper()} {url.split('/v4/')[-1][:60]})")

        self.client = gspread.Client(auth=None, session=requests_session(settings, credentials), http_client=_Client)
        self.client.set_timeout(settings.timeout_s)
        self._title: str | None = self.worksheet
        self._header: list[str] = []
        self._columns: dict[str, int] = {}
        self._rows: list[tuple[int, Row, list[str]]] = []  # (row number, row, raw cells) of the last read

    # -- reading -------------------------------------------------------------------------
    def _range(self, a1: str) -> str:
        return f"{_quote_title(self._title)}!{a1}" if self._title else a1

    def _call(self, what: str, fn):
        """Map the API's refusals to one sentence for the maintainer; transient ones were
        retried already (see google_api.with_retries)."""
        import gspread

        try:
            return fn()
        except gspread.exceptions.APIError as e:
            status = e.response.status_code
            if status == 403:
                raise ConfigError(f"sheet.spreadsheet_id: the spreadsheet {self.spreadsheet_id} is not shared with the "
                                  "service account; share it (as Editor) with the account's e-mail address "
                                  "(client_email in the key file).") from None
            if status == 404:
                # (A tab that is not there is a 400, below.)
                raise ConfigError(f"sheet.spreadsheet_id: there is no spreadsheet {self.spreadsheet_id}; copy the id "
                                  "from the sheet's address (…/d/ID/edit).") from None
            if status == 400 and self.worksheet and "Unable to parse range" in e.response.text:
                tabs = ", ".join(repr(t) for t in self._tab_titles())
                raise ConfigError(f"sheet.worksheet: the spreadsheet has no tab named {self.worksheet!r}"
                                  f"{'; its tabs are ' + tabs if tabs else ''}.") from None
            raise ConfigError(f"Google answered {status} to {what}: {e.response.text[:200]}") from None

    def _tab_titles(self) -> list[str]:
        """The spreadsheet's tab titles, for the message on a tab not found (a title typed
        a little differently is then easy to see); none if they cannot be read."""
        import gspread

        try:
            meta = self.client.http_client.fetch_sheet_metadata(self.spreadsheet_id)
        except (gspread.exceptions.APIError, PipelineError):
            return []
        return [s.get("properties", {}).get("title", "") for s in meta.get("sheets", [])]

    def read_rows(self) -> list[Row]:
        """Every non-empty row below the header, with all COLUMNS present. One read."""
        reply = self._call("reading the sheet", lambda: self.client.http_client.values_get(
            self.spreadsheet_id, self._range(READ_RANGE), params={"valueRenderOption": "FORMATTED_VALUE"}))
        values = reply.get("values", [])
        if self._title is None:  # the first tab: its title comes with the answer
            self._title = reply.get("range", "").rpartition("!")[0].strip("'").replace("''", "'") or None
        self._header = [str(h) for h in (values[0] if values else [])]
        self._columns = self._match_header(self._header)
        self._rows = []
        out = []
        for i, cells in enumerate(values[1:]):
            cells = [str(c) for c in cells]
            if not any(c.strip() for c in cells):
                continue
            row = {c: (cells[j] if j < len(cells) else "") for c, j in self._columns.items()}
            row = {c: row.get(c, "") for c in COLUMNS}
            self._rows.append((i + 2, row, cells))
            out.append(row)
        return out

    def _match_header(self, header: list[str]) -> dict[str, int]:
        found = match_header(header, self.labels)
        missing = [self.labels[c] for c in REQUIRED_COLUMNS if c not in found]
        if missing:
            raise ConfigError(f"the sheet's header row (row 1) has no column {missing[0]!r}; add it, or name the "
                              f"column the lab uses in sheet.columns of config.yaml.")
        return found

    # -- writing -------------------------------------------------------------------------
    def apply_updates(self, updates: list[Update]) -> int:
        """One values:batchUpdate with every cell of `updates`, to the rows where the last
        read found them; keys that read did not see are skipped."""
        if not updates:
            return 0
        for _, values in updates:
            check_writable(values)
        data, header_cells = [], {}
        columns = dict(self._columns)
        for col in PIPELINE_COLUMNS + ["rerun"]:
            if col not in columns and any(col in v for _, v in updates):
                columns[col] = max([len(self._header) - 1, *columns.values(), *header_cells.values()]) + 1
                header_cells[col] = columns[col]
        for col, j in header_cells.items():
            data.append({"range": self._range(f"{column_letter(j)}1"), "values": [[self.labels[col]]]})
        changed = 0
        for key, values in updates:
            for number, row, cells in self._rows:
                if row_key(row) != key:
                    continue
                changed += 1
                for col, value in values.items():
                    j = columns[col]
                    if col == "rerun" and j < len(cells) and cells[j].upper() in CHECKBOX_VALUES:
                        value = False  # untick a checkbox rather than wiping it
                    data.append({"range": self._range(f"{column_letter(j)}{number}"),
                                 "values": [[cell_value(col, value) if isinstance(value, str) else value]]})
        if data:
            body = {"valueInputOption": "USER_ENTERED", "data": data}
            self._call("writing to the sheet",
                       lambda: self.client.http_client.values_batch_update(self.spreadsheet_id, body))
        return changed

    def append_row(self, values: Row) -> None:
        """Add a row below the others, as a person would (the demo, tests)."""
        if not self._header:
            self.read_rows()
        name_at = {j: col for col, j in self._columns.items()}
        cells = [cell_value(name_at.get(j, ""), values.get(name_at.get(j, ""), ""))
                 for j in range(max(self._columns.values()) + 1)]
        self._call("adding a row", lambda: self.client.http_client.values_append(
            self.spreadsheet_id, self._range(READ_RANGE), params={"valueInputOption": "USER_ENTERED"},
            body={"values": [cells]}))
