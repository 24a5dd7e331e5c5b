"""Property-based tests of the readers and validators (hypothesis).

Complements the two properties in test_schemas.py (any substring is found verbatim; a found
quote is in the text). Example counts are modest so the file runs in seconds.
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from summarizer.dumps import read_feed, read_page
from summarizer.errors import InputError
from summarizer.inputtext import decode, lines
from summarizer.schemas import Paper, PaperRecord, find_name, normalise_title, normalise_ws, paper_id
from summarizer.sources import read_papers
from summarizer.spans import candidate_names, split_sentences

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Any code point, lone surrogates included (JSON can spell them), to stress the cleaning.
ANY_CHAR = st.characters(codec=None)
UNICODE_TEXT = st.text(ANY_CHAR, max_size=80)
# Text a reader must keep: at least one letter, so no title or abstract is refused as empty.
WORDY = st.builds(lambda a, b: f"{a}Word{b}", UNICODE_TEXT, UNICODE_TEXT)
# Fragments of the two text-dump shapes, so arbitrary text also reaches their structural paths.
DUMP_LINE = st.one_of(
    st.text(max_size=120),
    st.sampled_from(
        ["", "·", "  • 3 authors", "Mar 14, 2024", "Oct 8 2", "CLJan 2, 2024", "12.5LGFeb 3", "40.1", "Daily Papers",
         "new", "TitleAnn Lee, Bo Li et al.", "A Title: With Words", "x" * 150, "We study things. " * 8]
    ),
)  # fmt: skip

_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff]")


def documented_cleaning(text: str) -> str:
    """What the readers promise to do to a field (inputtext.clean): nothing else may change.

    A JSON surrogate pair spells one character and a lone surrogate becomes U+FFFD; line ends
    become newlines; other control characters and stray byte-order marks go; ends are stripped.
    """
    text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROLS.sub("", text).strip()


def has_surrogates(text: str) -> bool:
    return any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


def only_input_errors(read: Any) -> list[InputError]:
    """Run `read(report)`; every problem must be an InputError, reported or raised."""
    problems: list[InputError] = []
    try:
        read(problems.append)
    except InputError as exc:  # anything else escaping fails the test
        problems.append(exc)
    return problems


def read_or_binary(path: Path) -> list[Paper] | None:
    """The file's papers, or None when it has so many control bytes that it is refused as binary."""
    try:
        return read_papers(path, on_error=lambda e: None)
    except InputError as exc:
        head = path.read_bytes()[:8192]
        assert "binary data" in exc.reason
        assert sum((b < 0x20 and b not in b"\t\n\r\x0c") or b == 0x7F for b in head) > len(head) // 10
        return None


# --------------------------------------------------------------------------------------
# Round trips


@FAST
@given(st.lists(st.tuples(WORDY, WORDY), min_size=1, max_size=4), st.booleans())
def test_jsonl_round_trip(tmp_path: Path, pairs: list[tuple[str, str]], ascii_only: bool) -> None:
    # Only JSON's \\u escapes can carry a surrogate; raw UTF-8 cannot.
    assume(ascii_only or not any(has_surrogates(t + a) for t, a in pairs))
    path = tmp_path / "p.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for title, abstract in pairs:
            fh.write(json.dumps({"title": title, "abstract": abstract}, ensure_ascii=ascii_only) + "\n")
    papers = read_or_binary(path)
    assume(papers is not None)
    assert papers is not None
    assert [(p.title, p.abstract) for p in papers] == [
        (normalise_ws(documented_cleaning(t)), documented_cleaning(a)) for t, a in pairs
    ]
    assert [p.line for p in papers] == list(range(1, len(pairs) + 1))


@FAST
@given(st.lists(st.tuples(WORDY, WORDY, UNICODE_TEXT), min_size=1, max_size=4))
def test_csv_round_trip(tmp_path: Path, rows: list[tuple[str, str, str]]) -> None:
    assume(not any(has_surrogates("".join(row)) or "\x00" in "".join(row) for row in rows))
    path = tmp_path / "p.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([("title", "abstract", "note"), *rows])
    papers = read_or_binary(path)
    assume(papers is not None)
    assert papers is not None
    assert [(p.title, p.abstract) for p in papers] == [
        (normalise_ws(documented_cleaning(t)), documented_cleaning(a)) for t, a, _ in rows
    ]
    for paper, (_, _, note) in zip(papers, rows, strict=True):
        assert paper.metadata.get("note", "") == documented_cleaning(note)


# --------------------------------------------------------------------------------------
# Readers never raise anything but InputError


@FAST
@given(st.lists(DUMP_LINE, max_size=30))
def test_dump_readers_only_ever_report_input_errors(text_lines: list[str]) -> None:
    for reader in (read_page, read_feed):
        for problem in only_input_errors(lambda report, r=reader: r(text_lines, "dump.txt", report)):
            assert problem.path == Path("dump.txt") and (problem.line is None or problem.line >= 1)


