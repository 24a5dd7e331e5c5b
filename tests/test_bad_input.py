"""Bad input: every problem is named with its file and line, and nothing else is lost.

Each case goes through a reader, and the ones that matter for a run also through `run_tag`
with the in-process `FakeBackend` (no model, no server). Expected messages are the ones a
user sees: `str(InputError)` is "path:line: reason".
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import os
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from summarizer.batch import run_tag
from summarizer.cli import app
from summarizer.errors import ExtractionFailed, InputError
from summarizer.export import RECORDS, load_results
from summarizer.extract import Extractor
from summarizer.fakes import FakeBackend, valid_answer
from summarizer.schemas import Failure, Paper, PaperRecord, find_name, normalise_title, paper_id
from summarizer.settings import Settings
from summarizer.sources import InputWarning, pick_paper, read_inputs, read_papers
from summarizer.spans import split_sentences

ABSTRACT = (
    "We study how language models follow instructions. We propose a simple method for it. "
    "Experiments on three benchmarks show gains of five points over strong baselines."
)
CTX = {"category_ids": ["learning_from_feedback"], "contribution_ids": ["new_method"]}


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def read_all(path: Path) -> tuple[list[Paper], list[InputError]]:
    problems: list[InputError] = []
    return read_papers(path, on_error=problems.append), problems


def settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(cache_dir=tmp_path / "cache", **{"concurrency": 2, **kw})


async def tag(tmp_path: Path, *inputs: Path, out: str = "out") -> Any:
    return await run_tag(list(inputs), tmp_path / out, settings(tmp_path), backend=FakeBackend(responder=valid_answer))


def records(outdir: Path) -> dict[str, dict[str, Any]]:
    values = [json.loads(line) for line in (outdir / RECORDS).read_text(encoding="utf-8").splitlines()]
    return {v["record"]["title"]: v["record"] for v in values}


def valid_record(abstract: str, evidence: str) -> dict[str, Any]:
    return {
        "paper_id": "x",
        "title": "T",
        "summary": "A summary.",
        "contribution_type": "new_method",
        "method": {"name": None, "description": "d", "evidence": None},
        "claims": [{"statement": "s", "evidence": evidence}],
        "category": {"primary": "learning_from_feedback", "rationale": "r"},
    }


# --------------------------------------------------------------------------------------
# 1. Empty, placeholder and very short abstracts and titles

EMPTY_CASES: list[tuple[dict[str, Any], str]] = [
    ({"title": "Empty abstract", "abstract": ""}, "missing or empty abstract"),
    ({"title": "Blank abstract", "abstract": " \t\n "}, "missing or empty abstract"),
    ({"title": "Null abstract", "abstract": None}, "missing or empty abstract"),
    ({"title": "No abstract key"}, "missing or empty abstract (its keys: 'title')"),
    ({"title": "Control-only abstract", "abstract": "\u0000\u0007\u001b"}, "missing or empty abstract"),
    ({"title": "Dots", "abstract": "..."}, "abstract has no letters or digits ('...')"),
    ({"title": "Dash", "abstract": " — "}, "abstract has no letters or digits ('—')"),
    ({"title": "NA", "abstract": "N/A"}, "abstract is a placeholder ('N/A'), not an abstract"),
    ({"title": "Pandas", "abstract": "nan"}, "abstract is a placeholder ('nan'), not an abstract"),
    ({"title": "Crossref", "abstract": "No abstract available."}, "abstract is a placeholder"),
    ({"title": "", "abstract": ABSTRACT}, "missing or empty title"),
    ({"title": "🤖🤖", "abstract": ABSTRACT}, "title has no letters or digits ('🤖🤖')"),
    ({"title": "???", "abstract": ABSTRACT}, "title has no letters or digits ('???')"),
    ({"title": "Untitled", "abstract": ABSTRACT}, "title is a placeholder ('Untitled'), not a title"),
    ({"title": ABSTRACT * 4, "abstract": "Short."}, "are the title and abstract swapped?"),
    ({"title": 2024, "abstract": ["a", "b"]}, "title is a number, expected a string; abstract is an array"),
]


def test_empty_and_placeholder_fields_are_skipped_with_file_and_line(tmp_path: Path) -> None:
    rows = [{"title": "Good first", "abstract": ABSTRACT}, *(row for row, _ in EMPTY_CASES)]
    rows.append({"title": "Good last", "abstract": "We prove a bound."})  # very short but real: kept
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    papers, problems = read_all(path)
    assert [p.title for p in papers] == ["Good first", "Good last"]
    assert [e.line for e in problems] == list(range(2, 2 + len(EMPTY_CASES)))
    for error, (_, expected) in zip(problems, EMPTY_CASES, strict=True):
        assert not isinstance(error, InputWarning)
        assert str(error).startswith(f"{path}:{error.line}: ")
        assert expected in error.reason, (expected, error.reason)


def test_repeated_csv_header_row_and_short_cells(tmp_path: Path) -> None:
    path = tmp_path / "joined.csv"
    path.write_text(
        f'title,abstract,venue\nA paper,"{ABSTRACT}",ICML\ntitle,abstract,venue\nShort row\n'
        f'Empty cells,,\nB paper,"{ABSTRACT}",NeurIPS\n',
        encoding="utf-8",
    )
    papers, problems = read_all(path)
    assert [p.title for p in papers] == ["A paper", "B paper"]
    assert [(e.line, e.reason) for e in problems] == [
        (3, "a repeated header row (title 'title', abstract 'abstract'); skipped"),
        (4, "row has 1 of the header's 3 fields: missing or empty abstract"),
        (5, "missing or empty abstract"),
    ]


async def test_a_run_skips_unusable_papers_and_tags_the_rest(tmp_path: Path) -> None:
    rows = [
        {"title": "Usable one", "abstract": ABSTRACT},
        {"title": "Placeholder", "abstract": "N/A"},
        {"title": "", "abstract": ABSTRACT},
        {"title": "One sentence", "abstract": "We prove that P is not NP."},
    ]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = await tag(tmp_path, path)
    assert (summary.done, summary.failed, summary.papers) == (2, 0, 2)
    assert summary.input_errors == [
        {
            "path": str(path),
            "line": 2,
            "reason": "abstract is a placeholder ('N/A'), not an abstract",
            "repaired": False,
        },
        {"path": str(path), "line": 3, "reason": "missing or empty title", "repaired": False},
    ]
    done = records(tmp_path / "out")
    # A one-sentence abstract still gets a record whose evidence is that sentence, verbatim.
    assert done["One sentence"]["claims"][0]["evidence"] == "We prove that P is not NP."
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["input_errors"] == summary.input_errors


async def test_an_empty_abstract_from_a_library_caller_is_a_recorded_failure(tmp_path: Path) -> None:
    # Readers never produce one; a caller building `Paper`s directly still gets a reason, not a crash.
    paper = Paper(id="abc", title="Hand-made", abstract="  \n ")
    async with Extractor(settings(tmp_path), backend=FakeBackend(responder=valid_answer)) as ex:
        outcome = await ex.extract_or_failure(paper)
    assert isinstance(outcome, Failure) and outcome.reason == "the abstract is empty"


# --------------------------------------------------------------------------------------
# 2. Non-English text

MULTILINGUAL = [
    ("大语言模型的对齐：一项综述", "我们研究大语言模型的对齐问题。我们提出了一种新的方法，并在三个基准上取得了提升。"),
    ("Выравнивание языковых моделей", "Мы изучаем выравнивание моделей. Наш метод улучшает результаты на 5%."),
    ("مواءمة النماذج اللغوية الكبيرة", "نقترح طريقة جديدة لمواءمة النماذج. تُظهر التجارب تحسنًا واضحًا."),
    ("भाषा मॉडल का संरेखण", "हम भाषा मॉडल के संरेखण का अध्ययन करते हैं। परिणाम बेहतर हैं।"),
    ("ガスの分類とLLM-based Alignment", "We mix scripts: 日本語の文と English sentences. Результаты тоже."),
]


def test_non_english_text_passes_through_every_reader_unchanged(tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "m.jsonl", [{"title": t, "abstract": a} for t, a in MULTILINGUAL])
    csv_path = tmp_path / "m.csv"
    with csv_path.open("w", encoding="utf-8-sig", newline="") as fh:  # Excel's "CSV UTF-8" has a BOM
        csv.writer(fh).writerows([["Title", "Abstract"], *MULTILINGUAL])
    utf16 = tmp_path / "m16.csv"
    utf16.write_bytes(csv_path.read_text(encoding="utf-8-sig").encode("utf-16"))
    for path in (jsonl, csv_path, utf16):
        papers, problems = read_all(path)
        assert problems == []
        assert [(p.title, p.abstract) for p in papers] == MULTILINGUAL
    ids = [paper_id(t) for t, _ in MULTILINGUAL]
    assert len(set(ids)) == len(ids)


def test_non_english_titles_keep_distinct_ids_and_stay_stable() -> None:
    # Marks that are part of a letter are kept: these pairs are different words.
    assert paper_id("ガス") != paper_id("カス")
    assert paper_id("किताब") != paper_id("कीताब")
    assert normalise_title("भाषा मॉडल") == unicodedata.normalize("NFKD", "भाषा मॉडल")
    # Optional accents and vowel points still fold, and composed and decomposed forms agree.
    assert paper_id("Café Ünïcode") == paper_id("cafe unicode")
    assert paper_id("تَعَلُّم الآلة") == paper_id("تعلم الآلة")
    for title, _ in MULTILINGUAL:
        assert paper_id(unicodedata.normalize("NFD", title)) == paper_id(unicodedata.normalize("NFC", title))
    assert paper_id("ВЫРАВНИВАНИЕ языковых МОДЕЛЕЙ!") == paper_id(MULTILINGUAL[1][0])


def test_non_english_page_and_feed_dumps(tmp_path: Path) -> None:
    abstract = MULTILINGUAL[0][1] * 3  # page abstracts are long; a short line is not taken for one
    page = tmp_path / "page.txt"
    page.write_text(
        f"Daily Papers\n\n{MULTILINGUAL[0][0]}\n\n{abstract}\n\n  • 3 authors\n·\nMar 14, 2024\n", encoding="utf-8"
    )
    (paper,) = read_papers(page)
    assert (paper.title, paper.abstract, paper.author_count, paper.line) == (MULTILINGUAL[0][0], abstract, 3, 3)
    feed = tmp_path / "feed.txt"
    feed.write_text(
        f"CLJan 2, 2024\n{MULTILINGUAL[1][0]}Иван Петров, Anna Schmidt\n{MULTILINGUAL[1][1]}\n12.5\n", encoding="utf-8"
    )
    (paper,) = read_papers(feed)
    assert (paper.title, paper.authors, paper.abstract) == (
        MULTILINGUAL[1][0],
        ["Иван Петров", "Anna Schmidt"],
        MULTILINGUAL[1][1],
    )


def test_validators_accept_non_english_evidence_and_names() -> None:
    for _, abstract in MULTILINGUAL:
        sentences = split_sentences(abstract)
        # Nothing dropped or altered (CJK sentences are not separated by spaces).
        assert "".join(sentences).replace(" ", "") == abstract.replace(" ", "")
        assert all(sentence in abstract for sentence in sentences)
        for sentence in sentences:
            record = PaperRecord.model_validate(valid_record(abstract, sentence), context={**CTX, "abstract": abstract})
            assert record.claims[0].evidence == sentence
    with pytest.raises(ValidationError, match="not a verbatim substring"):
        PaperRecord.model_validate(
            valid_record(MULTILINGUAL[1][1], "Мы изучаем модели."), context=CTX | {"abstract": MULTILINGUAL[1][1]}
        )
    assert find_name("ВЫРАВНИВАНИЕ", MULTILINGUAL[1][1].replace("выравнивание", "Выравнивание")) == "Выравнивание"
    # "ß" folds to two letters: the span found must still be the abstract's own text.
    assert find_name("ABC", "Straße ß ABC-Net") == "ABC"
    assert find_name("STRASSE", "Die Straße-Methode") == "Straße"


async def test_a_run_over_non_english_papers(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", [{"title": t, "abstract": a} for t, a in MULTILINGUAL])
    summary = await tag(tmp_path, path)
    assert (summary.done, summary.failed, summary.input_errors) == (len(MULTILINGUAL), 0, [])
    done = records(tmp_path / "out")
    assert set(done) == {t for t, _ in MULTILINGUAL}
    for title, abstract in MULTILINGUAL:
        assert done[title]["paper_id"] == paper_id(title)
        assert all(c["evidence"] in abstract for c in done[title]["claims"])
    exported = (tmp_path / "out" / "records.csv").read_text(encoding="utf-8")
    assert all(title in exported for title, _ in MULTILINGUAL)


# --------------------------------------------------------------------------------------
# 3. A 50,000-character abstract


async def test_a_huge_abstract_is_truncated_with_a_warning_on_the_record(tmp_path: Path) -> None:
    sentence = "Finding {} shows that the aligned model improves on the baseline by a wide margin. "
    huge = "".join(sentence.format(i) for i in range(700))[:50_000].strip()
    runon = ("word " * 10_000).strip()  # no sentence end at all: cut at the limit
    path = write_jsonl(
        tmp_path / "big.jsonl", [{"title": "Huge", "abstract": huge}, {"title": "Run-on", "abstract": runon}]
    )
    (paper, long_one), problems = read_all(path)
    assert problems == [] and (paper.abstract, long_one.abstract, len(huge)) == (huge, runon, 50_000)
    backend = FakeBackend(responder=valid_answer)
    summary = await run_tag([path], tmp_path / "out", settings(tmp_path), backend=backend)
    assert (summary.done, summary.failed) == (2, 0)
    # The model saw at most the configured 6,000 characters of abstract, not 50,000.
    assert all(len(call[-1]["content"]) < 8_000 for call in backend.calls)
    done = records(tmp_path / "out")
    (warning,) = done["Huge"]["warnings"]
    assert warning.startswith("abstract truncated from 50,000 to ") and "to fit the model's context" in warning
    assert done["Run-on"]["warnings"] == [
        "abstract truncated from 49,999 to 6,000 characters to fit the model's context"
    ]
    assert all(c["evidence"] in huge for c in done["Huge"]["claims"])  # evidence still verbatim in the stored text
    assert "abstract truncated" in (tmp_path / "out" / "records.csv").read_text()
    # The warning is part of the cached record, so a re-run keeps it.
    await run_tag([path], tmp_path / "again", settings(tmp_path), backend=FakeBackend())
    again = {r.record.title: r for r in load_results(tmp_path / "again")}
    assert again["Huge"].provenance.cache_hit and again["Huge"].record.warnings == [warning]


# --------------------------------------------------------------------------------------
# 4. HTML, Markdown and LaTeX in abstracts

NOISY = (
    "We align <b>small</b> models &amp; large ones with $\\alpha$-divergence and **bold** ideas. "
    "Our [code](https://x.example/a_b) uses <think> tags, and p < 0.05 > q holds. "
    "Results improve by 5% on HH-RLHF & AlpacaEval."
)


async def test_markup_is_kept_verbatim_and_evidence_validates_against_it(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "noisy.jsonl", [{"title": "Attention <b>is</b> all &amp; more", "abstract": NOISY}])
    (paper,), problems = read_all(path)
    assert problems == [] and paper.abstract == NOISY and paper.title == "Attention <b>is</b> all &amp; more"
    for sentence in split_sentences(NOISY):
        PaperRecord.model_validate(valid_record(NOISY, sentence), context=CTX | {"abstract": NOISY})
    unescaped = "We align small models & large ones"
    with pytest.raises(ValidationError, match="not a verbatim substring"):
        PaperRecord.model_validate(valid_record(NOISY, unescaped), context=CTX | {"abstract": NOISY})
    summary = await tag(tmp_path, path)
    assert summary.done == 1
    (record,) = records(tmp_path / "out").values()
    assert all(c["evidence"] in NOISY for c in record["claims"])
    digest = (tmp_path / "out" / "digest.md").read_text(encoding="utf-8")
    assert "&lt;b&gt;is&lt;/b&gt;" in digest and "<b>" not in digest


def test_crossref_jats_abstracts_become_plain_text(tmp_path: Path) -> None:
    jats = (
        "<jats:title>Abstract</jats:title><jats:p>We study X &amp; Y with &lt;5% error "
        "(<jats:italic>n</jats:italic> = 3).</jats:p><jats:p>It works.</jats:p>"
    )
    path = write_jsonl(tmp_path / "crossref.jsonl", [{"title": "JATS paper", "abstract": jats}])
    (paper,) = read_papers(path)
    assert " ".join(paper.abstract.split()) == "We study X & Y with <5% error ( n = 3). It works."


# --------------------------------------------------------------------------------------
# 5. Encodings, control characters, line ends


def test_invalid_utf8_is_replaced_with_a_warning_naming_line_and_offset(tmp_path: Path) -> None:
    # UTF-8 (its "é" and "ï" are valid) with two stray Latin-1 bytes: damage, not another encoding.
    path = tmp_path / "damaged.jsonl"
    first = json.dumps({"title": "Fine", "abstract": ABSTRACT}, ensure_ascii=False).encode() + b"\n"
    second = '{"title": "Café models", "abstract": "A naïve abstract about models."}\n'.encode()
    second = second.replace("é".encode(), b"\xe9", 1).replace("ï".encode(), b"\xef", 1)
    third = '{"title": "Résumé models", "abstract": "A naïve abstract about Zoë."}\n'.encode()
    path.write_bytes(first + second + third)
    papers, problems = read_all(path)
    assert [p.title for p in papers] == ["Fine", "Caf\ufffd models", "Résumé models"]
    (warning,) = problems
    assert isinstance(warning, InputWarning) and warning.line == 2
    offset = len(first) + second.index(b"\xe9")
    assert str(warning) == (
        f"{path}:2: invalid UTF-8: 2 bad byte sequence(s) replaced with U+FFFD (the first, 0xE9, at byte offset "
        f"{offset}); if the file is in another encoding, save it as UTF-8"
    )
    assert len(read_papers(path)) == 3  # without a callback a repair is not an error


def test_an_excel_cp1252_csv_is_detected_and_the_warning_names_the_encoding(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    text = 'Title,Abstract\r\n"Café Alignment","We align naïve models – “carefully” – for Zoë."\r\n'
    path.write_bytes(text.encode("cp1252"))
    (paper,), problems = read_all(path)
    assert (paper.title, paper.abstract) == ("Café Alignment", "We align naïve models – “carefully” – for Zoë.")
    (warning,) = problems
    offset = text.encode("cp1252").index(b"\xe9")
    assert isinstance(warning, InputWarning) and warning.line == 2
    assert warning.reason == (
        f"not UTF-8: read as cp1252 (detected; the first non-UTF-8 byte, 0xE9, at byte offset {offset}); "
        "if names look wrong, save the file as UTF-8"
    )


def test_a_cyrillic_cp1251_file_is_detected_too(tmp_path: Path) -> None:
    path = tmp_path / "ru.csv"
    path.write_bytes("title,abstract\nМодели,Мы изучаем большие языковые модели и их выравнивание.\n".encode("cp1251"))
    (paper,), problems = read_all(path)
    assert paper.title == "Модели" and paper.abstract.startswith("Мы изучаем")
    assert [w.reason.split(" (")[0] for w in problems] == ["not UTF-8: read as cp1251"]


def test_a_lone_undecodable_byte_is_not_guessed_at(tmp_path: Path) -> None:
    # "ÿ" standing alone is more likely one corrupt byte than Latin-1: repaired and located instead.
    path = tmp_path / "stray.jsonl"
    path.write_bytes(b'{"title": "Good \xff byte", "abstract": "An abstract."}\n')
    (paper,), (warning,) = read_all(path)
    assert paper.title == "Good \ufffd byte"
    assert warning.reason.startswith("invalid UTF-8: 1 bad byte sequence(s) replaced with U+FFFD (the first, 0xFF")


def test_nul_bytes_control_characters_and_stray_boms(tmp_path: Path) -> None:
    path = tmp_path / "ctl.jsonl"
    path.write_bytes(
        codecs.BOM_UTF8
        + b'{"title": "Tab\tinside", "abstract": "Raw\x00 NUL and \x1b[31mANSI\x1b[0m text."}\n'
        + codecs.BOM_UTF8  # a second file appended with `cat`
        + json.dumps({"title": "Escaped \u0007bell\ufeff", "abstract": "Line one.\r\nLine two.\rThree."}).encode()
        + b"\n"
    )
    papers, problems = read_all(path)
    assert [(p.title, p.abstract) for p in papers] == [
        ("Tab inside", "Raw NUL and [31mANSI[0m text."),
        ("Escaped bell", "Line one.\nLine two.\nThree."),
    ]
    assert [(type(e), e.line, e.reason) for e in problems] == [
        (InputWarning, 1, "1 NUL character(s) removed (the first on this line)")
    ]


@pytest.mark.parametrize("ending", ["\r\n", "\r"])
def test_windows_and_old_mac_line_ends_keep_line_numbers(tmp_path: Path, ending: str) -> None:
    path = tmp_path / "ends.jsonl"
    rows = [json.dumps({"title": "One", "abstract": "A."}), "{broken", json.dumps({"title": "Three", "abstract": "C."})]
    path.write_bytes(ending.join(rows).encode() + ending.encode())
    papers, problems = read_all(path)
    assert [(p.title, p.line) for p in papers] == [("One", 1), ("Three", 3)]
    assert [e.line for e in problems] == [2]


def test_lone_surrogates_in_json_are_replaced_and_a_run_can_write_them(tmp_path: Path) -> None:
    path = tmp_path / "surrogates.jsonl"
    path.write_text('{"title": "Lone \\ud800 high", "abstract": "Low \\udfff here. A pair \\ud83d\\ude00 is fine."}\n')
    (paper,), problems = read_all(path)
    assert paper.title == "Lone \ufffd high" and paper.abstract == "Low \ufffd here. A pair 😀 is fine."
    assert [(e.line, e.reason) for e in problems] == [(1, "lone UTF-16 surrogate escape(s) replaced with U+FFFD")]
    paper.model_dump_json().encode("utf-8")  # the crash this prevents: a surrogate cannot be written


async def test_a_run_over_badly_encoded_files_keeps_going(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        b'{"title": "Good \xff byte", "abstract": "' + ABSTRACT.encode() + b'"}\n'
        b'{"title": "Lone \\udc00", "abstract": "' + ABSTRACT.encode() + b'"}\n'
    )
    summary = await tag(tmp_path, path)
    assert (summary.done, summary.failed) == (2, 0)
    assert [e["line"] for e in summary.input_errors] == [1, 2]
    assert set(records(tmp_path / "out")) == {"Good \ufffd byte", "Lone \ufffd"}


def test_utf16_without_bom_and_binary_files_are_clear_errors(tmp_path: Path) -> None:
    cases = {
        "utf16.jsonl": json.dumps({"title": "T", "abstract": "A"}).encode("utf-16-le"),
        "report.txt": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj",
        "sheet.csv": b"PK\x03\x04\x14\x00\x06\x00",
        "papers.jsonl": gzip.compress(b'{"title": "T", "abstract": "A"}\n'),
        "random.json": bytes(range(256)) * 4,
    }
    expected = {
        "utf16.jsonl": "binary data (",
        "report.txt": "this is a PDF file, not a text file; export the papers as JSONL or CSV",
        "sheet.csv": "this is a ZIP archive (an .xlsx, .docx or .zip file), not a text file",
        "papers.jsonl": "this is gzip-compressed, not a text file",
        "random.json": "binary data (",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError) as info:
            read_papers(tmp_path / name, on_error=lambda e: None)  # a file-level error raises regardless
        assert str(info.value).startswith(f"{tmp_path / name}: {expected[name]}")
    with pytest.raises(InputError, match="if it is UTF-16 text without a byte-order mark, save it as UTF-8"):
        read_papers(tmp_path / "utf16.jsonl")


# --------------------------------------------------------------------------------------
# 6. Malformed structure


def test_malformed_json_lines_of_every_kind(tmp_path: Path) -> None:
    rows = [
        json.dumps({"title": "First", "abstract": "A."}),
        '{"title": "Trailing comma", "abstract": "B.",}',
        "{'title': 'Single quotes', 'abstract': 'C.'}",
        "[" * 50_000 + "]" * 50_000,
        '{"title": "Huge number", "abstract": "D.", "n": ' + "9" * 5000 + "}",
        "null",
        json.dumps({"papers": [{"title": "Nested"}]}),
        json.dumps({"title": "Last", "abstract": "E."}),
    ]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    torn = '{"title": "Torn at the end", "abst'  # a crash mid-write upstream
    path.write_text(path.read_text() + torn)
    papers, problems = read_all(path)
    assert [(p.title, p.line) for p in papers] == [("First", 1), ("Last", 8)]
    assert [(e.line, e.reason.split(":")[0]) for e in problems] == [
        (2, f"invalid JSON (column {len(rows[1])})"),  # the brace after the trailing comma
        (3, "invalid JSON (column 2)"),
        (4, "invalid JSON"),
        (5, "invalid JSON"),
        (6, "expected a JSON object, got null"),
        (7, "missing or empty title and abstract (its keys"),
        (9, f"invalid JSON (column {torn.rindex(chr(34)) + 1})"),  # where the unterminated string starts
    ]
    assert problems[2].reason == "invalid JSON: nested too deeply"
    assert "4300 digits" in problems[3].reason


def test_json_array_and_object_files(tmp_path: Path) -> None:
    array = tmp_path / "array.json"
    broken = '  {"title": "Four", "abstract": }'
    array.write_text(
        '[\n  {"title": "One", "abstract": "A."},\n  42,\n  {"title": "Three",\n   "abstract": "C."},\n'
        f'{broken}\n  {{"title": "Never read", "abstract": "E."}}\n]\n'
    )
    papers, problems = read_all(array)
    assert [(p.title, p.line) for p in papers] == [("One", 2), ("Three", 4)]
    assert [(e.line, e.reason) for e in problems] == [
        (3, "expected a JSON object, got a number"),
        (6, f"invalid JSON (column {broken.index('}') + 1}): Expecting value; the rest of the array is skipped"),
    ]
    pretty = tmp_path / "one.json"
    authors = [{"authorId": "1", "name": "Ann Lee"}, "Bo Li", None]  # as scholarly APIs give them
    pretty.write_text(json.dumps({"title": "Pretty", "abstract": "Printed.", "authors": authors}, indent=2))
    assert [(p.title, p.authors, p.line) for p in read_papers(pretty)] == [("Pretty", ["Ann Lee", "Bo Li"], 1)]
    lines_of_arrays = write_jsonl(tmp_path / "arrays.jsonl", [["not", "an", "object"], {"title": "B", "abstract": "b"}])
    papers, problems = read_all(lines_of_arrays)
    assert [p.title for p in papers] == ["B"] and [(e.line, e.reason) for e in problems] == [
        (1, "expected a JSON object, got an array")
    ]


def test_csv_header_problems_name_the_missing_columns(tmp_path: Path) -> None:
    cases = {
        "no_abstract.csv": (
            "Title,Summary\nA,B\n",
            "CSV header lacks required column(s): abstract (its columns: 'Title', 'Summary')",
        ),
        "neither.csv": ("name,text\nA,B\n", "CSV header lacks required column(s): title, abstract"),
        "twice.csv": ("title,abstract,Title\nA,B,C\n", "CSV header has more than one title column; keep one"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(InputError) as info:
            read_papers(tmp_path / name, on_error=lambda e: None)
        assert str(info.value).startswith(f"{tmp_path / name}:1: {message}")


def test_csv_rows_quotes_delimiters_and_long_fields(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text(
        "title,abstract,venue\n"
        'Good,"An abstract, quoted",ACL\n'
        "Extra cells,B,EMNLP,surplus\n"
        "Trailing commas,C,NAACL,,\n"
        'Unclosed,"D starts a quote that never ends\n'
        "After,E,ICLR\n",
        encoding="utf-8",
    )
    papers, problems = read_all(path)
    assert [(p.title, p.line) for p in papers] == [("Good", 2), ("Trailing commas", 4), ("After", 6)]
    assert [(e.line, e.reason.split(":")[0]) for e in problems] == [
        (3, "row has 4 fields but the header has 3"),
        (5, "unclosed quote"),
    ]
    semicolons = tmp_path / "excel_de.csv"
    semicolons.write_text("title;abstract;jahr\nEins;Ein Abstract, mit Komma;2024\n", encoding="utf-8")
    assert [(p.title, p.abstract, p.metadata) for p in read_papers(semicolons)] == [
        ("Eins", "Ein Abstract, mit Komma", {"jahr": "2024"})
    ]
    tabs = tmp_path / "tabs.csv"
    tabs.write_text("title\tabstract\nT\tA, b\n", encoding="utf-8")
    assert [(p.title, p.abstract) for p in read_papers(tabs)] == [("T", "A, b")]
    big = tmp_path / "big.csv"
    limit = csv.field_size_limit()
    big.write_text(f'title,abstract\nLong,"{"x" * 200_000}"\n', encoding="utf-8")
    assert len(read_papers(big)[0].abstract) == 200_000  # over csv's default 128 KiB field limit
    assert csv.field_size_limit() == limit  # and the process-wide limit is left as it was


def test_empty_files_are_reported_not_fatal(tmp_path: Path) -> None:
    for name, text in {"e.jsonl": "", "e.csv": "\n\n", "e.txt": "  \n", "h.csv": "title,abstract\n"}.items():
        (tmp_path / name).write_text(text)
        papers, problems = read_all(tmp_path / name)
        assert papers == [] and [type(e) for e in problems] == [InputWarning]
        reason = "no papers in this file" if name == "h.csv" else "the file is empty; no papers read"
        assert str(problems[0]) == f"{tmp_path / name}: {reason}"


def test_duplicates_keep_a_deterministic_winner_and_say_so(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [
        {"title": "Shared Title", "abstract": "Version A of the abstract.", "id": "2401.1"},
        {"title": "Same Everywhere", "abstract": "Identical."},
        {"title": "Cut short", "abstract": "The beginning of a long abstract..."},
        {"title": "One id", "abstract": "First.", "id": "2402.9"},
    ])  # fmt: skip
    b = write_jsonl(tmp_path / "b.jsonl", [
        {"title": "shared  title!", "abstract": "Version B, a different text.", "id": "2401.2"},
        {"title": "Same everywhere", "abstract": "Identical."},
        {"title": "Cut Short", "abstract": "The beginning of a long abstract, and the rest of it."},
        {"title": "Another title", "abstract": "Second.", "id": "2402.9"},
    ])  # fmt: skip
    problems: list[InputError] = []
    papers = read_inputs([a, b], on_error=problems.append)
    by_title = {p.title: p for p in papers}
    assert list(by_title) == ["Shared Title", "Same Everywhere", "Cut short", "One id", "Another title"]
    assert by_title["Shared Title"].abstract == "Version A of the abstract."
    assert by_title["Cut short"].abstract.endswith("the rest of it.")  # the full text replaces a cut one
    assert [str(e) for e in problems] == [
        f"{b}:1: same title as 'Shared Title' ({a}:1) but a different abstract and a different id "
        "('2401.2', not '2401.1'); the first is kept",
        f"{b}:4: input id '2402.9' is also the id of 'One id' ({a}:4); both are kept, "
        "as papers are told apart by their titles",
    ]
    assert all(isinstance(e, InputWarning) for e in problems)
    reverse = {p.title: p for p in read_inputs([b, a])}
    assert reverse["shared title!"].abstract == "Version B, a different text."  # order decides, nothing else
    assert read_inputs([a, b])[0].abstract == papers[0].abstract  # and again the same


async def test_a_run_dedupes_and_reports_conflicts(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [{"title": "Twice", "abstract": ABSTRACT}])
    b = tmp_path / "b.csv"
    b.write_text(f'title,abstract\nTWICE,"{ABSTRACT} Another sentence differs."\n', encoding="utf-8")
    c = write_jsonl(tmp_path / "c.jsonl", [{"title": "twice", "abstract": "Something else entirely."}])
    summary = await tag(tmp_path, a, b, c)
    assert (summary.papers, summary.done) == (1, 1)
    assert [(e["path"], e["line"]) for e in summary.input_errors] == [(str(c), 1)]
    assert "the first is kept" in summary.input_errors[0]["reason"]


_SUPPORTED = "supported: .jsonl, .json, .csv, .txt, .bib, .xml, .atom"
UNKNOWN = {
    "paper.pdf": f"unsupported input format '.pdf'; {_SUPPORTED}; this reads lists of papers",
    "sheet.xlsx": f"unsupported input format '.xlsx'; {_SUPPORTED}; save it as CSV (UTF-8)",
    "notes.docx": f"unsupported input format '.docx'; {_SUPPORTED}",
    "README": "unsupported input format '(no extension)'",
    "folder.jsonl": "is a directory, expected a file",
    "missing.csv": "file not found",
}


def test_unknown_formats_directories_and_missing_paths(tmp_path: Path) -> None:
    for name in UNKNOWN:
        if name == "folder.jsonl":
            (tmp_path / name).mkdir()
        elif name != "missing.csv":
            (tmp_path / name).write_bytes(b"PK\x03\x04")
    for name, message in UNKNOWN.items():
        with pytest.raises(InputError) as info:
            read_papers(tmp_path / name, on_error=lambda e: None)
        assert str(info.value).startswith(f"{tmp_path / name}: {message}"), str(info.value)
        assert info.value.path == tmp_path / name


def test_the_cli_reports_a_bad_input_file_with_exit_code_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A dead server, not the embedded model: input errors come before any backend is started.
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    good = write_jsonl(tmp_path / "good.jsonl", [{"title": "Fine", "abstract": ABSTRACT}])
    (tmp_path / "paper.pdf").write_bytes(b"%PDF-1.7")
    result = CliRunner().invoke(app, ["tag", str(good), str(tmp_path / "paper.pdf"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "paper.pdf: unsupported input format '.pdf'" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_one_paper_inputs_are_checked_like_files() -> None:
    with pytest.raises(InputError, match=r"^<command line>: abstract is a placeholder \('N/A'\)"):
        pick_paper(title="A title", abstract="N/A")
    with pytest.raises(InputError, match=r"^<stdin>:1: title has no letters or digits"):
        pick_paper(stdin_text='{"title": "---", "abstract": "Real text."}')
    with pytest.raises(InputError, match=r"^<stdin>: not valid JSON: nested too deeply"):
        pick_paper(stdin_text='{"a": ' + "[" * 50_000 + "]" * 50_000 + "}")
    paper = pick_paper(stdin_text='{"title": "Lone \\ud800", "abstract": "Text \\u0000here."}')
    assert (paper.title, paper.abstract) == ("Lone \ufffd", "Text here.")


# --------------------------------------------------------------------------------------
# 8. Output file names never come from paper text

HOSTILE_TITLES = ["../../etc/passwd", "/abs/path/x", "CON", "NUL.txt", "a\\b:c*?<>|", "x" * 300, "tab\there"]


async def test_hostile_titles_never_become_file_names(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "hostile.jsonl", [{"title": t, "abstract": ABSTRACT} for t in HOSTILE_TITLES])
    before = set(tmp_path.iterdir())
    summary = await tag(tmp_path, path)
    assert summary.done == len(HOSTILE_TITLES) and summary.input_errors == []
    created = {p.name for p in set(tmp_path.iterdir()) - before}
    assert created == {"out", "cache"}
    fixed = {"records.jsonl", "failures.jsonl", "manifest.json", "records.csv", "records.parquet", "digest.md", ".lock"}
    assert {p.name for p in (tmp_path / "out").iterdir()} <= fixed
    assert not any(p.is_dir() for p in (tmp_path / "out").iterdir())
    assert os.listdir(tmp_path / "out")  # the run wrote its files, under their own names only


async def test_an_input_file_name_that_is_not_utf8_cannot_break_the_writes(tmp_path: Path) -> None:
    path = tmp_path / os.fsdecode(b"caf\xe9.jsonl")  # Latin-1 bytes in a name: surrogate escapes in Python
    write_jsonl(path, [{"title": "Fine", "abstract": ABSTRACT}, {"title": "Fails", "abstract": ABSTRACT}, "{bad"])
    backend = FakeBackend(
        responder=lambda m: ExtractionFailed("no answer") if "Title: Fails" in m[-1]["content"] else valid_answer(m)
    )
    summary = await run_tag([path], tmp_path / "out", settings(tmp_path), backend=backend)
    assert (summary.done, summary.failed) == (1, 1)
    shown = str(tmp_path / "caf\\xe9.jsonl")  # the bad byte as an escape, printable and writable
    reason = summary.input_errors[0]["reason"]
    assert summary.input_errors == [{"path": shown, "line": 3, "reason": reason, "repaired": False}]
    failure = json.loads((tmp_path / "out" / "failures.jsonl").read_text(encoding="utf-8"))
    assert (failure["source"], failure["line"]) == (shown, 2)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert Path(manifest["inputs"][0]["path"]) == path and "sha256" in manifest["inputs"][0]  # still findable
