"""The input's own identity (id, authors, date, URL, DOI) reaches every output, escaped; never the cache or prompt."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pytest

from summarizer.batch import run_tag
from summarizer.cache import RunCache
from summarizer.digest import render_digest
from summarizer.export import RECORDS, load_results
from summarizer.extract import Extractor
from summarizer.fakes import FakeBackend, valid_answer
from summarizer.report import render_run_report, write_run_report
from summarizer.schemas import Paper, PaperSource, Result
from summarizer.settings import Settings
from summarizer.sources import read_inputs

FORMATS = Path(__file__).resolve().parent.parent / "examples" / "formats"
ZOTERO = FORMATS / "zotero.csv"  # Zotero keys as ids, DOIs, arXiv URLs
CSL = FORMATS / "csl.json"  # the same first paper, under the id "ji2023ai"
SURVEY = "AI Alignment: A Comprehensive Survey"


def settings(tmp_path: Path) -> Settings:
    return Settings(cache_dir=tmp_path / "cache", concurrency=2)


def records(outdir: Path) -> dict[str, dict[str, object]]:
    lines = (outdir / RECORDS).read_text(encoding="utf-8").splitlines()
    return {v["record"]["title"]: v for v in map(json.loads, lines)}


@pytest.fixture
def zotero_run(tmp_path: Path) -> Path:
    out = tmp_path / "zotero"
    summary = asyncio.run(run_tag([ZOTERO], out, settings(tmp_path), backend=FakeBackend(responder=valid_answer)))
    assert summary.done == 4 and summary.failed == 0
    return out


def test_records_carry_the_inputs_identity(zotero_run: Path) -> None:
    survey = records(zotero_run)[SURVEY]
    assert survey["source"] == {
        "id": "7XQ2KJ9M",
        "authors": ["Jiaming Ji", "Tianyi Qiu", "Boyuan Chen"],
        "date": "2023-10-30",
        "url": "http://arxiv.org/abs/2310.19852",
        "doi": "10.48550/arXiv.2310.19852",
    }
    assert all(r.source is not None and r.source.id for r in load_results(zotero_run))


def test_csv_rows_carry_identity_and_link(zotero_run: Path) -> None:
    rows = list(csv.DictReader(io.StringIO((zotero_run / "records.csv").read_text(encoding="utf-8"))))
    survey = next(r for r in rows if r["title"] == SURVEY)
    assert survey["input_id"] == "7XQ2KJ9M"
    assert survey["authors"] == "Jiaming Ji; Tianyi Qiu; Boyuan Chen"
    assert (survey["date"], survey["doi"]) == ("2023-10-30", "10.48550/arXiv.2310.19852")
    assert survey["url"] == survey["link"] == "http://arxiv.org/abs/2310.19852"


def test_parquet_has_nested_types_queryable_without_json(zotero_run: Path) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(zotero_run / "records.parquet")
    schema = table.schema
    assert schema.field("authors").type == pa.list_(pa.string())
    dataset = pa.struct([("name", pa.string()), ("role", pa.string()), ("evidence", pa.string())])
    assert schema.field("datasets").type == pa.list_(dataset)
    assert schema.field("claims").type == pa.list_(pa.struct([("statement", pa.string()), ("evidence", pa.string())]))
    assert schema.field("secondary_categories").type == pa.list_(pa.string())
    assert "datasets_json" not in schema.names and "claims_json" not in schema.names
    # Queried as values: every claim's evidence, and the first author, with no JSON parsing.
    claims = pc.list_flatten(table.column("claims"))
    assert len(claims) >= table.num_rows and all(pc.struct_field(claims, "evidence").to_pylist())
    by_title = dict(zip(table.column("title").to_pylist(), table.column("authors").to_pylist(), strict=True))
    assert by_title[SURVEY] == ["Jiaming Ji", "Tianyi Qiu", "Boyuan Chen"]
    assert table.column("input_id").to_pylist().count("7XQ2KJ9M") == 1


def test_digest_links_each_paper_and_names_its_source(zotero_run: Path) -> None:
    digest = (zotero_run / "digest.md").read_text(encoding="utf-8")
    assert "- [**AI Alignment: A Comprehensive Survey**](<http://arxiv.org/abs/2310.19852>):" in digest
    assert (
        "  - Source: Jiaming Ji, Tianyi Qiu, Boyuan Chen · 2023-10-30 · id 7XQ2KJ9M · DOI 10.48550/arXiv.2310.19852"
        in digest
    )


async def test_cache_hits_carry_this_inputs_identity_and_the_cache_holds_none(tmp_path: Path, zotero_run: Path) -> None:
    # Two of the Zotero run's papers, in CSL-JSON under other ids: served from the cache it filled.
    out = tmp_path / "csl"
    summary = await run_tag([CSL], out, settings(tmp_path), backend=FakeBackend(responder=valid_answer))
    assert summary.cached == 2 and summary.done == 4
    survey = records(out)[SURVEY]
    assert survey["provenance"]["cache_hit"] is True  # type: ignore[index]
    assert isinstance(survey["source"], dict) and survey["source"]["id"] == "ji2023ai"
    cache = RunCache(tmp_path / "cache", lambda _: None)
    try:
        key = survey["provenance"]["cache_key"]  # type: ignore[index]
        raw = cache.get_raw(key)
        assert raw is not None and "7XQ2KJ9M" not in raw and "ji2023ai" not in raw and '"source"' not in raw
    finally:
        cache.close()


async def test_extractor_attaches_identity_after_the_cache_and_never_prompts_with_it(tmp_path: Path) -> None:
    paper = read_inputs([ZOTERO])[0]
    other = paper.model_copy(update={"metadata": {"id": "other-id"}, "authors": ["Someone Else"], "date": None})
    backend = FakeBackend(responder=valid_answer)
    async with Extractor(settings(tmp_path), backend=backend) as ex:
        assert ex.key_for(paper) == ex.key_for(other)
        first = await ex.extract(paper)
        second = await ex.extract(other)
    assert first.source is not None and first.source.id == "7XQ2KJ9M"
    assert second.provenance.cache_hit and second.source == PaperSource(id="other-id", authors=["Someone Else"])
    prompt = json.dumps(backend.calls)
    assert len(backend.calls) >= 1 and "7XQ2KJ9M" not in prompt and "Tianyi Qiu" not in prompt


def test_a_paper_without_identity_has_no_source() -> None:
    assert PaperSource.of(Paper.from_text("T", "A.")) is None
    assert PaperSource.of(Paper.from_text("T", "A.", metadata={"doi": "10.1/x"})) == PaperSource(doi="10.1/x")


@pytest.mark.parametrize(
    ("source", "link"),
    [
        (PaperSource(url="https://ex.org/p?a=1&b=2", doi="10.1/x"), "https://ex.org/p?a=1&b=2"),
        (PaperSource(url="javascript:alert(1)", doi="doi:10.1/x(y)"), "https://doi.org/10.1/x%28y%29"),
        (PaperSource(doi="https://doi.org/10.48550/arXiv.2310.19852"), "https://doi.org/10.48550/arXiv.2310.19852"),
        (PaperSource(id="arXiv:2310.19852v2"), "https://arxiv.org/abs/2310.19852v2"),
        (PaperSource(id="hep-th/9901001"), "https://arxiv.org/abs/hep-th/9901001"),
        (PaperSource(id="7XQ2KJ9M", doi="not a doi", url="ftp://x.org/p"), None),
        (PaperSource(url='http://x.org/a b)"<i>'), "http://x.org/a%20b%29%22%3Ci%3E"),
    ],
)
def test_link_is_an_http_url_else_doi_else_arxiv(source: PaperSource, link: str | None) -> None:
    assert source.link == link


HOSTILE = PaperSource(
    id="<b>id</b>",
    authors=["<script>alert(1)</script>", "*Star* [x](javascript:y)"],
    date="2024 | x",
    url="javascript:alert(document.cookie)",
    doi="10.1/<img src=x>",
)


def _result(source: PaperSource | None) -> Result:
    from test_export import make_result

    return make_result("A paper", "governance").model_copy(update={"source": source})


def test_digest_escapes_identity_and_links_only_http() -> None:
    digest = render_digest([_result(HOSTILE)])
    assert "](<javascript" not in digest and "[**A paper**](" in digest  # the DOI's link, not the URL
    line = next(x for x in digest.splitlines() if x.startswith("  - Source:"))
    assert "<script>" not in line and "&lt;script&gt;" in line and "\\*Star\\*" in line and "\\[x\\]" in line
    assert "2024 \\| x" in line and "URL javascript:alert\\(document.cookie\\)" in line
    assert "(<https://doi.org/10.1/%3Cimg%20src=x%3E>)" in digest


def test_report_card_escapes_identity_and_links_only_http() -> None:
    page = render_run_report([_result(HOSTILE), _result(PaperSource(url="http://ok.org/p", authors=["Ann Lee"]))])
    assert 'href="javascript' not in page and "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;id&lt;/b&gt;" in page
    assert 'href="https://doi.org/10.1/%3Cimg%20src=x%3E"' in page
    assert 'href="http://ok.org/p" rel="noopener noreferrer"' in page
    assert '<p class="byline">Ann Lee</p>' in page


def test_report_of_a_real_run_links_and_bylines_every_card(zotero_run: Path) -> None:
    from summarizer.report import write_run_report

    page = write_run_report(zotero_run).path.read_text(encoding="utf-8")
    assert page.count('<p class="byline">') == 4
    assert (
        '<a href="http://arxiv.org/abs/2310.19852" rel="noopener noreferrer">AI Alignment: A Comprehensive Survey</a>'
        in page
    )
    assert "Jiaming Ji, Tianyi Qiu, Boyuan Chen · 2023-10-30 · id 7XQ2KJ9M · DOI 10.48550/arXiv.2310.19852" in page


def test_failed_papers_carry_the_inputs_identity(tmp_path: Path) -> None:
    # One paper the model never answers validly (a recorded failure after its re-asks), one
    # whose call raises something unexpected (the batch's own catch-all): both must still be
    # traceable to the user's library, and a paper that fails from a bare input carries none.
    reward = "Reward Generalization in RLHF: A Topological Perspective"
    bare = tmp_path / "bare.jsonl"
    bare.write_text(json.dumps({"title": "A Bare Paper", "abstract": "We study a thing. We find a result."}) + "\n")

    def responder(messages: list[dict[str, str]]) -> object:
        prompt = messages[-1]["content"]
        if SURVEY in prompt or "A Bare Paper" in prompt:
            return {"summary": "not a record"}
        if reward in prompt:
            return RuntimeError("connection reset in a way nobody expected")
        return valid_answer(messages)

    out = tmp_path / "out"
    summary = asyncio.run(run_tag([ZOTERO, bare], out, settings(tmp_path), backend=FakeBackend(responder=responder)))
    assert (summary.done, summary.failed) == (2, 3)  # of the Zotero file's 4 and the bare one
    lines = [json.loads(line) for line in (out / "failures.jsonl").read_text(encoding="utf-8").splitlines()]
    failed = {f["title"]: f for f in lines}
    assert failed[SURVEY]["error"] == "ExtractionFailed"
    assert failed[SURVEY]["identity"] == {
        "id": "7XQ2KJ9M",
        "authors": ["Jiaming Ji", "Tianyi Qiu", "Boyuan Chen"],
        "date": "2023-10-30",
        "url": "http://arxiv.org/abs/2310.19852",
        "doi": "10.48550/arXiv.2310.19852",
    }
    assert failed[SURVEY]["source"] == str(ZOTERO) and failed[SURVEY]["line"] == 2  # the file, as before
    assert failed[reward]["error"] == "RuntimeError"
    assert failed[reward]["identity"]["id"] == "B3N8WZ4T"
    assert failed[reward]["identity"]["doi"] == "10.48550/arXiv.2402.10184"
    assert failed["A Bare Paper"]["identity"] is None
    # The digest names and links the failed paper as it does a record.
    digest = (out / "digest.md").read_text(encoding="utf-8")
    assert f"- [**{SURVEY}**](<http://arxiv.org/abs/2310.19852>): ExtractionFailed (" in digest
    assert "id 7XQ2KJ9M" in digest
    # So does the HTML report's table of failed papers.
    html = (out / "report.html").read_text(encoding="utf-8") if write_run_report(out) else ""
    assert f'<a href="http://arxiv.org/abs/2310.19852" rel="noopener noreferrer">{SURVEY}</a>' in html
