"""Readers for structured exports: JSON (lines, one array or one object) and CSV.

Fields are matched by name, case-insensitively; `title` and `abstract` are required and
every other field is kept as metadata. A bad record (a malformed line, a missing cell) is
reported with its line and the others are still read; CSV quoting trouble costs a row,
not the rows after it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import InputError, InputWarning
from .formats import unwrap
from .inputtext import ErrorHandler, clean, has_surrogates, lines, make_paper
from .schemas import Paper

Adapt = Callable[[dict[str, Any]], dict[str, Any]]  # a record of a known shape (formats.py) made flat


def _same(record: dict[str, Any]) -> dict[str, Any]:
    return record


_KNOWN_FIELDS = ("title", "abstract", "authors", "date", "author_count")
_IDENTITY_FIELDS = ("id", "url", "doi")  # kept in metadata under these lowercase names
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_JSON_BLANK = re.compile(r"[ \t\n\r]*")
JSON_ERRORS = (ValueError, RecursionError)  # ValueError covers JSONDecodeError and 4300+ digit numbers


def _split_authors(value: Any) -> list[str] | None:
    if isinstance(value, list):
        # Scholarly APIs give authors as objects ({"authorId": ..., "name": ...}).
        items = [v["name"] if isinstance(v, dict) and "name" in v else v for v in value]
        names = [clean(_as_str(v)) for v in items if v is not None]
    elif isinstance(value, str):
        # "Doe, Jane; Roe, Rick" is one common form, so ";" wins when present.
        names = [clean(v) for v in value.split(";" if ";" in value else ",")]
    else:
        return None
    names = [n for n in names if n]
    return names or None


def _as_str(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return "a string" if isinstance(value, str) else "null"


def paper_from_record(record: dict[str, Any], source: str, line: int | None) -> Paper:
    fields: dict[str, Any] = {}
    metadata: dict[str, str] = {}
    for key, value in record.items():
        name = clean(str(key))
        lowered = name.casefold()
        if lowered in _KNOWN_FIELDS and lowered not in fields:
            fields[lowered] = value
        elif value is not None and value != "":  # an empty cell carries no information
            # One spelling for the input's identity ("DOI", "Url", "ID"), so later stages find it.
            key = lowered if lowered in _IDENTITY_FIELDS and lowered not in metadata else name
            metadata.setdefault(key, clean(_as_str(value)))
    missing: list[str] = []
    problems: list[str] = []
    for f in ("title", "abstract"):
        value = fields.get(f)
        if isinstance(value, str):
            fields[f] = clean(value)
            if not fields[f]:
                missing.append(f)
        elif value is None:
            missing.append(f)
        else:
            problems.append(f"{f} is {_json_type(value)}, expected a string")
    if missing:
        absent = [f for f in missing if f not in fields]
        keys = f" (its keys: {', '.join(repr(k) for k in list(record)[:8])})" if absent and record else ""
        problems.insert(0, f"missing or empty {' and '.join(missing)}{keys}")
    if problems:
        raise InputError("; ".join(problems), path=source, line=line)
    kwargs: dict[str, Any] = {"metadata": metadata}
    authors = _split_authors(fields.get("authors"))
    if authors is not None:
        kwargs["authors"] = authors
    count = fields.get("author_count")
    if count is not None and str(count).strip().isdigit():
        kwargs["author_count"] = int(str(count).strip())
    elif count not in (None, ""):
        metadata["author_count"] = clean(_as_str(count))
    if fields.get("date") not in (None, ""):
        kwargs["date"] = clean(_as_str(fields["date"]))
    return make_paper(fields["title"], fields["abstract"], source=source, line=line, **kwargs)


# --------------------------------------------------------------------------------------
# JSON


def loads(text: str) -> Any:
    # strict=False: a raw tab or control character inside a string is a common exporter
    # slip; the value is cleaned afterwards rather than the record lost.
    return json.loads(text, strict=False)


def json_problem(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON (column {exc.colno}): {exc.msg}"
    if isinstance(exc, RecursionError):
        return "invalid JSON: nested too deeply"
    return f"invalid JSON: {str(exc).split(';')[0]}"


class _LineOrder:
    """Holds one file's problems and hands them on in line order.

    The readers find problems in two passes (parsing, then checking each record); without
    this a user would read about line 9 before line 3.
    """

    def __init__(self) -> None:
        self._held: list[tuple[int, int, ErrorHandler, InputError]] = []

    def to(self, handler: ErrorHandler) -> ErrorHandler:
        def hold(error: InputError) -> None:
            self._held.append((error.line or 0, len(self._held), handler, error))

        return hold

    def release(self) -> None:
        held, self._held = sorted(self._held, key=lambda h: (h[0], h[1])), []
        for _, _, handler, error in held:
            handler(error)


def read_json(text: str, source: str, report: ErrorHandler, warn: ErrorHandler, adapt: Adapt = _same) -> list[Paper]:
    order = _LineOrder()
    papers = _read_json(text, source, order.to(report), order.to(warn), adapt)
    order.release()
    return papers


def _read_json(text: str, source: str, report: ErrorHandler, warn: ErrorHandler, adapt: Adapt) -> list[Paper]:
    if _is_array_document(text):
        records = _json_array(text, source, report)
    else:
        records = _json_lines(text, source, report)
    if len(records) == 1 and (key := unwrap(records[0][0])) is not None:
        records = _unwrapped(text, records[0], key, source)
    return papers_from_records(records, source, report, warn, adapt)


def papers_from_records(
    records: list[tuple[Any, int, str]], source: str, report: ErrorHandler, warn: ErrorHandler, adapt: Adapt = _same
) -> list[Paper]:
    """Check each parsed record (after `adapt` has made a known shape flat) into a `Paper`; report the rest."""
    papers: list[Paper] = []
    for item, number, raw in records:
        if _SURROGATE_ESCAPE.search(raw) and has_surrogates(json.dumps(item, ensure_ascii=False)):
            warn(InputWarning("lone UTF-16 surrogate escape(s) replaced with U+FFFD", path=source, line=number))
        if not isinstance(item, dict):
            report(InputError(f"expected a JSON object, got {_json_type(item)}", path=source, line=number))
            continue
        try:
            papers.append(paper_from_record(adapt(item), source, number))
        except InputError as exc:
            report(exc)
    return papers


def _unwrapped(text: str, wrapper: tuple[Any, int, str], key: str, source: str) -> list[tuple[Any, int, str]]:
    """The records inside an API's wrapper object, each with the line it starts on where that can be found."""
    items: list[Any] = wrapper[0][key]
    match = re.search(rf'"{re.escape(key)}"\s*:\s*\[', text)
    if match is not None:
        found = _json_array(text, source, lambda error: None, start=match.end() - 1)
        if [item for item, _, _ in found] == items:
            return found
    return [(item, wrapper[1], json.dumps(item)) for item in items]


