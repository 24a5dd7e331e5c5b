"""Exports of a run: CSV columns, Parquet, and a Markdown digest that escapes paper text."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from summarizer.cache import canonical_json
from summarizer.digest import md_escape, render_digest
from summarizer.errors import OutputError
from summarizer.export import COLUMNS, RECORDS, export_run, load_results
from summarizer.schemas import Failure, PaperRecord, Provenance, Result, Usage, paper_id

CATEGORIES = ["learning_from_feedback", "interpretability", "governance"]
HOSTILE = "<script>alert(1)</script> | *bold* [x](http://e.vil) `code` _under_ #1"
# (title, category index): 1 + 2 + 3 papers
PAPERS = [
    ("FooBench: a benchmark", 0),
    ("Probing circuits", 1),
    ("Attribution graphs", 1),
    ("Rules for labs", 2),
    (HOSTILE, 2),
    ("Yet more rules", 2),
]


def make_result(title: str, category: str) -> Result:
    foo = title.startswith("FooBench")
    record = PaperRecord.model_validate(
        {
            "paper_id": paper_id(title),
            "title": title,
            "summary": f"A summary of {title}.",
            "contribution_type": "dataset_or_benchmark" if foo else "new_method",
            "method": {"name": "FooBench" if foo else None, "description": "What it does.", "evidence": None},
            "datasets": [
                {"name": "FooBench", "role": "introduced", "evidence": "We introduce FooBench."},
                {"name": "ImageNet", "role": "used", "evidence": "We evaluate on ImageNet."},
            ]
            if foo
            else [],
            "claims": [
                {"statement": "It is new.", "evidence": "We introduce FooBench."},
                {"statement": "It is evaluated.", "evidence": "We evaluate on ImageNet."},
            ]
            if foo
            else [{"statement": "A finding.", "evidence": "A sentence."}],
            "category": {"primary": category, "secondary": [], "rationale": "Because."},
        }
    )
    provenance = Provenance(
        backend="fake", model="fake:m", prompt_hash="p", taxonomy_hash="t", schema_hash="s", cache_key="k",
        cache_hit=False, usage=Usage(prompt_tokens=100, completion_tokens=50), started_at="a", finished_at="b",
    )  # fmt: skip
    return Result(record=record, provenance=provenance)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    lines = [canonical_json(make_result(t, CATEGORIES[c]).model_dump(mode="json")) + "\n" for t, c in PAPERS]
    (tmp_path / RECORDS).write_text("".join(lines), encoding="utf-8")
    export_run(tmp_path)
    return tmp_path


def test_csv_has_one_row_per_paper_and_flattened_lists(run_dir: Path) -> None:
    text = (run_dir / "records.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == [name for name, _ in COLUMNS]
    assert len(rows) == len(PAPERS)
    foo = next(r for r in rows if r["title"].startswith("FooBench"))
    assert foo["datasets"] == "FooBench (introduced); ImageNet (used)"
    assert foo["claims"] == "It is new. | It is evaluated."
    assert [d["name"] for d in json.loads(foo["datasets_json"])] == ["FooBench", "ImageNet"]
    assert len(json.loads(foo["claims_json"])) == 2
    assert foo["method_name"] == "FooBench" and foo["primary_category"] == "learning_from_feedback"
    assert foo["cache_hit"] == "False" and int(foo["prompt_tokens"]) == 100


def test_parquet_is_readable_with_pyarrow(run_dir: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(run_dir / "records.parquet")
    assert table.num_rows == len(PAPERS)
    # The CSV's columns less its two JSON strings, which Parquet holds as typed lists instead.
    assert table.column_names == [name for name, _ in COLUMNS if not name.endswith("_json")]
    assert table.schema.field("cache_hit").type == pa.bool_()
    assert table.schema.field("prompt_tokens").type == pa.int64()
    titles = table.column("title").to_pylist()
    assert sorted(titles) == sorted(t for t, _ in PAPERS)


def test_digest_groups_by_category_with_counts(run_dir: Path) -> None:
    digest = (run_dir / "digest.md").read_text(encoding="utf-8")
    assert "6 papers in 3 categories" in digest
    headings = re.findall(r"^## (.+) \((\d+)\)$", digest, flags=re.MULTILINE)
    assert headings == [("governance", "3"), ("interpretability", "2"), ("learning\\_from\\_feedback", "1")]
    sections = re.split(r"^## ", digest, flags=re.MULTILINE)[1:]
    for section, (_, count) in zip(sections, headings, strict=True):
        assert len(re.findall(r"^- \*\*", section, flags=re.MULTILINE)) == int(count)
    assert "| governance | 3 |" in digest
    assert "  - Method: **FooBench**:" in digest
    assert "  - Datasets: FooBench (introduced); ImageNet (used)" in digest


def test_digest_escapes_markdown_and_html_in_paper_text(run_dir: Path) -> None:
    digest = (run_dir / "digest.md").read_text(encoding="utf-8")
    assert "<script>" not in digest and "&lt;script&gt;" in digest
    line = next(x for x in digest.splitlines() if "script" in x)
    assert "\\|" in line and "\\*bold\\*" in line and "\\[x\\]\\(http://e.vil\\)" in line and "\\`code\\`" in line
    # Every table row still has exactly its three column bars.
    for row in (x for x in digest.splitlines() if x.startswith("|")):
        assert len(re.findall(r"(?<!\\)\|", row)) == 3


def test_md_escape() -> None:
    assert md_escape("a <b> & c") == "a &lt;b&gt; &amp; c"
    escaped = "x\\|y \\*z\\* \\_w\\_ \\[l\\]\\(u\\) \\`c\\` \\#h \\~s\\~ \\\\"
    assert md_escape("x|y *z* _w_ [l](u) `c` #h ~s~ \\") == escaped
    assert md_escape("two\nlines  here") == "two lines here"  # a newline would end a list item


def test_digest_lists_failed_papers() -> None:
    failure = Failure(paper_id="ab", title="Broken <i>paper</i>", error="ExtractionFailed", reason="r", finished_at="t")
    digest = render_digest([], [failure])
    assert "## Failed (1)" in digest and "Broken &lt;i&gt;paper&lt;/i&gt;" in digest


def test_export_regenerates_from_records_and_skips_a_torn_line(run_dir: Path) -> None:
    for name in ("records.csv", "records.parquet", "digest.md"):
        (run_dir / name).unlink()
    with (run_dir / RECORDS).open("a") as fh:
        fh.write('{"provenance": {"backend"')  # a crash mid-line
    written = export_run(run_dir)
    assert set(written) == {"csv", "parquet", "md"} and all(p.exists() for p in written.values())
    assert len(load_results(run_dir)) == len(PAPERS)


def test_export_only_some_formats(run_dir: Path) -> None:
    (run_dir / "digest.md").unlink()
    (run_dir / "records.csv").unlink()
    written = export_run(run_dir, formats=["md"])
    assert list(written) == ["md"] and (run_dir / "digest.md").exists() and not (run_dir / "records.csv").exists()
    with pytest.raises(OutputError, match="unknown export format"):
        export_run(run_dir, formats=["xlsx"])


def test_export_of_a_directory_without_records_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="not a run directory"):
        export_run(tmp_path)


def test_export_cli(run_dir: Path) -> None:
    from typer.testing import CliRunner

    from summarizer.cli import app

    (run_dir / "records.parquet").unlink()
    result = CliRunner().invoke(app, ["export", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert (run_dir / "records.parquet").exists() and "records.parquet" in result.output
    missing = CliRunner().invoke(app, ["export", str(run_dir / "nope")])
    assert missing.exit_code == 1 and "not a run directory" in missing.output


def test_empty_run_exports_headers_and_an_empty_digest(tmp_path: Path) -> None:
    (tmp_path / RECORDS).write_text("")
    export_run(tmp_path)
    assert (tmp_path / "records.csv").read_text().startswith("paper_id,title,")
    assert "0 papers" in (tmp_path / "digest.md").read_text()
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "records.parquet").num_rows == 0


def test_csv_cells_cannot_run_as_spreadsheet_formulas() -> None:
    from summarizer.export import to_csv

    text = to_csv([make_result('=HYPERLINK("http://x") Paper', "learning_from_feedback")])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["title"].startswith("'=HYPERLINK")


@pytest.mark.parametrize("control", ["\r", "\n", "\r\n", "\t", "\x1b", "\x0b", "\x0c", "\x85", "\u2028"])
@pytest.mark.parametrize("start", ["=", "+", "-", "@"])
def test_csv_control_characters_cannot_start_a_row_or_a_formula(control: str, start: str) -> None:
    # A model answer (which an abstract can steer) with a lone \r once split the row, and the
    # text after it began a new line with a live formula.
    from summarizer.export import to_csv

    payload = f"{start}cmd|' /C calc'!A0"
    result = make_result("A title", "learning_from_feedback")
    # model_copy skips validation (which strips controls from generated text): the CSV guard
    # must hold by itself, for records stored before that, or read back from elsewhere.
    hostile = {"title": f"{control}{payload}", "summary": f"A method.{control}{payload}"}
    record = result.record.model_copy(update=hostile)
    text = to_csv([result.model_copy(update={"record": record})])
    physical = re.split(r"\r\n|[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]", text.rstrip("\n"))
    assert len(physical) == 2, physical  # the header and one row: nothing split it
    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", text.rstrip("\n").replace("\n", "", 1))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 1
    assert rows[0]["title"].startswith("'") and payload in rows[0]["title"]
    assert rows[0]["summary"] == f"A method. {payload}"
    for line in physical[1:]:
        for cell in next(csv.reader([line])):
            assert cell.lstrip()[:1] not in ("=", "+", "-", "@"), cell
