"""The exports researchers have, read without being told which: reference managers, arXiv, Hugging Face, OpenReview.

Every format is turned into the flat record `structured.paper_from_record` already checks
(`title`, `abstract`, `authors`, `date`, and `id`, `url`, `doi` kept as metadata), so a
Zotero row, a BibTeX entry and an Atom entry meet the same rules as a JSONL line:

- JSON records are recognised one by one by their shape (`adapt_record`): Hugging Face
  daily papers (the paper under `paper`), OpenReview notes (`content.title`, API v2's
  `{"value": ...}` or v1's plain strings), CSL-JSON (`author` as `{family, given}`,
  `issued.date-parts`) and arXiv-style records (the abstract is `summary`);
- Zotero CSV is recognised by its `Abstract Note` column (`structured.csv_columns`);
- BibTeX (`.bib`) and arXiv API Atom XML (`.xml`, `.atom`, or a feed in a `.txt`) have readers here;
- a text file of bare arXiv ids holds no abstract: it is refused with that reason unless the
  caller supplied a fetcher (`--fetch`), which asks the arXiv API for them.

A field map (`--map abstract=summary --map title=paper.title`) covers anything else: each
target field is read from a dotted path into the record as the file spells it (or from a
CSV column), over whatever the shape gave.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError
from .inputtext import ErrorHandler, clean, lines

__all__ = [
    "MAP_TARGETS",
    "ArxivFetcher",
    "ReadOptions",
    "adapt_record",
    "arxiv_ids",
    "fetch_arxiv",
    "looks_like_atom",
    "parse_field_map",
    "read_atom",
    "read_bibtex",
    "unwrap",
]

# Fields a map may fill: the ones a `Paper` carries, and the identity kept in its metadata.
MAP_TARGETS = ("title", "abstract", "authors", "date", "id", "url", "doi")

ArxivFetcher = Callable[[Sequence[str]], str]  # arXiv ids in, the API's Atom XML out


@dataclass(frozen=True)
class ReadOptions:
    """How to read inputs beyond what their content tells: a field map, and whether ids may be looked up."""

    field_map: Mapping[str, str] = field(default_factory=dict)
    fetch: ArxivFetcher | None = None


def parse_field_map(items: Sequence[str]) -> dict[str, str]:
    """`["abstract=summary", "title=paper.title"]` as `{target: path}`; `InputError` names a bad item."""
    out: dict[str, str] = {}
    for item in items:
        target, eq, path = item.partition("=")
        target, path = target.strip().casefold(), path.strip()
        if not eq or not target or not path:
            raise InputError(f"--map {item!r}: expected FIELD=PATH, e.g. abstract=summary or title=paper.title")
        if target not in MAP_TARGETS:
            raise InputError(f"--map {item!r}: unknown field {target!r}; one of {', '.join(MAP_TARGETS)}")
        if target in out:
            raise InputError(f"--map {item!r}: {target} is mapped twice")
        out[target] = path
    return out


# --------------------------------------------------------------------------------------
# JSON shapes


def lookup(record: Any, path: str) -> Any:
    """The value at a dotted path (`paper.title`, `authors.0.name`), or None where the path leads nowhere."""
    value = record
    for part in path.split("."):
        if isinstance(value, dict):
            # Exact key first; a case-insensitive match because JSON exporters disagree on case.
            if part in value:
                value = value[part]
                continue
            value = next((v for k, v in value.items() if str(k).casefold() == part.casefold()), None)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
        if value is None:
            return None
    return value


def _scalars(record: Mapping[str, Any], used: set[str]) -> dict[str, Any]:
    # Extra scalar fields are kept as metadata; nested objects are left out, as their JSON
    # text (author objects, OpenReview's signatures) is noise in every output.
    return {k: v for k, v in record.items() if k not in used and isinstance(v, str | int | float) and v != ""}


def _iso_date(value: Any) -> Any:
    """ "2024-01-02T18:59:00.000Z" as "2024-01-02"; anything else as given."""
    if isinstance(value, str) and re.match(r"\d{4}-\d{2}-\d{2}[T ]", value):
        return value[:10]
    return value


def _arxiv_id(value: Any) -> str | None:
    """The id in "http://arxiv.org/abs/2401.01234v2", "arXiv:2401.01234" or "2401.01234"."""
    if not isinstance(value, str):
        return None
    match = _ARXIV_ID.search(value.strip())
    return match.group("id") if match else None


def _arxiv_url(arxiv_id: str | None) -> str | None:
    return f"https://arxiv.org/abs/{arxiv_id}" if arxiv_id else None


def _value(v: Any) -> Any:
    # OpenReview API v2 wraps every content field as {"value": ...}; v1 does not.
    return v.get("value") if isinstance(v, dict) else v


def _hf_daily(record: dict[str, Any]) -> dict[str, Any]:
    paper: dict[str, Any] = record["paper"]
    arxiv_id = paper.get("id") if isinstance(paper.get("id"), str) else None
    out = {
        "title": paper.get("title", record.get("title")),
        "abstract": paper.get("summary", paper.get("abstract", record.get("summary"))),
        "authors": paper.get("authors"),
        "date": _iso_date(record.get("publishedAt") or paper.get("publishedAt")),
        "id": arxiv_id,
        "url": _arxiv_url(arxiv_id),
    }
    return out | _scalars(paper, {"id", "title", "summary", "abstract", "authors", "publishedAt"})


def _openreview(record: dict[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = record["content"]
    note_id = record.get("forum") or record.get("id")
    stamp = next((record[k] for k in ("pdate", "odate", "cdate", "tcdate") if isinstance(record.get(k), int)), None)
    date = None if stamp is None else dt.datetime.fromtimestamp(stamp / 1000, dt.UTC).date().isoformat()
    out = {
        "title": _value(content.get("title")),
        "abstract": _value(content.get("abstract")),
        "authors": _value(content.get("authors")),
        "date": date,
        "id": record.get("id"),
        "url": f"https://openreview.net/forum?id={note_id}" if isinstance(note_id, str) else None,
    }
    venue = _value(content.get("venue"))
    if isinstance(venue, str) and venue:
        out["venue"] = venue
    if isinstance(record.get("forum"), str) and record.get("forum") != record.get("id"):
        out["forum"] = record["forum"]
    return out


def _csl_name(author: Any) -> Any:
    if not isinstance(author, dict):
        return author
    if author.get("literal"):
        return author["literal"]
    return " ".join(str(author[k]) for k in ("given", "non-dropping-particle", "family", "suffix") if author.get(k))


def _csl_date(issued: Any) -> Any:
    if not isinstance(issued, dict):
        return issued
    parts = issued.get("date-parts")
    if isinstance(parts, list) and parts and isinstance(parts[0], list) and parts[0]:
        try:
            numbers = [int(p) for p in parts[0][:3]]
        except (TypeError, ValueError):
            return issued.get("raw") or issued.get("literal")
        return "-".join([f"{numbers[0]:04d}", *(f"{n:02d}" for n in numbers[1:])])
    return issued.get("raw") or issued.get("literal")


def _csl(record: dict[str, Any]) -> dict[str, Any]:
    authors = record.get("author")
    out = {
        "title": record.get("title"),
        "abstract": record.get("abstract"),
        "authors": [_csl_name(a) for a in authors] if isinstance(authors, list) else authors,
        "date": _csl_date(record.get("issued")),
        "id": record.get("id"),
        "url": record.get("URL"),
        "doi": record.get("DOI"),
    }
    used = {"title", "abstract", "author", "issued", "id", "URL", "DOI"}
    return out | _scalars(record, used)


def _arxiv_record(record: dict[str, Any]) -> dict[str, Any]:
    authors = record.get("authors", record.get("author"))
    if isinstance(authors, dict):  # one author, as feed parsers give it
        authors = [authors]
    raw_id = record.get("id")
    arxiv_id = _arxiv_id(raw_id) if isinstance(raw_id, str) and "arxiv" in raw_id.casefold() else None
    out = {
        "title": record.get("title"),
        "abstract": record.get("summary"),
        "authors": authors,
        "date": _iso_date(record.get("published") or record.get("updated")),
        "id": arxiv_id or raw_id,
        "url": record.get("url") or _arxiv_url(arxiv_id),
        "doi": record.get("doi") or record.get("arxiv_doi"),
    }
    used = {"title", "summary", "authors", "author", "published", "id", "url", "doi", "arxiv_doi"}
    return out | _scalars(record, used)


def _is_csl(record: dict[str, Any]) -> bool:
    if isinstance(record.get("issued"), dict) or "container-title" in record:
        return True
    authors = record.get("author")
    return isinstance(authors, list) and any(
        isinstance(a, dict) and {"family", "given", "literal"} & a.keys() for a in authors
    )


def _shape(record: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    if isinstance(record.get("paper"), dict):
        return _hf_daily
    content = record.get("content")
    if isinstance(content, dict) and "title" in content:
        return _openreview
    if _is_csl(record):
        return _csl
    if isinstance(record.get("summary"), str) and not any(str(k).casefold() == "abstract" for k in record):
        return _arxiv_record
    return None


def adapt_record(record: dict[str, Any], field_map: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A record of a known shape (or under a field map) as the flat record every reader checks."""
    shape = _shape(record)
    flat = record if shape is None else {k: v for k, v in shape(record).items() if v is not None}
    if not field_map:
        return flat
    mapped: dict[str, Any] = {}
    for target, path in field_map.items():
        value = lookup(record, path)
        if value is not None:
            mapped[target] = value
    # The mapped fields first, as the checker takes the first key of each name (any case);
    # a top-level source is dropped so that its text is not kept twice, once as metadata.
    sources = {path for path in field_map.values() if "." not in path}
    rest = {k: v for k, v in flat.items() if str(k).casefold() not in mapped and k not in sources}
    return mapped | rest


