"""Readers for text dumps copied from web pages: a daily-papers page and a recommendation feed.

The dumps have no delimiters, so these readers decide structurally (line lengths, blank
lines, footers) rather than by fixed offsets: pages drift, and a reader that counts lines
breaks silently. A line that fits no entry is reported with its number and skipped.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from .errors import InputError
from .inputtext import ErrorHandler, clean, make_paper
from .schemas import Paper

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
PAGE_TITLE_CHARS = 300
MIN_ABSTRACT_CHARS = 100


def looks_like_feed(lines: list[str]) -> bool:
    first = next((line.strip() for line in lines if line.strip()), "")
    return _FEED_HEADER.match(first) is not None


# --------------------------------------------------------------------------------------
# Daily-papers page dump


def _is_footer_line(text: str) -> bool:
    return text == _SEPARATOR or bool(_AUTHOR_COUNT.match(text))


def _title_like(text: str) -> bool:
    return (
        0 < len(text) <= PAGE_TITLE_CHARS
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
        text = clean(raw)
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


def looks_like_page(lines: list[str]) -> bool:
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


def read_page(lines: list[str], source: str, report: ErrorHandler) -> list[Paper]:
    blocks = _blocks(lines)
    single = [len(b) == 1 and not _is_footer(b) for b in blocks]
    papers: list[Paper] = []
    k = 0
    while k < len(blocks):
        title_line, title = blocks[k][0]
        if not (single[k] and _title_like(title)):
            if single[k] and len(title) > PAGE_TITLE_CHARS:
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
        try:
            papers.append(make_paper(title, nxt, source=source, line=title_line, **fields))
        except InputError as exc:
            report(exc)
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


def read_feed(lines: list[str], source: str, report: ErrorHandler) -> list[Paper]:
    rows = [(n, text) for n, raw in enumerate(lines, start=1) if (text := clean(raw))]
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
        fields = {"authors": authors, "date": header["date"], "metadata": metadata}
        try:
            papers.append(make_paper(title, abstract, source=source, line=title_line, **fields))
        except InputError as exc:
            report(exc)
    return papers
