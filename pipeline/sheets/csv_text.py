"""The text of a CSV file as spreadsheet programs write it, kept as it is.

The local sheet (local_csv.py) reads a file saved by Excel, LibreOffice or a text
editor and writes back only the pipeline's cells. So this module keeps what those
programs chose: the encoding (UTF-8, with or without a byte-order mark, else the
Windows code page), the delimiter (`,`, `;` or tab), each line's ending and every
cell's own bytes (quoted or not). A record remembers where each of its cells lies in the
text, and a change replaces those characters only; every other byte stays.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

BOMS = [(codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")]
FALLBACK_ENCODING = "cp1252"  # what Excel's plain "CSV" is saved in on Western European Windows
DELIMITERS = (",", ";", "\t")


class UnclosedQuote(ValueError):
    """The text ends inside a quoted cell: the file is cut short (or still being written)."""

    def __init__(self, line: int):
        super().__init__(f"a quoted cell opened on line {line} is never closed")
        self.line = line


@dataclass
class Record:
    start: int  # offset of its first character in the text
    end: int  # offset just after its last cell (before the line ending)
    ending: str  # "\r\n", "\n", "\r" or "" (the last line of a file without a final newline)
    spans: list[tuple[int, int]]  # each cell's characters, quotes included
    cells: list[str]  # each cell's value

    @property
    def blank(self) -> bool:
        return not any(c.strip() for c in self.cells)


@dataclass
class CsvText:
    text: str
    delimiter: str
    encoding: str
    bom: bytes
    records: list[Record] = field(default_factory=list)

    @property
    def line_ending(self) -> str:
        """The ending new lines get: the header's (every program writes one kind)."""
        return next((r.ending for r in self.records if r.ending), "\r\n")

    def encode(self, text: str | None = None) -> bytes:
        """The file's bytes for `text` (default: as read), in the encoding read."""
        return self.bom + (self.text if text is None else text).encode(self.encoding, errors="surrogateescape")

    def cell_text(self, value: str, *, quoted: bool = False) -> str:
        """How `value` is written as one cell: quoted where it must be (or where the cell
        it replaces was), and with what the file's encoding cannot hold replaced by '?'."""
        value = value.encode(self.encoding, errors="replace").decode(self.encoding)
        if quoted or any(ch in value for ch in (self.delimiter, '"', "\r", "\n")):
            return '"' + value.replace('"', '""') + '"'
        return value

    def with_cells(self, changes: dict[int, dict[int, str]], *, new_row: list[str] | None = None) -> str:
        """The text with the cells `changes` names ({record index: {cell index: value}})
        replaced, a record's missing cells added at its end; `new_row` is appended as a
        last line. Nothing else changes."""
        out, pos = [], 0
        for i in sorted(changes):
            rec = self.records[i]
            raw = [self.text[s:e] for s, e in rec.spans]
            for j in sorted(changes[i]):
                while len(raw) <= j:
                    raw.append("")
                was_quoted = j < len(rec.spans) and raw[j].startswith('"')
                raw[j] = self.cell_text(changes[i][j], quoted=was_quoted)
            out += [self.text[pos:rec.start], self.delimiter.join(raw)]
            pos = rec.end
        out.append(self.text[pos:])
        if new_row is not None:
            if self.records and not self.records[-1].ending:
                out.append(self.line_ending)
            out += [self.delimiter.join(self.cell_text(v) for v in new_row), self.line_ending]
        return "".join(out)


def decode(raw: bytes) -> tuple[str, str, bytes]:
    """(text, encoding, bom). UTF-8 if the bytes are UTF-8, else the Windows code page;
    decoding never fails, and `CsvText.encode` gives back the same bytes."""
    for bom, encoding in BOMS:
        if raw.startswith(bom):
            errors = "surrogateescape" if encoding == "utf-8" else "strict"
            return raw[len(bom):].decode(encoding, errors=errors), encoding, bom
    try:
        return raw.decode("utf-8"), "utf-8", b""
    except UnicodeDecodeError:
        # Bytes cp1252 leaves undefined (0x81, 0x8d ...) are kept as they are.
        return raw.decode(FALLBACK_ENCODING, errors="surrogateescape"), FALLBACK_ENCODING, b""


def _field_end(delimiter: str) -> re.Pattern:
    return re.compile("[" + re.escape(delimiter) + "\r\n]")


def split_records(text: str, delimiter: str, *, limit: int | None = None) -> list[Record]:
    """The records of `text` as Python's csv module reads them (double quotes, `""` for a
    quote inside a quoted cell), each with where its cells lie. Blank lines are records
    of one empty cell. Raises UnclosedQuote if the text ends inside a quoted cell."""
    stop = _field_end(delimiter)
    records: list[Record] = []
    i, n = 0, len(text)
    while i < n and (limit is None or len(records) < limit):
        start, spans, cells = i, [], []
        while True:
            begin = i
            if i < n and text[i] == '"':
                parts, i = [], i + 1
                while True:
                    q = text.find('"', i)
                    if q < 0:
                        raise UnclosedQuote(text.count("\n", 0, begin) + 1)
                    parts.append(text[i:q])
                    if text.startswith('"', q + 1):
                        parts.append('"')
                        i = q + 2
                        continue
                    i = q + 1
                    break
                m = stop.search(text, i)  # characters after the closing quote belong to the cell
                k = m.start() if m else n
                parts.append(text[i:k])
                value, i = "".join(parts), k
            else:
                m = stop.search(text, i)
                k = m.start() if m else n
                value, i = text[i:k], k
            spans.append((begin, i))
            cells.append(value)
            if i < n and text[i] == delimiter:
                i += 1
                continue
            break
        end = i
        if text.startswith("\r\n", i):
            i += 2
        elif i < n:
            i += 1  # "\n" or "\r"
        records.append(Record(start, end, text[end:i], spans, cells))
    return records


def guess_delimiter(text: str, known_labels: set[str], label_key) -> str:
    """The delimiter under which the header names the most known columns (then: gives the
    most cells); ',' when nothing tells them apart."""
    best, best_score = ",", (0, 1)
    for delimiter in DELIMITERS:
        try:
            header = split_records(text, delimiter, limit=1)
        except UnclosedQuote:
            continue
        cells = header[0].cells if header else []
        score = (sum(label_key(c) in known_labels for c in cells), len(cells))
        if score > best_score:
            best, best_score = delimiter, score
    return best


def parse(raw: bytes, known_labels: set[str], label_key) -> CsvText:
    text, encoding, bom = decode(raw)
    delimiter = guess_delimiter(text, known_labels, label_key)
    return CsvText(text, delimiter, encoding, bom, split_records(text, delimiter))