# Wrappers that APIs put around a list of records: OpenReview's {"notes": [...], "count": N},
# Semantic Scholar's {"data": [...]}, and the like.
_WRAPPERS = ("notes", "papers", "results", "items", "data", "entries")


def unwrap(record: Any) -> str | None:
    """The key holding the records when one JSON object wraps a list of them, else None."""
    if not isinstance(record, dict) or "title" in record:
        return None
    for key in _WRAPPERS:
        value = record.get(key)
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            return key
    return None


# --------------------------------------------------------------------------------------
# BibTeX


@contextmanager
def _quiet_bibtexparser() -> Iterator[None]:
    # bibtexparser logs each broken block as a warning; it is reported here as one line instead.
    logger = logging.getLogger("bibtexparser")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


_MONTHS = {m: i for i, m in enumerate(("jan feb mar apr may jun jul aug sep oct nov dec").split(), start=1)}


def _bib_date(fields: dict[str, Any]) -> str | None:
    if isinstance(fields.get("date"), str):
        return str(fields["date"])
    year = str(fields.get("year", "")).strip()
    if not year:
        return None
    month = str(fields.get("month", "")).strip().casefold()
    number = _MONTHS.get(month[:3]) or (int(month) if month.isdigit() and 1 <= int(month) <= 12 else None)
    return f"{year}-{number:02d}" if number else year


