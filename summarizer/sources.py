"""Input readers: turn the files a user points at into `Paper` records.

Read: JSON lines (or one JSON array or object), CSV, two kinds of text dump copied from
web pages (`dumps.py`), and the exports in `formats.py` (Zotero CSV, CSL-JSON, BibTeX, arXiv
Atom and JSON, Hugging Face daily papers, OpenReview notes), each told by its extension and
content. Bytes become text and text becomes checked titles and abstracts in `inputtext.py`,
the same way for every format.

Error contract: a problem with one record (a malformed JSON line, an empty title) goes
to `on_error`, and reading continues, so one bad line does not cost a whole batch. A
problem with the file as a whole (missing, unknown format, binary, CSV header without a
required column) always raises: there is nothing left to read, and a callback that only
collects errors would otherwise turn it into a silent empty result. A repair that keeps
the data (a bad byte replaced, a conflicting duplicate merged) is an `InputWarning`: it goes
to `on_error` too, and without a callback it is not raised.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .dumps import looks_like_feed, looks_like_page, read_feed, read_page
from .errors import InputError, InputWarning
from .formats import ReadOptions, adapt_record, arxiv_ids, fetched_records, looks_like_atom, read_atom, read_bibtex
from .inputtext import ErrorHandler, clean, decode, display_path, ignore, lines, make_paper, read_text
from .schemas import Paper, normalise_title, normalise_ws
from .structured import JSON_ERRORS, json_problem, loads, paper_from_record, papers_from_records, read_csv, read_json

__all__ = [
    "SUPPORTED_FORMATS",
    "ErrorHandler",
    "InputWarning",
    "ReadOptions",
    "find_paper",
    "paper_from_text",
    "pick_paper",
    "read_inputs",
    "read_papers",
]

SUPPORTED_FORMATS = (".jsonl", ".json", ".csv", ".txt", ".bib", ".xml", ".atom")
_AS_CSV = "save it as CSV (UTF-8) with title and abstract columns"
_FORMAT_HINTS = {
    ".xlsx": _AS_CSV,
    ".xls": _AS_CSV,
    ".ods": _AS_CSV,
    ".tsv": "rename it to .csv (tab-separated columns are recognised)",
    ".pdf": "this reads lists of papers (titles and abstracts), not a paper's PDF",
    ".parquet": "export it as JSONL or CSV",
}


def _raise(error: InputError) -> None:
    raise error


# --------------------------------------------------------------------------------------
# Public API


def read_papers(
    path: Path | str, *, on_error: ErrorHandler | None = None, options: ReadOptions | None = None
) -> list[Paper]:
    """Read one file; the format comes from the extension and the content."""
    options = options or ReadOptions()
    field_map = options.field_map

    def adapt(record: dict[str, Any]) -> dict[str, Any]:
        return adapt_record(record, field_map)

    warn = on_error or ignore
    reported = 0

    def report(error: InputError) -> None:
        nonlocal reported
        reported += 1
        (on_error or _raise)(error)

    p = Path(path)
    source = display_path(p)
    suffix = p.suffix.lower()
    if suffix not in SUPPORTED_FORMATS:
        hint = f"; {_FORMAT_HINTS[suffix]}" if suffix in _FORMAT_HINTS else ""
        raise InputError(
            f"unsupported input format {suffix or '(no extension)'!r}; supported: {', '.join(SUPPORTED_FORMATS)}{hint}",
            path=source,
        )
    text = read_text(p, warn)
    if not text.strip():
        warn(InputWarning("the file is empty; no papers read", path=source))
        return []
    if suffix == ".csv":
        papers = read_csv(text, source, report, field_map)
    elif suffix in (".jsonl", ".json"):
        papers = read_json(text, source, report, warn, adapt)
    elif suffix == ".bib":
        records = [(record, line, "") for record, line in read_bibtex(text, source, report)]
        papers = papers_from_records(records, source, report, warn, adapt)
    elif suffix in (".xml", ".atom") or looks_like_atom(text):
        records = [(record, line, "") for record, line in read_atom(text, source)]
        papers = papers_from_records(records, source, report, warn, adapt)
    elif (ids := arxiv_ids(text)) is not None:
        if options.fetch is None:
            raise InputError(
                f"a list of {len(ids)} arXiv id(s): ids alone carry no abstract; pass --fetch to look them up "
                "on the arXiv API (needs the network)",
                path=source,
            )
        fetched = [(record, line, "") for record, line in fetched_records(ids, options.fetch, source, report)]
        papers = papers_from_records(fetched, source, report, warn, adapt)
    else:
        text_lines = lines(text)
        if looks_like_feed(text_lines):
            papers = read_feed(text_lines, source, report)
        elif looks_like_page(text_lines):
            papers = read_page(text_lines, source, report)
        else:
            raise InputError(
                "unrecognised text format: expected a feed dump (first line a subject code and date, "
                "e.g. 'AIOct 30, 2023') or a daily-papers page dump (title, blank line, abstract)",
                path=source,
            )
    if not papers and not reported:
        warn(InputWarning("no papers in this file", path=source))
    return papers


def read_inputs(
    paths: Iterable[Path | str], *, on_error: ErrorHandler | None = None, options: ReadOptions | None = None
) -> list[Paper]:
    """Read several files and merge duplicates (same id, i.e. same normalised title), in first-seen order.

    The first occurrence wins, except that a longer abstract extending it replaces a shortened
    one; a duplicate that disagrees (another abstract, another input id) is reported.
    """
    warn = on_error or ignore
    merged: dict[str, Paper] = {}
    by_input_id: dict[str, Paper] = {}
    for path in paths:
        for paper in read_papers(path, on_error=on_error, options=options):
            first = merged.get(paper.id)
            if first is None:
                merged[paper.id] = paper
                _check_input_id(paper, by_input_id, warn)
                continue
            if conflict := _conflict(first, paper):
                message = f"same title as {first.title!r} ({_where(first)}) but {conflict}; the first is kept"
                warn(InputWarning(message, path=paper.source, line=paper.line))
            # Re-assigning an existing key keeps its position, so order stays first-seen.
            merged[paper.id] = _merge(first, paper)
    return list(merged.values())


def find_paper(papers: Sequence[Paper], query: str) -> Paper:
    """Find one paper by id, by title, or by a unique piece of its title."""
    q = query.strip()
    for paper in papers:
        if paper.id == q:
            return paper
    # The input's own identifier (e.g. an arXiv id from a JSONL `id` column).
    for paper in papers:
        if q and paper.metadata.get("id") == q:
            return paper
    wanted = normalise_title(q)
    if not wanted:
        raise InputError(f"no paper matches {query!r}: the query is empty")
    for paper in papers:
        if normalise_title(paper.title) == wanted:
            return paper
    hits: dict[str, Paper] = {}  # by id: unmerged duplicates are one paper, not ambiguity
    for paper in papers:
        if paper.id not in hits and wanted in normalise_title(paper.title):
            hits[paper.id] = paper
    if len(hits) == 1:
        return next(iter(hits.values()))
    if not hits:
        raise InputError(f"no paper matches {query!r} (by id or title)")
    shown = "; ".join(f"{p.id} {p.title!r}" for p in list(hits.values())[:5])
    more = f" and {len(hits) - 5} more" if len(hits) > 5 else ""
    raise InputError(f"{query!r} matches {len(hits)} papers: {shown}{more}; use the id or more of the title")


# --------------------------------------------------------------------------------------
# Duplicates


def _where(paper: Paper) -> str:
    return f"{paper.source}:{paper.line}" if paper.line is not None else str(paper.source)


def _extends(longer: str, shorter: str) -> bool:
    # Page dumps cut abstracts short, sometimes with an ellipsis.
    return len(longer) > len(shorter) and longer.startswith(shorter.rstrip(" .…"))


def _conflict(first: Paper, later: Paper) -> str:
    reasons: list[str] = []
    a, b = normalise_ws(first.abstract), normalise_ws(later.abstract)
    if a != b and not _extends(a, b) and not _extends(b, a):
        reasons.append("a different abstract")
    ida, idb = first.metadata.get("id"), later.metadata.get("id")
    if ida and idb and ida != idb:
        reasons.append(f"a different id ({idb!r}, not {ida!r})")
    return " and ".join(reasons)


def _check_input_id(paper: Paper, seen: dict[str, Paper], warn: ErrorHandler) -> None:
    input_id = paper.metadata.get("id")
    if not input_id:
        return
    other = seen.setdefault(input_id, paper)
    if other is not paper:
        message = (
            f"input id {input_id!r} is also the id of {other.title!r} ({_where(other)}); both are kept, "
            "as papers are told apart by their titles"
        )
        warn(InputWarning(message, path=paper.source, line=paper.line))


def _merge(first: Paper, later: Paper) -> Paper:
    update: dict[str, Any] = {}
    if _extends(normalise_ws(later.abstract), normalise_ws(first.abstract)):
        update["abstract"] = later.abstract  # the full text wins over a page's shortened one
    for field in ("authors", "author_count", "date"):
        if getattr(first, field) is None and getattr(later, field) is not None:
            update[field] = getattr(later, field)
    if set(later.metadata) - set(first.metadata):
        update["metadata"] = {**later.metadata, **first.metadata}
    return first.model_copy(update=update) if update else first


# --------------------------------------------------------------------------------------
# One paper (the per-paper command)


def paper_from_text(text: str, source: str, options: ReadOptions | None = None) -> Paper:
    """A single paper typed or piped in: a JSON object (any shape `formats.py` knows), or title line then abstract."""
    text = clean(text)
    if text.startswith("{"):
        try:
            record = loads(text)
        except JSON_ERRORS as exc:
            line = exc.lineno if isinstance(exc, json.JSONDecodeError) else None
            message = json_problem(exc).replace("invalid JSON", "not valid JSON")
            raise InputError(message, path=source, line=line) from None
        if not isinstance(record, dict):
            raise InputError("expected a JSON object with 'title' and 'abstract'", path=source)
        return paper_from_record(adapt_record(record, (options or ReadOptions()).field_map), source, 1)
    head, _, rest = text.partition("\n")
    if not head.strip() or not rest.strip():
        raise InputError("expected a title on the first line and the abstract below it", path=source)
    return make_paper(clean(head), normalise_ws(rest), source=source, line=1)


def pick_paper(
    *,
    path: Path | str | None = None,
    query: str | None = None,
    title: str | None = None,
    abstract: str | None = None,
    stdin_text: str | None = None,
    options: ReadOptions | None = None,
) -> Paper:
    """Resolve the one paper a per-paper command is about, from whichever input was given."""
    if title is not None or abstract is not None:
        if not (title and title.strip()) or not (abstract and abstract.strip()):
            raise InputError("--title and --abstract must be given together, and neither may be empty")
        return make_paper(clean(title), normalise_ws(clean(abstract)), source="<command line>", line=None)
    if stdin_text is not None:
        return paper_from_text(stdin_text, "<stdin>", options)
    if path is None:
        raise InputError("no paper given: pass a file, --title and --abstract, or pipe one on stdin")
    p = Path(path)
    try:
        papers = read_papers(p, options=options)
    except InputError:
        if p.suffix.lower() != ".txt" or not p.is_file():
            raise
        text = read_text(p, ignore)
        # A list of ids or a broken feed is not one paper typed in: its first line is no title.
        if arxiv_ids(text) is not None or looks_like_atom(text):
            raise
        return paper_from_text(text, display_path(p), options)
    if not papers:
        raise InputError("no papers found", path=display_path(p))
    if query is not None:
        if query.startswith("#") and query[1:].isdigit():
            index = int(query[1:])
            if not 1 <= index <= len(papers):
                raise InputError(f"--paper {query}: the file has papers #1 to #{len(papers)}", path=display_path(p))
            return papers[index - 1]
        return find_paper(papers, query)
    if len(papers) > 1:
        raise InputError(
            f"the file holds {len(papers)} papers; choose one with --paper (an id, a title, or #1..#{len(papers)})",
            path=display_path(p),
        )
    return papers[0]


def paper_from_stdin(data: bytes, options: ReadOptions | None = None) -> Paper:
    """The paper piped to a per-paper command, checked as a file is.

    Binary data, a PDF or an archive is refused, bad bytes are repaired as in a file, and a
    table or a list of records (a CSV, JSON Lines, a JSON array) is refused rather than sent
    to the model as if it were one paper's text.
    """
    source = "<stdin>"
    text = decode(data, source, ignore)
    body = text.strip()
    first = body.partition("\n")[0]
    kind = None
    if body.startswith("["):
        kind = "a JSON array"
    elif body.startswith("{") and sum(line.lstrip().startswith("{") for line in body.splitlines()) > 1:
        kind = "JSON Lines"
    else:
        header = {field.strip().strip('"').strip().casefold() for field in re.split(r"[,;\t]", first)}
        if len(header) > 1 and header & {"title", "abstract"}:
            kind = "a CSV table"
    if kind is not None:
        raise InputError(
            f"standard input holds {kind}, not one paper; save it to a file with its extension and pass the "
            "file (choose a paper with --paper)",
            path=source,
        )
    return paper_from_text(text, source, options)
