"""The exports researchers have: each example in examples/formats/ read with exact counts and fields.

The examples carry the seed papers' real titles and abstracts (examples/seeds/) in each
format's own layout, so every test also checks that the text survives the format: an
abstract read from Zotero, BibTeX or OpenReview is the seed's abstract.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from summarizer.batch import run_tag
from summarizer.cli import app
from summarizer.errors import InputError
from summarizer.fakes import FakeBackend, valid_answer
from summarizer.formats import ReadOptions, fetch_arxiv, parse_field_map, read_atom
from summarizer.schemas import Paper, normalise_ws
from summarizer.settings import Settings
from summarizer.sources import InputWarning, pick_paper, read_inputs, read_papers

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ROOT / "examples" / "formats"
SEEDS = {p.title: p for f in sorted((ROOT / "examples" / "seeds").glob("*.txt")) for p in read_papers(f)}

AIA = "AI Alignment: A Comprehensive Survey"
RG = "Reward Generalization in RLHF: A Topological Perspective"
E2H = "Easy-to-Hard Generalization: Scalable Alignment Beyond Human Supervision"
LLMS = "Large Language Model Alignment: A Survey"
PRISM = "PRISM-X: Experiments on Personalised Fine-Tuning with Human and Simulated Users"
E2H_AUTHORS = ["Zhiqing Sun", "Longhui Yu", "Yikang Shen", "Weiyang Liu", "Yiming Yang", "Sean Welleck", "Chuang Gan"]


def read(name: str, options: ReadOptions | None = None) -> tuple[list[Paper], list[InputError]]:
    problems: list[InputError] = []
    return read_papers(FORMATS / name, on_error=problems.append, options=options), problems


def assert_seed_text(papers: list[Paper]) -> None:
    for paper in papers:
        assert normalise_ws(paper.abstract) == normalise_ws(SEEDS[paper.title].abstract), paper.title


def identity(paper: Paper) -> tuple[Any, ...]:
    m = paper.metadata
    return (paper.line, paper.title, paper.date, m.get("id"), m.get("url"), m.get("doi"))


# --------------------------------------------------------------------------------------
# Reference managers


def test_zotero_csv_reads_its_own_column_names() -> None:
    papers, problems = read("zotero.csv")
    assert problems == []
    assert [identity(p) for p in papers] == [
        (2, AIA, "2023-10-30", "7XQ2KJ9M", "http://arxiv.org/abs/2310.19852", "10.48550/arXiv.2310.19852"),
        (3, RG, "2024-02-15", "B3N8WZ4T", "http://arxiv.org/abs/2402.10184", "10.48550/arXiv.2402.10184"),
        (4, PRISM, "2025-05-13", "K5RT9PLE", None, None),
        (5, "Curriculum Learning-Guided Progressive Distillation in Large Language Models", "2025-05-11",
         "Q2HW6MDA", None, None),
    ]  # fmt: skip
    # Zotero writes "Family, Given; Family, Given"; names come out in reading order.
    assert papers[0].authors == ["Jiaming Ji", "Tianyi Qiu", "Boyuan Chen"]
    assert papers[2].authors == ["Hannah Rose Kirk", "Liu Leqi", "Fanzhi Zeng"]
    # Zotero's ~80 empty columns are not kept; its filled ones are.
    assert papers[0].metadata["Item Type"] == "preprint" and "ISBN" not in papers[0].metadata
    assert "Abstract Note" not in papers[0].metadata  # the abstract is not kept twice
    assert_seed_text(papers)


def test_excel_csv_in_cp1252_reads_its_accents_and_says_which_encoding() -> None:
    papers, problems = read("excel-cp1252.csv")
    assert [p.metadata["Notes"] for p in papers] == [
        "À lire – méthode à base de règles",
        "Résumé pour Zoë",
        "Jeu de données « visuel »",
    ]
    (warning,) = problems
    assert isinstance(warning, InputWarning) and warning.line == 2
    assert warning.reason.startswith("not UTF-8: read as cp1252 (detected; the first non-UTF-8 byte, 0xC0")
    assert papers[0].authors == ["Fanzhi Zeng", "Siqi Wang", "Chuzhao Zhu"]
    assert_seed_text(papers)


def test_csl_json_reads_names_dates_and_identifiers() -> None:
    papers, problems = read("csl.json")
    assert problems == []
    assert [identity(p) for p in papers] == [
        (2, AIA, "2023-10-30", "ji2023ai", "http://arxiv.org/abs/2310.19852", "10.48550/arXiv.2310.19852"),
        (36, RG, "2024-02-15", "qiu2024reward", "http://arxiv.org/abs/2402.10184", "10.48550/arXiv.2402.10184"),
        (70, E2H, "2024-03-14", "sun2024easy", "http://arxiv.org/abs/2403.09472", "10.48550/arXiv.2403.09472"),
        (120, LLMS, "2023-09-26", "shen2023large", "http://arxiv.org/abs/2309.15025", "10.48550/arXiv.2309.15025"),
    ]
    assert papers[2].authors == E2H_AUTHORS
    assert papers[0].metadata["type"] == "article" and "author" not in papers[0].metadata
    assert_seed_text(papers)


def test_csl_partial_dates_and_literal_names(tmp_path: Path) -> None:
    path = tmp_path / "partial.json"
    item = {"id": "x", "title": "T one", "abstract": "Some text.", "issued": {"date-parts": [[2023, 9]]}}
    item["author"] = [{"literal": "The ACME Consortium"}, {"family": "Doe", "given": "Jane", "suffix": "Jr."}]
    path.write_text(json.dumps([item]), encoding="utf-8")
    (paper,) = read_papers(path)
    assert (paper.date, paper.authors) == ("2023-09", ["The ACME Consortium", "Jane Doe Jr."])


def test_bibtex_reads_entries_decoding_latex() -> None:
    papers, problems = read("papers.bib")
    assert problems == []
    assert [(p.line, p.metadata["id"], p.metadata["type"], p.date, p.metadata["doi"]) for p in papers] == [
        (3, "sun2024easytohard", "article", "2024-03", "10.48550/arXiv.2403.09472"),
        (14, "shen2023alignment", "misc", "2023-09", "10.48550/arXiv.2309.15025"),
        (25, "lee2024meteor", "article", "2024-05", "10.48550/arXiv.2405.15574"),
        (36, "chakraborty2024transfer", "article", "2024-05", "10.48550/arXiv.2405.20495"),
    ]
    assert papers[0].authors == E2H_AUTHORS
    assert papers[0].metadata["url"] == "https://arxiv.org/abs/2403.09472"  # from the eprint
    # "34.0\%" is LaTeX for "34.0%"; the seed page dump kept the backslash.
    assert "an accuracy of 34.0% on MATH500" in papers[0].abstract
    assert normalise_ws(papers[1].abstract) == normalise_ws(SEEDS[LLMS].abstract)


def test_a_broken_bibtex_entry_costs_that_entry_only(tmp_path: Path) -> None:
    path = tmp_path / "refs.bib"
    path.write_text(
        "@article{good1, title = {One}, abstract = {First abstract.}, author = {M{\\\"u}ller, Jos{\\'e}}}\n"
        "@article{broken,\n  title = {Never closed,\n"
        "@article{good2, title = {Two}, abstract = {Second abstract.}, year = 2020}\n"
        "@article{noabs, title = {Three}}\n",
        encoding="utf-8",
    )
    problems: list[InputError] = []
    papers = read_papers(path, on_error=problems.append)
    assert [(p.title, p.authors, p.date) for p in papers] == [("One", ["José Müller"], None), ("Two", None, "2020")]
    assert [(e.line, e.reason.split(":")[0]) for e in problems] == [
        (2, "malformed BibTeX entry"),
        (5, "missing or empty abstract (its keys"),
    ]


# --------------------------------------------------------------------------------------
# arXiv, Hugging Face, OpenReview


def test_arxiv_api_atom_feed() -> None:
    papers, problems = read("arxiv-api.xml")
    assert problems == []
    assert [identity(p) for p in papers] == [
        (10, AIA, "2023-10-30", "2310.19852v1", "http://arxiv.org/abs/2310.19852v1", "10.48550/arXiv.2310.19852"),
        (32, RG, "2024-02-15", "2402.10184v1", "http://arxiv.org/abs/2402.10184v1", "10.48550/arXiv.2402.10184"),
        (54, E2H, "2024-03-14", "2403.09472v1", "http://arxiv.org/abs/2403.09472v1", "10.48550/arXiv.2403.09472"),
    ]
    assert papers[2].authors == E2H_AUTHORS and papers[0].metadata["primary_category"] == "cs.AI"
    assert_seed_text(papers)


def test_an_atom_feed_is_recognised_in_a_txt_file_and_bad_xml_is_one_line(tmp_path: Path) -> None:
    feed = tmp_path / "query.txt"
    feed.write_bytes((FORMATS / "arxiv-api.xml").read_bytes())
    assert len(read_papers(feed)) == 3
    broken = tmp_path / "cut.xml"
    broken.write_text((FORMATS / "arxiv-api.xml").read_text(encoding="utf-8")[:3000], encoding="utf-8")
    with pytest.raises(InputError, match=r"cut\.xml:\d+: invalid XML \(column \d+\): (unclosed token|no element)"):
        read_papers(broken)
    other = tmp_path / "other.xml"
    other.write_text("<rss><channel/></rss>", encoding="utf-8")
    with pytest.raises(InputError, match=r"other\.xml: XML, but not an Atom feed \(its root is <rss>\)"):
        read_papers(other)


def test_arxiv_style_json_whose_abstract_is_summary() -> None:
    papers, problems = read("arxiv.json")
    assert problems == []
    assert [(p.line, p.metadata["id"], p.date, p.metadata["url"]) for p in papers] == [
        (2, "2309.15025v1", "2023-09-26", "https://arxiv.org/abs/2309.15025v1"),
        (44, "2410.14940v1", "2024-10-19", "https://arxiv.org/abs/2410.14940v1"),
        (58, "2308.01525v1", "2023-08-03", "https://arxiv.org/abs/2308.01525v1"),
        (72, "2504.14772v1", "2025-04-20", "https://arxiv.org/abs/2504.14772v1"),
    ]
    assert papers[0].authors is not None and papers[0].authors[:2] == ["Tianhao Shen", "Renren Jin"]
    assert papers[1].title == "Baichuan Alignment Technical Report" and "summary" not in papers[1].metadata
    assert_seed_text(papers)


def test_hugging_face_daily_papers() -> None:
    papers, problems = read("hf-daily-papers.json")
    assert problems == []
    assert [(p.line, p.metadata["id"], p.date, p.metadata["url"], p.metadata["upvotes"]) for p in papers] == [
        (2, "2405.15574", "2024-05-24", "https://arxiv.org/abs/2405.15574", "44"),
        (19, "2405.20495", "2024-05-30", "https://arxiv.org/abs/2405.20495", "9"),
        (36, "2403.09472", "2024-03-14", "https://arxiv.org/abs/2403.09472", "18"),
    ]
    assert papers[0].title.startswith("Meteor: Mamba-based Traversal") and papers[2].authors == E2H_AUTHORS
    assert "thumbnail" not in papers[0].metadata  # the wrapper's fields are not the paper's
    assert_seed_text(papers)


@pytest.mark.parametrize(
    ("name", "lines", "date", "venue"),
    [
        ("openreview-v2.json", [3, 56, 109], "2025-01-29", "ICLR 2025 Conference Submission"),
        ("openreview-v1.json", [3, 38, 79], "2023-10-31", "SoLaR 2023"),
    ],
)
def test_openreview_notes_in_both_api_layouts(name: str, lines: list[int], date: str, venue: str) -> None:
    papers, problems = read(name)
    assert problems == []
    assert [p.line for p in papers] == lines  # each note's own line inside the {"notes": [...]} wrapper
    assert {(p.date, p.metadata["venue"]) for p in papers} == {(date, venue)}
    first = papers[0]
    assert first.metadata["url"] == f"https://openreview.net/forum?id={first.metadata['id']}"
    assert first.authors is not None and len(first.authors) == 3
    assert_seed_text(papers)


def test_a_bad_note_is_reported_on_its_own_line(tmp_path: Path) -> None:
    data = json.loads((FORMATS / "openreview-v2.json").read_text(encoding="utf-8"))
    data["notes"][1]["content"]["abstract"] = {"value": ""}
    path = tmp_path / "notes.json"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    problems: list[InputError] = []
    papers = read_papers(path, on_error=problems.append)
    assert len(papers) == 2 and [(e.line, e.reason) for e in problems] == [(56, "missing or empty abstract")]


# --------------------------------------------------------------------------------------
# Bare arXiv ids and --fetch


def test_bare_arxiv_ids_say_they_carry_no_abstract() -> None:
    with pytest.raises(InputError) as info:
        read_papers(FORMATS / "arxiv-ids.txt")
    assert str(info.value) == (
        f"{FORMATS / 'arxiv-ids.txt'}: a list of 3 arXiv id(s): ids alone carry no abstract; "
        "pass --fetch to look them up on the arXiv API (needs the network)"
    )


def test_one_paper_commands_refuse_ids_too_rather_than_read_a_comment_as_a_title() -> None:
    with pytest.raises(InputError, match="ids alone carry no abstract"):
        pick_paper(path=FORMATS / "arxiv-ids.txt")


def test_fetch_reads_ids_through_a_recorded_api_answer(tmp_path: Path) -> None:
    asked: list[Sequence[str]] = []
    recorded = (FORMATS / "arxiv-api.xml").read_text(encoding="utf-8")

    def fetch(ids: Sequence[str]) -> str:
        asked.append(list(ids))
        return recorded

    papers, problems = read("arxiv-ids.txt", ReadOptions(fetch=fetch))
    assert asked == [["2310.19852", "2402.10184", "2403.09472v2"]]  # versions as written
    assert problems == []
    assert [(p.line, p.title, p.metadata["id"]) for p in papers] == [
        (2, AIA, "2310.19852v1"),
        (3, RG, "2402.10184v1"),
        (4, E2H, "2403.09472v1"),
    ]
    ids = tmp_path / "ids.txt"
    ids.write_text("2310.19852\n2599.99999\n", encoding="utf-8")
    missing: list[InputError] = []
    found = read_papers(ids, on_error=missing.append, options=ReadOptions(fetch=fetch))
    assert [p.title for p in found] == [AIA]
    assert [(e.line, e.reason) for e in missing] == [(2, "the arXiv API returned no paper for 2599.99999")]


def test_fetch_arxiv_asks_the_api_in_polite_batches() -> None:
    urls: list[str] = []
    pauses: list[float] = []
    # As the API answers today: the arxiv: prefix is declared on the root, which is not kept.
    root = '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom">'
    entry = "<entry><id>http://arxiv.org/abs/2401.0000{}</id><arxiv:doi>10.1/{}</arxiv:doi></entry>"

    def urlopen(url: str) -> bytes:
        urls.append(url)
        return f"{root}{entry.format(len(urls), len(urls))}</feed>".encode()

    ids = [f"2401.{n:05d}" for n in range(150)]
    feed = fetch_arxiv(ids, urlopen=urlopen, pause=pauses.append)
    assert len(urls) == 2 and pauses == [3.0]
    assert urls[0].startswith("https://export.arxiv.org/api/query?id_list=2401.00000%2C2401.00001")
    assert urls[0].endswith("&max_results=100") and urls[1].endswith("&max_results=50")
    assert [record["doi"] for record, _ in read_atom(feed, "answer")] == ["10.1/1", "10.1/2"]

    def offline(url: str) -> bytes:
        raise OSError("network unreachable")

    with pytest.raises(InputError, match=r"^could not reach the arXiv API: network unreachable$"):
        fetch_arxiv(["2401.00001"], urlopen=offline)


# --------------------------------------------------------------------------------------
# Field maps


def test_a_field_map_reads_nested_json_and_csv_columns(tmp_path: Path) -> None:
    nested = tmp_path / "export.jsonl"
    row = {"meta": {"name": "Mapped title", "who": ["A B", "C D"]}, "text": "Mapped abstract.", "ref": "r1"}
    nested.write_text(json.dumps(row) + "\n", encoding="utf-8")
    field_map = parse_field_map(["title=meta.name", "abstract=text", "authors=meta.who", "id=ref"])
    (paper,) = read_papers(nested, options=ReadOptions(field_map=field_map))
    assert (paper.title, paper.abstract, paper.authors, paper.metadata["id"]) == (
        "Mapped title",
        "Mapped abstract.",
        ["A B", "C D"],
        "r1",
    )
    assert "text" not in paper.metadata  # the mapped source is not kept twice
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("Name;Summary;Year\nA sheet title;A sheet abstract.;2021\n", encoding="utf-8")
    options = ReadOptions(field_map=parse_field_map(["title=Name", "abstract=summary", "date=Year"]))
    (row_paper,) = read_papers(sheet, options=options)
    assert (row_paper.title, row_paper.abstract, row_paper.date) == ("A sheet title", "A sheet abstract.", "2021")
    with pytest.raises(
        InputError, match=r"lacks required column\(s\): abstract \(.*\); --map abstract='Text': no such column$"
    ):
        read_papers(sheet, options=ReadOptions(field_map={"abstract": "Text", "title": "Name"}))


def test_identity_columns_get_one_spelling_whatever_the_export_wrote(tmp_path: Path) -> None:
    path = tmp_path / "library.csv"
    path.write_text("ID,Title,Abstract,DOI,URL\nK1,T,An abstract.,10.1/x,https://e.org/1\n", encoding="utf-8")
    (paper,) = read_papers(path)
    assert paper.metadata == {"id": "K1", "doi": "10.1/x", "url": "https://e.org/1"}


def test_a_field_map_wins_over_a_recognised_shape() -> None:
    options = ReadOptions(field_map=parse_field_map(["title=paper.id"]))
    papers = read_papers(FORMATS / "hf-daily-papers.json", options=options)
    assert [p.title for p in papers] == ["2405.15574", "2405.20495", "2403.09472"]
    assert papers[0].abstract.startswith("The rapid development of large language and vision models")


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("abstract", "--map 'abstract': expected FIELD=PATH"),
        ("summary=abstract", "--map 'summary=abstract': unknown field 'summary'; one of title, abstract"),
        ("title=", "--map 'title=': expected FIELD=PATH"),
    ],
)
def test_bad_field_maps_are_one_line(item: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_field_map([item])
    assert str(info.value).startswith(message)


def test_one_piped_paper_of_a_known_shape() -> None:
    note = json.loads((FORMATS / "openreview-v2.json").read_text(encoding="utf-8"))["notes"][0]
    paper = pick_paper(stdin_text=json.dumps(note))
    assert paper.title == PRISM and paper.metadata["id"] == "hTf3Kz9aQp"


# --------------------------------------------------------------------------------------
# Every example together, and runs with nothing readable


def test_every_example_reads_and_merges_by_title() -> None:
    files = sorted(p for p in FORMATS.iterdir() if p.name != "arxiv-ids.txt" and p.name != "README.md")
    assert len(files) == 9
    papers = read_inputs(files)
    # 31 records across the examples, told apart by title: 13 distinct seed papers.
    assert sum(len(read_papers(f)) for f in files) == 31
    assert len(papers) == 13 and all(p.title in SEEDS for p in papers)


async def test_a_run_with_nothing_readable_is_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "", "abstract": "x"}\n{broken\n', encoding="utf-8")
    settings = Settings(cache_dir=tmp_path / "cache")
    with pytest.raises(InputError) as info:
        await run_tag([bad], tmp_path / "out", settings, backend=FakeBackend(responder=valid_answer))
    assert (
        str(info.value)
        == "nothing readable: all 2 record(s) in the input were rejected (listed above); nothing was run"
    )
    assert not (tmp_path / "out").exists()
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"title": "Fine", "abstract": "A readable abstract."}) + "\n", encoding="utf-8")
    summary = await run_tag([bad, good], tmp_path / "out", settings, backend=FakeBackend(responder=valid_answer))
    assert (summary.status, summary.done, len(summary.input_errors), summary.exit_code) == ("completed", 1, 2, 0)


def test_the_cli_exits_2_when_nothing_is_readable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # never reached: input comes first
    bad = tmp_path / "bad.csv"
    bad.write_text("title,abstract\nN/A,N/A\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["tag", str(bad), "-o", str(tmp_path / "out"), "--log-format", "jsonl"])
    assert result.exit_code == 2
    assert "nothing readable: all 1 record(s) in the input were rejected" in " ".join(result.output.split())
    ids = CliRunner().invoke(app, ["tag", str(FORMATS / "arxiv-ids.txt"), "-o", str(tmp_path / "out")])
    assert ids.exit_code == 2 and "ids alone carry no abstract; pass --fetch" in " ".join(ids.output.split())
    bad_map = CliRunner().invoke(app, ["tag", str(bad), "-o", str(tmp_path / "out"), "--map", "abstract"])
    assert bad_map.exit_code == 2 and "--map 'abstract': expected FIELD=PATH" in " ".join(bad_map.output.split())
