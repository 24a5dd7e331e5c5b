"""Input readers: turn the files a user points at into `Paper` records.

Four shapes are read: JSON lines, CSV, and two kinds of text dump copied from web pages
(a daily-papers page and a recommendation feed). The text dumps have no delimiters, so
their readers decide structurally (line lengths, blank lines, footers) rather than by
fixed offsets: pages drift, and a reader that counts lines breaks silently.

Error contract: a problem with one record (a malformed JSON line, an empty title) goes
to `on_error`, and reading continues, so one bad line does not cost a whole batch. A
problem with the file as a whole (missing, unknown format, CSV header without a required
column) always raises: there is nothing left to read, and a callback that only collects
errors would otherwise turn it into a silent empty result.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .errors import InputError
from .schemas import Paper, normalise_title, normalise_ws

ErrorHandler = Callable[[InputError], None]

SUPPORTED_FORMATS = (".jsonl", ".json", ".csv", ".txt")

# C0/C1 controls other than tab and newline: they come from copy-paste and bad exports,
# and would otherwise reach prompts and output files.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_DATE = rf"{_MONTH} \d{{1,2}}(?:, \d{{4}})?"
_PAGE_DATE = re.compile(rf"^(?P<date>{_DATE})(?:\s+(?P<upvotes>\d+))?$")
_AUTHOR_COUNT = re.compile(r"^(?:[•*-]\s*)?(?P<n>\d+)\s+authors?$")
_SEPARATOR = "·"
# The subject is matched lazily so that "CLMay 13" splits as CL + May 13 (months are
# spelled out in the date pattern, so the subject cannot swallow them).
_FEED_HEADER = re.compile(rf"^(?P<score>\d+(?:\.\d+)?)?(?P<subject>[A-Za-z][A-Za-z.\-]{{0,15}}?)(?P<date>{_DATE})$")
_FEED_SCORE = re.compile(r"^\d+(?:\.\d+)?$")
_ET_AL = re.compile(r",?\s+et\s+al\.?$")
_PARTICLES = frozenset("van von de der den del della da di du la le bin al dos das ten ter y".split())
_PAGE_CHROME = frozenset(
    {"new", "get trending papers in your email inbox!", "subscribe", "daily papers", "byak and the research community"}
)

# Titles on these pages run to ~140 characters and abstracts to 1000+; the bounds leave
# room for long titles and for abstracts that a page cut short.
MAX_TITLE_CHARS = 300
MIN_ABSTRACT_CHARS = 100


def _raise(error: InputError) -> None:
    raise error


def _clean(text: str) -> str:
    # Almost every field is printable: one C-level check spares the regex scan (re-runs
    # parse tens of thousands of records).
    if text.isprintable():
        return text.strip()
    return _CONTROL.sub("", text).strip()


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a file", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}", path=path) from None
    # A stray bad byte should cost one character, not the whole file.
    return data.decode("utf-8-sig", errors="replace")


def _lines(text: str) -> list[str]:
    # Not str.splitlines(): it also breaks on form feeds and U+2028, which would make the
    # reported line numbers disagree with the user's editor.
    return [line.rstrip("\r") for line in text.split("\n")]


# --------------------------------------------------------------------------------------
# Public API


def read_papers(path: Path | str, *, on_error: ErrorHandler | None = None) -> list[Paper]:
    """Read one file; the format comes from the extension (and, for .txt, the content)."""
    report = on_error or _raise
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in SUPPORTED_FORMATS:
        raise InputError(
            f"unsupported input format {suffix or '(no extension)'!r}; supported: {', '.join(SUPPORTED_FORMATS)}",
            path=path,
        )
    text = _read_text(p)
    source = str(path)
    if suffix == ".csv":
        return _read_csv(text, source, report)
    if suffix in (".jsonl", ".json"):
        return _read_jsonl(text, source, report)
    lines = _lines(text)
    first = next((line.strip() for line in lines if line.strip()), "")
    if _FEED_HEADER.match(first):
        return _read_feed(lines, source, report)
    if _looks_like_page(lines):
        return _read_page(lines, source, report)
    raise InputError(
        "unrecognised text format: expected a feed dump (first line a subject code and date, "
        "e.g. 'AIOct 30, 2023') or a daily-papers page dump (title, blank line, abstract)",
        path=path,
    )


def read_inputs(paths: Iterable[Path | str], *, on_error: ErrorHandler | None = None) -> list[Paper]:
    """Read several files and merge duplicates (same id), in first-seen order."""
    merged: dict[str, Paper] = {}
    for path in paths:
        for paper in read_papers(path, on_error=on_error):
            first = merged.get(paper.id)
            # Re-assigning an existing key keeps its position, so order stays first-seen.
            merged[paper.id] = paper if first is None else _merge(first, paper)
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


def _merge(first: Paper, later: Paper) -> Paper:
    update: dict[str, Any] = {}
    a, b = normalise_ws(first.abstract), normalise_ws(later.abstract)
    # Page dumps cut abstracts short, sometimes with an ellipsis; the full text wins.
    if len(b) > len(a) and b.startswith(a.rstrip(" .…")):
        update["abstract"] = later.abstract
    for field in ("authors", "author_count", "date"):
        if getattr(first, field) is None and getattr(later, field) is not None:
            update[field] = getattr(later, field)
    if set(later.metadata) - set(first.metadata):
        update["metadata"] = {**later.metadata, **first.metadata}
    return first.model_copy(update=update) if update else first


# --------------------------------------------------------------------------------------
# JSONL and CSV


def _split_authors(value: Any) -> list[str] | None:
    if isinstance(value, list):
        names = [_clean(str(v)) for v in value if v is not None]
    elif isinstance(value, str):
        # "Doe, Jane; Roe, Rick" is one common form, so ";" wins when present.
        names = [_clean(v) for v in value.split(";" if ";" in value else ",")]
    else:
        return None
    names = [n for n in names if n]
    return names or None


def _as_str(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _paper_from_record(record: dict[str, Any], source: str, line: int | None) -> Paper:
    fields: dict[str, Any] = {}
    metadata: dict[str, str] = {}
    for key, value in record.items():
        name = str(key).strip().lstrip("\ufeff")
        lowered = name.casefold()
        if lowered in ("title", "abstract", "authors", "date", "author_count") and lowered not in fields:
            fields[lowered] = value
        elif value is not None and value != "":  # an empty cell carries no information
            metadata[name] = _clean(_as_str(value))
    for f in ("title", "abstract"):
        if isinstance(fields.get(f), str):
            fields[f] = _clean(fields[f])
    missing = [f for f in ("title", "abstract") if not isinstance(fields.get(f), str) or not fields[f]]
    if missing:
        raise InputError(f"missing or empty {' and '.join(missing)}", path=source, line=line)
    kwargs: dict[str, Any] = {"source": source, "line": line, "metadata": metadata}
    authors = _split_authors(fields.get("authors"))
    if authors is not None:
        kwargs["authors"] = authors
    count = fields.get("author_count")
    if count is not None and str(count).strip().isdigit():
        kwargs["author_count"] = int(str(count).strip())
    elif count not in (None, ""):
        metadata["author_count"] = _clean(_as_str(count))
    if fields.get("date") not in (None, ""):
        kwargs["date"] = _clean(_as_str(fields["date"]))
    return Paper.from_text(fields["title"], fields["abstract"], **kwargs)


def _read_jsonl(text: str, source: str, report: ErrorHandler) -> list[Paper]:
    if text.lstrip().startswith("["):
        # A .json file holding one array is a common export; read it rather than report
        # every line of it as malformed. Elements have no line of their own.
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"invalid JSON array: {exc.msg}", path=source, line=exc.lineno) from None
        records: list[tuple[Any, int | None]] = [(item, None) for item in items]
    else:
        records = []
        for lineno, raw in enumerate(_lines(text), start=1):
            if not raw.strip():
                continue
            try:
                records.append((json.loads(raw), lineno))
            except json.JSONDecodeError as exc:
                report(InputError(f"invalid JSON (column {exc.colno}): {exc.msg}", path=source, line=lineno))
    papers: list[Paper] = []
    for item, number in records:
        if not isinstance(item, dict):
            report(InputError(f"expected a JSON object, got {type(item).__name__}", path=source, line=number))
            continue
        try:
            papers.append(_paper_from_record(item, source, number))
        except InputError as exc:
            report(exc)
    return papers


def _read_csv(text: str, source: str, report: ErrorHandler) -> list[Paper]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise InputError("empty CSV file; expected a header row with title and abstract columns", path=source)
        names = [h.strip().lstrip("\ufeff") for h in header]
        missing = [c for c in ("title", "abstract") if c not in {n.casefold() for n in names}]
        if missing:
            raise InputError(f"CSV header lacks required column(s): {', '.join(missing)}", path=source, line=1)
        papers: list[Paper] = []
        end = reader.line_num
        for row in reader:
            # A quoted field may span lines: the row starts just after the previous one ended.
            start, end = end + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(names):
                report(
                    InputError(f"row has {len(row)} fields but the header has {len(names)}", path=source, line=start)
                )
                continue
            try:
                papers.append(_paper_from_record(dict(zip(names, row, strict=False)), source, start))
            except InputError as exc:
                report(exc)
    except csv.Error as exc:
        raise InputError(f"malformed CSV: {exc}", path=source, line=reader.line_num) from None
    return papers


# --------------------------------------------------------------------------------------
# Daily-papers page dump


def _is_footer_line(text: str) -> bool:
    return text == _SEPARATOR or bool(_AUTHOR_COUNT.match(text))


def _title_like(text: str) -> bool:
    return (
        0 < len(text) <= MAX_TITLE_CHARS
        and text.casefold() not in _PAGE_CHROME
        and not _PAGE_DATE.match(text)
        and not _is_footer_line(text)
        and any(ch.isalpha() for ch in text)
    )


def _abstract_like(text: str, title: str) -> bool:
    return len(text) >= MIN_ABSTRACT_CHARS and len(text) > len(title) and not _PAGE_DATE.match(text)


def _blocks(lines: list[str]) -> list[list[tuple[int, str]]]:
    """Runs of non-blank lines, each line with its 1-based number."""
    blocks: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    for number, raw in enumerate(lines, start=1):
        text = _clean(raw)
        if text:
            current.append((number, text))
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _is_footer(block: list[tuple[int, str]]) -> bool:
    return any(_is_footer_line(text) for _, text in block)


def _looks_like_page(lines: list[str]) -> bool:
    # Needs the page's own marks, not just paragraphs, so that arbitrary prose is refused.
    blocks = _blocks(lines)
    return any(_is_footer(b) or (len(b) == 1 and b[0][1].casefold() in _PAGE_CHROME) for b in blocks)


def _footer_fields(block: list[tuple[int, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    metadata: dict[str, str] = {}
    for _, text in block:
        if text == _SEPARATOR:
            continue
        if m := _AUTHOR_COUNT.match(text):
            out["author_count"] = int(m["n"])
        elif m := _PAGE_DATE.match(text):
            out["date"] = m["date"]
            if m["upvotes"]:
                metadata["upvotes"] = m["upvotes"]
        else:
            # Organisation lines read "<handle> <display name>", e.g.
            # "Fudan-University Fudan University".
            handle, _, name = text.partition(" ")
            metadata["organisation"] = name.strip() or handle
            if name.strip():
                metadata["organisation_id"] = handle
    out["metadata"] = metadata
    return out


def _read_page(lines: list[str], source: str, report: ErrorHandler) -> list[Paper]:
    blocks = _blocks(lines)
    single = [len(b) == 1 and not _is_footer(b) for b in blocks]
    papers: list[Paper] = []
    k = 0
    while k < len(blocks):
        title_line, title = blocks[k][0]
        if not (single[k] and _title_like(title)):
            if single[k] and len(title) > MAX_TITLE_CHARS:
                report(
                    InputError("abstract-like line with no title line before it; skipped", path=source, line=title_line)
                )
            elif not single[k] and not _is_footer(blocks[k]):
                report(
                    InputError("lines that are not a title, abstract or footer; skipped", path=source, line=title_line)
                )
            k += 1
            continue
        nxt = blocks[k + 1][0][1] if k + 1 < len(blocks) and single[k + 1] else None
        if nxt is None or not _abstract_like(nxt, title):
            if k + 1 < len(blocks) and _is_footer(blocks[k + 1]):
                report(InputError("entry has a title but no abstract; skipped", path=source, line=title_line))
            k += 1
            continue
        # An unknown chrome line right before a real title would pair with that title;
        # if the next line is itself a title followed by a far longer abstract, prefer that.
        after = blocks[k + 2][0][1] if k + 2 < len(blocks) and single[k + 2] else None
        if _title_like(nxt) and after is not None and _abstract_like(after, nxt) and len(after) > 3 * len(nxt):
            k += 1
            continue
        fields: dict[str, Any] = {"metadata": {}}
        k += 2
        if k < len(blocks) and _is_footer(blocks[k]):
            fields = _footer_fields(blocks[k])
            k += 1
        papers.append(Paper.from_text(title, nxt, source=source, line=title_line, **fields))
    return papers


# --------------------------------------------------------------------------------------
# Feed dump


def _name_ok(name: str) -> bool:
    tokens = name.split()
    if not 1 <= len(tokens) <= 5 or not tokens[0][0].isupper():
        return False
    for i, tok in enumerate(tokens):
        if not re.fullmatch(r"[^\W\d_][\w'’.\-]*", tok) or any(ch.isdigit() for ch in tok):
            return False
        if i and not tok[0].isupper() and tok not in _PARTICLES:
            return False
    return True


def _camel(token: str) -> int:
    return sum(1 for a, b in itertools.pairwise(token) if a.islower() and b.isupper())


def _split_title_authors(line: str) -> tuple[str, list[str] | None, bool]:
    """Split "TitleFirst Author, Second Author et al." into title, authors, et-al flag.

    Every capital glued to a non-space character is a possible start of the first name
    (titles end in words, acronyms, digits or brackets). Of the splits whose tail parses
    as a list of names, the best has the fewest one-word names (a title fragment such as
    "Consistency, Faithfulness" would parse as mononyms), then the fewest camel-case
    joints in the first name ("ProgressGymJohn" vs "John"), then lies furthest right.
    """
    body = _ET_AL.sub("", line)
    et_al = body != line
    best: tuple[tuple[int, int, int], int, list[str]] | None = None
    for i in range(1, len(body)):
        if not body[i].isupper() or body[i - 1].isspace():
            continue
        if body[i - 1] in "-'’" or not any(ch.isalpha() for ch in body[:i]):
            continue  # "Self-Consistency" is one word, not a title and a name
        names = [n.strip() for n in body[i:].split(",")]
        if not all(_name_ok(n) for n in names):
            continue
        key = (sum(len(n.split()) == 1 for n in names), _camel(names[0].split()[0]), -i)
        if best is None or key < best[0]:
            best = (key, i, names)
    if best is None:
        return line, None, False
    return body[: best[1]], best[2], et_al


def _read_feed(lines: list[str], source: str, report: ErrorHandler) -> list[Paper]:
    rows = [(n, _clean(raw)) for n, raw in enumerate(lines, start=1) if _clean(raw)]
    papers: list[Paper] = []
    k = 0
    while k < len(rows):
        number, text = rows[k]
        header = _FEED_HEADER.match(text)
        if header is None:
            # Only a final bare score can legitimately stand here; anything else is lost.
            if not _FEED_SCORE.match(text):
                message = "unexpected line in feed dump (expected a subject code and date); skipped"
                report(InputError(message, path=source, line=number))
            k += 1
            continue
        # Body: the title/authors line, then abstract lines up to the next header.
        end = k + 1
        while end < len(rows) and not _FEED_HEADER.match(rows[end][1]) and not _FEED_SCORE.match(rows[end][1]):
            end += 1
        body = rows[k + 1 : end]
        # The relevance score of an entry is printed glued to the *next* entry's header.
        score = None
        if end < len(rows):
            trailing = _FEED_HEADER.match(rows[end][1])
            score = trailing["score"] if trailing else rows[end][1]
        k = end
        if len(body) < 2:
            report(InputError("feed entry lacks a title or an abstract; skipped", path=source, line=number))
            continue
        title_line, title_text = body[0]
        title, authors, et_al = _split_title_authors(title_text)
        metadata = {"subject": header["subject"]}
        if score:
            metadata["score"] = score
        if et_al:
            metadata["authors_truncated"] = "true"
        abstract = " ".join(t for _, t in body[1:])
        papers.append(
            Paper.from_text(
                title, abstract, authors=authors, date=header["date"], source=source, line=title_line, metadata=metadata
            )
        )
    return papers


def paper_from_text(text: str, source: str) -> Paper:
    """A single paper typed or piped in: a JSON object, or a title line followed by the abstract."""
    text = _clean(text).strip()
    if text.startswith("{"):
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON: {exc.msg} (column {exc.colno})", path=source, line=exc.lineno) from None
        if not isinstance(record, dict):
            raise InputError("expected a JSON object with 'title' and 'abstract'", path=source)
        return _paper_from_record(record, source, 1)
    head, _, rest = text.partition("\n")
    if not head.strip() or not rest.strip():
        raise InputError("expected a title on the first line and the abstract below it", path=source)
    return Paper.from_text(head, normalise_ws(rest), source=source, line=1)


def pick_paper(
    *,
    path: Path | str | None = None,
    query: str | None = None,
    title: str | None = None,
    abstract: str | None = None,
    stdin_text: str | None = None,
) -> Paper:
    """Resolve the one paper a per-paper command is about, from whichever input was given."""
    if title is not None or abstract is not None:
        if not (title and title.strip()) or not (abstract and abstract.strip()):
            raise InputError("--title and --abstract must be given together, and neither may be empty")
        return Paper.from_text(_clean(title), normalise_ws(_clean(abstract)), source="<command line>")
    if stdin_text is not None:
        return paper_from_text(stdin_text, "<stdin>")
    if path is None:
        raise InputError("no paper given: pass a file, --title and --abstract, or pipe one on stdin")
    p = Path(path)
    try:
        papers = read_papers(p)
    except InputError:
        if p.suffix.lower() != ".txt" or not p.is_file():
            raise
        return paper_from_text(_read_text(p), str(path))
    if not papers:
        raise InputError("no papers found", path=path)
    if query is not None:
        if query.startswith("#") and query[1:].isdigit():
            index = int(query[1:])
            if not 1 <= index <= len(papers):
                raise InputError(f"--paper {query}: the file has papers #1 to #{len(papers)}", path=path)
            return papers[index - 1]
        return find_paper(papers, query)
    if len(papers) > 1:
        raise InputError(
            f"the file holds {len(papers)} papers; choose one with --paper (an id, a title, or #1..#{len(papers)})",
            path=path,
        )
    return papers[0]
