from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from summarizer.cli import app
from summarizer.sources import pick_paper

ROOT = Path(__file__).resolve().parent.parent
SEED_002 = ROOT / "examples/seeds/002_2f4c7783e71f772c.txt"
runner = CliRunner()


def test_summarize_without_a_paper_says_what_to_do() -> None:
    result = runner.invoke(app, ["summarize", "--title", "Only a title"])
    assert result.exit_code == 2
    assert "--title and --abstract must be given together" in result.output


def test_summarize_on_a_multi_paper_file_asks_which() -> None:
    result = runner.invoke(app, ["summarize", str(SEED_002)])
    assert result.exit_code == 2
    assert "holds 44 papers" in result.output and "--paper" in result.output


def test_summarize_unknown_paper_names_the_query() -> None:
    result = runner.invoke(app, ["summarize", str(SEED_002), "--paper", "no such paper title xyz"])
    assert result.exit_code == 2
    assert "no such paper title xyz" in result.output


def test_summarize_missing_file() -> None:
    result = runner.invoke(app, ["summarize", "does/not/exist.jsonl"])
    assert result.exit_code == 2
    assert "does/not/exist.jsonl" in result.output


def test_pick_paper_from_every_kind_of_input(tmp_path: Path) -> None:
    by_index = pick_paper(path=SEED_002, query="#1")
    assert by_index.title.startswith("Knowledge Distillation and Dataset Distillation")
    assert pick_paper(path=SEED_002, query=by_index.id) == by_index
    assert pick_paper(path=SEED_002, query="knowledge distillation and dataset distillation").id == by_index.id
    single = tmp_path / "paper.txt"
    single.write_text("My Title\nThe abstract, on\nseveral lines.\n")
    p = pick_paper(path=single)
    assert (p.title, p.abstract) == ("My Title", "The abstract, on several lines.")
    p = pick_paper(stdin_text='{"title": "T", "abstract": "A b c."}')
    assert (p.title, p.abstract, p.source) == ("T", "A b c.", "<stdin>")
    p = pick_paper(title="T2", abstract="Some  text.")
    assert p.abstract == "Some text."


def test_cache_stats_and_clear(tmp_path: Path) -> None:
    result = runner.invoke(app, ["cache", "stats", "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 0 and "0 records" in result.output
    result = runner.invoke(app, ["cache", "clear", "--yes", "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 0 and "removed 0 records" in result.output