@FAST
@given(st.binary(max_size=400), st.sampled_from([".txt", ".jsonl", ".json", ".csv"]))
def test_any_bytes_in_any_format_read_or_fail_with_input_error(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"in{suffix}"
    path.write_bytes(data)
    problems = only_input_errors(lambda report: read_papers(path, on_error=report))
    assert all(str(p).startswith(str(path)) for p in problems)


@FAST
@given(st.lists(st.one_of(DUMP_LINE, st.sampled_from(['{"title": "T", "abstract": "A b."}', "[", "]", '"', ","]))))
def test_jsonish_and_csvish_text_never_crashes(tmp_path: Path, parts: list[str]) -> None:
    for suffix in (".json", ".jsonl", ".csv"):
        path = tmp_path / f"in{suffix}"
        path.write_text("\n".join(parts), encoding="utf-8")
        only_input_errors(lambda report, p=path: read_papers(p, on_error=report))


@FAST
@given(st.binary(max_size=300))
def test_decoding_never_fails_and_leaves_no_nul_or_carriage_return(data: bytes) -> None:
    try:
        text = decode(data, "x", lambda e: None)
    except InputError as exc:  # binary or a known non-text format
        assert "not a text file" in exc.reason or "binary data" in exc.reason
        return
    assert "\x00" not in text and "\r" not in text
    assert isinstance(text.encode("utf-8", errors="strict"), bytes)  # no surrogates: always writable


# --------------------------------------------------------------------------------------
# Titles and ids


@FAST
@given(UNICODE_TEXT)
def test_normalise_title_is_idempotent_and_ids_follow(title: str) -> None:
    once = normalise_title(title)
    assert normalise_title(once) == once
    assert paper_id(once) == paper_id(title)
    assert once == once.strip() and "  " not in once


@FAST
@given(UNICODE_TEXT)
def test_ids_ignore_unicode_normal_form(title: str) -> None:
    assume(not any(0xD800 <= ord(ch) <= 0xDFFF for ch in title))
    forms = {paper_id(unicodedata.normalize(form, title)) for form in ("NFC", "NFD", "NFKC", "NFKD")}
    assert len(forms) == 1


# Latin letters, digits, spaces and punctuation; not the dotless ı, which upper-cases to a
# different Turkish letter (I), so ids rightly keep the two apart.
LATIN = st.characters(max_codepoint=0x24F, categories=("Lu", "Ll", "Nd", "Zs", "Po", "Pd"), exclude_characters="ı")


@FAST
@given(st.text(LATIN, max_size=60))
def test_ids_ignore_case_spacing_and_punctuation_of_latin_titles(title: str) -> None:
    variants = [title.upper(), title.lower(), f"  {title} ", title.replace(" ", "  -  "), f"{title}."]
    assert {paper_id(v) for v in variants} == {paper_id(title)}


# --------------------------------------------------------------------------------------
# Sentences, names, evidence


@FAST
@given(st.text(st.characters(codec="utf-8"), max_size=400))
def test_sentences_are_verbatim_and_cover_the_text(text: str) -> None:
    sentences = split_sentences(text)
    flat = normalise_ws(text)
    assert " ".join(sentences) == flat
    position = 0
    for sentence in sentences:
        assert sentence and sentence == sentence.strip()
        found = flat.find(sentence, position)
        assert found >= position
        position = found + len(sentence)


@FAST
@given(st.text(st.characters(codec="utf-8"), max_size=300))
def test_candidate_names_are_verbatim_spans(text: str) -> None:
    flat = normalise_ws(text)
    assert all(name in flat for name in candidate_names(text))


@FAST
@given(st.text(max_size=200), st.text(min_size=1, max_size=30))
def test_find_name_returns_the_texts_own_spelling(text: str, name: str) -> None:
    found = find_name(name, text)
    if found is not None:
        assert found in normalise_ws(text)
        assert found.casefold() == normalise_ws(name).casefold()


@FAST
@given(st.text(st.sampled_from("ab ßİŉﬁSsI"), min_size=1, max_size=40), st.integers(0, 40), st.integers(1, 10))
def test_find_name_finds_any_case_changed_substring(text: str, start: int, length: int) -> None:
    # Letters whose case mapping changes their length ("ß" -> "SS") once made the span wrong.
    spaced = normalise_ws(text)
    start %= max(len(spaced), 1)  # a start past the end only produced inputs to throw away
    quote = spaced[start : start + length].strip()
    assume(quote)
    found = find_name(quote.upper(), text)
    if quote.upper().casefold() == quote.casefold():  # upper-casing some letters is not reversible
        assert found is not None and found.casefold() == quote.casefold()


def record_with(abstract: str, evidence: str) -> dict[str, Any]:
    return {
        "paper_id": "x",
        "title": "T",
        "summary": "A summary.",
        "contribution_type": "new_method",
        "method": {"name": None, "description": "d", "evidence": None},
        "claims": [{"statement": "s", "evidence": evidence}],
        "category": {"primary": "c", "rationale": "r"},
    }


@FAST
@given(st.text(st.characters(codec="utf-8"), max_size=200), st.data())
def test_record_accepts_evidence_iff_it_is_verbatim(abstract: str, data: st.DataObject) -> None:
    flat = normalise_ws(abstract)
    if flat and data.draw(st.booleans()):
        start = data.draw(st.integers(0, len(flat) - 1))
        quote = flat[start : data.draw(st.integers(start + 1, len(flat)))]
    else:
        quote = data.draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=30))
    context = {"abstract": abstract, "category_ids": ["c"], "contribution_ids": ["new_method"]}
    verbatim = bool(normalise_ws(quote)) and normalise_ws(quote) in flat
    if verbatim:
        record = PaperRecord.model_validate(record_with(abstract, quote), context=context)
        assert record.claims[0].evidence == quote
    else:
        with pytest.raises(ValidationError):
            PaperRecord.model_validate(record_with(abstract, quote), context=context)


@FAST
@given(st.text(max_size=100))
def test_lines_split_only_on_newlines(text: str) -> None:
    assert "\n".join(lines(text)) == text
    assert len(lines(text)) == text.count("\n") + 1