def _is_array_document(text: str) -> bool:
    """A file holding one JSON array (a common export), rather than JSON lines that happen to start with one."""
    if not text.lstrip().startswith("["):
        return False
    head, newline, rest = text.strip().partition("\n")
    if not newline or not rest.strip():
        return True
    try:
        loads(head)
    except JSON_ERRORS:
        return True  # the array goes on past its first line
    return False


def _json_lines(text: str, source: str, report: ErrorHandler) -> list[tuple[Any, int, str]]:
    records: list[tuple[Any, int, str]] = []
    first = True
    for number, raw in enumerate(lines(text), start=1):
        raw = raw.lstrip("\ufeff")  # concatenated files each bring their byte-order mark
        if not raw.strip():
            continue
        try:
            records.append((loads(raw), number, raw))
        except JSON_ERRORS as exc:
            if first and raw.lstrip().startswith("{"):
                # Not one object per line: perhaps one object over many lines (a pretty-printed paper).
                try:
                    return [(loads(text), number, text)]
                except JSON_ERRORS:
                    pass
            report(InputError(json_problem(exc), path=source, line=number))
        first = False
    return records


def _skip_blank(text: str, pos: int) -> int:
    match = _JSON_BLANK.match(text, pos)
    return match.end() if match else pos


def _json_array(text: str, source: str, report: ErrorHandler, start: int | None = None) -> list[tuple[Any, int, str]]:
    """The elements of a file holding one JSON array (or of the array at `start`), each with its line.

    Decoded element by element, so a broken element costs the elements after it (there is no
    way to resynchronise inside an array) but not the ones before it, and every error and
    every paper has a line.
    """
    decoder = json.JSONDecoder(strict=False)
    records: list[tuple[Any, int, str]] = []
    line, counted = 1, 0
    inner = start is not None  # an array inside a wrapper object: what follows it is the wrapper's

    def line_at(pos: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, pos)
        counted = pos
        return line

    pos = _skip_blank(text, (text.index("[") if start is None else start) + 1)
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            try:
                value, end = decoder.raw_decode(text, pos)
            except JSON_ERRORS as exc:
                where = exc.lineno if isinstance(exc, json.JSONDecodeError) else line_at(pos)
                report(InputError(f"{json_problem(exc)}; the rest of the array is skipped", path=source, line=where))
                return records
            records.append((value, line_at(pos), text[pos:end]))
            pos = _skip_blank(text, end)
            if text.startswith(",", pos):
                pos = _skip_blank(text, pos + 1)
                continue
            if text.startswith("]", pos):
                pos += 1
                break
            message = "invalid JSON: expected ',' or ']' after an array element; the rest is skipped"
            report(InputError(message, path=source, line=line_at(pos)))
            return records
    if text[pos:].strip() and not inner:
        report(InputError("invalid JSON: text after the array; ignored", path=source, line=line_at(pos)))
    return records