def _bib_names(value: Any) -> list[str] | None:
    if not isinstance(value, list):
        return None
    names: list[str] = []
    for name in value:
        parts = [" ".join(getattr(name, p, [])) for p in ("first", "von", "last")]
        text = " ".join(p for p in parts if p)
        jr = " ".join(getattr(name, "jr", []))
        names.append(f"{text}, {jr}" if jr else text)
    return names


def read_bibtex(text: str, source: str, report: ErrorHandler) -> list[tuple[dict[str, Any], int]]:
    """Each entry as a flat record with its line; a broken entry is reported and the rest are read."""
    from bibtexparser import middlewares
    from bibtexparser.entrypoint import parse_string

    stack = [middlewares.LatexDecodingMiddleware(), middlewares.SeparateCoAuthors(), middlewares.SplitNameParts()]
    with _quiet_bibtexparser():
        library = parse_string(text, append_middleware=stack)
    for block in library.failed_blocks:
        error = block.error
        reason = getattr(error, "abort_reason", None) or str(error) or type(error).__name__
        line = None if block.start_line is None else block.start_line + 1
        report(InputError(f"malformed BibTeX entry: {clean(str(reason))}; entry skipped", path=source, line=line))
    out: list[tuple[dict[str, Any], int]] = []
    for entry in library.entries:
        fields = {f.key.casefold(): f.value for f in entry.fields}
        eprint = fields.get("eprint")
        url = fields.get("url") or (_arxiv_url(_arxiv_id(eprint)) if isinstance(eprint, str) else None)
        record: dict[str, Any] = {
            "title": fields.get("title"),
            "abstract": fields.get("abstract"),
            "authors": _bib_names(fields.get("author")),
            "date": _bib_date(fields),
            "id": entry.key,
            "url": url,
            "doi": fields.get("doi"),
            "type": entry.entry_type,
        }
        venue = fields.get("journal") or fields.get("booktitle")
        if isinstance(venue, str):
            record["venue"] = venue
        used = {"title", "abstract", "author", "date", "year", "month", "url", "doi", "journal", "booktitle"}
        record |= {k: v for k, v in fields.items() if k not in used and k not in record and isinstance(v, str)}
        out.append(({k: v for k, v in record.items() if v is not None}, (entry.start_line or 0) + 1))
    return out


