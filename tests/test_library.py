"""Notes with YAML front matter from a replaceable template, and BibTeX: what researchers keep."""

from __future__ import annotations

import json
import re
from pathlib import Path

import bibtexparser
import pytest
from test_export import make_result
from typer.testing import CliRunner

from summarizer.cache import canonical_json
from summarizer.cli import app
from summarizer.errors import ConfigError, OutputError
from summarizer.export import RECORDS, export_run
from summarizer.library import BIBTEX_FILE, NOTES_DIR, latex_escape, note_name, to_bibtex, yaml_value
from summarizer.schemas import PaperSource, Result, paper_id

NASTY_TITLE = 'Say "no": a #1 study\nof colons: quotes \' and --- dashes & 50% of {braces} ~ $x_1$ \\ back'
SURVEY = PaperSource(
    id="7XQ2KJ9M",
    authors=["Jiaming Ji", "Tianyi Qiu", "Boyuan Chen"],
    date="2023-10-30",
    url="http://arxiv.org/abs/2310.19852",
    doi="10.48550/arXiv.2310.19852",
)


def result(title: str, source: PaperSource | None, category: str = "governance") -> Result:
    made = make_result(title, category)
    # model_copy, not validation: the title keeps its newline, as a records.jsonl line edited by hand could.
    record = made.record.model_copy(update={"title": title, "paper_id": paper_id(title)})
    return made.model_copy(update={"record": record, "source": source})


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    results = [
        result("AI Alignment: A Comprehensive Survey", SURVEY, "interpretability"),
        result(NASTY_TITLE, PaperSource(id="hep-th/9901001", authors=["O'Brien, Ann", "Zoë Ünal"], date="1999")),
        result("FooBench: a benchmark", None, "learning_from_feedback"),
        result("../../etc/passwd CON", PaperSource(url="javascript:alert(1)")),
    ]
    lines = [canonical_json(r.model_dump(mode="json")) + "\n" for r in results]
    (tmp_path / RECORDS).write_text("".join(lines), encoding="utf-8")
    return tmp_path


def load_yaml(text: str) -> object:
    """A real YAML parser where one is installed; else a strict reading of `key: value` lines.

    The fallback accepts only what the `yaml` filter promises: one key per line and a value
    that is a JSON scalar or list (a subset of YAML flow syntax), so it can also fail.
    """
    try:
        import yaml
    except ImportError:
        data: dict[str, object] = {}
        for line in text.splitlines():
            key, sep, value = line.partition(": ")
            assert sep and re.fullmatch(r"[a-z_]+", key) and key not in data, line
            data[key] = json.loads(value)
        return data
    return yaml.safe_load(text)


def front_matter(text: str) -> dict[str, object]:
    match = re.match(r"---\n(.*?)\n---\n", text, flags=re.DOTALL)
    assert match, text[:200]
    data = load_yaml(match.group(1))
    assert isinstance(data, dict)
    return data


def test_notes_have_front_matter_that_round_trips_through_yaml(run_dir: Path) -> None:
    written = export_run(run_dir, formats=["notes"])
    folder = run_dir / NOTES_DIR
    assert written == {"notes": folder}
    notes = sorted(folder.glob("*.md"))
    assert len(notes) == 4
    by_title = {front_matter(p.read_text(encoding="utf-8"))["title"]: p for p in notes}
    assert NASTY_TITLE in by_title  # quotes, colons, newline, "---" and "#": one string, unchanged
    survey = front_matter(by_title["AI Alignment: A Comprehensive Survey"].read_text(encoding="utf-8"))
    assert survey == {
        "title": "AI Alignment: A Comprehensive Survey",
        "authors": ["Jiaming Ji", "Tianyi Qiu", "Boyuan Chen"],
        "date": "2023-10-30",
        "url": "http://arxiv.org/abs/2310.19852",
        "doi": "10.48550/arXiv.2310.19852",
        "input_id": "7XQ2KJ9M",
        "paper_id": paper_id("AI Alignment: A Comprehensive Survey"),
        "category": "interpretability",
        "secondary_categories": [],
        "contribution_type": "new_method",
        "tags": ["interpretability", "new_method"],
        "needs_review": False,
    }
    body = by_title["AI Alignment: A Comprehensive Survey"].read_text(encoding="utf-8")
    assert "[Open the paper](<http://arxiv.org/abs/2310.19852>)" in body and "## Claims" in body
    bare = front_matter(by_title["FooBench: a benchmark"].read_text(encoding="utf-8"))
    assert bare["authors"] == [] and bare["url"] is None and bare["doi"] is None
    hostile = front_matter(by_title["../../etc/passwd CON"].read_text(encoding="utf-8"))
    assert hostile["url"] is None  # a javascript: URL is not a link, not even in front matter


def test_note_file_names_are_safe(run_dir: Path) -> None:
    export_run(run_dir, formats=["notes"])
    names = [p.name for p in (run_dir / NOTES_DIR).iterdir()]
    assert all(re.fullmatch(r"[a-z0-9-]+-[0-9a-f]{12}\.md", n) for n in names), names
    assert any(n.startswith("etc-passwd-con-") for n in names)
    assert not (run_dir / "etc").exists() and not list(run_dir.parent.glob("*.md"))


