"""Input text hygiene: raw bytes to clean text, and what a title and an abstract must be.

Every reader goes through here, so a JSON line, a CSV cell and a page dump get the same
treatment. Two kinds of problem come out of it:

- a repair that keeps the data (a bad byte replaced, NUL bytes dropped, a duplicate merged)
  is an `InputWarning`: it goes to the reader's callback so a run lists it, and without a
  callback it is dropped rather than raised, because nothing was lost;
- text that cannot be a paper (no letters, a placeholder such as "N/A", a whole file that
  is a PDF) is an `InputError`.

Text is otherwise kept as given: markup in abstracts ("<think>", "p < 0.05", "$\\alpha$",
"**bold**") is usually content in this field, evidence is checked against exactly what is
stored, and every output escapes it. The one exception is Crossref's JATS XML, whose
namespaced tags and entities are export syntax and never content.
"""

from __future__ import annotations

import codecs
import html
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import InputError, InputWarning
from .schemas import Paper, normalise_title

ErrorHandler = Callable[[InputError], None]  # gets errors and `InputWarning`s

# C0/C1 controls other than tab and newline, and stray byte-order marks: they come from
# copy-paste, bad exports and concatenated files, and would otherwise reach prompts and outputs.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff]")
# Lone UTF-16 surrogates: JSON can spell them ("\ud800"), UTF-8 cannot encode them, so one
# would crash the first write of a record that carries it.
_SURROGATE = re.compile(r"[\ud800-\udfff]")

# Longer than any real title (arXiv's longest run to ~250 characters): such a "title" is
# almost always an abstract in the wrong column.
MAX_TITLE_CHARS = 500

# What exports write where a value is missing, compared after `normalise_title`.
_PLACEHOLDERS = frozenset({"n a", "na", "nan", "none", "null", "nil", "tbd", "todo"})
_TITLE_PLACEHOLDERS = _PLACEHOLDERS | {"title", "untitled", "no title"}
_ABSTRACT_PLACEHOLDERS = _PLACEHOLDERS | {
    "abstract",
    "no abstract",
    "no abstract available",
    "abstract not available",
    "not available",
    "unavailable",
    "missing",
    "unknown",
}