# --------------------------------------------------------------------------------------
# CSV


# Zotero's "Export Collection… > CSV" names its columns its own way, and writes authors as
# "Family, Given; Family, Given". The first non-empty column of each tuple wins.
_ZOTERO: dict[str, tuple[str, ...]] = {
    "title": ("Title",),
    "abstract": ("Abstract Note",),
    "authors": ("Author",),
    "date": ("Date", "Publication Year"),
    "doi": ("DOI",),
    "url": ("Url",),
    "id": ("Key",),
}


def _delimiter(text: str, wanted: set[str]) -> str:
    # European spreadsheets write ";", and tab-separated files are often named .csv.
    header = next((line for line in lines(text) if line.strip()), "")
    found = {d: len({clean(cell).strip('"').casefold() for cell in header.split(d)} & wanted) for d in (",", ";", "\t")}
    return max(found, key=lambda d: found[d]) if any(found.values()) else ","


def _columns(names: list[str], field_map: Mapping[str, str]) -> tuple[dict[str, list[int]], bool]:
    """Which columns fill which field under a map or Zotero's names ({} under neither), and whether it is Zotero."""
    folded = [n.casefold() for n in names]
    zotero = "abstract note" in folded and "abstract" not in folded
    if not field_map and not zotero:
        return {}, False
    columns: dict[str, list[int]] = {}
    for target in ("title", "abstract", "authors", "date", "doi", "url", "id"):
        wanted = [field_map[target]] if target in field_map else []
        wanted += list(_ZOTERO[target]) if zotero else [target]
        found = [folded.index(w.casefold()) for w in wanted if w.casefold() in folded]
        if found:
            columns[target] = list(dict.fromkeys(found))
    return columns, zotero


def _zotero_name(name: str) -> str:
    family, comma, given = name.partition(",")
    return f"{given.strip()} {family.strip()}" if comma and given.strip() else name.strip()


def _mapped_row(names: list[str], row: list[str], columns: dict[str, list[int]], zotero: bool) -> dict[str, str]:
    record = {target: next((row[i] for i in found if row[i].strip()), "") for target, found in columns.items()}
    if zotero and record.get("authors"):
        record["authors"] = "; ".join(_zotero_name(n) for n in record["authors"].split(";"))
    used = {i for found in columns.values() for i in found}
    # Empty cells are dropped here: Zotero writes some 80 columns, most of them empty.
    record.update({names[i]: cell for i, cell in enumerate(row) if i not in used and cell.strip()})
    return record