def test_yaml_value_quotes_what_yaml_would_misread() -> None:
    for value in ["yes", "null", "1e3", "- item", "a: b", "#c", "x\u2028y\x85z\x7f", "'", '"', "", "@at", "\ud83d"]:
        assert load_yaml(f"k: {yaml_value(value)}") == {"k": value}
    assert yaml_value(None) == "null" and yaml_value(["a", None]) == '["a", null]'


def test_a_user_template_replaces_the_default(run_dir: Path, tmp_path: Path) -> None:
    template = tmp_path / "my.md.j2"
    template.write_text('---\ntitle: {{ title | yaml }}\n---\n{{ authors | join(", ") }} | {{ tags | join(" ") }}\n')
    runner = CliRunner()
    out = runner.invoke(app, ["export", str(run_dir), "--format", "notes", "--template", str(template)])
    assert out.exit_code == 0, out.output
    texts = [p.read_text(encoding="utf-8") for p in (run_dir / NOTES_DIR).glob("*.md")]
    assert '---\ntitle: "AI Alignment: A Comprehensive Survey"\n---\nJiaming Ji, Tianyi Qiu, Boyuan Chen | ' in "".join(
        texts
    )
    assert all("## Claims" not in t for t in texts)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{% if %}", "line 1"),
        ("{{ no_such_field }}", "no_such_field"),
        ("{{ ''.__class__.__mro__ }}", "unsafe"),  # sandboxed: a shared template cannot reach internals
    ],
)
def test_a_broken_template_is_a_one_line_error(run_dir: Path, tmp_path: Path, body: str, message: str) -> None:
    template = tmp_path / "bad.md.j2"
    template.write_text(body)
    with pytest.raises(ConfigError, match=message):
        export_run(run_dir, formats=["notes"], template=template)
    out = CliRunner().invoke(app, ["export", str(run_dir), "-f", "notes", "--template", str(template)])
    assert out.exit_code == 1 and "Traceback" not in out.output and out.output.count("\n") == 1, out.output
    missing = CliRunner().invoke(app, ["export", str(run_dir), "-f", "notes", "--template", str(tmp_path / "no")])
    assert missing.exit_code == 1 and "not found" in missing.output


def test_template_without_notes_is_refused(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="--format notes"):
        export_run(run_dir, formats=["csv"], template=tmp_path / "x.j2")


def _unlatex(text: str) -> str:
    text = text.replace(r"\textbackslash{}", "\\").replace(r"\textless{}", "<").replace(r"\textgreater{}", ">")
    return re.sub(r"\\([{}$&#^_%~])(?:\{\})?", r"\1", text)


def test_bibtex_parses_with_keys_fields_and_escapes(run_dir: Path) -> None:
    written = export_run(run_dir, formats=["bibtex"])
    text = (run_dir / BIBTEX_FILE).read_text(encoding="utf-8")
    assert written == {"bibtex": run_dir / BIBTEX_FILE}
    library = bibtexparser.parse_string(text)
    assert library.failed_blocks == [] and len(library.entries) == 4
    entries = {e.key: {k: f.value for k, f in e.fields_dict.items()} for e in library.entries}
    assert list(entries) == ["7XQ2KJ9M", "hep-th_9901001", "foobench", "passwd"]
    survey = entries["7XQ2KJ9M"]
    assert survey["title"] == "AI Alignment: A Comprehensive Survey"
    assert survey["author"] == "Jiaming Ji and Tianyi Qiu and Boyuan Chen"
    assert (survey["year"], survey["doi"], survey["url"]) == ("2023", SURVEY.doi, SURVEY.url)
    assert survey["category"] == "interpretability"
    assert survey["keywords"] == "interpretability, new\\_method"
    nasty = entries["hep-th_9901001"]
    assert _unlatex(nasty["title"]) == " ".join(NASTY_TITLE.split())  # every special character escaped
    assert "\\$x\\_1\\$" in nasty["title"] and "50\\%" in nasty["title"] and "\\{braces\\}" in nasty["title"]
    assert (nasty["eprint"], nasty["archiveprefix"]) == ("hep-th/9901001", "arXiv")
    assert nasty["author"] == "O'Brien, Ann and Zoë Ünal" and nasty["url"] == "https://arxiv.org/abs/hep-th/9901001"
    assert "url" not in entries["passwd"]  # javascript: is never a link


def test_bibtex_keys_without_an_id_are_slugs_and_unique() -> None:
    twin = PaperSource(authors=["Ada Lovelace"], date="1843-09")
    results = [result("Notes on the Analytical Engine", twin), result("Notes on the Analytical Engine v2", twin)]
    keys = [e.key for e in bibtexparser.parse_string(to_bibtex(results)).entries]
    assert keys == ["lovelace1843notes", "lovelace1843notesa"]
    same_id = [result("One", PaperSource(id="K1")), result("Two", PaperSource(id="k1"))]
    assert [e.key for e in bibtexparser.parse_string(to_bibtex(same_id)).entries] == ["K1", "k1a"]


def test_latex_escape() -> None:
    assert latex_escape("a & b_c 100% #1 {x} ~ ^ $ \\ <>") == (
        r"a \& b\_c 100\% \#1 \{x\} \~{} \^{} \$ \textbackslash{} \textless{}\textgreater{}"
    )


def test_note_name_ignores_path_characters() -> None:
    made = result("x", None)
    evil = made.model_copy(update={"record": made.record.model_copy(update={"paper_id": "../../a/b", "title": "…"})})
    assert note_name(evil) == "paper-ab.md"
