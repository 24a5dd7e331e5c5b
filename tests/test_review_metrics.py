"""The eval's figures for `needs_review`: how many records are flagged, and how right each side is.

They sit under summary["review"], apart from the headline metrics the regression gate
compares, and appear only when some record is flagged: a run of generated decisions writes
the reports it always wrote.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from summarizer.evalreport import render_markdown
from summarizer.evaluate import EvalRun, load_run, write_run
from summarizer.gate import changed_papers
from summarizer.schemas import Paper, PaperRecord, Provenance, Result, Usage
from summarizer.scoring import GoldPaper, PaperScore, review_summary, score_paper, summarise

CLASSES = ["learning_from_feedback", "interpretability", "governance", "not_alignment"]


def scores(flagged: set[int]) -> list[PaperScore]:
    """20 papers: 0-15 right except 3, 7 and 11; 16-18 wrong; 19 failed (no record)."""
    out = []
    for i in range(20):
        gold = CLASSES[i % len(CLASSES)]
        right = i < 16 and i not in {3, 7, 11}
        valid = i != 19
        pred = (gold if right else CLASSES[(i + 1) % len(CLASSES)]) if valid else None
        out.append(
            PaperScore(
                id=f"p{i}", title=f"Paper {i}", valid=valid, gold_primary=gold, pred_primary=pred,
                category_correct=valid and right, category_lenient=valid and right, needs_review=i in flagged,
                error=None if valid else "ExtractionFailed: no",
            )
        )  # fmt: skip
    return out


# Flagged: three wrong (3, 16, 17), two right (0, 1), and the failure (ignored: no record).
FLAGGED = {0, 1, 3, 16, 17, 19}


def run_of(paper_scores: list[PaperScore]) -> EvalRun:
    return EvalRun(
        created_at="2026-01-01T00:00:00+00:00", model="fake:m", backend={"backend": "fake"}, prompt_hash="p" * 16,
        taxonomy_hash="t" * 16, schema_hash="s" * 16, gold_path="evals/gold.jsonl", replayed=20, live=0,
        summary=summarise(paper_scores), papers=paper_scores,
    )  # fmt: skip


def test_flagged_share_and_accuracy_on_each_side_of_the_flag() -> None:
    review = review_summary(scores(FLAGGED))
    assert review is not None
    assert (review["records"], review["flagged"]) == (19, 5)
    m = review["metrics"]
    assert m["flagged_share"]["value"] == round(5 / 19, 4) and m["flagged_share"]["papers"] == 19
    # Unflagged: 14 records (2-18 less 3, 16, 17), of which 7, 11 and 18 are wrong.
    assert m["category_accuracy_unflagged"]["value"] == round(11 / 14, 4)
    assert m["category_accuracy_unflagged"]["papers"] == 14
    assert m["category_accuracy_flagged"]["value"] == round(2 / 5, 4)
    assert m["category_accuracy_flagged"]["papers"] == 5
    for figure in m.values():
        low, high = figure["ci95"]
        assert 0.0 <= low <= figure["value"] <= high <= 1.0 and low < high


def test_the_flag_changes_no_headline_metric_nor_what_the_gate_compares() -> None:
    flagged, plain = summarise(scores(FLAGGED)), summarise(scores(set()))
    assert "review" in flagged and "review" not in plain
    assert {k: v for k, v in flagged.items() if k != "review"} == plain
    assert changed_papers(scores(FLAGGED), scores(set())) == []


def test_report_json_holds_the_flag_only_when_set(tmp_path: Path) -> None:
    write_run(run_of(scores(set())), tmp_path / "plain.json")
    write_run(run_of(scores(FLAGGED)), tmp_path / "flagged.json")
    plain = json.loads((tmp_path / "plain.json").read_text())
    assert all("needs_review" not in p for p in plain["papers"]) and "review" not in plain["summary"]
    flagged = json.loads((tmp_path / "flagged.json").read_text())
    assert [p["id"] for p in flagged["papers"] if p.get("needs_review")] == [f"p{i}" for i in sorted(FLAGGED)]
    assert "needs_review" not in flagged["papers"][2]
    back = load_run(tmp_path / "flagged.json")
    assert {p.id for p in back.papers if p.needs_review} == {f"p{i}" for i in FLAGGED}
    assert back.summary["review"] == flagged["summary"]["review"]


def test_report_md_shows_accuracy_with_and_without_flagged_records() -> None:
    md = render_markdown(run_of(scores(FLAGGED)))
    section = md.split("## Records flagged for review (95% bootstrap intervals over papers)", 1)[1]
    section = section.split("\n## ", 1)[0]
    assert "5 of 19 valid records flagged. Not compared by the regression gate." in section
    review = review_summary(scores(FLAGGED))
    assert review is not None
    m = review["metrics"]
    for label, name, papers in [
        ("Records flagged for review", "flagged_share", 19),
        ("Category accuracy, unflagged records", "category_accuracy_unflagged", 14),
        ("Category accuracy, flagged records", "category_accuracy_flagged", 5),
    ]:
        low, high = m[name]["ci95"]
        assert f"| {label} | {m[name]['value']:.3f} | [{low:.3f}, {high:.3f}] | {papers} |" in section
    # The headline table is the one an unflagged run shows.
    plain = render_markdown(run_of(scores(set())))
    assert md.split("## Records flagged", 1)[0] == plain.split("## Per class", 1)[0]


def test_report_md_without_flags_has_no_review_section() -> None:
    assert "flagged" not in render_markdown(run_of(scores(set()))).lower()


def test_every_record_flagged_leaves_no_unflagged_accuracy() -> None:
    everything = set(range(20))
    review = review_summary(scores(everything))
    assert review is not None and review["metrics"]["category_accuracy_unflagged"]["papers"] == 0
    md = render_markdown(run_of(scores(everything)))
    assert "| Category accuracy, unflagged records | n/a | | 0 |" in md
    assert "| Records flagged for review | 1.000 | [1.000, 1.000] | 19 |" in md


def test_score_paper_carries_the_records_flag() -> None:
    abstract = "We study a thing. We find a result."
    paper = Paper(id="x1", title="A paper", abstract=abstract)
    gold = GoldPaper(id="x1", title="A paper", primary="governance", contribution_type="new_method", method=None)
    record = PaperRecord.model_validate({
        "paper_id": "x1", "title": "A paper", "summary": "About it.", "contribution_type": "new_method",
        "method": {"name": None, "description": "What it does.", "evidence": None},
        "claims": [{"statement": "A finding.", "evidence": "We find a result."}],
        "category": {"primary": "governance", "secondary": [], "rationale": "Because."},
        "confidence": {"subject": 0.55}, "needs_review": True, "review_reasons": ["subject 0.55 is near the gate"],
    })  # fmt: skip
    provenance = Provenance(
        backend="fake", model="fake:m", prompt_hash="p", taxonomy_hash="t", schema_hash="s", cache_key="k",
        cache_hit=False, usage=Usage(prompt_tokens=1, completion_tokens=1), started_at="a", finished_at="b",
    )  # fmt: skip
    result = Result(record=record, provenance=provenance)
    assert score_paper(gold, paper, result).needs_review is True
    unflagged = result.model_copy(update={"record": record.model_copy(update={"needs_review": False})})
    assert score_paper(gold, paper, unflagged).needs_review is False


def test_eval_dashboard_shows_the_review_figures_only_for_a_flagged_run() -> None:
    from summarizer.report import render_eval_html

    page = render_eval_html(run_of(scores(FLAGGED)))
    table = page.split('<table id="review">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(
        r'<tr data-metric="([a-z_]+)">\s*<th scope="row">([^<]+)</th>\s*<td class="num">([^<]+)</td>', table
    )
    assert rows == [
        ("flagged_share", "Records flagged for review", "0.263"),
        ("category_accuracy_unflagged", "Category accuracy, unflagged records", "0.786"),
        ("category_accuracy_flagged", "Category accuracy, flagged records", "0.400"),
    ]
    assert "5 of 19 valid records flagged" in page
    assert 'id="review"' not in render_eval_html(run_of(scores(set())))