# --------------------------------------------------------------------------------------
# arXiv: Atom XML and bare ids

_ATOM = "{http://www.w3.org/2005/Atom}"
_ARXIV = "{http://arxiv.org/schemas/atom}"
_ENTRY_TAG = re.compile(r"<(?:[A-Za-z_][\w.-]*:)?entry[\s>/]")
_ARXIV_ID = re.compile(
    r"(?:^|abs/|pdf/|arxiv:)(?P<id>\d{4}\.\d{4,5}(?:v\d+)?|[a-z][a-z.-]*(?:\.[A-Z]{2})?/\d{7}(?:v\d+)?)(?:\.pdf)?$",
    re.IGNORECASE,
)


def looks_like_atom(text: str) -> bool:
    head = text.lstrip("\ufeff \t\n")[:2000]
    return head.startswith("<") and "<feed" in head and "http://www.w3.org/2005/Atom" in head


def _text(element: ET.Element | None) -> str | None:
    if element is None:
        return None
    return " ".join("".join(element.itertext()).split()) or None


def read_atom(text: str, source: str) -> list[tuple[dict[str, Any], int]]:
    """The entries of an Atom feed (the arXiv API's answer) as arXiv-style records, each with its line.

    A feed that does not parse is one error for the whole file: XML has no way to resume
    after a broken element.
    """
    try:
        root = ET.fromstring(text.lstrip("\ufeff"))
    except ET.ParseError as exc:
        line, column = exc.position
        reason = str(exc).split(":")[0]
        raise InputError(f"invalid XML (column {column + 1}): {reason}", path=source, line=line) from None
    if root.tag != f"{_ATOM}feed":
        raise InputError(f"XML, but not an Atom feed (its root is <{root.tag.split('}')[-1]}>)", path=source)
    starts = [text.count("\n", 0, m.start()) + 1 for m in _ENTRY_TAG.finditer(text)]
    out: list[tuple[dict[str, Any], int]] = []
    for index, entry in enumerate(root.iter(f"{_ATOM}entry")):
        link = next(
            (e.get("href") for e in entry.findall(f"{_ATOM}link") if e.get("rel", "alternate") == "alternate"), None
        )
        record: dict[str, Any] = {
            "id": _text(entry.find(f"{_ATOM}id")),
            "title": _text(entry.find(f"{_ATOM}title")),
            "summary": _text(entry.find(f"{_ATOM}summary")),
            "authors": [n for a in entry.findall(f"{_ATOM}author") if (n := _text(a.find(f"{_ATOM}name")))],
            "published": _text(entry.find(f"{_ATOM}published")),
            "doi": _text(entry.find(f"{_ARXIV}doi")),
            "url": link,
        }
        category = entry.find(f"{_ARXIV}primary_category")
        if category is not None and category.get("term"):
            record["primary_category"] = category.get("term")
        line = starts[index] if index < len(starts) else 1
        out.append(({k: v for k, v in record.items() if v not in (None, [])}, line))
    return out