_BOMS = (
    # UTF-32 first: its little-endian mark starts with UTF-16's.
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_MAGIC = (
    (b"%PDF-", "a PDF file"),
    (b"PK\x03\x04", "a ZIP archive (an .xlsx, .docx or .zip file)"),
    (b"\xd0\xcf\x11\xe0", "an old Office document (.xls or .doc)"),
    (b"\x1f\x8b", "gzip-compressed"),
    (b"\xfd7zXZ\x00", "xz-compressed"),
    (b"PAR1", "a Parquet file"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
_SNIFF_BYTES = 8192
_BINARY_BYTES = bytes([*range(0x09), 0x0B, *range(0x0E, 0x20), 0x7F])

# A lead byte and its continuation bytes: a character only UTF-8 spells this way.
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_PLAUSIBLE_WINDOW = 1 << 20
_LEGACY_PUNCTUATION = frozenset("\u00a0–—‘’‚“”„•…€£¥§©®°±²³´µ¶·¹º»«¼½¾×÷™†‡‰、。「」『』（）：，！？")

_JATS_TAG = re.compile(r"</?(?:jats|mml):[A-Za-z][\w.-]*(?:\s[^<>]*)?/?>")
_JATS_HEADING = re.compile(r"<jats:title>\s*abstract\s*</jats:title>", re.IGNORECASE)
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


def ignore(error: InputError) -> None:
    """The warning handler when a caller gave no callback: a repair needs no action."""


def clean(text: str) -> str:
    """Strip, drop control characters and replace lone surrogates; tabs stay, line ends become newlines."""
    # Almost every field is printable: one C-level check spares the regex scans (re-runs
    # parse tens of thousands of records).
    if text.isprintable():
        return text.strip()
    if "\r" in text:  # from a JSON escape: made the same line end as in a CSV cell
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _SURROGATE.sub("\ufffd", _CONTROL.sub("", text)).strip()


def has_surrogates(text: str) -> bool:
    return _SURROGATE.search(text) is not None


def lines(text: str) -> list[str]:
    # Not str.splitlines(): it also breaks on form feeds and U+2028, which would make the
    # reported line numbers disagree with the user's editor. Line ends are already "\n".
    return text.split("\n")


def _line_at(data: bytes, offset: int) -> int:
    head = data[:offset]
    return head.count(b"\n") + head.count(b"\r") - head.count(b"\r\n") + 1


def display_path(path: Path | str) -> str:
    """A path as text that can always be printed and written as UTF-8.

    A file name that is not valid UTF-8 reaches Python with surrogate escapes, which no
    UTF-8 output can hold: records, failures and messages would fail to write. Its bad bytes
    are shown as backslash escapes ("caf\\xe9.jsonl") instead.
    """
    text = str(path)
    return text if not has_surrogates(text) else os.fsencode(text).decode("utf-8", "backslashreplace")


def read_text(path: Path, warn: ErrorHandler) -> str:
    """A file's text with "\\n" line ends; raises `InputError` when it is not a readable text file."""
    name = display_path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", path=name) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a file", path=name) from None
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}", path=name) from None
    return decode(data, name, warn)


def decode(data: bytes, path: Path | str, warn: ErrorHandler) -> str:
    """Decode an input file: UTF-8 (or UTF-16/32 with a byte-order mark, or a legacy encoding that
    detection is sure of, with a warning naming it), never failing on a bad byte.

    A stray bad byte costs one character and a warning naming its line and byte offset, not
    the file: a run of ten thousand papers should not stop for one mis-encoded name.
    """
    text: str | None = None
    for bom, codec in _BOMS:
        if data.startswith(bom):
            text = _decode_replacing(data, codec, path, warn)
            break
    if text is None:
        head = data[:_SNIFF_BYTES]
        for magic, what in _MAGIC:
            if head.startswith(magic):
                raise InputError(f"this is {what}, not a text file; export the papers as JSONL or CSV", path=path)
        # Text has almost no control bytes (tab, newline, carriage return and form feed aside);
        # binary data and UTF-16 without a byte-order mark (every other byte NUL) have plenty.
        controls = sum(head.count(b) for b in _BINARY_BYTES)
        if controls > len(head) // 10:
            raise InputError(
                f"binary data ({controls:,} control bytes in the first {len(head):,}), not UTF-8 text; "
                "if it is UTF-16 text without a byte-order mark, save it as UTF-8",
                path=path,
            )
        text = _decode_legacy(data, path, warn) or _decode_replacing(data, "utf-8", path, warn)
    if "\x00" in text:
        count, first = text.count("\x00"), text.index("\x00")
        line = text.count("\n", 0, first) + text.count("\r", 0, first) - text.count("\r\n", 0, first) + 1
        warn(InputWarning(f"{count} NUL character(s) removed (the first on this line)", path=path, line=line))
        text = text.replace("\x00", "")
    # Windows and old Mac line ends: one convention, so every reader counts lines alike.
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _decode_legacy(data: bytes, path: Path | str, warn: ErrorHandler) -> str | None:
    """A file in a legacy encoding (an Excel "CSV (Comma delimited)" file is cp1252), when the guess is sound.

    None sends the file on to the repair path: it is UTF-8 (perhaps with a few bad bytes), or no
    guess is safe. As many valid multi-byte UTF-8 characters as bad bytes mark a UTF-8 file with
    damage (legacy text forms a valid sequence only by chance), and decoding all of it as cp1252
    would turn every "é" into "Ã©".
    """
    try:
        data.decode("utf-8")
        return None
    except UnicodeDecodeError as exc:
        first = exc.start
    invalid = data.decode("utf-8", errors="replace").count("\ufffd") - data.decode("utf-8", "ignore").count("\ufffd")
    if len(_UTF8_MULTIBYTE.findall(data)) >= invalid:
        return None
    from charset_normalizer import from_bytes  # imported here: most inputs are UTF-8 and never need it

    # The detector ranks code pages by how chaotic the text looks, which for a short file or
    # one with typographic dashes often puts an ISO 8859 page (dashes as control characters)
    # or cp775 first; only guesses that read as words stay in the race.
    # Judged on a window from the line of the first odd byte (a line start is a character start
    # in every encoding), so a large file is not decoded a dozen times.
    sample = data[data.rfind(b"\n", 0, first) + 1 : first + _PLAUSIBLE_WINDOW]
    matches = [m for m in list(from_bytes(data))[:12] if _plausible(sample.decode(m.encoding, errors="ignore"))]
    if not matches:
        return None
    best = matches[0]
    # cp1252 is what Windows and Excel write in the West, so it wins a near-tie.
    chosen = next((m for m in matches if m.encoding == "cp1252" and m.chaos <= best.chaos + 0.2), best)
    text = data.decode(chosen.encoding, errors="replace")
    warn(
        InputWarning(
            f"not UTF-8: read as {chosen.encoding} (detected; the first non-UTF-8 byte, 0x{data[first]:02X}, "
            f"at byte offset {first:,}); if names look wrong, save the file as UTF-8",
            path=path,
            line=_line_at(data, first),
        )
    )
    return text


def _plausible(text: str) -> bool:
    """Whether the non-ASCII characters decoded read as words: letters (mostly inside words) or common punctuation.

    A lone "ÿ" between spaces is more likely one corrupt byte than a Latin-1 letter, and is
    left to the repair path, which names its offset; one-letter words ("и", "à") are real but few.
    """
    inside = alone = 0
    for match in _NON_ASCII.finditer(text):
        i, ch = match.start(), match.group()
        if ch in _LEGACY_PUNCTUATION:
            continue
        if not ch.isalpha():
            return False
        before = text[i - 1] if i else ""
        after = text[i + 1] if i + 1 < len(text) else ""
        if before.isalpha() or after.isalpha():
            inside += 1
        else:
            alone += 1
    return alone < inside


def _decode_replacing(data: bytes, codec: str, path: Path | str, warn: ErrorHandler) -> str:
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        text = data.decode(codec, errors="replace")
        bad = text.count("\ufffd") - data.decode(codec, errors="ignore").count("\ufffd")
        warn(
            InputWarning(
                f"invalid {codec.upper().removesuffix('-SIG')}: {bad} bad byte sequence(s) replaced with U+FFFD "
                f"(the first, 0x{data[exc.start]:02X}, at byte offset {exc.start:,}); if the file is in another "
                "encoding, save it as UTF-8",
                path=path,
                line=_line_at(data, exc.start),
            )
        )
        return text


def from_jats(text: str) -> str:
    """Crossref's JATS XML abstracts ("<jats:p>…</jats:p>") as plain text; other text unchanged."""
    if "<jats:" not in text and "<mml:" not in text:
        return text
    text = _JATS_HEADING.sub(" ", text)
    text = _JATS_TAG.sub(" ", text)
    # XML escapes "<" and "&" inside JATS, so its entities are syntax, not text.
    return _ENTITY.sub(lambda m: html.unescape(m.group()), text).strip()


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _is_placeholder(text: str, placeholders: frozenset[str]) -> bool:
    return len(text) <= 40 and normalise_title(text) in placeholders  # placeholders are short: skip the rest


def title_problem(title: str) -> str | None:
    if not title:
        return "missing or empty title"
    # The id is a hash of the normalised title, so a title that normalises to nothing would
    # share its id with every other such title. An ASCII letter or digit always survives
    # normalisation, which spares most titles the slow check.
    if not any(ch.isalnum() for ch in title) or not (title.isascii() or normalise_title(title)):
        return f"title has no letters or digits ({_shown(title)})"
    if _is_placeholder(title, _TITLE_PLACEHOLDERS):
        return f"title is a placeholder ({_shown(title)}), not a title"
    if len(title) > MAX_TITLE_CHARS:
        return (
            f"title is {len(title):,} characters long, more than any real title ({MAX_TITLE_CHARS}); "
            "are the title and abstract swapped?"
        )
    return None


def abstract_problem(abstract: str) -> str | None:
    if not abstract:
        return "missing or empty abstract"
    if not any(ch.isalnum() for ch in abstract):
        return f"abstract has no letters or digits ({_shown(abstract)})"
    if _is_placeholder(abstract, _ABSTRACT_PLACEHOLDERS):
        return f"abstract is a placeholder ({_shown(abstract)}), not an abstract"
    return None


def make_paper(title: str, abstract: str, *, source: str, line: int | None, **fields: Any) -> Paper:
    """A `Paper` from cleaned text, after the checks every reader shares; `InputError` names source and line."""
    title, abstract = from_jats(title), from_jats(abstract)
    problems = [p for p in (title_problem(title), abstract_problem(abstract)) if p]
    if problems:
        if _is_placeholder(title, frozenset({"title"})) and _is_placeholder(abstract, frozenset({"abstract"})):
            problems = ["a repeated header row (title 'title', abstract 'abstract'); skipped"]
        raise InputError("; ".join(problems), path=source, line=line)
    return Paper.from_text(title, abstract, source=source, line=line, **fields)