def _unclosed(text: str, delimiter: str) -> bool:
    """Whether a row's text ends inside a quoted field (strict parsing tells it from a stray quote)."""
    try:
        for _ in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _csv_rows(text: str, delimiter: str, source: str, report: ErrorHandler) -> list[tuple[int, list[str]]]:
    """Every row with the line it starts on.

    An unclosed quote makes the csv module read the rest of the file as one field; such a
    row is reported and the lines after its first are read again, so one stray quote costs
    one row, not every row after it.
    """
    all_lines = lines(text)
    out: list[tuple[int, list[str]]] = []
    first = 0  # index in all_lines where the current reader starts
    while first < len(all_lines):
        reader = csv.reader(io.StringIO("\n".join(all_lines[first:]), newline=""), delimiter=delimiter)
        rows: list[tuple[int, int, list[str]]] = []
        end, restart = 0, None
        try:
            for row in reader:
                rows.append((first + end + 1, first + reader.line_num, row))
                end = reader.line_num
        except csv.Error as exc:
            report(InputError(f"malformed CSV: {exc}; row skipped", path=source, line=first + end + 1))
            restart = first + max(reader.line_num, end + 1)
        if restart is None and rows:
            start, stop, _ = rows[-1]
            if stop > start and _unclosed("\n".join(all_lines[start - 1 : stop]), delimiter):
                rows.pop()
                message = (
                    "unclosed quote: the quoted field opened in this row runs to the end of the file; "
                    "the row is skipped and the lines after its first are read as rows"
                )
                report(InputError(message, path=source, line=start))
                restart = start  # the index of the line after the row's first
        out.extend((start, row) for start, _, row in rows)
        if restart is None:
            break
        first = restart
    return out


def read_csv(text: str, source: str, report: ErrorHandler, field_map: Mapping[str, str] | None = None) -> list[Paper]:
    order = _LineOrder()
    papers = _read_csv(text, source, order.to(report), field_map or {})
    order.release()
    return papers


def _read_csv(text: str, source: str, report: ErrorHandler, field_map: Mapping[str, str]) -> list[Paper]:
    limit = csv.field_size_limit()
    # No field is longer than the file; the default limit (128 KiB) made one long abstract cost the whole file.
    csv.field_size_limit(max(limit, len(text) + 1))
    try:
        wanted = {"title", "abstract", "abstract note"} | {v.casefold() for v in field_map.values()}
        rows = _csv_rows(text, _delimiter(text, wanted), source, report)
    finally:
        csv.field_size_limit(limit)
    rows = [(number, row) for number, row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise InputError("no header row; expected one with title and abstract columns", path=source)
    header_line, header = rows[0]
    names = [clean(h) for h in header]
    folded = [n.casefold() for n in names]
    columns, zotero = _columns(names, field_map)
    missing = [c for c in ("title", "abstract") if c not in (columns if columns else folded)]
    if missing:
        shown = ", ".join(repr(n) for n in names[:8])
        mapped = [f"{c}={field_map[c]!r}" for c in missing if c in field_map]
        hint = (
            f"; --map {', --map '.join(mapped)}: no such column" if mapped else "; or name them: --map abstract=Summary"
        )
        raise InputError(
            f"CSV header lacks required column(s): {', '.join(missing)} (its columns: {shown}){hint}",
            path=source,
            line=header_line,
        )
    doubled = [c for c in ("title", "abstract") if folded.count(c) > 1 and not columns]
    if doubled:
        raise InputError(
            f"CSV header has more than one {' and '.join(doubled)} column; keep one", path=source, line=header_line
        )
    papers: list[Paper] = []
    for start, row in rows[1:]:
        short = ""
        if len(row) > len(names):
            if any(cell.strip() for cell in row[len(names) :]):
                message = f"row has {len(row)} fields but the header has {len(names)}"
                report(InputError(message, path=source, line=start))
                continue
            row = row[: len(names)]  # trailing empty cells: a spreadsheet's stray commas
        elif len(row) < len(names):
            short = f"row has {len(row)} of the header's {len(names)} fields: "
            row = row + [""] * (len(names) - len(row))
        try:
            record = _mapped_row(names, row, columns, zotero) if columns else dict(zip(names, row, strict=True))
            papers.append(paper_from_record(record, source, start))
        except InputError as exc:
            report(InputError(short + exc.reason, path=source, line=start) if short else exc)
    return papers