def arxiv_ids(text: str) -> list[tuple[str, int]] | None:
    """Every id with its line when a text file is a list of arXiv ids (blank and `#` lines aside), else None."""
    found: list[tuple[str, int]] = []
    for number, raw in enumerate(lines(text), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        arxiv_id = _arxiv_id(line)
        if arxiv_id is None:
            return None
        found.append((arxiv_id, number))
    return found or None


def _unversioned(arxiv_id: str) -> str:
    return re.sub(r"v\d+$", "", arxiv_id)


_API = "https://export.arxiv.org/api/query"
_BATCH = 100
_PAUSE_S = 3.0  # the arXiv API's terms ask for no more than one request every three seconds


def fetch_arxiv(
    ids: Sequence[str],
    *,
    urlopen: Callable[[str], bytes] | None = None,
    pause: Callable[[float], None] = time.sleep,
) -> str:
    """The arXiv API's Atom answer for `ids` (several requests joined into one feed for long lists)."""
    get = urlopen or _urlopen
    entries: list[str] = []
    for start in range(0, len(ids), _BATCH):
        if start:
            pause(_PAUSE_S)
        chunk = ids[start : start + _BATCH]
        query = urllib.parse.urlencode({"id_list": ",".join(chunk), "max_results": len(chunk)})
        try:
            body = get(f"{_API}?{query}").decode("utf-8", errors="replace")
        except OSError as exc:
            raise InputError(f"could not reach the arXiv API: {getattr(exc, 'reason', None) or exc}") from None
        entries.extend(re.findall(r"<entry>.*?</entry>", body, flags=re.DOTALL))
    # The answer's root may declare the arxiv: and opensearch: prefixes its entries use.
    namespaces = 'xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/"'
    return f'<feed xmlns="http://www.w3.org/2005/Atom" {namespaces}>\n{"".join(entries)}\n</feed>\n'


def _urlopen(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "summarizer (arXiv id lookup)"})
    with urllib.request.urlopen(request, timeout=30) as response:
        body: bytes = response.read()
    return body


def fetched_records(
    ids: list[tuple[str, int]], fetch: ArxivFetcher, source: str, report: ErrorHandler
) -> list[tuple[dict[str, Any], int]]:
    """The records arXiv returns for a file of ids, each at its id's line; an id arXiv does not know is reported."""
    feed = fetch([arxiv_id for arxiv_id, _ in ids])
    by_id: dict[str, dict[str, Any]] = {}
    for record, _ in read_atom(feed, f"{source} (arXiv API answer)"):
        found = _arxiv_id(str(record.get("id", "")))
        if found:
            by_id.setdefault(_unversioned(found), record)
    out: list[tuple[dict[str, Any], int]] = []
    for arxiv_id, line in ids:
        found_record = by_id.get(_unversioned(arxiv_id))
        if found_record is None:
            report(InputError(f"the arXiv API returned no paper for {arxiv_id}", path=source, line=line))
        else:
            out.append((found_record, line))
    return out
